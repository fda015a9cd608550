"""The control socket trusts nothing: a token from a user-only file, reloads only from
the model folders, its own port per daemon; and remote binds are refused by default."""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
import time

import pytest
import structlog
import structlog.testing
import zmq
from bridge_helpers import (
    Client,
    fake_daemon_record,
    history_message,
    running_server,
    serve_config,
    tiny_bars,
)
from click.testing import CliRunner

from ai_trading_bridge import cli
from bridge.config import ConfigError, ModelSource, ServeConfig
from bridge.server import control_request, daemon_file, find_daemon
from env.config import WARMUP_BARS

pytest_plugins = ["bridge_helpers"]

BARS = tiny_bars()


def test_control_refuses_a_request_without_the_token(tiny_bundle, tiny_policy, tmp_path) -> None:
    with running_server(serve_config(tiny_bundle, tmp_path), tiny_policy) as server:
        for command in ({"type": "reload"}, {"type": "status", "token": "guess"}):
            reply = control_request(server.control_endpoint, command, timeout_s=5)
            assert reply["ok"] is False and "token" in reply["error"]
        reply = control_request(
            server.control_endpoint, {"type": "status", "token": server.token}, timeout_s=5
        )
        assert reply["ok"] is True


def test_daemon_file_is_private_and_removed_at_stop(tiny_bundle, tiny_policy, tmp_path) -> None:
    with running_server(serve_config(tiny_bundle, tmp_path), tiny_policy) as server:
        path = daemon_file(tmp_path / "state", server.endpoint)
        record = json.loads(path.read_text())
        assert record["token"] == server.token and record["control"] == server.control_endpoint
        if os.name == "posix":  # no mode bits on Windows: the per-user folder's ACL guards it
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.exists()


def test_reload_only_from_the_model_folders(tiny_bundle, tiny_policy, tmp_path) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(tiny_bundle, outside / "evil")
    config = serve_config(tiny_bundle, tmp_path, model_dirs=(tmp_path / "models",))
    with running_server(config, tiny_policy) as server:
        reply = control_request(
            server.control_endpoint,
            {"type": "reload", "bundle": str(outside / "evil"), "token": server.token},
            timeout_s=5,
        )
        assert reply["ok"] is False and "outside the model folders" in reply["error"]
        assert "--model-dir" in reply["error"]
        sneaky = str(tmp_path / "models" / ".." / "outside" / "evil")
        reply = control_request(
            server.control_endpoint,
            {"type": "reload", "bundle": sneaky, "token": server.token},
            timeout_s=5,
        )
        assert reply["ok"] is False and "outside the model folders" in reply["error"]


def test_reload_refused_at_once_never_says_it_was_loading(
    tiny_bundle, tiny_policy, tmp_path
) -> None:
    """The daemon refuses a bundle outside its model folders without loading anything:
    the CLI's lines say it asked, then the refusal, and never that it was loading."""
    outside = tmp_path / "outside" / "other"
    shutil.copytree(tiny_bundle, outside)
    config = serve_config(tiny_bundle, tmp_path, model_dirs=(tmp_path / "models",))
    with running_server(config, tiny_policy) as server:
        state = str(tmp_path / "state")
        args = ["reload", "--endpoint", server.endpoint, "--state-dir", state]
        with structlog.testing.capture_logs():
            result = CliRunner().invoke(cli, [*args, "--bundle", str(outside)])
    assert result.exit_code == 1, result.output
    asked, refused = result.stderr.splitlines()
    assert asked.startswith(f"asking the daemon to load {outside.resolve()} ")
    assert not asked.startswith("loading")
    assert refused.startswith("reload failed: refused: ") and "outside the model folders" in refused


def test_two_daemons_get_their_own_control_ports_and_reload_finds_each(
    tiny_bundle, tiny_policy, tmp_path
) -> None:
    first = serve_config(tiny_bundle, tmp_path, control="tcp://127.0.0.1:*")
    second = serve_config(tiny_bundle, tmp_path, control="tcp://127.0.0.1:*")
    with running_server(first, tiny_policy) as one, running_server(second, tiny_policy) as two:
        assert one.control_endpoint != two.control_endpoint
        state = tmp_path / "state"
        assert find_daemon(state, two.endpoint, None)["control"] == two.control_endpoint
        # The daemons' threads keep logging; unconfigured structlog would print those
        # lines into the output CliRunner captures, so they are captured apart.
        with structlog.testing.capture_logs():
            result = CliRunner().invoke(
                cli, ["reload", "--endpoint", two.endpoint, "--state-dir", str(state), "--status"]
            )
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["endpoint"] == two.endpoint


@pytest.mark.parametrize("bind", ["tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://192.168.1.5:5555"])
def test_non_loopback_bind_is_refused_unless_allowed(tiny_bundle, bind) -> None:
    with pytest.raises(ConfigError, match="SSH tunnel"):
        ServeConfig(bind=bind, model=ModelSource(bundle=tiny_bundle))
    assert ServeConfig(bind=bind, model=ModelSource(bundle=tiny_bundle), allow_remote=True)
    result = CliRunner().invoke(cli, ["serve", "--bind", bind, "--no-journal"])
    assert result.exit_code == 2 and "ssh -N -L" in result.output


def test_reload_loads_off_the_serving_thread(tiny_bundle, tiny_policy, tmp_path) -> None:
    """Requests keep being answered while a slow reload loads, and the new model is
    swapped in between two requests."""
    release = threading.Event()

    def slow_loader(source):
        release.wait(10)
        return tiny_policy

    config = serve_config(tiny_bundle, tmp_path)
    with running_server(config, tiny_policy) as server:
        server.loader = slow_loader
        reply: dict = {}
        command = {"type": "reload", "token": server.token}
        waiter = threading.Thread(
            target=lambda: reply.update(control_request(server.control_endpoint, command, 10))
        )
        waiter.start()
        time.sleep(0.2)  # the reload is loading now
        client = Client(server.endpoint)
        started = time.monotonic()
        assert client.ask(history_message(BARS, 0, WARMUP_BARS), timeout_ms=1000)["ready"]
        assert client.ask({"v": 1, "type": "ping"}, timeout_ms=1000)["ok"]
        assert time.monotonic() - started < 1.0 and not reply  # served while loading
        release.set()
        waiter.join(10)
        assert reply["ok"] is True and reply["model"]["version"] == tiny_policy.version
        client.close()


def test_status_answers_while_a_reload_loads_and_a_second_reload_is_refused(
    tiny_bundle, tiny_policy, tmp_path
) -> None:
    """The control socket is not held by a reload in progress: status names it, a second
    reload is refused at once, and the first one is answered when its load is over."""
    release = threading.Event()

    def slow_loader(source):
        release.wait(20)
        return tiny_policy

    with running_server(serve_config(tiny_bundle, tmp_path), tiny_policy) as server:
        server.loader = slow_loader
        endpoint, token = server.control_endpoint, server.token
        reply: dict = {}
        waiter = threading.Thread(
            target=lambda: reply.update(
                control_request(endpoint, {"type": "reload", "token": token}, 20)
            )
        )
        waiter.start()
        deadline = time.monotonic() + 10
        while server._loading is None and time.monotonic() < deadline:
            time.sleep(0.01)
        status = control_request(endpoint, {"type": "status", "token": token}, 2)
        assert status["ok"] is True
        assert status["reloading"] == server.dispatcher.policy.source.describe()
        second = control_request(endpoint, {"type": "reload", "token": token}, 2)
        assert second["ok"] is False and "already loading" in second["error"]
        assert not reply  # the first reload is still waiting for its load
        release.set()
        waiter.join(20)
        assert reply["ok"] is True and reply["model"]["version"] == tiny_policy.version
        after = control_request(endpoint, {"type": "status", "token": token}, 2)
        assert after["reloading"] is None


def test_a_control_message_not_from_a_req_socket_is_dropped_and_serving_goes_on(
    tiny_bundle, tiny_policy, tmp_path
) -> None:
    import zmq

    with running_server(serve_config(tiny_bundle, tmp_path), tiny_policy) as server:
        dealer = zmq.Context.instance().socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(server.control_endpoint)
        with structlog.testing.capture_logs() as logs:
            dealer.send(json.dumps({"type": "status", "token": server.token}).encode())
            deadline = time.monotonic() + 5
            while not logs and time.monotonic() < deadline:
                time.sleep(0.01)
        dealer.close(linger=0)
        assert [e["event"] for e in logs] == ["control_refused"]
        status = control_request(server.control_endpoint, {"type": "status", "token": server.token})
        assert status["ok"] is True


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--model", "NQ_o1.zip"], ["--model and --vecnorm go together", "--model given"]),
        (["--vecnorm", "v.pkl"], ["--model and --vecnorm go together", "--vecnorm given"]),
        (["--bundle", "b", "--vecnorm", "v.pkl"], ["either --bundle or --model", "--vecnorm"]),
        (["--status", "--model", "NQ_o1.zip"], ["--status takes no model", "--model given"]),
        (["--status", "--bundle", "b"], ["--status takes no model", "--bundle given"]),
    ],
)
def test_reload_model_options_the_daemon_cannot_take_are_refused_before_asking_it(
    tmp_path, flags: list[str], names: list[str]
) -> None:
    """A usage error (exit 2, one line) with nothing sent: the daemon's control socket, a
    real one on loopback, receives no request."""
    state = tmp_path / "state"
    with zmq.Context() as context, context.socket(zmq.ROUTER) as control:
        endpoint = fake_daemon_record(state, control)
        args = ["reload", "--endpoint", endpoint, "--state-dir", str(state), "--timeout", "2"]
        result = CliRunner().invoke(cli, [*args, *flags], prog_name="ai-trading-bridge")
        asked = control.poll(200)
    assert result.exit_code == 2, result.output
    assert not asked, "the request went to the daemon"
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and line.endswith("see 'ai-trading-bridge reload --help'")
    for name in names:
        assert name in line
    assert result.stdout == ""
