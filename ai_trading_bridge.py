"""ai-trading-bridge: the command line. Every subcommand lives in its package's ``cli``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, TextIO

import click
import structlog


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    envvar="AITB_LOG_LEVEL",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Log level.",
)
@click.pass_context
def cli(ctx: click.Context, log_level: str) -> None:
    """Run a masked reinforcement-learning futures policy live from NinjaTrader 8."""
    ctx.ensure_object(dict)
    ctx.obj["log_level"] = log_level


def _register() -> None:
    from bridge.cli import COMMANDS as bridge_commands
    from env.cli import COMMANDS as env_commands
    from train.cli import COMMANDS as train_commands

    for command in (*env_commands, *train_commands, *bridge_commands):
        cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    from bridge.console import ensure_std_streams

    ensure_std_streams()  # closed streams, cp1252 consoles and redirected output
    cli(obj={})


if __name__ == "__main__":
    main()
