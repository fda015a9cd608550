"""Real public series shipped in PyPI packages (``pypi:arch/sp500``, ``pypi:arch/nasdaq``,
``pypi:gym-anytrading/eurusd``): loading, the contract they stand for, their time zone
and sessions, and train + validate end to end at a tiny budget."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from click.testing import CliRunner

from ai_trading_bridge import cli
from env.bars import Bars, BarsFileError, BarsTimezoneWarning, load_bars, utc_seconds
from env.contracts import resolve_contract
from env.periods import BarPeriod, default_episode_bars
from env.public_series import SERIES, PublicSeries, series_file
from env.sessions import SessionCalendar
from env.trading_env import EnvConfig, TradingEnv
from train.backtest import periods_per_year
from train.training import split_bars

SP500 = "pypi:arch/sp500"
NASDAQ = "pypi:arch/nasdaq"
EURUSD = "pypi:gym-anytrading/eurusd"
CHICAGO = ZoneInfo("America/Chicago")
TINY = [
    "--timesteps",
    "1024",
    "--n-steps",
    "512",
    "--n-envs",
    "2",
    "--eval-every",
    "0",
    "--checkpoint-every",
    "0",
    "--validate-episodes",
    "10",
    "--no-progress",
]


def _rows(source: str) -> list[dict[str, str]]:
    """The installed file's rows, read with the standard library (not the loader)."""
    path, _ = series_file(SERIES[source.removeprefix("pypi:")])
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sp500() -> Bars:
    return load_bars(SP500)


@pytest.fixture(scope="module")
def eurusd() -> Bars:
    return load_bars(EURUSD)


@pytest.mark.parametrize("source", [SP500, NASDAQ])
def test_daily_index_loads_every_bar_as_trading_dates(source: str) -> None:
    bars = load_bars(source)
    rows = _rows(source)
    assert len(bars) == len(rows) == 5031
    assert bars.bar_period == BarPeriod("day", 1)
    assert str(bars.time[0]) == "1999-01-04T00:00:00"
    assert str(bars.time[-1]) == "2018-12-31T00:00:00"
    assert bars.source.startswith(source + "@")
    for i in (0, 2500, -1):
        row = rows[i]
        assert bars.time[i] == np.datetime64(datetime.strptime(row["Date"], "%m/%d/%Y"), "s")
        assert (bars.open[i], bars.high[i], bars.low[i], bars.close[i]) == tuple(
            float(row[k]) for k in ("Open", "High", "Low", "Close")
        )
        assert bars.volume[i] == float(row["Volume"])


def test_eurusd_times_become_chicago_bar_closes_on_cme_hours(eurusd: Bars) -> None:
    rows = _rows(EURUSD)
    assert len(rows) == 6225
    assert len(eurusd) == 5883  # 342 bars closed in the CME halt or on a holiday
    assert eurusd.bar_period == BarPeriod("minute", 60)
    assert eurusd.timezone == "America/Chicago" and eurusd.data_timezone == "UTC"
    assert str(eurusd.time[0]) == "2017-01-02T18:00:00"
    assert str(eurusd.time[-1]) == "2017-12-29T16:00:00"
    # File times are UTC bar opens: the bar opening 13:00 UTC on 3 July (CDT, UTC-5)
    # closes 09:00 Chicago; on 3 January (CST, UTC-6) it closes 08:00.
    by_time = {str(t): i for i, t in enumerate(eurusd.time)}
    for stamp, expected in (
        ("03.07.2017 13:00:00.000", "2017-07-03T09:00:00"),
        ("03.01.2017 13:00:00.000", "2017-01-03T08:00:00"),
    ):
        row = next(r for r in rows if r["Time"] == stamp)
        i = by_time[expected]
        assert eurusd.close[i] == float(row["Close"]) and eurusd.open[i] == float(row["Open"])
        opened = datetime.strptime(stamp, "%d.%m.%Y %H:%M:%S.%f").replace(tzinfo=timezone.utc)
        closed = (opened + timedelta(hours=1)).astimezone(CHICAGO).replace(tzinfo=None)
        assert closed.isoformat() == expected


def test_eurusd_every_bar_closes_inside_a_6e_session(eurusd: Bars) -> None:
    spec = resolve_contract("6E")
    calendar = SessionCalendar.for_contract(spec, "2016-12-01", "2018-01-31")
    minutes = calendar.minutes_to_close_array(utc_seconds(eurusd))
    assert np.isfinite(minutes).all()
    hours = (eurusd.minute_of_day // 60).tolist()
    assert 17 not in hours  # the 16:00-17:00 CT halt bar is gone
    assert hours.count(16) > 200  # the bar closing at the 16:00 close stays


@pytest.mark.parametrize(
    ("source", "symbol", "per_year", "per_session"),
    [(SP500, "ES", 252.0, 1.0), (NASDAQ, "NQ", 252.0, 1.0), (EURUSD, "6E", 252.0 * 23, 23.0)],
)
def test_world_defaults_fit_each_series(
    source: str, symbol: str, per_year: float, per_session: float
) -> None:
    bars = load_bars(source)
    assert default_episode_bars(bars.bar_period) == 60
    split = split_bars(bars, 0.2, 60)
    assert split.split == round(len(bars) * 0.8)
    year, _, session = periods_per_year(bars.time)
    assert (year, session) == (per_year, per_session)
    env = TradingEnv(bars, EnvConfig(instrument=resolve_contract(symbol)))
    obs, _ = env.reset(seed=1)
    assert obs.shape == (228,) and np.isfinite(obs).all()


def test_series_refuses_a_contract_of_another_underlying() -> None:
    with pytest.raises(BarsFileError, match=r"trade it as 6E or M6E \(--instrument 6E\), not NQ"):
        load_bars(EURUSD, contract=resolve_contract("NQ"))
    assert len(load_bars(SP500, contract=resolve_contract("MES"))) == 5031
    assert len(load_bars(NASDAQ, contract=resolve_contract("MNQ"))) == 5031
    with pytest.raises(BarsFileError, match=r"trade it as NQ or MNQ \(--instrument NQ\), not ES"):
        load_bars(NASDAQ, contract=resolve_contract("ES"))
    with pytest.raises(BarsFileError, match="known to be UTC"):
        load_bars(EURUSD, data_timezone="America/New_York")


def test_series_refuses_another_bar_period_and_keeps_its_own() -> None:
    with pytest.raises(BarsFileError, match=r"has bars of 1 day \(day:1\), not 5 minutes"):
        load_bars(SP500, bar_period=BarPeriod("minute", 5))
    with pytest.raises(BarsFileError, match=r"\(minute:60\), not 1 day; drop the bar period"):
        load_bars(EURUSD, bar_period=BarPeriod("day", 1))
    assert load_bars(EURUSD, bar_period=BarPeriod("minute", 60)).bar_period == BarPeriod(
        "minute", 60
    )


@pytest.mark.parametrize("command", ["train", "walkforward"])
@pytest.mark.parametrize(("source", "given"), [(SP500, "minute:5"), (EURUSD, "day:1")])
def test_cli_refuses_a_bar_period_other_than_the_series_in_one_line(
    tmp_path: Path, command: str, source: str, given: str
) -> None:
    out = tmp_path / "out"
    args = [command, "--data", source, "--bar-period", given, "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and result.stdout == ""  # bad input, naming the option
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --bar-period: "), result.output
    assert "drop the bar period (--bar-period" in lines[0], result.output
    assert not (out / "model.json").exists() and not (out / "walkforward.json").exists()


def test_missing_package_is_one_line_with_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absent = PublicSeries(
        name="no-such-dist-xyz/prices",
        distribution="no-such-dist-xyz",
        resource="no_such_dist_xyz/prices.csv",
        description="nothing",
        license="none",
        contract="ES",
        proxies=("ES",),
        time_column="Date",
        time_format="%Y-%m-%d",
        columns=("Open", "High", "Low", "Close", "Volume"),
        data_timezone="UTC",
    )
    monkeypatch.setitem(SERIES, absent.name, absent)
    with pytest.raises(BarsFileError, match=r"pip install 'ai-trading-bridge\[realdata\]'"):
        load_bars("pypi:no-such-dist-xyz/prices")
    result = CliRunner().invoke(
        cli, ["train", "--data", "pypi:no-such-dist-xyz/prices", "--out", str(tmp_path / "b")]
    )
    assert result.exit_code == 2 and result.stderr.startswith("error: --data: ")
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "'no-such-dist-xyz' package, which is not installed" in lines[0]
    assert "pip install 'ai-trading-bridge[realdata]'" in lines[0]
    assert not (tmp_path / "b" / "model.zip").exists()


def test_unknown_series_name_lists_the_known_ones(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", "--data", "pypi:arch/sp501", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown public series" in result.output and SP500 in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("source", "symbol", "per_year"),
    [(SP500, "ES", 252.0), (NASDAQ, "NQ", 252.0), (EURUSD, "6E", 5796.0)],
)
def test_train_and_validate_end_to_end(
    tmp_path: Path, source: str, symbol: str, per_year: float
) -> None:
    out = tmp_path / "bundle"
    result = CliRunner().invoke(cli, ["train", "--data", source, "--out", str(out), *TINY])
    assert result.exit_code in (0, 3), result.output  # 3: the tiny model failed its validation
    card = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert card["env"]["instrument"]["symbol"] == symbol  # the series' contract by default
    assert card["version"].startswith(symbol + "-")
    assert card["data"]["source"].startswith(source + "@")
    path, _ = series_file(SERIES[source.removeprefix("pypi:")])
    assert card["data"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["env"]["episode_bars"] == 60

    # validate re-reads the held-out span from the card's source
    report_dir = tmp_path / "report"
    args = ["validate", str(out), "--episodes", "10", "--report-dir", str(report_dir)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 3), result.output
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    backtest = report["backtest"]
    assert backtest["data"] == card["data"]["source"]
    assert backtest["periods_per_year"] == per_year
    assert backtest["costs"]["instrument"] == symbol
    assert backtest["span"]["first_decision"] == card["data"]["holdout_start"]

    # and an explicit --data of the same series gives the same backtest span end
    result = CliRunner().invoke(cli, [*args[:4], "--data", source, "--report-dir", str(tmp_path)])
    assert result.exit_code in (0, 3), result.output


def test_walkforward_takes_a_public_series(tmp_path: Path) -> None:
    out = tmp_path / "wf"
    args = ["walkforward", "--data", SP500, "--out", str(out), "--folds", "1", "--seeds", "1"]
    args += ["--timesteps", "512", "--n-steps", "256", "--n-envs", "2", "--validate-episodes", "4"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 3), result.output
    report = json.loads((out / "walkforward.json").read_text(encoding="utf-8"))
    assert report["data"].startswith(SP500 + "@")
    job = report["jobs"][0]
    card = json.loads((Path(job["bundle"]) / "model.json").read_text(encoding="utf-8"))
    assert card["env"]["instrument"]["symbol"] == "ES"
    # No --bar-period, no --episode-bars: the series' daily period and its episode length.
    assert card["data"]["bar_period"] == {"type": "day", "value": 1}
    assert card["env"]["episode_bars"] == default_episode_bars(BarPeriod("day", 1)) == 60


def test_spot_bars_in_the_cme_halt_warn_and_the_env_runs_through_them(tmp_path: Path) -> None:
    """The same spot series as a plain CSV (all 24 hours, UTC closes): the loader warns
    that bars close while 6E is shut, and the env trades through them: a position never
    lives across the halt."""
    rows = _rows(EURUSD)[:800]
    path = tmp_path / "eurusd_utc.csv"
    with open(path, "w", encoding="utf-8") as f:
        f.write("time,open,high,low,close,volume\n")
        for r in rows:
            opened = datetime.strptime(r["Time"], "%d.%m.%Y %H:%M:%S.%f")
            closed = (opened + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            f.write(f"{closed},{r['Open']},{r['High']},{r['Low']},{r['Close']},{r['Volume']}\n")
    spec = resolve_contract("6E")
    with pytest.warns(BarsTimezoneWarning, match="6E's calendar"):
        bars = load_bars(path, contract=spec)
    assert len(bars) == 800
    env = TradingEnv(bars, EnvConfig(instrument=spec, episode_bars=700))
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    halt = bars.minute_of_day == 17 * 60
    crossed = 0
    while True:
        mask = env.action_masks()
        action = int(rng.choice(np.flatnonzero(mask)))
        _, reward, terminated, truncated, _ = env.step(action)
        assert np.isfinite(reward)
        if halt[env.t]:
            crossed += 1
            assert env.position == 0  # flat at the close of the bar that ends in the halt
        if terminated or truncated:
            break
    assert crossed > 10


def test_daily_dates_off_the_calendar_warn(sp500: Bars) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", BarsTimezoneWarning)
        load_bars(SP500)  # NYSE trading dates are CME equity session dates
        load_bars(NASDAQ)  # and so are Nasdaq's
    shifted = Bars(
        sp500.time - np.timedelta64(1, "D"),
        sp500.open,
        sp500.high,
        sp500.low,
        sp500.close,
        sp500.volume,
        source="shifted",
    )
    from env.bars import warn_if_outside_sessions

    with pytest.warns(BarsTimezoneWarning, match="dated on days with no session"):
        share = warn_if_outside_sessions(shifted, resolve_contract("ES"))
    assert 0.15 < share < 0.25  # Mondays moved to Sundays
