"""Shared pieces of the bridge tests: tiny real models, a daemon on a random loopback
port in a thread, and a REQ client with a timeout.

Test modules declare ``pytest_plugins = ["bridge_helpers"]`` to get the fixtures and
import the helpers by name. PYTEST_DONT_REWRITE: imported before pytest registers it as a
plugin, and its asserts are plain enough without rewriting.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from bridge.config import ModelSource, MonitorConfig, ServeConfig
from bridge.policy import load_policy
from bridge.replay import bar_object
from bridge.server import BridgeServer, build_server, daemon_file
from env.bars import Bars
from env.config import FEATURE_VERSION, TOTAL_OBSERVATION_SIZE
from env.synthetic import generate_bars
from env.trading_env import EnvConfig, TradingEnv

TINY_STEPS = 128
REPLY_TIMEOUT_MS = 5000

# The signals that ask a daemon process a test started to stop gracefully (what
# bridge.server's install_signal_handlers handles), by name. POSIX: SIGTERM and SIGINT.
# Windows: Ctrl+Break (SIGBREAK), the one such signal Windows can send to one process,
# and only to one started in a process group of its own (NEW_PROCESS_GROUP); there
# send_signal(SIGTERM) is TerminateProcess (exit 1, no handler runs) and SIGINT raises.
if os.name == "nt":
    STOP_SIGNALS = {"CTRL_BREAK_EVENT": signal.CTRL_BREAK_EVENT}
else:
    STOP_SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}
NEW_PROCESS_GROUP = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)  # Popen creationflags
# The exit status Popen reports after Popen.kill(): SIGKILL on POSIX, TerminateProcess's
# exit code 1 on Windows.
KILLED_STATUS = -signal.SIGKILL if os.name == "posix" else 1


def tiny_bars() -> Bars:
    """Three synthetic sessions (about 4000 bars): enough for 390-bar episodes."""
    return generate_bars(n_days=3, seed=11)


def model_card(config: EnvConfig, version: str, **extra: Any) -> dict[str, Any]:
    """A minimal model card, as the training engineer's bundle writer fills it."""
    return {
        "format": "ai-trading-bridge/model-card-v1",
        "version": version,
        "observation": {"size": TOTAL_OBSERVATION_SIZE, "feature_version": FEATURE_VERSION},
        "actions": ["HOLD", "BUY", "SELL", "MOVE_TO_BE", "ENABLE_TRAIL", "DISABLE_TRAIL"],
        "env": config.to_dict(),
        "validation": None,
        **extra,
    }


def train_bundle(
    folder: Path,
    *,
    seed: int = 0,
    maskable: bool = True,
    version: str | None = None,
    config: EnvConfig | None = None,
) -> Path:
    """Train a real (tiny) MaskablePPO or PPO on TradingEnv with VecNormalize and save it
    as a bundle: model.zip, vecnormalize.pkl, model.json."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    config = config or EnvConfig()
    bars = tiny_bars()
    venv = VecNormalize(
        DummyVecEnv([lambda: TradingEnv(bars, config)]),
        norm_obs=True,
        norm_reward=False,
        clip_obs=10.0,
    )
    venv.seed(seed)
    algorithm = MaskablePPO if maskable else PPO
    model = algorithm(
        "MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=seed, device="cpu"
    )
    model.learn(total_timesteps=TINY_STEPS)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.zip")
    venv.save(str(folder / "vecnormalize.pkl"))
    card = model_card(config, version or f"tiny-{'maskable' if maskable else 'ppo'}-{seed}")
    (folder / "model.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    return folder


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """CLI commands configure logging for the whole process; put it back afterwards."""
    import logging

    import structlog

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def field_paths(message: dict[str, Any]) -> list[tuple[str, ...]]:
    """Each field of a request as a path: its keys, then the keys of its objects."""
    nested = [(k, sub) for k, v in message.items() if isinstance(v, dict) for sub in v]
    return [(k,) for k in message] + nested


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MaskablePPO bundle, trained once per test session."""
    return train_bundle(tmp_path_factory.mktemp("bundle") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_policy(tiny_bundle: Path):
    """The tiny bundle, loaded and checked."""
    return load_policy(ModelSource(bundle=tiny_bundle))


def serve_config(bundle: Path, tmp_path: Path, **overrides: Any) -> ServeConfig:
    """A ServeConfig on a random loopback port, journal under ``tmp_path``."""
    values: dict[str, Any] = {
        "bind": "tcp://127.0.0.1:*",
        "control": "tcp://127.0.0.1:*",
        "control_required": True,
        "model": ModelSource(bundle=bundle),
        "journal_dir": tmp_path / "journal",
        "state_dir": tmp_path / "state",
        "model_dirs": (tmp_path,),
        "monitor": MonitorConfig(),
        "poll_ms": 20,
    }
    values.update(overrides)
    return ServeConfig(**values)


@contextmanager
def running_server(config: ServeConfig, policy=None) -> Iterator[BridgeServer]:
    """A daemon serving in a background thread; stopped and joined on exit."""
    if policy is not None:
        server = build_server(config, loader=lambda source: policy)
        server.loader = load_policy
    else:
        server = build_server(config)
    server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=5)
        assert not thread.is_alive(), "the daemon did not stop within 5 s"


class Client:
    """A REQ client for tests: one request, one reply, or an AssertionError on timeout."""

    def __init__(self, endpoint: str, context: zmq.Context | None = None) -> None:
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.REQ)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)

    def raw(self, payload: bytes, timeout_ms: int = REPLY_TIMEOUT_MS) -> bytes:
        self.socket.send(payload)
        assert self.socket.poll(timeout_ms, zmq.POLLIN), "no reply from the daemon"
        return self.socket.recv()

    def ask(self, message: dict[str, Any], timeout_ms: int = REPLY_TIMEOUT_MS) -> dict[str, Any]:
        return json.loads(self.raw(json.dumps(message).encode(), timeout_ms))

    def close(self) -> None:
        self.socket.close(linger=0)


def bar_message(
    bars: Bars,
    i: int,
    seq: int,
    client: str = "test-client",
    position: dict | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The ``bar`` request for bar ``i`` of ``bars``."""
    return {
        "v": 1,
        "type": "bar",
        "client": client,
        "instrument": "NQ 12-25",
        "seq": seq,
        "bar": bar_object(bars, i),
        "position": position
        or {
            "side": 0,
            "quantity": 0,
            "entry_price": None,
            "entry_time": None,
            "sl_price": None,
            "tp_price": None,
            "trailing": False,
        },
        **extra,
    }


def history_message(
    bars: Bars, start: int, stop: int, client: str = "test-client", seq: int | None = None
) -> dict[str, Any]:
    """The ``history`` request for bars ``start:stop``."""
    message: dict[str, Any] = {
        "v": 1,
        "type": "history",
        "client": client,
        "instrument": "NQ 12-25",
        "bars": [bar_object(bars, i) for i in range(start, stop)],
    }
    if seq is not None:
        message["seq"] = seq
    return message


class StubActor:
    """An actor with fixed logits: makes the policy choose a given action."""

    def __init__(self, logits: list[float]) -> None:
        self.logits = np.array(logits, dtype=np.float32)
        self.calls = 0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.logits.copy()


class CountingActor:
    """Wraps an actor and counts the forward passes (is the model run again?)."""

    def __init__(self, actor) -> None:
        self.actor = actor
        self.calls = 0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.actor(obs)


class FailingActor:
    """An actor that raises, as a broken model would."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        raise RuntimeError("simulated model failure")


def with_actor(policy, actor):
    """The same policy serving through ``actor``."""
    return replace(policy, actor=actor)


def random_observations(n: int, seed: int = 0) -> np.ndarray:
    """Observations spread like normalised ones and well beyond (float32)."""
    rng = np.random.default_rng(seed)
    scale = rng.choice([0.1, 1.0, 5.0, 30.0], size=(n, 1))
    return (rng.normal(size=(n, TOTAL_OBSERVATION_SIZE)) * scale).astype(np.float32)


__all__ = [
    "Client",
    "CountingActor",
    "FailingActor",
    "StubActor",
    "bar_message",
    "bar_object",
    "history_message",
    "model_card",
    "random_observations",
    "running_server",
    "serve_config",
    "tiny_bars",
    "tiny_bundle",
    "tiny_policy",
    "train_bundle",
    "with_actor",
]


def fake_daemon_record(state: Path, control: zmq.Socket) -> str:
    """Bind ``control`` (a ROUTER standing in for a daemon's control socket) on loopback
    and write the daemon file the CLI looks up under ``state``; returns the endpoint."""
    endpoint = f"tcp://127.0.0.1:{control.bind_to_random_port('tcp://127.0.0.1')}"
    record = daemon_file(state, endpoint)
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"control": endpoint, "token": "x"}), encoding="utf-8")
    return endpoint
