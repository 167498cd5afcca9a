"""Made-up items in each benchmark task's Hub schema, covering every branch the scoring has: ARC's letter and numeric
labels and three- and five-choice items, OpenBookQA's padded answer key, Winogrande's blank, LAMBADA's last word,
COPA's cause and effect, SciQ's support with leading whitespace, HellaSwag's WikiHow markup (from the sample)."""

import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELLASWAG_SAMPLE = ROOT / "data" / "hellaswag_sample.jsonl"
WORDS = tuple(
    [
        "the",
        "water",
        "cold",
        "stone",
        "river",
        "light",
        "warm",
        "metal",
        "plant",
        "seed",
        "grows",
        "falls",
        "rises",
        "heavy",
        "small",
        "bright",
        "sound",
        "moves",
        "animal",
        "bird",
        "fish",
        "tree",
        "leaf",
        "sun",
        "moon",
        "rain",
        "wind",
        "fire",
        "ice",
        "salt",
        "sugar",
        "iron",
        "glass",
        "wood",
        "paper",
        "heat",
        "energy",
    ]
)


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _arc(rng: random.Random, i: int) -> dict:
    count = (4, 3, 5, 4)[i % 4]
    labels = [str(n + 1) for n in range(count)] if i % 3 == 1 else list("ABCDE"[:count])
    return {"id": f"q{i}", "question": _sentence(rng, 6).capitalize() + "?",
            "choices": {"text": [_sentence(rng, rng.randint(1, 4)) for _ in labels], "label": labels},
            "answerKey": rng.choice(labels)}  # fmt: skip


def _openbookqa(rng: random.Random, i: int) -> dict:
    labels = list("ABCD")
    key = rng.choice(labels)
    return {"id": f"o{i}", "question_stem": _sentence(rng, 7).capitalize(),
            "choices": {"text": [_sentence(rng, rng.randint(1, 3)) for _ in labels], "label": labels},
            "answerKey": f" {key}" if i % 5 == 0 else key}  # fmt: skip


def _piqa(rng: random.Random, i: int) -> dict:
    return {"goal": _sentence(rng, 5).capitalize() + ".", "sol1": _sentence(rng, 6), "sol2": _sentence(rng, 5),
            "label": rng.randint(0, 1)}  # fmt: skip


def _winogrande(rng: random.Random, i: int) -> dict:
    first, second = rng.sample(WORDS, 2)
    sentence = f"The {first} {rng.choice(WORDS)} the {second} because _ {_sentence(rng, rng.randint(1, 4))}."
    return {"sentence": sentence, "option1": first, "option2": second, "answer": rng.choice("12")}


def _lambada(rng: random.Random, i: int) -> dict:
    return {"text": _sentence(rng, rng.randint(8, 20))}


def _boolq(rng: random.Random, i: int) -> dict:
    return {"question": _sentence(rng, 5), "passage": _sentence(rng, 18).capitalize() + ".",
            "idx": i, "label": rng.randint(0, 1)}  # fmt: skip


def _copa(rng: random.Random, i: int) -> dict:
    return {"premise": _sentence(rng, 6).capitalize() + ".", "choice1": _sentence(rng, 5).capitalize() + ".",
            "choice2": _sentence(rng, 4).capitalize() + ".", "question": ("cause", "effect")[i % 2], "idx": i,
            "label": rng.randint(0, 1)}  # fmt: skip


def _sciq(rng: random.Random, i: int) -> dict:
    support = ("  " if i % 3 == 0 else "") + (_sentence(rng, 15).capitalize() + "." if i % 4 else "")
    return {"question": _sentence(rng, 6).capitalize() + "?", "distractor1": _sentence(rng, 2),
            "distractor2": _sentence(rng, 1), "distractor3": _sentence(rng, 3), "correct_answer": _sentence(rng, 2),
            "support": support}  # fmt: skip


MAKERS = {"arc_easy": _arc, "arc_challenge": _arc, "piqa": _piqa, "winogrande": _winogrande, "openbookqa": _openbookqa,
          "lambada_openai": _lambada, "boolq": _boolq, "copa": _copa, "sciq": _sciq}  # fmt: skip


def write_task_data(root: Path, tasks, scored: int = 10, train: int = 6) -> dict[str, str]:
    """A directory per task holding its scored split and (but LAMBADA, whose few-shot examples come from the scored
    split) a training split, in the task's schema; returns {task: directory}."""
    from gpt_scratch.tasks import TASKS

    directories = {}
    for name in tasks:
        task, directory = TASKS[name], root / name
        directory.mkdir(parents=True, exist_ok=True)
        if name == "hellaswag":
            rows = [json.loads(line) for line in HELLASWAG_SAMPLE.read_text().splitlines()]
            splits = {task.eval_split: rows[:scored], task.fewshot_split: rows[scored : scored + train]}
        else:
            rng = random.Random(name)
            splits = {task.eval_split: [MAKERS[name](rng, i) for i in range(scored)]}
            if task.fewshot_split != task.eval_split:
                splits[task.fewshot_split] = [MAKERS[name](rng, scored + i) for i in range(train)]
        for split, rows in splits.items():
            (directory / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        directories[name] = str(directory)
    return directories
