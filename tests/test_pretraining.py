"""The guide's section-5 tests, verbatim (collected from env.pretraining), and the CLI."""

from click.testing import CliRunner

from env.pretraining import (  # noqa: F401  (pytest collects these)
    test_action_masker_wrapper,
    test_action_masking,
    test_invalid_action_penalty,
    test_observation_space,
)


def test_check_cli_prints_guide_lines_and_exits_zero() -> None:
    from ai_trading_bridge import cli

    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 0, result.output
    for line in (
        "✅ FLAT action mask correct",
        "✅ LONG action mask correct",
        "✅ SHORT action mask correct",
        "✅ Invalid action penalty correct",
        "   Reward: -10.0",
        "✅ Observation shape correct: (228,)",
        "   Position features: [0. 1. 0. 0. 0. 1. 0. 0.]",
        "✅ ActionMasker wrapper working",
        "   Action mask: [1 1 1 0 0 0]",
    ):
        assert line in result.output


def test_check_cli_failure_exits_one_with_red_line(monkeypatch) -> None:
    import env.pretraining
    from ai_trading_bridge import cli

    def broken() -> None:
        raise AssertionError("FLAT mask wrong: [1 1 1 1 1 1]")

    monkeypatch.setattr(env.pretraining, "SEED_TESTS", (broken,))
    result = CliRunner().invoke(cli, ["check"], color=True)
    assert result.exit_code == 1
    assert "FLAT mask wrong" in result.output
    assert "\x1b[31m" in result.output  # the failure line is red


def test_check_cli_failure_is_one_line_traceback_only_at_debug(monkeypatch) -> None:
    import env.pretraining
    from ai_trading_bridge import cli

    def broken() -> None:
        raise AssertionError("FLAT mask wrong:\n[1 1 1 1 1 1]")

    monkeypatch.setattr(env.pretraining, "SEED_TESTS", (broken,))
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines() == ["❌ broken FAILED: FLAT mask wrong: [1 1 1 1 1 1]"]
    debug = CliRunner().invoke(cli, ["--log-level", "debug", "check"])
    assert debug.exit_code == 1 and "Traceback" in debug.stderr
