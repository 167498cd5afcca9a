"""HellaSwag scored exactly as lm-evaluation-harness's ``hellaswag`` task scores it, for any causal LM, faster.

What the harness does (and so what this module does, step by step):
1. query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()); choices = [preprocess(e) for e in
   endings]; gold = int(label). ``preprocess`` strips, turns " [title]" into ". ", removes ``[...]`` tags, then
   replaces double spaces with single ones in one pass (so a triple space leaves a double one, as in the harness).
2. Each choice is a continuation " " + choice of the query. Trailing whitespace of the context moves onto the
   continuation; context + continuation are tokenized together and the continuation is the tokens past the
   context's own tokenization; the input is left-truncated to the model's maximum length.
3. acc = argmax of the continuation's summed log-likelihood; acc_norm = argmax of that sum divided by the choice's
   length in characters; stderr = sample standard deviation / sqrt(n).

The speed comes from batching: every (example, ending) sequence is sorted by length and run in batches, padded on
the left so that all continuations end at the last position and only those last positions go through the LM head
and log-softmax. ``style="nanogpt"`` scores the way build-nanogpt's hellaswag.py does (raw ``ctx``, mean
per-token log-likelihood) so curves from that project can be compared.
"""

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .jsonl import json_lines
from .loglikelihood import continuation_logliks, encode_pairs, model_max_length  # noqa: F401 (this module's API)
from .tasks.definitions import hellaswag_preprocess as preprocess

HUB_DATASET = "Rowan/hellaswag"
REQUIRED_FIELDS = ("activity_label", "ctx_a", "ctx_b", "endings", "label")


@dataclass(frozen=True)
class Example:
    """One HellaSwag item as the scorer sees it."""

    context: str
    choices: tuple[str, ...]
    gold: int


def _validate_row(row: dict[str, Any], where: str) -> dict[str, Any]:
    for field in REQUIRED_FIELDS:
        if field not in row:
            raise ValueError(f"{where}: missing field {field!r} (HellaSwag rows need {', '.join(REQUIRED_FIELDS)})")
    endings = row["endings"]
    if not isinstance(endings, list) or len(endings) != 4 or not all(isinstance(e, str) for e in endings):
        count = len(endings) if isinstance(endings, list) else type(endings).__name__
        raise ValueError(f"{where}: field 'endings' must be a list of 4 strings, got {count}")
    for number, ending in enumerate(endings):
        if not preprocess(ending):  # acc_norm divides by the ending's length: an empty one has no score
            raise ValueError(f"{where}: ending {number} is empty (after HellaSwag's preprocessing): {ending!r}")
    label = row["label"]
    # An int, or a string of digits as the Hub's copy stores it; never a float (2.7) or bool silently truncated.
    is_digits = isinstance(label, str) and label.strip().isdigit()
    if not (is_digits or (isinstance(label, int) and not isinstance(label, bool))):
        raise ValueError(f"{where}: field 'label' must be an integer 0-3, got {row['label']!r}")
    label = int(label)
    if not 0 <= label < 4:
        raise ValueError(f"{where}: field 'label' is {label}, out of range 0-3")
    for field in ("activity_label", "ctx_a", "ctx_b"):
        if not isinstance(row[field], str):
            raise ValueError(f"{where}: field {field!r} must be a string, got {type(row[field]).__name__}")
    return row


def to_example(row: dict[str, Any], style: str = "lm-eval") -> Example:
    if style == "nanogpt":  # build-nanogpt renders the raw ctx field and scores " " + ending
        context = row.get("ctx") or (row["ctx_a"] + " " + row["ctx_b"]).strip()
        return Example(context, tuple(row["endings"]), int(row["label"]))
    context = preprocess(row["activity_label"] + ": " + row["ctx_a"] + " " + row["ctx_b"].capitalize())
    return Example(context, tuple(preprocess(e) for e in row["endings"]), int(row["label"]))


def load_rows(data: str | Sequence[dict[str, Any]], split: str = "validation") -> list[dict[str, Any]]:
    """HellaSwag rows from a .jsonl/.json/.parquet file, a list of dicts, or a Hub dataset id (``Rowan/hellaswag``).

    Every row is checked; a malformed one is an error naming the file, the line (or row) and the field.
    """
    if not isinstance(data, str):
        return [_validate_row(dict(row), f"row {i}") for i, row in enumerate(data)]
    path = Path(data).expanduser()
    if path.suffix in (".jsonl", ".json"):
        if not path.is_file():
            raise FileNotFoundError(f"HellaSwag file not found: {path}")
        return [_validate_row(row, f"{path}:{number}") for number, row in json_lines(path)]
    if path.suffix == ".parquet":
        if not path.is_file():
            raise FileNotFoundError(f"HellaSwag file not found: {path}")
        import pyarrow.parquet as pq

        table = pq.read_table(path).to_pylist()
        return [_validate_row(row, f"{path} row {i}") for i, row in enumerate(table)]
    if path.exists():
        raise ValueError(f"{path}: HellaSwag data must be a .jsonl, .json or .parquet file")
    from datasets import load_dataset

    try:
        dataset = load_dataset(data, split=split)
    except ConnectionError as error:
        raise ConnectionError(
            f"could not reach the Hugging Face Hub for {data!r} ({error}); pass a local .jsonl/.parquet file in "
            "HellaSwag's schema instead"
        ) from error
    return [_validate_row(dict(row), f"{data} row {i}") for i, row in enumerate(dataset)]


def _mean_and_stderr(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def evaluate_hellaswag(
    model,
    tokenizer,
    data: str | Sequence[dict[str, Any]],
    batch_size: int = 32,
    limit: int | None = None,
    style: str = "lm-eval",
    accelerator=None,
    progress: bool = False,
    return_details: bool = False,
) -> dict[str, Any]:
    """HellaSwag accuracy of any causal LM: ``{"acc", "acc_norm", "acc_stderr", "acc_norm_stderr", "n"}``.

    ``data``: a file, a Hub id, or rows already loaded. ``accelerator``: an ``accelerate.Accelerator`` whose processes
    each score a share of the examples; every process gets the gathered result. ``return_details`` adds each
    example's per-ending log-likelihoods under ``"details"`` (on a single process).
    """
    if style not in ("lm-eval", "nanogpt"):
        raise ValueError(f"style must be 'lm-eval' or 'nanogpt', got {style!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size ({batch_size}) must be positive")
    rows = load_rows(data)
    examples = [to_example(row, style) for row in rows[:limit]]
    if not examples:
        raise ValueError("no HellaSwag examples to score")
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    indices = list(range(rank, len(examples), world))

    requests = encode_pairs(
        tokenizer, [(examples[i].context, " " + choice) for i in indices for choice in examples[i].choices]
    )
    scores = continuation_logliks(model, requests, batch_size, progress=progress and rank == 0)

    correct, correct_norm, details = [], [], []
    for k, i in enumerate(indices):
        ex = examples[i]
        logliks = [s for s, _, _ in scores[4 * k : 4 * k + 4]]
        if style == "nanogpt":
            normed = [s / n for s, n, _ in scores[4 * k : 4 * k + 4]]  # mean per-token log-likelihood
        else:
            normed = [s / len(choice) for s, choice in zip(logliks, ex.choices)]  # per character
        correct.append(float(max(range(4), key=lambda j: logliks[j]) == ex.gold))
        correct_norm.append(float(max(range(4), key=lambda j: normed[j]) == ex.gold))
        details.append({"index": i, "logliks": logliks, "gold": ex.gold})

    if accelerator is not None and world > 1:
        # Pad to equal length (a -1 marks padding), gather, and drop the padding.
        size = math.ceil(len(examples) / world)
        local = torch.full((size, 2), -1.0, device=accelerator.device)
        local[: len(correct)] = torch.tensor([correct, correct_norm], device=accelerator.device).T
        gathered = accelerator.gather(local).cpu()
        gathered = gathered[gathered[:, 0] >= 0]
        correct, correct_norm = gathered[:, 0].tolist(), gathered[:, 1].tolist()

    acc, acc_stderr = _mean_and_stderr(correct)
    acc_norm, acc_norm_stderr = _mean_and_stderr(correct_norm)
    result = {"acc": acc, "acc_norm": acc_norm, "acc_stderr": acc_stderr, "acc_norm_stderr": acc_norm_stderr}
    result["n"] = len(correct)
    if return_details:
        result["details"] = details
    return result


def write_lm_eval_task(data_file: str | Path, out_dir: str | Path, task_name: str = "hellaswag_local") -> Path:
    """Write an lm-evaluation-harness task that is the ``hellaswag`` task on a local file, for ``--include_path``.

    It reuses the harness's own ``process_docs``, so only the data source differs from ``--tasks hellaswag``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_file = Path(data_file).resolve()
    builder = "parquet" if data_file.suffix == ".parquet" else "json"
    (out_dir / "utils.py").write_text("from lm_eval.tasks.hellaswag.utils import preprocess, process_docs  # noqa\n")
    (out_dir / f"{task_name}.yaml").write_text(
        f"""task: {task_name}
dataset_path: {builder}
dataset_name: null
dataset_kwargs:
  data_files:
    validation: {json.dumps(str(data_file))}
output_type: multiple_choice
validation_split: validation
test_split: null
process_docs: !function utils.process_docs
doc_to_text: "{{{{query}}}}"
doc_to_target: "{{{{label}}}}"
doc_to_choice: "choices"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
    )
    return out_dir
