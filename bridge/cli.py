"""Commands of the bridge package (registered by ai_trading_bridge.py): serve, reload,
replay and monitor. Each one loads its settings once and calls into the package."""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import structlog
import zmq

from bridge.config import (
    DEFAULT_BIND,
    DEFAULT_CONTROL,
    DEFAULT_EXCHANGE_TZ,
    DEFAULT_JOURNAL_DIR,
    DEFAULT_LOG_FILE,
    DEFAULT_MAX_CLOCK_SKEW_S,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_SESSIONS,
    ConfigError,
    ModelSource,
    MonitorConfig,
    ServeConfig,
    check_endpoint,
    is_loopback,
)
from bridge.killswitch import KillSwitch, default_state_dir, halt_text
from bridge.startup import INTERRUPTED_EXIT
from env.config import WARMUP_BARS
from env.contracts import CONTRACTS, ContractSpec, UnknownContractError
from train.cli import (
    FloatRange,
    _bars_options,
    _echo_warning,
    pick_model_arguments,
    resolve_model_options,
    zone_option,
)
from train.cli import model_options as _model_options

_PATH = click.Path(path_type=Path)
STATUS_TIMEOUT_S = 30.0  # `reload --status`, and the margin added to a reload's wait
REPLAY_PRICE_SCALE_FIX = (
    "replay them as the contract they trade as (--instrument), or with the --bundle of the "
    "model trained on them"
)


def _state_dir_option(command: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--state-dir",
        type=_PATH,
        envvar="AITB_STATE_DIR",
        callback=_check_state_dir,
        help="Folder of the persistent kill switch (default: the per-user data folder).",
    )(command)


def _check_state_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """A --state-dir that is a file is refused at once (exit 2): a daemon given one would
    serve with its kill switch stuck on and no control file for `reload`, and halt and
    resume would fail on it with an OS error."""
    if value is not None and value.exists() and not value.is_dir():
        raise click.BadParameter(
            f"{value} is a file, not a folder; give the folder of the kill switch and the "
            "daemon files (created if missing), the same for the daemon and the commands"
        )
    return value


def _check_model_paths(bundle: Path | None, model: Path | None, vecnorm: Path | None) -> None:
    """Refuse a model option naming nothing (exit 2, naming the option) before the slow
    start that would fail on it: loading torch, opening the journal, asking a daemon.
    One of --model and --vecnorm alone is left to the check that asks for both."""
    if (model is None) != (vecnorm is None):
        return
    if bundle is not None and not bundle.is_dir():
        what = "is a file, not a folder" if bundle.is_file() else "does not exist"
        raise click.BadParameter(
            f"{bundle} {what}; --bundle takes a folder holding model.zip, vecnormalize.pkl "
            "and model.json, or a deploy target",
            param_hint="--bundle",
        )
    for option, path in (("--model", model), ("--vecnorm", vecnorm)):
        if path is not None and not path.is_file():
            what = "is a folder; give it as --bundle" if path.is_dir() else "does not exist"
            raise click.BadParameter(f"{path} {what}", param_hint=option)


@click.command()
@click.option(
    "--bind",
    default=DEFAULT_BIND,
    show_default=True,
    envvar="AITB_BIND",
    help="ZeroMQ endpoint NinjaTrader connects to.",
)
@_model_options
@click.option(
    "--control",
    default=DEFAULT_CONTROL,
    show_default=True,
    envvar="AITB_CONTROL",
    help="Loopback control endpoint for `ai-trading-bridge reload` (default: a free port, "
    "published with a secret token in the state folder); 'none' disables it.",
)
@click.option(
    "--model-dir",
    "model_dirs",
    type=_PATH,
    multiple=True,
    help="Folder `reload` may load models from (repeatable; default: the served model's).",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a non-loopback --bind (unauthenticated; prefer an SSH tunnel).",
)
@click.option(
    "--max-message-bytes",
    type=int,
    default=DEFAULT_MAX_MESSAGE_BYTES,
    show_default=True,
    help="Larger requests are refused with too_large.",
)
@click.option(
    "--journal-dir",
    type=_PATH,
    default=DEFAULT_JOURNAL_DIR,
    show_default=True,
    envvar="AITB_JOURNAL_DIR",
    help="Folder of the daily decision journals.",
)
@click.option("--no-journal", is_flag=True, help="Do not journal requests and replies.")
@click.option(
    "--log-file",
    type=_PATH,
    default=DEFAULT_LOG_FILE,
    show_default=True,
    envvar="AITB_LOG_FILE",
    help="Also append JSON log lines here (what `monitor` reads); 'none' for console only.",
)
@click.option(
    "--exchange-tz",
    default=DEFAULT_EXCHANGE_TZ,
    show_default=True,
    envvar="AITB_EXCHANGE_TZ",
    help="Exchange time zone; bar times with Z or an offset are converted to it.",
)
@click.option(
    "--histogram-every",
    type=int,
    default=100,
    show_default=True,
    help="Log the rolling action histogram every N bars (and with every warning).",
)
@click.option(
    "--histogram-window",
    type=int,
    default=100,
    show_default=True,
    help="Bars in the rolling action histogram.",
)
@click.option(
    "--max-action-share",
    type=float,
    default=0.95,
    show_default=True,
    help="Warn when one action takes more than this share of a window.",
)
@click.option(
    "--busy-poll",
    is_flag=True,
    help="Spin instead of sleeping between requests: lower latency, one core at 100%.",
)
@click.option(
    "--max-sessions",
    type=int,
    default=DEFAULT_MAX_SESSIONS,
    show_default=True,
    help="Client+instrument states kept (least recently used dropped).",
)
@click.option(
    "--max-clock-skew",
    type=float,
    default=DEFAULT_MAX_CLOCK_SKEW_S / 60,
    show_default=True,
    help="Minutes a bar's time may be ahead of this computer's clock before it is refused.",
)
@click.option(
    "--risk-config",
    type=_PATH,
    envvar="AITB_RISK_CONFIG",
    help="TOML file of risk-rail limits (docs/daemon.md); the defaults are on without one.",
)
@_state_dir_option
@click.option(
    "--allow-other-price-scale",
    is_flag=True,
    help="Serve instruments whose tick size is 10x or more from the model's contract.",
)
@click.pass_context
def serve(
    ctx: click.Context,
    bind: str,
    bundle: Path | None,
    model: Path | None,
    vecnorm: Path | None,
    control: str,
    model_dirs: tuple[Path, ...],
    allow_remote: bool,
    max_message_bytes: int,
    journal_dir: Path,
    no_journal: bool,
    log_file: Path | None,
    exchange_tz: str,
    histogram_every: int,
    histogram_window: int,
    max_action_share: float,
    busy_poll: bool,
    max_sessions: int,
    max_clock_skew: float,
    risk_config: Path | None,
    state_dir: Path | None,
    allow_other_price_scale: bool,
) -> None:
    """Serve a policy to NinjaTrader over ZeroMQ (the bundled demo model by default)."""
    from bridge.console import (
        abandon_log_file,
        configure_queued_logging,
        ensure_std_streams,
        exit_now,
    )
    from bridge.journal import JournalError
    from bridge.policy import PolicyLoadError
    from bridge.server import (
        ServeError,
        build_server,
        freeze_startup_objects,
        install_signal_handlers,
    )

    ensure_std_streams()

    from env.risk import RiskConfig, RiskConfigError

    control_source = ctx.get_parameter_source("control")
    bundle, model, vecnorm = pick_model_arguments(ctx, bundle, model, vecnorm)
    _check_model_paths(bundle, model, vecnorm)
    try:
        risk = RiskConfig.load(risk_config) if risk_config is not None else RiskConfig()
    except RiskConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--risk-config") from None
    try:
        config = ServeConfig(
            bind=bind,
            control=None if control.lower() == "none" else control,
            control_required=control_source is not click.core.ParameterSource.DEFAULT,
            model=ModelSource.from_options(bundle, model, vecnorm),
            max_message_bytes=max_message_bytes,
            journal_dir=None if no_journal else journal_dir,
            exchange_tz=exchange_tz,
            max_sessions=max_sessions,
            busy_poll=busy_poll,
            max_clock_skew_s=max_clock_skew * 60,
            allow_other_scale=allow_other_price_scale,
            risk=risk,
            state_dir=state_dir or default_state_dir(),
            model_dirs=tuple(p.resolve() for p in model_dirs),
            allow_remote=allow_remote,
            monitor=MonitorConfig(
                window=histogram_window, every=histogram_every, max_action_share=max_action_share
            ),
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if log_file is not None and str(log_file).lower() == "none":
        log_file = None
    try:
        configure_queued_logging(log_file, (ctx.obj or {}).get("log_level", "info"))
    except OSError as exc:
        abandon_log_file()
        raise click.BadParameter(
            f"cannot write {log_file}: {exc.strerror}; pick another file or 'none'",
            param_hint="--log-file",
        ) from None
    if allow_remote and not is_loopback(bind):
        warning = (
            f"WARNING: --bind {bind} accepts requests from other computers with NO "
            "authentication: anyone who reaches this port can read decisions and send bars. "
            "Prefer tcp://127.0.0.1 and an SSH tunnel (docs/daemon.md, Security)."
        )
        click.secho(warning, fg="red", bold=True, err=True)
        structlog.get_logger().warning("remote_bind", bind=bind, detail=warning)
    try:
        freeze_startup_objects()  # before the model: see its docstring
        server = build_server(config)
        server.bind()
    except JournalError as exc:  # as for --log-file: refused before serving anything
        abandon_log_file()
        raise click.BadParameter(str(exc), param_hint="--journal-dir") from None
    except (PolicyLoadError, ServeError) as exc:
        abandon_log_file()  # an empty log file and its new folders go, as the journal's
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    install_signal_handlers(server)
    click.echo(
        f"ai-trading-bridge serving {server.dispatcher.policy.version} "
        f"({server.dispatcher.policy.source.describe()}) on {server.endpoint}; Ctrl+C stops"
    )
    server.serve_forever()
    exit_now(0)  # everything is closed; skip the interpreter's slow teardown


@click.command()
@click.option(
    "--endpoint",
    default=DEFAULT_BIND,
    show_default=True,
    envvar="AITB_BIND",
    help="The endpoint the daemon serves (names the daemon to reload).",
)
@click.option(
    "--control",
    default=None,
    help="The daemon's control endpoint instead (as its 'serving' log line shows).",
)
@_state_dir_option
@_model_options
@click.option("--status", is_flag=True, help="Only show what the daemon serves.")
@click.option(
    "--timeout",
    type=FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds to wait [a reload: as long as the daemon lets a load run, plus 30 s; "
    "--status: 30].",
)
@click.pass_context
def reload(
    ctx: click.Context,
    endpoint: str,
    control: str | None,
    state_dir: Path | None,
    bundle: Path | None,
    model: Path | None,
    vecnorm: Path | None,
    status: bool,
    timeout: float | None,
) -> None:
    """Reload the daemon's model (the same files, or the ones given); the old model keeps
    serving if the new one fails its checks."""
    from bridge.reload_worker import WORKER_TIMEOUT_S
    from bridge.server import control_request, find_daemon

    bundle, model, vecnorm = pick_model_arguments(ctx, bundle, model, vecnorm)
    _check_reload_model(ctx, status, bundle, model, vecnorm)
    for option, value in (("--endpoint", endpoint), ("--control", control)):
        try:  # not a daemon to look for: an endpoint no daemon could serve
            if value is not None:
                check_endpoint(value, option)
        except ConfigError as exc:
            raise click.BadParameter(
                str(exc).removeprefix(f"{option} "), param_hint=option
            ) from None
    if not status:
        _check_model_paths(bundle, model, vecnorm)
    try:
        daemon = find_daemon(state_dir or default_state_dir(), endpoint, control)
    except FileNotFoundError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    control = str(daemon.get("control"))
    command: dict[str, str] = {
        "type": "status" if status else "reload",
        "token": str(daemon.get("token")),
    }
    if not status:
        for key, path in (("bundle", bundle), ("model", model), ("vecnorm", vecnorm)):
            if path is not None:
                command[key] = str(path.resolve())  # the daemon may run in another folder
    if timeout is None:
        timeout = STATUS_TIMEOUT_S if status else WORKER_TIMEOUT_S + STATUS_TIMEOUT_S
    if not status:
        # The daemon answers once the load has ended, or at once when it refuses the
        # request: this line must not claim a load it may never start.
        asked = command.get("bundle") or command.get("model") or "the files it serves"
        click.echo(
            f"asking the daemon to load {asked} (a load can take minutes on a busy machine)...",
            err=True,
        )
    try:
        reply = control_request(control, command, timeout)
    except TimeoutError as exc:
        message = (
            str(exc)
            if status
            else f"no reply to the reload from {control} within {timeout:g} s: the daemon "
            "may have stopped, or the model may still be loading (`ai-trading-bridge "
            "reload --status` names a reload in progress; the daemon's log has "
            "model_reloaded or reload_failed when it ends)"
        )
        click.secho(f"error: {message}", fg="red", err=True)
        sys.exit(1)
    if status:
        click.echo(json.dumps(reply, indent=2))
        risk = reply.get("risk") or {}
        if risk.get("state") == "halted":  # on stderr: stdout stays JSON for scripts
            click.secho(f"kill switch ON {halt_text(risk)}", fg="red", err=True)
    elif reply.get("ok"):
        click.echo(
            f"reloaded: serving {reply['model']['version']} (was {reply['previous']['version']})"
        )
    else:
        model = reply.get("model")  # absent when the daemon is stopping
        serving = f"; still serving {model.get('version', '?')}" if model else ""
        click.secho(f"reload failed: {reply.get('error')}{serving}", fg="red", err=True)
        sys.exit(1)


def _check_reload_model(
    ctx: click.Context,
    status: bool,
    bundle: Path | None,
    model: Path | None,
    vecnorm: Path | None,
) -> None:
    """Refuse model options the daemon would refuse (or ignore) before asking it.

    Raises:
        click.UsageError: one line naming the options given and what to give instead.
    """
    options = (("--bundle", bundle), ("--model", model), ("--vecnorm", vecnorm))
    given = [name for name, path in options if path is not None]
    if status:
        # Only flags: a reload's model in the config file or environment stays usable.
        typed = [
            name
            for name in given
            if ctx.get_parameter_source(name[2:]) is click.core.ParameterSource.COMMANDLINE
        ]
        if typed:
            raise click.UsageError(
                f"--status takes no model ({' and '.join(typed)} given): it only shows what "
                "the daemon serves; drop the model options, or reload without --status"
            )
        return
    if bundle is not None and given != ["--bundle"]:
        raise click.UsageError(
            f"give either --bundle or --model with --vecnorm, not {' and '.join(given)}"
        )
    if (model is None) != (vecnorm is None):
        raise click.UsageError(
            f"--model and --vecnorm go together ({given[0]} given): give both, the model zip "
            "and the VecNormalize statistics saved with it, or --bundle, or neither to "
            "reload the files being served"
        )


@click.command()
@click.argument("data")
@click.option(
    "--endpoint",
    default=DEFAULT_BIND,
    show_default=True,
    envvar="AITB_BIND",
    help="The daemon's endpoint.",
)
@click.option("--client", default=None, help="Client id (default: replay-<pid>).")
@click.option(
    "--instrument",
    default=None,
    help="Instrument name sent, whose contract terms the orders execute on [the model "
    "card's contract with --bundle (or a deploy target); else NQ 12-25].",
)
@click.option(
    "--history",
    type=click.IntRange(min=0),
    default=WARMUP_BARS,
    show_default=True,
    help="First bars sent as history.",
)
@click.option(
    "--bars",
    "max_bars",
    type=click.IntRange(min=1),
    default=None,
    help="Bar messages to send (default: all).",
)
@_model_options
@click.option(
    "--timeout",
    type=FloatRange(min=0, min_open=True),
    default=2.0,
    show_default=True,
    help="Reply timeout per try (s).",
)
@click.option(
    "--retries",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Tries before acting as HOLD.",
)
@click.option(
    "--data-timezone",
    callback=zone_option,
    help="IANA zone of DATA's times without an offset [the model card's data zone, else UTC "
    "for a NinjaTrader export and the exchange zone for a CSV].",
)
@click.pass_context
def replay(
    ctx: click.Context,
    data: str,
    endpoint: str,
    client: str | None,
    instrument: str | None,
    history: int,
    max_bars: int | None,
    bundle: Path | None,
    model: Path | None,
    vecnorm: Path | None,
    timeout: float,
    retries: int,
    data_timezone: str | None,
) -> None:
    """Replay DATA (a bar file, or 'synthetic') through a running daemon as NinjaTrader
    would, execute its replies, and print trades, PnL and the action histogram. With a
    model (the one the daemon serves), the instrument is its card's contract and trades
    execute with its card's execution settings; the guide's two files have no card, so
    the defaults apply. Orders execute on the instrument's contract terms."""
    from ai_trading_bridge import configure_logging
    from bridge.replay import DEFAULT_INSTRUMENT, ReplayConfig, run_replay
    from env.bars import (
        BarsFileError,
        PriceScaleError,
        check_price_scale,
        load_bars,
        warn_if_outside_sessions,
    )
    from env.synthetic import default_bars
    from env.trading_env import EnvConfig

    configure_logging(None, (ctx.obj or {}).get("log_level", "warning"))
    env_config = EnvConfig()
    card: dict[str, Any] = {}
    bundle, model, vecnorm = pick_model_arguments(ctx, bundle, model, vecnorm)
    if bundle is not None or model is not None or vecnorm is not None:
        card_path = resolve_model_options(bundle, model, vecnorm).card_path
        if card_path is not None:  # a bundle, or the one a deploy target serves now
            try:
                card = json.loads(card_path.read_text(encoding="utf-8"))
                env_config = EnvConfig.from_dict(card.get("env", {}))
            except (OSError, ValueError, TypeError) as exc:
                raise click.BadParameter(
                    f"{card_path} is not a readable model card ({exc})", param_hint="--bundle"
                ) from None
    if instrument is None:  # the model's own contract, as the daemon serving it expects
        instrument = env_config.instrument.symbol if card.get("env") else DEFAULT_INSTRUMENT
    # DATA is read as training read the model's data: on the traded contract's clock and
    # calendar, with the card's data time zone unless --data-timezone says otherwise.
    # ("" in the card: the model learned synthetic bars, read in no zone of a file's)
    recorded_zone = (card.get("data") or {}).get("data_timezone") or None
    read_as = _bars_options(card, data_timezone or recorded_zone)
    traded = read_as["contract"] = _traded(instrument, env_config.instrument, bool(card.get("env")))
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _echo_warning
            if data == "synthetic":
                bars = default_bars()
            else:  # the price scale first: a 6E file read as NQ is not a time-zone problem
                bars = load_bars(data, check_sessions=False, **read_as)
            check_price_scale(bars, traded, fix=REPLAY_PRICE_SCALE_FIX)
            if data != "synthetic":
                warn_if_outside_sessions(bars, traded)
    except PriceScaleError as exc:
        raise click.BadParameter(str(exc), param_hint="--instrument") from None
    except BarsFileError as exc:
        raise click.BadParameter(str(exc), param_hint="DATA") from None
    if history >= len(bars):
        raise click.BadParameter(
            f"{history} history bars leave none of DATA's {len(bars)} bars to replay; "
            "give a smaller --history",
            param_hint="--history",
        )
    try:
        check_endpoint(endpoint, "--endpoint")
    except ConfigError as exc:
        raise click.BadParameter(
            str(exc).removeprefix("--endpoint "), param_hint="--endpoint"
        ) from None
    options: dict[str, Any] = {"client": client} if client else {}
    try:
        config = ReplayConfig(
            endpoint=endpoint,
            instrument=instrument,
            history=history,
            max_bars=max_bars,
            timeout_s=timeout,
            retries=retries,
            env=env_config,
            **options,
        )
        result = run_replay(bars, config)
    except zmq.ZMQError as exc:  # an endpoint ZeroMQ cannot connect to, e.g. no port
        raise click.BadParameter(f"{endpoint!r}: {exc}", param_hint="--endpoint") from None
    except (ValueError, ConnectionError) as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.secho("interrupted (Ctrl+C) before the first bar was replayed", fg="red", err=True)
        sys.exit(INTERRUPTED_EXIT)
    _print_replay(result)
    failed = result.errors + result.missed
    if failed:
        first = f" (first: {result.first_error})" if result.first_error else ""
        click.secho(
            f"error: {failed} of {len(result.actions)} bars got no decision{first}",
            fg="red",
            err=True,
        )
    if result.interrupted:
        click.secho(
            f"interrupted (Ctrl+C) after {len(result.actions)} of {result.planned} bars: "
            "the summary covers the bars replayed so far",
            fg="yellow",
            err=True,
        )
        sys.exit(INTERRUPTED_EXIT)
    if failed:
        sys.exit(1)


def _traded(instrument: str, model_contract: ContractSpec, from_card: bool) -> ContractSpec:
    """The contract ``instrument`` trades as (``bridge.replay.traded_contract``): DATA is
    read on its zone and calendar, and the replies executed on its terms.

    Raises:
        click.BadParameter: naming --instrument, for a name the contract table lacks
            that is not the model card's contract either.
    """
    from bridge.replay import traded_contract

    try:
        return traded_contract(instrument, model_contract)
    except UnknownContractError:
        model = f" and not the model's contract ({model_contract.symbol})" if from_card else ""
        raise click.BadParameter(
            f"{instrument!r} is not in the contract table ({', '.join(CONTRACTS)}){model}, "
            "so its tick size and point value are unknown; give one of those, or the "
            "--bundle of the model trained on it",
            param_hint="--instrument",
        ) from None


def _dollars(amount: float) -> str:
    """``-$875.00`` rather than ``$-875.00``."""
    return f"-${-amount:,.2f}" if amount < 0 else f"${amount:,.2f}"


def _print_replay(result) -> None:  # type: ignore[no-untyped-def]
    summary = result.summary()
    click.echo(
        f"model {summary['model_version']}: {summary['bars']} bars, "
        f"{summary['trades']} trade{'' if summary['trades'] == 1 else 's'} "
        f"({summary['wins']} winner{'' if summary['wins'] == 1 else 's'}), "
        f"net PnL {_dollars(summary['net_pnl_dollars'])}, "
        f"{summary['total_r']:+.2f} R"
    )
    click.echo(
        f"no reply: {summary['missed']} bars (acted as HOLD), error replies: {summary['errors']}, "
        f"timeouts: {summary['timeouts']}"
    )
    refused = summary["risk_refused"]
    if refused:
        by_rule = ", ".join(f"{rule} {n}" for rule, n in sorted(refused.items()))
        click.echo(f"entries refused by the risk rails: {sum(refused.values())} ({by_rule})")
    histogram = result.histogram()
    click.echo(f"{'action':<14}{'all':>8}{'flat':>8}{'in position':>13}")
    for name in histogram["all"]:
        click.echo(
            f"{name:<14}{histogram['all'][name]:>8}{histogram['flat'][name]:>8}"
            f"{histogram['position'][name]:>13}"
        )


SNAPSHOT_WIDTH = 200  # monitor's columns when its output is not a terminal
MAX_REFRESH_S = 3600.0  # monitor's longest --refresh


def _refresh_seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """monitor's --refresh: 0 would spin a core, and a negative, NaN or endless one ended
    in a traceback from time.sleep (click's FloatRange lets NaN through)."""
    if not 0 < value <= MAX_REFRESH_S:
        raise click.BadParameter(
            f"{value} is not a number of seconds in 0 < x <= {MAX_REFRESH_S:g}"
        )
    return value


@click.command()
@click.argument("logfile", type=_PATH, default=DEFAULT_LOG_FILE)
@click.option("--once", is_flag=True, help="Print one snapshot of the whole file and exit.")
@click.option(
    "--refresh",
    type=float,
    callback=_refresh_seconds,
    default=1.0,
    show_default=True,
    help="Seconds between reads.",
)
def monitor(logfile: Path, once: bool, refresh: float) -> None:
    """Live view of a daemon's --log-file (default: the daemon's default log file):
    action histograms, latency, risk rails, warnings."""
    from rich.console import Console

    from bridge.monitor import follow, render, snapshot

    console = Console()
    if not console.is_terminal:  # a file or a pipe: wide enough for whole cells
        console = Console(width=max(console.width, SNAPSHOT_WIDTH))
    if once:
        if not logfile.is_file():
            problem = "is a folder" if logfile.is_dir() else "does not exist"
            raise click.BadParameter(
                f"{logfile} {problem}; give the daemon's --log-file", param_hint="LOGFILE"
            )
        state = snapshot(logfile)
        console.print(render(state))
        if state.events == 0:  # the journal, or any other file: an empty view says nothing
            click.echo(
                f"warning: {logfile} holds no daemon log lines; give the file the daemon "
                "writes with --log-file (its JSON lines), not the journal",
                err=True,
            )
        return
    if not logfile.exists():
        click.echo(
            f"waiting for {logfile} to appear (is the daemon running with --log-file "
            f"{logfile}?); Ctrl+C to stop",
            err=True,
        )
    with contextlib.suppress(KeyboardInterrupt):
        follow(logfile, refresh, console)


@click.command()
@click.option(
    "--reason",
    default="halted by the operator",
    show_default=True,
    help="Why; kept as typed and shown on one line (reload --status, monitor, hello's risk).",
)
@_state_dir_option
def halt(reason: str, state_dir: Path | None) -> None:
    """Kill switch: stop new entries now and after restarts (managing and closing open
    positions continues) until `resume`."""
    switch = KillSwitch(state_dir or default_state_dir())
    try:
        record, engaged = switch.halt(reason)
    except OSError as exc:
        click.secho(
            f"error: cannot write {switch.path} ({exc.strerror or exc}); give --state-dir a "
            "folder this user can write (the daemon must use the same one)",
            fg="red",
            err=True,
        )
        sys.exit(1)
    if not engaged:
        click.echo(
            f"already halted {halt_text(record)}; kept as it was ({switch.path}): "
            "`ai-trading-bridge resume` first to halt with another reason"
        )
        return
    click.echo(f"halted: no new entries until `ai-trading-bridge resume` ({switch.path})")


@click.command()
@_state_dir_option
def resume(state_dir: Path | None) -> None:
    """Release the kill switch: entries are allowed again from the next bar."""
    switch = KillSwitch(state_dir or default_state_dir())
    try:
        released = switch.resume()
    except OSError as exc:
        click.secho(f"error: cannot remove {switch.path}: {exc}", fg="red", err=True)
        sys.exit(1)
    click.echo("resumed: entries allowed" if released else "was not halted")


@click.command("export-plain")
@click.argument("bundle", type=click.Path(path_type=Path, file_okay=False, exists=True))
def export_plain_command(bundle: Path) -> None:
    """Write BUNDLE's policy weights and normaliser statistics as plain numpy files
    (policy.npz, normalizer.npz), checked equal to SB3; the daemon then serves the
    bundle without unpickling anything."""
    import pickle

    from bridge.plain import PlainFormatError, export_plain
    from bridge.policy import PolicyLoadError, load_model

    try:
        model, _ = load_model(bundle / "model.zip")
        with open(bundle / "vecnormalize.pkl", "rb") as f:
            vecnorm = pickle.load(f)  # the trader's own bundle, read once to convert it
        written = export_plain(model, vecnorm, bundle)
    except (PolicyLoadError, PlainFormatError, OSError, pickle.UnpicklingError) as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    click.echo(f"wrote {written[0].name} and {written[1].name} in {bundle} (checked against SB3)")


COMMANDS: list[click.Command] = [
    serve,
    reload,
    replay,
    monitor,
    halt,
    resume,
    export_plain_command,
]
