"""The ZeroMQ edge: the daemon's REP loop and control socket, and the REQ clients that
``replay`` and ``reload`` use. The only module of the project that imports zmq.

The loop polls with a timeout (``poll_ms``) so a stop or reload request is noticed within
that time (``busy_poll`` spins instead, trading a CPU core for a hot cache). Every message
received gets exactly one reply. The journal line is handed to the operating system before
the reply is sent (so every replied request survives a kill); the log lines are queued
after the reply has gone, once the socket has been idle for a millisecond (or after a
burst of 64 requests, or at shutdown), and written by other threads
(:mod:`bridge.console`). A failure in either is logged and never costs a reply. Sockets
are closed with linger 0 in ``finally``.

Reload: SIGHUP (POSIX) reloads the files being served; ``ai-trading-bridge reload`` sends
``{"type": "reload", ...}`` to the control socket (loopback only, works on Windows). The
new policy is loaded, checked and smoke-tested first; only then is it swapped in, between
two requests. A bad one leaves the old model serving and the reply says why.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
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
from bridge.policy import LoadedPolicy, NumpyActor, PolicyLoadError, load_policy

log = structlog.get_logger()

# After a reply the loop waits this long for another request before journaling and
# logging: the socket's I/O thread needs a CPU to put the reply on the wire, and on a busy
# machine it only gets one once this thread sleeps. Recording first would add its cost
# (about 0.3 ms) to every reply.
IDLE_AFTER_REPLY_MS = 1
WATCHDOG_EVERY_S = 1.0  # how often the stale-data watchdog looks at the streams
MAX_UNRECORDED = 64  # record anyway after this many replies in a burst (history, replay)
HARD_LIMIT_FACTOR = 16  # ZMQ_MAXMSGSIZE = 16 x --max-message-bytes: larger peers are dropped
CONTROL_TIMEOUT_S = 30.0  # loading a model can take a few seconds
_FALLBACK_REPLY = protocol.error_reply(
    protocol.INTERNAL, "the daemon hit an unexpected error; act as HOLD", None
)


_Done = tuple[bytes, Outcome, int]  # request, outcome, latency in microseconds


class ServeError(Exception):
    """The daemon cannot start; the message says what to do."""


class BridgeServer:
    """The daemon: a REP socket for NinjaTrader clients and a control REP socket.

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
            self.close()
            raise ServeError(
                f"cannot listen on {self.config.bind}: {exc}; is another daemon running there? "
                "pick another endpoint with --bind tcp://127.0.0.1:PORT"
            ) from None
        self.endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
        if self.config.control is not None:
            self._bind_control(self.config.control)
        return self.endpoint

    def _bind_control(self, endpoint: str) -> None:
        control = self.context.socket(zmq.REP)
        control.setsockopt(zmq.LINGER, 0)
        control.setsockopt(zmq.MAXMSGSIZE, 65536)
        try:
            control.bind(endpoint)
        except zmq.ZMQError as exc:
            control.close(linger=0)
            if self.config.control_required:
                self.close()
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
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        if self.control is not None:
            poller.register(self.control, zmq.POLLIN)
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
                events = dict(poller.poll(IDLE_AFTER_REPLY_MS if done else idle_timeout))
                if self.socket in events:
                    finished = self._serve_one(self.socket)
                    if finished is not None:
                        done.append(finished)
                if done and (not events or len(done) >= MAX_UNRECORDED):
                    self._record(done)
                    done = []
                if self.control is not None and self.control in events:
                    self._control_one(self.control)
                if self._reload_pending:
                    self._reload_pending = False
                    self.reload()
        finally:
            self._record(done)
            self.close()
            log.info("stopped", requests=self.requests, log_lines_dropped=dropped_lines())

    def close(self) -> None:
        """Close the sockets (linger 0), the journal and the context."""
        for socket in (self.socket, self.control):
            if socket is not None:
                socket.close(linger=0)
        self.socket = self.control = None
        if self.journal is not None:
            self.journal.close()
        self.context.term()

    # -- requests ------------------------------------------------------------------

    def _serve_one(self, socket: zmq.Socket) -> _Done | None:
        """Receive one request and send its reply; returns what is left to record."""
        frames = socket.recv_multipart()
        started = time.perf_counter_ns()
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
        """Periodic checks between requests: the stale-data watchdog."""
        try:
            self.dispatcher.check_stale(datetime.now(timezone.utc))
        except Exception:
            log.exception("watchdog_failed", detail="serving continues")

    def _record(self, done: list[_Done]) -> None:
        """Log replied requests; a failure here never costs a reply."""
        for _raw, outcome, latency_us in done:
            try:
                self.monitor.observe(outcome, latency_us)
            except Exception:
                log.exception("after_reply_failed", detail="the reply was sent")

    def _control_one(self, control: zmq.Socket) -> None:
        frames = control.recv_multipart()
        try:
            command = json.loads(frames[0])
            reply = self._control_command(command)
        except Exception as exc:
            reply = {"ok": False, "error": f"bad control request: {exc!r}"}
        control.send(json.dumps(reply).encode())

    def _control_command(self, command: Any) -> dict[str, Any]:
        if not isinstance(command, dict) or command.get("type") not in ("reload", "status"):
            return {"ok": False, "error": 'expected {"type": "reload", ...} or {"type": "status"}'}
        if command["type"] == "status":
            return {"ok": True, **self.status()}
        paths = {k: command.get(k) for k in ("bundle", "model", "vecnorm")}
        try:
            source = ModelSource.from_options(**paths) if any(paths.values()) else None
        except ConfigError as exc:
            return {"ok": False, "error": str(exc), "model": self.dispatcher.policy.info()}
        return self.reload(source)

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
        }

    def reload(self, source: ModelSource | None = None) -> dict[str, Any]:
        """Load, check and smoke-test a policy, then swap it in; on any failure keep
        serving the current one. ``source`` defaults to the files being served."""
        current = self.dispatcher.policy
        source = source or current.source
        started = time.perf_counter()
        try:
            policy = self.loader(source)
        except Exception as exc:
            message = str(exc) if isinstance(exc, PolicyLoadError) else repr(exc)
            log.error(
                "reload_failed",
                source=source.describe(),
                error=message,
                serving=current.version,
                detail="the previous model keeps serving",
            )
            return {"ok": False, "error": message, "model": current.info()}
        previous = self.dispatcher.swap_policy(policy)
        log.info(
            "model_reloaded",
            model_version=policy.version,
            previous_version=previous.version,
            source=source.describe(),
            load_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return {"ok": True, "model": policy.info(), "previous": previous.info()}


def build_server(
    config: ServeConfig, loader: Callable[[ModelSource], LoadedPolicy] = load_policy
) -> BridgeServer:
    """Load the policy and assemble the daemon (not yet bound).

    Raises:
        PolicyLoadError: the model cannot be served.
    """
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
    journal = Journal(config.journal_dir) if config.journal_dir is not None else None
    if journal is not None:
        journal.open()
    return BridgeServer(config, dispatcher, journal, Monitor(config.monitor), loader)


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
        self.socket = self._connect()
        self.timeouts = 0
        self.failures = 0

    def _connect(self) -> zmq.Socket:
        socket = self.context.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(self.endpoint)
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
    with LazyPirateClient(endpoint, timeout_s=timeout_s, retries=1) as client:
        reply = client.request(json.dumps(command).encode())
    if reply is None:
        raise TimeoutError(
            f"no reply from the control socket {endpoint} within {timeout_s:g} s; is the "
            "daemon running with --control on that endpoint?"
        )
    return json.loads(reply)
