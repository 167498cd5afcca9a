"""A local model directory's files, checked before transformers loads them: a damaged or hostile file is one line
naming it, never a traceback from deep inside safetensors, json or torch.

What transformers would say instead: ``SafetensorError: ... incomplete metadata`` for a truncated download,
``JSONDecodeError`` without the file's name for a config edited by hand, and, for a ``pytorch_model.bin`` that holds
code (a pickle with a ``__reduce__``), torch's refusal followed by the advice to retry with ``weights_only=False``:
the one thing never to do with such a file. Nothing here runs code from a file.
"""

import json
from pathlib import Path

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def model_directory_problem(directory: Path) -> str | None:
    """Why the model directory ``directory`` cannot be loaded as it is, or None: its config, its weights."""
    config = directory / "config.json"
    if not config.is_file():
        held = ", ".join(sorted(p.name for p in directory.iterdir())[:6]) or "nothing"
        return f"{directory} has no config.json: it is not a model directory (it holds {held})"
    try:
        if not isinstance(json.loads(config.read_text()), dict):
            return f"{config} is not a model config (a JSON object); save the model again"
    except (UnicodeDecodeError, ValueError) as error:
        return f"{config} is not valid JSON ({error}); fix it, or save or download the model again"
    weights = [directory / name for name in WEIGHT_FILES if (directory / name).is_file()]
    if not weights:
        return (
            f"{directory} has no weights (none of {', '.join(WEIGHT_FILES)}); save the model with save_pretrained, "
            "or export a checkpoint with python -m gpt_scratch.export"
        )
    return next(filter(None, map(_weights_problem, _shards(weights[0]))), None)


def _shards(weights: Path) -> list[Path]:
    """The files that hold the weights: the file itself, or every shard an index names."""
    if not weights.name.endswith(".index.json"):
        return [weights]
    try:
        names = sorted(set(json.loads(weights.read_text())["weight_map"].values()))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return [weights]  # reported as damaged by _weights_problem
    return [weights.parent / name for name in names]


def _weights_problem(path: Path) -> str | None:
    if path.name.endswith(".index.json"):
        return f"{path} is damaged (not an index of weight shards); save or download the model again"
    if not path.is_file():
        return f"{path} is missing (a shard its index names); save or download the model again"
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "pt"):  # reads and checks the header against the file's size
                return None
        except (SafetensorError, OSError) as error:
            return (
                f"{path} is damaged ({error}: truncated, or not a safetensors file); save or download the model again"
            )
    import torch

    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as error:  # torch's reader says so in several exception types
        return f"{path} is damaged or not a PyTorch weights file ({error}); save or download the model again"
    if unsafe:
        return (
            f"{path} holds objects that are not weights ({', '.join(sorted(unsafe))}): loading it could run code, so "
            "it is not loaded. Use the model's safetensors weights, or a copy from a source you trust, saved again "
            "with save_pretrained (safe_serialization)"
        )
    return None


def check_model_directory(directory: str | Path, role: str = "") -> None:
    """Raise, in one line naming the file (and ``role``: e.g. ``init_from runs/x``), if ``directory`` cannot be
    loaded as a model."""
    if problem := model_directory_problem(Path(directory)):
        raise ValueError(f"{role}: {problem}" if role else problem)
