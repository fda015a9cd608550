"""The guide's bands as constraints: dual ascent moves each multiplier the right way, the
env pays the terms, and a tiny `train` run records them in the card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ai_trading_bridge import cli
from env.config import Action
from env.synthetic import generate_bars
from env.trading_env import EnvConfig, TradingEnv
from train.shaping import BANDS, DualAscent, rollout_shares


def _shares(hold: float, buy: float, sell: float, pm: float) -> dict[str, np.ndarray]:
    return {
        "flat": np.array([hold, buy, sell, 0.0, 0.0, 0.0]),
        "in_position": np.array([100.0 - pm, 0.0, 0.0, pm, 0.0, 0.0]),
    }


def test_dual_ascent_pushes_each_term_towards_its_band() -> None:
    dual = DualAscent(lr=0.1)
    for _ in range(5):  # too few HOLDs, far too many BUYs, too few SELLs, PM fidgeting
        dual.update(_shares(hold=50.0, buy=48.0, sell=2.0, pm=95.0))
    terms = dual.terms()
    assert terms["hold_bonus"] > 0  # HOLD paid more
    assert terms["buy_cost"] > 0  # BUY charged
    assert terms["sell_cost"] < 0  # SELL encouraged
    assert terms["management_cost"] > 0  # PM charged
    # Too little management: the cost turns into a bonus.
    for _ in range(40):
        dual.update(_shares(hold=85.0, buy=7.5, sell=7.5, pm=5.0))
    assert dual.terms()["management_cost"] < 0
    # Inside every band the multipliers decay towards 0.
    before = {k: abs(v) for k, v in dual.terms().items()}
    dual.update(_shares(hold=85.0, buy=7.5, sell=7.5, pm=50.0))
    assert all(abs(v) <= before[k] for k, v in dual.terms().items())
    assert dual.updates == 46 and len(dual.to_card()["history"]) <= 51


def test_rollout_shares_split_flat_and_in_position_by_mask() -> None:
    flat, pos = [1, 1, 1, 0, 0, 0], [1] * 6
    actions = np.array([0, 0, 1, 2, 3, 0])
    masks = np.array([flat, flat, flat, flat, pos, pos])
    shares = rollout_shares(actions, masks)
    assert shares["flat"].tolist() == [50.0, 25.0, 25.0, 0.0, 0.0, 0.0]
    assert shares["in_position"][Action.MOVE_TO_BE] == 50.0


@pytest.mark.parametrize(("reward", "paid"), [("constrained", True), ("default", False)])
def test_env_pays_the_shaping_terms_only_in_the_constrained_preset(reward: str, paid: bool) -> None:
    bars = generate_bars(n_days=1, seed=3)
    plain = TradingEnv(bars, EnvConfig(reward=reward, episode_bars=50))
    shaped = TradingEnv(bars, EnvConfig(reward=reward, episode_bars=50))
    shaped.set_shaping({"hold_bonus": 0.3, "buy_cost": 0.2})
    for env in (plain, shaped):
        env.reset(options={"start": 100})
    _, r_plain, *_ = plain.step(Action.HOLD)
    _, r_shaped, *_ = shaped.step(Action.HOLD)
    assert r_shaped - r_plain == pytest.approx(0.3 if paid else 0.0)
    _, r_plain, *_ = plain.step(Action.BUY)
    _, r_shaped, *_ = shaped.step(Action.BUY)
    assert r_shaped - r_plain == pytest.approx(-0.2 if paid else 0.0)
    assert shaped.clone().shaping == shaped.shaping
    with pytest.raises(ValueError, match="unknown shaping terms"):
        shaped.set_shaping({"entry_bonus": 1.0})


def test_train_default_is_constrained_and_the_card_holds_the_multipliers(tmp_path: Path) -> None:
    """Each term's first step goes the way the first rollout's shares say (a share below
    its band raises a bonus / lowers a cost), and the card records every update."""
    out = tmp_path / "b"
    args = [
        "train",
        "--out",
        str(out),
        "--timesteps",
        "1536",
        "--n-steps",
        "256",
        "--n-envs",
        "2",
        "--episode-bars",
        "100",
        "--eval-every",
        "0",
        "--checkpoint-every",
        "0",
        "--validate-episodes",
        "0",
        "--no-progress",
        "--synthetic-days",
        "3",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "model.json").read_text())
    assert card["env"]["reward"] == "constrained"
    shaping = card["shaping"]
    assert shaping["updates"] == 6 and len(shaping["history"]) == 6
    assert shaping["measure"] == "deterministic"
    first = shaping["history"][0]
    for name, (_, _, low, high, sign) in BANDS.items():
        share, term = first["shares_pct"][name], first["terms"][name]
        if share < low + 1:
            assert sign * term > 0, (name, share, term)
        elif share > high - 1:
            assert sign * term < 0, (name, share, term)
        else:
            assert term == 0, (name, share, term)
    assert shaping["bands_pct"]["management_cost"] == [40.0, 60.0]
    assert shaping["final_terms"] == shaping["history"][-1]["terms"]


def test_proportional_gain_answers_the_current_violation_only() -> None:
    plain, pi = DualAscent(lr=0.05), DualAscent(lr=0.05, kp=1.0)
    for dual in (plain, pi):
        dual.update(_shares(hold=60.0, buy=20.0, sell=20.0, pm=50.0))
    # 21 points below HOLD's tightened band: the P term adds 0.21 R at once.
    assert pi.terms()["hold_bonus"] - plain.terms()["hold_bonus"] == pytest.approx(0.21)
    for dual in (plain, pi):
        dual.update(_shares(hold=85.0, buy=7.5, sell=7.5, pm=50.0))
    assert pi.terms() == pytest.approx(plain.terms())  # inside every band: no P term
    assert pi.to_card()["dual_kp"] == 1.0


def _train_args(out: Path, timesteps: int, *extra: str) -> list[str]:
    return [
        "train",
        "--out",
        str(out),
        "--timesteps",
        str(timesteps),
        "--n-steps",
        "256",
        "--n-envs",
        "2",
        "--episode-bars",
        "100",
        "--eval-every",
        "0",
        "--validate-episodes",
        "0",
        "--no-progress",
        "--synthetic-days",
        "3",
        *extra,
    ]


def test_resume_continues_the_multipliers_of_the_checkpoint_and_of_a_bundle(
    tmp_path: Path,
) -> None:
    """Checkpoints store the multipliers; `--resume` (a checkpoint or a bundle) starts from
    them, not from 0, and the card counts every update of the whole run."""
    from structlog.testing import capture_logs

    first = tmp_path / "first"
    result = CliRunner().invoke(cli, _train_args(first, 1024, "--checkpoint-every", "512"))
    assert result.exit_code == 0, result.output
    stored = json.loads((first / "checkpoints" / "model_shaping_512_steps.json").read_text())
    # Saved on the step that completes the 2nd rollout, before its update: one update.
    assert stored["updates"] == 1 and len(stored["history"]) == 1
    at_checkpoint = DualAscent()
    at_checkpoint.restore(stored)
    assert any(at_checkpoint.terms().values()), "the multipliers moved in the first update"

    resumed = tmp_path / "resumed"
    checkpoint = first / "checkpoints" / "model_512_steps.zip"
    with capture_logs() as logs:
        args = _train_args(resumed, 1024, "--checkpoint-every", "0", "--resume", str(checkpoint))
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    restored = [e for e in logs if e["event"] == "shaping_restored"]
    assert restored and restored[0]["terms"] == at_checkpoint.terms()
    shaping = json.loads((resumed / "model.json").read_text())["shaping"]
    assert shaping["updates"] == 3 and shaping["history"][:1] == [
        {
            "timesteps": h["timesteps"],
            "shares_pct": {k: round(v, 2) for k, v in h["shares_pct"].items()},
            "terms": {k: round(v, 5) for k, v in h["terms"].items()},
        }
        for h in stored["history"]
    ]

    # A bundle's card holds the final multipliers: resuming it continues from them too.
    final = shaping["multipliers"]
    with capture_logs() as logs:
        args = _train_args(
            tmp_path / "again", 1536, "--checkpoint-every", "0", "--resume", str(resumed)
        )
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    restored = [e for e in logs if e["event"] == "shaping_restored"]
    assert restored and restored[0]["updates"] == 3
    at_bundle = DualAscent()
    at_bundle.restore({**final, "updates": 3})
    assert restored[0]["terms"] == at_bundle.terms()
    assert at_bundle.terms() == pytest.approx(shaping["final_terms"], abs=1e-5)
