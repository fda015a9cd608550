"""`python ai_trading_bridge.py` serves as the guide runs it; settings come from flags,
AITB_* environment variables and the config file, in that order."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import click
import pytest
import zmq
from bridge_helpers import Client, bar_message, fake_daemon_record, history_message, tiny_bars
from click.testing import CliRunner

from ai_trading_bridge import cli, default_config_path
from bridge.config import DEFAULT_BIND
from env.config import WARMUP_BARS

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "ai_trading_bridge.py"
SERVING = re.compile(r"^ai-trading-bridge serving (\S+) \((.*)\) on (tcp://127\.0\.0\.1:\d+);")
START_TIMEOUT_S = 90
posix_only = pytest.mark.skipif(
    os.name != "posix", reason="Ctrl+C (SIGINT) cannot be sent to one process on Windows"
)


def run_script(tmp_path: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """``python ai_trading_bridge.py ARGS`` in ``tmp_path`` with a clean environment."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test's environment without the developer's AITB_* settings or config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITB_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")  # no per-user config.toml
    for name in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):  # nor kill switch
        env[name] = str(tmp_path / name.lower())
    env.update(extra)
    return env


def start_script(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """Start the script and return it with its first stdout line."""
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        # Windows delivers Ctrl+Break only to a process group of its own.
        creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
    )
    assert process.stdout is not None
    first = process.stdout.readline()  # blocks until the line, or EOF if it exits
    if not first:
        process.wait(timeout=START_TIMEOUT_S)
        raise AssertionError(f"the daemon exited with {process.returncode} before serving")
    return process, first


def decide_one_bar(endpoint: str) -> dict:
    bars = tiny_bars()
    client = Client(endpoint)
    try:
        hello = client.ask(
            {"v": 1, "type": "hello", "client": "t", "instrument": "NQ 12-25", "seq": 1}
        )
        assert hello["ok"] is True
        history = client.ask(history_message(bars, 0, WARMUP_BARS, client="t", seq=2))
        assert history["ready"] is True
        return client.ask(bar_message(bars, WARMUP_BARS, seq=3, client="t"))
    finally:
        client.close()


def stop_with_sigint(process: subprocess.Popen) -> int:
    """SIGINT, as Ctrl+C sends it; on Windows the console's Ctrl+Break (SIGBREAK)."""
    process.send_signal(getattr(signal, "CTRL_BREAK_EVENT", signal.SIGINT))
    try:
        return process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("via", ["env", "config"])
def test_script_without_arguments_serves_decides_and_stops_on_sigint(
    tmp_path: Path, via: str
) -> None:
    home = tmp_path / "my settings"  # where the journal, log and kill switch must go
    if via == "env":
        env = clean_env(
            tmp_path,
            AITB_BIND="tcp://127.0.0.1:*",
            AITB_CONTROL="none",
            AITB_JOURNAL_DIR=str(home / "journal"),
            AITB_LOG_FILE=str(home / "daemon.log"),
            AITB_STATE_DIR=str(home / "state"),
        )
    else:
        config = home / "config.toml"
        home.mkdir()
        config.write_text(
            '[serve]\nbind = "tcp://127.0.0.1:*"\ncontrol = "none"\njournal_dir = "journal"\n'
            'log_file = "daemon.log"\nstate_dir = "state"\n',
            encoding="utf-8",
        )
        env = clean_env(tmp_path, AITB_CONFIG=str(config))
    process, first = start_script([], tmp_path, env)
    try:
        match = SERVING.match(first)
        assert match, f"first line does not say what is served where: {first!r}"
        card = json.loads((ROOT / "bridge" / "default_model" / "model.json").read_text())
        assert match.group(1) == card["version"]  # serve's default: the bundled demo model
        reply = decide_one_bar(match.group(3))
    finally:
        code = stop_with_sigint(process)
    assert reply["ok"] is True and reply["warming_up"] is False
    assert reply["mask"][reply["action"]] == 1
    assert code == 0
    assert any((home / "journal").glob("*.jsonl")), "the journal went somewhere else"
    assert "decision" in (home / "daemon.log").read_text(encoding="utf-8")


def test_script_with_arguments_stays_the_cli(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "serve", "--help"],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "--bind" in result.stdout and "Usage: ai-trading-bridge serve" in result.stdout


# -- precedence: flag > environment > config file > default ----------------------------


def serve_params(args: list[str], group_args: list[str] | None = None) -> dict:
    """serve's parsed parameters, as the real group would hand them over."""
    with cli.make_context("ai-trading-bridge", [*(group_args or []), "serve"]) as ctx:
        command = cli.get_command(ctx, "serve")
        assert command is not None
        return command.make_context("serve", args, parent=ctx).params


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [k for k in os.environ if k.startswith("AITB_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = tmp_path / "conf" / "config.toml"
    path.parent.mkdir()
    path.write_text(
        'log_level = "warning"\n'
        "[serve]\n"
        'bind = "tcp://127.0.0.1:7001"\n'
        "max-sessions = 5\n"
        'journal_dir = "journals"\n'
        'model = "NQ_o1.zip"\n',
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("env", "flags", "expected"),
    [
        ({}, [], "tcp://127.0.0.1:7001"),
        ({"AITB_BIND": "tcp://127.0.0.1:7002"}, [], "tcp://127.0.0.1:7002"),
        ({"AITB_SERVE_BIND": "tcp://127.0.0.1:7003"}, [], "tcp://127.0.0.1:7003"),
        (
            {"AITB_BIND": "tcp://127.0.0.1:7002"},
            ["--bind", "tcp://127.0.0.1:7004"],
            "tcp://127.0.0.1:7004",
        ),
    ],
)
def test_bind_precedence_flag_env_config(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, env: dict, flags: list, expected: str
) -> None:
    monkeypatch.setenv("AITB_CONFIG", str(config_file))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert serve_params(flags)["bind"] == expected


def test_config_file_values_and_paths_relative_to_the_file(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = serve_params([], ["--config", str(config_file)])
    assert params["max_sessions"] == 5
    assert params["journal_dir"] == config_file.parent / "journals"
    assert params["model"] == config_file.parent / "NQ_o1.zip"
    monkeypatch.setenv("AITB_SERVE_MAX_SESSIONS", "9")  # every option has an AITB_ name
    assert serve_params([], ["--config", str(config_file)])["max_sessions"] == 9


@pytest.mark.parametrize("key", ["model-dir", "model_dir", "model_dirs"])
def test_an_option_is_named_by_its_flag_or_its_name(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """--model-dir fills model_dirs: the config key and the environment variable may be
    either (the README names options by their flags)."""
    config_file.write_text(f'[serve]\n{key} = "models"\n', encoding="utf-8")
    params = serve_params([], ["--config", str(config_file)])
    assert params["model_dirs"] == (config_file.parent / "models",)
    for name in ("AITB_SERVE_MODEL_DIR", "AITB_SERVE_MODEL_DIRS"):
        monkeypatch.setenv(name, "/elsewhere/My Models")
        assert serve_params([])["model_dirs"] == (Path("/elsewhere/My Models"),)
        monkeypatch.delenv(name)


def test_without_any_setting_the_defaults_apply(config_file: Path) -> None:
    assert not default_config_path().exists()
    assert serve_params([])["bind"] == DEFAULT_BIND


def test_config_file_in_the_user_config_folder_is_read(config_file: Path, tmp_path: Path) -> None:
    default = default_config_path()
    assert tmp_path / "xdg" in default.parents and default.name == "config.toml"
    default.parent.mkdir(parents=True)
    default.write_text('[serve]\nbind = "tcp://127.0.0.1:7009"\n', encoding="utf-8")
    assert serve_params([])["bind"] == "tcp://127.0.0.1:7009"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (
            '[serve]\nbnd = "tcp://127.0.0.1:1"\n',
            ["serve.bnd", "known: allow_other_price_scale, allow_remote, bind,"],
        ),
        ('[srve]\nbind = "tcp://127.0.0.1:1"\n', ["[srve]", "[serve]"]),
        ("colour = 1\n", ["'colour'", "log_level"]),
        ('[serve]\nmax_sessions = "many"\n', ["serve.max_sessions", "not a valid integer"]),
        ("[serve\n", ["not valid TOML"]),
    ],
)
def test_bad_config_file_refuses_to_start_with_one_line(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, text: str, names: list[str]
) -> None:
    config_file.write_text(text, encoding="utf-8")
    monkeypatch.setenv("AITB_CONFIG", str(config_file))
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2  # bad input, as a bad flag
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(config_file) in lines[0], result.output
    assert lines[0].startswith("error: --config: "), lines[0]
    for name in names:
        assert name in lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_missing_named_config_file_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "nope.toml"), "serve"])
    assert result.exit_code == 2 and "nope.toml does not exist" in result.output
    assert result.output.startswith("error: --config: ")


def test_group_option_from_config(config_file: Path) -> None:
    with cli.make_context("ai-trading-bridge", ["--config", str(config_file), "serve"]) as ctx:
        assert ctx.params["log_level"] == "warning"
        assert ctx.get_parameter_source("log_level") is click.core.ParameterSource.DEFAULT_MAP


def serve_context(args: list[str], group_args: list[str]) -> click.Context:
    with cli.make_context("ai-trading-bridge", [*group_args, "serve"]) as ctx:
        command = cli.get_command(ctx, "serve")
        assert command is not None
        return command.make_context("serve", args, parent=ctx)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--bundle", "live"], ("live", None, None)),  # a flag's bundle beats the file's pair
        ([], (None, "NQ_o1.zip", "v.pkl")),
        (["--bundle", "live", "--model", "m.zip"], ("live", "m.zip", "v.pkl")),  # refused later
    ],
)
def test_model_form_from_a_higher_source_replaces_the_other_form(
    config_file: Path, flags: list[str], expected: tuple
) -> None:
    from train.cli import pick_model_arguments

    config_file.write_text('[serve]\nmodel = "NQ_o1.zip"\nvecnorm = "v.pkl"\n', encoding="utf-8")
    sub = serve_context(flags, ["--config", str(config_file)])
    picked = pick_model_arguments(
        sub, sub.params["bundle"], sub.params["model"], sub.params["vecnorm"]
    )
    names = tuple(None if p is None else p.name for p in picked)
    assert names == expected


@pytest.mark.parametrize("option", ["--journal-dir", "--log-file"])
def test_serve_refuses_to_start_without_a_writable_journal_or_log(
    tmp_path: Path, option: str
) -> None:
    """The journal is the audit trail: like the log file, a journal folder that cannot be
    written stops serve before it serves (a folder under a regular file fails for root
    too, where a read-only folder would not)."""
    blocker = tmp_path / "afile"
    blocker.write_text("")
    unwritable = blocker / ("journal" if option == "--journal-dir" else "daemon.log")
    args = ["serve", "--bind", "tcp://127.0.0.1:*", "--control", "none"]
    args += ["--journal-dir", str(tmp_path / "journal"), "--log-file", "none"]
    args += [option, str(unwritable)]
    result = run_script(tmp_path, args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert option in line and str(unwritable) in line
    if option == "--journal-dir":
        assert "--no-journal" in line and "cannot write the decision journal" in line


def test_serve_with_a_file_as_journal_dir_says_a_folder_is_needed(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    journal.write_text("{}\n", encoding="utf-8")
    args = ["serve", "--bind", "tcp://127.0.0.1:*", "--control", "none", "--log-file", "none"]
    result = run_script(tmp_path, [*args, "--journal-dir", str(journal)])
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: --journal-dir: {journal} is a file, not a folder"), line
    assert "--no-journal" in line and "File exists" not in line
    assert journal.read_text(encoding="utf-8") == "{}\n"  # left as it was


def failed_start(
    tmp_path: Path, args: list[str], failure: str
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``serve ARGS`` so that it fails after opening its journal and log file: the
    model does not load, or (``failure == "endpoint taken"``) its port is taken; returns
    the run and that port."""
    if failure != "endpoint taken":
        (tmp_path / "NQ_o1.zip").write_bytes(b"not a zip")
        (tmp_path / "vecnorm.pkl").write_bytes(b"not a pickle")
        args = [*args, "--model", "NQ_o1.zip", "--vecnorm", "vecnorm.pkl"]
    with zmq.Context() as context, context.socket(zmq.REP) as taken:
        port = taken.bind_to_random_port("tcp://127.0.0.1")
        bind = f"tcp://127.0.0.1:{port}" if failure == "endpoint taken" else "tcp://127.0.0.1:*"
        result = subprocess.run(
            [sys.executable, str(SCRIPT), *args, "--bind", bind],
            cwd=tmp_path,
            env=clean_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
    return result, port


@pytest.mark.parametrize("failure", ["model does not load", "endpoint taken", "journal there"])
def test_serve_that_fails_to_start_leaves_no_empty_journal(tmp_path: Path, failure: str) -> None:
    """The journal is opened before the model loads (a folder that cannot be written is
    refused at once); a start that fails after that removes the empty file it created
    and the folders it created for it, and only those: an empty journal of today that was
    there before stays."""
    journal = tmp_path / "logs" / "journal"  # neither folder exists yet
    today = journal / f"journal-{datetime.now(timezone.utc):%Y-%m-%d}.jsonl"
    args = ["serve", "--control", "none", "--log-file", "none", "--journal-dir", str(journal)]
    if failure == "journal there":
        journal.mkdir(parents=True)
        today.touch()
    result, port = failed_start(tmp_path, args, failure)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    if failure == "endpoint taken":
        assert f"cannot listen on tcp://127.0.0.1:{port}" in line
    else:
        assert "NQ_o1.zip" in line or "vecnorm.pkl" in line
    if failure == "journal there":
        assert sorted(p.name for p in journal.glob("journal-*")) == [today.name]
    else:  # the folders this start created went with the file
        assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("failure", ["model does not load", "endpoint taken", "log there"])
def test_serve_that_fails_to_start_leaves_no_empty_log_file(tmp_path: Path, failure: str) -> None:
    """As for the journal: a start that fails removes the empty --log-file it created and
    the folders it made for it; a log file that was there before stays."""
    log_file = tmp_path / "state" / "log" / "daemon.log"  # neither folder exists yet
    args = ["serve", "--control", "none", "--no-journal", "--log-file", str(log_file)]
    if failure == "log there":
        log_file.parent.mkdir(parents=True)
        log_file.touch()
    result, _ = failed_start(tmp_path, args, failure)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    if failure == "log there":
        assert log_file.is_file()
    else:
        assert not (tmp_path / "state").exists()


# -- Ctrl+C: one line and exit 130, while starting or later ---------------------------

# The three ways the command line starts: the console script pip writes (it imports
# bridge.startup's main, as setup.cfg names it), python -m, and the guide's script.
LAUNCHERS = {
    "console script": [str(Path(sys.executable).with_name("ai-trading-bridge"))],
    "python -m": [sys.executable, "-m", "ai_trading_bridge"],
    "script": [sys.executable, str(SCRIPT)],
}


def sigint_as_a_terminal_sends_it() -> None:
    """The child's SIGINT at its default even when the tests run in a background job
    (which starts with SIGINT ignored, and a child inherits that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_after_click_imports(
    command: list[str], cwd: Path, delay_s: float = 0.0
) -> tuple[int, str, list[str], str]:
    """Start ``command``, send SIGINT ``delay_s`` after Python reports click imported
    (PYTHONPROFILEIMPORTTIME lines on stderr, so the signal lands at the same point of
    the start however slow the machine is). Returns the exit status, stdout, stderr's
    lines other than the import reports, and stderr after the signal."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=clean_env(cwd, PYTHONPROFILEIMPORTTIME="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_as_a_terminal_sends_it,
    )
    assert process.stderr is not None
    stderr = []
    for line in process.stderr:  # until click's import is reported (at any depth)
        stderr.append(line)
        if line.rsplit("|", 1)[-1].strip() == "click":
            break
    time.sleep(delay_s)
    process.send_signal(signal.SIGINT)
    try:
        stdout, rest = process.communicate(timeout=START_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
    said = [x for x in ("".join(stderr) + rest).splitlines() if not x.startswith("import time")]
    return process.returncode, stdout, said, rest


@posix_only
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_ctrl_c_while_the_modules_import_prints_one_line_and_exits_130(
    tmp_path: Path, launcher: str
) -> None:
    """SIGINT as soon as click is imported, while structlog, ZeroMQ, the bridge and torch
    still import: no traceback, one line, 130. Python reports each finished import on
    stderr (PYTHONPROFILEIMPORTTIME), so the signal lands in the imports however slow
    the machine is. Once started, monitor would wait for its file and exit 0 on Ctrl+C."""
    command = [*LAUNCHERS[launcher], "monitor", str(tmp_path / "daemon.log")]
    status, stdout, lines, rest = interrupt_after_click_imports(command, tmp_path)
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest
    assert lines == ["interrupted (Ctrl+C)"], lines
    assert status == 130 and stdout == ""


@posix_only
@pytest.mark.parametrize("delay_ms", [0, 2, 10, 30, 100, 300, 1000])
def test_ctrl_c_at_any_moment_of_the_start_is_one_line_and_130(
    tmp_path: Path, delay_ms: int
) -> None:
    """SIGINT at several moments after click is imported: in the later imports, as the
    group hands Ctrl+C back to the commands, while the command starts or waits (reload,
    for a daemon that does not answer). Never a traceback nor click's "Aborted!"."""
    state = tmp_path / "state"
    with zmq.Context() as context, context.socket(zmq.ROUTER) as silent:
        endpoint = fake_daemon_record(state, silent)
        args = ["reload", "--endpoint", endpoint, "--state-dir", str(state)]
        command = [sys.executable, str(SCRIPT), *args]
        status, stdout, said, rest = interrupt_after_click_imports(
            command, tmp_path, delay_ms / 1000
        )
    assert "Traceback" not in rest and "Aborted" not in rest, rest
    said = [x for x in said if not x.startswith("asking the daemon to load")]  # reload started
    assert (status, said, stdout) == (130, ["interrupted (Ctrl+C)"], "")


@posix_only
def test_ctrl_c_while_a_command_waits_prints_the_same_line_and_exits_130(tmp_path: Path) -> None:
    """Later, a Ctrl+C no command handles itself (here: reload waiting for a daemon that
    does not answer) ends the same way, not with click's "Aborted!" and exit 1."""
    state = tmp_path / "state"
    with zmq.Context() as context, context.socket(zmq.ROUTER) as silent:
        endpoint = fake_daemon_record(state, silent)
        state_args = ["--state-dir", str(state)]
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "reload", "--endpoint", endpoint, *state_args],
            cwd=tmp_path,
            env=clean_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=sigint_as_a_terminal_sends_it,
        )
        try:
            assert process.stderr is not None
            assert process.stderr.readline().startswith("asking the daemon to load")
            assert silent.poll(START_TIMEOUT_S * 1000), "the reload request never came"
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=START_TIMEOUT_S)
        finally:
            if process.poll() is None:
                process.kill()
    assert (process.returncode, stdout, stderr) == (130, "", "interrupted (Ctrl+C)\n")


def test_library_info_notices_are_not_among_the_commands_lines() -> None:
    """matplotlib's "generated new fontManager" (a machine's first validate) is not printed;
    a library's warning still is, and so are the program's own info lines."""
    import io
    import logging

    import structlog

    from ai_trading_bridge import configure_logging

    root, font_log = logging.getLogger(), logging.getLogger("matplotlib.font_manager")
    saved = (list(root.handlers), root.level, logging.getLogger("matplotlib").level)
    stream = io.StringIO()
    try:
        configure_logging(None, "info", stream=stream)
        font_log.info("generated new fontManager")
        font_log.warning("findfont: Font family 'x' not found.")
        structlog.get_logger().info("validating")
    finally:
        structlog.reset_defaults()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("matplotlib").setLevel(saved[2])
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["findfont: Font family 'x' not found.", "validating"]
