"""MaskablePPO with the same update and rollout, fewer Python calls per step.

``LeanMaskablePPO`` does what sb3-contrib's ``MaskablePPO`` does for the policy ``train``
builds (``MlpPolicy``: flattened Box observations, separate ``pi`` and ``vf`` MLPs, a
masked categorical head, Adam, on CPU): the same minibatches, losses, gradient clipping
and Adam steps, so its parameters after an update equal MaskablePPO's to float rounding
(``tests/test_train_ppo.py`` trains both from one seed and compares them). What it leaves
out is the Python and autograd bookkeeping that dominate a 64x64 MLP on minibatches of 64.

The update (:func:`_update`) works on flat float32 vectors (:class:`_FlatNet`): the
parameters, their gradient and Adam's two moments, copied in from the policy and its
optimizer before each update and back after it, so the saved zip is a plain MaskablePPO
file whose Adam state continues training. Per minibatch:

- the forward pass is ``addmm`` + ``tanh_`` (both first layers in one product, they read
  the same features), without an autograd graph;
- the loss and its gradient at the logits and values (:func:`_loss_grads`) are numpy on
  the 64x6 logits: masked log-softmax (masked logits -1e8, as sb3-contrib's
  ``MaskableCategorical``; a softmax does not change under a shift of its logits, so
  sb3-contrib's normalise-mask-normalise gives the same numbers to float rounding),
  clipped surrogate, value MSE and entropy term;
- the backward pass is written out (``mm`` and autograd's own ``tanh_backward``), the
  gradient lands in the flat vector, clipping is one norm of it (``clip_grad_norm_``'s
  global norm) and Adam is one call of the fused kernel ``torch.optim.Adam`` calls, with
  the group's lr, betas, eps and weight decay and the bias correction of the step count.

The matrix products are torch's: numpy's OpenBLAS starts a thread per core and cannot be
told otherwise, ten times slower on two busy cores. The minibatches are SB3's (numpy's
global permutation per epoch, per-minibatch advantage normalisation, the ``target_kl``
stop) and the logged statistics the same, reduced once per epoch. Per update of 2048
transitions (10 epochs of 32 minibatches) on the shared 2-core machine, load ~6: 130-160
ms against 390-400 ms for the autograd update before it.

Collection (:func:`_collect`) runs the networks as ``linear``/``tanh`` calls on the
policy's own parameters and samples with the same ``torch.multinomial`` call on the same
probabilities, so the global torch generator advances identically (a numpy forward pass
is ~30 us a step faster, but its probabilities differ in the last bits, which could flip
a sampled action). :class:`LeanDummyVecEnv` returns each step's info dicts without
deep-copying them (the env builds new ones every step, so there is nothing to protect).

Measured after three updates of the default set-up (960 Adam steps): parameters within
1.5e-7 of MaskablePPO's. Any other set-up (another policy or network, value clipping, a
GPU, a non-Box observation) runs MaskablePPO's own code, another optimizer set-up
(amsgrad, several parameter groups, ...) MaskablePPO's update.
"""

from __future__ import annotations

import math
from typing import Any

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
    _flat: _FlatNet | None = None

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
        return [*super()._excluded_save_params(), "_mlp", "_flat"]

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
        if mlp is None or not _update(self, mlp):
            super().train()


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


def _buffer_arrays(buffer: MaskableRolloutBuffer) -> dict[str, np.ndarray]:
    """The buffer's arrays flattened env-major, as ``RolloutBuffer.get`` orders them."""
    if not buffer.generator_ready:
        for name in (*_FIELDS, "episode_starts", "action_masks"):
            buffer.__dict__[name] = buffer.swap_and_flatten(buffer.__dict__[name])
        buffer.generator_ready = True
    n = buffer.buffer_size * buffer.n_envs
    arrays: dict[str, np.ndarray] = {
        name: np.asarray(getattr(buffer, name), np.float32).reshape(n) for name in _FIELDS[2:]
    }
    arrays["observations"] = np.asarray(buffer.observations, np.float32).reshape(n, -1)
    arrays["actions"] = np.asarray(buffer.actions).reshape(n).astype(np.int64)
    arrays["action_masks"] = np.asarray(buffer.action_masks).reshape(n, -1).astype(bool)
    return arrays


_Layer = tuple[torch.Tensor, torch.Tensor]  # weight (out, in), bias (out,)


class _Layout:
    """Views of one flat vector as the network: the first layers of ``pi`` and ``vf``
    stacked into one (both read the same features), then each branch's other layers
    with its head last."""

    def __init__(self, flat: torch.Tensor, shapes: list[tuple[int, ...]], n_pi: int) -> None:
        views, offset = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            views.append(flat[offset : offset + size].view(shape))
            offset += size
        self.first: _Layer = (views[0], views[1])
        rest = [(views[i], views[i + 1]) for i in range(2, len(views), 2)]
        self.pi: list[_Layer] = rest[:n_pi]
        self.vf: list[_Layer] = rest[n_pi:]


class _FlatNet:
    """The policy's parameters, their gradient and Adam's two moments as flat float32
    vectors, laid out for the update: ``[pi W1; vf W1] [pi b1, vf b1]`` (one product for
    both first layers), then ``pi``'s other layers and action head, then ``vf``'s.
    :meth:`pull` copies the policy's parameters and Adam state in before an update,
    :meth:`push` copies them back after it, so between updates (collecting, saving,
    loading) torch's own objects are the model."""

    def __init__(self, mlp: _Mlp, activation: str) -> None:
        pi = [layer for layer in mlp.pi if isinstance(layer, tuple)]
        vf = [layer for layer in mlp.vf if isinstance(layer, tuple)]
        order = [pi[0][0], vf[0][0], pi[0][1], vf[0][1]]
        order += [t for layer in (*pi[1:], *vf[1:]) for t in layer]
        self.params: list[torch.Tensor] = order
        width = len(pi[0][0]) + len(vf[0][0])
        shapes: list[tuple[int, ...]] = [(width, pi[0][0].shape[1]), (width,)]
        shapes += [tuple(t.shape) for layer in (*pi[1:], *vf[1:]) for t in layer]
        size = sum(t.numel() for t in order)
        self.theta, self.grad, self.exp_avg, self.exp_avg_sq = (torch.zeros(size) for _ in range(4))
        self.step = torch.zeros(())
        self.split = len(pi[0][0])
        self.net = _Layout(self.theta, shapes, len(pi) - 1)
        self.grads = _Layout(self.grad, shapes, len(pi) - 1)
        self.tanh = activation == "tanh"
        self.offsets = np.cumsum([0, *(t.numel() for t in order)]).tolist()

    def _segments(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """``flat`` cut into the parameters' shapes, in :attr:`params` order."""
        return [
            flat[a:b].view(t.shape)
            for t, a, b in zip(self.params, self.offsets[:-1], self.offsets[1:])
        ]

    def pull(self, optimizer: torch.optim.Optimizer) -> bool:
        """Parameters and Adam state from torch; False if the steps differ per tensor."""
        with torch.no_grad():
            for param, view in zip(self.params, self._segments(self.theta)):
                view.copy_(param)
            states = [optimizer.state.get(p, {}) for p in self.params]
            if not all("exp_avg" in s for s in states):
                self.exp_avg.zero_()
                self.exp_avg_sq.zero_()
                self.step.zero_()
                return True
            steps = {float(s["step"]) for s in states}
            if len(steps) != 1:
                return False
            for name, flat in (("exp_avg", self.exp_avg), ("exp_avg_sq", self.exp_avg_sq)):
                for state, view in zip(states, self._segments(flat)):
                    view.copy_(state[name])
            self.step.fill_(steps.pop())
        return True

    def push(self, optimizer: torch.optim.Optimizer, fused: bool) -> None:
        """Parameters and Adam state back into torch, creating the state as Adam's first
        step does if there is none yet."""
        dtype = torch.float32 if fused else torch.get_default_dtype()
        with torch.no_grad():
            for param, view in zip(self.params, self._segments(self.theta)):
                param.copy_(view)
            moments = zip(self._segments(self.exp_avg), self._segments(self.exp_avg_sq))
            for param, (avg, avg_sq) in zip(self.params, moments):
                state = optimizer.state[param]
                if "exp_avg" not in state:
                    state["step"] = torch.zeros((), dtype=dtype)
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"].copy_(self.step)
                state["exp_avg"].copy_(avg)
                state["exp_avg_sq"].copy_(avg_sq)

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Logits ``(n, k)``, values ``(n, 1)`` and each branch's layer inputs."""
        act = torch.tanh_ if self.tanh else torch.relu_
        w, b = self.net.first
        h = act(torch.addmm(b, x, w.T))
        ins_pi, ins_vf = [h[:, : self.split]], [h[:, self.split :]]
        outs = []
        for layers, ins in ((self.net.pi, ins_pi), (self.net.vf, ins_vf)):
            for w, b in layers[:-1]:
                ins.append(act(torch.addmm(b, ins[-1], w.T)))
            w, b = layers[-1]
            outs.append(torch.addmm(b, ins[-1], w.T))
        return outs[0], outs[1], ins_pi, ins_vf

    def backward(
        self,
        x: torch.Tensor,
        d_logits: torch.Tensor,
        d_values: torch.Tensor,
        ins_pi: list[torch.Tensor],
        ins_vf: list[torch.Tensor],
    ) -> None:
        """Gradients of the loss into :attr:`grad` from its gradients at the outputs
        (``tanh_backward``/``threshold_backward`` are autograd's own formulas)."""
        d_first = []
        for layers, grads, ins, d in (
            (self.net.pi, self.grads.pi, ins_pi, d_logits),
            (self.net.vf, self.grads.vf, ins_vf, d_values),
        ):
            for (w, _), (g_w, g_b), h in zip(layers[::-1], grads[::-1], ins[::-1]):
                torch.mm(d.T, h, out=g_w)
                torch.sum(d, 0, out=g_b)
                d = self._act_grad(torch.mm(d, w), h)
            d_first.append(d)
        d = torch.cat(d_first, 1)
        g_w, g_b = self.grads.first
        torch.mm(d.T, x, out=g_w)
        torch.sum(d, 0, out=g_b)

    def _act_grad(self, d: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``d`` times the activation's derivative at its outputs ``y``."""
        if self.tanh:
            return torch.ops.aten.tanh_backward(d, y)
        return torch.ops.aten.threshold_backward(d, y, 0)


def _plain_adam(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> bool:
    """Adam with one group over exactly the policy's parameters and none of the options
    the flat update does not do (amsgrad, maximize, a tensor lr, ...)."""
    if type(optimizer) is not torch.optim.Adam or len(optimizer.param_groups) != 1:
        return False
    group = optimizer.param_groups[0]
    return (
        {id(p) for p in group["params"]} == {id(p) for p in params}
        and len(group["params"]) == len(params)
        and not (
            group["amsgrad"]
            or group["capturable"]
            or group["differentiable"]
            or group["maximize"]
            or group.get("decoupled_weight_decay", False)
            or torch.is_tensor(group["lr"])
        )
    )


def _activation(mlp: _Mlp) -> str | None:
    """The one activation of both branches if they are Linear/activation pairs and a
    linear head (what the flat network computes), else None."""
    names = set()
    for layers in (mlp.pi, mlp.vf):
        if len(layers) < 3 or len(layers) % 2 == 0:
            return None
        for i, layer in enumerate(layers):
            if isinstance(layer, tuple) != (i % 2 == 0):
                return None
            if i % 2:
                names.add("tanh" if layer is torch.tanh else "relu")
    return names.pop() if len(names) == 1 else None


class _EpochStats:
    """Per-sample loss terms of one epoch, reduced per minibatch for the log at its end."""

    def __init__(self, n: int, batch_size: int) -> None:
        self.min_surrogate, self.sq_error, self.plogp, self.ratio, self.log_ratio = (
            np.zeros(n, np.float32) for _ in range(5)
        )
        self.batch_size = batch_size

    def per_minibatch(self, done: int, clip_range: float) -> dict[str, np.ndarray]:
        """Each finished minibatch's policy, value and entropy losses, clip fraction and
        approximate KL (SB3's ``mean((ratio - 1) - log ratio)``) over the first ``done``
        samples."""
        starts = np.arange(0, done, self.batch_size)
        sizes = np.diff([*starts, done])

        def mean(values: np.ndarray) -> np.ndarray:
            return np.add.reduceat(values[:done].astype(np.float64), starts) / sizes

        return {
            "pg": -mean(self.min_surrogate),
            "vf": mean(self.sq_error),
            "ent": mean(self.plogp),
            "clip": mean(np.abs(self.ratio - 1) > clip_range),
            "kl": mean((self.ratio - 1) - self.log_ratio),
        }


def _loss_grads(
    logits: np.ndarray,
    values: np.ndarray,
    batch: dict[str, np.ndarray],
    advantages: np.ndarray,
    clip_range: float,
    coefs: tuple[float, float],
    stats: _EpochStats,
    rows: slice,
) -> tuple[np.ndarray, np.ndarray]:
    """The PPO loss of one minibatch, ``pg + ent_coef * entropy_loss + vf_coef * vf``,
    as MaskablePPO computes it: its per-sample terms go into ``stats[rows]``; returns
    d loss / d logits ``(n, k)`` and d loss / d values ``(n, 1)``."""
    ent_coef, vf_coef = coefs
    n = len(advantages)
    z = np.where(batch["action_masks"], logits, np.float32(HUGE_NEG))
    z -= z.max(axis=1, keepdims=True)
    exp = np.exp(z)
    total = exp.sum(axis=1, keepdims=True)
    log_probs = z - np.log(total)
    probs = exp / total
    index = np.arange(n), batch["actions"]
    log_ratio = np.subtract(log_probs[index], batch["log_probs"], out=stats.log_ratio[rows])
    ratio = np.exp(log_ratio, out=stats.ratio[rows])
    surrogate = advantages * ratio
    clipped = advantages * np.clip(ratio, 1 - clip_range, 1 + clip_range)
    np.minimum(surrogate, clipped, out=stats.min_surrogate[rows])
    error = values[:, 0] - batch["returns"]
    np.multiply(error, error, out=stats.sq_error[rows])
    plogp = probs * log_probs
    plogp.sum(axis=1, out=stats.plogp[rows])  # entropy_loss = -mean(entropy)
    # d(sum p log p)/d log p = p (1 + log p); the log-softmax's backward
    # (d/dz = g - p sum(g)) maps the p part to 0 (sum p = 1), so only p log p is kept.
    # Masked actions (p = 0) get no gradient, as through torch.where.
    g = plogp * (ent_coef / n)
    # torch.min's gradient goes to the smaller operand, half to each on a tie, and a
    # tie means the ratio is inside the clip range: both halves reach it.
    d_ratio = np.where(surrogate <= clipped, advantages, 0)
    g[index] -= d_ratio * ratio * (1.0 / n)
    g -= probs * g.sum(axis=1, keepdims=True)
    return g, (error * (2 * vf_coef / n)).reshape(n, 1)


def _update(model: LeanMaskablePPO, mlp: _Mlp) -> bool:
    """MaskablePPO.train on :class:`_FlatNet`: the same minibatches (numpy's global
    permutation per epoch), losses, gradient clipping and Adam steps, the backward pass
    written out. False (nothing done) for a set-up it does not mirror."""
    policy, optimizer = model.policy, model.policy.optimizer
    activation = _activation(mlp)
    if activation is None or model.n_epochs < 1 or not _plain_adam(optimizer, mlp.params):
        return False
    if model._flat is None or model._flat.params[0] is not mlp.pi[0][0]:
        model._flat = _FlatNet(mlp, activation)
    net = model._flat
    if not net.pull(optimizer):
        return False
    policy.set_training_mode(True)
    model._update_learning_rate(optimizer)
    group = optimizer.param_groups[0]
    clip_range = float(model.clip_range(model._current_progress_remaining))  # type: ignore[operator]
    buffer = model.rollout_buffer
    assert isinstance(buffer, MaskableRolloutBuffer)
    data = _buffer_arrays(buffer)
    n, batch_size = len(data["actions"]), int(model.batch_size or 64)
    adam = _flat_adam(net, group, float(model.max_grad_norm))
    coefs = (float(model.ent_coef), float(model.vf_coef))
    logged: dict[str, list[np.ndarray]] = {k: [] for k in ("pg", "vf", "ent", "clip")}
    epoch = _EpochStats(n, batch_size)
    with torch.no_grad():
        for _ in range(model.n_epochs):
            order = np.random.permutation(n)
            shuffled = {name: array[order] for name, array in data.items()}
            observations = torch.from_numpy(shuffled["observations"])
            advantages = _normalized(shuffled["advantages"], batch_size, model.normalize_advantage)
            done, stopped = 0, False
            for start in range(0, n, batch_size):
                rows = slice(start, start + batch_size)
                batch = {name: shuffled[name][rows] for name in _MINIBATCH_FIELDS}
                x = observations[rows]
                logits, values, ins_pi, ins_vf = net.forward(x)
                d_logits, d_values = _loss_grads(
                    logits.numpy(),
                    values.numpy(),
                    batch,
                    advantages[rows],
                    clip_range,
                    coefs,
                    epoch,
                    rows,
                )
                done = min(start + batch_size, n)
                if model.target_kl is not None:
                    kl = np.mean((epoch.ratio[rows] - 1) - epoch.log_ratio[rows])
                    if kl > 1.5 * model.target_kl:
                        stopped = True
                        break
                net.backward(
                    x, torch.from_numpy(d_logits), torch.from_numpy(d_values), ins_pi, ins_vf
                )
                adam()
            stats = epoch.per_minibatch(done, clip_range)
            for name, series in logged.items():
                series.append(stats[name])
            model._n_updates += 1
            if stopped:
                break
    net.push(optimizer, bool(group["fused"]))
    loss = stats["pg"][-1] + coefs[0] * stats["ent"][-1] + coefs[1] * stats["vf"][-1]
    _log_update(model, buffer, clip_range, float(loss), logged, stats["kl"])
    return True


_MINIBATCH_FIELDS = ("actions", "action_masks", "log_probs", "returns")


def _flat_adam(net: _FlatNet, group: dict[str, Any], max_norm: float) -> Any:
    """One optimizer step on the flat vectors: ``clip_grad_norm_`` (the global norm of
    all gradients) then the fused Adam kernel ``torch.optim.Adam`` calls, with the
    group's lr, betas, eps and weight decay and the bias correction of the shared step."""
    beta1, beta2 = (float(b) for b in group["betas"])
    lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
    grad, step_count = net.grad, net.step.numpy()

    def step() -> None:
        coef = max_norm / (math.sqrt(float(torch.dot(grad, grad))) + 1e-6)
        if coef < 1.0:
            grad.mul_(coef)
        np.add(step_count, 1, out=step_count)
        torch._fused_adam_(
            [net.theta],
            [grad],
            [net.exp_avg],
            [net.exp_avg_sq],
            [],
            [net.step],
            amsgrad=False,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            weight_decay=weight_decay,
            eps=eps,
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )

    return step


def _normalized(advantages: np.ndarray, batch_size: int, normalize: bool) -> np.ndarray:
    """Each minibatch's advantages, normalised by its own mean and (unbiased) std as SB3
    does per minibatch (not a minibatch of one); one vectorised pass per epoch."""
    if not normalize:
        return advantages
    full = len(advantages) // batch_size * batch_size
    rows = advantages[:full].reshape(-1, batch_size)
    rows = (rows - rows.mean(axis=1, keepdims=True)) / (
        rows.std(axis=1, ddof=1, keepdims=True) + np.float32(1e-8)
    )
    tail = advantages[full:]
    if len(tail) > 1:
        tail = (tail - tail.mean()) / (tail.std(ddof=1) + np.float32(1e-8))
    return np.concatenate([rows.reshape(-1), tail]).astype(np.float32)


def _log_update(
    model: LeanMaskablePPO,
    buffer: MaskableRolloutBuffer,
    clip_range: float,
    loss: float,
    logged: dict[str, list[np.ndarray]],
    last_kl: np.ndarray,
) -> None:
    """SB3's ``train/*`` records: means over all minibatches, the KL of the last epoch
    (as SB3 logs it) and the last minibatch's loss."""
    explained_var = explained_variance(buffer.values.flatten(), buffer.returns.flatten())
    record = model.logger.record
    means = {k: float(np.mean(np.concatenate(v))) for k, v in logged.items()}
    record("train/entropy_loss", means["ent"])
    record("train/policy_gradient_loss", means["pg"])
    record("train/value_loss", means["vf"])
    record("train/approx_kl", float(np.mean(last_kl)))
    record("train/clip_fraction", means["clip"])
    record("train/loss", loss)
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
