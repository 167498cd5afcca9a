"""Whole-run checkpoints, written atomically, so a killed run resumes to exactly the same weights.

A checkpoint is a directory ``step-000123`` holding what Accelerate saves (model, optimizer, scheduler, every
process's RNG states), each process's data-pipeline state, the step, and the config. It is written as
``.tmp-step-000123`` and renamed only once every process has finished writing, so a directory named ``step-*`` is
always complete; ``resume="auto"`` ignores anything else, such as the half-written directory of a run killed while
saving.
"""

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch

_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints in ``run_dir``, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def resolve_resume(resume: str | None, run_dir: str | Path) -> Path | None:
    """The checkpoint to resume from: None, the newest complete one (``"auto"``), or a given directory."""
    if resume is None:
        return None
    if resume == "auto":
        found = checkpoint_dirs(run_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no trainer_state.json); use --resume auto")
    return path


def save_checkpoint(
    accelerator, run_dir: str | Path, step: int, data_state: dict[str, Any], trainer_state: dict[str, Any], keep: int
) -> Path:
    """Save everything needed to continue after ``step``; every process must call it."""
    root = Path(run_dir) / "checkpoints"
    final = root / f"step-{step:06d}"
    staging = root / f".tmp-step-{step:06d}"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    torch.save(data_state, staging / f"data_state_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / "trainer_state.json").write_text(json.dumps({**trainer_state, "step": step}, indent=2))
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)  # the atomic moment: before it the checkpoint does not exist, after it is complete
        for old in checkpoint_dirs(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore model, optimizer, scheduler and RNG states; returns (this process's data state, trainer state)."""
    accelerator.load_state(str(path))
    data_file = path / f"data_state_{accelerator.process_index}.pt"
    if not data_file.is_file():
        raise ValueError(
            f"{path} was saved by fewer processes than this run has ({accelerator.num_processes}); "
            "resume with the same number of processes"
        )
    data_state = torch.load(data_file, weights_only=True)
    trainer_state = json.loads((path / "trainer_state.json").read_text())
    return data_state, trainer_state
