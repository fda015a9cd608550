"""The ZeroMQ edge: the daemon's REP loop and control socket, and the REQ clients that
``replay`` and ``reload`` use. The only module of the project that imports zmq.

The loop waits for a request with a timeout (``poll_ms``) so a stop, reload or control
request is noticed within that time (``busy_poll`` spins instead, trading a CPU core for a
hot cache). Every message
received gets exactly one reply. The journal line is handed to the operating system before
the reply is sent (so every replied request survives a kill); the log lines are queued
after the reply has gone, once the socket has been idle for a millisecond (or after a
burst of 64 requests, or at shutdown), and written by other threads
(:mod:`bridge.console`). A failure in either is logged and never costs a reply. Sockets
are closed with linger 0 in ``finally``.

Reload: SIGHUP (POSIX) reloads the files being served; ``ai-trading-bridge reload`` sends
``{"type": "reload", "token": ..., ...}`` to the control socket (loopback only, works on
Windows). The new policy is loaded, checked and smoke-tested on another thread while the
loop keeps serving; it is swapped in between two requests. A bad one leaves the old model
serving and the reply says why. The control socket is a ROUTER: while a reload loads it
still answers ``status`` (which names the reload) and refuses a second reload; the
reload's own answer comes when the load is over.

Control socket security (the Jupyter model): the control endpoint is a random loopback port
by default, written with a per-run secret token to a user-only file in the state folder
(``daemons/<serving endpoint>.json``); a request without that token is refused, and a
reload may only load from the configured model folders. Two daemons never share a
control port, and ``reload`` finds each one by the endpoint it serves.
"""

from __future__ import annotations

import contextlib
import gc
import hmac
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog
import zmq

from bridge import protocol
from bridge.config import ConfigError, ModelSource, ServeConfig, exchange_zone
from bridge.console import dropped_lines
from bridge.dispatch import Dispatcher, Outcome
from bridge.journal import Journal
from bridge.killswitch import KillSwitch
from bridge.monitoring import Monitor
from bridge.policy import (
    LoadedPolicy,
    NumpyActor,
    PolicyLoadError,
    load_policy,
    warm_imports,
)
from bridge.reload_worker import hold_workers, load_isolated, release_workers, stop_workers

log = structlog.get_logger()

# After a reply the loop waits this long for another request before journaling and
# logging: the socket's I/O thread needs a CPU to put the reply on the wire, and on a busy
# machine it only gets one once this thread sleeps. Recording first would add its cost
# (about 0.3 ms) to every reply.
IDLE_AFTER_REPLY_MS = 1
RELOAD_STOP_WAIT_S = 2.0  # a stopping daemon waits this long for a reload to clean up
WATCHDOG_EVERY_S = 1.0  # how often the stale-data watchdog looks at the streams
MAX_UNRECORDED = 64  # record anyway after this many replies in a burst (history, replay)
HARD_LIMIT_FACTOR = 16  # ZMQ_MAXMSGSIZE = 16 x --max-message-bytes: larger peers are dropped
CONTROL_TIMEOUT_S = 30.0  # loading a model can take a few seconds
# The control client waits in slices: Ctrl+C may land on a thread of a native library
# (numpy's, torch's), which does not interrupt the main thread's poll, and Python only
# raises KeyboardInterrupt when the main thread is back between two polls.
CONTROL_POLL_SLICE_S = 0.1
RELOAD_SWITCH_INTERVAL_S = 0.0005  # GIL hand-over while a reload thread runs (default 5 ms)
# A reload runs at most RELOAD_BUSY_S at a time, then leaves the CPU and the interpreter
# to the serving thread for RELOAD_PAUSE_S: it takes about 4x longer (0.3-1 s -> 1.5-4 s
# for the guide's two files on the development VM) and disturbs requests less.
RELOAD_BUSY_S = 0.001
RELOAD_PAUSE_S = 0.003
DAEMONS_FOLDER = "daemons"
# Garbage collection runs while the socket is idle once this many container objects were
# allocated since the last one (CPython's own trigger is gc.get_threshold()[0], 700).
IDLE_GC_ALLOCATIONS = 200
_FALLBACK_REPLY = protocol.error_reply(
    protocol.INTERNAL, "the daemon hit an unexpected error; act as HOLD", None
)


_Done = tuple[bytes, Outcome, int]  # request, outcome, latency in microseconds


class ServeError(Exception):
    """The daemon cannot start; the message says what to do."""


class BridgeServer:
    """The daemon: a REP socket for NinjaTrader clients and a control ROUTER socket.

    Args:
        config: Validated settings.
        dispatcher: Request logic (holds the policy and the sessions).
        journal: Decision journal, or None.
        monitor: Logs outcomes and watches the action histogram.
        loader: Loads and checks a policy (reload).
    """

    def __init__(
        self,
        config: ServeConfig,
        dispatcher: Dispatcher,
        journal: Journal | None,
        monitor: Monitor,
        loader: Callable[[ModelSource], LoadedPolicy] = load_policy,
    ) -> None:
        self.config = config
        self.dispatcher = dispatcher
        dispatcher.defer_logs = True  # written by _record and _watch, after the replies
        self.journal = journal
        self.monitor = monitor
        self.loader = loader
        self.context = zmq.Context()
        self.socket: zmq.Socket | None = None
        self.control: zmq.Socket | None = None
        self.endpoint: str | None = None
        self.control_endpoint: str | None = None
        self._stop = threading.Event()
        self._reload_pending = False
        self.requests = 0
        self.token = secrets.token_urlsafe(32)
        self.daemon_file: Path | None = None
        self._loading: _Reload | None = None
        self._receive_timeout = -1  # the serving socket's ZMQ_RCVTIMEO (-1: none yet)

    # -- lifecycle -----------------------------------------------------------------

    def bind(self) -> str:
        """Bind the sockets; returns the actual endpoint (``tcp://127.0.0.1:*`` works)."""
        socket = self.context.socket(zmq.REP)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, HARD_LIMIT_FACTOR * self.config.max_message_bytes)
        self.socket = socket
        try:
            socket.bind(self.config.bind)
        except zmq.ZMQError as exc:
            self._close_unstarted()
            raise ServeError(
                f"cannot listen on {self.config.bind}: {exc}; is another daemon running there? "
                "pick another endpoint with --bind tcp://127.0.0.1:PORT"
            ) from None
        self.endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
        if self.config.control is not None:
            self._bind_control(self.config.control)
        return self.endpoint

    def _close_unstarted(self) -> None:
        """Close a daemon that never served: also without the empty journal file its
        start created (:meth:`Journal.abandon`)."""
        self.close()
        if self.journal is not None:
            self.journal.abandon()

    def _bind_control(self, endpoint: str) -> None:
        # ROUTER, not REP: it answers `status` (and refuses a second reload) while a
        # reload is loading, and answers the reload itself when the load is over. The
        # clients are plain REQ sockets.
        control = self.context.socket(zmq.ROUTER)
        control.setsockopt(zmq.LINGER, 0)
        control.setsockopt(zmq.MAXMSGSIZE, 65536)
        try:
            control.bind(endpoint)
        except zmq.ZMQError as exc:
            control.close(linger=0)
            if self.config.control_required:
                self._close_unstarted()
                raise ServeError(
                    f"cannot open the control socket on {endpoint}: {exc}; pick another with "
                    "--control tcp://127.0.0.1:PORT or turn it off with --control none"
                ) from None
            log.warning(
                "control_socket_disabled",
                endpoint=endpoint,
                error=str(exc),
                detail="reload with SIGHUP, or restart with --control tcp://127.0.0.1:PORT",
            )
            return
        self.control = control
        self.control_endpoint = control.getsockopt_string(zmq.LAST_ENDPOINT)
        self._write_daemon_file()

    def _write_daemon_file(self) -> None:
        """Publish the control endpoint and token to this user only (mode 0600; on Windows
        the per-user data folder is private to the user)."""
        assert self.endpoint is not None
        path = daemon_file(self.config.state_dir, self.endpoint)
        record = {
            "pid": os.getpid(),
            "endpoint": self.endpoint,
            "control": self.control_endpoint,
            "token": self.token,
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record, f)
            os.replace(temporary, path)
        except OSError as exc:
            log.warning(
                "control_file_failed",
                path=str(path),
                error=repr(exc),
                detail="`ai-trading-bridge reload` cannot find this daemon; use SIGHUP",
            )
            return
        self.daemon_file = path

    def stop(self) -> None:
        """Ask the loop to stop after the request in hand (signal- and thread-safe)."""
        self._stop.set()

    def request_reload(self) -> None:
        """Ask the loop to reload the files being served (SIGHUP)."""
        self._reload_pending = True

    def serve_forever(self) -> None:
        """Serve until :meth:`stop`; always closes the sockets and the journal."""
        if self.socket is None:
            self.bind()
        assert self.socket is not None
        socket, control = self.socket, self.control
        policy = self.dispatcher.policy
        log.info(
            "serving",
            endpoint=self.endpoint,
            control=self.control_endpoint,
            model_version=policy.version,
            algorithm=policy.algorithm,
            fast_path=isinstance(policy.actor, NumpyActor),
            source=policy.source.describe(),
            journal=None if self.journal is None else str(self.journal.folder),
        )
        idle_timeout = 0 if self.config.busy_poll else self.config.poll_ms
        done: list[_Done] = []  # replied, not yet logged
        next_watch = time.monotonic() + WATCHDOG_EVERY_S
        try:
            while not self._stop.is_set():
                if not done and time.monotonic() >= next_watch:
                    next_watch = time.monotonic() + WATCHDOG_EVERY_S
                    self._watch()
                timeout = IDLE_AFTER_REPLY_MS if done or self._loading else idle_timeout
                frames = self._receive(socket, timeout)
                if frames is not None:
                    finished = self._serve_one(socket, frames)
                    if finished is not None:
                        done.append(finished)
                if done and (frames is None or len(done) >= MAX_UNRECORDED):
                    self._record(done)
                    done = []
                    if frames is None:
                        collect_garbage_when_idle()
                if self._loading is not None and not self._loading.thread.is_alive():
                    self._finish_reload()
                # The control socket is looked at once per turn of the loop (a control
                # request waits at most poll_ms); see _receive.
                if control is not None and int(control.get(zmq.EVENTS)) & zmq.POLLIN:
                    self._control_one(control)
                    control = self.control  # None once a cancelled reload closed it
                if self._reload_pending and self._loading is None:
                    self._reload_pending = False
                    self._start_reload(self.dispatcher.policy.source, reply=None)
        finally:
            self._record(done)
            if self._loading is not None:
                sys.setswitchinterval(self._loading.switch_interval)
            self.close()
            log.info("stopped", requests=self.requests, log_lines_dropped=dropped_lines())

    def close(self) -> None:
        """Close the sockets (linger 0), the journal and the context; a reload still
        loading is cancelled, and its control request answered."""
        if self._loading is not None:
            self._cancel_reload()
        for socket in (self.socket, self.control):
            if socket is not None:
                socket.close(linger=0)
        self.socket = self.control = None
        if self.daemon_file is not None:
            try:
                if json.loads(self.daemon_file.read_text(encoding="utf-8")).get("pid") == (
                    os.getpid()
                ):
                    self.daemon_file.unlink()
            except (OSError, ValueError):
                pass
            self.daemon_file = None
        if self.journal is not None:
            self.journal.close()
        self.context.term()

    def _cancel_reload(self) -> None:
        """The daemon is stopping mid-reload: stop the reload's child, let its thread fail
        and remove its temp folder, and tell whoever asked for the reload."""
        loading, self._loading = self._loading, None
        assert loading is not None
        stop_workers(loading.thread)
        loading.thread.join(RELOAD_STOP_WAIT_S)
        log.warning(
            "reload_cancelled",
            source=loading.source.describe(),
            detail="the daemon is stopping; the model it served is unchanged",
        )
        if loading.reply is not None and self.control is not None:
            reply = {  # no "model": a stopping daemon serves nothing
                "ok": False,
                "error": "the daemon is stopping; the reload was cancelled",
            }
            with contextlib.suppress(zmq.ZMQError):
                _send_control(self.control, loading.reply, reply)
                self.control.close(linger=500)  # let the reply leave before the context ends
                self.control = None

    # -- requests ------------------------------------------------------------------

    def _receive(self, socket: zmq.Socket, timeout_ms: int) -> list[bytes] | None:
        """The next request's frames, or None after ``timeout_ms`` without one.

        A blocking receive with a timeout, not a poll of the serving and control sockets:
        a poll costs about 20 µs more per request after a pause (the wrapper's Python,
        and asking each socket for its events), and a request is what the loop waits for
        all day. Control requests are few and human; they wait at most ``poll_ms``.
        """
        if timeout_ms != self._receive_timeout:
            socket.setsockopt(zmq.RCVTIMEO, timeout_ms)
            self._receive_timeout = timeout_ms
        try:
            return socket.recv_multipart()  # type: ignore[no-any-return]
        except zmq.Again:
            return None

    def _serve_one(self, socket: zmq.Socket, frames: list[bytes]) -> _Done | None:
        """Send the reply to one received request; returns what is left to record."""
        started = time.perf_counter_ns()
        # A reload's child is stopped while this request is answered (see hold_workers).
        held = self._loading is not None and hold_workers()
        try:
            return self._answer(socket, frames, started)
        finally:
            if held:
                release_workers()

    def _answer(self, socket: zmq.Socket, frames: list[bytes], started: int) -> _Done | None:
        self.requests += 1
        raw = frames[0] if len(frames) == 1 else b"".join(frames)
        outcome: Outcome | None = None
        try:
            if len(frames) > 1:
                reply = protocol.error_reply(
                    protocol.BAD_JSON,
                    "send each request as one frame holding one JSON object",
                    None,
                )
                outcome = Outcome(reply, ok=False, error_code=protocol.BAD_JSON, parsed=False)
            else:
                outcome = self.dispatcher.handle(raw)
            reply = outcome.reply
        except BaseException:  # handle() never raises; this keeps the lockstep if it does
            log.exception("dispatch_failed")
            reply = _FALLBACK_REPLY
        if outcome is not None and self.journal is not None:
            # Written to the OS before the reply: a request the client saw answered is in
            # the journal even if the daemon is killed right after sending.
            self.journal.record(raw, outcome, (time.perf_counter_ns() - started) // 1000)
        socket.send(reply)
        latency_us = (time.perf_counter_ns() - started) // 1000
        return None if outcome is None else (raw, outcome, latency_us)

    def _watch(self) -> None:
        """Periodic checks between requests: the stale-data watchdog, the kill switch."""
        try:
            self.dispatcher.check_stale(datetime.now(timezone.utc))
            self.dispatcher.refresh_halt()
            self.dispatcher.flush_logs()
        except Exception:
            log.exception("watchdog_failed", detail="serving continues")

    def _record(self, done: list[_Done]) -> None:
        """Log replied requests; a failure here never costs a reply."""
        for _raw, outcome, latency_us in done:
            try:
                self.monitor.observe(outcome, latency_us)
            except Exception:
                log.exception("after_reply_failed", detail="the reply was sent")
        if done:
            try:
                self.dispatcher.refresh_halt()
            except Exception:
                log.exception("after_reply_failed", detail="the reply was sent")
        self.dispatcher.flush_logs()

    def _control_one(self, control: zmq.Socket) -> None:
        frames = control.recv_multipart()
        # A REQ client's request reaches a ROUTER as [peer, b"", body]; anything else
        # (a DEALER or raw peer) cannot be answered in step and is dropped.
        if len(frames) != 3 or frames[1] != b"":
            log.warning("control_refused", detail="a control request came not from a REQ socket")
            return
        peer = frames[0]
        try:
            command = json.loads(frames[2])
            reply = self._control_command(command, peer)
        except Exception as exc:
            reply = {"ok": False, "error": f"bad control request: {exc!r}"}
        if reply is not None:  # None: a reload is loading; it replies when done
            _send_control(control, peer, reply)

    def _control_command(self, command: Any, peer: bytes) -> dict[str, Any] | None:
        if not isinstance(command, dict) or command.get("type") not in ("reload", "status"):
            return {"ok": False, "error": 'expected {"type": "reload", ...} or {"type": "status"}'}
        token = command.get("token")
        if not isinstance(token, str) or not hmac.compare_digest(token, self.token):
            log.warning("control_refused", detail="a control request came without the token")
            return {
                "ok": False,
                "error": "refused: the request does not carry this daemon's token (use "
                "`ai-trading-bridge reload`, which reads it from the daemon's file)",
            }
        if command["type"] == "status":
            return {"ok": True, **self.status()}
        current = self.dispatcher.policy
        paths = {k: command.get(k) for k in ("bundle", "model", "vecnorm")}
        try:
            source = ModelSource.from_options(**paths) if any(paths.values()) else None
        except ConfigError as exc:
            return {"ok": False, "error": str(exc), "model": current.info()}
        if source is not None:
            outside = [
                str(p)
                for p in (source.bundle, source.model, source.vecnorm)
                if p is not None and not self._allowed(p)
            ]
            if outside:
                log.warning("reload_refused", paths=outside, allowed=self._model_dirs())
                return {
                    "ok": False,
                    "error": f"refused: {outside[0]} is outside the model folders this daemon "
                    f"may load from ({', '.join(self._model_dirs())}); start it with "
                    "--model-dir FOLDER to allow another",
                    "model": current.info(),
                }
        if self._loading is not None:
            return {
                "ok": False,
                "error": "a reload is already loading ("
                f"{self._loading.source.describe()}); wait for its answer",
                "model": current.info(),
            }
        self._start_reload(source or current.source, reply=peer)
        return None

    def _model_dirs(self) -> list[str]:
        return [str(p) for p in self.config.model_dirs or default_model_dirs(self.config.model)]

    def _allowed(self, path: Path) -> bool:
        resolved = Path(path).resolve()
        return any(resolved.is_relative_to(Path(root).resolve()) for root in self._model_dirs())

    def _start_reload(self, source: ModelSource, reply: bytes | None) -> None:
        """Load, check and smoke-test ``source`` on another thread; the loop swaps it in
        (:meth:`_finish_reload`) between two requests once it is ready."""
        loading = _Reload(source, reply, sys.getswitchinterval())

        def work() -> None:
            started = time.perf_counter()
            pace_this_thread(RELOAD_BUSY_S, RELOAD_PAUSE_S)
            try:
                loading.policy = self.loader(source)
            except BaseException as exc:
                loading.error = exc
            loading.load_ms = round((time.perf_counter() - started) * 1000, 1)

        loading.thread = threading.Thread(target=work, name="reload", daemon=True)
        # The loader holds the GIL for long stretches (unzipping, torch); a short switch
        # interval lets the serving thread take it back within half a millisecond.
        sys.setswitchinterval(RELOAD_SWITCH_INTERVAL_S)
        self._loading = loading
        log.info("reload_started", source=source.describe())
        loading.thread.start()

    def _finish_reload(self) -> None:
        loading, self._loading = self._loading, None
        assert loading is not None
        sys.setswitchinterval(loading.switch_interval)
        current = self.dispatcher.policy
        reply: dict[str, Any]
        message = ""
        if loading.policy is None:
            exc = loading.error
            message = str(exc) if isinstance(exc, PolicyLoadError) else repr(exc)
        elif not protocol.same_period(loading.policy.bar_period, current.bar_period):
            # The connected charts send bars of the served model's period (hello checked
            # it); a model of another period would be fed bars it was never trained on.
            new, served = loading.policy.bar_period, current.bar_period
            message = (
                f"model {loading.policy.version} was trained on "
                f"{protocol.describe_period(new)} bars; this daemon serves "
                f"{protocol.describe_period(served)} bars to its charts: serve it from "
                "another daemon (ai-trading-bridge serve --bind ... --bundle ...) for charts "
                "of that period"
            )
        if message:
            log.error(
                "reload_failed",
                source=loading.source.describe(),
                error=message,
                serving=current.version,
                detail="the previous model keeps serving",
            )
            reply = {"ok": False, "error": message, "model": current.info()}
        else:
            assert loading.policy is not None  # no message: it loaded
            previous = self.dispatcher.swap_policy(loading.policy)
            log.info(
                "model_reloaded",
                model_version=loading.policy.version,
                previous_version=previous.version,
                source=loading.source.describe(),
                load_ms=loading.load_ms,
            )
            reply = {"ok": True, "model": loading.policy.info(), "previous": previous.info()}
        if loading.reply is not None and self.control is not None:
            _send_control(self.control, loading.reply, reply)

    def status(self) -> dict[str, Any]:
        """What the daemon serves, for ``reload --status`` and tests."""
        policy = self.dispatcher.policy
        return {
            "model": policy.info(),
            "source": policy.source.to_dict(),
            "endpoint": self.endpoint,
            "sessions": len(self.dispatcher.sessions),
            "requests": self.requests,
            "journal_failures": 0 if self.journal is None else self.journal.failures,
            "log_lines_dropped": dropped_lines(),
            "risk": self.dispatcher.risk_summary(),
            "reloading": None if self._loading is None else self._loading.source.describe(),
        }


class _Reload:
    """A reload in progress on its own thread."""

    def __init__(self, source: ModelSource, reply: bytes | None, switch_interval: float) -> None:
        self.source = source
        self.reply = reply  # the control peer to answer when done (None: SIGHUP)
        self.switch_interval = switch_interval
        self.thread: threading.Thread = threading.Thread()
        self.policy: LoadedPolicy | None = None
        self.error: BaseException | None = None
        self.load_ms = 0.0


def _send_control(control: zmq.Socket, peer: bytes, reply: dict[str, Any]) -> None:
    """Answer the REQ peer ``peer`` on the ROUTER control socket (a peer gone since is
    dropped by ZeroMQ)."""
    control.send_multipart([peer, b"", json.dumps(reply).encode()])


def daemon_file(state_dir: Path, endpoint: str) -> Path:
    """The file where the daemon serving ``endpoint`` publishes its control endpoint and
    token: ``<state_dir>/daemons/tcp_127.0.0.1_5555.json``."""
    return state_dir / DAEMONS_FOLDER / (re.sub(r"[^A-Za-z0-9.]+", "_", endpoint) + ".json")


def default_model_dirs(source: ModelSource) -> list[Path]:
    """The folders a reload may load from when none are configured: the folder holding
    the model served at start (the bundle's parent, or the two files' folders)."""
    if source.bundle is not None:
        return [source.bundle.resolve().parent]
    return sorted({p.resolve().parent for p in (source.model, source.vecnorm) if p is not None})


def find_daemon(state_dir: Path, endpoint: str | None, control: str | None) -> dict[str, Any]:
    """The record of a running daemon: by its control endpoint when given, else by the
    endpoint it serves.

    Raises:
        FileNotFoundError: no such daemon has published its control endpoint.
    """
    folder = state_dir / DAEMONS_FOLDER
    if control is not None:
        for path in sorted(folder.glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if record.get("control") == control:
                return dict(record)
        raise FileNotFoundError(
            f"no daemon with control endpoint {control} has a file in {folder}; is it "
            "running with the same --state-dir?"
        )
    assert endpoint is not None
    path = daemon_file(state_dir, endpoint)
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        raise FileNotFoundError(
            f"no daemon serving {endpoint} found ({path} is missing); is it running, with "
            "the same --state-dir? Name it with --endpoint tcp://127.0.0.1:PORT"
        ) from None


def build_server(
    config: ServeConfig, loader: Callable[[ModelSource], LoadedPolicy] = load_policy
) -> BridgeServer:
    """Load the policy and assemble the daemon (not yet bound).

    Raises:
        JournalError: the journal folder cannot be written (checked before the model
            loads, so the refusal is quick).
        PolicyLoadError: the model cannot be served.
    """
    journal = Journal(config.journal_dir) if config.journal_dir is not None else None
    if journal is not None:
        journal.open()
    try:
        policy = loader(config.model)
        dispatcher = Dispatcher(
            policy,
            exchange_tz=exchange_zone(config.exchange_tz),
            max_message_bytes=config.max_message_bytes,
            max_sessions=config.max_sessions,
            max_clock_skew_s=config.max_clock_skew_s,
            allow_other_scale=config.allow_other_scale,
            risk=config.risk,
            kill_switch=KillSwitch(config.state_dir),
        )
        dispatcher.calendars.build(policy.env_config.instrument)  # about a second; not per bar
        warm_imports()  # so a reload thread never imports torch while requests are served
    except BaseException:  # Ctrl+C too: no empty journal left by a start that failed
        if journal is not None:
            journal.abandon()
        raise
    # Reloads of pickled models unpickle in a child process (bridge.reload_worker), so the
    # bars served meanwhile never wait for the interpreter.
    reloader = load_isolated if loader is load_policy else loader
    return BridgeServer(config, dispatcher, journal, Monitor(config.monitor), reloader)


def pace_this_thread(busy_s: float, pause_s: float) -> None:
    """Make the calling thread sleep ``pause_s`` after every ``busy_s`` of running Python.

    A reload (unpickling, torch, the smoke test) would otherwise keep a CPU and take the
    interpreter back every switch interval while requests are served: on a busy two-core
    machine the serving thread and ZeroMQ's I/O thread then wait for a CPU. Checked at
    each Python or C function call of this thread (``sys.setprofile``); a single long C
    call is not cut.
    """
    if busy_s <= 0 or pause_s <= 0:
        return
    clock, sleep = time.perf_counter, time.sleep
    resumed = clock()

    def pace(_frame: Any, _event: str, _arg: Any) -> None:
        nonlocal resumed
        now = clock()
        if now - resumed >= busy_s:
            sleep(pause_s)
            resumed = clock()

    sys.setprofile(pace)


def freeze_startup_objects() -> None:
    """Import what serving and reloading need, then take every object alive now out of
    the garbage collector's scans (``gc.freeze``), before the model is loaded.

    torch, SB3 and pandas leave about 230,000 objects that live as long as the process;
    a full collection walks them all (about 0.2 s on a loaded 2-core VM, holding the
    interpreter while requests wait). Frozen, a full collection walks only what was
    allocated since (the model, the streams: hundreds of objects, well under a
    millisecond). The model itself is loaded after the freeze, so a model replaced by a
    reload is still collected. For the daemon process only (tests build servers in the
    test process and keep the collector as it is).
    """
    warm_imports()
    import pandas_market_calendars  # type: ignore[import-untyped]  # noqa: F401  (env.sessions)

    gc.collect()
    gc.freeze()


def collect_garbage_when_idle() -> None:
    """Run the collection CPython would soon run by itself, now, while no request waits.

    The automatic collector runs inside whichever allocation crosses its threshold: in
    the middle of a request, adding a young collection (about 0.15 ms on the development
    VM) to one reply in five and an older one (1-2 ms) to one in fifty. Collecting
    between requests, the generation that is due, keeps those off the serving path; the
    automatic collector stays on for long bursts with no idle moment.
    """
    count0, count1, count2 = gc.get_count()
    if count0 < IDLE_GC_ALLOCATIONS:
        return
    _, threshold1, threshold2 = gc.get_threshold()
    generation = 0
    if count1 >= threshold1:
        generation = 2 if count2 >= threshold2 else 1
    gc.collect(generation)


def install_signal_handlers(server: BridgeServer) -> None:
    """SIGINT/SIGTERM (and SIGBREAK on Windows) stop; SIGHUP reloads (POSIX)."""
    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda *_: server.stop())
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: server.request_reload())


# -- clients -------------------------------------------------------------------------


class LazyPirateClient:
    """A REQ client that survives a lost daemon (ZeroMQ guide, "Lazy Pirate").

    Waits ``timeout_s`` for each reply; on timeout closes the socket (linger 0),
    reconnects and resends the same request; after ``retries`` tries gives up (the caller
    acts as HOLD and keeps bars flowing).
    """

    def __init__(self, endpoint: str, timeout_s: float = 2.0, retries: int = 3) -> None:
        if retries < 1:
            raise ValueError(f"retries must be >= 1, got {retries}")
        self.endpoint = endpoint
        self.timeout_ms = max(1, int(timeout_s * 1000))
        self.retries = retries
        self.context = zmq.Context()
        try:
            self.socket = self._connect()
        except zmq.ZMQError:  # e.g. an endpoint without a port: leave nothing to hang at exit
            self.context.term()
            raise
        self.timeouts = 0
        self.failures = 0

    def _connect(self) -> zmq.Socket:
        socket = self.context.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        try:
            socket.connect(self.endpoint)
        except zmq.ZMQError:
            socket.close(linger=0)
            raise
        return socket

    def request(self, payload: bytes) -> bytes | None:
        """Send ``payload`` and return the reply, or None after ``retries`` timeouts."""
        for attempt in range(1, self.retries + 1):
            self.socket.send(payload)
            if self.socket.poll(self.timeout_ms, zmq.POLLIN):
                return self.socket.recv()
            self.timeouts += 1
            log.warning(
                "daemon_timeout", endpoint=self.endpoint, attempt=attempt, retries=self.retries
            )
            self.socket.close(linger=0)
            self.socket = self._connect()
        self.failures += 1
        return None

    def close(self) -> None:
        """Close the socket (linger 0) and the context."""
        self.socket.close(linger=0)
        self.context.term()

    def __enter__(self) -> LazyPirateClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def control_request(
    endpoint: str, command: dict[str, Any], timeout_s: float = CONTROL_TIMEOUT_S
) -> dict[str, Any]:
    """Send one command to a daemon's control socket.

    Raises:
        TimeoutError: no reply within ``timeout_s`` (no daemon there, or control disabled).
    """
    context = zmq.Context()
    socket = context.socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    reply = None
    deadline = time.monotonic() + timeout_s
    try:
        socket.connect(endpoint)
        socket.send(json.dumps(command).encode())
        while (left := deadline - time.monotonic()) > 0:
            if socket.poll(max(1, int(min(left, CONTROL_POLL_SLICE_S) * 1000)), zmq.POLLIN):
                reply = socket.recv()
                break
    finally:
        socket.close(linger=0)
        context.term()
    if reply is None:
        raise TimeoutError(
            f"no reply from the control socket {endpoint} within {timeout_s:g} s; is the "
            "daemon running with --control on that endpoint?"
        )
    return json.loads(reply)
