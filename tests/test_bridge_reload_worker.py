"""Reloads of pickled models run in a child process (bridge.reload_worker): the policy
that comes back serves exactly what an in-process load serves, failures keep their
messages, and the daemon's reload goes through it."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from bridge_helpers import Client, history_message, running_server, serve_config, tiny_bars

from bridge import reload_worker
from bridge.config import ModelSource
from bridge.plain import PLAIN_NORMALIZER, PLAIN_POLICY, export_plain
from bridge.policy import PolicyLoadError, load_policy
from bridge.reload_worker import load_isolated
from bridge.server import control_request
from env.config import TOTAL_OBSERVATION_SIZE, WARMUP_BARS

pytest_plugins = ["bridge_helpers"]

BARS = tiny_bars()


def two_files(bundle: Path) -> ModelSource:
    return ModelSource(model=bundle / "model.zip", vecnorm=bundle / "vecnormalize.pkl")


def assert_same_decisions(isolated, in_process) -> None:
    assert isolated.model is None  # nothing unpickled in this process
    for name in ("version", "sha256", "algorithm", "card", "env_config", "source"):
        assert getattr(isolated, name) == getattr(in_process, name), name
    rng = np.random.default_rng(5)
    for scale in (0.1, 1.0, 30.0):
        for raw in (rng.normal(size=(50, TOTAL_OBSERVATION_SIZE)) * scale).astype(np.float32):
            ours, theirs = isolated.normalizer(raw), in_process.normalizer(raw)
            assert ours.tobytes() == theirs.tobytes()
            assert isolated.actor(ours).tobytes() == in_process.actor(theirs).tobytes()


def test_the_guides_two_files_load_in_a_child_and_serve_the_same(tiny_bundle) -> None:
    source = two_files(tiny_bundle)
    assert_same_decisions(load_isolated(source), load_policy(source))


def test_a_bundle_without_plain_files_loads_in_a_child(tiny_bundle, tmp_path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    for name in (PLAIN_POLICY, PLAIN_NORMALIZER):
        (bundle / name).unlink(missing_ok=True)
    source = ModelSource(bundle=bundle)
    with mock.patch.object(reload_worker, "_run_worker", wraps=reload_worker._run_worker) as run:
        isolated = load_isolated(source)
    assert run.call_count == 1
    assert_same_decisions(isolated, load_policy(source))


def test_a_bundle_with_plain_files_loads_here_without_a_child(tiny_bundle, tmp_path) -> None:
    bundle = tmp_path / "plain"
    shutil.copytree(tiny_bundle, bundle)
    policy = load_policy(ModelSource(bundle=bundle))
    with open(bundle / "vecnormalize.pkl", "rb") as f:
        vecnorm = pickle.load(f)
    export_plain(policy.model, vecnorm, bundle)
    with mock.patch.object(reload_worker, "_run_worker") as run:
        isolated = load_isolated(ModelSource(bundle=bundle))
    assert run.call_count == 0 and isolated.model is None


def test_a_broken_model_fails_with_the_in_process_message(tiny_bundle, tmp_path) -> None:
    bundle = tmp_path / "broken"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / "model.zip").write_bytes(b"not a zip")
    source = two_files(bundle)
    with pytest.raises(PolicyLoadError) as expected:
        load_policy(source)
    with pytest.raises(PolicyLoadError) as isolated:
        load_isolated(source)
    assert str(isolated.value) == str(expected.value)


def test_a_worker_past_its_time_is_killed_and_the_reload_fails(tiny_bundle) -> None:
    with (
        mock.patch.object(reload_worker, "WORKER_TIMEOUT_S", 0.05),
        pytest.raises(PolicyLoadError, match="was stopped"),
    ):
        load_isolated(two_files(tiny_bundle))
    assert not reload_worker._workers


def test_the_daemon_reloads_pickled_files_through_the_child(tiny_bundle, tmp_path) -> None:
    """A daemon started without an injected loader reloads with load_isolated, over its
    control socket, while a client keeps being served."""
    shutil.copytree(tiny_bundle, tmp_path / "models")
    source = two_files(tmp_path / "models")
    config = serve_config(tiny_bundle, tmp_path, model=source, model_dirs=(tmp_path,))
    with running_server(config) as server:
        assert server.loader is load_isolated
        client = Client(server.endpoint)
        assert client.ask(history_message(BARS, 0, WARMUP_BARS))["ready"]
        command = {"type": "reload", "token": server.token}
        reply = control_request(server.control_endpoint, command, 120)
        assert reply["ok"] is True, reply
        assert server.dispatcher.policy.model is None  # the child's plain arrays
        assert reply["model"]["sha256"] == load_policy(source).sha256
        assert client.ask({"v": 1, "type": "ping"})["ok"]
        client.close()
