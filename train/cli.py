"""Commands of the train package (registered by ai_trading_bridge.py): ``train``,
``validate``, ``deploy`` and ``rollback``."""

from __future__ import annotations

import math
import shlex
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from train.config import TrainConfig
    from train.deploy import ModelFiles

# Exit status of train, validate and walkforward when a model failed its validation: the
# command ran, its result is printed, and a script must not deploy the model (README,
# "Errors and exit status": 1 is a command that could not run, 2 bad input, 130 Ctrl+C).
VALIDATION_FAILED_EXIT = 3

# Flag name -> TrainConfig field, for the flags that override the config.
_OVERRIDES = (
    "timesteps",
    "learning_rate",
    "n_steps",
    "batch_size",
    "n_epochs",
    "gamma",
    "gae_lambda",
    "clip_range",
    "ent_coef",
    "n_envs",
    "vec",
    "holdout_fraction",
    "seed",
    "device",
    "reward",
    "dual_lr",
    "dual_kp",
    "calibrate",
    "calibration_fraction",
    "instrument",
    "episode_bars",
    "checkpoint_every",
    "eval_every",
    "eval_episodes",
    "torch_threads",
    "name",
    "synthetic_days",
    "tick_size",
    "point_value",
    "commission",
    "calendar",
    "data_timezone",
    "bar_period",
)


class FloatRange(click.FloatRange):
    """click's FloatRange of finite numbers: NaN compares False with every bound, so click
    lets it through, and an open-ended range takes infinity; both ended in a traceback
    further on (a timeout of inf seconds cannot be waited in milliseconds)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class _DataSource(click.ParamType):
    """A bars file that exists, or a public series ``pypi:PACKAGE/SERIES``."""

    name = "FILE|pypi:PACKAGE/SERIES"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from env.public_series import is_public_source, public_series

        if is_public_source(value):
            try:
                public_series(value)
            except ValueError as exc:
                self.fail(str(exc), param, ctx)
            return str(value).strip()
        return str(click.Path(exists=True, dir_okay=False).convert(value, param, ctx))


DATA_SOURCE = _DataSource()


class _AsTypedChoice(click.Choice):
    """A choice in any case, kept as typed so that a refusal quotes what was typed (the
    config normalises it)."""

    def __init__(self, choices: list[str]) -> None:
        super().__init__(choices, case_sensitive=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        super().convert(value, param, ctx)
        return value


DATA_HELP = (
    "Bars: NinjaTrader 8 export, CSV, or a public series (pypi:arch/sp500, "
    "pypi:arch/nasdaq, pypi:gym-anytrading/eurusd; docs/validation.md)."
)


def series_contract(data: str | None, *given: dict[str, Any]) -> dict[str, Any]:
    """A public series' contract as ``instrument`` (and model ``name``), for the keys
    none of ``given`` (config file, flags) sets; without a public series, the model
    ``name`` from a given ``instrument`` (a 6E model's version starts with 6E, not NQ)."""
    from env.contracts import contract_root
    from env.public_series import is_public_source, public_series

    unset = [k for k in ("instrument", "name") if not any(k in g for g in given)]
    if data is not None and is_public_source(data):
        root = public_series(data).contract
        return {k: root for k in unset}
    instrument = next((g["instrument"] for g in reversed(given) if "instrument" in g), None)
    if "name" not in unset or not isinstance(instrument, str):
        return {}
    root = contract_root(instrument)
    return {"name": root} if root and not any(c in root for c in "/\\ ") else {}


def _echo_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """A warning (e.g. a data file's time zone looks wrong) as one line on stderr."""
    click.echo(f"warning: {message}", err=True)


def _data_error(exc: Exception, data: str | None) -> click.UsageError:
    """Data that cannot be used as given, as a usage error: naming --data when the user
    gave it (exit 2, like any bad option; not 1, a command that could not run);
    bars of another contract's price scale, or a series an option does not fit, name the
    option that fixes them."""
    from env.bars import DataOptionError, PriceScaleError

    if isinstance(exc, PriceScaleError):
        return click.BadParameter(str(exc), param_hint="--instrument")
    if isinstance(exc, DataOptionError):  # the data is fine; an option given with it is not
        return click.BadParameter(str(exc), param_hint=exc.option)
    if data is None:
        return click.UsageError(str(exc))
    return click.BadParameter(str(exc), param_hint="--data")


def _train_settings(
    config_file: str | None,
    data: str | None,
    overrides: dict[str, Any],
    fixed: dict[str, Any] | None = None,
) -> tuple[TrainConfig, dict[str, Any], dict[str, Any]]:
    """Train's and walkforward's settings: ``--config``'s file, then the flags (and
    ``fixed``); returns the config, the file's values and the flags given.

    Raises:
        click.BadParameter: a value that cannot be used, naming the option that gave it:
            ``--config`` for the file's, the flag for a flag's (exit 2).
    """
    from env.contracts import UnknownContractError
    from train.config import TrainConfig, load_config_file

    try:
        mapping = load_config_file(config_file) if config_file else {}
        base = TrainConfig.from_mapping(mapping) if config_file else TrainConfig()
    except ValueError as exc:
        message = str(exc) if str(exc).startswith(str(config_file)) else f"{config_file}: {exc}"
        raise click.BadParameter(message, param_hint="--config") from None
    flags = {k: v for k, v in overrides.items() if k in _OVERRIDES and v is not None}
    try:
        values = {**series_contract(data, mapping, flags), **flags, **(fixed or {})}
        return TrainConfig.from_mapping(values, base), mapping, flags
    except ValueError as exc:
        message = str(exc)
        if isinstance(exc, UnknownContractError):
            key: str | None = "instrument"
        else:  # the flag the message is about: "n_envs must be >= 1", "key 'seed' must be"
            key = next((k for k in flags if message.startswith(k) or f"'{k}'" in message), None)
        if key in flags:
            raise click.BadParameter(message, param_hint=f"--{key.replace('_', '-')}") from None
        raise click.UsageError(message) from None


def zone_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Click callback of ``--data-timezone``: the IANA spelling of a zone typed in any
    case, or a usage error naming the option (``env.timezones.canonical_zone``)."""
    if value is None:
        return None
    from env.timezones import canonical_zone

    try:
        return canonical_zone(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _bars_options(card: dict[str, Any] | None, data_timezone: str | None) -> dict[str, Any]:
    """``load_bars`` options for a model's held-out data: the card's contract (its zone
    and calendar) and the given data zone."""
    from env.trading_env import EnvConfig

    contract = EnvConfig.from_dict(card["env"]).instrument if card and card.get("env") else None
    return {"contract": contract, "data_timezone": data_timezone}


def _check_series_contract(data: str, card: dict[str, Any] | None) -> None:
    """Refuse a public series that does not stand for the model's contract: validate
    trades the bars as its card's contract (it has no ``--instrument``).

    Raises:
        click.BadParameter: naming --data, the series' contracts and the model's.
    """
    from env.contracts import contract_root
    from env.public_series import is_public_source, public_series
    from env.trading_env import EnvConfig

    if not card or not card.get("env") or not is_public_source(data):
        return
    series = public_series(data)
    root = contract_root(EnvConfig.from_dict(card["env"]).instrument.symbol)
    if root not in series.proxies:
        raise click.BadParameter(
            f"{data} stands for {' or '.join(series.proxies)} and this model trades {root} "
            f"(its card's contract): validate it on {root} bars, or validate a model "
            f"trained on {data} (train --data {data})",
            param_hint="--data",
        )


def command_line(ctx: click.Context) -> str:
    """The command line that reproduces this invocation: the program, the subcommand and
    every option given explicitly (from the command line, a config file's values are not
    options), rebuilt from click's parsed parameters so it is exact under any launcher."""
    from click.core import ParameterSource

    words = ["ai-trading-bridge", ctx.info_name or ""]
    for param in ctx.command.params:
        name = param.name or ""
        if ctx.get_parameter_source(name) in (None, ParameterSource.DEFAULT):
            continue
        value = ctx.params[name]
        flag = max(param.opts, key=len) if isinstance(param, click.Option) else None
        if isinstance(param, click.Option) and param.is_flag:
            secondary = max(param.secondary_opts, key=len) if param.secondary_opts else None
            words.append((flag if value else secondary) or "")
        elif flag is None:
            words.append(str(value))
        else:
            words += [flag, str(value)]
    return shlex.join(w for w in words if w)


_MODEL_PATH = click.Path(path_type=Path)


def model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The one set of model arguments of serve, reload, replay, validate and deploy:
    ``--bundle`` (a bundle folder or a deploy target) or the guide's ``--model`` +
    ``--vecnorm``, resolved by :func:`resolve_model_options`."""
    for option in reversed(
        [
            click.option(
                "--bundle",
                type=_MODEL_PATH,
                help="Model bundle folder (model.zip, vecnormalize.pkl, model.json) "
                "or a deploy target.",
            ),
            click.option(
                "--model",
                type=_MODEL_PATH,
                help="The guide's form: SB3 model zip, e.g. NQ_o1_fixed.zip (with --vecnorm).",
            ),
            click.option(
                "--vecnorm",
                type=_MODEL_PATH,
                help="The guide's form: VecNormalize statistics, "
                "e.g. phase2_position_mgmt_final_vecnorm_fixed.pkl (with --model).",
            ),
        ]
    ):
        command = option(command)
    return command


def resolve_model_options(
    bundle: Path | str | None,
    model: Path | str | None,
    vecnorm: Path | str | None,
    default_bundle: Path | None = None,
) -> ModelFiles:
    """:func:`train.deploy.resolve_model`, with its refusal as a usage error (exit 2)."""
    from train.deploy import ModelArgsError, resolve_model

    try:
        return resolve_model(bundle, model, vecnorm, default_bundle=default_bundle)
    except ModelArgsError as exc:
        raise click.UsageError(str(exc)) from None


_SOURCE_RANK = {"COMMANDLINE": 3, "ENVIRONMENT": 2, "DEFAULT_MAP": 1}


def pick_model_arguments(
    ctx: click.Context, bundle: Path | None, model: Path | None, vecnorm: Path | None
) -> tuple[Path | None, Path | None, Path | None]:
    """The model arguments after precedence between the two forms: a bundle from a
    higher source (flag > environment > config file) replaces two files from a lower one,
    and the other way round, so ``--bundle X`` on the command line overrides ``model`` and
    ``vecnorm`` in the config file. Given at the same level, both stay (and are refused)."""

    def rank(name: str) -> int:
        source = ctx.get_parameter_source(name)
        return _SOURCE_RANK.get(source.name, 0) if source is not None else 0

    if bundle is None or (model is None and vecnorm is None):
        return bundle, model, vecnorm
    files_rank = max(rank("model") if model else 0, rank("vecnorm") if vecnorm else 0)
    if rank("bundle") > files_rank:
        return bundle, None, None
    if files_rank > rank("bundle"):
        return None, model, vecnorm
    return bundle, model, vecnorm


def _one_bundle(argument: Path | None, option: Path | None) -> Path | None:
    if argument is not None and option is not None:
        raise click.UsageError("give the bundle once: as BUNDLE or as --bundle")
    return argument if argument is not None else option


EPISODE_BARS_HELP = (
    "Decisions per episode [from the data's bar period: 6.5 hours of bars, 60 to 390: "
    "390 one-minute, 78 five-minute, 60 hourly or daily bars]."
)
calibrate_option = click.option(
    "--calibrate",
    type=click.Choice(["auto", "on", "off"], case_sensitive=False),
    help="Band calibration of the decision thresholds on the training bars after "
    "learning [auto: on unless --reward seed].",
)
calibration_fraction_option = click.option(
    "--calibration-fraction",
    type=FloatRange(min=0, max=1, max_open=True),
    help="Trailing share of the training bars kept out of learning, on which the band "
    "calibration is solved [0.2; 0: calibrate on the bars learned from].",
)


def contract_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of train and walkforward that say what the bars are and which contract
    they trade as (TrainConfig's ``instrument`` .. ``bar_period``)."""
    for option in reversed(
        [
            click.option(
                "--instrument",
                help="Contract root or NinjaTrader name: ES MES NQ MNQ YM MYM RTY M2K CL MCL NG "
                "RB HO GC MGC SI SIL HG ZN ZB ZF ZT 6E M6E 6J 6B 6A 6C ZC ZS ZW, or any other "
                "with --tick-size and --point-value [NQ; a public series' own contract].",
            ),
            click.option(
                "--tick-size", type=float, help="Contract tick size, price units [the table's]."
            ),
            click.option(
                "--point-value",
                type=float,
                help="Account currency per point per contract [the table's].",
            ),
            click.option(
                "--commission", type=float, help="Commission per contract per side [the table's]."
            ),
            click.option(
                "--calendar", help="pandas-market-calendars session calendar name [the contract's]."
            ),
            click.option(
                "--data-timezone",
                callback=zone_option,
                help="IANA zone of the data file's times without an offset [UTC for a "
                "NinjaTrader export, the exchange zone for a CSV].",
            ),
            click.option(
                "--bar-period",
                help="Bar period, e.g. minute:5 or day:1 [detected from the data; a public "
                "series has its own].",
            ),
        ]
    ):
        command = option(command)
    return command


@click.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="JSON or TOML file of training settings (flags override it).",
)
@click.option(
    "--data",
    type=DATA_SOURCE,
    help=DATA_HELP + " Default: the synthetic NQ series.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Bundle folder to write (model.zip, vecnormalize.pkl, model.json).",
)
@click.option(
    "--resume",
    type=click.Path(exists=True),
    help="Checkpoint .zip (its VecNormalize beside it) or bundle to continue.",
)
@click.option("--timesteps", type=int, help="Total environment steps [5,000,000].")
@click.option("--learning-rate", type=float, help="[3e-4]")
@click.option("--n-steps", type=int, help="Transitions per update, all envs together [2048].")
@click.option("--batch-size", type=int, help="Minibatch size [64].")
@click.option("--n-epochs", type=int, help="[10]")
@click.option("--gamma", type=float, help="[0.99]")
@click.option("--gae-lambda", type=float, help="[0.95]")
@click.option("--clip-range", type=float, help="[0.2]")
@click.option("--ent-coef", type=float, help="[0.01]")
@click.option("--n-envs", type=int, help="Environments stepped together [8].")
@click.option(
    "--vec", type=click.Choice(["dummy", "subproc"], case_sensitive=False), help="[dummy]"
)
@click.option(
    "--holdout-fraction", type=float, help="Trailing share of bars never trained on [0.2]."
)
@click.option("--seed", type=int, help="[0]")
@click.option("--device", type=_AsTypedChoice(["auto", "cpu", "cuda"]), help="[auto]")
@click.option(
    "--reward",
    type=click.Choice(["constrained", "default", "seed"], case_sensitive=False),
    help="Reward preset [constrained: default + shaping tuned online to the guide's bands].",
)
@click.option("--dual-lr", type=float, help="Step of the constrained preset's multipliers [0.05].")
@click.option("--dual-kp", type=float, help="Proportional gain on the current band violation [0].")
@calibrate_option
@calibration_fraction_option
@contract_options
@click.option("--episode-bars", type=click.IntRange(min=1), help=EPISODE_BARS_HELP)
@click.option("--checkpoint-every", type=int, help="Steps between checkpoints, 0 = none [250000].")
@click.option(
    "--eval-every", type=int, help="Steps between held-out evaluations, 0 = none [100000]."
)
@click.option("--eval-episodes", type=int, help="Episodes per held-out evaluation [50].")
@click.option("--torch-threads", type=int, help="torch threads, 0 = torch's default [1].")
@click.option(
    "--name", help="Model name, first part of the version string [the --instrument's root: NQ]."
)
@click.option(
    "--synthetic-days", type=int, help="Sessions of synthetic bars when no --data is given [60]."
)
@click.option(
    "--validate-episodes",
    type=int,
    default=1000,
    show_default=True,
    help="Held-out episodes validated after training (0 = skip).",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar.")
def train(
    config_file: str | None,
    data: str | None,
    out: str,
    resume: str | None,
    validate_episodes: int,
    progress: bool,
    **overrides: Any,
) -> None:
    """Train MaskablePPO with the guide's settings and write a model bundle to --out;
    exit 3 when the bundle fails its post-training validation."""
    from env.bars import BarsFileError, PriceScaleError, TooFewBarsError
    from train.training import ResumeMismatchError, check_device
    from train.training import train as run_training

    config, mapping, flags = _train_settings(config_file, data, overrides)
    try:
        check_device(config.device, asked=_device_asked(flags, mapping, config_file))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _echo_warning
            bundle = run_training(
                config,
                out,
                data_path=data,
                resume=resume,
                command=command_line(click.get_current_context()),
                progress_bar=progress,
                validate_episodes=validate_episodes,
            )
    except (BarsFileError, TooFewBarsError, PriceScaleError) as exc:
        raise _data_error(exc, data) from None
    except ResumeMismatchError as exc:
        raise click.BadParameter(str(exc), param_hint="--resume") from None
    except ValueError as exc:  # a run that cannot go on: one line, exit 1
        raise click.ClickException(str(exc)) from None
    validation = bundle.card.get("validation")
    if validation is not None and not validation["passed"]:
        click.echo(
            f"bundle {bundle.version} written to {bundle.path} (validation FAILED, exit "
            f"{VALIDATION_FAILED_EXIT}: see {bundle.path / 'validation' / 'report.json'}; "
            "deploy refuses it without --force)"
        )
        sys.exit(VALIDATION_FAILED_EXIT)
    status = "not validated" if validation is None else "validation PASSED"
    click.echo(f"bundle {bundle.version} written to {bundle.path} ({status})")


@click.command()
@click.argument("bundle_arg", metavar="[BUNDLE]", required=False, type=_MODEL_PATH)
@model_options
@click.option(
    "--data",
    type=DATA_SOURCE,
    help="Held-out bars: a file or pypi:PACKAGE/SERIES (default: the card's holdout, or the "
    "synthetic series' last 20%).",
)
@click.option(
    "--data-timezone",
    callback=zone_option,
    help="IANA zone of --data's times without an offset [UTC for a NinjaTrader export].",
)
@click.option("--episodes", type=int, default=1000, show_default=True)
@click.option(
    "--episode-bars",
    type=click.IntRange(min=1),
    help="Bars per episode (default: the card's env).",
)
@click.option("--seed", type=int, default=12345, show_default=True, help="Episode starts.")
@click.option("--stochastic", is_flag=True, help="Sample actions instead of the argmax.")
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False),
    help="Where report.json and the plots go [BUNDLE/validation or ./validation].",
)
@click.option(
    "--write-card",
    is_flag=True,
    help="Store the summary in the bundle's model.json (the two-file form: in "
    "MODEL.validation.json beside the zip, which deploy reads).",
)
@click.option(
    "--risk-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Validate with the daemon's risk rails on: the TOML file serve --risk-config reads "
    "(docs/daemon.md) [rails off].",
)
def validate(
    bundle_arg: Path | None,
    bundle: Path | None,
    model: Path | None,
    vecnorm: Path | None,
    data: str | None,
    data_timezone: str | None,
    episodes: int,
    episode_bars: int | None,
    seed: int,
    stochastic: bool,
    report_dir: str | None,
    write_card: bool,
    risk_config: Path | None,
) -> None:
    """Post-training validation on held-out episodes; exit 0 on pass, 3 on fail."""
    from env.bars import BarsFileError, TooFewBarsError, load_bars
    from env.risk import RiskConfig, RiskConfigError
    from train import bundle as bundle_io
    from train.validation import card_summary
    from train.validation import validate as run_validation

    ctx = click.get_current_context()
    bundle, model, vecnorm = pick_model_arguments(ctx, bundle, model, vecnorm)
    files = resolve_model_options(_one_bundle(bundle_arg, bundle), model, vecnorm)
    if episodes < 1:
        raise click.UsageError("--episodes must be >= 1")
    try:  # before the model and the bars load; exit 2 as serve's, not 1 ("the model failed")
        risk = None if risk_config is None else RiskConfig.load(risk_config)
    except RiskConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--risk-config") from None
    try:
        if files.bundle is not None:
            loaded = bundle_io.load_bundle(files.bundle)
            model_path, vecnorm_path, card = loaded.model_path, loaded.vecnorm_path, loaded.card
            default_dir = loaded.path / "validation"
        else:
            model_path, vecnorm_path, card = files.model, files.vecnorm, None
            default_dir = Path("validation")
        with warnings.catch_warnings():
            warnings.showwarning = _echo_warning
            if data:
                _check_series_contract(data, card)
            bars = load_bars(data, **_bars_options(card, data_timezone)) if data else None
            report, text = run_validation(
                model_path,
                vecnorm_path,
                card,
                episodes=episodes,
                seed=seed,
                report_dir=Path(report_dir) if report_dir else default_dir,
                bars=bars,
                deterministic=not stochastic,
                episode_bars=episode_bars,
                risk=risk,
            )
    except BarsFileError as exc:
        if data is None:  # the card's own data file, emptied or changed since training
            raise click.ClickException(str(exc)) from None
        raise _data_error(exc, data) from None
    except TooFewBarsError as exc:
        raise _data_error(exc, data) from None
    except (bundle_io.BundleError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(text)
    click.echo(
        f"{episodes} episodes in {report['duration_s']:.1f} s; report: "
        f"{Path(report_dir or default_dir) / 'report.json'}"
    )
    if write_card and files.bundle is not None:
        updated = dict(loaded.card)
        earlier = updated.get("validation")
        updated["validation"] = card_summary(report)
        bundle_io.write_card(loaded.path, updated)
        click.echo(f"validation summary written to {loaded.card_path}")
        earlier = earlier if isinstance(earlier, dict) else {}
        before = earlier.get("episodes")
        if isinstance(before, int) and before > episodes:  # deploy reads the card's verdict
            _echo_warning(
                f"the card's verdict ({'PASSED' if earlier.get('passed') else 'FAILED'} on "
                f"{before} episodes) was replaced by this one on {episodes}; deploy decides "
                f"on it: re-run with --episodes {before} to keep the larger sample",
                UserWarning,
            )
    elif write_card:
        from train.deploy import write_validation_record

        record = write_validation_record(files.model, files.vecnorm, card_summary(report))
        click.echo(f"validation summary written to {record}")
    sys.exit(0 if report["passed"] else VALIDATION_FAILED_EXIT)


@click.command()
@click.argument("bundle_arg", metavar="[BUNDLE]", required=False, type=_MODEL_PATH)
@model_options
@click.option(
    "--target",
    required=True,
    type=click.Path(file_okay=False),
    envvar="AITB_DEPLOY_TARGET",
    help="Deploy folder the daemon serves from.",
)
@click.option(
    "--force", is_flag=True, help="Deploy even without a passing validation (logged loudly)."
)
@click.option(
    "--allow-layout-change",
    is_flag=True,
    help="Accept an observation layout different from the deployed model's.",
)
def deploy(
    bundle_arg: Path | None,
    bundle: Path | None,
    model: Path | None,
    vecnorm: Path | None,
    target: str,
    force: bool,
    allow_layout_change: bool,
) -> None:
    """Back up the live model and atomically make BUNDLE (or --model ZIP --vecnorm PKL,
    the guide's two files, backed up as *_broken_backup) the deployed one."""
    from train.deploy import DeployError, deploy_files
    from train.deploy import deploy as run_deploy

    ctx = click.get_current_context()
    bundle, model, vecnorm = pick_model_arguments(ctx, bundle, model, vecnorm)
    files = resolve_model_options(_one_bundle(bundle_arg, bundle), model, vecnorm)
    try:
        if files.bundle is not None:
            pointer = run_deploy(
                files.bundle, target, force=force, allow_layout_change=allow_layout_change
            )
        else:
            pointer = deploy_files(files.model, files.vecnorm, target, force=force)
    except DeployError as exc:
        raise click.ClickException(f"deploy refused: {exc}") from None
    if pointer["forced"]:
        click.secho(
            "WARNING: deployed a model that did not pass validation (--force)", fg="red", err=True
        )
    if pointer.get("held_out_loss"):
        click.secho(f"WARNING: {pointer['held_out_loss']}", fg="yellow", err=True)
    live = pointer.get("path") or f"{pointer['model']} + {pointer['vecnorm']}"
    click.echo(f"deployed {pointer['version']} to {target} ({live})")


@click.command()
@click.option(
    "--target",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    envvar="AITB_DEPLOY_TARGET",
    help="Deploy folder.",
)
def rollback(target: str) -> None:
    """Make the previously deployed model live again."""
    from train.deploy import DeployError
    from train.deploy import rollback as run_rollback

    try:
        pointer = run_rollback(target)
    except DeployError as exc:
        raise click.ClickException(str(exc)) from None
    if pointer["forced"]:
        click.secho(
            f"WARNING: {pointer['version']} was deployed without passing validation (--force)",
            fg="red",
            err=True,
        )
    click.echo(f"rolled back to {pointer['version']} (from {pointer['rolled_back_from']})")


@click.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="JSON or TOML file of training settings (flags override it).",
)
@click.option(
    "--data",
    type=DATA_SOURCE,
    help=DATA_HELP + " Default: the synthetic NQ series.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Report folder.")
@click.option(
    "--folds", type=click.IntRange(min=1), default=3, show_default=True, help="Test slices."
)
@click.option(
    "--mode",
    type=click.Choice(["expanding", "rolling"], case_sensitive=False),
    default="expanding",
    show_default=True,
    help="Train on all the past, or on a window as long as the first fold's.",
)
@click.option(
    "--test-fraction",
    type=FloatRange(min=0, max=1, min_open=True, max_open=True),
    default=0.4,
    show_default=True,
    help="Trailing share of the bars covered by the test slices.",
)
@click.option("--seeds", type=int, default=1, show_default=True, help="Seeds per fold.")
@click.option("--validate-episodes", type=int, default=200, show_default=True, help="Per job.")
@click.option(
    "--ray",
    "ray_address",
    help="Run the jobs on a Ray cluster: 'auto' or its address (needs the 'ray' extra).",
)
@click.option("--timesteps", type=int, help="Steps per job [5,000,000].")
@click.option("--n-steps", type=int, help="Transitions per update [2048].")
@click.option("--n-envs", type=int, help="[8]")
@click.option("--episode-bars", type=click.IntRange(min=1), help=EPISODE_BARS_HELP)
@click.option(
    "--reward", type=click.Choice(["constrained", "default", "seed"], case_sensitive=False)
)
@click.option("--seed", type=int, help="First seed [0].")
@click.option("--synthetic-days", type=int, help="[60]")
@calibrate_option
@calibration_fraction_option
@contract_options
def walkforward(
    config_file: str | None,
    data: str | None,
    out: str,
    folds: int,
    mode: str,
    test_fraction: float,
    seeds: int,
    validate_episodes: int,
    ray_address: str | None,
    **overrides: Any,
) -> None:
    """Walk-forward folds x seeds: train on the past, validate on the next slice, one
    report (pass rate, spread, out-of-sample backtest); exit 0 when every job passed, 3
    when one failed its validation."""
    from env.bars import BarsFileError, PriceScaleError, TooFewBarsError
    from train.walkforward import format_report
    from train.walkforward import walkforward as run_walkforward

    if seeds < 1:
        raise click.BadParameter(f"must be >= 1, got {seeds}", param_hint="--seeds")
    jobs_only = {"checkpoint_every": 0, "eval_every": 0}
    config, mapping, _ = _train_settings(config_file, data, overrides, jobs_only)
    _check_config_device(config.device, mapping, config_file)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _echo_warning
            report = run_walkforward(
                config,
                out,
                data_path=data,
                folds=folds,
                test_fraction=test_fraction,
                mode=mode,
                seeds=seeds,
                validate_episodes=validate_episodes,
                ray_address=ray_address,
            )
    except (BarsFileError, TooFewBarsError, PriceScaleError) as exc:
        raise _data_error(exc, data) from None
    except (ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_report(report))
    summary = report["summary"]
    failed = summary["jobs"] - summary["passed"]
    verdict = (
        f"; {failed} of {summary['jobs']} jobs FAILED validation, exit {VALIDATION_FAILED_EXIT}"
        if failed
        else ""
    )
    click.echo(f"report: {Path(out) / 'walkforward.json'}{verdict}")
    sys.exit(VALIDATION_FAILED_EXIT if failed else 0)


def _check_config_device(device: str, mapping: dict[str, Any], config_file: str | None) -> None:
    """The config file's ``device`` as a usage error when this torch cannot use it
    (walkforward has no ``--device``)."""
    from train.training import check_device

    try:
        check_device(
            device,
            fix=f'device = "cpu" or "auto" in {config_file}',
            asked=_device_asked({}, mapping, config_file),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _device_asked(flags: dict[str, Any], mapping: dict[str, Any], config_file: str | None) -> str:
    """Where the device was asked for, as typed: ``--device CUDA`` or the config line."""
    if "device" in flags:
        return f"--device {flags['device']}"
    if "device" in mapping:
        return f'device = "{mapping["device"]}" in {config_file}'
    return "device auto"


COMMANDS: list = [train, validate, deploy, rollback, walkforward]
