"""Key files created on first start (the audit signing key, the secret box key): read, or
written once, atomically, readable by the owner only."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

K = TypeVar("K")


def load_or_create(path: Path, load: Callable[[Path], K], create: Callable[[], tuple[K, str]]) -> K:
    """``load(path)``; if the file does not exist, ``create()`` gives a new key and its text,
    which is stored in ``path`` first (mode 0600, parent directories created).

    The text goes to a temporary file in the same directory, fsynced, then linked into place,
    so the file never holds a partial key and, when two processes race to create it, both end
    up with the one that got there first."""
    path = Path(path)
    try:
        return load(path)
    except FileNotFoundError:
        pass
    key, text = create()
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.chmod(temp, 0o600)
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)  # atomic, and never replaces a key another process stored
        except FileExistsError:
            return load(path)
        except OSError:  # a file system without hard links
            os.replace(temp, path)
        _fsync_directory(directory)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return key


def _fsync_directory(directory: Path) -> None:
    flags = getattr(os, "O_DIRECTORY", None)
    if flags is None:  # not POSIX
        return
    fd = os.open(directory, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
