"""walkforward: folds in time order, one report over folds x seeds, in-process and on Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ai_trading_bridge import cli
from train import bundle as bundle_io
from train.config import TrainConfig
from train.walkforward import Fold, Job, make_folds, run_job, run_jobs

TINY = [
    "--timesteps",
    "512",
    "--n-steps",
    "256",
    "--n-envs",
    "2",
    "--episode-bars",
    "100",
    "--synthetic-days",
    "3",
    "--validate-episodes",
    "4",
]


def test_folds_expanding_and_rolling() -> None:
    expanding = make_folds(1000, 3, 0.3, "expanding", min_bars=100)
    assert [(f.train_start, f.test_start, f.test_end) for f in expanding] == [
        (0, 700, 800),
        (0, 800, 900),
        (0, 900, 1000),
    ]
    rolling = make_folds(1000, 3, 0.3, "rolling", min_bars=100)
    assert [(f.train_start, f.test_start) for f in rolling] == [(0, 700), (100, 800), (200, 900)]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((1000, 3, 0.3, "sliding"), "mode must be one of"),
        ((1000, 3, 1.5, "expanding"), "test_fraction"),
        ((1000, 20, 0.3, "expanding"), "fewer folds"),
    ],
)
def test_folds_bad_plans_rejected(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_folds(*args, min_bars=100)


def test_walkforward_cli_folds_x_seeds_one_report(tmp_path: Path) -> None:
    out = tmp_path / "wf"
    args = ["walkforward", "--out", str(out), "--folds", "2", "--seeds", "2", *TINY]
    result = CliRunner().invoke(cli, args)
    report = json.loads((out / "walkforward.json").read_text())
    summary = report["summary"]
    assert result.exit_code == (0 if summary["passed"] == 4 else 3), result.output
    assert "walk-forward (expanding, 2 folds x 2 seeds" in result.output
    assert summary["jobs"] == 4 and summary["pass_rate"] == summary["passed"] / 4
    assert sorted((j["fold"], j["seed"]) for j in report["jobs"]) == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    ]
    folds = report["folds"]
    assert folds[0]["test_end"] == folds[1]["test_start"]  # consecutive, no overlap
    for job in report["jobs"]:
        fold = folds[job["fold"]]
        # Trained only on the past: the card's holdout is exactly the fold's slice.
        card = bundle_io.load_bundle(job["bundle"]).card
        assert card["data"]["holdout_start_index"] == fold["test_start"]
        assert card["data"]["holdout_end_index"] == fold["test_end"]
        assert card["data"]["train_bars"] == fold["test_start"] - fold["train_start"]
        assert set(job["backtest"]) == {"model", "always_flat", "random_valid", "momentum"}
        # Every slice bar but the last (which only fills and exits) is a decision.
        decisions = fold["test_end"] - fold["test_start"] - 1
        assert job["backtest"]["model"]["decisions"] == decisions
        assert set(job["criteria"]) >= {"hold_flat", "pm_in_position"}
    assert set(summary["criteria_spread_pct"]["hold_flat"]) == {"mean", "std", "min", "max"}
    assert set(summary["out_of_sample_by_seed"]) == {"0", "1"}
    assert summary["out_of_sample_by_seed"]["0"]["folds"] == 2


def test_walkforward_jobs_on_ray_match_in_process(tmp_path: Path) -> None:
    """A one-CPU local Ray cluster runs the same job to the same result (same seed,
    one torch thread: the run is deterministic wherever it runs)."""
    ray = pytest.importorskip("ray", reason="the optional 'ray' extra")
    config = TrainConfig(
        timesteps=512,
        n_steps=256,
        n_envs=2,
        episode_bars=100,
        synthetic_days=3,
        checkpoint_every=0,
        eval_every=0,
    )
    folds = make_folds(3 * 1380, 1, 0.3, "expanding", min_bars=200)
    local = run_job(Job(config, folds[0], str(tmp_path / "local"), None, 4))
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_jobs([Job(config, folds[0], str(tmp_path / "ray"), None, 4)], "auto")
    finally:
        ray.shutdown()
    assert len(remote) == 1
    assert remote[0]["criteria"] == local["criteria"]
    assert (
        remote[0]["backtest"]["model"]["net_pnl_usd"] == local["backtest"]["model"]["net_pnl_usd"]
    )
    assert Path(remote[0]["bundle"], "model.json").exists()


def test_walkforward_ray_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_ray(name: str, *args, **kwargs):
        if name == "ray":
            raise ImportError("no ray")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    job = Job(TrainConfig(), Fold(0, 0, 10, 20), "x", None, 1)
    with pytest.raises(RuntimeError, match=r"pip install 'ai-trading-bridge\[ray\]'"):
        run_jobs([job], "auto")


def test_walkforward_ray_without_a_cluster_is_one_line_naming_our_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--ray auto with no cluster running: one line, exit 1, naming --ray and what to do
    (not Ray's own text, which points at an --address flag this command does not have)."""
    pytest.importorskip("ray", reason="the optional 'ray' extra")
    from click.testing import CliRunner

    from ai_trading_bridge import cli

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray"))  # no cluster recorded there
    args = ["walkforward", "--out", str(tmp_path / "w"), "--ray", "auto", "--timesteps", "64"]
    result = CliRunner().invoke(cli, [*args, "--synthetic-days", "3", "--episode-bars", "60"])
    assert result.exit_code == 1, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("error: --ray auto: no running Ray cluster found"), line
    assert "--address" not in line and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "calibrated"),
    [
        (["--reward", "seed", "--calibrate", "ON"], True),  # auto would be off for seed
        (["--calibrate", "off"], False),  # auto would be on for constrained
    ],
)
def test_walkforward_calibrate_reaches_every_jobs_card(
    tmp_path: Path, args: list[str], calibrated: bool
) -> None:
    out = tmp_path / "wf"
    result = CliRunner().invoke(
        cli, ["walkforward", "--out", str(out), "--folds", "1", *TINY, *args]
    )
    assert result.exit_code in (0, 3), result.output  # 3: a tiny job failed validation
    report = json.loads((out / "walkforward.json").read_text())
    for job in report["jobs"]:
        card = bundle_io.load_bundle(job["bundle"]).card
        assert card["train_config"]["calibrate"] == args[-1].lower()
        assert ("calibration" in card) is calibrated
