"""The decision journal: every request and its reply, one JSON line each, by day.

``journal-YYYY-MM-DD.jsonl`` (UTC date) in the journal folder; each line is::

    {"ts": "2025-11-07T20:31:00.123456Z", "latency_us": 84, "model_version": "...",
     "retry": false, "request": {...}, "reply": {...}}

``request`` is the request exactly as received when it was a JSON object (so replaying
the journal's requests into a fresh daemon with the same model reproduces every reply);
anything else is kept as ``request_text`` (or ``request_hex`` when not UTF-8), cut at 64 KiB,
with its size in ``request_bytes``. ``latency_us`` is from receiving the request to the
line being written, just before the reply is sent. The daemon does not start without a
journal it can write (:meth:`Journal.open` raises :class:`JournalError`); a write failure
once serving is logged loudly and retried on the next line, and never stops the daemon
from replying.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path

import structlog

from bridge.dispatch import Outcome
from bridge.footprint import missing_folders, open_append, remove_if_empty

log = structlog.get_logger()

MAX_CACHED_VERSIONS = 64  # model versions whose JSON string is kept
MAX_UNPARSED_BYTES = 65536  # of a request that is not a JSON object (bad_json, too_large)
_TAIL_CHUNK = 1 << 16


class JournalError(Exception):
    """The journal folder cannot be written at start; the message names it and the fix."""


class Journal:
    """Appends request/reply pairs to a daily JSONL file.

    Each line goes to the operating system with one ``os.write`` on an ``O_APPEND``
    descriptor before the reply is sent (no ``fsync``): a killed daemon loses nothing it
    replied to, a crash of the machine itself may lose the last lines the OS had not yet
    written to disk. At start (and on each day's first line) a torn last line left by an
    earlier crash is moved aside to ``journal-DAY.jsonl.torn-<UTC time>``, reported with
    a ``journal_torn_line`` warning, and the file is cut back to its last whole line, so
    the journal always parses line by line.
    """

    def __init__(
        self, folder: Path, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    ) -> None:
        self.folder = folder
        self.clock = clock
        self._day = ""
        self._fd: int | None = None
        self.failures = 0
        self.torn: list[Path] = []  # torn lines moved aside since start
        self._date: date | None = None  # the date of the last record and its text
        self._date_text = ""
        self._versions: dict[str, str] = {}  # model version -> its JSON string
        self._created: Path | None = None  # the last file this process created
        self._made_folders: list[Path] = []  # folders open() created, deepest first

    def path_for(self, day: str) -> Path:
        """The journal file of a UTC day ``YYYY-MM-DD``."""
        return self.folder / f"journal-{day}.jsonl"

    def open(self) -> None:
        """Create the folder and open today's file for append now (repairing a torn last
        line of the latest journal), so a daemon whose audit trail cannot be written
        does not start, and a damaged journal is reported before the first request.

        Raises:
            JournalError: one line naming the folder, the reason and what to do.
        """
        if self.folder.is_file():  # else "File exists", which names no fix
            raise JournalError(
                f"{self.folder} is a file, not a folder: give --journal-dir a folder for the "
                "daily journals (created if missing), or serve without a journal with "
                "--no-journal"
            )
        try:
            missing = missing_folders(self.folder)
            latest = sorted(self.folder.glob("journal-*.jsonl")) if self.folder.is_dir() else []
            if latest:
                self.torn.extend(repair_torn_tail(latest[-1]))
            self._fd_for(self.clock().strftime("%Y-%m-%d"))
            self._made_folders = missing
        except OSError as exc:
            raise JournalError(
                f"cannot write the decision journal in {self.folder} "
                f"({exc.strerror or exc}); give a folder this user can write with "
                "--journal-dir, or serve without a journal with --no-journal"
            ) from None

    def record(self, raw: bytes, outcome: Outcome, latency_us: int) -> None:
        """Append one request and its reply; never raises."""
        now = self.clock()
        try:
            day = now.date()
            if day != self._date:  # strftime costs microseconds: once a day
                self._date, self._date_text = day, now.strftime("%Y-%m-%d")
            data = self._line(now, raw, outcome, latency_us)
            fd = self._fd_for(self._date_text)
            while data:
                data = data[os.write(fd, data) :]
        except Exception as exc:
            self.failures += 1
            log.error(
                "journal_write_failed",
                folder=str(self.folder),
                error=repr(exc),
                failures=self.failures,
                detail="decisions are still served but not journaled; check the disk",
            )
            self.close()

    def abandon(self) -> None:
        """Close the journal of a start that failed after :meth:`open` (the model did not
        load, the port was taken): the file :meth:`open` created goes too while nothing
        is written in it, so a refused start leaves no empty journal behind. A file that
        was there before, or that holds anything, stays; so do the folders, unless
        :meth:`open` created them and they are empty again."""
        created, self._created = self._created, None
        folders, self._made_folders = self._made_folders, []
        self.close()
        remove_if_empty(created, folders)

    def close(self) -> None:
        """Close the current file (reopened on the next record)."""
        fd, self._fd, self._day = self._fd, None, ""
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:
                log.error("journal_close_failed", folder=str(self.folder), error=repr(exc))

    def _fd_for(self, day: str) -> int:
        if self._fd is None or day != self._day:
            self.close()
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.path_for(day)
            self.torn.extend(repair_torn_tail(path))
            self._fd, created = open_append(path)
            if created:  # see abandon
                self._created = path
            self._day = day
        return self._fd

    def _line(self, now: datetime, raw: bytes, outcome: Outcome, latency_us: int) -> bytes:
        """One journal line, built as bytes (the request and reply are embedded as they
        are, never decoded and encoded again)."""
        version = self._versions.get(outcome.model_version)
        if version is None:
            version = json.dumps(outcome.model_version)
            if len(self._versions) < MAX_CACHED_VERSIONS:
                self._versions[outcome.model_version] = version
        head = (
            f'{{"ts": "{self._date_text}T{now.time().isoformat("microseconds")}Z", '
            f'"latency_us": {latency_us:d}, "model_version": {version}, '
            f'"retry": {"true" if outcome.retry else "false"}'
        )
        if outcome.parsed:
            # A JSON object (valid UTF-8): embed it verbatim. Raw newlines only occur
            # between tokens, and no byte of a multi-byte UTF-8 character is one.
            request = b',"request":' + raw.replace(b"\n", b" ").replace(b"\r", b" ")
        else:
            request = _unparsed(raw).encode()
        return b'%s%s,"reply":%s}\n' % (head.encode(), request, outcome.reply)


def _unparsed(raw: bytes) -> str:
    size = f',"request_bytes":{len(raw)}'
    kept = raw[:MAX_UNPARSED_BYTES]
    try:
        return f'{size},"request_text":{json.dumps(kept.decode("utf-8"))}'
    except UnicodeDecodeError:
        return f'{size},"request_hex":{json.dumps(kept.hex())}'


def repair_torn_tail(path: Path) -> list[Path]:
    """Move a last line without its newline (a write cut short by a crash) aside.

    Returns:
        ``[aside]``, the file now holding the torn bytes, or ``[]`` when the file is
        missing, empty or ends with a newline.
    """
    try:
        with open(path, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return []
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return []
            start = max(0, size - _TAIL_CHUNK)
            while True:  # find the last newline, reading backwards in chunks
                f.seek(start)
                chunk = f.read(size - start)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    keep = start + cut + 1
                    break
                if start == 0:
                    keep = 0
                    break
                start = max(0, start - _TAIL_CHUNK)
            f.seek(keep)
            torn = f.read()
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            aside = path.with_name(f"{path.name}.torn-{stamp}")
            aside.write_bytes(torn)
            f.truncate(keep)
    except FileNotFoundError:
        return []
    log.warning(
        "journal_torn_line",
        path=str(path),
        kept_aside=str(aside),
        bytes=len(torn),
        detail="the journal's last line was cut short (the daemon or machine stopped while "
        "writing it); it was moved aside and the journal continues on a fresh line",
    )
    return [aside]


def read_journal(path: Path) -> list[dict]:
    """All entries of a journal file (NaN literals in requests are read back as floats)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
