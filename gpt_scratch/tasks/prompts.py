"""Contexts and continuations of a task's items, zero-shot or with few-shot examples, as lm-eval builds them.

lm-eval 0.4.x (``ConfigurableTask.fewshot_context`` and ``construct_requests``, ``api/samplers.py``):
- A few-shot example is ``prompt + " " + answer + "\\n\\n"``: the answer is the gold choice's text, or the target
  itself where that is text (COPA, LAMBADA); for Winogrande the prompt is the gold option's filled-in sentence start.
- The scored item's context is the examples followed by its prompt (for Winogrande: by each filled-in start, one
  context per choice); each continuation is ``" " + choice`` (Winogrande: ``" " + the rest of the sentence``).
- The examples are drawn by ``random.Random(1234).sample`` from the few-shot split, one draw per item in item order,
  from one random stream per task (``simple_evaluate``'s ``fewshot_random_seed``). A task without a test split
  draws one more and drops the scored item from the draw.
"""

import random
from dataclasses import dataclass

from .definitions import Row, Task

TARGET_DELIMITER, FEWSHOT_DELIMITER = " ", "\n\n"
FEWSHOT_SEED = 1234


@dataclass(frozen=True)
class Item:
    """One scored item: its (context, continuation) requests, the gold index, and the choices' texts."""

    requests: tuple[tuple[str, str], ...]
    gold: int
    choices: tuple[str, ...]  # what acc_norm divides by (characters); empty for LAMBADA


class FewshotSampler:
    """lm-eval's default ContextSampler: ``sample(n)`` from one seeded random stream."""

    def __init__(self, pool: list[Row], seed: int = FEWSHOT_SEED) -> None:
        self.pool = pool
        self.random = random.Random(seed)

    def sample(self, n: int, scored: Row | None) -> list[Row]:
        if n == 0:
            return []
        if scored is None:
            return self.random.sample(self.pool, n)
        drawn = [row for row in self.random.sample(self.pool, n + 1) if row != scored][:n]
        if len(drawn) < n:  # the pool held the scored item more than once: lm-eval draws again without it
            drawn = self.random.sample([row for row in self.pool if row != scored], n)
        return drawn


def answer_text(task: Task, row: Row) -> str:
    target = task.target(row)
    return task.choices(row)[target] if task.choices and isinstance(target, int) else target


def example_text(task: Task, row: Row) -> str:
    prompt = task.prompt(row)
    if task.multiple_input:
        return task.choices(row)[prompt] + TARGET_DELIMITER + task.target(row) + FEWSHOT_DELIMITER
    return prompt + TARGET_DELIMITER + answer_text(task, row) + FEWSHOT_DELIMITER


def gold_index(task: Task, row: Row) -> int:
    if task.multiple_input:
        return task.prompt(row)
    target = task.target(row)
    return target if isinstance(target, int) else task.choices(row).index(target)


def build_item(task: Task, row: Row, examples: list[Row]) -> Item:
    prefix = "".join(example_text(task, example) for example in examples)
    if task.choices is None:  # one continuation: LAMBADA's last word
        return Item(((prefix + task.prompt(row), task.target(row)),), 0, ())
    choices = tuple(task.choices(row))
    if task.multiple_input:
        continuation = TARGET_DELIMITER + task.target(row)
        return Item(tuple((prefix + start, continuation) for start in choices), gold_index(task, row), choices)
    context = prefix + task.prompt(row)
    return Item(tuple((context, TARGET_DELIMITER + choice) for choice in choices), gold_index(task, row), choices)


def build_items(task: Task, rows: list[Row], pool: list[Row], num_fewshot: int, seed: int = FEWSHOT_SEED) -> list[Item]:
    """Every row's item, in row order (the few-shot draws depend on it: every process builds them all)."""
    needed = num_fewshot + (0 if task.has_test_split else 1)
    if num_fewshot and len(pool) < needed:
        raise ValueError(
            f"{task.name}: --num_fewshot {num_fewshot} needs {needed} examples from its {task.fewshot_split} split "
            f"(lm-eval draws {needed}), which holds {len(pool)}; use a smaller --num_fewshot or more examples"
        )
    sampler = FewshotSampler(pool, seed)
    return [build_item(task, row, sampler.sample(num_fewshot, None if task.has_test_split else row)) for row in rows]
