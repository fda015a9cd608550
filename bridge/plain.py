"""A bundle's policy in a plain format: served without unpickling anything.

SB3's ``model.zip`` and ``vecnormalize.pkl`` are loaded with pickle (and ``torch.load``),
which runs code from the file. A bundle can also carry:

- ``policy.npz``: the actor's layers (``w0``, ``b0``, ``w1``, ...; float32, weights stored
  input-major) and ``activations`` (one of ``Tanh``, ``ReLU`` or ``""`` per layer).
- ``normalizer.npz``: ``mean``, ``var`` (float64), ``epsilon``, ``clip_obs``, ``norm_obs``.

Both are read with ``numpy.load(allow_pickle=False)``. :func:`export_plain` writes them
from a trained model and its VecNormalize and checks, on random observations, that they
give exactly SB3's ``normalize_obs`` (bit for bit) and the action of SB3's ``predict``
(or one whose logit ties with it within float32 rounding). The daemon serves a bundle from
these files when they are present; the guide's two-file form (``--model`` +
``--vecnorm``) still loads the pickles, because the trader named those files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from env.config import N_ACTIONS, TOTAL_OBSERVATION_SIZE

PLAIN_POLICY = "policy.npz"
PLAIN_NORMALIZER = "normalizer.npz"
CHECK_OBSERVATIONS = 256
_ACTIVATIONS = ("Tanh", "ReLU", "")


class PlainFormatError(ValueError):
    """Plain files that cannot be written or read; the message says which and why."""


def export_plain(model: Any, vecnorm: Any, folder: str | Path) -> tuple[Path, Path]:
    """Write ``policy.npz`` and ``normalizer.npz`` for ``model`` (an SB3 PPO or
    MaskablePPO with an MLP policy) and ``vecnorm`` (its VecNormalize) into ``folder``,
    then check them against SB3.

    Raises:
        PlainFormatError: the policy's architecture has no plain form, or the written files
            do not reproduce SB3's normalisation and actions (nothing is left behind).
    """
    from bridge.policy import NumpyActor

    folder = Path(folder)
    actor = NumpyActor.from_policy(model.policy)
    if actor is None:
        raise PlainFormatError(
            "the policy is not a plain MLP (flatten extractor, Linear/Tanh/ReLU layers); "
            "it can only be served from model.zip"
        )
    arrays: dict[str, np.ndarray] = {}
    names = []
    for i, (weight, bias, activation) in enumerate(actor.layers):
        arrays[f"w{i}"], arrays[f"b{i}"] = weight, bias
        names.append(_activation_name(activation))
    arrays["activations"] = np.array(names)
    state = vars(vecnorm)  # not getattr: an unpickled VecNormalize's __getattr__ recurses
    rms = state.get("obs_rms")  # absent when saved with norm_obs=False
    size = TOTAL_OBSERVATION_SIZE
    normalizer = {
        "mean": np.asarray(rms.mean if rms is not None else np.zeros(size), dtype=np.float64),
        "var": np.asarray(rms.var if rms is not None else np.ones(size), dtype=np.float64),
        "epsilon": np.float64(state.get("epsilon", 1e-8)),
        "clip_obs": np.float64(state.get("clip_obs", 10.0)),
        "norm_obs": np.bool_(state.get("norm_obs", True)),
    }
    policy_path, normalizer_path = folder / PLAIN_POLICY, folder / PLAIN_NORMALIZER
    _save(policy_path, arrays)
    _save(normalizer_path, normalizer)
    try:
        check_plain(folder, model, vecnorm)
    except Exception:
        for path in (policy_path, normalizer_path):
            path.unlink(missing_ok=True)
        raise
    return policy_path, normalizer_path


def _activation_name(activation: Any) -> str:
    from bridge.policy import NumpyActor

    for name, function in NumpyActor._ACTIVATIONS.items():
        if activation is function:
            return name
    return ""


def _save(path: Path, arrays: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as f:
        np.savez(f, **arrays)
    os.replace(temporary, path)


def has_plain(folder: Path) -> bool:
    """Whether a bundle folder carries both plain files."""
    return (folder / PLAIN_POLICY).is_file() and (folder / PLAIN_NORMALIZER).is_file()


def load_plain(folder: Path) -> tuple[Any, Any]:
    """``(NumpyActor, ObsNormalizer)`` from a bundle's plain files, without pickle.

    Raises:
        PlainFormatError: missing keys, wrong shapes, unknown activations or non-finite
            statistics, naming the file.
    """
    from bridge.policy import NumpyActor, ObsNormalizer

    policy_path, normalizer_path = folder / PLAIN_POLICY, folder / PLAIN_NORMALIZER
    try:
        with np.load(policy_path, allow_pickle=False) as data:
            names = [str(n) for n in data["activations"]]
            layers = []
            for i, name in enumerate(names):
                if name not in _ACTIVATIONS:
                    raise PlainFormatError(f"{policy_path}: unknown activation {name!r}")
                weight = np.ascontiguousarray(data[f"w{i}"], dtype=np.float32)
                bias = np.ascontiguousarray(data[f"b{i}"], dtype=np.float32)
                layers.append((weight, bias, NumpyActor._ACTIVATIONS.get(name)))
        with np.load(normalizer_path, allow_pickle=False) as data:
            mean = np.asarray(data["mean"], dtype=np.float64)
            var = np.asarray(data["var"], dtype=np.float64)
            epsilon, clip_obs = float(data["epsilon"]), float(data["clip_obs"])
            norm_obs = bool(data["norm_obs"])
    except PlainFormatError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise PlainFormatError(f"cannot read the plain policy files in {folder}: {exc}") from None
    width = TOTAL_OBSERVATION_SIZE
    for weight, bias, _ in layers:
        if weight.ndim != 2 or weight.shape[0] != width or bias.shape != (weight.shape[1],):
            raise PlainFormatError(f"{policy_path}: layer shapes do not chain from {width} inputs")
        width = weight.shape[1]
    if not layers or width != N_ACTIONS:
        raise PlainFormatError(f"{policy_path}: the last layer must give {N_ACTIONS} logits")
    std = np.sqrt(var + epsilon)
    if mean.shape != (TOTAL_OBSERVATION_SIZE,) or std.shape != mean.shape:
        raise PlainFormatError(f"{normalizer_path}: statistics must be {TOTAL_OBSERVATION_SIZE}")
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise PlainFormatError(f"{normalizer_path} holds non-finite or zero statistics")
    return NumpyActor(layers), ObsNormalizer(mean, std, clip_obs, enabled=norm_obs)


def check_plain(folder: Path, model: Any, vecnorm: Any, seed: int = 0) -> None:
    """Compare the plain files with SB3 on random observations, flat and in a position.

    Raises:
        PlainFormatError: a normalised observation differs in any bit, or an action
            differs from SB3's ``predict`` without a float32 tie.
    """
    from bridge.policy import TIE_TOLERANCE, masked_decision
    from env.mask import FLAT_MASK, IN_POSITION_MASK

    actor, normalizer = load_plain(folder)
    rng = np.random.default_rng(seed)
    scale = rng.choice([0.1, 1.0, 5.0, 30.0], size=(CHECK_OBSERVATIONS, 1))
    raw = (rng.normal(size=(CHECK_OBSERVATIONS, TOTAL_OBSERVATION_SIZE)) * scale).astype(np.float32)
    maskable = hasattr(model, "predict") and "Maskable" in type(model).__name__
    for i, obs in enumerate(raw):
        ours = normalizer(obs)
        theirs = np.asarray(vecnorm.normalize_obs(obs.copy()), dtype=np.float32)
        if ours.tobytes() != theirs.tobytes():
            raise PlainFormatError(
                f"normalizer.npz differs from VecNormalize.normalize_obs on observation {i}"
            )
        mask = (FLAT_MASK if i % 2 == 0 else IN_POSITION_MASK).copy()
        logits = actor(ours)
        action, _ = masked_decision(logits, mask.tolist())
        if maskable:
            reference = int(model.predict(ours, action_masks=mask, deterministic=True)[0])
        else:
            import torch

            with torch.no_grad():
                tensor, _ = model.policy.obs_to_tensor(ours)
                dist = model.policy.get_distribution(tensor)
                reference = masked_decision(dist.distribution.logits[0].numpy(), mask.tolist())[0]
        if action != reference:
            gap = abs(float(logits[action]) - float(logits[reference]))
            if gap > TIE_TOLERANCE * max(1.0, float(np.abs(logits).max())):
                raise PlainFormatError(
                    f"policy.npz chooses action {action} where SB3 predicts {reference} "
                    f"on observation {i}"
                )
