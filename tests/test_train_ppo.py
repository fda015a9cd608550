"""The lean PPO path trains the same model as sb3-contrib's MaskablePPO."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from env.synthetic import generate_bars
from env.trading_env import EnvConfig
from train.config import TrainConfig
from train.ppo import LeanMaskablePPO, masked_entropy, masked_log_probs
from train.shaping import DualAscent, make_callback
from train.training import EnvFactory, configure_torch, make_vec_env


def _reference_vec_env(config: TrainConfig, bars, env_config: EnvConfig):  # type: ignore[no-untyped-def]
    """The set-up before the lean path: fresh envs in SB3's own DummyVecEnv."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = DummyVecEnv(
        [EnvFactory(bars, env_config, config.seed + i) for i in range(config.n_envs)]
    )
    venv.seed(config.seed)
    return VecNormalize(venv, norm_obs=True, norm_reward=False, clip_obs=10.0, clip_reward=10.0)


def _train(cls, venv, config: TrainConfig, updates: int):  # type: ignore[no-untyped-def]
    model = cls(
        "MlpPolicy",
        venv,
        learning_rate=config.learning_rate,
        n_steps=config.n_steps_per_env,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        seed=config.seed,
        device="cpu",
        policy_kwargs={"optimizer_kwargs": {"fused": True}},
    )
    dual = DualAscent()
    model.learn(config.n_steps * updates, callback=make_callback(dual))
    return model, dual


def test_lean_ppo_parameters_equal_maskableppo_after_three_updates() -> None:
    """Same seed, same data, the `constrained` preset: the lean update, collection and
    vec env give the parameters, normalisation statistics, sampled actions and
    multipliers of plain MaskablePPO + DummyVecEnv to float rounding."""
    from sb3_contrib import MaskablePPO

    configure_torch(1)
    bars = generate_bars(n_days=3, seed=5)
    config = TrainConfig(n_steps=512, n_envs=4, n_epochs=3, episode_bars=60, seed=2)
    env_config = EnvConfig(reward="constrained", episode_bars=60)
    reference, ref_dual = _train(
        MaskablePPO, _reference_vec_env(config, bars, env_config), config, 3
    )
    lean, lean_dual = _train(LeanMaskablePPO, make_vec_env(config, bars, env_config), config, 3)

    assert lean._n_updates == reference._n_updates == 9
    for (name, a), b in zip(
        reference.policy.state_dict().items(), lean.policy.state_dict().values()
    ):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=0, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(lean.rollout_buffer.actions, reference.rollout_buffer.actions)
    ref_norm, lean_norm = reference.get_vec_normalize_env(), lean.get_vec_normalize_env()
    np.testing.assert_allclose(lean_norm.obs_rms.mean, ref_norm.obs_rms.mean, rtol=1e-6)
    np.testing.assert_allclose(lean_norm.obs_rms.var, ref_norm.obs_rms.var, rtol=1e-6)
    assert lean_dual.terms() == pytest.approx(ref_dual.terms(), abs=1e-9)
    logged = lean.logger.name_to_value
    assert logged["train/value_loss"] == pytest.approx(
        reference.logger.name_to_value["train/value_loss"], rel=1e-4
    )


def test_masked_distribution_matches_sb3_contrib_values_and_gradients() -> None:
    from sb3_contrib.common.maskable.distributions import MaskableCategorical

    generator = torch.Generator().manual_seed(0)
    raw = torch.randn(256, 6, generator=generator) * 3
    masks = torch.rand(256, 6, generator=generator) > 0.4
    masks[:, 0] = True
    actions = torch.stack([torch.multinomial(m.float(), 1)[0] for m in masks])

    def losses(lean: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = raw.clone().requires_grad_(True)
        if lean:
            log_probs = masked_log_probs(logits, masks)
            log_prob = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
            entropy = masked_entropy(log_probs)
        else:
            dist = MaskableCategorical(logits=logits, masks=masks)
            log_prob, entropy = dist.log_prob(actions), dist.entropy()
        (log_prob.sum() + 0.3 * entropy.sum()).backward()
        assert logits.grad is not None
        return log_prob.detach(), entropy.detach(), logits.grad

    for lean_value, sb3_value in zip(losses(True), losses(False)):
        torch.testing.assert_close(lean_value, sb3_value, rtol=1e-5, atol=1e-6)


def test_lean_ppo_falls_back_to_maskableppo_for_other_policies() -> None:
    configure_torch(1)
    bars = generate_bars(n_days=3, seed=5)
    config = TrainConfig(n_steps=128, n_envs=2, n_epochs=1, episode_bars=60)
    venv = make_vec_env(config, bars, EnvConfig(episode_bars=60))
    kwargs = {"n_steps": 64, "batch_size": 64, "n_epochs": 1, "device": "cpu"}
    shared = LeanMaskablePPO(
        "MlpPolicy", venv, policy_kwargs={"share_features_extractor": False}, **kwargs
    )
    plain = LeanMaskablePPO("MlpPolicy", venv, **kwargs)
    assert shared._lean() is None and plain._lean() is not None
    shared.learn(128)  # MaskablePPO's own code path runs
    assert shared._n_updates == 1 and shared._mlp is None
