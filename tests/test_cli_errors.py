"""Usage errors of every command: one line on stderr naming what was wrong, exit code 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from train_helpers import make_fake_bundle

from ai_trading_bridge import cli
from bridge.config import DEFAULT_BUNDLE
from env.trading_env import EnvConfig

ROOT = Path(__file__).resolve().parent.parent
EURO_FX = ROOT / "tests" / "data" / "6E_hourly_zero_volume.Last.txt"


def usage_error(args: list[str]) -> str:
    """The one stderr line of a usage error (asserting there is exactly one)."""
    result = CliRunner().invoke(cli, args, prog_name="ai-trading-bridge")
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == "" and "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["train", "--out", "o", "--calibrate", "bogus"], ["--calibrate", "'bogus'", "on"]),
        (["train", "--out", "o", "--data", "pypi:arch/sp5000"], ["--data", "pypi:arch/sp500,"]),
        (["train", "--out", "o", "--timesteps", "lots"], ["--timesteps", "'lots'"]),
        (["train"], ["--out"]),
        (["walkforward", "--out", "o", "--mode", "sliding"], ["--mode", "'sliding'"]),
        (["validate", "--bogus"], ["--bogus"]),
        (["validate", "a", "b"], ["unexpected extra argument"]),
        (["deploy", "b"], ["--target"]),
        (["rollback", "--target", "no/such/folder"], ["--target", "no/such/folder"]),
        (["serve", "--bind", "localhost:5555"], ["--bind", "ZeroMQ endpoint"]),
        (["serve", "--max-sessions", "many"], ["--max-sessions", "'many'"]),
        (["check", "--bogus"], ["--bogus"]),
        (["halt", "--bogus"], ["--bogus"]),
        (["resume", "--bogus"], ["--bogus"]),
        (["monitor", "--bogus"], ["--bogus"]),
        (["reload", "--bogus"], ["--bogus"]),
        (["replay", "--bogus"], ["--bogus"]),
        (["export-plain", "--bogus"], ["--bogus"]),
        (["nosuch"], ["'nosuch'"]),
        (["walkforward", "--out", "o", "--folds", "0"], ["--folds", "x>=1"]),
        (["walkforward", "--out", "o", "--test-fraction", "2"], ["--test-fraction", "0<x<1"]),
        (["validate", "b", "--episode-bars", "0"], ["--episode-bars", "x>=1"]),
        (["train", "--out", "o", "--episode-bars", "0"], ["--episode-bars", "x>=1"]),
        (["reload", "--timeout", "-5"], ["--timeout", "x>0"]),
        (["--log-level", "loud", "check"], ["--log-level", "'loud'"]),
        (["monitor", "--refresh", "-1"], ["--refresh", "0 < x <= 3600"]),
        (["monitor", "--refresh", "nan"], ["--refresh"]),
        (["monitor", "--refresh", "inf"], ["--refresh"]),
        (["replay", "synthetic", "--timeout", "nan"], ["--timeout", "'nan' is not a finite"]),
        (["replay", "synthetic", "--timeout", "inf"], ["--timeout", "'inf' is not a finite"]),
        (["reload", "--timeout", "nan"], ["--timeout", "'nan' is not a finite number"]),
        (["reload", "--timeout", "inf"], ["--timeout", "'inf' is not a finite number"]),
        (["train", "--out", "o", "--learning-rate", "inf"], ["--learning-rate", "finite"]),
        (["train", "--out", "o", "--clip-range", "inf"], ["--clip-range", "finite"]),
        (["train", "--out", "o", "--dual-lr", "inf"], ["--dual-lr", "finite"]),
        (["walkforward", "--out", "o", "--test-fraction", "nan"], ["--test-fraction", "'nan'"]),
        (["train", "--out", "o", "--calibration-fraction", "nan"], ["--calibration-fraction"]),
        (["train", "--out", "o", "--ent-coef", "nan"], ["--ent-coef", "finite"]),
        (["train", "--out", "o", "--ent-coef", "inf"], ["--ent-coef", "finite"]),
    ],
)
def test_usage_error_is_one_line_naming_the_option(args: list[str], names: list[str]) -> None:
    line = usage_error(args)
    assert line.startswith("error: ")
    for name in names:
        assert name in line
    command = args[0] if args[0] in cli.commands else None  # else the group's own error
    help_hint = f"ai-trading-bridge {command} --help" if command else "ai-trading-bridge --help"
    assert line.endswith(f"see '{help_hint}'")


@pytest.mark.parametrize("value", ["ON", "Off", "AUTO"])
def test_choice_accepts_any_case(value: str) -> None:
    # --timesteps 0 is refused after --calibrate was parsed: the error is not --calibrate's.
    line = usage_error(["train", "--out", "o", "--calibrate", value, "--timesteps", "0"])
    assert "timesteps must be >= 1" in line and "--calibrate" not in line


def test_console_script_usage_error_is_one_stderr_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITB_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    done = subprocess.run(
        [sys.executable, str(ROOT / "ai_trading_bridge.py"), "train", "--calibrate", "bogus"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "error: --calibrate: 'bogus' is not one of 'auto', 'on', 'off'; "
        "see 'ai-trading-bridge train --help'"
    ]


def test_bare_group_still_prints_the_help() -> None:
    result = CliRunner().invoke(cli, [])
    assert "Commands:" in result.output and "serve" in result.output


def flags_in(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", text))


def options_of(command: str) -> set[str]:
    return {opt for p in cli.commands[command].params for opt in p.opts + p.secondary_opts}


@pytest.mark.parametrize(
    "args",
    [
        ["--data", "pypi:arch/sp500", "--instrument", "NQ"],  # the series stands for ES
        ["--instrument", "XYZ"],  # not in the table: needs its terms
    ],
)
def test_walkforward_errors_suggest_only_its_own_flags(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["walkforward", "--out", str(tmp_path / "wf"), *args])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1, result.output
    suggested = flags_in(result.stderr) - {"--help"}  # a usage error ends "see '... --help'"
    assert suggested and suggested <= options_of("walkforward"), result.stderr


def test_validate_series_of_another_contract_says_what_to_do(tmp_path: Path) -> None:
    """validate has no --instrument: the contract is the model's, and the error says so."""
    bundle = make_fake_bundle(tmp_path / "nq", "NQ-test")
    card = json.loads((bundle / "model.json").read_text(encoding="utf-8"))
    card["env"] = EnvConfig().to_dict()  # NQ, as train writes it
    (bundle / "model.json").write_text(json.dumps(card), encoding="utf-8")
    line = usage_error(["validate", str(bundle), "--data", "pypi:arch/sp500"])
    assert line.startswith("error: --data: ") and "this model trades NQ" in line
    assert "validate it on NQ bars" in line
    advice = line.split(" (train ")[0]  # what validate itself offers: no train flag
    assert flags_in(advice) <= options_of("validate"), line


@pytest.mark.parametrize(
    "args",
    [
        ["--data", "pypi:arch/sp500", "--bar-period", "minute:5"],  # the series is daily
        ["--data", "no-such-file.csv"],
    ],
)
def test_a_refused_training_run_leaves_no_output_folder(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--out", str(out), *args])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not out.exists()


def test_monitor_says_it_is_waiting_for_a_log_file_not_there_yet(tmp_path: Path) -> None:
    missing = tmp_path / "not yet.jsonl"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "ai_trading_bridge.py"), "monitor", str(missing)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stderr.readline()  # type: ignore[union-attr]
    finally:
        process.kill()
        process.wait(10)
    assert first.startswith(f"waiting for {missing} to appear") and "--log-file" in first


def test_replay_bar_counts_below_their_minimum_are_usage_errors() -> None:
    line = usage_error(["replay", "synthetic", "--bars", "-5"])
    assert line.startswith("error: --bars: ") and "see 'ai-trading-bridge replay --help'" in line
    line = usage_error(["replay", "synthetic", "--history", "-1"])
    assert line.startswith("error: --history: ")


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--endpoint", "127.0.0.1:5555"], ["--endpoint", "ZeroMQ endpoint"]),
        (["--endpoint", "tcp://127.0.0.1"], ["--endpoint", "Invalid argument"]),
        (["--retries", "0"], ["--retries", "x>=1"]),
        (["--timeout", "-1"], ["--timeout", "x>0"]),
        (["--history", "100000000"], ["--history", "none of DATA's"]),
    ],
)
def test_replay_bad_options_are_one_line_usage_errors(args: list[str], names: list[str]) -> None:
    line = usage_error(["replay", "synthetic", "--bars", "5", *args])
    assert all(name in line for name in names), line


def test_replay_without_a_daemon_says_so_in_one_line() -> None:
    result = CliRunner().invoke(
        cli,
        ["replay", "synthetic", "--endpoint", "tcp://127.0.0.1:9", "--timeout", "0.1"],
        prog_name="ai-trading-bridge",
    )
    assert result.exit_code == 1
    last = result.stderr.splitlines()[-1]
    assert last == "error: hello: no reply from tcp://127.0.0.1:9; is the daemon running there?"


def test_validate_malformed_data_file_is_a_usage_error_naming_data(tmp_path: Path) -> None:
    """Exit 2 as for an empty file: not 3, validate's "the model failed"."""
    data = tmp_path / "bars.txt"
    data.write_text("20250106 143100;1;2;3\n")
    report_dir = tmp_path / "v"
    args = ["validate", str(DEFAULT_BUNDLE), "--report-dir", str(report_dir)]
    line = usage_error([*args, "--data", str(data)])
    assert line.startswith(f"error: --data: {data}:1: "), line
    assert not report_dir.exists()


def test_validate_bad_risk_config_is_a_usage_error_as_in_serve(tmp_path: Path) -> None:
    config = tmp_path / "risk.toml"
    config.write_text("max_entries = 3\n")  # the key is max_entries_per_session
    report_dir = tmp_path / "v"
    args = ["validate", str(DEFAULT_BUNDLE), "--report-dir", str(report_dir)]
    line = usage_error([*args, "--risk-config", str(config)])
    assert line.startswith("error: --risk-config: ") and "'max_entries'" in line, line
    assert not report_dir.exists()


# -- the exit-status convention (README, "Exit status") ------------------------------


# serve options that keep a refused start from touching the per-user folders
QUIET_SERVE = ["--no-journal", "--log-file", "none", "--control", "none"]


def _bad_inputs(folder: Path) -> dict[str, Path]:
    files = {
        "bars": "garbage line\n",  # no known format
        "train_config": 'timesteps = "many"\n',
        "group_config": "[nope]\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return {name: folder / name for name in files}


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["train", "--out", "{tmp}/o", "--data", "{bars}"], "--data"),
        (["walkforward", "--out", "{tmp}/w", "--data", "{bars}"], "--data"),
        (["validate", str(DEFAULT_BUNDLE), "--data", "{bars}"], "--data"),
        (["replay", "{bars}"], "DATA"),
        (["train", "--out", "{tmp}/o", "--config", "{train_config}"], "--config"),
        (["walkforward", "--out", "{tmp}/w", "--config", "{train_config}"], "--config"),
        (["--config", "{group_config}", "train", "--out", "{tmp}/o"], "--config"),
        (["--config", "{tmp}/missing.toml", "rollback", "--target", "{tmp}"], "--config"),
        (["train", "--out", "{tmp}/o", "--instrument", "FDAX"], "--instrument"),
        (["walkforward", "--out", "{tmp}/w", "--instrument", "FDAX"], "--instrument"),
        (["replay", "synthetic", "--instrument", "FDAX"], "--instrument"),
        (["replay", "{euro_fx}"], "--instrument"),  # 6E bars as the default NQ 12-25
        (["replay", "synthetic", "--instrument", "6E 03-26"], "--instrument"),
        (["train", "--out", "{tmp}/o", "--n-envs", "0"], "--n-envs"),
        (["walkforward", "--out", "{tmp}/w", "--seeds", "0"], "--seeds"),
        (["rollback", "--target", "{tmp}/missing"], "--target"),
        (["serve", "--bundle", "{tmp}/missing", *QUIET_SERVE], "--bundle"),
        (["serve", "--model", "{tmp}/m.zip", "--vecnorm", "{tmp}/v.pkl", *QUIET_SERVE], "--model"),
        (["reload", "--bundle", "{tmp}/missing", "--state-dir", "{tmp}"], "--bundle"),
        (
            ["reload", "--status", "--endpoint", "localhost:5555", "--state-dir", "{tmp}"],
            "--endpoint",
        ),
        (["reload", "--status", "--control", "garbage", "--state-dir", "{tmp}"], "--control"),
        (["serve", "--state-dir", "{bars}", *QUIET_SERVE], "--state-dir"),
        (["halt", "--state-dir", "{bars}"], "--state-dir"),
        (["resume", "--state-dir", "{bars}"], "--state-dir"),
        (["reload", "--status", "--state-dir", "{bars}"], "--state-dir"),
    ],
)
def test_bad_input_is_exit_2_naming_the_option(
    tmp_path: Path, args: list[str], option: str
) -> None:
    """Every command: a value the user gave that cannot be used (a flag, a config file,
    a data file) is a usage error naming where it came from, not exit 1."""
    paths = {"tmp": tmp_path, "euro_fx": EURO_FX, **_bad_inputs(tmp_path)}
    line = usage_error([a.format(**paths) for a in args])
    assert line.startswith(f"error: {option}: "), line
    if "another contract's prices" in line:  # replay has no --tick-size to suggest
        assert "--tick-size" not in line and "--bundle" in line, line
    assert not (tmp_path / "o").exists() and not (tmp_path / "w").exists()


def test_a_command_that_cannot_do_its_work_is_exit_1_with_one_error_line(tmp_path: Path) -> None:
    """A refusal on well-formed input (deploy without a passing validation, rollback
    with nothing to go back to): one line "error: ...", lower case as every other, exit 1."""
    target = tmp_path / "live"
    target.mkdir()
    unvalidated = make_fake_bundle(tmp_path / "b", "B", passed=None)
    for args, says in (
        (["deploy", str(unvalidated), "--target", str(target)], "error: deploy refused: "),
        (["rollback", "--target", str(target)], f"error: {target}: no previous deployment"),
    ):
        result = CliRunner().invoke(cli, args, prog_name="ai-trading-bridge")
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(says) and len(result.stderr.splitlines()) == 1
        assert result.stdout == "" and "Traceback" not in result.output
