"""CORE, the DCLM paper's base-model score (nanochat's "time to GPT-2" leaderboard), scored item for item as
nanochat's ``core_eval.py`` scores it, on the log-likelihood engine the other tasks use.

The bundle (DCLM's eval bundle as nanochat reads it, ``EVAL_BUNDLE_URL``) is a directory with ``core.yaml`` (its
``icl_tasks``: each task's ``label``, ``icl_task_type``, ``dataset_uri``, ``num_fewshot`` and
``continuation_delimiter``), ``eval_data/<dataset_uri>`` (JSON lines) and ``eval_meta_data.csv`` (each task's
``Random baseline``, in percent). For each task:

- the rows are shuffled with ``random.Random(1337)``, then ``max_per_task`` keeps the first N;
- item i's few-shot examples are ``random.Random(1234 + i).sample`` of the other kept items;
- prompts: few-shot examples each ``ANSWERED + "\\n\\n"``, then the item; multiple choice renders
  ``query + delimiter + choice`` per choice, schema ``context_option + delimiter + continuation`` per option,
  language modelling ``context.strip() + delimiter [+ continuation]`` (the prompt without it stripped);
- each prompt is tokenized whole with the beginning-of-sequence token first; the scored tokens are what the options
  do not share (multiple choice: after their common prefix; schema: their common suffix; language modelling: past
  the prompt without the continuation); a sequence past the model's context keeps its last ``n_positions`` tokens;
- multiple choice and schema: correct when the gold option has the lowest mean loss over its scored tokens;
  language modelling: correct when greedy decoding gives every scored token;
- each task's accuracy is centred on its random baseline, ``(acc - b/100) / (1 - b/100)``; CORE is their mean.
"""

import csv
import json
import os
import random
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVAL_BUNDLE_URL = "https://karpathy-public.s3.us-west-2.amazonaws.com/eval_bundle.zip"  # nanochat's base_eval.py
GPT2_XL_CORE = 0.256525  # GPT-2 1.5B: the line nanochat's "time to GPT-2" leaderboard races to
SHUFFLE_SEED, FEWSHOT_SEED = 1337, 1234
TASK_TYPES = ("multiple_choice", "schema", "language_modeling")
FIELDS = {"multiple_choice": ("query", "choices", "gold"), "schema": ("context_options", "continuation", "gold"),
          "language_modeling": ("context", "continuation")}  # fmt: skip
PREFIX = "core:"  # a CORE task by its label (core:jeopardy), apart from the lm-eval tasks of the same names


@dataclass(frozen=True)
class CoreTask:
    label: str
    task_type: str
    dataset_uri: str
    num_fewshot: int
    delimiter: str
    random_baseline: float  # percent


def core_names(names: list[str]) -> tuple[list[str] | None, list[str]]:
    """The CORE tasks among task names (``core``: all of them, ``[]``; ``core:LABEL``: that one; None: no CORE task),
    and the other names."""
    wanted: list[str] | None = None
    others = []
    for name in names:
        if name == "core":
            wanted = []
        elif name.startswith(PREFIX):
            if wanted != []:
                wanted = [*(wanted or []), name[len(PREFIX) :]]
        else:
            others.append(name)
    return wanted, others


def cache_directory() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpt_scratch" / "eval_bundle"


def bundle_directory(given: str | None = None) -> Path:
    """The bundle: ``given`` (a directory), else the cached download, else downloaded now into the cache; offline
    and not cached, a FileNotFoundError saying what to download and where to put it."""
    if given is not None:
        directory = Path(given).expanduser()
        if not (directory / "core.yaml").is_file():
            raise FileNotFoundError(f"{given} is not a CORE eval bundle: it has no core.yaml (give the directory "
                                    f"{EVAL_BUNDLE_URL} unzips to)")  # fmt: skip
        return directory
    cached = cache_directory()
    if (cached / "core.yaml").is_file():
        return cached
    from ..hub import offline_already

    if offline_already():
        raise FileNotFoundError(_not_cached("HF_HUB_OFFLINE is set"))
    cached.parent.mkdir(parents=True, exist_ok=True)
    archive = cached.parent / "eval_bundle.zip.partial"
    try:
        urllib.request.urlretrieve(EVAL_BUNDLE_URL, archive)  # noqa: S310 (a fixed https URL)
    except OSError as error:
        archive.unlink(missing_ok=True)
        raise FileNotFoundError(_not_cached(f"the download failed: {error}")) from None
    unpacked = cached.parent / "eval_bundle.partial"
    shutil.rmtree(unpacked, ignore_errors=True)
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(unpacked)
    inner = next((p.parent for p in unpacked.rglob("core.yaml")), unpacked)
    inner.rename(cached)
    shutil.rmtree(unpacked, ignore_errors=True)
    archive.unlink(missing_ok=True)
    return cached


def _not_cached(why: str) -> str:
    return (
        f"the CORE eval bundle is not cached and cannot be downloaded ({why}); download {EVAL_BUNDLE_URL}, unzip it "
        f"to {cache_directory()} (the directory holding core.yaml), or give one with --data core=DIR"
    )


def read_bundle(directory: Path, labels: list[str] | None = None) -> list[CoreTask]:
    """The bundle's tasks (``labels``: those only; an unknown one is refused), in core.yaml's order, each with its
    random baseline; a ValueError naming the file and what is missing. A task not asked for is not checked."""
    import yaml

    config_file, meta_file = directory / "core.yaml", directory / "eval_meta_data.csv"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{meta_file} is missing: the CORE bundle's random baselines")
    config = yaml.safe_load(config_file.read_text()) or {}
    if not isinstance(config.get("icl_tasks"), list) or not config["icl_tasks"]:
        raise ValueError(f"{config_file} has no icl_tasks list")
    with meta_file.open(newline="") as handle:
        baselines = {row["Eval Task"]: row["Random baseline"] for row in csv.DictReader(handle)}
    tasks = []
    for index, entry in enumerate(config["icl_tasks"]):
        missing = [key for key in ("label", "icl_task_type", "dataset_uri", "num_fewshot") if key not in entry]
        if missing:
            raise ValueError(f"{config_file}: icl_tasks entry {index + 1} has no {', '.join(missing)}")
        label, task_type = entry["label"], entry["icl_task_type"]
        if labels and label not in labels:
            continue
        if task_type not in TASK_TYPES:
            raise ValueError(f"{config_file}: {label}'s icl_task_type {task_type!r} is not one CORE scores "
                             f"({', '.join(TASK_TYPES)})")  # fmt: skip
        if label not in baselines:
            raise ValueError(f"{meta_file} has no random baseline for {label} (a row with Eval Task {label})")
        fewshot = entry["num_fewshot"][0] if isinstance(entry["num_fewshot"], list) else entry["num_fewshot"]
        tasks.append(CoreTask(label, task_type, entry["dataset_uri"], int(fewshot),
                              entry.get("continuation_delimiter", " "), float(baselines[label])))  # fmt: skip
    known = [entry.get("label") for entry in config["icl_tasks"]]
    if unknown := [label for label in labels or [] if label not in known]:
        raise ValueError(f"unknown CORE task(s) {', '.join(unknown)}; the bundle's: {', '.join(map(str, known))}")
    return tasks


def task_rows(directory: Path, task: CoreTask, max_per_task: int | None = None) -> list[dict[str, Any]]:
    """The task's rows, checked, shuffled with Random(1337), the first ``max_per_task`` kept."""
    path = directory / "eval_data" / task.dataset_uri
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {task.label}'s rows")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path} is empty: {task.label} has no rows")
    for number, row in enumerate(rows, 1):
        missing = [field for field in FIELDS[task.task_type] if field not in row]
        if missing:
            raise ValueError(f"{path}, row {number}: a {task.task_type} row needs {', '.join(missing)}")
    random.Random(SHUFFLE_SEED).shuffle(rows)
    return rows[:max_per_task] if max_per_task else rows


def prompts(task: CoreTask, rows: list[dict[str, Any]], index: int) -> list[str]:
    """The prompts of item ``index`` (one per option; language modelling: without and with the continuation)."""
    item, delimiter = rows[index], task.delimiter
    shots = []
    if task.num_fewshot > 0:
        others = [i for i in range(len(rows)) if i != index]
        shots = [rows[i] for i in random.Random(FEWSHOT_SEED + index).sample(others, task.num_fewshot)]
    if task.task_type == "multiple_choice":
        shown = "".join(f"{s['query']}{delimiter}{s['choices'][s['gold']]}\n\n" for s in shots)
        return [f"{shown}{item['query']}{delimiter}{choice}" for choice in item["choices"]]
    if task.task_type == "schema":
        shown = "".join(f"{s['context_options'][s['gold']]}{delimiter}{s['continuation']}\n\n" for s in shots)
        return [f"{shown}{option}{delimiter}{item['continuation']}" for option in item["context_options"]]
    shown = "".join(f"{s['context'].strip()}{delimiter}{s['continuation']}\n\n" for s in shots)
    opened = f"{shown}{item['context'].strip()}{delimiter}"
    return [opened.strip(), opened + item["continuation"]]


def _common(sequences: list[list[int]], from_end: bool) -> int:
    shortest = min(map(len, sequences))
    for offset in range(shortest):
        position = -1 - offset if from_end else offset
        if any(seq[position] != sequences[0][position] for seq in sequences):
            return offset
    return shortest


def item_requests(task: CoreTask, rows: list[dict[str, Any]], index: int, tokenizer, max_length: int
                  ) -> list[tuple[list[int], list[int]]]:  # fmt: skip
    """(context ids, scored ids) per option of item ``index``: each prompt tokenized whole after the
    beginning-of-sequence token, split where the options part (see the module's docstring), and cut on the left to
    the model's ``max_length`` tokens as nanochat cuts them."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    encoded = [[bos, *ids] for ids in tokenizer(prompts(task, rows, index), add_special_tokens=False)["input_ids"]]
    if task.task_type == "multiple_choice":
        start = _common(encoded, from_end=False)
        splits = [(seq[:start], seq[start:]) for seq in encoded]
    elif task.task_type == "schema":
        shared = _common(encoded, from_end=True)
        splits = [(seq[: len(seq) - shared], seq[len(seq) - shared :]) for seq in encoded]
    else:
        without, whole = encoded
        if whole[: len(without)] != without or len(whole) <= len(without):
            raise ValueError(f"{task.label}: item {index}'s prompt does not tokenize as a prefix of itself with its "
                             "continuation")  # fmt: skip
        splits = [(without, whole[len(without) :])]
    cut = []
    for context, scored in splits:
        excess = len(context) + len(scored) - max_length
        cut.append((context[excess:] if excess > 0 else context, scored))  # the last max_length tokens
    return cut


def check_core_bundle(bundle: str | None, labels: list[str], max_per_task: int | None) -> Path:
    """The bundle a run scores CORE on, every task asked for read and checked before step 1 (not at the first
    evaluation, hours in): its directory."""
    directory = bundle_directory(bundle)
    for task in read_bundle(directory, labels):
        task_rows(directory, task, max_per_task)
    return directory


def centered(accuracy: float, random_baseline: float) -> float:
    return (accuracy - random_baseline / 100) / (1 - random_baseline / 100)


def evaluate_core(model, tokenizer, bundle: str | Path | None = None, labels: list[str] | None = None,
                  max_per_task: int | None = None, batch_size: int = 32, accelerator=None,
                  progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """``{"core": the mean centred accuracy, "tasks": {label: {"acc", "centered", "n", "random_baseline"}},
    "correct": {label: [0/1 per item, in the shuffled order]}, "losses": {label: [per item: each option's mean loss
    over its scored tokens (language modelling: the one)]}}`` over the bundle's tasks (``labels``: some of them).
    Items of every task are scored in one batched pass; with an ``accelerator`` each process scores a share and all
    get the whole result."""
    from ..loglikelihood import model_max_length
    from .scoring import gathered_outcomes, request_scores

    directory = bundle_directory(None if bundle is None else str(bundle))
    tasks = read_bundle(directory, labels)
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    max_length = model_max_length(model)
    rows = {task.label: task_rows(directory, task, max_per_task) for task in tasks}
    mine = [(task, i) for task in tasks for i in range(rank, len(rows[task.label]), world)]
    requests = [item_requests(task, rows[task.label], i, tokenizer, max_length) for task, i in mine]
    greedy = [task.task_type == "language_modeling" for (task, _), item in zip(mine, requests) for _ in item]
    scores = iter(request_scores(model, [request for item in requests for request in item], greedy, batch_size,
                                 progress))  # fmt: skip
    outcomes: dict[str, list[tuple[int, list[float]]]] = {task.label: [] for task in tasks}
    losses: dict[str, list[list[float]]] = {task.label: [] for task in tasks}
    for (task, i), item in zip(mine, requests):
        item_scores = [next(scores) for _ in item]
        mean_losses = [-loglik / count for loglik, count, _ in item_scores]
        if task.task_type == "language_modeling":
            correct = bool(item_scores[0][2])
        else:
            correct = mean_losses.index(min(mean_losses)) == rows[task.label][i]["gold"]
        outcomes[task.label].append((i, [float(correct)]))
        losses[task.label].append(mean_losses)  # this process's items, in their order
    correct = {task.label: gathered_outcomes(outcomes[task.label], len(rows[task.label]), accelerator, width=1)[:, 0]
               .tolist() for task in tasks}  # fmt: skip
    results = {}
    for task in tasks:
        accuracy = sum(correct[task.label]) / len(correct[task.label])
        results[task.label] = {"acc": accuracy, "centered": centered(accuracy, task.random_baseline),
                               "n": len(correct[task.label]), "random_baseline": task.random_baseline}  # fmt: skip
    core = sum(result["centered"] for result in results.values()) / len(results)
    return {"core": core, "tasks": results, "correct": correct, "losses": losses}
