"""ai-trading-bridge: the command line. Every subcommand lives in its package's ``cli``.

``python ai_trading_bridge.py`` with no arguments serves, exactly as
``ai-trading-bridge serve`` does (the retraining guide's "Test with Live Connection" step).

Settings come from, highest first: a command-line flag, an ``AITB_*`` environment variable,
the config file, the built-in default (click's own order: command line, environment,
``default_map``, default). Every option reads ``AITB_<COMMAND>_<OPTION>`` (click's
``auto_envvar_prefix``, e.g. ``AITB_SERVE_MAX_SESSIONS``); the common ones also have a short
name (``AITB_BIND``, ``AITB_CONTROL``, ``AITB_JOURNAL_DIR``, ``AITB_LOG_FILE``,
``AITB_EXCHANGE_TZ``, ``AITB_DEPLOY_TARGET``, ``AITB_LOG_LEVEL``). The config file is TOML:
``--config PATH``, else ``$AITB_CONFIG``, else ``config.toml`` in the per-user config
folder (``platformdirs.user_config_dir("ai-trading-bridge")``); top-level keys are the
group's options (``log_level``), one table per command holds that command's options::

    log_level = "info"
    [serve]
    bind = "tcp://127.0.0.1:5555"
    model = "NQ_o1.zip"                 # relative paths are relative to this file
    vecnorm = "phase2_position_mgmt_final_vecnorm.pkl"

An unknown table or key, or a value of the wrong type, refuses to start with one line
naming the file and the key.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # python ai_trading_bridge.py, python -m ai_trading_bridge
    from bridge.startup import exit_quietly_on_interrupt

    exit_quietly_on_interrupt()  # before the slow imports below: see bridge/startup.py

import logging
from pathlib import Path
from typing import IO, Any, TextIO

import click
import structlog

from bridge.startup import INTERRUPTED_EXIT, INTERRUPTED_LINE, started

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

APP_NAME = "ai-trading-bridge"
ENV_PREFIX = "AITB"
CONFIG_ENV = "AITB_CONFIG"
CONFIG_FILE_NAME = "config.toml"


QUIET_LIBRARY_LOGGERS = ("matplotlib", "PIL")  # their INFO lines are not shown


def configure_logging(
    log_file: Path | None = None, level: str = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog once: pretty on a terminal, JSON lines otherwise, and JSON
    lines appended to ``log_file`` when given."""
    stream = stream or sys.stderr
    pretty = stream.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handlers: list[logging.Handler] = []
    console = logging.StreamHandler(stream)
    console.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.dev.ConsoleRenderer()
            if pretty
            else structlog.processors.JSONRenderer(),
            foreign_pre_chain=shared,
        )
    )
    handlers.append(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processor=structlog.processors.JSONRenderer(), foreign_pre_chain=shared
            )
        )
        handlers.append(file_handler)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries' own notices are not this program's output: matplotlib's one-off "generated
    # new fontManager" on a machine's first validate would be a stray line among ours.
    for library in QUIET_LIBRARY_LOGGERS:
        logging.getLogger(library).setLevel(max(logging.WARNING, root.level))
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a module-level ``log`` proxy would otherwise freeze this configuration
        # on first use, and ``structlog.testing.capture_logs`` in a later test of the same
        # process would capture nothing. The daemon logs after replying, so the few
        # microseconds per call do not count against latency.
        cache_logger_on_first_use=False,
    )


def default_config_path() -> Path:
    """The config file read when neither ``--config`` nor ``$AITB_CONFIG`` names one:
    ``config.toml`` in the per-user config folder (``%LOCALAPPDATA%\\ai-trading-bridge``
    on Windows, ``~/.config/ai-trading-bridge`` on Linux,
    ``~/Library/Application Support/ai-trading-bridge`` on macOS)."""
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / CONFIG_FILE_NAME


def load_config_file(path: Path, group: click.Group) -> dict[str, Any]:
    """Read a config file into click's ``default_map`` shape, every key checked against the
    options of ``group`` and its commands.

    Raises:
        click.ClickException: unreadable file, invalid TOML, an unknown table or key, or a
            value the option cannot take; the message names the file and the key.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise click.ClickException(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise click.ClickException(f"config file {path} is not valid TOML: {exc}") from None
    defaults: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        command = group.commands.get(key) or group.commands.get(name)
        if command is not None:
            if not isinstance(value, dict):
                raise click.ClickException(
                    f"config file {path}: [{key}] must be a table of {key}'s options"
                )
            defaults[command.name or key] = {
                k.replace("-", "_"): v for k, v in _checked(path, command, value, f"{key}.").items()
            }
        elif isinstance(value, dict):
            tables = ", ".join(f"[{name}]" for name in sorted(group.commands))
            raise click.ClickException(
                f"config file {path}: unknown table [{key}] (known: {tables})"
            )
        else:
            defaults.update(_checked(path, group, {key: value}, ""))
    return defaults


def _checked(path: Path, command: click.Command, values: dict[str, Any], where: str) -> dict:
    """``values`` with relative paths made relative to the config file; unknown keys and
    values the option refuses raise a one-line ClickException."""
    # A key is the option's name or its flag without "--" (model_dirs or model-dir).
    options: dict[str, click.Option] = {}
    for p in command.params:
        if isinstance(p, click.Option) and p.name and p.name != "config_path":
            options[p.name] = p
            for opt in p.opts:
                if opt.startswith("--"):
                    options.setdefault(_option_key(opt), p)
    checked: dict[str, Any] = {}
    ctx = click.Context(command, info_name=command.name)
    for key, value in values.items():
        option = options.get(key.replace("-", "_"))
        if option is None:
            known = ", ".join(sorted(options)) or "none"
            raise click.ClickException(
                f"config file {path}: unknown key '{where}{key}' (known: {known})"
            )
        if option.multiple and isinstance(value, str):
            value = [value]  # one folder for a repeatable option
        if isinstance(option.type, click.Path) and isinstance(value, str):
            value = str(path.parent / Path(value).expanduser())  # absolute stays absolute
        elif isinstance(option.type, click.Path) and isinstance(value, list):
            value = [
                str(path.parent / Path(v).expanduser()) if isinstance(v, str) else v for v in value
            ]
        try:
            option.type_cast_value(ctx, value)
        except click.BadParameter as exc:
            raise click.ClickException(
                f"config file {path}: '{where}{key}' = {value!r}: {exc.message}"
            ) from None
        checked[option.name or key] = value
    return checked


def _read_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Eager ``--config`` callback: load the file into ``ctx.default_map`` before the
    other options are parsed, so flags and environment variables still win over it. A
    missing or bad file is a usage error naming --config (exit 2), as a bad flag is."""
    explicit = value is not None
    path = Path(value) if value is not None else default_config_path()
    if not explicit and not path.is_file():
        return None
    if explicit and not path.is_file():
        raise click.BadParameter(
            f"config file {path} does not exist (named by --config or ${CONFIG_ENV}); "
            "create it or give another path",
            param_hint="--config",
        )
    assert isinstance(ctx.command, click.Group)
    try:
        ctx.default_map = load_config_file(path, ctx.command)
    except click.ClickException as exc:  # bad input, as a bad flag: exit 2, one line
        raise click.BadParameter(exc.message, param_hint="--config") from None
    ctx.ensure_object(dict)["config_file"] = path
    return str(path)


class OneLineUsageError(click.UsageError):
    """A usage error shown as one line on stderr, ``error: WHAT; see 'COMMAND --help'``
    (click's own form is four: usage, hint, a blank line, the error). Exit code 2."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", file=file, err=file is None)


def one_line_usage_error(exc: click.UsageError) -> OneLineUsageError:
    """``exc`` as one line naming the option (or argument, or command) that was wrong and
    where the accepted values are listed."""
    message = exc.format_message()
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
        if exc.param_hint is not None:
            hints = [exc.param_hint] if isinstance(exc.param_hint, str) else exc.param_hint
            where = " / ".join(h.strip("'\"") for h in hints)
        elif isinstance(exc.param, click.Option):
            where = " / ".join(exc.param.opts)
        elif exc.param is not None:
            where = exc.param.human_readable_name
        else:
            where = ""
        message = f"{where}: {exc.message}" if where else exc.message
    message = one_line(message)
    message = message[:1].lower() + message[1:] if message[1:2].islower() else message
    if exc.ctx is not None:
        message = f"{message.rstrip('.')}; see '{exc.ctx.command_path} --help'"
    return OneLineUsageError(message, exc.ctx)


class OneLineErrorsGroup(click.Group):
    """The command group: a usage error of the group or of any subcommand (a bad choice,
    an unknown option or command, a missing argument, a refusal a command raises as
    ``click.UsageError``) prints one line and exits 2; any other ``click.ClickException``
    (a command that could not do its work) prints one line ``error: ...`` and exits 1,
    the README's "Errors and exit status"; running with no arguments still prints the
    help."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except OneLineUsageError:
            raise
        except click.UsageError as exc:
            raise one_line_usage_error(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:  # started() inside: a Ctrl+C right after it is caught below, not by click
            started()  # the imports are done: Ctrl+C is a KeyboardInterrupt again
            return super().invoke(ctx)
        except OneLineUsageError:
            raise
        except click.UsageError as exc:
            raise one_line_usage_error(exc) from None
        except click.ClickException as exc:  # a command that could not run: "error: ...", 1
            click.echo(f"error: {one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:  # one no command handled: one line, as at start-up
            click.echo(INTERRUPTED_LINE, err=True)
            sys.exit(INTERRUPTED_EXIT)
        except OSError as exc:  # e.g. an output folder that cannot be made: one line
            click.echo(f"error: {os_error_line(exc)}", err=True)
            sys.exit(1)


def one_line(message: str) -> str:
    """``message`` on one line: its lines joined, blank ones dropped."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def os_error_line(exc: OSError) -> str:
    """An operating-system error no command handled (``train --out`` or ``deploy
    --target`` under a file or a read-only folder) as what failed and what to do."""
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return reason
    return f"{exc.filename}: {reason}; check the path and that this user may write there"


@click.group(
    cls=OneLineErrorsGroup,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": ENV_PREFIX},
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar=CONFIG_ENV,
    is_eager=True,
    expose_value=False,
    callback=_read_config,
    help=f"TOML config file [${CONFIG_ENV}, else {CONFIG_FILE_NAME} in the user config folder].",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    envvar="AITB_LOG_LEVEL",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    help="Log level.",
)
@click.pass_context
def cli(ctx: click.Context, log_level: str) -> None:
    """Run a masked reinforcement-learning futures policy live from NinjaTrader 8."""
    ctx.ensure_object(dict)
    ctx.obj["log_level"] = log_level
    logging.getLogger().setLevel(log_level.upper())  # the sinks main() set up


def _register() -> None:
    from bridge.cli import COMMANDS as bridge_commands
    from env.cli import COMMANDS as env_commands
    from train.cli import COMMANDS as train_commands

    for command in (*env_commands, *train_commands, *bridge_commands):
        cli.add_command(command)
        _flag_named_envvars(command)


def _flag_named_envvars(command: click.Command) -> None:
    """An option whose flag is not its parameter's name (``--model-dir`` fills
    ``model_dirs``, ``--bars`` fills ``max_bars``) is read from the environment under
    both: ``AITB_SERVE_MODEL_DIR`` as the flag says, ``AITB_SERVE_MODEL_DIRS`` as
    click's automatic name has it."""
    for param in command.params:
        if not isinstance(param, click.Option) or param.envvar is not None or not param.name:
            continue
        flags = [_option_key(opt) for opt in param.opts if opt.startswith("--")]
        if flags and flags[0] != param.name:
            prefix = f"{ENV_PREFIX}_{(command.name or '').upper().replace('-', '_')}"
            param.envvar = [f"{prefix}_{flags[0].upper()}", f"{prefix}_{param.name.upper()}"]


def _option_key(flag: str) -> str:
    """``--model-dir`` -> ``model_dir``: a flag as a config-file key."""
    return flag.lstrip("-").replace("-", "_")


_register()


def main(args: list[str] | None = None, serve_when_bare: bool = False) -> None:
    """Console-script entry point; ``serve_when_bare`` runs ``serve`` when no argument is
    given (``python ai_trading_bridge.py``, as the retraining guide starts the bridge)."""
    from bridge.console import ensure_std_streams

    ensure_std_streams()  # closed streams, cp1252 consoles and redirected output
    # Log lines go to stderr (JSON lines unless on a terminal), so that stdout holds only
    # a command's results, which a script may read; the group applies --log-level, and
    # serve replaces this with its own queued sinks.
    configure_logging(None, "info")
    args = sys.argv[1:] if args is None else args
    if serve_when_bare and not args:
        args = ["serve"]
    cli.main(args=args, prog_name=APP_NAME, obj={})


if __name__ == "__main__":
    main(serve_when_bare=True)
