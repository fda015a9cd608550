"""Helpers for the train tests: small hand-made bundles for deploy tests."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from train import bundle as bundle_io


def make_fake_bundle(
    folder: Path,
    version: str,
    passed: bool | None = True,
    feature_version: str | None = None,
    size: int | None = None,
    trading: dict | None = None,
    bar_period: dict | None = None,
) -> Path:
    """A bundle whose model files are placeholder bytes (deploy never unpickles them);
    ``passed=None`` leaves the card without a validation; ``trading`` is the validation
    summary's held-out backtest of the model."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / bundle_io.MODEL_FILE).write_bytes(f"model {version}".encode() * 100)
    (folder / bundle_io.VECNORM_FILE).write_bytes(f"vecnorm {version}".encode() * 10)
    card = bundle_io.build_card(
        version=version,
        created=datetime(2025, 11, 7, tzinfo=timezone.utc),
        env_config={},
        hyperparameters={},
        data={},
        commit=None,
        command="test",
        timesteps=0,
        duration_s=0.0,
        seed=0,
        files=bundle_io.file_hashes(folder),
        validation=None
        if passed is None
        else {"passed": passed, **({} if trading is None else {"trading": trading})},
    )
    if feature_version is not None:
        card["observation"]["feature_version"] = feature_version
    if size is not None:
        card["observation"]["size"] = size
    if bar_period is not None:
        card["bar_period"] = bar_period
    (folder / bundle_io.CARD_FILE).write_text(json.dumps(card), encoding="utf-8")
    return folder


# Raw-observation indices the rule policy reads (last bar of the window; position flags).
_SLOPE = 19 * 11 + 6  # ema20_slope5_atr
_BODY = 19 * 11 + 2  # body_atr
_HAS_POSITION = 227
_SCALE = 0.1  # keeps both tanh layers near-linear


def make_rule_bundle(src: Path, folder: Path, entry_share: float = 0.18) -> Path:
    """Copy bundle ``src`` and overwrite its policy network with a hand-set rule: when
    flat, BUY / SELL when the EMA20 slope is in its top / bottom ``entry_share`` of the
    series, else HOLD; in a position, MOVE_TO_BE after an up bar, else HOLD. Its action
    shares land inside every criterion band, so ``validate`` must pass it."""
    import shutil

    import numpy as np
    import torch
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from env.trading_env import TradingEnv

    shutil.copytree(src, folder)
    env = TradingEnv()
    slope = env.market_features[:, 6]
    high, low = np.quantile(slope, 1 - entry_share), np.quantile(slope, entry_share)
    vecnorm = VecNormalize.load(str(folder / bundle_io.VECNORM_FILE), DummyVecEnv([lambda: env]))
    mean, std = vecnorm.obs_rms.mean, np.sqrt(vecnorm.obs_rms.var + vecnorm.epsilon)

    def squash(x: float) -> float:  # what the two tanh layers do to a raw value
        return float(np.tanh(np.tanh(_SCALE * x)))

    model = MaskablePPO.load(str(folder / bundle_io.MODEL_FILE), device="cpu")
    net, head = model.policy.mlp_extractor.policy_net, model.policy.action_net
    big = 1000.0
    with torch.no_grad():
        for layer in (net[0], net[2], head):
            layer.weight.zero_()
            layer.bias.zero_()
        for unit, index in enumerate((_SLOPE, _BODY, _HAS_POSITION)):
            # raw = normalised * std + mean, so the unit sees _SCALE * raw.
            net[0].weight[unit, index] = _SCALE * std[index]
            net[0].bias[unit] = _SCALE * mean[index]
            net[2].weight[unit, unit] = 1.0
        in_position = 1.0 / squash(1.0)
        head.weight[1, 0], head.bias[1] = big, -big * squash(high)  # BUY
        head.weight[2, 0], head.bias[2] = -big, big * squash(low)  # SELL
        head.weight[1, 2] = head.weight[2, 2] = -big * in_position  # never enter in position
        head.weight[3, 1] = big  # MOVE_TO_BE after an up bar
        head.bias[4] = head.bias[5] = -big
    model.save(str(folder / bundle_io.MODEL_FILE))
    card = bundle_io.read_card(folder / bundle_io.CARD_FILE)
    card["files"] = bundle_io.file_hashes(folder)
    card["validation"] = None
    bundle_io.write_card(folder, card)
    return folder
