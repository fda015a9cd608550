"""Standard streams and logging that never stop the daemon.

A daemon runs under service wrappers, schedulers and parent processes that may close its
stderr, point it at ``/dev/null``, or hand it a pipe that nobody reads. A plain
``logging.StreamHandler`` then blocks the serving thread in ``write`` as soon as the pipe's
buffer (64 KiB on Linux) is full, and a signal handler cannot run while it waits. Here:

- :func:`ensure_std_streams` gives closed descriptors 0-2 a ``/dev/null`` (so a socket or the
  journal never becomes "stderr" by taking the lowest free descriptor) and makes the text
  streams replace what the console's code page cannot encode (a cp1252 Windows console
  redirected to a file) instead of raising ``UnicodeEncodeError``.
- :func:`configure_queued_logging` gives every sink (console, log file) its own bounded
  queue drained by its own daemon thread (the stdlib ``QueueHandler`` pattern). The caller
  only formats an event and puts it on the queues without waiting; a full queue drops the
  line and counts it (:func:`dropped_lines`). A sink that blocks for ever blocks only its
  thread, which is abandoned at exit.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import logging
import logging.handlers
import os
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import structlog

from bridge.footprint import missing_folders, open_append, remove_if_empty

DEFAULT_QUEUE_LINES = 10_000  # per sink; a line is about 400 bytes, so at most ~4 MB each
STOP_WAIT_S = 0.5  # how long shutdown waits for a sink to drain


ASCII_FALLBACK = "ai-trading-bridge-ascii"  # codec error handler, registered below
# What a console whose code page lacks them (cp1252 on Windows) shows instead.
_ASCII_FOR = {"✅": "PASS:", "❌": "FAIL:", "⚠": "WARNING:", "→": "->", "≤": "<=", "≥": ">="}


def _ascii_fallback(error: UnicodeError) -> tuple[str, int]:
    """Encode error handler: the project's symbols as ASCII words, anything else ``?``."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start : error.end]
    return "".join(_ASCII_FOR.get(c, "?") for c in text), error.end


codecs.register_error(ASCII_FALLBACK, _ascii_fallback)


def ensure_std_streams() -> None:
    """Make the standard streams safe to use, whatever the parent gave us.

    Closed descriptors 0, 1 and 2 are reopened on the null device; ``sys.stdout`` and
    ``sys.stderr`` are set to write a character the console's encoding lacks as an ASCII
    word (``✅`` as ``PASS:``, ``❌`` as ``FAIL:``) or ``?``, or to a null writer when
    Python started without them.
    Safe to call more than once.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:  # a lower descriptor was free too: put it where it belongs
                os.dup2(null, fd)
                os.close(null)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            setattr(sys, name, io.TextIOWrapper(open(os.devnull, "wb"), encoding="utf-8"))  # noqa: SIM115
            continue
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(Exception):
                reconfigure(errors=ASCII_FALLBACK)


class _Sink(threading.Thread):
    """One log destination fed by a bounded queue, written by its own daemon thread."""

    def __init__(
        self,
        name: str,
        write: Callable[[str], None],
        capacity: int,
        release: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name=f"log-sink-{name}", daemon=True)
        self.sink_name = name
        self.write = write
        self.release = release
        self.queue: queue.Queue[str | None] = queue.Queue(capacity)
        self.dropped = 0
        self.failed = 0

    def offer(self, line: str) -> None:
        try:
            self.queue.put_nowait(line)
        except queue.Full:
            self.dropped += 1

    def run(self) -> None:
        while True:
            line = self.queue.get()
            if line is None:
                return
            try:
                self.write(line)
            except Exception:  # a closed or broken sink: count, keep draining
                self.failed += 1

    def close(self, wait_s: float) -> None:
        """Stop after the queued lines; a sink that is stuck (full queue) is abandoned."""
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            return
        self.join(wait_s)
        if not self.is_alive() and self.release is not None:
            with contextlib.suppress(OSError):
                self.release()


class QueuedHandler(logging.Handler):
    """Formats a record in the caller's thread and hands the text to each sink's queue."""

    def __init__(self, sinks: list[tuple[_Sink, logging.Formatter]]) -> None:
        super().__init__()
        self.sinks = sinks

    def handle(self, record: logging.LogRecord) -> bool:  # no handler lock: never waits
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        # Sinks sharing a formatter (JSON console and JSON file) share one rendering.
        last: logging.Formatter | None = None
        line = ""
        for sink, formatter in self.sinks:
            try:
                if formatter is not last:
                    line, last = formatter.format(record) + "\n", formatter
                sink.offer(line)
            except Exception:
                sink.failed += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        stop_queued_logging()
        super().close()


_SINKS: list[_Sink] = []
# What the last configure_queued_logging created for its log file: the file (when this
# process created it) and the folders it made, deepest first; see abandon_log_file.
_CREATED_LOG: list[Path] = []
_MADE_LOG_FOLDERS: list[Path] = []


def dropped_lines() -> dict[str, int]:
    """Log lines each sink dropped because its queue was full (``{"console": 0, ...}``)."""
    return {sink.sink_name: sink.dropped for sink in _SINKS}


def stop_queued_logging(wait_s: float = STOP_WAIT_S) -> None:
    """Let each sink write what is queued, waiting at most ``wait_s`` per sink."""
    sinks, _SINKS[:] = list(_SINKS), []
    for sink in sinks:
        sink.close(wait_s)


def _fd_writer(stream: TextIO) -> Callable[[str], None] | None:
    """Unbuffered writes to a text stream's descriptor, or None when it has none."""
    try:
        fd = stream.fileno()
        os.fstat(fd)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    encoding = getattr(stream, "encoding", None) or "utf-8"

    def write(line: str) -> None:
        data = line.encode(encoding, "replace")
        while data:
            data = data[os.write(fd, data) :]

    return write


def configure_queued_logging(
    log_file: Path | None = None,
    level: str = "info",
    stream: TextIO | None = None,
    capacity: int = DEFAULT_QUEUE_LINES,
) -> None:
    """Configure structlog and the stdlib root logger for the daemon: console (pretty on a
    terminal, JSON lines otherwise) and ``log_file`` (JSON lines), each through a bounded
    queue. Replaces any earlier configuration, including a previous call's sinks."""
    stop_queued_logging()
    stream = stream if stream is not None else sys.stderr
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]

    def formatter(pretty: bool) -> logging.Formatter:
        renderer = (
            structlog.dev.ConsoleRenderer(colors=False)
            if pretty
            else structlog.processors.JSONRenderer()
        )
        return structlog.stdlib.ProcessorFormatter(processor=renderer, foreign_pre_chain=shared)

    sinks: list[tuple[_Sink, logging.Formatter]] = []
    json_lines = formatter(False)
    console = _fd_writer(stream) if stream is not None else None
    if console is not None:
        pretty = bool(getattr(stream, "isatty", lambda: False)())
        console_lines = formatter(True) if pretty else json_lines
        sinks.append((_Sink("console", console, capacity), console_lines))
    _CREATED_LOG.clear()
    _MADE_LOG_FOLDERS.clear()
    if log_file is not None:
        missing = missing_folders(log_file.parent)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        _MADE_LOG_FOLDERS.extend(missing)
        fd, created = open_append(log_file)
        if created:  # see abandon_log_file
            _CREATED_LOG.append(log_file)

        def write_file(line: str) -> None:
            os.write(fd, line.encode("utf-8"))

        sinks.append((_Sink("file", write_file, capacity, lambda: os.close(fd)), json_lines))
    for sink, _ in sinks:
        sink.start()
        _SINKS.append(sink)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(QueuedHandler(sinks))
    root.setLevel(level.upper())
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def abandon_log_file() -> None:
    """Stop logging for a daemon that never served (the model did not load, the port was
    taken) and remove the log file its start created while nothing is written in it, and
    the folders made for it while they are empty, as the journal's are: a typo in
    --log-file leaves no empty tree. A file or folder that was there before stays."""
    stop_queued_logging()
    remove_if_empty(_CREATED_LOG[0] if _CREATED_LOG else None, _MADE_LOG_FOLDERS)
    _CREATED_LOG.clear()
    _MADE_LOG_FOLDERS.clear()


def exit_now(code: int = 0) -> None:
    """End the process once the daemon has shut down in order (journal closed, sockets
    closed): drain the log sinks (bounded wait), flush the standard streams and skip the
    interpreter's teardown, which takes 2-3 s with torch loaded and would break the
    promise that a signal stops the daemon within 2 s."""
    stop_queued_logging()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
