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
import threading
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


USAGE = "usage: python -m gpt_scratch.requeue LAUNCHER [ARGUMENTS ...]"
# What a launcher prints of its own when the job is signalled: torchrun's traceback of the signal it received, or of
# its workers ending (on a signal before they could handle it, in setup). Left out when the job stopped as asked.
LAUNCHER_REPORTS = ("SignalException", "ChildFailedError")


def without_launcher_reports(text: str) -> str:
    """``text`` without the tracebacks ending in one of LAUNCHER_REPORTS (with ChildFailedError's report, the block
    between two rules of ``=`` that follows it)."""
    lines, kept, index = text.splitlines(keepends=True), [], 0
    while index < len(lines):
        if not lines[index].startswith("Traceback (most recent call last):"):
            kept.append(lines[index])
            index += 1
            continue
        end = index + 1  # frames are indented; chained tracebacks are joined by blank lines and a sentence
        while end < len(lines) and (lines[end][:1] in (" ", "\t", "\n", "") or lines[end].startswith(
                ("During handling of", "The above exception", "Traceback ("))):  # fmt: skip
            end += 1
        if end == len(lines) or not any(report in lines[end] for report in LAUNCHER_REPORTS):
            kept.extend(lines[index : end + 1])
            index = end + 1
            continue
        end += 1
        if end < len(lines) and lines[end].startswith("====="):
            end += 1
            while end < len(lines) and not lines[end].startswith("====="):
                end += 1
            end += 1
        index = end
    return "".join(kept)


class HeldErrors:
    """The launcher's stderr (and its workers', which share it), passed through as it comes until the job is
    signalled, held from then on: the launcher's own report of the signal is left out if the job stopped as asked."""

    def __init__(self, stream) -> None:
        self.stream, self.held, self.holding = stream, bytearray(), False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._relay, daemon=True)
        self.thread.start()

    def _relay(self) -> None:
        while chunk := os.read(self.stream.fileno(), 1 << 16):
            with self.lock:
                if self.holding:
                    self.held += chunk
                else:
                    _write_stderr(chunk)

    def hold(self) -> None:
        with self.lock:
            self.holding = True

    def finish(self, stopped: bool) -> None:
        self.thread.join(timeout=60)  # the launcher's processes have closed the pipe, or a straggler holds it
        with self.lock:
            text, self.holding = self.held.decode(errors="replace"), False
        _write_stderr((without_launcher_reports(text) if stopped else text).encode())


def _write_stderr(data: bytes) -> None:
    stream = getattr(sys.stderr, "buffer", None)
    if stream is None:
        sys.stderr.write(data.decode(errors="replace"))
    else:
        stream.write(data)
    sys.stderr.flush()


def start(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """The launcher, in its own process group, its stderr through this process; a launcher that cannot be started
    is one line saying why."""
    example = "e.g. python -m gpt_scratch.requeue torchrun --nproc_per_node 8 train.py CONFIG"
    try:
        return subprocess.Popen(argv, env=env, start_new_session=True, stderr=subprocess.PIPE)
    except FileNotFoundError:
        if os.path.exists(argv[0]):  # the file is there: the interpreter its #! line names is not
            raise OSError(f"{argv[0]} cannot be started: the interpreter its first line (#!) names is not found; "
                          f"start it with python ({example})") from None  # fmt: skip
        raise FileNotFoundError(f"{argv[0]} not found; {example}") from None
    except PermissionError:
        kind = "a directory" if os.path.isdir(argv[0]) else "not executable"
        raise PermissionError(f"{argv[0]} cannot be run ({kind}): name the launcher first, {example}") from None
    except OSError as error:
        raise OSError(f"{argv[0]} cannot be run ({error.strerror}): {example}") from None


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE + "\n\n" + __doc__.replace("``", ""))
        return 0 if argv else 2
    with tempfile.TemporaryDirectory(prefix="gpt-scratch-requeue-") as scratch:
        stop_file = Path(scratch) / "stopped-by-signal"
        command = shlex.join(["python", "-m", "gpt_scratch.requeue", *argv])
        env = {**os.environ, STOP_FILE_ENV: str(stop_file), COMMAND_ENV: command}
        try:
            launcher = start(argv, env)
        except OSError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        errors, received = HeldErrors(launcher.stderr), []

        def forward(number: int, frame) -> None:
            # To the run's processes, which agree on the stop and exit cleanly; the launcher then ends by itself.
            received.append(number)
            errors.hold()
            for pid in run_processes(launcher.pid) or [launcher.pid]:
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    os.kill(pid, number)

        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, forward)
        returncode = launcher.wait()
        recorded = stop_file.read_text().strip() if stop_file.exists() else ""
        if recorded.isdigit():
            errors.finish(stopped=True)
            return STOPPED_BY_SIGNAL_EXIT + int(recorded)
        if received and returncode != 0:
            # Signalled before the run could stop by itself (still in setup, before step 1): nothing to save, and
            # still a preemption for the scheduler, whose requeued command starts (or resumes) the run.
            errors.finish(stopped=True)
            print(f"stopped by signal {received[0]} before the run's first checkpoint; nothing to save. Start it "
                  f"again with: {command}", flush=True)  # fmt: skip
            return STOPPED_BY_SIGNAL_EXIT + received[0]
        errors.finish(stopped=False)
        return returncode if returncode >= 0 else STOPPED_BY_SIGNAL_EXIT - returncode  # a launcher killed by a signal


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
