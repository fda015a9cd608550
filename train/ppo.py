"""MaskablePPO with the same update and rollout, fewer Python calls per step.

``LeanMaskablePPO`` does what sb3-contrib's ``MaskablePPO`` does for the policy ``train``
builds (``MlpPolicy``: flattened Box observations, separate ``pi`` and ``vf`` MLPs, a
masked categorical head, on CPU): the same minibatches, losses, gradient clipping and Adam
steps, so its parameters after an update equal MaskablePPO's to float rounding
(``tests/test_train_ppo.py`` trains both from one seed and compares them). What it leaves
out is the Python that dominates a 64x64 MLP on minibatches of 64:

- the rollout buffer becomes tensors once per update and each epoch's shuffle is one
  gather (SB3 copies seven numpy slices into new tensors per minibatch); the permutation
  comes from numpy's global generator exactly as SB3's buffer draws it;
- the networks run as ``linear``/``tanh`` calls on the policy's own parameters (what the
  modules' ``forward`` calls);
- the masked categorical is one ``log_softmax`` of the masked logits. sb3-contrib builds
  three ``Categorical`` objects per forward pass (normalise, mask with -1e8, normalise
  again); a softmax does not change under a shift of its logits, so the valid actions'
  numbers agree to float rounding. The entropy is ``-sum(p log p)`` without the explicit
  zeroing of masked actions: their probability is exactly 0 (exp(-1e8) underflows);
- gradient clipping is ``clip_grad_norm_``'s foreach path on a cached parameter list, and
  the fused Adam kernel is called directly (:class:`_AdamStep`);
- logged statistics (losses, clip fraction, approximate KL) are reduced once per epoch;
- collection samples with the same ``torch.multinomial`` call on the same
  probabilities, so the global torch generator advances identically;
- :class:`LeanDummyVecEnv` returns each step's info dicts without deep-copying them (the
  env builds new ones every step, so there is nothing to protect).

Measured after three updates (960 Adam steps): parameters within 1.8e-7 of MaskablePPO's.
Any other set-up (another policy or network, value clipping, a GPU, a non-Box
observation) runs MaskablePPO's own code. The saved model is a plain MaskablePPO zip.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.buffers import MaskableRolloutBuffer
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn
from stable_baselines3.common.vec_env.util import dict_to_obs
from torch.nn import functional

HUGE_NEG = -1e8  # sb3-contrib's MaskableCategorical: masked logits


class _Mlp:
    """The policy's two MLPs and heads as flat lists of (weight, bias) and activations."""

    def __init__(self, policy: MaskableActorCriticPolicy) -> None:
        self.pi = [*_layers(policy.mlp_extractor.policy_net), _linear(policy.action_net)]
        self.vf = [*_layers(policy.mlp_extractor.value_net), _linear(policy.value_net)]
        self.policy = policy
        self.params: list[torch.Tensor] = list(policy.parameters())

    @staticmethod
    def run(layers: list[Any], x: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            x = functional.linear(x, *layer) if isinstance(layer, tuple) else layer(x)
        return x


def _linear(module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    return module.weight, module.bias  # type: ignore[return-value]


def _layers(sequential: torch.nn.Module) -> list[Any]:
    out: list[Any] = []
    for module in sequential:  # type: ignore[attr-defined]
        if isinstance(module, torch.nn.Linear):
            out.append(_linear(module))
        elif isinstance(module, torch.nn.Tanh):
            out.append(torch.tanh)
        elif isinstance(module, torch.nn.ReLU):
            out.append(torch.relu)
        else:
            raise TypeError(f"unsupported layer {type(module).__name__}")
    return out


def masked_log_probs(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of sb3-contrib's ``MaskableCategorical``: masked logits set to
    -1e8, then normalised. sb3-contrib normalises before masking too; a softmax does not
    change under a shift of its logits, so the valid entries are the same numbers (to
    float rounding) and a masked one is -1e8 minus a few units either way, probability 0.
    Shapes: ``logits (n, k)`` float, ``masks (n, k)`` bool."""
    return functional.log_softmax(torch.where(masks, logits, HUGE_NEG), dim=-1)


def masked_entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """``MaskableCategorical.entropy`` from :func:`masked_log_probs`: a masked action's
    probability is exactly 0 (exp(-1e8) underflows), so its ``p log p`` term is 0 in
    value and gradient, as sb3-contrib's explicit zeroing makes it."""
    return -(log_probs * log_probs.exp()).sum(-1)


class LeanMaskablePPO(MaskablePPO):
    """``MaskablePPO`` for ``MlpPolicy`` on CPU with less per-step Python; same results."""

    _mlp: _Mlp | None = None

    def _lean(self) -> _Mlp | None:
        """The flattened network when this policy is the plain one the lean path mirrors."""
        policy = self.policy
        plain = (
            type(policy) is MaskableActorCriticPolicy
            and isinstance(self.action_space, spaces.Discrete)
            and isinstance(self.observation_space, spaces.Box)
            and not is_image_space(self.observation_space)
            and len(self.observation_space.shape) == 1
            and isinstance(policy.features_extractor, FlattenExtractor)
            and policy.share_features_extractor
            and self.clip_range_vf is None
            and self.device.type == "cpu"
            and isinstance(self.rollout_buffer, MaskableRolloutBuffer)
        )
        if not plain:
            return None
        if self._mlp is None or self._mlp.policy is not policy:
            try:
                self._mlp = _Mlp(policy)  # type: ignore[arg-type]
            except TypeError:
                return None
        return self._mlp

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_mlp"]

    # -- rollout ---------------------------------------------------------------------

    def collect_rollouts(  # type: ignore[override]
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: MaskableRolloutBuffer,
        n_rollout_steps: int,
        use_masking: bool = True,
    ) -> bool:
        mlp = self._lean()
        if mlp is None or not use_masking:
            return super().collect_rollouts(
                env, callback, rollout_buffer, n_rollout_steps, use_masking
            )
        return _collect(self, mlp, env, callback, rollout_buffer, n_rollout_steps)

    # -- update ----------------------------------------------------------------------

    def train(self) -> None:
        mlp = self._lean()
        if mlp is None:
            super().train()
            return
        _update(self, mlp)


def _collect(
    model: LeanMaskablePPO,
    mlp: _Mlp,
    env: VecEnv,
    callback: BaseCallback,
    buffer: MaskableRolloutBuffer,
    n_rollout_steps: int,
) -> bool:
    """MaskablePPO.collect_rollouts with the policy forward written out (same calls,
    same torch random draws); callbacks see the same locals they use."""
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported

    assert model._last_obs is not None, "No previous observation was provided"
    if not is_masking_supported(env):
        raise ValueError(
            "Environment does not support action masking. Consider using ActionMasker wrapper"
        )
    model.policy.set_training_mode(False)
    buffer.reset()
    callback.on_rollout_start()
    n_steps = 0
    gamma = model.gamma
    while n_steps < n_rollout_steps:
        action_masks = get_action_masks(env)
        with torch.no_grad():
            obs = torch.as_tensor(model._last_obs).float()
            log_probs_all = masked_log_probs(
                mlp.run(mlp.pi, obs), torch.as_tensor(action_masks, dtype=torch.bool)
            )
            values = mlp.run(mlp.vf, obs)
            probs = functional.softmax(log_probs_all, dim=-1)
            actions_t = torch.multinomial(probs, 1, True).T.reshape(-1)
            log_probs = log_probs_all.gather(-1, actions_t.unsqueeze(-1)).squeeze(-1)
        actions = actions_t.numpy()
        new_obs, rewards, dones, infos = env.step(actions)
        model.num_timesteps += env.num_envs
        callback.update_locals(locals())
        if not callback.on_step():
            return False
        model._update_info_buffer(infos, dones)
        n_steps += 1
        actions = actions.reshape(-1, 1)
        for idx, done in enumerate(dones):
            if (
                done
                and infos[idx].get("terminal_observation") is not None
                and infos[idx].get("TimeLimit.truncated", False)
            ):
                terminal_obs = model.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                with torch.no_grad():
                    terminal_value = model.policy.predict_values(terminal_obs)[0]
                rewards[idx] += gamma * terminal_value
        buffer.add(
            model._last_obs,  # type: ignore[arg-type]
            actions,
            rewards,
            model._last_episode_starts,  # type: ignore[arg-type]
            values,
            log_probs,
            action_masks=action_masks,
        )
        model._last_obs = new_obs  # type: ignore[assignment]
        model._last_episode_starts = dones
    with torch.no_grad():
        values = mlp.run(mlp.vf, torch.as_tensor(new_obs).float())
    buffer.compute_returns_and_advantage(last_values=values, dones=dones)
    callback.on_rollout_end()
    return True


_FIELDS = ("observations", "actions", "values", "log_probs", "advantages", "returns")


def _buffer_tensors(buffer: MaskableRolloutBuffer) -> dict[str, torch.Tensor]:
    """The buffer's arrays flattened env-major, as ``RolloutBuffer.get`` orders them."""
    if not buffer.generator_ready:
        for name in (*_FIELDS, "episode_starts", "action_masks"):
            buffer.__dict__[name] = buffer.swap_and_flatten(buffer.__dict__[name])
        buffer.generator_ready = True
    n = buffer.buffer_size * buffer.n_envs
    tensors = {name: torch.tensor(getattr(buffer, name)).reshape(n, -1) for name in _FIELDS}
    tensors["actions"] = tensors["actions"].long().flatten()
    for name in ("values", "log_probs", "advantages", "returns"):
        tensors[name] = tensors[name].flatten()
    tensors["action_masks"] = torch.tensor(buffer.action_masks).reshape(n, -1).bool()
    return tensors


def _update(model: LeanMaskablePPO, mlp: _Mlp) -> None:
    """MaskablePPO.train: the same minibatches (numpy's global permutation per epoch),
    losses, clipping and Adam steps. What needs no gradient is done per epoch in one
    batch: the per-minibatch advantage normalisation (each row of a (minibatches, 64)
    view is one minibatch) and the logged statistics."""
    policy = model.policy
    policy.set_training_mode(True)
    model._update_learning_rate(policy.optimizer)
    clip_range = model.clip_range(model._current_progress_remaining)  # type: ignore[operator]
    buffer = model.rollout_buffer
    assert isinstance(buffer, MaskableRolloutBuffer)
    data = _buffer_tensors(buffer)
    n, batch_size = len(data["actions"]), int(model.batch_size or 64)
    starts = range(0, n, batch_size)
    params = mlp.params
    adam = _AdamStep(policy.optimizer, params)
    max_norm = float(model.max_grad_norm)
    ent_coef, vf_coef = model.ent_coef, model.vf_coef
    stats: dict[str, list[torch.Tensor]] = {k: [] for k in ("pg", "vf", "ent", "clip")}
    approx_kl: list[torch.Tensor] = []
    loss = torch.zeros(())
    for _ in range(model.n_epochs):
        order = torch.from_numpy(np.random.permutation(n))
        shuffled = {name: tensor[order] for name, tensor in data.items()}
        advantages = _normalized(shuffled["advantages"], batch_size, model.normalize_advantage)
        epoch_ratios: list[tuple[torch.Tensor, torch.Tensor]] = []
        stopped = False
        for start in starts:
            stop = start + batch_size
            obs = shuffled["observations"][start:stop]
            log_probs_all = masked_log_probs(
                mlp.run(mlp.pi, obs), shuffled["action_masks"][start:stop]
            )
            actions = shuffled["actions"][start:stop]
            log_prob = log_probs_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
            values = mlp.run(mlp.vf, obs).flatten()
            log_ratio = log_prob - shuffled["log_probs"][start:stop]
            ratio = torch.exp(log_ratio)
            adv = advantages[start:stop]
            policy_loss_1 = adv * ratio
            policy_loss_2 = adv * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
            policy_loss = -torch.min(policy_loss_1, policy_loss_2).mean()
            value_loss = functional.mse_loss(shuffled["returns"][start:stop], values)
            entropy_loss = -torch.mean(masked_entropy(log_probs_all))
            loss = policy_loss + ent_coef * entropy_loss + vf_coef * value_loss
            stats["pg"].append(policy_loss.detach())
            stats["vf"].append(value_loss.detach())
            stats["ent"].append(entropy_loss.detach())
            epoch_ratios.append((ratio.detach(), log_ratio.detach()))
            if model.target_kl is not None:
                kl = _approx_kl(*epoch_ratios[-1])
                if kl.item() > 1.5 * model.target_kl:
                    stopped = True
                    break

            for param in params:  # Optimizer.zero_grad(set_to_none=True)
                param.grad = None
            loss.backward()
            _clip_grad_norm(params, max_norm)
            adam.step()
        approx_kl = [_approx_kl(r, lr) for r, lr in epoch_ratios]
        stats["clip"] += [(torch.abs(r - 1) > clip_range).float().mean() for r, _ in epoch_ratios]
        model._n_updates += 1
        if stopped:
            break
    _log_update(model, buffer, clip_range, loss, stats, approx_kl)


def _normalized(advantages: torch.Tensor, batch_size: int, normalize: bool) -> torch.Tensor:
    """Each minibatch's advantages, normalised by its own mean and (unbiased) std as SB3
    does per minibatch; one vectorised pass over all full minibatches of the epoch."""
    if not normalize:
        return advantages
    full = len(advantages) // batch_size * batch_size
    rows = advantages[:full].reshape(-1, batch_size)
    rows = (rows - rows.mean(dim=1, keepdim=True)) / (rows.std(dim=1, keepdim=True) + 1e-8)
    tail = advantages[full:]
    if len(tail):
        tail = (tail - tail.mean()) / (tail.std() + 1e-8)
    return torch.cat([rows.reshape(-1), tail])


def _approx_kl(ratio: torch.Tensor, log_ratio: torch.Tensor) -> torch.Tensor:
    """SB3's approximate reverse KL (Schulman's k3 estimator), for logging/early stop."""
    return torch.mean((ratio - 1) - log_ratio)


class _AdamStep:
    """``torch.optim.Adam(fused=True).step()`` for one parameter group on CPU: the same
    ``_foreach_add_`` of the step counts and ``_fused_adam_`` kernel call that Adam makes,
    without its per-call Python (grouping, state look-ups, profiler hooks). Any other
    optimizer set-up, or a first step (state not created yet), goes through ``step()``."""

    def __init__(self, optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> None:
        self.optimizer, self.params = optimizer, params
        self.kernel: dict[str, Any] | None = None
        self._prepare()

    def _prepare(self) -> None:
        optimizer = self.optimizer
        if type(optimizer) is not torch.optim.Adam or len(optimizer.param_groups) != 1:
            return
        group = optimizer.param_groups[0]
        plain = group["fused"] and not (
            group["amsgrad"]
            or group["capturable"]
            or group["differentiable"]
            or group["maximize"]
            or group.get("decoupled_weight_decay", False)
        )
        state = optimizer.state
        if (
            not plain
            or len(group["params"]) != len(self.params)
            or any(a is not b for a, b in zip(group["params"], self.params))
            or getattr(optimizer, "grad_scale", None) is not None
            or getattr(optimizer, "found_inf", None) is not None
            or any(p not in state or "exp_avg" not in state[p] for p in self.params)
        ):
            return
        beta1, beta2 = group["betas"]
        self.kernel = {
            "exp_avgs": [state[p]["exp_avg"] for p in self.params],
            "exp_avg_sqs": [state[p]["exp_avg_sq"] for p in self.params],
            "steps": [state[p]["step"] for p in self.params],
            "lr": group["lr"],
            "beta1": float(beta1),
            "beta2": float(beta2),
            "weight_decay": group["weight_decay"],
            "eps": group["eps"],
        }

    def step(self) -> None:
        k = self.kernel
        if k is None or any(p.grad is None for p in self.params):
            self.optimizer.step()
            if k is None:
                self._prepare()
            return
        grads = cast(list[torch.Tensor], [p.grad for p in self.params])
        with torch.no_grad():
            torch._foreach_add_(k["steps"], 1)
            torch._fused_adam_(
                self.params,
                grads,
                k["exp_avgs"],
                k["exp_avg_sqs"],
                [],
                k["steps"],
                amsgrad=False,
                lr=k["lr"],
                beta1=k["beta1"],
                beta2=k["beta2"],
                weight_decay=k["weight_decay"],
                eps=k["eps"],
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )


def _clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_``'s foreach path (one device, one dtype)."""
    with torch.no_grad():
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        norms = torch._foreach_norm(grads, 2.0)
        total = torch.linalg.vector_norm(torch.stack(norms), 2.0)
        torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))


def _mean(values: list[torch.Tensor]) -> float:
    return float(np.mean([v.item() for v in values])) if values else float("nan")


def _log_update(
    model: LeanMaskablePPO,
    buffer: MaskableRolloutBuffer,
    clip_range: float,
    loss: torch.Tensor,
    stats: dict[str, list[torch.Tensor]],
    approx_kl: list[torch.Tensor],
) -> None:
    """SB3's ``train/*`` records (the KL of the last epoch, as SB3 logs it)."""
    explained_var = explained_variance(buffer.values.flatten(), buffer.returns.flatten())
    record = model.logger.record
    record("train/entropy_loss", _mean(stats["ent"]))
    record("train/policy_gradient_loss", _mean(stats["pg"]))
    record("train/value_loss", _mean(stats["vf"]))
    record("train/approx_kl", _mean(approx_kl))
    record("train/clip_fraction", _mean(stats["clip"]))
    record("train/loss", loss.item())
    record("train/explained_variance", explained_var)
    record("train/n_updates", model._n_updates, exclude="tensorboard")
    record("train/clip_range", clip_range)


class LeanDummyVecEnv(DummyVecEnv):
    """``DummyVecEnv`` without the deep copy of the step's info dicts. Only for envs that
    return a new info dict from every ``step`` and ``reset`` (``TradingEnv`` does): the
    copy protects nothing then and costs more than the env's step."""

    def step_wait(self) -> VecEnvStepReturn:
        for i, env in enumerate(self.envs):
            obs, self.buf_rews[i], terminated, truncated, info = env.step(self.actions[i])
            self.buf_dones[i] = terminated or truncated
            info["TimeLimit.truncated"] = truncated and not terminated
            if self.buf_dones[i]:
                info["terminal_observation"] = obs
                obs, self.reset_infos[i] = env.reset()
            self.buf_infos[i] = info
            self._save_obs(i, obs)
        return (
            self._obs_from_buf(),
            np.copy(self.buf_rews),
            np.copy(self.buf_dones),
            list(self.buf_infos),
        )

    def _obs_from_buf(self) -> Any:
        return dict_to_obs(self.observation_space, {k: v.copy() for k, v in self.buf_obs.items()})
