"""Reloads of pickled models run in a child process (bridge.reload_worker): the policy
that comes back serves exactly what an in-process load serves, failures keep their
messages, and the daemon's reload goes through it."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import structlog
import structlog.testing
import zmq
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


def test_a_missing_file_is_refused_without_starting_a_child(tiny_bundle, tmp_path) -> None:
    source = ModelSource(model=tmp_path / "gone.zip", vecnorm=tiny_bundle / "vecnormalize.pkl")
    with pytest.raises(PolicyLoadError) as expected:
        load_policy(source)
    with (
        mock.patch.object(reload_worker, "_run_worker") as run,
        pytest.raises(PolicyLoadError) as isolated,
    ):
        load_isolated(source)
    assert run.call_count == 0 and str(isolated.value) == str(expected.value)


def write_job(folder: Path, source: ModelSource, **sha256: str) -> None:
    """The job file the daemon writes for the child: the source and its files' hashes."""
    job = {"source": source.to_dict(), "sha256": {**reload_worker._hashes(source), **sha256}}
    (folder / reload_worker.SOURCE_FILE).write_text(json.dumps(job), encoding="utf-8")


@pytest.mark.parametrize("changed", ["model", "vecnorm"])
def test_the_child_refuses_a_file_changed_since_the_reload_was_asked(
    tiny_bundle, tmp_path, changed
) -> None:
    """The child may get CPU minutes after the daemon resolved (and, for a deploy
    pointer, checked) the files: it loads those bytes or nothing."""
    source = two_files(tiny_bundle)
    write_job(tmp_path, source, **{changed: "0" * 64})
    result = reload_worker.work(tmp_path)
    assert result["status"] == "error"
    path = source.model_path if changed == "model" else source.vecnorm_path
    assert str(path) in result["message"] and "changed" in result["message"]
    assert not (tmp_path / PLAIN_POLICY).exists()  # nothing exported for the daemon


def test_a_file_replaced_before_the_child_runs_is_not_swapped_in(tiny_bundle, tmp_path) -> None:
    shutil.copytree(tiny_bundle, tmp_path / "models")
    source = two_files(tmp_path / "models")
    real_run = reload_worker._run_worker

    def replace_then_run(folder: Path) -> dict:
        # what the daemon hashed is gone by the time the child starts
        data = source.vecnorm_path.read_bytes()
        source.vecnorm_path.write_bytes(data + b"\0")
        return real_run(folder)

    with (
        mock.patch.object(reload_worker, "_run_worker", replace_then_run),
        pytest.raises(PolicyLoadError, match="changed while the reload waited"),
    ):
        load_isolated(source)


def test_a_crashed_childs_last_words_survive_a_legacy_code_page(tmp_path, monkeypatch) -> None:
    """A child that dies without a result is reported by its last stderr line, read as
    UTF-8: under a cp1252 console it must not have written cp1252."""
    monkeypatch.setenv("PYTHONIOENCODING", "cp1252")
    folder = tmp_path / "modèle à recharger"
    (folder / (reload_worker.RESULT_FILE + ".tmp")).mkdir(parents=True)  # no result
    with pytest.raises(PolicyLoadError, match="exit code 1") as failure:
        reload_worker._run_worker(folder)
    # the error itself (not an interpreter abort), with the folder's name intact
    assert "IsADirectoryError" in str(failure.value)
    assert "modèle à recharger" in str(failure.value)


def test_the_childs_warnings_reach_the_daemons_log(tiny_bundle, tmp_path) -> None:
    bundle = tmp_path / "no-card"
    shutil.copytree(tiny_bundle, bundle)
    for name in ("model.json", PLAIN_POLICY, PLAIN_NORMALIZER):
        (bundle / name).unlink(missing_ok=True)
    with structlog.testing.capture_logs() as logs:
        load_isolated(ModelSource(bundle=bundle))
    relayed = [e for e in logs if e.get("reload_worker")]
    assert any(e["event"] == "model_card_missing" and e["log_level"] == "warning" for e in relayed)


def test_the_child_exits_when_the_daemon_goes(tiny_bundle, tmp_path) -> None:
    """Its stdin is the daemon's pipe: end-of-file (the daemon died) ends it."""
    write_job(tmp_path, two_files(tiny_bundle))
    child = subprocess.Popen(
        [sys.executable, "-m", "bridge.reload_worker", str(tmp_path)],
        stdin=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    child.stdin.close()  # type: ignore[union-attr]
    assert child.wait(60) == 3
    assert not (tmp_path / reload_worker.RESULT_FILE).exists()


def test_a_stopping_daemon_kills_the_reload_child_and_leaves_no_folder(
    tiny_bundle, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    shutil.copytree(tiny_bundle, tmp_path / "models")
    source = two_files(tmp_path / "models")
    config = serve_config(tiny_bundle, tmp_path, model=source, model_dirs=(tmp_path,))
    with running_server(config) as server:
        command = json.dumps({"type": "reload", "token": server.token}).encode()
        control = zmq.Context.instance().socket(zmq.REQ)
        control.connect(server.control_endpoint)
        control.send(command)  # no wait for the reply: the daemon stops mid-load
        deadline = time.monotonic() + 30
        while not reload_worker._workers and time.monotonic() < deadline:
            time.sleep(0.01)
        children = list(reload_worker._workers)
        assert children, "no reload child started"
    assert control.poll(5000), "the cancelled reload got no answer"
    reply = json.loads(control.recv())
    control.close(linger=0)
    assert reply["ok"] is False and "stopping" in reply["error"]
    assert "model" not in reply  # `reload` would print "still serving" from it
    assert all(child.poll() is not None for child in children)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_statistics_saved_without_normalisation_load_in_and_out_of_process(
    tiny_bundle, tmp_path
) -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from env.trading_env import EnvConfig, TradingEnv

    venv = VecNormalize(
        DummyVecEnv([lambda: TradingEnv(BARS, EnvConfig())]), norm_obs=False, norm_reward=False
    )
    venv.save(str(tmp_path / "raw.pkl"))
    source = ModelSource(model=tiny_bundle / "model.zip", vecnorm=tmp_path / "raw.pkl")
    in_process = load_policy(source)  # raised RecursionError before
    assert in_process.normalizer.enabled is False
    assert_same_decisions(load_isolated(source), in_process)


def test_a_non_finite_logit_gives_no_probabilities() -> None:
    from bridge.policy import masked_decision

    for bad in (np.nan, np.inf):
        logits = np.array([0.1, bad, 0.3, 0.0, 0.0, 0.0], np.float32)
        with pytest.raises(ValueError, match="non-finite logits"):
            masked_decision(logits, [1, 1, 1, 0, 0, 0])
    # a masked action's logit is never used
    action, probs = masked_decision(
        np.array([0, 0, 1, np.nan, 0, 0], np.float32), [1, 1, 1, 0, 0, 0]
    )
    assert action == 2 and all(np.isfinite(probs))


def test_a_child_without_idle_cpu_is_raised_to_below_normal(tiny_bundle, monkeypatch) -> None:
    """Past IDLE_PRIORITY_S without a result, the child's priority is raised (and the
    daemon says so) and the reload still completes."""
    raised = []

    def record(process):
        raised.append(process.poll())  # still running when raised
        return True

    monkeypatch.setattr(reload_worker, "IDLE_PRIORITY_S", 0.05)
    monkeypatch.setattr(reload_worker, "raise_priority", record)
    with structlog.testing.capture_logs() as logs:
        policy = load_isolated(two_files(tiny_bundle))
    assert raised == [None] and policy.model is None
    assert any(e["event"] == "reload_priority_raised" for e in logs)


def test_the_child_imports_the_daemons_package_not_the_working_folders(
    tiny_bundle, tmp_path, monkeypatch
) -> None:
    """A daemon started in a folder holding another ``bridge`` (a source tree next to an
    installed copy) still reloads with its own code."""
    shadow = tmp_path / "elsewhere" / "bridge"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('the wrong copy')\n")
    monkeypatch.chdir(shadow.parent)
    policy = load_isolated(two_files(tiny_bundle))
    assert policy.model is None and policy.version == load_policy(two_files(tiny_bundle)).version


def process_state(pid: int) -> str:
    """The state letter in /proc/PID/stat (R, S, T for stopped, Z), or "gone"."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat.rsplit(")", 1)[1].split()[0]


def held_state(pid: int) -> str:
    """The word stopped if the process is stopped or will stop before it next runs
    (SIGSTOP pending: a runnable child waiting for a CPU acts on it only once it gets
    one); else its state letter (Z: exited, not yet reaped)."""
    state = process_state(pid)
    if state == "T":
        return "stopped"
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "gone"
    pending = 0
    for line in status.splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")):
            pending |= int(line.split()[1], 16)
    return "stopped" if pending & (1 << (signal.SIGSTOP - 1)) else state


def scheduling_policy(pid: int) -> int:
    """Field 41 of /proc/PID/stat: 5 is SCHED_IDLE."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[38])


linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc and uses SIGSTOP (Linux)"
)


@linux_only
def test_hold_stops_running_children_and_release_lets_them_go_on() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait(30)
    try:
        with reload_worker._workers_lock:
            reload_worker._workers[sleeper] = reload_worker._workers[finished] = (
                threading.current_thread()
            )
        assert reload_worker.hold_workers() is True
        assert reload_worker._held == [sleeper.pid]  # the exited child is not signalled
        deadline = time.monotonic() + 5
        while process_state(sleeper.pid) != "T" and time.monotonic() < deadline:
            time.sleep(0.001)
        assert process_state(sleeper.pid) == "T"
        reload_worker.release_workers()
        assert reload_worker._held == []
        while process_state(sleeper.pid) == "T" and time.monotonic() < deadline:
            time.sleep(0.001)
        assert process_state(sleeper.pid) in ("S", "R")
    finally:
        with reload_worker._workers_lock:
            reload_worker._workers.clear()
        sleeper.kill()
        sleeper.wait()
    assert reload_worker.hold_workers() is False  # no child: nothing to stop


@linux_only
def test_requests_answered_during_a_reload_find_its_child_stopped(tiny_bundle, tmp_path) -> None:
    """While a reload's child loads, each request is answered with the child stopped, and
    it runs again between requests; the reload still completes."""
    shutil.copytree(tiny_bundle, tmp_path / "models")
    source = two_files(tmp_path / "models")
    config = serve_config(tiny_bundle, tmp_path, model=source, model_dirs=(tmp_path,))
    seen: list[tuple[str, ...]] = []
    with running_server(config) as server:
        handle = server.dispatcher.handle

        def observing(raw: bytes):
            children = [c.pid for c in list(reload_worker._workers)]
            held = list(reload_worker._held)
            # SIGSTOP acts when the child next runs: on a loaded machine that can take a
            # while, but it must happen while this request is still being answered.
            until = time.monotonic() + 5
            states = [held_state(pid) for pid in held]
            while any(st not in ("stopped", "Z", "gone") for st in states):
                if time.monotonic() > until:
                    break
                time.sleep(0.001)
                states = [held_state(pid) for pid in held]
            seen.append((sorted(children) == sorted(held), tuple(states)))
            return handle(raw)

        server.dispatcher.handle = observing  # type: ignore[method-assign]
        client = Client(server.endpoint)
        control = zmq.Context.instance().socket(zmq.REQ)
        control.connect(server.control_endpoint)
        control.send(json.dumps({"type": "reload", "token": server.token}).encode())
        deadline = time.monotonic() + 60
        while not reload_worker._workers and time.monotonic() < deadline:
            time.sleep(0.01)
        children = list(reload_worker._workers)
        assert children, "no reload child started"
        between: list[str] = []
        while not control.poll(0) and time.monotonic() < deadline:
            assert client.ask({"v": 1, "type": "ping"})["ok"]
            time.sleep(0.02)
            between.append(process_state(children[0].pid))
        assert control.poll(60000), "the reload did not finish"
        reply = json.loads(control.recv())
        control.close(linger=0)
        client.close()
    assert reply["ok"] is True, reply
    during = [(all_held, states) for all_held, states in seen if states]
    # Every child running when a request came was stopped for it (a child started while
    # a request is answered is stopped from the next one on), and stayed stopped while
    # the request was answered (Z: it had exited, not yet reaped; nothing runs).
    assert sum(not all_held for all_held, _ in seen) <= 1, seen
    assert during and all(set(states) <= {"stopped", "Z"} for _, states in during), seen
    assert any("stopped" in states for _, states in during)
    assert between and "T" not in between  # released after each reply


@linux_only
def test_a_stopped_child_dies_with_the_daemon(tiny_bundle, tmp_path) -> None:
    """A daemon SIGKILLed while its reload child is stopped leaves no child: a stopped
    child cannot see its stdin close, so the kernel kills it (PR_SET_PDEATHSIG)."""
    write_job(tmp_path, two_files(tiny_bundle))
    parent_code = (
        "import subprocess, sys\n"
        "from bridge import reload_worker as w\n"
        "child = subprocess.Popen([sys.executable, '-c', w._CHILD_CODE, str(w.PACKAGE_ROOT),"
        " sys.argv[1]], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)\n"
        "print(child.pid, flush=True)\n"
        "child.wait()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code, str(tmp_path)], stdout=subprocess.PIPE
    )
    child_pid = int(parent.stdout.readline())  # type: ignore[union-attr]
    deadline = time.monotonic() + 60
    # SCHED_IDLE is set just after the parent-death signal
    while scheduling_policy(child_pid) != 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child_pid, signal.SIGSTOP)
    parent.kill()
    parent.wait()
    while process_state(child_pid) not in ("gone", "Z") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process_state(child_pid) in ("gone", "Z")
