"""One run per run directory: an OS file lock on ``run_dir/run.lock``, held by the kernel while the run's process lives.

Two runs writing one directory would interleave their checkpoints (one run's weights under the other's step count).
The lock is ``flock(LOCK_EX | LOCK_NB)`` on the open file: the kernel releases it when the process ends, however it
ends (kill -9, OOM killer, power loss), so there is no stale lock to judge from a pid (a container restarted as pid 1
under the same hostname, or an unrelated process that reused the pid, would fool that). Of several runs started
together exactly one gets it. The file's content (pid, host, start time) only says who holds it, for the message.

Network filesystems: Linux NFS clients implement flock with NFS byte-range locks, which hold across hosts when the
server supports locking (NFSv4; NFSv3 with lockd). A filesystem without locks (Lustre mounted without ``flock``,
some FUSE mounts) makes ``flock`` fail: that is an error naming the directory, never a silent unlocked run.

A forked child (a DataLoader worker) inherits the open file and with it a share of the lock, which would outlive a
killed run until the child noticed: children drop their copy at fork, so the lock lives exactly as long as the run.
"""

import errno
import fcntl
import json
import os
import socket
import time
import weakref
from pathlib import Path

LOCK_FILE = "run.lock"
STORAGE_FIX = "check the disk that holds the run (dmesg names I/O errors), or choose another --run_dir"

_held: "weakref.WeakSet[RunLock]" = weakref.WeakSet()


def _forget_in_child() -> None:
    """In a forked child: close its copy of each held lock's file (closing one copy never unlocks the others' ones:
    the lock goes with the last), and make ``release()`` a no-op there, which must not unlink the parent's file."""
    for lock in list(_held):
        if lock._descriptor is not None:
            os.close(lock._descriptor)
            lock._descriptor = None
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)


class RunLock:
    """``acquire()`` ... ``release()``: the run's exclusive claim on ``run_dir``."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.note: str | None = None  # what acquire() found, for the log
        self._descriptor: int | None = None

    def acquire(self) -> "RunLock":
        while True:
            try:
                descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except IsADirectoryError:
                raise ValueError(
                    f"{self.path} is a directory, not the run's lock file; remove it (it holds no run data) and start "
                    "again"
                ) from None
            except OSError as error:
                raise ValueError(f"cannot open the run lock {self.path} ({error.strerror}); {STORAGE_FIX}") from None
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                raise ValueError(self._busy_message()) from None
            except OSError as error:
                os.close(descriptor)
                if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise ValueError(
                        f"the filesystem of {self.path.parent} does not support file locks ({error.strerror}), so "
                        "two runs could write one run_dir unnoticed; put run_dir on a local disk or a filesystem with "
                        "locks (NFSv4, Lustre mounted with -o flock)"
                    ) from None
                raise ValueError(f"cannot lock {self.path} ({error.strerror}); {STORAGE_FIX}") from None
            # A releasing run unlinks the file after we opened it: our lock is then on a deleted file. Start again.
            try:
                same_file = os.stat(self.path).st_ino == os.fstat(descriptor).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(descriptor)
        previous = os.read(descriptor, 4096).decode(errors="replace").strip()
        if previous:  # the file outlived its run: that run was killed before it could release
            holder = self._describe(previous)
            self.note = f"the previous run on this run_dir ({holder}) ended without releasing its lock"
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(self.owner).encode(), 0)
        self._descriptor = descriptor
        _held.add(self)
        return self

    def _describe(self, text: str) -> str:
        try:
            holder = json.loads(text)
            return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
        except ValueError:
            return "unknown holder"

    def _busy_message(self) -> str:
        try:
            who = self._describe(self.path.read_text())
        except OSError:
            who = "unknown holder"
        return (
            f"{self.path.parent} is in use by another run ({who}): two runs in one run_dir would mix their "
            "checkpoints. Use another --run_dir, or wait for that run (the lock is the kernel's: it goes when that "
            "process ends)"
        )

    def release(self) -> None:
        if self._descriptor is None:
            return
        self.path.unlink(missing_ok=True)  # while still locked: whoever opens it next makes a fresh file
        os.close(self._descriptor)  # the kernel drops the lock
        self._descriptor = None
        _held.discard(self)
