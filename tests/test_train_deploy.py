"""deploy / rollback: refusals, backups, rollback, and a deploy killed midway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from structlog.testing import capture_logs

from ai_trading_bridge import cli
from tests.train_helpers import make_fake_bundle
from train.deploy import (
    BACKUPS_DIR,
    LOG_FILE,
    PAUSE_ENV,
    DeployError,
    deploy,
    deployed_bundle,
    held_out_loss,
    rollback,
)

REPO = Path(__file__).resolve().parent.parent


def _log(target: Path) -> list[dict]:
    return [json.loads(line) for line in (target / LOG_FILE).read_text().splitlines()]


def test_deploy_first_bundle_becomes_live_and_is_logged(tmp_path: Path) -> None:
    bundle = make_fake_bundle(tmp_path / "a", "A")
    target = tmp_path / "live"
    deploy(bundle, target)
    live = deployed_bundle(target)
    assert live is not None and live.version == "A"
    assert (live.path / "model.zip").read_bytes() == (bundle / "model.zip").read_bytes()
    assert [e["action"] for e in _log(target)] == ["deploy"]


@pytest.mark.parametrize(
    ("passed", "reason"), [(None, "has no validation"), (False, "failed validation")]
)
def test_deploy_without_passing_validation_refused_and_target_unchanged(
    tmp_path: Path, passed: bool | None, reason: str
) -> None:
    target = tmp_path / "live"
    deploy(make_fake_bundle(tmp_path / "a", "A"), target)
    with pytest.raises(DeployError, match=reason):
        deploy(make_fake_bundle(tmp_path / "b", "B", passed=passed), target)
    assert deployed_bundle(target).version == "A"
    assert _log(target)[-1]["action"] == "refused"


def test_refusal_suggests_a_command_that_pastes_with_spaces_in_the_path(tmp_path: Path) -> None:
    bundle = make_fake_bundle(tmp_path / "runs" / "t 1", "B", passed=None)
    with pytest.raises(DeployError) as refused:
        deploy(bundle, tmp_path / "live")
    assert f'ai-trading-bridge validate "{bundle}" --write-card' in str(refused.value)


def test_deploy_force_accepts_unvalidated_and_warns_loudly(tmp_path: Path) -> None:
    target = tmp_path / "live"
    with capture_logs() as logs:
        pointer = deploy(make_fake_bundle(tmp_path / "b", "B", passed=False), target, force=True)
    assert pointer["forced"] is True and deployed_bundle(target).version == "B"
    assert any(e["event"] == "deploy_forced_without_passing_validation" for e in logs)
    assert _log(target)[-1]["forced"] is True


@pytest.mark.parametrize(
    "kwargs", [{"feature_version": "other-v9"}, {"size": 225}], ids=["feature_version", "size"]
)
def test_deploy_layout_mismatch_refused_even_with_force(tmp_path: Path, kwargs: dict) -> None:
    target = tmp_path / "live"
    deploy(make_fake_bundle(tmp_path / "a", "A"), target)
    with pytest.raises(DeployError, match="observation"):
        deploy(make_fake_bundle(tmp_path / "b", "B", **kwargs), target, force=True)
    assert deployed_bundle(target).version == "A"


def test_deploy_over_a_model_of_another_bar_period_needs_allow_layout_change(
    tmp_path: Path,
) -> None:
    """The charts are set up for the live model's bars; a daily model deployed over a
    1-minute one would be fed 1-minute bars, or refuse them."""
    target = tmp_path / "live"
    deploy(make_fake_bundle(tmp_path / "a", "A"), target)  # no bar_period: 1-minute
    daily = make_fake_bundle(tmp_path / "b", "B", bar_period={"type": "day", "value": 1})
    with pytest.raises(DeployError, match="B was trained on 1-day bars, the deployed A on 1-min"):
        deploy(daily, target, force=True)
    assert deployed_bundle(target).version == "A"
    same = make_fake_bundle(tmp_path / "c", "C", bar_period={"type": "second", "value": 60})
    deploy(same, target)  # one minute, written otherwise
    deploy(daily, target, allow_layout_change=True)
    assert deployed_bundle(target).version == "B"


def test_deploy_tampered_bundle_refused(tmp_path: Path) -> None:
    bundle = make_fake_bundle(tmp_path / "a", "A")
    (bundle / "model.zip").write_bytes(b"changed after the card was written")
    with pytest.raises(DeployError, match="sha256"):
        deploy(bundle, tmp_path / "live")


def test_deploy_backs_up_previous_and_rollback_restores_it(tmp_path: Path) -> None:
    target = tmp_path / "live"
    deploy(make_fake_bundle(tmp_path / "a", "A"), target)
    deploy(make_fake_bundle(tmp_path / "b", "B"), target)
    backups = list((target / BACKUPS_DIR).iterdir())
    assert len(backups) == 1
    assert (backups[0] / "model.zip").read_bytes() == (tmp_path / "a" / "model.zip").read_bytes()
    assert deployed_bundle(target).version == "B"

    rollback(target)
    assert deployed_bundle(target).version == "A"
    assert [e["action"] for e in _log(target)] == ["deploy", "deploy", "rollback"]
    with pytest.raises(DeployError, match="no previous deployment"):
        rollback(target)


def test_rollback_carries_the_forced_flag_of_the_deploy_it_returns_to(tmp_path: Path) -> None:
    target = tmp_path / "live"
    deploy(make_fake_bundle(tmp_path / "a", "A"), target)
    deploy(make_fake_bundle(tmp_path / "b", "B", passed=False), target, force=True)
    deploy(make_fake_bundle(tmp_path / "c", "C"), target)
    back = CliRunner().invoke(cli, ["rollback", "--target", str(target)])
    assert back.exit_code == 0 and "rolled back to B" in back.stdout
    assert "B was deployed without passing validation (--force)" in back.stderr
    pointer = json.loads((target / "current.json").read_text())
    assert pointer["version"] == "B" and pointer["forced"] is True
    assert _log(target)[-1]["action"] == "rollback" and _log(target)[-1]["forced"] is True
    # and back once more, to the validated A: not forced
    assert rollback(target)["forced"] is False and _log(target)[-1]["forced"] is False


def test_rollback_of_history_without_forced_reads_the_deploy_log(tmp_path: Path) -> None:
    """A target whose history was written before it recorded ``forced``."""
    target = tmp_path / "live"
    deploy(make_fake_bundle(tmp_path / "b", "B", passed=False), target, force=True)
    deploy(make_fake_bundle(tmp_path / "c", "C"), target)
    pointer_file = target / "current.json"
    pointer = json.loads(pointer_file.read_text())
    pointer["history"] = [{k: v for k, v in e.items() if k != "forced"} for e in pointer["history"]]
    pointer_file.write_text(json.dumps(pointer))
    assert rollback(target)["forced"] is True


def test_deploy_and_rollback_cli(tmp_path: Path) -> None:
    target = tmp_path / "live"
    runner = CliRunner()
    a, b = make_fake_bundle(tmp_path / "a", "A"), make_fake_bundle(tmp_path / "b", "B", passed=None)
    assert runner.invoke(cli, ["deploy", str(a), "--target", str(target)]).exit_code == 0
    refused = runner.invoke(cli, ["deploy", str(b), "--target", str(target)])
    assert refused.exit_code == 1 and "deploy refused" in refused.output
    forced = runner.invoke(cli, ["deploy", str(b), "--target", str(target), "--force"])
    assert forced.exit_code == 0 and "did not pass validation" in forced.output
    back = runner.invoke(cli, ["rollback", "--target", str(target)])
    assert back.exit_code == 0 and "rolled back to A" in back.output


@pytest.mark.parametrize(
    "step", ["copy_versions", "staged", "copy_backups", "backed_up", "pointer_written", "switched"]
)
def test_deploy_killed_midway_leaves_a_complete_model(tmp_path: Path, step: str) -> None:
    target = tmp_path / "live"
    deploy(make_fake_bundle(tmp_path / "a", "A"), target)
    new = make_fake_bundle(tmp_path / "b", "B")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ai_trading_bridge", "deploy", str(new), "--target", str(target)],
        cwd=REPO,
        env={**os.environ, PAUSE_ENV: step},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        line = ""
        while "deploy paused at" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
        assert f"deploy paused at {step}" in line, f"deploy never reached {step}"
    finally:
        proc.kill()  # mid-deploy: SIGKILL, TerminateProcess on Windows; no clean-up runs
        proc.wait()
        proc.stderr.close()

    live = deployed_bundle(target)  # verifies every file's sha256 against its card
    expected = "B" if step == "switched" else "A"
    assert live is not None and live.version == expected
    # The next deploy cleans up and succeeds.
    deploy(new, target)
    assert deployed_bundle(target).version == "B"
    assert not list(target.rglob(".staging-*"))


def held_out_trading(low: float, high: float) -> dict:
    """A validation summary's held-out backtest whose mean-R interval is [low, high]."""
    return {
        "trades": 120,
        "net_pnl_r": -14.0,
        "net_pnl_usd": -5125.0,
        "mean_r_per_trade": (low + high) / 2,
        "ci": {"mean_r_per_trade": [low, high]},
    }


@pytest.mark.parametrize(
    ("validation", "losing"),
    [
        ({"passed": True, "trading": held_out_trading(-0.21, -0.02)}, True),
        ({"passed": True, "trading": held_out_trading(-0.21, 0.05)}, False),  # not shown
        ({"passed": True, "trading": held_out_trading(0.01, 0.2)}, False),
        ({"passed": True}, False),  # validated before the backtest existed
        (None, False),
    ],
)
def test_held_out_loss_only_when_the_interval_is_wholly_below_zero(
    validation: dict | None, losing: bool
) -> None:
    message = held_out_loss(validation)
    assert (message is not None) is losing
    if losing:
        assert "-14.0 R" in message and "-0.210 to -0.020" in message and "120 trades" in message


def test_held_out_loss_names_the_confidence_the_validation_used() -> None:
    """The validation's bootstrap records its confidence (90% by default); the line says
    that, not a level the interval was never computed at."""
    trading = held_out_trading(-0.3, -0.1)
    recorded = {"passed": True, "trading": trading, "backtest": {"bootstrap": {"confidence": 0.9}}}
    assert "90% interval -0.300 to -0.100" in str(held_out_loss(recorded))
    assert "bootstrap interval -0.300" in str(held_out_loss({"passed": True, "trading": trading}))


def test_deploy_of_a_model_that_lost_held_out_warns_and_records_it(tmp_path: Path) -> None:
    """A passing model that lost money held out is deployed (the trader decides), with the
    loss on the console, in the pointer and in the deploy log."""
    losing = make_fake_bundle(tmp_path / "a", "A", trading=held_out_trading(-0.3, -0.1))
    fine = make_fake_bundle(tmp_path / "b", "B", trading=held_out_trading(-0.1, 0.2))
    target = tmp_path / "live"
    with capture_logs() as logs:
        result = CliRunner().invoke(cli, ["deploy", str(losing), "--target", str(target)])
    assert result.exit_code == 0, result.output
    assert "WARNING: the model lost -14.0 R" in result.output
    assert [e["version"] for e in logs if e["event"] == "deploy_held_out_loss"] == ["A"]
    pointer = json.loads((target / "current.json").read_text())
    assert pointer["version"] == "A" and "lost -14.0 R" in pointer["held_out_loss"]
    assert "lost -14.0 R" in _log(target)[-1]["held_out_loss"]
    quiet = CliRunner().invoke(cli, ["deploy", str(fine), "--target", str(target)])
    assert quiet.exit_code == 0 and "WARNING" not in quiet.output
    assert json.loads((target / "current.json").read_text())["held_out_loss"] is None
