"""The lean PPO path trains the same model as sb3-contrib's MaskablePPO."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from env.synthetic import generate_bars
from env.trading_env import EnvConfig
from train.config import TrainConfig
from train.ppo import (
    LeanMaskablePPO,
    _activation,
    _EpochStats,
    _FlatNet,
    _loss_grads,
    masked_entropy,
    masked_log_probs,
)
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


def _train(cls, venv, config: TrainConfig, updates: int, **kwargs):  # type: ignore[no-untyped-def]
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
        **kwargs,
    )
    dual = DualAscent()
    model.learn(config.n_steps * updates, callback=make_callback(dual))
    return model, dual


@pytest.mark.parametrize(("target_kl", "n_updates"), [(None, 9), (0.0001, 8)])
def test_lean_ppo_parameters_equal_maskableppo_after_three_updates(
    target_kl: float | None, n_updates: int
) -> None:
    """Same seed, same data, the `constrained` preset: the lean update, collection and
    vec env give the parameters, Adam state, normalisation statistics, sampled actions,
    multipliers and logged losses of plain MaskablePPO + DummyVecEnv to float rounding
    (measured: parameters within 6e-8 after 72 Adam steps), also when ``target_kl``
    stops epochs early."""
    from sb3_contrib import MaskablePPO

    configure_torch(1)
    bars = generate_bars(n_days=3, seed=5)
    config = TrainConfig(n_steps=512, n_envs=4, n_epochs=3, episode_bars=60, seed=2)
    env_config = EnvConfig(reward="constrained", episode_bars=60)
    reference, ref_dual = _train(
        MaskablePPO, _reference_vec_env(config, bars, env_config), config, 3, target_kl=target_kl
    )
    lean, lean_dual = _train(
        LeanMaskablePPO, make_vec_env(config, bars, env_config), config, 3, target_kl=target_kl
    )

    assert lean._flat is not None  # the flat update ran
    assert lean._n_updates == reference._n_updates == n_updates
    for (name, a), b in zip(
        reference.policy.state_dict().items(), lean.policy.state_dict().values()
    ):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=0, atol=1e-6, err_msg=name)
    ref_state = reference.policy.optimizer.state_dict()["state"]
    lean_state = lean.policy.optimizer.state_dict()["state"]
    assert ref_state.keys() == lean_state.keys()
    for key, state in ref_state.items():
        assert lean_state[key]["step"].item() == state["step"].item() > 0
        assert lean_state[key]["step"].dtype == state["step"].dtype
        for moment in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(lean_state[key][moment], state[moment], rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(lean.rollout_buffer.actions, reference.rollout_buffer.actions)
    ref_norm, lean_norm = reference.get_vec_normalize_env(), lean.get_vec_normalize_env()
    np.testing.assert_allclose(lean_norm.obs_rms.mean, ref_norm.obs_rms.mean, rtol=1e-6)
    np.testing.assert_allclose(lean_norm.obs_rms.var, ref_norm.obs_rms.var, rtol=1e-6)
    assert lean_dual.terms() == pytest.approx(ref_dual.terms(), abs=1e-9)
    logged, ref_logged = lean.logger.name_to_value, reference.logger.name_to_value
    for key in ("value_loss", "policy_gradient_loss", "entropy_loss", "approx_kl", "loss"):
        assert logged[f"train/{key}"] == pytest.approx(
            ref_logged[f"train/{key}"], rel=1e-4, abs=1e-9
        ), key
    assert logged["train/clip_fraction"] == pytest.approx(ref_logged["train/clip_fraction"])


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


def test_lean_ppo_update_falls_back_to_maskableppo_for_other_optimizers() -> None:
    model = _small_model(policy_kwargs={"optimizer_kwargs": {"amsgrad": True}})
    assert model._lean() is not None  # the rollout is still the lean one
    model.learn(64)
    assert model._n_updates == 1 and model._flat is None
    assert all("max_exp_avg_sq" in s for s in model.policy.optimizer.state.values())


def _small_model(cls=None, **kwargs):  # type: ignore[no-untyped-def]
    configure_torch(1)
    bars = generate_bars(n_days=3, seed=5)
    config = TrainConfig(n_steps=128, n_envs=2, n_epochs=1, episode_bars=60)
    venv = make_vec_env(config, bars, EnvConfig(episode_bars=60))
    settings = {"n_steps": 64, "batch_size": 64, "n_epochs": 1, "device": "cpu", "seed": 3}
    return (cls or LeanMaskablePPO)("MlpPolicy", venv, **{**settings, **kwargs})


@pytest.mark.parametrize(
    "policy_kwargs",
    [
        {},
        {"activation_fn": torch.nn.ReLU},
        {"net_arch": {"pi": [32], "vf": [16, 24]}},
    ],
    ids=["tanh-64x64", "relu-64x64", "tanh-uneven"],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_flat_backward_equals_autograd_of_maskableppo_loss(policy_kwargs, seed) -> None:  # type: ignore[no-untyped-def]
    """The written-out forward and backward against autograd through the policy's own
    ``evaluate_actions`` (sb3-contrib's masked distribution) and MaskablePPO's loss, on
    a random minibatch with masked actions and ratios on both sides of the clip range."""
    model = _small_model(policy_kwargs=policy_kwargs)
    policy, mlp = model.policy, model._lean()
    assert mlp is not None
    activation = _activation(mlp)
    assert activation == ("relu" if policy_kwargs.get("activation_fn") else "tanh")
    generator = torch.Generator().manual_seed(seed)
    n, clip_range, ent_coef, vf_coef = 64, 0.2, 0.05, 0.5
    obs = torch.randn(n, 228, generator=generator) * 2
    masks = torch.rand(n, 6, generator=generator) > 0.4
    masks[:, 0] = True
    actions = torch.stack([torch.multinomial(m.float(), 1, generator=generator)[0] for m in masks])
    advantages = torch.randn(n, generator=generator)
    returns = torch.randn(n, generator=generator) * 3

    for param in policy.parameters():
        param.grad = None
    values, log_prob, entropy = policy.evaluate_actions(obs, actions, action_masks=masks.numpy())
    old_log_prob = log_prob.detach() + 0.3 * torch.randn(n, generator=generator)
    ratio = torch.exp(log_prob - old_log_prob)
    policy_loss = -torch.min(
        advantages * ratio, advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    ).mean()
    value_loss = torch.nn.functional.mse_loss(returns, values.flatten())
    entropy_loss = -torch.mean(entropy)
    (policy_loss + ent_coef * entropy_loss + vf_coef * value_loss).backward()
    clipped = (torch.abs(ratio - 1) > clip_range).float().mean().item()
    assert 0.1 < clipped < 0.9  # both branches of the clipped objective carry gradient

    net = _FlatNet(mlp, activation)
    assert net.pull(policy.optimizer)
    batch = {
        "actions": actions.numpy(),
        "action_masks": masks.numpy(),
        "log_probs": old_log_prob.numpy(),
        "returns": returns.numpy(),
    }
    stats = _EpochStats(n, n)
    with torch.no_grad():
        logits, flat_values, ins_pi, ins_vf = net.forward(obs)
        d_logits, d_values = _loss_grads(
            logits.numpy(),
            flat_values.numpy(),
            batch,
            advantages.numpy(),
            clip_range,
            (ent_coef, vf_coef),
            stats,
            slice(0, n),
        )
        net.backward(obs, torch.from_numpy(d_logits), torch.from_numpy(d_values), ins_pi, ins_vf)

    logged = stats.per_minibatch(n, clip_range)
    assert logged["pg"][0] == pytest.approx(policy_loss.item(), rel=1e-5, abs=1e-7)
    assert logged["vf"][0] == pytest.approx(value_loss.item(), rel=1e-5)
    assert logged["ent"][0] == pytest.approx(entropy_loss.item(), rel=1e-5)
    assert logged["clip"][0] == pytest.approx(clipped)
    for param, grad in zip(net.params, net._segments(net.grad)):
        assert param.grad is not None
        scale = param.grad.abs().max().item()
        assert scale > 0
        np.testing.assert_allclose(grad.numpy(), param.grad.numpy(), rtol=0, atol=5e-6 * scale)


def test_saved_lean_model_reloads_and_continues_as_in_memory(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """After an update the saved zip holds the flat update's parameters and Adam state
    (moments and step count, which sets the bias correction): the next update from the
    reloaded file, by the lean path or by MaskablePPO's own, is the in-memory one's."""
    import copy

    from sb3_contrib import MaskablePPO

    model = _small_model(n_steps=128, n_epochs=2)
    model.learn(512)  # two updates of 2 x 128 transitions: 2 x 2 epochs x 4 minibatches
    flat = model._flat
    assert flat is not None
    moments = zip(flat._segments(flat.exp_avg), flat._segments(flat.exp_avg_sq))
    for param, (exp_avg, exp_avg_sq) in zip(flat.params, moments):
        state = model.policy.optimizer.state[param]
        assert state["step"].item() == 16.0
        torch.testing.assert_close(state["exp_avg"], exp_avg, rtol=0, atol=0)
        torch.testing.assert_close(state["exp_avg_sq"], exp_avg_sq, rtol=0, atol=0)
    model.save(tmp_path / "model.zip")
    venv = model.get_env()
    lean = LeanMaskablePPO.load(tmp_path / "model.zip", env=venv, device="cpu")
    plain = MaskablePPO.load(tmp_path / "model.zip", env=venv, device="cpu")
    steps = [s["step"].item() for s in plain.policy.optimizer.state.values()]
    assert steps == [16.0] * len(steps)

    for other in (lean, plain):
        other.rollout_buffer = copy.deepcopy(model.rollout_buffer)
        other._current_progress_remaining = model._current_progress_remaining
        other.set_logger(model.logger)
    after = {}
    for name, m in (("memory", model), ("lean", lean), ("plain", plain)):
        np.random.seed(7)
        m.train()
        after[name] = [p.detach().clone() for p in m.policy.parameters()]
    assert lean._flat is not None
    for a, b, c in zip(after["memory"], after["lean"], after["plain"]):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
        torch.testing.assert_close(c, a, rtol=0, atol=1e-6)
    state = lean.policy.optimizer.state_dict()["state"]
    assert all(s["step"].item() == 24.0 for s in state.values())
