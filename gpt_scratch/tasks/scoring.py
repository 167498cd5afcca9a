"""Score any causal LM on the benchmark tasks, as lm-evaluation-harness scores them, faster.

Every task's requests go through one batched scorer together (``gpt_scratch.loglikelihood``: a context shared by
an item's choices runs once, only continuation positions reach the LM head), tokenized as lm-eval's HF backend
tokenizes them (``encode_pairs``). The metrics are lm-eval's: acc (the highest summed log-likelihood), acc_norm
(the highest per character of the choice), LAMBADA's acc (the target is the greedy continuation) and perplexity
(exp of minus the mean log-likelihood), each mean with its standard error (sample standard deviation / sqrt(n)).
"""

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..hellaswag import _mean_and_stderr
from ..loglikelihood import continuation_logliks, encode_pairs, model_max_length
from .definitions import TASKS, resolve_task_names
from .prompts import FEWSHOT_SEED, Item, build_items
from .rows import load_split


def item_outcomes(task, item: Item, scores: list[tuple[float, int, bool]]) -> list[float]:
    """[acc, acc_norm, log-likelihood] of one item from its requests' scores."""
    logliks = [loglik for loglik, _, _ in scores]
    if not item.choices:  # LAMBADA: one continuation
        loglik, _, greedy = scores[0]
        return [float(greedy), float("nan"), loglik]
    best = max(range(len(logliks)), key=lambda j: logliks[j])  # the first of equals, as numpy's argmax
    normed = [loglik / len(choice) for loglik, choice in zip(logliks, item.choices)]
    best_norm = max(range(len(normed)), key=lambda j: normed[j])
    return [float(best == item.gold), float(best_norm == item.gold), float("nan")]


def task_metrics(task, outcomes: torch.Tensor) -> dict[str, Any]:
    """The task's metrics from its items' [acc, acc_norm, log-likelihood] rows, in item order."""
    result: dict[str, Any] = {}
    for metric in task.metrics:
        if metric == "perplexity":
            result["perplexity"] = math.exp(-sum(outcomes[:, 2].tolist()) / len(outcomes))
            continue
        column = 0 if metric == "acc" else 1
        result[metric], result[f"{metric}_stderr"] = _mean_and_stderr(outcomes[:, column].tolist())
    result["n"] = len(outcomes)
    return result


def centered_accuracy(task_name: str, result: Mapping[str, Any]) -> float:
    """(acc - chance) / (1 - chance): 0 for guessing, 1 for every item right (CORE's per-task score)."""
    chance = TASKS[task_name].chance
    return (result["acc"] - chance) / (1 - chance)


def task_items(
    names: Sequence[str],
    data: Mapping[str, Any],
    num_fewshot: int = 0,
    limit: int | Mapping[str, int | None] | None = None,
    seed: int = FEWSHOT_SEED,
) -> dict[str, list[Item]]:
    """Each task's items, prompts built (its rows read and checked, few-shot examples drawn): what scoring needs
    before the model, so a training run can check its tasks' data before step 1."""
    items: dict[str, list[Item]] = {}
    for name in names:
        task = TASKS[name]
        task_limit = limit.get(name) if isinstance(limit, Mapping) else limit
        rows = load_split(task, data.get(name), task.eval_split)[:task_limit]
        if not rows:
            source = data.get(name) if isinstance(data.get(name), str) else "the rows given"
            raise ValueError(f"{name}: no items to score in {source or task.hub[0]}; give it a file with its items")
        pool = load_split(task, data.get(name), task.fewshot_split) if num_fewshot else []
        items[name] = build_items(task, rows, pool, num_fewshot, seed)
    return items


def evaluate_tasks(
    model,
    tokenizer,
    tasks: str | Sequence[str],
    data: Mapping[str, Any] | None = None,
    num_fewshot: int = 0,
    limit: int | Mapping[str, int | None] | None = None,
    batch_size: int = 32,
    accelerator=None,
    progress: bool = False,
    seed: int = FEWSHOT_SEED,
    return_details: bool = False,
) -> dict[str, dict[str, Any]]:
    """Each task's metrics, ``{"arc_easy": {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "n"}, ...}``, and
    with several tasks ``"aggregate": {"centered_acc", "tasks"}`` (their mean centered accuracy, as CORE's).

    ``tasks``: names or groups (``small_model_suite``), a list or comma-separated. ``data``: per task, a local file
    (the scored split), a directory of split files, a Hub dataset id, or rows; a task not in it reads the Hub dataset
    lm-eval reads. ``limit``: the first N items (one number, or one per task). ``accelerator``: its processes each
    score a share of the items and all get the same result as one process. ``return_details`` adds each item's
    log-likelihoods and gold index under ``"details"`` (on a single process).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size ({batch_size}) must be positive")
    if num_fewshot < 0:
        raise ValueError(f"num_fewshot ({num_fewshot}) must be 0 or more")
    names = resolve_task_names(tasks)
    data = dict(data or {})
    unknown = sorted(set(data) - set(TASKS))
    if unknown:
        raise ValueError(f"data given for unknown task(s) {', '.join(unknown)}; known tasks: {', '.join(TASKS)}")
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)

    items = task_items(names, data, num_fewshot, limit, seed)

    # This process's share of every task's items, all scored in one batched pass.
    mine = [(name, i) for name in names for i in range(rank, len(items[name]), world)]
    pairs = [request for name, i in mine for request in items[name][i].requests]
    encoded = encode_pairs(tokenizer, pairs)
    _warn_of_truncation(encoded, model_max_length(model), rank)
    scores = iter(
        request_scores(
            model,
            encoded,
            [TASKS[name].choices is None for name, i in mine for _ in items[name][i].requests],
            batch_size,
            progress and rank == 0,
        )
    )
    outcomes: dict[str, list[tuple[int, list[float]]]] = {name: [] for name in names}
    details: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for name, i in mine:
        item = items[name][i]
        item_scores = [next(scores) for _ in item.requests]
        outcomes[name].append((i, item_outcomes(TASKS[name], item, item_scores)))
        details[name].append(
            {"index": i, "requests": item.requests, "logliks": [s[0] for s in item_scores], "gold": item.gold}
        )

    results: dict[str, dict[str, Any]] = {}
    for name in names:
        table = gathered_outcomes(outcomes[name], len(items[name]), accelerator)
        results[name] = task_metrics(TASKS[name], table)
        if return_details:
            results[name]["details"] = details[name]
    if len(names) > 1:
        centered = [centered_accuracy(name, results[name]) for name in names]
        results["aggregate"] = {"centered_acc": sum(centered) / len(centered), "tasks": len(names)}
    return results


def request_scores(model, encoded: list, needs_greedy: list[bool], batch_size: int, progress: bool) -> list:
    """Every request's score, in order; the greedy check (LAMBADA's acc, CORE's language modelling) only for the
    requests that need it."""
    groups = {flag: [i for i, needed in enumerate(needs_greedy) if needed == flag] for flag in (False, True)}
    scores: list = [None] * len(encoded)
    for flag, indices in groups.items():
        if indices:
            group = continuation_logliks(model, [encoded[i] for i in indices], batch_size, progress, greedy=flag)
            for i, score in zip(indices, group):
                scores[i] = score
    return scores


def _warn_of_truncation(encoded: list[tuple[list[int], list[int]]], longest: int, rank: int) -> None:
    cut = sum(len(context) + len(continuation) > longest + 1 for context, continuation in encoded)
    if cut and rank == 0:
        warnings.warn(
            f"{cut} of {len(encoded)} requests are longer than the model's context ({longest} tokens): their "
            "contexts are cut on the left, as lm-eval cuts them (few-shot examples first)",
            stacklevel=3,
        )


def gathered_outcomes(local: list[tuple[int, list[float]]], total: int, accelerator, width: int = 3) -> torch.Tensor:
    """(total, width) outcomes in item order, from every process's share (rows i = rank, rank + world, ...) of
    (item index, its ``width`` values)."""
    if accelerator is None or accelerator.num_processes == 1:
        return torch.tensor([values for _, values in sorted(local)], dtype=torch.float64).reshape(-1, width)
    size = math.ceil(total / accelerator.num_processes)
    padded = torch.full((size, 1 + width), -1.0, dtype=torch.float64, device=accelerator.device)
    if local:
        padded[: len(local)] = torch.tensor([[i, *values] for i, values in local], dtype=torch.float64)
    gathered = accelerator.gather(padded).cpu()
    gathered = gathered[gathered[:, 0] >= 0]
    return gathered[gathered[:, 0].argsort()][:, 1:]
