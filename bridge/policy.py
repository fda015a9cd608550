"""Load a trained policy, check it fits this daemon, and run it fast.

A policy comes from a bundle (``model.zip`` + ``vecnormalize.pkl`` + ``model.json``) or
from the guide's two files (``--model NQ_o1_fixed.zip --vecnorm
phase2_position_mgmt_final_vecnorm_fixed.pkl``), trained here or elsewhere, with
sb3-contrib ``MaskablePPO`` or plain SB3 ``PPO`` (the mask is then applied to its logits).

A bundle that carries ``policy.npz`` and ``normalizer.npz`` (:mod:`bridge.plain`) is
served from those, with nothing unpickled; the pickles are only read for a bundle without
them and for the guide's two files.

Serving path, per decision:

1. :class:`ObsNormalizer` is ``VecNormalize.normalize_obs`` with the saved statistics:
   ``clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)`` in float64, cast to
   float32, exactly as SB3 computes it.
2. The actor (features extractor, ``mlp_extractor.policy_net``, ``action_net``) runs on
   numpy copies of the weights (:class:`NumpyActor`, a few microseconds), or through torch
   under ``no_grad`` for architectures the copy does not cover (:class:`TorchActor`).
3. The action is the best valid logit and the probabilities are the masked softmax: what
   ``MaskablePPO.predict(obs, action_masks=mask, deterministic=True)`` returns (sb3-contrib
   gives masked actions the logit -1e8, so their probability is 0).

At load the fast path is compared with SB3's own ``predict`` on random observations and
replaced by the torch path if they disagree, so an unexpected architecture can be slow
but never wrong.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import structlog

from bridge.config import DEFAULT_BUNDLE, ConfigError, ModelSource
from bridge.plain import PLAIN_POLICY, PlainFormatError, has_plain, load_plain
from bridge.protocol import period_seconds
from env.config import (
    ACTION_NAMES,
    COMPATIBLE_FEATURE_VERSIONS,
    FEATURE_VERSION,
    N_ACTIONS,
    POSITION_FEATURE_COUNT,
    TOTAL_MARKET_FEATURES,
    TOTAL_OBSERVATION_SIZE,
)
from env.mask import FLAT_MASK, IN_POSITION_MASK
from env.periods import BarPeriod
from env.trading_env import EnvConfig

log = structlog.get_logger()

CARD_FORMAT = "ai-trading-bridge/model-card-v1"
LEGACY_OBSERVATION_SIZE = TOTAL_MARKET_FEATURES + 5  # 225: before the 3 validity flags
DEFAULT_BAR_PERIOD = {"type": "minute", "value": 1}
_SUM = np.add.reduce  # the ufunc itself: no Python wrapper per call
TIE_TOLERANCE = 1e-6  # relative logit gap under which two actions count as tied
SMOKE_OBSERVATIONS = 64  # random observations on which the fast path must match SB3
_INFERENCE_OBJECTS = {  # schedules are not needed to predict; skip unpickling them
    "learning_rate": 0.0,
    "lr_schedule": lambda _: 0.0,
    "clip_range": lambda _: 0.0,
    "clip_range_vf": None,
}


class PolicyLoadError(Exception):
    """A model the daemon cannot serve; the message tells the trader what to do."""


class Actor(Protocol):
    """Normalised observation (228 float32) to the six action logits (float32)."""

    def __call__(self, obs: np.ndarray) -> np.ndarray: ...


class ObsNormalizer:
    """``VecNormalize.normalize_obs`` with frozen statistics (float64 maths, float32 out).

    Args:
        mean: ``obs_rms.mean``.
        std: ``sqrt(obs_rms.var + epsilon)``, as SB3 computes it on every call.
        clip_obs: Normalised values are clipped to ``[-clip_obs, clip_obs]``.
        enabled: ``norm_obs`` of the VecNormalize (False: observations pass unchanged).
    """

    def __init__(
        self, mean: np.ndarray, std: np.ndarray, clip_obs: float, enabled: bool = True
    ) -> None:
        self.mean = mean
        self.std = std
        self.clip_obs = clip_obs
        self.enabled = enabled
        self._scratch = np.empty(
            np.broadcast_shapes(mean.shape, std.shape), np.result_type(mean, std, np.float32)
        )

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return obs.astype(np.float32, copy=True)
        # np.clip((obs - mean) / std, -clip, clip), in place: same operations, same bits.
        scratch = self._scratch
        np.subtract(obs, self.mean, out=scratch)
        np.divide(scratch, self.std, out=scratch)
        np.maximum(scratch, -self.clip_obs, out=scratch)
        np.minimum(scratch, self.clip_obs, out=scratch)
        return scratch.astype(np.float32)

    def checked(self, obs: np.ndarray) -> np.ndarray | None:
        """``self(obs)``, or None when ``obs`` holds a NaN or an infinity.

        The check is the float64 sum of the standardised values before clipping (finite
        exactly when every value is: |obs| < 3.4e38 and std >= 1e-4 keep the sum far from
        overflow), so it costs one reduction instead of a pass over ``obs`` of its own.
        """
        if not self.enabled:
            if not math.isfinite(_SUM(obs, dtype=np.float64)):
                return None
            return obs.astype(np.float32, copy=True)
        scratch = self._scratch
        np.subtract(obs, self.mean, out=scratch)
        np.divide(scratch, self.std, out=scratch)
        if not math.isfinite(_SUM(scratch, dtype=np.float64)):
            return None
        np.maximum(scratch, -self.clip_obs, out=scratch)
        np.minimum(scratch, self.clip_obs, out=scratch)
        return scratch.astype(np.float32)


class NumpyActor:
    """The policy's actor network on numpy copies of its weights (float32)."""

    _ACTIVATIONS: dict[str, Callable[..., np.ndarray]] = {
        "Tanh": np.tanh,
        "ReLU": lambda x, out: np.maximum(x, np.float32(0.0), out=out),
    }

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray, Callable | None]]) -> None:
        self.layers = layers
        # (out, in) C-contiguous copies: one matrix-vector product per layer (BLAS gemv),
        # faster on one observation than a (1, in) @ (in, out) matmul. After the first
        # layer the bias is a last weight column and each layer writes its output into
        # a buffer that ends in a constant 1: one gemv computes W x + b, one numpy call
        # fewer per layer (numpy calls cost most on a bar that follows a pause).
        first_weight, first_bias, _ = layers[0]
        self._first = (np.ascontiguousarray(first_weight.T), first_bias)
        # One step per later layer: (the previous layer's activation, the view of this
        # layer's input buffer it writes into, the buffer, this layer's [W; b].T).
        self._steps: list[tuple[Callable | None, np.ndarray, np.ndarray, np.ndarray]] = []
        for (weight, bias, _), (_, _, previous) in zip(layers[1:], layers[:-1]):
            buffer = np.ones(weight.shape[0] + 1, np.float32)
            augmented = np.ascontiguousarray(np.vstack([weight, bias[None, :]]).T)
            self._steps.append((previous, buffer[:-1], buffer, augmented))
        self._last_activation = layers[-1][2]

    @classmethod
    def from_policy(cls, policy: Any) -> NumpyActor | None:
        """Copy an SB3 actor-critic MLP policy; None if its architecture is not covered."""
        from stable_baselines3.common.torch_layers import FlattenExtractor
        from torch import nn

        extractor = getattr(policy, "pi_features_extractor", None)
        if type(extractor) is not FlattenExtractor or type(policy.action_net) is not nn.Linear:
            return None
        modules = [*policy.mlp_extractor.policy_net, policy.action_net]
        layers: list[tuple[np.ndarray, np.ndarray, Callable | None]] = []
        for module in modules:
            if type(module) is nn.Linear:
                weight = module.weight.detach().cpu().numpy().astype(np.float32).T.copy()
                bias = module.bias.detach().cpu().numpy().astype(np.float32).copy()
                layers.append((weight, bias, None))
            elif type(module).__name__ in cls._ACTIVATIONS and layers and layers[-1][2] is None:
                weight, bias, _ = layers[-1]
                layers[-1] = (weight, bias, cls._ACTIVATIONS[type(module).__name__])
            else:
                return None
        return cls(layers)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Logits (shape (n_actions,), float32, a new array) of a normalised observation.
        One caller at a time: the hidden layers share buffers."""
        weight_t, bias = self._first
        x = np.dot(weight_t, obs)
        np.add(x, bias, out=x)
        for activation, hidden, buffer, augmented_t in self._steps:
            if activation is None:
                hidden[...] = x
            else:
                activation(x, out=hidden)
            x = np.dot(augmented_t, buffer)
        if self._last_activation is not None:
            self._last_activation(x, out=x)
        return x


class TorchActor:
    """The policy's own modules under ``torch.no_grad`` (any architecture)."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        import torch

        policy = self.policy
        with torch.no_grad():
            tensor = torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1)
            features = policy.pi_features_extractor(tensor)
            latent = policy.mlp_extractor.forward_actor(features)
            return policy.action_net(latent)[0].numpy()


def masked_decision(logits: np.ndarray, mask: Sequence[int]) -> tuple[int, list[float]]:
    """Deterministic masked choice: ``(action, probabilities)``.

    The action is the first valid action with the highest logit, which is what
    ``MaskablePPO.predict(..., deterministic=True)`` returns (the argmax of the masked
    softmax), except that SB3 takes the argmax of float32 probabilities, so two logits
    within float32 rounding of each other may be told apart differently. Probabilities
    are the masked softmax in float64 (0 for masked actions).

    Raises:
        ValueError: a valid action's logit is NaN or infinite (no probabilities exist).
    """
    values = logits.tolist()
    best = -math.inf
    action = 0
    for i, (value, valid) in enumerate(zip(values, mask)):
        if valid and value > best:
            best, action = value, i
    exps = [math.exp(v - best) if valid else 0.0 for v, valid in zip(values, mask)]
    total = math.fsum(exps)
    if not math.isfinite(total):  # a NaN or infinite logit among the valid actions
        raise ValueError(f"the policy gave non-finite logits {values}")
    return action, [e / total for e in exps]


def card_bar_period(card: dict[str, Any]) -> dict[str, Any]:
    """A model card's ``bar_period`` (``{"type": "minute", "value": 1}``); 1-minute bars
    for a card without one (every model before bar periods were recorded)."""
    period = card.get("bar_period")
    if isinstance(period, dict) and period.get("type") and period.get("value"):
        return {"type": str(period["type"]).lower(), "value": int(period["value"])}
    return dict(DEFAULT_BAR_PERIOD)


@dataclass(frozen=True)
class LoadedPolicy:
    """A checked policy, ready to serve.

    Attributes:
        version: Card version, or ``<zip name>@<sha256[:12]>`` for the two-file form.
        sha256: Of the model zip.
        algorithm: ``"MaskablePPO"`` or ``"PPO"``.
        env_config: Instrument and execution settings the model was trained with.
        card: The model card (empty for the two-file form).
        model: The SB3 model itself (reference predictions, checks); None when served
            from the plain files.
    """

    version: str
    sha256: str
    source: ModelSource
    algorithm: str
    env_config: EnvConfig
    card: dict[str, Any]
    normalizer: ObsNormalizer
    actor: Actor
    model: Any = field(repr=False)

    def decide(self, obs_normalized: np.ndarray, mask: Sequence[int]) -> tuple[int, list[float]]:
        """Masked deterministic action and probabilities for a normalised observation."""
        return masked_decision(self.actor(obs_normalized), mask)

    def reference_action(self, obs_normalized: np.ndarray, mask: np.ndarray) -> int:
        """What SB3 itself predicts (slow; for checks and benchmarks).

        ``mask`` must be a writable array (torch warns about read-only ones).
        """
        if self.algorithm == "MaskablePPO":
            action, _ = self.model.predict(obs_normalized, action_masks=mask, deterministic=True)
            return int(action)
        import torch

        with torch.no_grad():
            obs_tensor, _ = self.model.policy.obs_to_tensor(obs_normalized)
            distribution = self.model.policy.get_distribution(obs_tensor)
            logits = distribution.distribution.logits[0].numpy()
        return masked_decision(logits, mask.tolist())[0]

    @property
    def bar_period(self) -> dict[str, Any]:
        """The card's ``bar_period`` (``{"type": "minute", "value": 1}``); 1-minute bars
        for a card without one (every model before bar periods were recorded). A new dict
        on each call (callers may keep or change it)."""
        return dict(self._bar_period)

    @cached_property
    def _bar_period(self) -> dict[str, Any]:
        return card_bar_period(self.card)

    @cached_property
    def period_seconds(self) -> int:
        """Seconds between the model's bars; 0 for tick, volume and range bars. Computed
        once: the daemon checks every bar's spacing against it."""
        return period_seconds(self._bar_period)

    @cached_property
    def feature_terms(self) -> tuple[float, bool]:
        """``(tick_size, intraday)`` the daemon's per-stream features run with, those the
        model was trained with (``EnvConfig.feature_terms`` of the card's env on the card's
        bar period): the contract tick of the card's ``env.instrument`` (else its top-level
        ``tick_size``) as the ATR floor, and time features only on intraday bars. A card
        that records no tick (models from before the floor) gets 0: ``1e-6 x close`` only.
        """
        period = BarPeriod.from_json(self.bar_period)
        tick_size, intraday = replace(self.env_config, bar_period=period).feature_terms()
        env = self.card.get("env")
        if not (isinstance(env, dict) and isinstance(env.get("instrument"), dict)):
            tick = self.card.get("tick_size")
            tick_size = float(tick) if isinstance(tick, (int, float)) and tick > 0 else 0.0
        return tick_size, intraday

    def info(self) -> dict[str, Any]:
        """The ``model`` object of the hello reply (PROTOCOL v1.1 fields included)."""
        instrument = self.env_config.instrument
        return {
            "version": self.version,
            "sha256": self.sha256,
            "obs_size": TOTAL_OBSERVATION_SIZE,
            "features": FEATURE_VERSION,
            "instrument": str(self.card.get("instrument") or instrument.symbol),
            "bar_period": self.bar_period,
            "trained_tick_size": float(self.card.get("tick_size") or instrument.tick_size),
        }


def load_policy(source: ModelSource) -> LoadedPolicy:
    """Load, check and smoke-test a policy.

    Raises:
        PolicyLoadError: the files are missing or unreadable, the observation is not 228
            values, the actions are not Discrete(6), the card's feature version differs,
            or the smoke prediction fails; the message says what to do.
    """
    try:
        files = source.resolved()
    except ConfigError as exc:
        raise PolicyLoadError(str(exc)) from None
    if files.bundle is not None and files.bundle.is_dir() and has_plain(files.bundle):
        return smoke_test(_load_plain_policy(source, files))
    _require_files(files)
    card = read_card(files.card_path) if files.card_path is not None else {}
    env_config = _env_config(card, files)
    normalizer = load_normalizer(files.vecnorm_path)
    model, algorithm = load_model(files.model_path)
    check_spaces(model, normalizer, files)
    sha256 = file_sha256(files.model_path)
    version = str(card.get("version") or f"{files.model_path.name}@{sha256[:12]}")
    actor = NumpyActor.from_policy(model.policy)
    policy = LoadedPolicy(
        version=version,
        sha256=sha256,
        source=source,
        algorithm=algorithm,
        env_config=env_config,
        card=card,
        normalizer=normalizer,
        actor=actor if actor is not None else TorchActor(model.policy),
        model=model,
    )
    return smoke_test(policy)


def _load_plain_policy(source: ModelSource, files: ModelSource) -> LoadedPolicy:
    """A bundle served from ``policy.npz`` + ``normalizer.npz``: nothing is unpickled."""
    assert files.bundle is not None
    card = read_card(files.bundle / "model.json")
    try:
        actor, normalizer = load_plain(files.bundle)
    except PlainFormatError as exc:
        raise PolicyLoadError(str(exc)) from None
    hashed = files.model_path if files.model_path.is_file() else files.bundle / PLAIN_POLICY
    sha256 = file_sha256(hashed)
    return LoadedPolicy(
        version=str(card.get("version") or f"{files.bundle.name}@{sha256[:12]}"),
        sha256=sha256,
        source=source,
        algorithm=str(card.get("algorithm") or "MaskablePPO"),
        env_config=_env_config(card, files),
        card=card,
        normalizer=normalizer,
        actor=actor,
        model=None,
    )


def smoke_test(policy: LoadedPolicy) -> LoadedPolicy:
    """Predict on random observations, flat and in a position; compare the fast path with
    SB3's own predict and fall back to the torch path if they disagree.

    Raises:
        PolicyLoadError: the model cannot predict or predicts a masked action.
    """
    rng = np.random.default_rng(0)
    observations = rng.normal(0.0, 1.0, (SMOKE_OBSERVATIONS, TOTAL_OBSERVATION_SIZE))
    try:
        mismatches = 0
        for i, raw in enumerate(observations.astype(np.float32)):
            mask = FLAT_MASK if i % 2 == 0 else IN_POSITION_MASK
            obs = policy.normalizer(raw)
            action, probs = policy.decide(obs, mask.tolist())
            if not (mask[action] and all(math.isfinite(p) for p in probs)):
                raise PolicyLoadError(
                    f"smoke prediction of {policy.source.describe()} gave action {action} "
                    f"under mask {mask.tolist()} (probabilities {probs}); "
                    "the model is not usable"
                )
            if policy.model is not None and not agrees_with_reference(policy, obs, mask.copy()):
                mismatches += 1
    except PolicyLoadError:
        raise
    except Exception as exc:
        raise PolicyLoadError(
            f"smoke prediction of {policy.source.describe()} failed: {exc!r}; "
            "check the model was saved by stable-baselines3 / sb3-contrib"
        ) from exc
    if mismatches and isinstance(policy.actor, NumpyActor):
        log.warning(
            "fast_path_mismatch",
            model_version=policy.version,
            mismatches=mismatches,
            detail="numpy copy disagrees with SB3 predict; serving through torch instead",
        )
        return smoke_test(_with_actor(policy, TorchActor(policy.model.policy)))
    return policy


def agrees_with_reference(
    policy: LoadedPolicy, obs_normalized: np.ndarray, mask: np.ndarray
) -> bool:
    """Whether the served action equals SB3's own, or ties with it: the two actions'
    logits are within float32 rounding (SB3 compares float32 probabilities)."""
    logits = policy.actor(obs_normalized)
    action, _ = masked_decision(logits, mask.tolist())  # type: ignore[arg-type]
    reference = policy.reference_action(obs_normalized, mask)
    if action == reference:
        return True
    gap = abs(float(logits[action]) - float(logits[reference]))
    return gap <= TIE_TOLERANCE * max(1.0, float(np.abs(logits).max()))


def _with_actor(policy: LoadedPolicy, actor: Actor) -> LoadedPolicy:
    from dataclasses import replace

    return replace(policy, actor=actor)


def _require_files(source: ModelSource) -> None:
    if source.bundle is not None and not source.bundle.is_dir():
        if source.bundle == DEFAULT_BUNDLE:
            raise PolicyLoadError(
                f"the bundled demo model is not installed ({DEFAULT_BUNDLE} is missing); "
                "serve your own with --bundle DIR or --model ZIP --vecnorm PKL"
            )
        raise PolicyLoadError(
            f"model bundle folder {source.bundle} does not exist; --bundle takes a folder "
            "holding model.zip, vecnormalize.pkl and model.json"
        )
    for path, what in (
        (source.model_path, "model"),
        (source.vecnorm_path, "VecNormalize statistics"),
    ):
        if not path.is_file():
            raise PolicyLoadError(f"{what} file {path} not found ({source.describe()})")


def read_card(path: Path) -> dict[str, Any]:
    """The model card, checked for format, observation size and feature version.

    A bundle without ``model.json`` is served with default settings (a warning is logged).
    """
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        log.warning("model_card_missing", path=str(path), detail="using default env settings")
        return {}
    except (OSError, ValueError) as exc:
        raise PolicyLoadError(f"model card {path} is not readable JSON: {exc}") from None
    if not isinstance(card, dict):
        raise PolicyLoadError(f"model card {path} must be a JSON object")
    card_format = card.get("format")
    if card_format is not None and card_format != CARD_FORMAT:
        raise PolicyLoadError(
            f"model card {path} has format {card_format!r}; this daemon reads {CARD_FORMAT!r}"
        )
    observation = card.get("observation") or {}
    if not isinstance(observation, dict):
        raise PolicyLoadError(f"model card {path}: 'observation' must be an object")
    size = observation.get("size")
    if size is not None and size != TOTAL_OBSERVATION_SIZE:
        raise PolicyLoadError(_observation_size_message(size, f"model card {path}"))
    features = observation.get("feature_version")
    if features is not None and features not in (FEATURE_VERSION, *COMPATIBLE_FEATURE_VERSIONS):
        raise PolicyLoadError(
            f"model card {path} says the model was trained on features {features!r}, but this "
            f"daemon computes {FEATURE_VERSION!r}; serve it with the ai-trading-bridge version "
            "it was trained with, or retrain it"
        )
    return card


def _env_config(card: dict[str, Any], source: ModelSource) -> EnvConfig:
    env = card.get("env")
    if env is None:
        return EnvConfig()
    try:
        return EnvConfig.from_dict(env)
    except (TypeError, ValueError) as exc:
        raise PolicyLoadError(
            f"model card of {source.describe()}: bad 'env' settings: {exc}"
        ) from None


def load_normalizer(path: Path) -> ObsNormalizer:
    """The observation statistics of a pickled SB3 ``VecNormalize``.

    The pickle is a local file the trader chose (never anything from the network).
    """
    try:
        with open(path, "rb") as f:
            vecnorm = pickle.load(f)
    except Exception as exc:
        raise PolicyLoadError(
            f"cannot read VecNormalize statistics {path}: {exc!r}; pass the .pkl written by "
            "env.save(...) after training (e.g. phase2_position_mgmt_final_vecnorm_fixed.pkl)"
        ) from None
    # Its own attributes only: an unpickled VecNormalize has no venv, and its
    # __getattr__ would recurse looking for a missing one there.
    state = getattr(vecnorm, "__dict__", {})
    epsilon = float(state.get("epsilon", 1e-8))
    clip_obs = float(state.get("clip_obs", 10.0))
    if "norm_obs" in state and not state["norm_obs"]:  # saved with norm_obs=False
        size = TOTAL_OBSERVATION_SIZE
        return ObsNormalizer(np.zeros(size), np.ones(size), clip_obs, enabled=False)
    obs_rms = state.get("obs_rms")
    mean = getattr(obs_rms, "mean", None)
    var = getattr(obs_rms, "var", None)
    if not isinstance(mean, np.ndarray) or not isinstance(var, np.ndarray):
        raise PolicyLoadError(
            f"{path} is not a VecNormalize save of a Box observation (no obs_rms mean/var)"
        )
    if mean.shape != (TOTAL_OBSERVATION_SIZE,):
        raise PolicyLoadError(
            _observation_size_message(mean.shape[0] if mean.ndim == 1 else mean.shape, str(path))
        )
    std = np.sqrt(var + epsilon)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
        raise PolicyLoadError(f"{path} holds non-finite or zero statistics; retrain or re-save it")
    return ObsNormalizer(mean, std, clip_obs, enabled=bool(state.get("norm_obs", True)))


def warm_imports() -> None:
    """Import torch and SB3 now: a later reload of the guide's two files would otherwise
    import them on the reload thread, and a module's first import holds the interpreter
    for up to a second, stalling the requests being served meanwhile."""
    import sb3_contrib  # noqa: F401
    import stable_baselines3  # noqa: F401
    import torch._dynamo  # noqa: F401  (torch imports it when SB3 builds a model's optimizer)


def load_model(path: Path) -> tuple[Any, str]:
    """An SB3 zip as ``(model, algorithm)``: MaskablePPO when its policy is maskable."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise PolicyLoadError(
            f"{path} is not a stable-baselines3 model zip ({exc}); pass the file written by "
            "model.save(...), e.g. NQ_o1_fixed.zip"
        ) from None
    policy_module = str((data.get("policy_class") or {}).get("__module__", ""))
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import PPO

    algorithm_class = MaskablePPO if "maskable" in policy_module else PPO
    try:
        model = algorithm_class.load(path, device="cpu", custom_objects=_INFERENCE_OBJECTS)
    except Exception as exc:
        raise PolicyLoadError(
            f"cannot load {path} as {algorithm_class.__name__}: {exc!r}; only MaskablePPO "
            "(sb3-contrib) and PPO (stable-baselines3) actor-critic models are served"
        ) from None
    return model, algorithm_class.__name__


def check_spaces(model: Any, normalizer: ObsNormalizer, source: ModelSource) -> None:
    """Observation Box(228,) and Discrete(6) actions, or a PolicyLoadError."""
    from gymnasium import spaces

    shape = getattr(model.observation_space, "shape", None)
    if shape != (TOTAL_OBSERVATION_SIZE,):
        size = shape[0] if shape and len(shape) == 1 else shape
        raise PolicyLoadError(_observation_size_message(size, f"model {source.model_path}"))
    action_space = model.action_space
    if not isinstance(action_space, spaces.Discrete) or action_space.n != N_ACTIONS:
        raise PolicyLoadError(
            f"model {source.model_path} has action space {action_space}; this daemon needs "
            f"Discrete({N_ACTIONS}): {', '.join(ACTION_NAMES)}"
        )


def _observation_size_message(size: Any, what: str) -> str:
    if size == LEGACY_OBSERVATION_SIZE:
        return (
            f"{what} takes {LEGACY_OBSERVATION_SIZE} observations: it predates the guide's "
            f"{POSITION_FEATURE_COUNT} position features (can_enter, can_manage, has_position "
            f"were added, {TOTAL_MARKET_FEATURES} market + {POSITION_FEATURE_COUNT} = "
            f"{TOTAL_OBSERVATION_SIZE}) and must be retrained with the {TOTAL_OBSERVATION_SIZE}-"
            "value observation; old VecNormalize statistics cannot be reused either (guide, "
            "Troubleshooting: 'Observation shape mismatch')"
        )
    return (
        f"{what} takes {size} observations, but this daemon builds {TOTAL_OBSERVATION_SIZE} "
        f"({TOTAL_MARKET_FEATURES} market + {POSITION_FEATURE_COUNT} position features); "
        "serve a model trained on the 228-value observation"
    )


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
