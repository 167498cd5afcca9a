"""Writes that are either complete or absent, also across a power loss: write beside, fsync, rename, fsync the dir.

A rename is atomic, but without fsync the renamed file's data may still be in the page cache when the power goes,
leaving a complete-looking name over an empty or partial file.
"""

import json
import os
from pathlib import Path
from typing import Any


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's data, or a directory's entries, to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(root: str | os.PathLike) -> None:
    """fsync every file under ``root``, then every directory, deepest first (before ``root`` is renamed)."""
    directories = []
    for directory, _, files in os.walk(root):
        directories.append(directory)
        for name in files:
            fsync_path(os.path.join(directory, name))
    for directory in reversed(directories):
        fsync_path(directory)


def replace_durably(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Rename ``source`` over ``destination`` and make the rename itself durable."""
    os.replace(source, destination)
    fsync_path(Path(destination).parent)


def write_json(path: str | os.PathLike, value: Any) -> None:
    """``value`` as JSON at ``path``, atomically and durably."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.tmp")
    with open(staging, "w") as file:
        json.dump(value, file, indent=2)
        file.flush()
        os.fsync(file.fileno())
    replace_durably(staging, path)
