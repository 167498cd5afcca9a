"""The small-model benchmark tasks, each written as lm-evaluation-harness 0.4.x's task of the same name has it: the
Hub dataset and split it reads, its prompt (``doc_to_text``), choices (``doc_to_choice``), target
(``doc_to_target``) and metrics. The YAML and helper files of each are in ``lm_eval/tasks/<name>/``; a field here
says which one it mirrors."""

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's hellaswag text cleanup (WikiHow rows carry bracketed markup)."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


Row = dict[str, Any]


@dataclass(frozen=True)
class Task:
    name: str
    hub: tuple[str, str | None]  # lm-eval's dataset_path and dataset_name
    eval_split: str  # the split lm-eval scores: its test split where the task has one, else validation
    fewshot_split: str  # where lm-eval draws few-shot examples: the training split, else validation, else test
    schema: dict[str, type]  # each row's fields and their types, checked as rows load
    prompt: Callable[[Row], str | int]  # doc_to_text (an int: the index of the choice that is the context)
    target: Callable[[Row], int | str]  # doc_to_target: a choice's index, or the continuation itself
    choices: Callable[[Row], list[str]] | None = None  # doc_to_choice; None for a single continuation (LAMBADA)
    metrics: tuple[str, ...] = ("acc", "acc_norm")
    process: Callable[[Row], Row] | None = None  # process_docs, row by row
    check: Callable[[Row], str | None] = lambda row: None  # what is wrong with a row's values, if anything
    multiple_input: bool = False  # Winogrande: each choice completes the context; one shared continuation
    # lm-eval's YAML names a test split. Without one, lm-eval draws one few-shot example more and drops the scored
    # item from the draw (its sampler's eval_doc), which moves the random stream: so this is part of the task.
    has_test_split: bool = True

    @property
    def chance(self) -> float:
        """Accuracy of a uniform guess: what centered accuracy subtracts (CORE's baseline)."""
        return CHANCE[self.name]


def _hellaswag_process(row: Row) -> Row:  # lm_eval/tasks/hellaswag/utils.py: process_docs
    context = row["ctx_a"] + " " + row["ctx_b"].capitalize()
    return {
        **row,
        "query": hellaswag_preprocess(row["activity_label"] + ": " + context),
        "choices": [hellaswag_preprocess(ending) for ending in row["endings"]],
        "gold": int(row["label"]),
    }


def _label_index(row: Row, count: int) -> str | None:
    label = row["label"]
    if isinstance(label, bool) or not (isinstance(label, int) or (isinstance(label, str) and label.isdigit())):
        return f"field 'label' must be an integer 0-{count - 1}, got {label!r}"
    return None if 0 <= int(label) < count else f"field 'label' is {label}, out of range 0-{count - 1}"


def _lettered_choices(row: Row, key: str) -> str | None:
    """ARC and OpenBookQA: choices {"text": [...], "label": [...]} and an answer key among the labels."""
    choices = row["choices"]
    texts, labels = choices.get("text"), choices.get("label")
    if not (isinstance(texts, list) and isinstance(labels, list) and len(texts) == len(labels) >= 2):
        return "field 'choices' must hold lists 'text' and 'label' of the same length (2 or more)"
    if not all(isinstance(t, str) and t for t in texts):
        return "field 'choices' holds an empty or non-string text"
    if key not in labels:
        return f"field 'answerKey' is {row['answerKey']!r}, not one of the choice labels {labels}"
    return None


def _winogrande_check(row: Row) -> str | None:
    if "_" not in row["sentence"]:
        return "field 'sentence' has no '_' blank for the options to fill"
    return None if row["answer"] in ("1", "2") else f"field 'answer' must be '1' or '2', got {row['answer']!r}"


def _winogrande_blank(row: Row) -> int:
    return row["sentence"].index("_")


def _copa_choice(text: str) -> str:  # lm_eval/tasks/super_glue/copa/utils.py: convert_choice
    return text[0].lower() + text[1:]


def _copa_choices(row: Row) -> list[str]:
    return [" " + _copa_choice(row["choice1"]), " " + _copa_choice(row["choice2"])]


def _copa_check(row: Row) -> str | None:
    if row["question"] not in ("cause", "effect"):
        return f"field 'question' must be 'cause' or 'effect', got {row['question']!r}"
    if not (row["choice1"] and row["choice2"]):
        return "fields 'choice1' and 'choice2' must be non-empty"
    return _label_index(row, 2)


def _lambada_check(row: Row) -> str | None:
    return None if " " in row["text"].strip() else "field 'text' needs at least two words (context and last word)"


TASKS: dict[str, Task] = {
    task.name: task
    for task in [
        Task(  # lm_eval/tasks/hellaswag/hellaswag.yaml
            "hellaswag", ("Rowan/hellaswag", None), "validation", "train",
            {"activity_label": str, "ctx_a": str, "ctx_b": str, "endings": list, "label": (int, str)},
            prompt=lambda row: row["query"], choices=lambda row: row["choices"], target=lambda row: row["gold"],
            process=_hellaswag_process, has_test_split=False,
            check=lambda row: _label_index(row, len(row["endings"])) if len(row["endings"]) == 4
            else "field 'endings' must be a list of 4 strings",
        ),
        Task(  # lm_eval/tasks/arc/arc_easy.yaml
            "arc_easy", ("allenai/ai2_arc", "ARC-Easy"), "test", "train",
            {"question": str, "choices": dict, "answerKey": str},
            prompt=lambda row: f"Question: {row['question']}\nAnswer:", choices=lambda row: row["choices"]["text"],
            target=lambda row: row["choices"]["label"].index(row["answerKey"]),
            check=lambda row: _lettered_choices(row, row["answerKey"]),
        ),
        Task(  # lm_eval/tasks/piqa/piqa.yaml
            "piqa", ("baber/piqa", None), "validation", "train", {"goal": str, "sol1": str, "sol2": str, "label": int},
            prompt=lambda row: f"Question: {row['goal']}\nAnswer:", choices=lambda row: [row["sol1"], row["sol2"]],
            target=lambda row: row["label"], check=lambda row: _label_index(row, 2), has_test_split=False,
        ),
        Task(  # lm_eval/tasks/winogrande/default.yaml and preprocess_winogrande.py: partial scoring
            "winogrande", ("allenai/winogrande", "winogrande_xl"), "validation", "train",
            {"sentence": str, "option1": str, "option2": str, "answer": str},
            prompt=lambda row: {"1": 0, "2": 1}[row["answer"]],
            choices=lambda row: [row["sentence"][: _winogrande_blank(row)] + option
                                 for option in (row["option1"], row["option2"])],
            target=lambda row: row["sentence"][_winogrande_blank(row) + 1 :].strip(),
            metrics=("acc",), check=_winogrande_check, multiple_input=True, has_test_split=False,
        ),
        Task(  # lm_eval/tasks/openbookqa/openbookqa.yaml
            "openbookqa", ("allenai/openbookqa", "main"), "test", "train",
            {"question_stem": str, "choices": dict, "answerKey": str},
            prompt=lambda row: row["question_stem"], choices=lambda row: row["choices"]["text"],
            target=lambda row: row["choices"]["label"].index(row["answerKey"].lstrip()),
            check=lambda row: _lettered_choices(row, row["answerKey"].lstrip()),
        ),
        Task(  # lm_eval/tasks/lambada/lambada_openai.yaml: the last word, greedy (acc) and its perplexity
            "lambada_openai", ("EleutherAI/lambada_openai", "default"), "test", "test", {"text": str},
            prompt=lambda row: " ".join(row["text"].split(" ")[:-1]),
            target=lambda row: " " + row["text"].split(" ")[-1], metrics=("perplexity", "acc"),
            check=_lambada_check,
        ),
        Task(  # lm_eval/tasks/super_glue/boolq/default.yaml
            "boolq", ("aps/super_glue", "boolq"), "validation", "train",
            {"passage": str, "question": str, "label": int},
            prompt=lambda row: f"{row['passage']}\nQuestion: {row['question']}?\nAnswer:",
            choices=lambda row: ["no", "yes"], target=lambda row: row["label"], metrics=("acc",),
            check=lambda row: _label_index(row, 2), has_test_split=False,
        ),
        Task(  # lm_eval/tasks/super_glue/copa/default.yaml and utils.py
            "copa", ("aps/super_glue", "copa"), "validation", "train",
            {"premise": str, "choice1": str, "choice2": str, "question": str, "label": int},
            prompt=lambda row: row["premise"].strip()[:-1] + " " + {"cause": "because", "effect": "therefore"}[
                row["question"]],
            choices=_copa_choices, target=lambda row: _copa_choices(row)[row["label"]], metrics=("acc",),
            check=_copa_check, has_test_split=False,
        ),
        Task(  # lm_eval/tasks/sciq/sciq.yaml
            "sciq", ("allenai/sciq", None), "test", "train",
            {"support": str, "question": str, "distractor1": str, "distractor2": str, "distractor3": str,
             "correct_answer": str},
            prompt=lambda row: f"{row['support'].lstrip()}\nQuestion: {row['question']}\nAnswer:",
            choices=lambda row: [row["distractor1"], row["distractor2"], row["distractor3"], row["correct_answer"]],
            target=lambda row: 3,
        ),
    ]
}  # fmt: skip
# lm_eval/tasks/arc/arc_challenge.yaml: arc_easy.yaml with another name and Hub config.
TASKS["arc_challenge"] = replace(TASKS["arc_easy"], name="arc_challenge", hub=("allenai/ai2_arc", "ARC-Challenge"))
TASKS = {name: TASKS[name] for name in ("hellaswag", "arc_easy", "arc_challenge", *TASKS)}  # lm-eval's listing order

# A uniform guess's accuracy per task (LAMBADA: any word of the vocabulary, so 0).
CHANCE = {"hellaswag": 0.25, "arc_easy": 0.25, "arc_challenge": 0.25, "piqa": 0.5, "winogrande": 0.5,
          "openbookqa": 0.25, "lambada_openai": 0.0, "boolq": 0.5, "copa": 0.5, "sciq": 0.25}  # fmt: skip

# `--tasks` groups: every task, as the tables of SmolLM, Pythia and TinyLlama report them.
GROUPS = {"small_model_suite": list(TASKS)}


def resolve_task_names(names: str | list[str]) -> list[str]:
    """Task names from a comma-separated string or a list, groups expanded, in order, each once."""
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",") if name.strip()]
    resolved: list[str] = []
    for name in names:
        for task in GROUPS.get(name, [name]):
            if task not in TASKS:
                known = ", ".join([*TASKS, *GROUPS])
                raise ValueError(f"unknown task {task!r}; known tasks and groups: {known}")
            if task not in resolved:
                resolved.append(task)
    if not resolved:
        raise ValueError(f"no task named; known tasks and groups: {', '.join([*TASKS, *GROUPS])}")
    return resolved
