"""Bar loaders: NinjaTrader 8 exports and CSV, and the error for every kind of bad line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from env import EnvConfig, TradingEnv
from env.bars import BarsFileError, check_bar, load_bars, save_bars_csv
from env.synthetic import generate_bars

DATA = Path(__file__).parent / "data"
NT_EXPORT = DATA / "NQ 12-25.Last.txt"


def test_ninjatrader_minute_export_loads_and_an_episode_runs() -> None:
    bars = load_bars(NT_EXPORT)
    assert len(bars) == 600
    assert str(bars.time[0]) == "2025-01-05T17:01:00"
    assert bars.close.dtype == np.float64
    env = TradingEnv(bars, EnvConfig(episode_bars=200))
    env.reset(seed=0)
    terminated = False
    while not terminated:
        _, _, terminated, _, _ = env.step(0 if env.position else 1)
    assert env.position == 0


def test_ninjatrader_daily_export_loads(tmp_path: Path) -> None:
    path = tmp_path / "NQ daily.txt"
    path.write_text(
        "20251105;21000;21250.5;20900;21100.25;512345\n20251106;21100;21200;21050;21150;498000\n"
    )
    bars = load_bars(path)
    assert [str(t) for t in bars.time] == ["2025-11-05T00:00:00", "2025-11-06T00:00:00"]
    assert bars.high[0] == 21250.5 and bars.volume[1] == 498000


def test_csv_roundtrip(tmp_path: Path) -> None:
    bars = generate_bars(n_days=1, seed=2)[:300]
    path = tmp_path / "bars.csv"
    save_bars_csv(bars, path)
    loaded = load_bars(path)
    for name in ("time", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(bars, name), getattr(loaded, name))


def test_csv_times_with_utc_or_offset_become_exchange_local(tmp_path: Path) -> None:
    path = tmp_path / "z.csv"
    path.write_text(
        "time,open,high,low,close,volume\n"
        "2025-11-07T14:31:00Z,1,2,0.5,1.5,3\n"
        "2025-11-07T09:32:00-05:00,1,2,0.5,1.5,3\n"
        "2025-11-07T08:33:00,1,2,0.5,1.5,3\n"
    )
    times = [str(t) for t in load_bars(path).time]
    assert times == ["2025-11-07T08:31:00", "2025-11-07T08:32:00", "2025-11-07T08:33:00"]
    utc = tmp_path / "utc.csv"
    utc.write_text("time,open,high,low,close,volume\n2025-11-07T14:31:00Z,1,2,0.5,1.5,3\n")
    assert str(load_bars(utc, exchange_tz="UTC").time[0]) == "2025-11-07T14:31:00"


GOOD = "20251107 143100;21000;21003;20998.5;21001.75;523"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("20251107 143200;21000;abc;20998.5;21001.75;523", "high 'abc' is not a number"),
        ("20251107 143200;21000;20990;20998.5;20995;523", "high 20990.0 is below low 20998.5"),
        ("20251107 143100;21000;21003;20998.5;21001.75;523", "is not after the previous"),
        ("20251107 143000;21000;21003;20998.5;21001.75;523", "is not after the previous"),
        ("20251107 143200;21000;21003;20998.5;nan;523", "close is not a finite number"),
        ("20251107 143200;21000;inf;20998.5;21001;523", "high is not a finite number"),
        ("20251107 143200;21000;21003;20998.5;21001.75;-5", "volume must be >= 0"),
        ("20251107 143200;21000;21003;20998.5;21001.75", "expected 6 fields"),
        ("2025-11-07 14:32;21000;21003;20998.5;21001.75;5", "is not yyyyMMdd HHmmss"),
        ("20251107 143200;21000;21003;21001;21001.75;5", "low 21001.0 is above min(open, close)"),
        ("20251107 143200;0;21003;20998.5;21001.75;5", "open must be > 0"),
    ],
)
def test_bad_line_error_names_file_line_and_problem(
    tmp_path: Path, line: str, problem: str
) -> None:
    path = tmp_path / "export.txt"
    path.write_text(f"{GOOD}\n{line}\n")
    with pytest.raises(BarsFileError) as info:
        load_bars(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: ")
    assert problem in message


def test_bad_csv_line_and_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        "time,open,high,low,close,volume\n2025-11-07T14:31:00,1,2,0.5,1.5,3\nnot-a-time,1,2,0.5,1.5,3\n"
    )
    with pytest.raises(BarsFileError, match=r"bars.csv:3: time 'not-a-time' is not an ISO-8601"):
        load_bars(path)
    other = tmp_path / "other.txt"
    other.write_text("Date Time Open High Low Close\n")
    with pytest.raises(BarsFileError, match=r"other\.txt:1: unknown format"):
        load_bars(other)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(BarsFileError, match="empty"):
        load_bars(tmp_path / "empty.txt")
    with pytest.raises(BarsFileError, match="cannot read"):
        load_bars(tmp_path / "missing.txt")


def test_check_bar_accepts_valid_and_flat_bars() -> None:
    assert check_bar(1.0, 1.0, 1.0, 1.0, 0.0) is None
    assert check_bar(21000, 21003, 20998.5, 21001.75, 523) is None


def test_synthetic_is_deterministic_valid_and_has_session_gaps() -> None:
    a, b = generate_bars(n_days=5, seed=9), generate_bars(n_days=5, seed=9)
    assert np.array_equal(a.close, b.close) and np.array_equal(a.volume, b.volume)
    assert not np.array_equal(a.close, generate_bars(n_days=5, seed=10).close)
    assert all(
        check_bar(o, h, lo, c, v) is None
        for o, h, lo, c, v in zip(a.open, a.high, a.low, a.close, a.volume)
    )
    steps = np.diff(a.time).astype(int)
    assert set(np.unique(steps)) >= {60, 3660}  # 1-minute bars and the 16:00-17:00 halt
    assert np.all(a.close % 0.25 == 0)
    minute = a.minute_of_day
    cash = (minute >= 8 * 60 + 30) & (minute < 15 * 60)
    ranges = a.high - a.low
    assert ranges[cash].mean() > 1.5 * ranges[~cash].mean()  # intraday seasonality
    assert a.volume[cash].mean() > 2.0 * a.volume[~cash].mean()
    returns = np.diff(np.log(a.close))
    abs_returns = np.abs(returns - returns.mean())
    lag1 = np.corrcoef(abs_returns[:-1], abs_returns[1:])[0, 1]
    assert lag1 > 0.1  # volatility clustering
