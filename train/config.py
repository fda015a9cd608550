"""Training configuration: one frozen dataclass, defaults in one place.

The defaults are the retraining guide's section 6 hyperparameters and its 5M timesteps.
A config file (JSON or TOML, a flat table of these field names) and command-line flags
override them, in that order; unknown keys are rejected with their names.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from env.instruments import INSTRUMENTS
from env.reward import REWARD_PRESETS

VEC_KINDS = ("dummy", "subproc")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides its data.

    Attributes:
        timesteps: Environment steps to train for (the guide: 5M minimum).
        learning_rate, n_steps, batch_size, n_epochs, gamma, gae_lambda, clip_range,
            ent_coef: The guide's MaskablePPO hyperparameters. ``n_steps`` keeps the
            guide's meaning, *transitions per policy update*; with several envs each one
            collects ``n_steps // n_envs`` of them (SB3's per-env ``n_steps``).
        n_envs: Environments stepped together (batched inference while collecting).
        vec: ``dummy`` (one process; the env is cheap) or ``subproc`` (one per env).
        holdout_fraction: Trailing share of the bars held out of training.
        seed: Seeds the policy, the envs and the episode starts.
        device: ``auto``, ``cpu`` or ``cuda`` for the policy network.
        reward: Reward preset (``env.reward``); ``constrained`` (the default) adjusts
            its shaping terms online from the guide's action-share bands
            (``train.shaping``), ``seed`` is the guide's table unchanged.
        dual_lr: Dual-ascent step of the ``constrained`` preset's multipliers (R per
            decision per unit of band violation, per rollout).
        instrument: Contract root symbol.
        episode_bars: Decisions per episode.
        checkpoint_every: Steps between checkpoints (model + VecNormalize); 0 = none.
        eval_every: Steps between held-out evaluations; 0 = none.
        eval_episodes: Held-out episodes per evaluation.
        torch_threads: Threads for torch; 0 leaves torch's default.
        name: Model name, the first part of the bundle's version string.
        synthetic_days: Sessions of synthetic bars when no data file is given (the
            embedded default series is 60 days; more days, less memorisation).
    """

    timesteps: int = 5_000_000
    learning_rate: float = 3e-4
    n_steps: int = 2048
    batch_size: int = 64
    n_epochs: int = 10
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    n_envs: int = 8
    vec: str = "dummy"
    holdout_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    reward: str = "constrained"
    dual_lr: float = 0.05
    instrument: str = "NQ"
    episode_bars: int = 390
    checkpoint_every: int = 250_000
    eval_every: int = 100_000
    eval_episodes: int = 50
    torch_threads: int = 1
    name: str = "NQ"
    synthetic_days: int = 60

    def __post_init__(self) -> None:
        positive = (
            "timesteps",
            "n_steps",
            "batch_size",
            "n_epochs",
            "n_envs",
            "episode_bars",
            "synthetic_days",
        )
        for key in positive:
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)!r}")
        if self.n_steps % self.n_envs:
            raise ValueError(
                f"n_steps ({self.n_steps}) must be a multiple of n_envs ({self.n_envs}): "
                "it is the number of transitions per update, split evenly across the envs"
            )
        if (self.n_steps // self.n_envs) < 2:
            raise ValueError("n_steps // n_envs must be >= 2")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction!r}")
        for key in ("learning_rate", "clip_range"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)!r}")
        for key in ("gamma", "gae_lambda"):
            if not 0.0 < getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must be in (0, 1], got {getattr(self, key)!r}")
        if self.ent_coef < 0:
            raise ValueError(f"ent_coef must be >= 0, got {self.ent_coef!r}")
        if not self.dual_lr >= 0:
            raise ValueError(f"dual_lr must be >= 0, got {self.dual_lr!r}")
        for key in ("checkpoint_every", "eval_every", "eval_episodes", "torch_threads"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)!r}")
        _choice("vec", self.vec, VEC_KINDS)
        _choice("device", self.device, DEVICES)
        _choice("reward", self.reward, tuple(REWARD_PRESETS))
        _choice("instrument", self.instrument, tuple(INSTRUMENTS))
        if not self.name or any(c in self.name for c in "/\\ "):
            raise ValueError(f"name must be non-empty without spaces or slashes, got {self.name!r}")

    @property
    def n_steps_per_env(self) -> int:
        """SB3's ``n_steps``: transitions each env collects per update."""
        return self.n_steps // self.n_envs

    def hyperparameters(self) -> dict[str, Any]:
        """The algorithm's hyperparameters as recorded in the model card."""
        return {
            "learning_rate": self.learning_rate,
            "n_steps": self.n_steps,
            "n_steps_per_env": self.n_steps_per_env,
            "n_envs": self.n_envs,
            "batch_size": self.batch_size,
            "n_epochs": self.n_epochs,
            "gamma": self.gamma,
            "gae_lambda": self.gae_lambda,
            "clip_range": self.clip_range,
            "ent_coef": self.ent_coef,
            "vecnormalize": {
                "norm_obs": True,
                "norm_reward": False,
                "clip_obs": 10.0,
                "clip_reward": 10.0,
            },
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
        """``base`` (or the defaults) with ``values`` replaced; unknown keys rejected."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; known: {sorted(known)}")
        defaults = cls()
        for key, value in values.items():
            expected = type(getattr(defaults, key))
            ok = isinstance(value, expected) and not isinstance(value, bool)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                values = {**values, key: float(value)}
                ok = True
            if not ok:
                raise ValueError(
                    f"training config key {key!r} must be {expected.__name__}, got {value!r}"
                )
        return dataclasses.replace(base or cls(), **values)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON (``.json``) or TOML (anything else) config file into a flat dict.

    Raises:
        ValueError: naming the file, when it cannot be parsed or is not a flat table.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read training config: {exc}") from None
    if not isinstance(data, dict) or any(isinstance(v, dict | list) for v in data.values()):
        raise ValueError(f"{path}: a training config is a flat table of key = value")
    return data


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {list(allowed)}, got {value!r}")
