"""Zone names from the user in any case (IANA names are case-sensitive on Linux and not
on Windows), and one line naming an unknown one with the closest known names."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ai_trading_bridge import cli
from bridge.config import ConfigError, ServeConfig
from env.bars import BarsFileError, load_bars
from env.contracts import resolve_contract
from env.timezones import canonical_zone
from train.config import TrainConfig

CSV = "time,open,high,low,close,volume\n2025-07-07T14:31:00,1,2,0.5,1.5,3\n"


@pytest.mark.parametrize(
    ("typed", "iana"),
    [
        ("utc", "UTC"),
        ("UTC", "UTC"),
        ("america/chicago", "America/Chicago"),
        ("AMERICA/CHICAGO", "America/Chicago"),
        ("europe/berlin", "Europe/Berlin"),
        (" America/New_York ", "America/New_York"),
    ],
)
def test_canonical_zone_any_case_gives_the_iana_spelling(typed: str, iana: str) -> None:
    assert canonical_zone(typed) == iana


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [("Chicago", "America/Chicago"), ("Amerca/Chicago", "America/Chicago"), ("UTX", "UTC")],
)
def test_canonical_zone_unknown_name_suggests_close_ones(typed: str, suggested: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone") as caught:
        canonical_zone(typed)
    message = str(caught.value)
    assert "\n" not in message and repr(typed) in message and f"'{suggested}'" in message


@pytest.mark.parametrize("typed", ["Z", "z", " Z "])
def test_canonical_zone_z_suggests_utc_not_nz(typed: str) -> None:
    """Z is ISO 8601's UTC designator (14:30Z); by spelling alone it is nearest NZ."""
    with pytest.raises(ValueError, match="unknown time zone") as caught:
        canonical_zone(typed)
    message = str(caught.value)
    assert "did you mean 'UTC'?" in message and "NZ" not in message and "\n" not in message


def test_load_bars_reads_a_lowercase_data_timezone_as_the_zone(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(CSV)
    bars = load_bars(path, data_timezone="utc", exchange_tz="america/chicago", check_sessions=False)
    assert str(bars.time[0]) == "2025-07-07T09:31:00"  # CDT is UTC-5 in July
    assert (bars.data_timezone, bars.timezone) == ("UTC", "America/Chicago")
    with pytest.raises(BarsFileError, match=r"bars\.csv: unknown time zone 'Mars/Base'"):
        load_bars(path, data_timezone="Mars/Base", check_sessions=False)


def test_configs_store_the_iana_spelling() -> None:
    assert TrainConfig(data_timezone="america/chicago").data_timezone == "America/Chicago"
    assert ServeConfig(exchange_tz="america/new_york").exchange_tz == "America/New_York"
    assert resolve_contract("NQ", {}).timezone == "America/Chicago"
    with pytest.raises(ConfigError, match="--exchange-tz: unknown time zone 'Nowhere'"):
        ServeConfig(exchange_tz="Nowhere")


def test_train_cli_unknown_data_timezone_is_one_line_usage_error() -> None:
    result = CliRunner().invoke(cli, ["train", "--out", "o", "--data-timezone", "america/chicagoo"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --data-timezone: ")
    assert "did you mean 'America/Chicago'" in lines[0]


@pytest.mark.parametrize(
    ("typed", "region"),
    [
        ("est", "America/New_York"),
        ("EST", "America/New_York"),
        ("cst", "America/Chicago"),
        ("CDT", "America/Chicago"),
        ("pst", "America/Los_Angeles"),
    ],
)
def test_a_us_abbreviation_is_refused_with_its_region(typed: str, region: str) -> None:
    """'est' was read as the database's fixed UTC-5 'EST': an hour off all summer."""
    with pytest.raises(ValueError, match="ambiguous time zone") as caught:
        canonical_zone(typed)
    assert f"'{region}'" in str(caught.value) and "\n" not in str(caught.value)
