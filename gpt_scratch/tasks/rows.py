"""A task's rows from where the user keeps them: the Hub dataset lm-eval reads (through `datasets` and its cache), a
local ``.jsonl`` / ``.json`` / ``.parquet`` file in the same schema (the split lm-eval scores), or a directory of
such files named by split (``train.jsonl``, ``test.jsonl``, ...: what few-shot examples need). Every row is checked
as it loads; a malformed one is an error naming the file, the line and the field."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..jsonl import json_lines
from .definitions import Row, Task

SUFFIXES = (".jsonl", ".json", ".parquet")


def _type_names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"str": "a string", "int": "an integer", "list": "a list", "dict": "an object"}[k.__name__]
                       for k in kinds)  # fmt: skip


def check_row(task: Task, row: Any, where: str) -> Row:
    """The row, processed as lm-eval processes it (``process_docs``), or a ValueError naming where and the field."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: a {task.name} row must be a JSON object, got {type(row).__name__}")
    for name, kind in task.schema.items():
        if name not in row:
            raise ValueError(f"{where}: missing field {name!r} ({task.name} rows need {', '.join(task.schema)})")
        value = row[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ValueError(f"{where}: field {name!r} must be {_type_names(kind)}, got {value!r}")
    problem = task.check(row)
    if problem:
        raise ValueError(f"{where}: {problem}")
    return task.process(row) if task.process else row


def _read_file(task: Task, path: Path) -> list[Row]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return [check_row(task, row, f"{path} row {i}") for i, row in enumerate(pq.read_table(path).to_pylist())]
    return [check_row(task, row, f"{path}:{number}") for number, row in json_lines(path)]


def _split_file(task: Task, directory: Path, split: str) -> Path | None:
    for suffix in SUFFIXES:
        if (directory / f"{split}{suffix}").is_file():
            return directory / f"{split}{suffix}"
    return None


def load_split(task: Task, source: str | Sequence[Row] | None, split: str) -> list[Row]:
    """The rows of ``split``: from the Hub (``source`` None or a dataset id), a file (the scored split only), a
    directory of split files, or rows already in memory (the scored split)."""
    if source is not None and not isinstance(source, str):
        if split != task.eval_split:
            raise ValueError(f"{task.name}: rows given in memory are its {task.eval_split} split; the {split} split "
                             "(few-shot examples) needs a directory holding a file per split")  # fmt: skip
        return [check_row(task, dict(row), f"{task.name} row {i}") for i, row in enumerate(source)]
    if source is not None:
        path = Path(source).expanduser()
        if path.is_dir():
            found = _split_file(task, path, split)
            if found is None:
                raise FileNotFoundError(
                    f"{task.name}: {path} has no {split}.jsonl, {split}.json or {split}.parquet (its {split} split)"
                )
            return _read_file(task, found)
        if path.suffix in SUFFIXES:
            if not path.is_file():
                raise FileNotFoundError(f"{task.name}: data file not found: {path}")
            if split != task.eval_split:
                raise ValueError(
                    f"{task.name}: {path} is one file, its {task.eval_split} split; few-shot examples come from its "
                    f"{split} split: pass a directory holding {task.eval_split}.jsonl and {split}.jsonl"
                )
            return _read_file(task, path)
        if path.exists():
            raise ValueError(f"{task.name}: {path} must be a .jsonl, .json or .parquet file, or a directory of them")
    return _hub_split(task, source, split)


def _hub_split(task: Task, dataset_id: str | None, split: str) -> list[Row]:
    import datasets

    path, name = (dataset_id, None) if dataset_id else task.hub
    try:
        dataset = datasets.load_dataset(path, name, split=split)
    except ConnectionError as error:
        raise ConnectionError(
            f"{task.name}: could not reach the Hugging Face Hub for {path!r} ({error}); pass local files in its "
            f"schema instead (eval.py: --data {task.name}=PATH; train.py: eval_task_data: {{{task.name}: PATH}})"
        ) from error
    return [check_row(task, dict(row), f"{path} {split} row {i}") for i, row in enumerate(dataset)]
