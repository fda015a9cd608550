"""The decision journal: every request and its reply, one JSON line each, by day.

``journal-YYYY-MM-DD.jsonl`` (UTC date) in the journal folder; each line is::

    {"ts": "2025-11-07T20:31:00.123456Z", "latency_us": 84, "model_version": "...",
     "retry": false, "request": {...}, "reply": {...}}

``request`` is the request exactly as received when it was a JSON object (so replaying
the journal's requests into a fresh daemon with the same model reproduces every reply);
anything else is kept as ``request_text`` (or ``request_hex`` when not UTF-8), cut at 64 KiB,
with its size in ``request_bytes``. Lines are
flushed one by one. A write failure is logged loudly and retried on the next line; it
never stops the daemon from replying (the server journals after sending).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import structlog

from bridge.dispatch import Outcome

log = structlog.get_logger()

MAX_UNPARSED_BYTES = 65536  # of a request that is not a JSON object (bad_json, too_large)
_NEWLINES = str.maketrans({"\n": " ", "\r": " "})


class Journal:
    """Appends request/reply pairs to a daily JSONL file."""

    def __init__(
        self, folder: Path, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    ) -> None:
        self.folder = folder
        self.clock = clock
        self._day = ""
        self._file: TextIO | None = None
        self.failures = 0

    def path_for(self, day: str) -> Path:
        """The journal file of a UTC day ``YYYY-MM-DD``."""
        return self.folder / f"journal-{day}.jsonl"

    def record(self, raw: bytes, outcome: Outcome, latency_us: int) -> None:
        """Append one request and its reply; never raises."""
        now = self.clock()
        try:
            line = self._line(now, raw, outcome, latency_us)
            self._file_for(now.strftime("%Y-%m-%d")).write(line)
            self._file.flush()  # type: ignore[union-attr]
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

    def close(self) -> None:
        """Flush and close the current file (reopened on the next record)."""
        file, self._file, self._day = self._file, None, ""
        if file is not None:
            try:
                file.close()
            except OSError as exc:
                log.error("journal_close_failed", folder=str(self.folder), error=repr(exc))

    def _file_for(self, day: str) -> TextIO:
        if self._file is None or day != self._day:
            self.close()
            self.folder.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path_for(day), "a", encoding="utf-8")  # noqa: SIM115
            self._day = day
        return self._file

    @staticmethod
    def _line(now: datetime, raw: bytes, outcome: Outcome, latency_us: int) -> str:
        head = json.dumps(
            {
                "ts": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "latency_us": latency_us,
                "model_version": outcome.model_version,
                "retry": outcome.retry,
            }
        )[:-1]
        if outcome.parsed:
            # A JSON object: embed it verbatim (raw newlines only occur between tokens).
            request = ',"request":' + raw.decode("utf-8").translate(_NEWLINES)
        else:
            request = _unparsed(raw)
        return f'{head}{request},"reply":{outcome.reply.decode("utf-8")}}}\n'


def _unparsed(raw: bytes) -> str:
    size = f',"request_bytes":{len(raw)}'
    kept = raw[:MAX_UNPARSED_BYTES]
    try:
        return f'{size},"request_text":{json.dumps(kept.decode("utf-8"))}'
    except UnicodeDecodeError:
        return f'{size},"request_hex":{json.dumps(kept.hex())}'


def read_journal(path: Path) -> list[dict]:
    """All entries of a journal file (NaN literals in requests are read back as floats)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
