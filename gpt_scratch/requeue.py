"""Run a launcher so that it exits as a scheduler expects of a preempted job: 143 after SIGTERM, 130 after Ctrl-C.

    python -m gpt_scratch.requeue torchrun --nproc_per_node 8 train.py configs/gpt2-124m.yaml
    python -m gpt_scratch.requeue accelerate launch --multi_gpu --num_processes 8 train.py configs/gpt2-124m.yaml

``python train.py`` alone stops after a SIGTERM with a checkpoint and exits 128 + the signal, which a scheduler reads
as "preempted: requeue". A launcher does not pass that on: torchrun, signalled, forwards the signal, then reports it
its own way (a ``SignalException`` traceback, exit 1), and a worker's 143 becomes its ``ChildFailedError`` (exit 1).
Under this wrapper:

- the launcher runs in its own process group, so a signal meant for the job (a terminal's Ctrl-C, a scheduler's
  SIGTERM to the job) reaches it only here; the wrapper sends it to the run's train.py processes, not to the launcher;
- each process then stops after the same step, checkpoints, and exits 0 (the stop is agreed, not a failure), so the
  launcher ends cleanly, without a traceback; the main process records the signal in a file the wrapper names;
- the wrapper exits 128 + that signal; 0 when the run finished; the launcher's own exit status otherwise (a crash).

The resume command the run prints is this wrapper's command with ``--resume auto``.
"""

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

# Set by the wrapper for the run's processes: where the main process writes the signal it stopped on, and the
# command line that started the run (what the resume advice repeats).
STOP_FILE_ENV = "GPT_SCRATCH_STOP_FILE"
COMMAND_ENV = "GPT_SCRATCH_LAUNCH_COMMAND"
STOPPED_BY_SIGNAL_EXIT = 128


def record_stop(signal_number: int) -> bool:
    """In a run under the wrapper, record the signal the run stopped on; False when there is no wrapper."""
    stop_file = os.environ.get(STOP_FILE_ENV)
    if not stop_file:
        return False
    Path(stop_file).write_text(str(signal_number))
    return True


def under_wrapper() -> bool:
    return bool(os.environ.get(STOP_FILE_ENV))


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it ended meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # the name in parentheses may hold spaces
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _runs_train_py(pid: int) -> bool:
    """Whether ``pid`` is a Python running train.py (``python -u train.py ...``): the first of its arguments that is
    not an option is the script. A launcher names train.py too, later (``python torchrun ... train.py``)."""
    try:
        arguments = (Path(f"/proc/{pid}") / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    script = next((argument for argument in arguments[1:] if not argument.startswith("-")), "")
    return Path(arguments[0]).name.startswith("python") and Path(script).name == "train.py"


def run_processes(root: int) -> list[int]:
    """The run's processes under ``root``: the highest ones running train.py (their own children, DataLoader
    workers, stop with them), or ``root`` itself when it is one."""
    tree, found, pending = _children(), [], [root]
    while pending:
        pid = pending.pop()
        if _runs_train_py(pid):
            found.append(pid)
        else:
            pending.extend(tree.get(pid, []))
    return found


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    with tempfile.TemporaryDirectory(prefix="gpt-scratch-requeue-") as scratch:
        stop_file = Path(scratch) / "stopped-by-signal"
        env = {**os.environ, STOP_FILE_ENV: str(stop_file),
               COMMAND_ENV: shlex.join(["python", "-m", "gpt_scratch.requeue", *argv])}  # fmt: skip
        try:
            launcher = subprocess.Popen(argv, env=env, start_new_session=True)
        except FileNotFoundError:
            print(f"error: {argv[0]} not found; e.g. python -m gpt_scratch.requeue torchrun ... train.py ...",
                  file=sys.stderr)  # fmt: skip
            return 1

        def forward(number: int, frame) -> None:
            # To the run's processes, which agree on the stop and exit cleanly; the launcher then ends by itself.
            for pid in run_processes(launcher.pid) or [launcher.pid]:
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    os.kill(pid, number)

        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, forward)
        returncode = launcher.wait()
        if stop_file.exists() and stop_file.read_text().strip().isdigit():
            return STOPPED_BY_SIGNAL_EXIT + int(stop_file.read_text())
        return returncode if returncode >= 0 else STOPPED_BY_SIGNAL_EXIT - returncode  # a launcher killed by a signal


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
