"""validate: the bundled demo model passes; collapsed policies fail; the report is complete."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ai_trading_bridge import cli
from env.config import Action
from tests.train_helpers import make_rule_bundle
from train import bundle as bundle_io
from train.criteria import evaluate_criteria
from train.evaluation import RunResult

DEMO = Path(__file__).resolve().parent.parent / "bridge" / "default_model"
EPISODES = "50"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _collapsed_bundle(tmp_path: Path, action: int) -> Path:
    """The demo bundle with the policy head's bias pushed so far towards ``action`` that
    the argmax always picks it where the mask allows it."""
    from sb3_contrib import MaskablePPO

    folder = tmp_path / f"collapsed_{Action(action).name}"
    shutil.copytree(DEMO, folder)
    model = MaskablePPO.load(str(folder / "model.zip"), device="cpu")
    with torch.no_grad():
        model.policy.action_net.bias[action] += 1000.0
    model.save(str(folder / "model.zip"))
    card = bundle_io.read_card(folder / "model.json")
    card["files"] = bundle_io.file_hashes(folder)
    card["validation"] = None
    bundle_io.write_card(folder, card)
    return folder


def test_validate_policy_inside_every_band_passes_with_full_report(tmp_path: Path) -> None:
    bundle = make_rule_bundle(DEMO, tmp_path / "rule")
    report_dir = tmp_path / "report"
    result = CliRunner().invoke(
        cli, ["validate", str(bundle), "--episodes", EPISODES, "--report-dir", str(report_dir)]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "POST-TRAINING VALIDATION RESULTS" in out and "Action 3:" in out
    assert "Invalid PM actions when flat: 0 (0.00%)" in out
    assert "✅ MODEL VALIDATION PASSED" in out
    # the guide's all-decisions rule is printed beside the verdict, and said not to be it
    guide_line = out.index("(guide's rule:")
    assert "not the verdict" in out[guide_line : out.index("Action shares by position")]
    for name in ("always_flat", "random_valid", "momentum"):
        assert name in out
    report = json.loads((report_dir / "report.json").read_text())
    assert report["passed"] is True and report["episodes"] == 50
    assert {c["name"] for c in report["criteria"]} == {
        "hold_flat",
        "buy_flat",
        "sell_flat",
        "pm_flat",
        "pm_in_position",
    }
    assert set(report["trading"]) == {"model", "always_flat", "random_valid", "momentum"}
    assert report["trading"]["always_flat"]["trades"] == 0
    backtest = report["backtest"]  # one contiguous walk, not the overlapping episodes
    assert backtest["bar_period_s"] == 60 and backtest["periods_per_year"] == 252 * 23 * 60
    assert backtest["span"]["first_decision"] == report["holdout_start"]
    assert backtest["costs"]["instrument"] == "NQ"
    model = report["trading"]["model"]
    assert model["decisions"] == backtest["span"]["decision_bars"]
    assert len(model["ci"]["sharpe_annualised"]) == 2
    assert "Backtest: one contiguous walk through the held-out span" in out
    assert set(report["episode_activity"]) == set(report["trading"])
    assert "sharpe_annualised" not in report["episode_activity"]["model"]
    for plot in ("action_shares.png", "equity.png"):
        assert (report_dir / plot).read_bytes()[:8] == PNG_MAGIC


def test_validate_bundled_demo_model_agrees_with_its_card(tmp_path: Path) -> None:
    """The demo's card records a 1000-episode validation; a 50-episode run on the same
    held-out bars reaches the same verdict on every criterion the card records as
    clearly passed or failed (more than 5 points from a band edge)."""
    card = bundle_io.load_bundle(DEMO).card
    assert card["validation"]["episodes"] == 1000
    result = CliRunner().invoke(
        cli, ["validate", str(DEMO), "--episodes", EPISODES, "--report-dir", str(tmp_path)]
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert result.exit_code == (0 if report["passed"] else 3)
    for recorded in card["validation"]["criteria"]:
        now = next(c for c in report["criteria"] if c["name"] == recorded["name"])
        bands = [float(x) for x in recorded["target"].strip("<=%").split("-")]
        if min(abs(recorded["value_pct"] - b) for b in bands) > 5:
            assert now["passed"] == recorded["passed"], (recorded, now)


def test_validate_passes_the_bundled_demo_model_on_1000_held_out_episodes(tmp_path: Path) -> None:
    """The guide's full post-training validation (1000 episodes, the default) on bars the
    demo never trained on: exit 0, every criterion inside its band."""
    result = CliRunner().invoke(cli, ["validate", str(DEMO), "--report-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "✅ MODEL VALIDATION PASSED" in result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["episodes"] == 1000 and report["passed"] is True
    assert all(c["passed"] for c in report["criteria"])
    assert report["decisions"]["invalid"] == 0


@pytest.mark.parametrize(
    ("action", "failing"),
    [
        (Action.HOLD, {"hold_flat", "buy_flat", "sell_flat", "pm_in_position"}),
        (Action.MOVE_TO_BE, {"pm_in_position"}),
    ],
)
def test_validate_collapsed_policy_fails(tmp_path: Path, action: int, failing: set) -> None:
    folder = _collapsed_bundle(tmp_path, action)
    result = CliRunner().invoke(
        cli, ["validate", str(folder), "--episodes", "20", "--episode-bars", "100", "--write-card"]
    )
    assert result.exit_code == 3, result.output  # the model failed, as documented
    assert "❌ MODEL VALIDATION FAILED" in result.output
    report = json.loads((folder / "validation" / "report.json").read_text())
    failed = {c["name"] for c in report["criteria"] if not c["passed"]}
    assert failing <= failed
    if action == Action.MOVE_TO_BE:
        assert report["action_shares_pct"]["in_position"]["MOVE_TO_BE"] == 100.0
    card = bundle_io.load_bundle(folder).card  # the card was rewritten, hashes still valid
    assert card["validation"]["passed"] is False


def test_validate_write_card_on_fewer_episodes_warns_that_it_replaced_a_larger_verdict(
    tmp_path: Path,
) -> None:
    """deploy decides on the card's verdict: a quick check on a few episodes that replaces
    one on many says so, and how to put the larger sample back."""
    folder = tmp_path / "demo"
    shutil.copytree(DEMO, folder)
    before = bundle_io.read_card(folder / "model.json")["validation"]["episodes"]
    args = ["validate", str(folder), "--episodes", "10", "--write-card"]
    result = CliRunner().invoke(cli, [*args, "--report-dir", str(tmp_path / "r")])
    assert result.exit_code in (0, 3), result.output
    [line] = [x for x in result.stderr.splitlines() if x.startswith("warning: the card")]
    assert f"on {before} episodes) was replaced by this one on 10" in line
    assert f"--episodes {before}" in line
    assert bundle_io.read_card(folder / "model.json")["validation"]["episodes"] == 10
    again = CliRunner().invoke(cli, [*args, "--report-dir", str(tmp_path / "r")])
    assert "warning: the card" not in again.stderr  # 10 over 10: nothing was lost


def test_validate_into_a_report_dir_it_cannot_write_fails_before_the_episodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --report-dir under a file: exit 1 with one line at once, not after the whole
    run (1000 episodes by default) has been thrown away."""
    import train.validation

    def episodes_ran(*args, **kwargs):
        raise AssertionError("the episodes ran before the report folder was checked")

    monkeypatch.setattr(train.validation, "run_all", episodes_ran)
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    report_dir = tmp_path / "a-file" / "report"
    args = ["validate", str(DEMO), "--episodes", "5", "--report-dir", str(report_dir)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {report_dir}: ") and "may write there" in line, line


def test_validate_guide_two_file_form(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "validate",
            "--model",
            str(DEMO / "model.zip"),
            "--vecnorm",
            str(DEMO / "vecnormalize.pkl"),
            "--episodes",
            "5",
            "--episode-bars",
            "100",
            "--report-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code in (0, 3), result.output
    assert "POST-TRAINING VALIDATION RESULTS" in result.output
    assert (tmp_path / "report.json").exists()


def _result(flat: list[int], position: list[int]) -> RunResult:
    return RunResult(flat_counts=np.array(flat), position_counts=np.array(position))


@pytest.mark.parametrize(
    ("flat", "position", "failed"),
    [
        ([85, 8, 7, 0, 0, 0], [50, 0, 0, 20, 20, 10], set()),
        ([90, 5, 5, 0, 0, 0], [60, 0, 0, 40, 0, 0], set()),
        ([90, 10, 0, 0, 0, 0], [50, 0, 0, 50, 0, 0], {"sell_flat"}),
        ([79, 11, 10, 0, 0, 0], [61, 0, 0, 39, 0, 0], {"hold_flat", "buy_flat", "pm_in_position"}),
        ([84, 8, 7, 1, 0, 0], [40, 0, 0, 61, 0, 0], {"pm_flat", "pm_in_position"}),
    ],
)
def test_criteria_bands_boundaries(flat: list[int], position: list[int], failed: set) -> None:
    criteria = evaluate_criteria(_result(flat, position))
    assert {c.name for c in criteria if not c.passed} == failed


EURO_FX = Path(__file__).resolve().parent / "data" / "6E_hourly_zero_volume.Last.txt"


@pytest.mark.parametrize(
    ("exchange_tz", "data_timezone"),
    [
        (None, "America/New_York"),  # a file exported on a New York clock
        ("Europe/London", None),  # a contract whose exchange clock is not Chicago's
    ],
)
def test_holdout_reload_reads_the_file_as_training_did(
    exchange_tz: str | None, data_timezone: str | None
) -> None:
    import dataclasses
    import warnings

    from env.bars import load_bars
    from env.config import WARMUP_BARS
    from env.contracts import resolve_contract
    from env.trading_env import EnvConfig
    from train.validation import holdout_for_card

    spec = resolve_contract("6E")
    if exchange_tz is not None:
        spec = dataclasses.replace(spec, timezone=exchange_tz)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sessions off the calendar: not the point here
        trained = load_bars(EURO_FX, contract=spec, data_timezone=data_timezone)
        card = {
            "env": EnvConfig(instrument=spec).to_dict(),
            "data": {
                "source": trained.source,
                "holdout_start_index": 480,
                "data_timezone": trained.data_timezone,
                "bar_period": trained.bar_period.to_json(),
            },
        }
        holdout = holdout_for_card(card, None)
    np.testing.assert_array_equal(holdout.time, trained.time[480 - (WARMUP_BARS - 1) :])
    assert holdout.timezone == trained.timezone


def test_train_then_validate_a_new_york_clock_file_decides_from_the_holdout_start(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bundle"
    args = ["train", "--data", str(EURO_FX), "--instrument", "6E"]
    args += ["--data-timezone", "America/New_York", "--out", str(out), "--timesteps", "256"]
    args += ["--n-steps", "128", "--n-envs", "2", "--eval-every", "0", "--checkpoint-every", "0"]
    args += ["--validate-episodes", "4", "--reward", "seed", "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 3), result.output  # 3: the tiny model failed its validation
    card = json.loads((out / "model.json").read_text(encoding="utf-8"))
    report = json.loads((out / "validation" / "report.json").read_text(encoding="utf-8"))
    assert report["backtest"]["costs"]["instrument"] == "6E"
    assert report["backtest"]["span"]["first_decision"] == card["data"]["holdout_start"]


def test_holdout_of_a_file_changed_since_training_is_the_cards_span_by_time(
    tmp_path: Path,
) -> None:
    """Bars added at the front of the file after training move every index: the card's
    holdout_start_index would start validation on bars the model trained on. The card's
    times are used instead, with a warning that the data changed."""
    import warnings

    from env.bars import load_bars
    from env.config import WARMUP_BARS
    from env.contracts import resolve_contract
    from env.trading_env import EnvConfig
    from train.training import load_data
    from train.validation import holdout_for_card

    spec = resolve_contract("6E")
    data = tmp_path / "6E.Last.txt"
    lines = EURO_FX.read_text(encoding="utf-8").splitlines(keepends=True)
    data.write_text("".join(lines[100:]), encoding="utf-8")  # the file as trained on
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sessions off the calendar: not the point here
        trained, sha256 = load_data(str(data), contract=spec)
    card = {
        "env": EnvConfig(instrument=spec).to_dict(),
        "data": {
            "source": trained.source,
            "sha256": sha256,
            "start": str(trained.time[0]),
            "end": str(trained.time[-1]),
            "n_bars": len(trained),
            "holdout_start": str(trained.time[400]),
            "holdout_start_index": 400,
            "holdout_end_index": len(trained),
            "data_timezone": trained.data_timezone,
            "bar_period": trained.bar_period.to_json(),
        },
    }
    data.write_text("".join(lines), encoding="utf-8")  # 100 earlier bars added since
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        holdout = holdout_for_card(card, None)
        expected = load_bars(data, contract=spec)
    np.testing.assert_array_equal(holdout.time, trained.time[400 - (WARMUP_BARS - 1) :])
    changed = [str(w.message) for w in caught if "changed since training" in str(w.message)]
    assert len(changed) == 1 and f"now {len(expected)} bars" in changed[0], changed
