"""``ai-trading-bridge check``: the guide's pre-training validation."""

from __future__ import annotations

import traceback

import click


@click.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Run the retraining guide's four pre-training tests; exit 1 on any failure (one
    line per failed test; its traceback too with --log-level debug)."""
    from env.pretraining import SEED_TESTS

    debug = (ctx.obj or {}).get("log_level") == "debug"
    failed = 0
    for test in SEED_TESTS:
        try:
            test()
        except Exception as exc:  # report every failure, keep going
            failed += 1
            what = " ".join(str(exc).split()) or type(exc).__name__
            click.secho(f"❌ {test.__name__} FAILED: {what}", fg="red", err=True)
            if debug:
                click.echo(traceback.format_exc(), err=True)
    if failed:
        click.secho(f"❌ {failed} of {len(SEED_TESTS)} pre-training tests failed", fg="red")
        raise SystemExit(1)


COMMANDS = [check]
