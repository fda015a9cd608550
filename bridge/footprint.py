"""What a daemon start writes on disk before it knows it will serve, and how a start that
fails takes it back: the journal and the log file are opened before the model loads (so a
folder that cannot be written is refused at once), and a start refused after that (the
model did not load, the port was taken) leaves no empty file or folder tree behind. A file
or folder that was there before, or that holds anything, always stays.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0)


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first (what
    ``folder.mkdir(parents=True)`` is about to create).

    Raises:
        OSError: an ancestor cannot be looked at (no permission).
    """
    return [p for p in (folder, *folder.parents) if not p.exists()]


def open_append(path: Path, mode: int = 0o644) -> tuple[int, bool]:
    """Open ``path`` for appending, creating it if missing: ``(fd, created)``, where
    ``created`` says whether this call created the file (``O_EXCL`` tells)."""
    try:
        return os.open(path, APPEND | os.O_EXCL, mode), True
    except FileExistsError:
        return os.open(path, APPEND, mode), False


def remove_if_empty(file: Path | None, folders: list[Path]) -> None:
    """Remove ``file`` while it is empty, then ``folders`` (deepest first) while they are
    empty; never raises (gone already, or not ours to remove: nothing to tidy)."""
    if file is not None:
        with contextlib.suppress(OSError):
            if file.stat().st_size == 0:
                file.unlink()
    for folder in folders:  # rmdir refuses a folder that holds anything
        try:
            folder.rmdir()
        except OSError:
            break
