"""Training configuration: one frozen dataclass, defaults in one place.

The defaults are the retraining guide's section 6 hyperparameters and its 5M timesteps.
A config file (JSON or TOML, a flat table of these field names) and command-line flags
override them, in that order; unknown keys are rejected with their names.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from env.bars import Bars
from env.contracts import ContractSpec, resolve_contract
from env.periods import BarPeriod, default_episode_bars
from env.reward import REWARD_PRESETS

VEC_KINDS = ("dummy", "subproc")
DEVICES = ("auto", "cpu", "cuda")
CALIBRATE_CHOICES = ("auto", "on", "off")


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
        dual_kp: Proportional gain of the multipliers on the current band violation
            (0: pure dual ascent; Stooke et al. 2020, PID Lagrangian).
        dual_lr: Dual-ascent step of the ``constrained`` preset's multipliers (R per
            decision per unit of band violation, per rollout).
        calibrate: Band calibration after training (``train.calibration``): ``on``,
            ``off``, or ``auto`` (on unless the reward preset is ``seed``, the guide's
            set-up unchanged).
        calibration_fraction: Trailing share of the training bars kept out of learning
            and used only to solve the band calibration (default 0.2; 0: calibrate on
            the bars the policy learned from; ignored without calibration). A policy
            that has seen its bars many times (5M steps on a few thousand daily bars)
            is surer of them than of any bar it will trade; thresholds set on unseen
            bars carry over better to the held-out ones (docs/validation.md).
        instrument: Contract root or NinjaTrader name (``"6E"``, ``"6E 03-26"``); a
            contract outside ``env.contracts``' table needs ``tick_size`` and
            ``point_value``.
        episode_bars: Decisions per episode; 0: the default for the data's bar period
            (390 one-minute bars, 78 five-minute bars, 60 hourly or daily bars).
        checkpoint_every: Steps between checkpoints (model + VecNormalize); 0 = none.
        eval_every: Steps between held-out evaluations; 0 = none.
        eval_episodes: Held-out episodes per evaluation.
        torch_threads: Threads for torch; 0 leaves torch's default.
        name: Model name, the first part of the bundle's version string.
        synthetic_days: Sessions of synthetic bars when no data file is given (the
            embedded default series is 60 days; more days, less memorisation).
        tick_size, point_value, commission, calendar: The contract's terms when they
            differ from the table's or the contract is not in it (a ``[contract]``
            section of the config file, or ``--tick-size`` etc.); None: the table's.
        data_timezone: IANA zone of the data file's naive times; None: UTC for a
            NinjaTrader export (NinjaTrader writes exports in UTC), the exchange zone
            for a CSV.
        bar_period: ``"minute:5"``-style override of the period detected from the data.
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
    dual_kp: float = 0.0
    calibrate: str = "auto"
    calibration_fraction: float = 0.2
    instrument: str = "NQ"
    episode_bars: int = 0
    checkpoint_every: int = 250_000
    eval_every: int = 100_000
    eval_episodes: int = 50
    torch_threads: int = 1
    name: str = "NQ"
    synthetic_days: int = 60
    tick_size: float | None = None
    point_value: float | None = None
    commission: float | None = None
    calendar: str | None = None
    data_timezone: str | None = None
    bar_period: str | None = None

    def __post_init__(self) -> None:
        positive = (
            "timesteps",
            "n_steps",
            "batch_size",
            "n_epochs",
            "n_envs",
            "synthetic_days",
        )
        if self.episode_bars < 0:
            raise ValueError(
                f"episode_bars must be >= 1 (0: from the bar period), got {self.episode_bars!r}"
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
        if not 0.0 <= self.calibration_fraction < 1.0:
            raise ValueError(
                f"calibration_fraction must be in [0, 1), got {self.calibration_fraction!r}"
            )
        for key in ("learning_rate", "clip_range"):
            if not 0 < getattr(self, key) < math.inf:
                raise ValueError(f"{key} must be a finite number > 0, got {getattr(self, key)!r}")
        for key in ("gamma", "gae_lambda"):
            if not 0.0 < getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must be in (0, 1], got {getattr(self, key)!r}")
        if not 0 <= self.ent_coef < math.inf:  # NaN too: it reached PPO's loss
            raise ValueError(f"ent_coef must be a finite number >= 0, got {self.ent_coef!r}")
        for key in ("dual_kp", "dual_lr"):
            if not 0 <= getattr(self, key) < math.inf:
                raise ValueError(f"{key} must be a finite number >= 0, got {getattr(self, key)!r}")
        for key in ("checkpoint_every", "eval_every", "eval_episodes", "torch_threads"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)!r}")
        _choice("vec", self.vec, VEC_KINDS)
        # Any case, as the command line's choices: a config file's "CUDA" is cuda.
        if str(self.device).lower() not in DEVICES:
            raise ValueError(f"device must be one of {list(DEVICES)}, got {self.device!r}")
        object.__setattr__(self, "device", str(self.device).lower())
        _choice("reward", self.reward, tuple(REWARD_PRESETS))
        _choice("calibrate", self.calibrate, CALIBRATE_CHOICES)
        self.contract_spec()  # an unknown contract or a bad spec fails here, by name
        self.period()
        if self.data_timezone is not None:
            object.__setattr__(self, "data_timezone", _zone("data_timezone", self.data_timezone))
        if not self.name or any(c in self.name for c in "/\\ "):
            raise ValueError(f"name must be non-empty without spaces or slashes, got {self.name!r}")

    def contract_spec(self) -> ContractSpec:
        """The traded contract: the table's terms with this config's overrides.

        Raises:
            ValueError: for an unknown contract without a spec (the message says how to
                supply one) or an invalid value.
        """
        overrides = {
            "tick_size": self.tick_size,
            "point_value": self.point_value,
            "commission_per_side": self.commission,
            "calendar": self.calendar,
        }
        return resolve_contract(self.instrument, overrides)

    def period(self) -> BarPeriod | None:
        """The ``bar_period`` override, or None (detect from the data)."""
        return None if self.bar_period is None else parse_bar_period(self.bar_period)

    def bars_options(self) -> dict[str, Any]:
        """Keyword arguments of ``env.bars.load_bars`` for this config's data."""
        return {
            "contract": self.contract_spec(),
            "data_timezone": self.data_timezone,
            "bar_period": self.period(),
        }

    def for_bars(self, bars: Bars) -> TrainConfig:
        """This config with ``episode_bars`` 0 replaced by the default for the bars'
        period."""
        if self.episode_bars:
            return self
        return dataclasses.replace(self, episode_bars=default_episode_bars(bars.bar_period))

    @property
    def calibrates(self) -> bool:
        """Whether ``train`` calibrates the decision thresholds after learning."""
        if self.calibrate == "auto":
            return self.reward != "seed"
        return self.calibrate == "on"

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
            if key in _OPTIONAL_TYPES and value is None:
                continue
            expected = _OPTIONAL_TYPES.get(key) or type(getattr(defaults, key))
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

    A ``contract`` section (TOML ``[contract]``, JSON ``"contract": {...}``) may give
    ``symbol``, ``tick_size``, ``point_value``, ``commission`` and ``calendar``; they
    become ``instrument``, ``tick_size`` etc.

    Raises:
        ValueError: naming the file, when it cannot be parsed or is not a flat table.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read training config: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("contract"), dict):
        data = {**data}
        contract = data.pop("contract")
        unknown = sorted(set(contract) - set(_CONTRACT_KEYS))
        if unknown:
            raise ValueError(
                f"{path}: unknown [contract] keys {unknown}; known: {sorted(_CONTRACT_KEYS)}"
            )
        data.update({_CONTRACT_KEYS[k]: v for k, v in contract.items()})
    if not isinstance(data, dict) or any(isinstance(v, dict | list) for v in data.values()):
        raise ValueError(f"{path}: a training config is a flat table of key = value")
    return data


# Config fields whose default is None, and the type a value must have.
_OPTIONAL_TYPES: dict[str, type] = {
    "tick_size": float,
    "point_value": float,
    "commission": float,
    "calendar": str,
    "data_timezone": str,
    "bar_period": str,
}
_CONTRACT_KEYS = {
    "symbol": "instrument",
    "tick_size": "tick_size",
    "point_value": "point_value",
    "commission": "commission",
    "commission_per_side": "commission",
    "calendar": "calendar",
}


def parse_bar_period(text: str) -> BarPeriod:
    """``"minute:5"`` (or ``"minute"``, ``"day:1"``) as a :class:`BarPeriod`.

    Raises:
        ValueError: naming the expected form.
    """
    kind, _, value = text.strip().lower().partition(":")
    try:
        return BarPeriod(kind, int(value) if value else 1)
    except ValueError as exc:
        raise ValueError(
            f"bar_period {text!r}: {exc}; write it like 'minute:5' or 'day:1'"
        ) from None


def _zone(key: str, zone: str) -> str:
    """The IANA spelling of a zone name given in any case."""
    from env.timezones import canonical_zone

    try:
        return canonical_zone(zone)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {list(allowed)}, got {value!r}")
