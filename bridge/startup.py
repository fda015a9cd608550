"""Ctrl+C while the command line starts: one line and exit code 130, never a traceback.

Starting a command imports click, structlog, ZeroMQ, numpy and torch: up to seconds on a
busy machine. A Ctrl+C then raises ``KeyboardInterrupt`` inside some import, where no
command can catch it, and Python prints a traceback. So the earliest lines that run
(:func:`main`, the console script's entry point, and the top of ``ai_trading_bridge.py``
for ``python -m ai_trading_bridge`` and ``python ai_trading_bridge.py``) install a SIGINT
handler that ends the process at once with one line; the command group calls
:func:`started` when the imports are done, and from then on Ctrl+C is a
``KeyboardInterrupt`` again, which the commands handle (the group turns one they leave to
it into the same line and exit code). This module imports only the standard library.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType

INTERRUPTED_EXIT = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl+C
INTERRUPTED_LINE = "interrupted (Ctrl+C)"


def _exit_interrupted(_signum: int, _frame: FrameType | None) -> None:
    # os._exit: a half-done import cannot be unwound cleanly, and nothing is open yet.
    with contextlib.suppress(OSError):  # stderr closed: the exit code still says it
        os.write(2, f"{INTERRUPTED_LINE}\n".encode())
    os._exit(INTERRUPTED_EXIT)


def exit_quietly_on_interrupt() -> None:
    """Until :func:`started`, SIGINT prints one line and exits with 130. A process started
    with SIGINT ignored (``nohup``, a background job) keeps ignoring it."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set in the main thread
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _exit_interrupted)


def started() -> None:
    """The imports are done: Ctrl+C raises ``KeyboardInterrupt`` again."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is _exit_interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main() -> None:
    """Console-script entry point (``ai-trading-bridge``): the Ctrl+C guard first, then
    the command line."""
    exit_quietly_on_interrupt()
    from ai_trading_bridge import main as command_line

    command_line()
