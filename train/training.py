"""``ai-trading-bridge train``: MaskablePPO on the masked TradingEnv, written as a bundle.

The data is split in time: the first ``1 - holdout_fraction`` of the bars train, the rest
is held out for evaluation and validation and never trained on. The holdout env is given
the bars from ``split - (WARMUP_BARS - 1)`` on, so its first decision bar is the split bar
itself: its indicator warm-up reads training bars, but no training bar is ever a decision
bar in validation, and no training episode reads a holdout bar (its last step fills on bar
``split - 1``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from env.bars import (
    Bars,
    TooFewBarsError,
    check_price_scale,
    load_bars,
    warn_if_outside_sessions,
)
from env.config import ACTION_NAMES, WARMUP_BARS
from env.contracts import ContractSpec, resolve_contract
from env.public_series import is_public_source, series_sha256
from env.synthetic import DEFAULT_DAYS, default_bars
from env.trading_env import EnvConfig, TradingEnv
from train import bundle as bundle_io
from train.config import TrainConfig

log = structlog.get_logger()

CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"


@dataclass(frozen=True)
class DataSplit:
    """Bars split in time into a training part and a held-out part."""

    bars: Bars
    split: int  # index of the first held-out decision bar
    offset: int = 0  # index of ``bars[0]`` in the source file (walk-forward windows)

    @property
    def train(self) -> Bars:
        return self.bars[: self.split]

    @property
    def holdout(self) -> Bars:
        return self.bars[self.split - (WARMUP_BARS - 1) :]


def split_bars(bars: Bars, holdout_fraction: float, episode_bars: int) -> DataSplit:
    """Hold out the last ``holdout_fraction`` of ``bars``.

    Raises:
        TooFewBarsError: when either part is too short for one episode.
    """
    split = round(len(bars) * (1.0 - holdout_fraction))
    need = WARMUP_BARS + episode_bars
    if split < need or len(bars) - split + WARMUP_BARS - 1 < need:
        raise TooFewBarsError(
            f"{bars.source or 'bars'}: {len(bars)} bars with holdout_fraction "
            f"{holdout_fraction} leaves a part shorter than one episode ({need} bars incl. "
            "warm-up); use more data or shorter episodes (--episode-bars)"
        )
    return DataSplit(bars, split)


def calibration_split(split: DataSplit, fraction: float, episode_bars: int) -> tuple[Bars, Bars]:
    """The bars a policy learns from and the bars its band calibration is solved on.

    With ``fraction`` 0 both are ``split.train``. Otherwise the last ``fraction`` of the
    training span's decision bars are kept out of learning and calibrated on (with the
    warm-up bars before them); the held-out span is untouched.

    Raises:
        TooFewBarsError: when either part is too short for one episode.
    """
    if fraction <= 0:
        return split.train, split.train
    first = WARMUP_BARS - 1  # the first decision bar of the training span
    fit_end = first + round((split.split - first) * (1.0 - fraction))
    need = WARMUP_BARS + episode_bars
    if fit_end < need or split.split - fit_end + WARMUP_BARS - 1 < need:
        raise TooFewBarsError(
            f"{split.bars.source or 'bars'}: {split.split} training bars with "
            f"calibration_fraction {fraction} leaves a part shorter than one episode "
            f"({need} bars incl. warm-up); use more data, another --calibration-fraction "
            "(0: calibrate on the bars learned from), or shorter episodes (--episode-bars)"
        )
    return split.bars[:fit_end], split.bars[fit_end - (WARMUP_BARS - 1) : split.split]


def load_data(
    path: str | Path | None, synthetic_days: int = DEFAULT_DAYS, **load_options: Any
) -> tuple[Bars, str]:
    """Bars from ``path`` (NinjaTrader export or CSV), or the synthetic series
    (``synthetic_days`` sessions; the embedded default is 60); and the sha256 of the
    file's bytes or of the generated arrays. A file or series is checked for its price
    scale (:func:`load_scale_checked`)."""
    if path is None:
        bars = default_bars(n_days=synthetic_days)
        digest = hashlib.sha256()
        for array in (
            bars.time.astype(np.int64),
            bars.open,
            bars.high,
            bars.low,
            bars.close,
            bars.volume,
        ):
            digest.update(np.ascontiguousarray(array).tobytes())
        return bars, digest.hexdigest()
    bars = load_scale_checked(path, **load_options)
    if is_public_source(path):
        return bars, series_sha256(str(path))
    return bars, bundle_io.sha256_file(path)


def load_scale_checked(
    path: str | Path, contract: ContractSpec | None = None, **load_options: Any
) -> Bars:
    """``load_bars``, with the price-scale check before the session check: bars of
    another contract (6E read as NQ) are refused for what they are, not first warned
    about as a time-zone problem their off-session closes only seem to be.

    Raises:
        env.bars.PriceScaleError: the bars are another contract's prices.
        env.bars.BarsFileError: as ``load_bars``.
    """
    check_sessions = load_options.pop("check_sessions", True)
    bars = load_bars(path, contract=contract, check_sessions=False, **load_options)
    spec = contract or resolve_contract("NQ")  # load_bars' default contract
    check_price_scale(bars, spec)
    if check_sessions:
        warn_if_outside_sessions(bars, spec)
    return bars


def data_card(data: DataSplit, sha256: str, learn_bars: int | None = None) -> dict[str, Any]:
    """The card's ``data``: the source, its spans and indices. ``learn_bars``: bars of
    the training span the policy learned from, when fewer than all (the rest, up to the
    held-out start, were kept for the band calibration)."""
    b = data.bars
    learned = {}
    if learn_bars is not None and learn_bars < data.split:
        learned = {
            "learn_bars": learn_bars,
            "calibration_start": str(b.time[learn_bars]),
            "calibration_start_index": data.offset + learn_bars,
        }
    return {
        "source": b.source,
        "sha256": sha256,
        "start": str(b.time[0]),
        "end": str(b.time[-1]),
        "n_bars": len(b),
        "train_bars": data.split,
        "holdout_start": str(b.time[data.split]),
        "start_index": data.offset,
        "holdout_start_index": data.offset + data.split,
        "holdout_end_index": data.offset + len(b),
        "data_timezone": b.data_timezone,
        "bar_period": b.bar_period.to_json(),
        **learned,
    }


def env_config_for(config: TrainConfig) -> EnvConfig:
    return EnvConfig(
        instrument=config.contract_spec(),
        reward=config.reward,
        episode_bars=config.episode_bars,
    )


class EnvFactory:
    """Picklable env constructor (SubprocVecEnv sends it to the worker processes); with
    a ``template`` (same bars and config) the env is its clone, sharing its features."""

    def __init__(
        self, bars: Bars, env_config: EnvConfig, seed: int, template: TradingEnv | None = None
    ) -> None:
        self.bars, self.env_config, self.seed, self.template = bars, env_config, seed, template

    def __call__(self) -> Any:
        from stable_baselines3.common.monitor import Monitor

        if self.template is not None:
            env = self.template.clone()
        else:
            env = TradingEnv(self.bars, self.env_config)
        env.reset(seed=self.seed)
        return Monitor(env)


def make_vec_env(config: TrainConfig, bars: Bars, env_config: EnvConfig) -> Any:
    """``n_envs`` TradingEnvs in a Dummy/SubprocVecEnv behind VecNormalize (guide's settings).
    In one process the envs are clones of one, so the features are computed once."""
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecNormalize

    from train.ppo import LeanDummyVecEnv

    subproc = config.vec == "subproc"
    template = None if subproc else TradingEnv(bars, env_config)
    factories: list[Callable[[], Any]] = [
        EnvFactory(bars, env_config, config.seed + i, template) for i in range(config.n_envs)
    ]
    venv = SubprocVecEnv(factories) if subproc else LeanDummyVecEnv(factories)
    venv.seed(config.seed)
    return VecNormalize(venv, norm_obs=True, norm_reward=False, clip_obs=10.0, clip_reward=10.0)


def configure_torch(threads: int) -> None:
    """Small MLPs train fastest single-threaded on a few cores; validation of the
    categorical distribution's arguments is pure overhead here."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    torch.distributions.Distribution.set_default_validate_args(False)


def new_model(config: TrainConfig, venv: Any, tensorboard_dir: str | None) -> Any:
    from train.ppo import LeanMaskablePPO

    # The fused Adam kernel does the guide's Adam update, several times faster on CPU.
    fused = config.device == "cpu" or (config.device == "auto" and not _cuda())
    return LeanMaskablePPO(
        "MlpPolicy",
        venv,
        learning_rate=config.learning_rate,
        n_steps=config.n_steps_per_env,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        ent_coef=config.ent_coef,
        verbose=0,
        seed=config.seed,
        device=config.device,
        tensorboard_log=tensorboard_dir,
        policy_kwargs={"optimizer_kwargs": {"fused": True}} if fused else None,
    )


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def check_device(
    device: str, fix: str = "--device cpu or --device auto", asked: str | None = None
) -> None:
    """Refuse ``cuda`` on a torch without CUDA: SB3 would fall back to the CPU quietly
    and the run would not be the one asked for. ``asked``: where and how the device was
    given, as typed (``--device CUDA``); default ``device 'cuda'``.

    Raises:
        ValueError: one line naming the device asked for, the torch build and the two
            ways out.
    """
    if device.lower() != "cuda" or _cuda():
        return
    import torch

    raise ValueError(
        f"{asked or f'device {device!r}'}: this torch ({torch.__version__}) cannot use CUDA "
        f"(no CUDA build or no GPU); use {fix}, or install a CUDA build of torch "
        "(https://pytorch.org/get-started/locally/)"
    )


def tensorboard_available() -> bool:
    try:
        import tensorboard  # type: ignore[import-untyped, import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


def checkpoint_vecnorm(checkpoint: Path) -> Path:
    """The VecNormalize file saved beside a checkpoint (SB3 CheckpointCallback naming),
    or beside a bundle's model.zip."""
    if checkpoint.name == bundle_io.MODEL_FILE:
        return checkpoint.with_name(bundle_io.VECNORM_FILE)
    stem = checkpoint.stem  # <prefix>_<steps>_steps
    prefix, steps, _ = stem.rsplit("_", 2)
    return checkpoint.with_name(f"{prefix}_vecnormalize_{steps}_steps.pkl")


def checkpoint_shaping(checkpoint: Path) -> Path:
    """The ``constrained`` preset's multipliers saved beside a checkpoint
    (``<prefix>_shaping_<steps>_steps.json``), or a bundle's card."""
    if checkpoint.name == bundle_io.MODEL_FILE:
        return checkpoint.with_name(bundle_io.CARD_FILE)
    prefix, steps, _ = checkpoint.stem.rsplit("_", 2)
    return checkpoint.with_name(f"{prefix}_shaping_{steps}_steps.json")


def load_shaping_state(checkpoint: Path) -> dict[str, Any] | None:
    """The multipliers stored with ``checkpoint`` (``DualAscent.state``), None when it
    has none (a checkpoint of another preset, or written before they were stored)."""
    path = checkpoint_shaping(checkpoint)
    if not path.is_file():
        return None
    stored = json.loads(path.read_text(encoding="utf-8"))
    if checkpoint.name != bundle_io.MODEL_FILE:
        return dict(stored)
    shaping = stored.get("shaping") or {}
    if "multipliers" not in shaping:
        return None
    return {**shaping["multipliers"], "updates": shaping["updates"], "history": shaping["history"]}


def checkpoint_callback(config: TrainConfig, out: Path, dual: Any) -> Any:
    """SB3's CheckpointCallback (model + VecNormalize every ``checkpoint_every`` steps),
    also writing the ``constrained`` multipliers (``dual``, or None) beside each."""
    from stable_baselines3.common.callbacks import CheckpointCallback

    class Checkpoints(CheckpointCallback):
        def _on_step(self) -> bool:
            if dual is not None and self.n_calls % self.save_freq == 0:
                path = Path(self._checkpoint_path("shaping_", extension="json"))
                path.write_text(json.dumps(dual.state()), encoding="utf-8")
            return super()._on_step()

    return Checkpoints(
        save_freq=max(config.checkpoint_every // max(config.n_envs, 1), 1),
        save_path=str(out / CHECKPOINT_DIR),
        name_prefix="model",
        save_vecnormalize=True,
    )


class ResumeMismatchError(ValueError):
    """A run that would resume a bundle on other data or another contract than its own;
    the message names the option that gives the bundle's."""


def resume_card(checkpoint: Path, bars: Bars, env_config: EnvConfig) -> dict[str, Any] | None:
    """The card of a bundle being resumed (None for a checkpoint, which has none).

    Raises:
        ResumeMismatchError: when the bundle trained on other data or another contract than
            this run's: resuming would silently continue on different bars (pass the
            bundle's ``--data`` and ``--instrument``).
    """
    path = checkpoint.with_name(bundle_io.CARD_FILE)
    if checkpoint.name != bundle_io.MODEL_FILE or not path.is_file():
        return None
    card = bundle_io.read_card(path)
    source = str((card.get("data") or {}).get("source", ""))
    symbol = str(((card.get("env") or {}).get("instrument") or {}).get("symbol", ""))
    if source and source != bars.source:
        raise ResumeMismatchError(
            f"{checkpoint.parent} trained on {source}, this run's data is {bars.source}; "
            f"resume with the bundle's data (--data)"
        )
    if symbol and symbol != env_config.instrument.symbol:
        raise ResumeMismatchError(
            f"{checkpoint.parent} trades {symbol}, this run {env_config.instrument.symbol}; "
            f"resume with --instrument {symbol}"
        )
    return card


def remove_calibration(model: Any, card: dict[str, Any]) -> None:
    """Take a resumed bundle's calibration offsets (``train.calibration``) back out of
    its action head: training continues from the policy it learned, and the run's own
    calibration, if any, is solved afresh."""
    import torch

    offsets = ((card.get("calibration") or {}).get("offsets")) or {}
    if not offsets:
        return
    values = [float(offsets.get(name, 0.0)) for name in ACTION_NAMES]
    head = model.policy.action_net
    with torch.no_grad():
        head.bias.sub_(torch.as_tensor(values, dtype=head.bias.dtype, device=head.bias.device))
    log.info("calibration_removed", offsets=offsets)


def train(
    config: TrainConfig,
    out: str | Path,
    data_path: str | Path | None = None,
    resume: str | Path | None = None,
    command: str = "",
    progress_bar: bool = True,
    validate_episodes: int = 1000,
    data: tuple[DataSplit, str] | None = None,
) -> bundle_io.Bundle:
    """Train, save the bundle in ``out`` and, with ``validate_episodes``, validate it on
    the held-out bars and record the summary in its card.

    ``data`` (a split and the sha256 of its source) replaces loading ``data_path``:
    walk-forward folds pass their own windows."""
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList
    from stable_baselines3.common.vec_env import VecNormalize

    from train.callbacks import ActionDistributionCallback, HoldoutEvalCallback
    from train.ppo import LeanMaskablePPO
    from train.shaping import DualAscent
    from train.shaping import make_callback as make_shaping_callback

    check_device(config.device)
    configure_torch(config.torch_threads)
    out = Path(out)
    if data is None:
        bars, sha256 = load_data(data_path, config.synthetic_days, **config.bars_options())
        config = config.for_bars(bars)
        split = split_bars(bars, config.holdout_fraction, config.episode_bars)
    else:
        split, sha256 = data
        bars = split.bars
        config = config.for_bars(bars)
    env_config = env_config_for(config)
    check_price_scale(bars, env_config.instrument)
    learn_bars, calibration_bars = calibration_split(
        split, config.calibration_fraction if config.calibrates else 0.0, config.episode_bars
    )
    venv = make_vec_env(config, learn_bars, env_config)
    tb_dir = str(out / TENSORBOARD_DIR) if tensorboard_available() else None
    if tb_dir is None:
        log.info("tensorboard_unavailable", hint="pip install 'ai-trading-bridge[tensorboard]'")

    if resume is not None:
        resume = Path(resume)
        if resume.is_dir():
            resume = resume / bundle_io.MODEL_FILE
        resumed_card = resume_card(resume, bars, env_config)
        venv = VecNormalize.load(str(checkpoint_vecnorm(resume)), venv.venv)
        venv.training = True
        model = LeanMaskablePPO.load(
            str(resume), env=venv, device=config.device, tensorboard_log=tb_dir
        )
        log.info("resumed", checkpoint=str(resume), timesteps_done=model.num_timesteps)
        if resumed_card is not None:
            remove_calibration(model, resumed_card)
    else:
        model = new_model(config, venv, tb_dir)
    out.mkdir(parents=True, exist_ok=True)  # only now: a refused run leaves no folder
    done_before = model.num_timesteps if resume is not None else 0
    remaining = config.timesteps - done_before
    # What learn() really runs: the progress bar, the schedules and the speed use it.
    budget = rounded_budget(remaining, config)

    holdout_template = TradingEnv(split.holdout, env_config)
    callbacks: list[BaseCallback] = [ActionDistributionCallback()]
    dual = None
    if config.reward == "constrained":
        dual = DualAscent(lr=config.dual_lr, kp=config.dual_kp)
        if resume is not None:
            _restore_shaping(dual, resume)
        callbacks.append(make_shaping_callback(dual))
    per_env = max(config.n_envs, 1)
    if config.checkpoint_every:
        callbacks.append(checkpoint_callback(config, out, dual))
    if config.eval_every and config.eval_episodes:
        callbacks.append(
            HoldoutEvalCallback(
                holdout_template,
                config.eval_episodes,
                max(config.eval_every // per_env, 1),
                seed=config.seed,
            )
        )

    noticeable, rounding = budget_rounding(remaining, config)
    (log.warning if noticeable else log.info)(
        "training_started",
        out=str(out),
        timesteps=budget,
        **rounding,
        **({"timesteps_done": done_before} if resume is not None else {}),
        reward=config.reward,
        n_envs=config.n_envs,
        vec=config.vec,
        device=model.device.type,
        data=bars.source,
        train_bars=split.split,
        learn_bars=len(learn_bars),
        holdout_bars=len(bars) - split.split,
    )
    started = time.perf_counter()
    if budget > 0:
        model.learn(
            total_timesteps=budget,
            callback=CallbackList(callbacks),
            log_interval=1,
            reset_num_timesteps=resume is None,
            tb_log_name="maskable_ppo_trading",
            progress_bar=progress_bar,
        )
    duration = time.perf_counter() - started
    venv.training = False
    calibration = None
    if config.calibrates:
        from train.calibration import calibrate

        calibration = calibrate(model, venv, calibration_bars, env_config)
        log.info(
            "calibrated",
            converged=calibration.converged,
            rounds=calibration.rounds,
            before=calibration.before,
            after=calibration.after,
            skipped=calibration.skipped,
        )
    model.save(str(out / bundle_io.MODEL_FILE))
    venv.save(str(out / bundle_io.VECNORM_FILE))
    bundle_io.write_plain_files(out, model, venv)
    venv.close()

    created = datetime.now(timezone.utc)
    commit = bundle_io.git_commit()
    card = bundle_io.build_card(
        version=bundle_io.make_version(config.name, created, commit),
        created=created,
        env_config=env_config.to_dict(),
        hyperparameters=config.hyperparameters(),
        data=data_card(split, sha256, len(learn_bars)),
        commit=commit,
        command=command,
        timesteps=int(model.num_timesteps),
        duration_s=duration,
        seed=config.seed,
        files=bundle_io.file_hashes(out),
        extra={
            "device": model.device.type,  # what trained: config.device may say auto
            "train_config": config.to_dict(),
            **({"shaping": dual.to_card()} if dual is not None else {}),
            **({"calibration": calibration.to_card()} if calibration is not None else {}),
        },
    )
    bundle_io.write_card(out, card)
    log.info(
        "training_finished",
        out=str(out),
        timesteps=int(model.num_timesteps),
        duration_s=round(duration, 1),
        steps_per_s=round((model.num_timesteps - done_before) / max(duration, 1e-9)),
    )
    result = bundle_io.load_bundle(out)
    if validate_episodes:
        from train.validation import DEFAULT_SEED, validate_bundle

        report = validate_bundle(
            result.path,
            episodes=validate_episodes,
            write_card=True,
            report_dir=out / "validation",
            seed=DEFAULT_SEED,
            # The bars in memory: reading the file again would warn about it again.
            bars=split.holdout,
        )
        result = bundle_io.load_bundle(out)
        log.info("validation", passed=report["passed"])
    return result


def rounded_budget(steps: int, config: TrainConfig) -> int:
    """The environment steps ``model.learn(steps)`` really takes: PPO collects whole
    rollouts of ``config.n_steps`` transitions (all envs together) before each update,
    and stops after the first one that reaches ``steps`` (0 for ``steps`` <= 0)."""
    if steps <= 0:
        return 0
    return -(-steps // config.n_steps) * config.n_steps


def budget_rounding(steps: int, config: TrainConfig) -> tuple[bool, dict[str, Any]]:
    """The ``training_started`` fields that say why the budget is not ``steps``: the
    steps asked for and the rounding up to whole rollouts (none when ``steps`` is whole
    rollouts); and whether the change is noticeable enough to log as a warning: below one
    rollout, or by 1% or more (the guide's 5M rounds by 0.02%)."""
    rounded = rounded_budget(steps, config)
    if rounded == steps:
        return False, {}
    noticeable = steps < config.n_steps or (rounded - steps) * 100 >= steps
    return noticeable, {
        "requested": steps,
        "rounded": f"up to whole rollouts of {config.n_steps:,} steps (n_steps "
        f"{config.n_steps_per_env:,} per env x {config.n_envs} envs): PPO updates on whole "
        "rollouts",
    }


def _restore_shaping(dual: Any, checkpoint: Path) -> None:
    state = load_shaping_state(checkpoint)
    if state is None:
        log.warning(
            "shaping_not_restored",
            checkpoint=str(checkpoint),
            detail="no stored multipliers beside this checkpoint; they restart at 0",
        )
        return
    dual.restore(state)
    log.info("shaping_restored", updates=dual.updates, terms=dual.terms())


def copy_bundle(src: str | Path, dst: str | Path) -> None:
    """Copy a bundle's three files (not its checkpoints or logs)."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for name in (*bundle_io.BUNDLE_FILES, bundle_io.CARD_FILE):
        shutil.copy2(Path(src) / name, dst / name)


__all__ = ["ACTION_NAMES", "DataSplit", "split_bars", "train"]
