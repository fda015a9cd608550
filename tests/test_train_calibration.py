"""Band calibration: the solver puts recorded decisions at the band centres, recent
training blocks weigh more (a later regime of the training span carries over to the bars
after it), `train` stores the offsets in the model itself (model.zip and policy.npz
agree), and the calibrated policy's own episodes on the training bars fall inside the
guide's bands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ai_trading_bridge import cli
from env.config import N_ACTIONS, WARMUP_BARS, Action
from env.mask import FLAT_MASK, FLAT_NO_ENTRY_MASK, IN_POSITION_MASK
from env.trading_env import TradingEnv
from train.calibration import (
    PM_IDS,
    TARGET_BUY_FLAT,
    TARGET_PM_IN_POSITION,
    TARGET_SELL_FLAT,
    _block_bars,
    _row_weights,
    block_weights,
    masked_argmax,
    near_centres,
    solve_offsets,
    training_blocks,
    weighted_shares,
)


def _recorded(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a policy that strongly prefers SELL when flat and never manages a
    position, under a mix of flat, no-entry and in-position masks."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, N_ACTIONS))
    logits[:, Action.SELL] += 2.0
    logits[:, list(PM_IDS)] -= 3.0
    kinds = rng.choice(3, size=n, p=[0.55, 0.05, 0.4])
    masks = np.stack([FLAT_MASK, FLAT_NO_ENTRY_MASK, IN_POSITION_MASK])[kinds]
    return logits, masks


def _shares(logits: np.ndarray, masks: np.ndarray, offsets: np.ndarray) -> dict[str, float]:
    chosen = masked_argmax(logits, masks, offsets)
    flat = masks[:, Action.MOVE_TO_BE] == 0
    return {
        "buy": 100 * float(np.mean(chosen[flat] == Action.BUY)),
        "sell": 100 * float(np.mean(chosen[flat] == Action.SELL)),
        "pm": 100 * float(np.mean(np.isin(chosen[~flat], PM_IDS))),
    }


def test_solved_offsets_put_recorded_decisions_at_the_band_centres() -> None:
    logits, masks = _recorded(40_000, seed=1)
    before = _shares(logits, masks, np.zeros(N_ACTIONS))
    assert before["sell"] > 40 and before["pm"] < 20  # far outside the bands to start
    offsets = solve_offsets(logits, masks, np.zeros(N_ACTIONS))
    after = _shares(logits, masks, offsets)
    assert abs(after["buy"] - TARGET_BUY_FLAT) < 0.2
    assert abs(after["sell"] - TARGET_SELL_FLAT) < 0.2
    assert abs(after["pm"] - TARGET_PM_IN_POSITION) < 0.2
    assert offsets[Action.HOLD] == 0.0
    # One common PM offset: the learned order among the PM actions is kept.
    assert (
        offsets[Action.MOVE_TO_BE] == offsets[Action.ENABLE_TRAIL] == offsets[Action.DISABLE_TRAIL]
    )
    # The same offsets generalise to fresh draws of the same policy.
    fresh_logits, fresh_masks = _recorded(40_000, seed=2)
    fresh = _shares(fresh_logits, fresh_masks, offsets)
    assert 5 < fresh["buy"] < 10 and 5 < fresh["sell"] < 10 and 40 < fresh["pm"] < 60


def test_no_in_position_rows_leave_the_pm_offset_alone() -> None:
    logits, masks = _recorded(5_000, seed=3)
    flat_only = masks[:, Action.MOVE_TO_BE] == 0
    start = np.array([0.0, 0.0, 0.0, 1.25, 1.25, 1.25])
    offsets = solve_offsets(logits[flat_only], masks[flat_only], start)
    assert offsets[list(PM_IDS)].tolist() == [1.25, 1.25, 1.25]


def _regime(n: int, buy_shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of one policy in one market regime: ``buy_shift`` raises its BUY logit
    (a rising market makes it buy more often); flat and in-position masks."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, N_ACTIONS))
    logits[:, Action.BUY] += buy_shift
    logits[:, list(PM_IDS)] -= 1.0
    masks = np.stack([FLAT_MASK, IN_POSITION_MASK])[rng.choice(2, size=n, p=[0.6, 0.4])]
    return logits, masks


def test_recent_blocks_carry_a_late_regime_to_the_bars_after_the_training_span() -> None:
    """Five chronological blocks; the policy buys more in the last two (a new regime).
    Bars after the training span continue that regime. The pooled solution centres the
    whole span and leaves the new regime's BUY share above the band (as on the S&P 500
    2015-2018); the recency-weighted one keeps it inside, at the price of the old
    regime's share, which now sits below the centre."""
    weights = block_weights(5)
    logits, masks, rows = [], [], []
    for k in range(5):
        block_logits, block_masks = _regime(8_000, 0.5 if k >= 3 else 0.0, seed=k)
        logits.append(block_logits)
        masks.append(block_masks)
        rows.append(_row_weights(block_masks, weights[k]))
    all_logits, all_masks = np.concatenate(logits), np.concatenate(masks)
    pooled = solve_offsets(all_logits, all_masks, np.zeros(N_ACTIONS))
    recent = solve_offsets(all_logits, all_masks, np.zeros(N_ACTIONS), np.concatenate(rows))

    after_span = _regime(40_000, 0.5, seed=99)
    assert _shares(*after_span, pooled)["buy"] > 10.0  # outside the band
    later = _shares(*after_span, recent)
    assert 5.0 < later["buy"] < 10.0 and 5.0 < later["sell"] < 10.0 and 40 < later["pm"] < 60
    assert later["buy"] < _shares(*after_span, pooled)["buy"] - 1.5
    # The solver met its own objective: the weighted mean of the block shares is central.
    per_block = [
        {"buy_flat": _shares(lg, mk, recent)["buy"], "sell_flat": 0.0, "hold_flat": 0.0}
        | {"pm_in_position": _shares(lg, mk, recent)["pm"], "invalid_pct": 0.0}
        for lg, mk in zip(logits, masks)
    ]
    combined = weighted_shares(per_block, weights)
    assert abs(combined["buy_flat"] - TARGET_BUY_FLAT) < 0.1
    assert abs(combined["pm_in_position"] - TARGET_PM_IN_POSITION) < 0.1
    assert _shares(*_regime(40_000, 0.0, seed=98), recent)["buy"] < TARGET_BUY_FLAT - 1.5


def test_block_weights_double_towards_the_latest_and_equal_weights_are_a_plain_mean() -> None:
    weights = block_weights(5)
    assert abs(weights.sum() - 1.0) < 1e-12
    np.testing.assert_allclose(weights[1:] / weights[:-1], 2.0)
    assert weights[-1] > 0.5 > weights[-2]
    np.testing.assert_allclose(block_weights(4, growth=1.0), 0.25)
    blocks = [
        {
            "hold_flat": 80.0 + k,
            "buy_flat": 10.0 - k,
            "sell_flat": 10.0,
            "pm_in_position": 50.0,
            "invalid_pct": 0.0,
        }
        for k in range(4)
    ]
    assert weighted_shares(blocks, block_weights(4, growth=1.0))["buy_flat"] == 8.5
    assert weighted_shares(blocks, block_weights(4))["buy_flat"] == round(10 - 34 / 15, 3)
    # Weighted solve with one block and any weight: the pooled solve.
    logits, masks = _recorded(5_000, seed=5)
    np.testing.assert_allclose(
        solve_offsets(logits, masks, np.zeros(N_ACTIONS), _row_weights(masks, 0.3)),
        solve_offsets(logits, masks, np.zeros(N_ACTIONS)),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="weights must be"):
        solve_offsets(logits, masks, np.zeros(N_ACTIONS), -np.ones(len(logits)))


@pytest.mark.parametrize(
    ("changes", "accepted"),
    [
        ({}, True),
        ({"pm_in_position": 46.5}, True),
        ({"pm_in_position": 43.3}, False),  # inside 41.5-58.5, yet 6.7 points off centre
        ({"pm_in_position": 54.0}, True),
        ({"buy_flat": 8.4, "hold_flat": 84.1}, True),
        ({"buy_flat": 8.6, "hold_flat": 83.9}, False),
        ({"sell_flat": 6.4, "hold_flat": 86.1}, False),
        ({"buy_flat": 6.5, "sell_flat": 6.5, "hold_flat": 87.0}, True),
        ({"buy_flat": 6.5, "sell_flat": 6.4, "hold_flat": 87.1}, False),
    ],
)
def test_near_centres_accepts_a_round_at_the_same_relative_distance_for_every_band(
    changes: dict[str, float], accepted: bool
) -> None:
    shares = {"hold_flat": 85.0, "buy_flat": 7.5, "sell_flat": 7.5, "pm_in_position": 50.0}
    assert near_centres({**shares, **changes, "invalid_pct": 0.0}) is accepted


def test_training_blocks_cover_every_decision_bar_once_and_shrink_on_short_spans() -> None:
    from train.training import load_data

    bars, _ = load_data(None, 3)
    spans = training_blocks(bars, episode_bars=120)
    assert len(spans) == 5
    assert spans[0][0] == WARMUP_BARS - 1 and spans[-1][1] == len(bars)
    assert all(a < b for a, b in spans)
    assert all(spans[k][1] == spans[k + 1][0] for k in range(4))  # contiguous, no overlap
    for first, end in spans:
        block = _block_bars(bars, first, end)
        # Its first decision bar is the block's first bar; it ends at the block's end.
        assert block.time[WARMUP_BARS - 1] == bars.time[first]
        assert block.time[-1] == bars.time[end - 1]
    # Ten episodes' worth of decision bars: two blocks of at least four episodes each;
    # under eight episodes' worth: one block, the pooled calibration.
    short = bars[: WARMUP_BARS - 1 + 10 * 121]
    assert len(training_blocks(short, episode_bars=120)) == 2
    tiny = bars[: WARMUP_BARS - 1 + 7 * 121]
    assert training_blocks(tiny, episode_bars=120) == [(WARMUP_BARS - 1, len(tiny))]


def _train(out: Path, *extra: str) -> dict:
    args = [
        "train",
        "--out",
        str(out),
        "--timesteps",
        "1024",
        "--n-steps",
        "256",
        "--n-envs",
        "2",
        "--episode-bars",
        "120",
        "--eval-every",
        "0",
        "--checkpoint-every",
        "0",
        "--validate-episodes",
        "0",
        "--no-progress",
        "--synthetic-days",
        "6",
        "--calibration-fraction",  # calibrate on the bars learned from; tests below vary it
        "0",
        *extra,
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return json.loads((out / "model.json").read_text())


def test_train_calibrates_the_model_it_saves(tmp_path: Path) -> None:
    """The calibrated bundle, loaded as validate and the daemon load it, acts inside the
    bands on episodes of the training bars it was not calibrated on (another seed)."""
    from sb3_contrib import MaskablePPO

    from bridge.plain import load_plain
    from train.calibration import calibrate
    from train.validation import load_policy

    card = _train(tmp_path / "on")
    calibration = card["calibration"]
    assert calibration["converged"], calibration
    after = calibration["after_pct"]
    assert 80 <= after["hold_flat"] <= 90 and 40 <= after["pm_in_position"] <= 60
    # Per-block record: chronological blocks of the training span, recent ones weigh more.
    blocks = calibration["blocks"]
    assert len(blocks) == 5
    assert [b["first"] for b in blocks] == sorted(b["first"] for b in blocks)
    assert all(b["first"] < b["last"] for b in blocks)
    assert blocks[-1]["last"] < card["data"]["holdout_start"]
    weights = [b["weight"] for b in blocks]
    assert abs(sum(weights) - 1) < 1e-4 and weights == sorted(weights)
    weighted_buy = sum(b["weight"] * b["after_pct"]["buy_flat"] for b in blocks)
    assert abs(weighted_buy - after["buy_flat"]) < 0.01

    uncalibrated = _train(tmp_path / "off", "--calibrate", "off")
    assert "calibration" not in uncalibrated
    on = MaskablePPO.load(str(tmp_path / "on" / "model.zip"), device="cpu")
    off = MaskablePPO.load(str(tmp_path / "off" / "model.zip"), device="cpu")
    offsets = np.array(list(calibration["offsets"].values()))
    shift = (on.policy.action_net.bias - off.policy.action_net.bias).detach().numpy()
    np.testing.assert_allclose(shift, offsets, atol=1e-4)  # same seed, same training

    # The daemon's pickle-free policy carries the same head.
    policy, _ = load_plain(tmp_path / "on")
    head_bias = np.asarray(policy.layers[-1][1])
    np.testing.assert_allclose(head_bias, on.policy.action_net.bias.detach().numpy(), atol=1e-6)

    # Fresh episodes of the saved model on the training bars: inside the bands.
    from train.config import TrainConfig
    from train.training import env_config_for, load_data, split_bars

    config = TrainConfig(synthetic_days=6, episode_bars=120)
    bars, _ = load_data(None, 6)
    split = split_bars(bars, config.holdout_fraction, config.episode_bars)
    env_config = env_config_for(config)
    template = TradingEnv(split.train, env_config)
    on_dir = tmp_path / "on"
    model, vecnorm = load_policy(on_dir / "model.zip", on_dir / "vecnormalize.pkl", template)
    check = calibrate(model, vecnorm, split.train, env_config, rounds=0, seed=4242)
    assert 5 <= check.before["buy_flat"] <= 10, check.before
    assert 5 <= check.before["sell_flat"] <= 10, check.before
    assert 40 <= check.before["pm_in_position"] <= 60, check.before


def test_resume_takes_the_calibration_out_and_refuses_other_data(tmp_path: Path) -> None:
    """A resumed bundle continues from the policy it learned, not from its calibrated
    head; a bundle is not resumed on other bars or another contract."""
    from sb3_contrib import MaskablePPO

    _train(tmp_path / "on")
    _train(tmp_path / "off", "--calibrate", "off")
    # No steps left to train: the resumed model is the learned one, offsets removed.
    _train(tmp_path / "resumed", "--resume", str(tmp_path / "on"), "--calibrate", "off")
    resumed = MaskablePPO.load(str(tmp_path / "resumed" / "model.zip"), device="cpu")
    off = MaskablePPO.load(str(tmp_path / "off" / "model.zip"), device="cpu")
    np.testing.assert_allclose(
        resumed.policy.action_net.bias.detach().numpy(),
        off.policy.action_net.bias.detach().numpy(),
        atol=1e-5,
    )
    for flags, expected in (
        (("--synthetic-days", "7"), "resume with the bundle's data"),
        (("--instrument", "ES"), "resume with --instrument NQ"),
    ):
        args = ["train", "--out", str(tmp_path / "x"), "--resume", str(tmp_path / "on")]
        args += ["--timesteps", "2048", "--episode-bars", "120", "--no-progress"]
        args += ["--synthetic-days", "6", *flags]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output  # flags the bundle contradicts
        assert result.stderr.startswith("error: --resume: "), result.output
        assert expected in result.output and "Traceback" not in result.output


def test_validation_never_decides_on_bars_the_model_trained_on() -> None:
    """Bars given to validate that overlap the training span are cut to the held-out
    span (with a warning); bars wholly inside it are refused."""
    import warnings

    from train.training import data_card, load_data, split_bars
    from train.validation import holdout_for_card

    bars, sha = load_data(None, 6)
    split = split_bars(bars, 0.2, 120)
    card = {"data": data_card(split, sha)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = holdout_for_card(card, bars)
    assert kept.time[WARMUP_BARS - 1] == bars.time[split.split]
    assert len(kept) == len(bars) - split.split + WARMUP_BARS - 1
    assert any("trained on" in str(w.message) for w in caught)
    later = bars[split.split - (WARMUP_BARS - 1) :]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # already held out: as given, no warning
        assert len(holdout_for_card(card, later)) == len(later)
    with pytest.raises(ValueError, match="trained on them"):
        holdout_for_card(card, bars[: split.split])


def test_calibration_fraction_keeps_the_tail_of_the_training_span_out_of_learning() -> None:
    """The learned part ends where the calibration's decisions start; the calibration
    part ends where the held-out span starts; a fraction that leaves either part shorter
    than an episode is refused by name."""
    from env.bars import TooFewBarsError
    from train.training import calibration_split, load_data, split_bars

    bars, _ = load_data(None, 6)
    split = split_bars(bars, 0.2, 120)
    learn, calibration = calibration_split(split, 0.25, 120)
    learn_end = len(learn)
    decisions = split.split - (WARMUP_BARS - 1)
    assert abs((split.split - learn_end) - 0.25 * decisions) <= 1
    assert calibration.time[WARMUP_BARS - 1] == bars.time[learn_end]  # first decision bar
    assert calibration.time[-1] == bars.time[split.split - 1]  # last training bar
    assert learn.time[-1] < calibration.time[WARMUP_BARS - 1]
    whole = calibration_split(split, 0.0, 120)
    assert [len(part) for part in whole] == [split.split, split.split]
    assert all(part.time[-1] == bars.time[split.split - 1] for part in whole)
    with pytest.raises(TooFewBarsError, match=r"calibration_fraction 0\.99"):
        calibration_split(split, 0.99, 120)


def test_train_calibrates_on_the_kept_bars_and_records_them(tmp_path: Path) -> None:
    card = _train(tmp_path / "kept", "--calibration-fraction", "0.3")
    data = card["data"]
    assert data["learn_bars"] < data["train_bars"]
    assert data["calibration_start"] < data["holdout_start"]
    assert card["train_config"]["calibration_fraction"] == 0.3
    blocks = card["calibration"]["blocks"]
    assert blocks[0]["first"] >= data["calibration_start"]
    assert blocks[-1]["last"] < data["holdout_start"]
    # Without a calibration nothing is kept back.
    uncalibrated = _train(tmp_path / "off", "--calibration-fraction", "0.3", "--calibrate", "off")
    assert "learn_bars" not in uncalibrated["data"]
    for bad in ("1", "-0.1"):
        args = ["train", "--out", str(tmp_path / "x"), "--calibration-fraction", bad]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and "--calibration-fraction" in result.output, result.output
