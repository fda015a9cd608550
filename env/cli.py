"""``ai-trading-bridge check``: the guide's pre-training validation."""

from __future__ import annotations

import traceback

import click


@click.command()
def check() -> None:
    """Run the retraining guide's four pre-training tests; exit 1 on any failure."""
    from env.pretraining import SEED_TESTS

    failed = 0
    for test in SEED_TESTS:
        try:
            test()
        except Exception as exc:  # report every failure, keep going
            failed += 1
            click.secho(f"❌ {test.__name__} FAILED: {exc}", fg="red", err=True)
            click.echo(traceback.format_exc(), err=True)
    if failed:
        click.secho(f"❌ {failed} of {len(SEED_TESTS)} pre-training tests failed", fg="red")
        raise SystemExit(1)


COMMANDS = [check]
