"""Storage problems in one line, found as early as they can be: before step 1, before a write, never as a traceback.

A read-only run directory used to train until its first checkpoint (up to 1000 steps lost) and then die with a
``PermissionError`` traceback; a full disk died mid-write with ``RuntimeError: [enforce fail at inline_container.cc]``
and left a partial directory behind. Here: the run directory is probed before step 1, the free space is compared with
what a checkpoint needs before it is written (older checkpoints beyond the newest are pruned early if that makes
room), and a write that fails anyway is cleaned up and reported with the directory, the space and what to do.
"""

import errno
import shutil
import uuid
from pathlib import Path


class StorageError(RuntimeError):
    """A write the run needs cannot happen: the message names the directory and the fix."""


def gigabytes(size: float) -> str:
    return f"{size / 1e9:.2f} GB"


def check_writable(
    directory: Path,
    what: str = "the run could not save its checkpoints",
    fix: str = "Choose another --run_dir, or make this one writable",
) -> None:
    """Write (then remove) a probe file in ``directory``, or in the nearest directory above it that exists (where it
    would be made: nothing is created, so a run refused later leaves no empty directory), or fail in one line."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        probe = existing / f".write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as error:
        raise StorageError(f"{existing} is not writable ({error.strerror or error}): {what}. {fix}") from None


def holds_working_directory(path: str | Path) -> bool:
    """Whether ``path`` is the working directory or one above it: replacing it as a whole would delete the work."""
    here, resolved = Path.cwd().resolve(), Path(path).resolve()
    return resolved == here or resolved in here.parents


def free_bytes(directory: Path) -> int:
    """Free space on the filesystem that holds ``directory`` (or would, once created)."""
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return shutil.disk_usage(directory).free


def directory_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def write_failure(
    error: BaseException, directory: Path, needed: int, what: str, fix: str, fix_unwritable: str | None = None
) -> StorageError:
    """The one-line error for a write that failed. Call it before removing the partial file: a full disk shows as
    OSError(ENOSPC), as numpy's "N requested and M written", or as torch's RuntimeError, so the free space left at
    the moment of failure is what tells. ``fix`` is the advice for a full disk; a read-only file system or a
    directory without permission gets ``fix_unwritable`` (freeing space would not help)."""
    if isinstance(error, OSError) and error.errno in UNWRITABLE:
        advice = fix_unwritable or f"Make {directory} writable, or choose another directory"
        return StorageError(f"could not write {what} in {directory}: {error.strerror}. {advice}")
    free = free_bytes(directory)
    full = (
        (isinstance(error, OSError) and error.errno == errno.ENOSPC)
        or f"os error {errno.ENOSPC})" in str(error)  # safetensors' words for it
        or free < needed * 0.01 + 2**20
    )
    reason = "the disk is full" if full else f"{type(error).__name__}: {error}".split("\n")[0]
    return StorageError(f"could not write {what} in {directory}: {reason} (it needs about {gigabytes(needed)}). {fix}")
