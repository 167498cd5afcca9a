"""One run per run directory: a lock file (pid, host, start time) held while a run owns the directory.

Two runs writing one directory would interleave their checkpoints (one run's weights under the other's step count).
A lock left by a run that died (kill -9, a crash) is stale when its pid no longer runs on this host; it is taken
over with a message. A lock from another host cannot be checked from here, so it is refused with how to clear it.
"""

import json
import os
import socket
import time
from pathlib import Path

LOCK_FILE = "run.lock"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class RunLock:
    """``acquire()`` ... ``release()``: the run's exclusive claim on ``run_dir``."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.note: str | None = None  # what acquire() had to do, for the log

    def acquire(self) -> "RunLock":
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self._clear_stale()
                continue
            with os.fdopen(descriptor, "w") as file:
                json.dump(self.owner, file)
            return self
        raise RuntimeError(f"could not take the lock {self.path}")

    def _clear_stale(self) -> None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            holder = {}
        if holder.get("host") == self.owner["host"] and not _running(int(holder.get("pid", -1))):
            self.path.unlink(missing_ok=True)
            self.note = f"took over the stale lock of run pid {holder.get('pid')} (started {holder.get('started')})"
            return
        who = f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
        raise ValueError(
            f"{self.path.parent} is in use by another run ({who}): two runs in one run_dir would mix their "
            f"checkpoints. Use another --run_dir, or wait for that run; if it is dead (another host), delete "
            f"{self.path}"
        )

    def release(self) -> None:
        try:
            if json.loads(self.path.read_text()).get("pid") == self.owner["pid"]:
                self.path.unlink()
        except (OSError, ValueError):
            pass
