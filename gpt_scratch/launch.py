"""Did this run get the processes (and the parallelism) it was launched for? A launcher that silently starts fewer,
or silently runs DDP where FSDP was configured, wastes a whole run.

The case that bites: ``accelerate launch --num_processes 2 train.py`` on a machine without GPUs. Without
``--multi_gpu`` Accelerate's simple launcher starts one process, and says so only in a "processes 1" somewhere in
the log. It does leave traces: it sets ``MASTER_ADDR``/``MASTER_PORT`` when asked for more than one process, but no
``WORLD_SIZE``, and its own command line (this process's parent) carries the number asked for.
"""

import os
import re
import shlex
from pathlib import Path

from .requeue import COMMAND_ENV

CPU_MULTI_PROCESS = "accelerate launch --multi_gpu --num_processes N train.py ... (or torchrun --nproc_per_node N)"


def _parent_arguments() -> list[str]:
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:  # not Linux, or no /proc: the environment variables still tell
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _parent_command_line() -> str:
    return " ".join(_parent_arguments())


def launcher_command(environ: dict[str, str] | None = None, parent: list[str] | None = None) -> list[str] | None:
    """The command that started this process and its peers (``torchrun ...``, ``accelerate launch ...``, with
    train.py and its arguments), or None when train.py runs alone. A resume must use it: the process count is part of
    the run, so a bare ``python train.py`` would be refused."""
    environ = dict(os.environ) if environ is None else environ
    if wrapper := environ.get(COMMAND_ENV):  # python -m gpt_scratch.requeue LAUNCHER ...: the whole command
        return shlex.split(wrapper)
    if "TORCHELASTIC_RUN_ID" not in environ and int(environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    parent = _parent_arguments() if parent is None else parent
    if not parent:
        return None
    if Path(parent[0]).name.startswith("python"):
        parent = ["python", *parent[1:]]
        if len(parent) > 1 and Path(parent[1]).name in ("torchrun", "accelerate"):  # console scripts run by python
            parent = [Path(parent[1]).name, *parent[2:]]
    elif Path(parent[0]).name in ("torchrun", "accelerate"):
        parent = [Path(parent[0]).name, *parent[1:]]
    return parent


def requested_processes(environ: dict[str, str], parent_command: str) -> tuple[int, str] | None:
    """(processes the launcher was asked for, where that number comes from), or None when nothing says."""
    for name in ("WORLD_SIZE", "ACCELERATE_NUM_PROCESSES"):
        if environ.get(name, "").isdigit():
            return int(environ[name]), f"{name}={environ[name]}"
    launched_by_accelerate = "ACCELERATE_MIXED_PRECISION" in environ
    if launched_by_accelerate and "MASTER_ADDR" in environ:
        asked = re.search(r"--num[_-]processes[ =](\d+)", parent_command)
        count = int(asked.group(1)) if asked else 2
        return count, f"accelerate launch --num_processes {asked.group(1) if asked else '>1'}"
    return None


def launch_mismatch(num_processes: int, environ: dict[str, str] | None = None) -> str | None:
    """A warning when this run has fewer processes than its launcher was asked for, else None."""
    environ = dict(os.environ) if environ is None else environ
    requested = requested_processes(environ, _parent_command_line())
    if requested is None or requested[0] <= num_processes:
        return None
    count, origin = requested
    return (
        f"launched for {count} processes ({origin}) but running as {num_processes}, so the run does the work of "
        f"{count} on the hardware of {num_processes}. On a machine without GPUs, Accelerate starts "
        f"several processes only with --multi_gpu: {CPU_MULTI_PROCESS.replace('N', str(count))}"
    )


def fsdp_mismatch(distributed_type: str, environ: dict[str, str] | None = None) -> str | None:
    """A warning when the Accelerate config asked for FSDP and this run is something else, else None.

    ``accelerate launch --config_file`` with ``distributed_type: FSDP`` sets ``ACCELERATE_USE_FSDP``; Accelerate sets
    up FSDP only on accelerators, so on a machine without GPUs the run is DDP over gloo, every process holding the
    whole model and optimizer state, and nothing else says so.
    """
    environ = dict(os.environ) if environ is None else environ
    if environ.get("ACCELERATE_USE_FSDP", "").lower() not in ("true", "1") or "FSDP" in str(distributed_type):
        return None
    return (
        f"the Accelerate config asks for FSDP, but this run is {distributed_type} (Accelerate sets up FSDP only on "
        "GPUs): every process holds the whole model and optimizer state"
    )
