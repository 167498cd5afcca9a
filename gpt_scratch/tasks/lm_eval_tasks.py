"""Local-file copies of lm-eval's own tasks, for ``lm_eval --include_path``: each includes the harness's YAML as
it is (prompt, choices, metrics, helper functions) and changes only where the rows come from, so lm-eval runs
offline on the same files ``eval.py tasks`` scores."""

import json
from collections.abc import Mapping
from pathlib import Path

from .definitions import TASKS, resolve_task_names
from .rows import SUFFIXES

# Each task's YAML inside the lm_eval package.
LM_EVAL_YAML = {"hellaswag": "hellaswag/hellaswag.yaml", "arc_easy": "arc/arc_easy.yaml",
                "arc_challenge": "arc/arc_challenge.yaml", "piqa": "piqa/piqa.yaml",
                "winogrande": "winogrande/default.yaml", "openbookqa": "openbookqa/openbookqa.yaml",
                "lambada_openai": "lambada/lambada_openai.yaml", "boolq": "super_glue/boolq/default.yaml",
                "copa": "super_glue/copa/default.yaml", "sciq": "sciq/sciq.yaml"}  # fmt: skip
SPLIT_KEYS = {"train": "training_split", "validation": "validation_split", "test": "test_split"}


def _lm_eval_tasks_dir() -> Path:
    try:
        import lm_eval.tasks
    except ImportError as error:
        raise ImportError("lm-eval is not installed: pip install 'lm-eval[hf]'") from error
    return Path(lm_eval.tasks.__file__).parent


def _split_files(name: str, source: str) -> dict[str, Path]:
    """The files of the splits the task reads (scored, few-shot): another split in the copy could change which one
    lm-eval scores, or whether it leaves the scored item out of the few-shot draw."""
    path = Path(source).expanduser().resolve()
    task = TASKS[name]
    if path.is_dir():
        files = {split: path / f"{split}{suffix}" for split in (task.eval_split, task.fewshot_split)
                 for suffix in SUFFIXES if (path / f"{split}{suffix}").is_file()}  # fmt: skip
    elif path.is_file() and path.suffix in SUFFIXES:
        files = {TASKS[name].eval_split: path}
    else:
        raise FileNotFoundError(f"{name}: {source} is neither a .jsonl/.json/.parquet file nor a directory of them")
    if TASKS[name].eval_split not in files:
        raise FileNotFoundError(f"{name}: {source} has no {TASKS[name].eval_split} split, the one lm-eval scores")
    return files


def write_lm_eval_tasks(data: Mapping[str, str], out_dir: str | Path, suffix: str = "_local") -> list[str]:
    """Write ``<task><suffix>.yaml`` for each task in ``data`` (task -> file or directory of split files) into
    ``out_dir``; returns the task names to pass to lm-eval's ``--tasks``. The copy reads the split lm-eval scores and,
    where given, the one its few-shot examples come from."""
    lm_eval_dir = _lm_eval_tasks_dir()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for name in resolve_task_names(list(data)):
        files = _split_files(name, data[name])
        kinds = {"parquet" if f.suffix == ".parquet" else "json" for f in files.values()}
        if len(kinds) != 1:
            raise ValueError(f"{name}: its split files must be all .parquet or all .jsonl/.json")
        splits = "\n".join(f"{key}: {split if split in files else 'null'}" for split, key in SPLIT_KEYS.items())
        data_files = "\n".join(f"    {split}: {json.dumps(str(path))}" for split, path in files.items())
        (out_dir / f"{name}{suffix}.yaml").write_text(
            f"include: {json.dumps(str(lm_eval_dir / LM_EVAL_YAML[name]))}\n"
            f"task: {name}{suffix}\ntag: []\ndataset_path: {kinds.pop()}\ndataset_name: null\n"
            f"dataset_kwargs:\n  data_files:\n{data_files}\n{splits}\n"
        )
        names.append(f"{name}{suffix}")
    return names
