"""From `train` to `serve` on Euro FX (6E) hourly bars: the bundle `train` writes is
served pickle-free as it is, and every price the daemon sends is on 6E's 0.00005 grid.

One tiny training run (a few hundred steps) shared by the module's tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from train_helpers import make_rule_bundle

from ai_trading_bridge import cli
from bridge.config import ModelSource
from bridge.plain import has_plain
from bridge.policy import load_policy
from bridge.replay import ReplayConfig, run_replay
from env.bars import load_bars
from env.contracts import resolve_contract
from env.execution import on_tick_grid

pytestmark = pytest.mark.filterwarnings("ignore::env.bars.BarsTimezoneWarning")

ROOT = Path(__file__).parent.parent
EURO_FX = Path(__file__).parent / "data" / "6E_hourly_zero_volume.Last.txt"
TICK = 0.00005


@pytest.fixture(scope="module")
def euro_fx_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "6e"
    args = [
        "train",
        "--data",
        str(EURO_FX),
        "--instrument",
        "6E",
        "--out",
        str(out),
        "--timesteps",
        "256",
        "--n-steps",
        "128",
        "--n-envs",
        "1",
        "--eval-every",
        "0",
        "--checkpoint-every",
        "0",
        "--validate-episodes",
        "0",
        "--reward",
        "default",
        "--device",
        "cpu",
        "--no-progress",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out


def start_daemon(bundle: Path, tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """`serve --bundle` in its own process (rails off: every decision is the model's)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    risk = tmp_path / "risk.toml"
    risk.write_text("enabled = false\n")
    log_file = tmp_path / "daemon.log"
    command = [sys.executable, "-m", "ai_trading_bridge", "serve", "--bind"]
    command += ["tcp://127.0.0.1:*", "--bundle", str(bundle), "--control", "none"]
    command += ["--journal-dir", str(tmp_path / "journal"), "--log-file", str(log_file)]
    command += ["--risk-config", str(risk)]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if log_file.exists():
            for line in log_file.read_text().splitlines():
                event = json.loads(line)
                if event["event"] == "serving":
                    return process, event["endpoint"]
        if process.poll() is not None:
            raise AssertionError(f"the daemon exited with {process.returncode}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the daemon did not start within 90 s")


def test_trained_bundle_is_served_from_its_plain_files(euro_fx_bundle: Path, tmp_path) -> None:
    assert has_plain(euro_fx_bundle)  # written by train, no export-plain run
    policy = load_policy(ModelSource(bundle=euro_fx_bundle))
    assert policy.model is None  # nothing unpickled
    assert policy.feature_terms == (TICK, True)
    process, endpoint = start_daemon(euro_fx_bundle, tmp_path)
    try:
        bars = load_bars(EURO_FX, contract=resolve_contract("6E"))
        replay = ReplayConfig(endpoint=endpoint, instrument="6E 03-26", max_bars=50)
        result = run_replay(bars, replay)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert result.errors == result.missed == 0 and len(result.replies) == 50
    assert result.model_version == policy.version


def test_euro_fx_train_validate_replay_prices_on_the_grid(euro_fx_bundle: Path, tmp_path) -> None:
    validate = CliRunner().invoke(
        cli,
        ["validate", str(euro_fx_bundle), "--episodes", "4", "--report-dir", str(tmp_path)],
    )
    assert validate.exit_code in (0, 3), validate.output  # pass or fail, never a crash
    assert (tmp_path / "report.json").is_file()

    bars = load_bars(EURO_FX, contract=resolve_contract("6E"))
    policy = load_policy(ModelSource(bundle=euro_fx_bundle))
    process, endpoint = start_daemon(euro_fx_bundle, tmp_path / "serve")
    try:
        replay = ReplayConfig(endpoint=endpoint, instrument="6E 03-26", env=policy.env_config)
        result = run_replay(bars, replay)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert result.errors == result.missed == 0
    close_of = {str(bars.time[i]): float(bars.close[i]) for i in range(len(bars))}
    priced = entries = 0
    for reply in result.replies:
        orders = reply.get("orders") or {}
        close = close_of[reply["time"]]
        for key in ("stop_price", "target_price"):
            price = orders.get(key)
            if price is not None:
                priced += 1
                assert on_tick_grid(price, TICK), (key, price)
                assert repr(price) == repr(round(price, 5)), (key, price)
        side = {1: 1, 2: -1}.get(reply["action"])
        if side is not None:
            entries += 1
            stop, target = orders["stop_price"], orders["target_price"]
            assert (stop < close < target) if side > 0 else (target < close < stop), reply
        if reply["action"] == 3:  # MOVE_TO_BE: the stop to the entry, behind the close
            assert orders["stop_price"] is not None
    assert entries > 0 and priced > 0, "the replay sent no priced orders; nothing was checked"


def test_validate_with_risk_config_runs_the_rails_and_says_so(
    euro_fx_bundle: Path, tmp_path
) -> None:
    # A hand-set rule enters whenever the EMA slope is in its top or bottom 18% while
    # flat: several entries a session, whatever the tiny training run learned.
    rule = make_rule_bundle(euro_fx_bundle, tmp_path / "rule")
    risk = tmp_path / "rails.toml"
    risk.write_text("[risk]\nmax_entries_per_session = 1\n")
    runs = {}
    for name, extra in (("off", []), ("on", ["--risk-config", str(risk)])):
        args = ["validate", str(rule), "--episodes", "6", "--seed", "1"]
        args += ["--report-dir", str(tmp_path / name), *extra]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code in (0, 3), result.output
        report = json.loads((tmp_path / name / "report.json").read_text())
        runs[name] = (result.output, report)
    output, report = runs["on"]
    assert "Risk rails ON (" in output and "max_entries_per_session=1" in output
    assert report["risk_rails"]["max_entries_per_session"] == 1
    assert runs["off"][1]["risk_rails"] is None and "Risk rails" not in runs["off"][0]
    assert runs["off"][1]["risk_refusals"] is None  # no rails, nothing refused
    # The rule proposes a second entry in a session, which the one-entry rail refuses.
    # One count of refused decisions, by rule, beside the decisions it is part of.
    refused = report["risk_refusals"]["max_entries"]
    assert refused > 0 and report["decisions"]["invalid"] == 0
    assert f"in-position decisions, {refused} refused: max_entries {refused}):" in output
    assert output.count("refused:") == 1 and " 0 refused" not in output
    assert "in-position decisions, 0 refused):" in runs["off"][0]

    risk.write_text("max_entries_per_session = 0\n")
    bad = CliRunner().invoke(cli, ["validate", str(euro_fx_bundle), "--risk-config", str(risk)])
    assert bad.exit_code != 0 and "max_entries_per_session must be" in bad.output
    assert "Traceback" not in bad.output
