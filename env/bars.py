"""OHLCV bar series and the loaders for NinjaTrader 8 exports and CSV files."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from env.periods import MINUTE_1, BarPeriod, detect_bar_period

# Exchange-local wall clock of the training data (CME Globex). Naive times are taken as
# exchange-local; times with ``Z`` or an offset are converted to this zone.
EXCHANGE_TZ = "America/Chicago"


class BarsFileError(ValueError):
    """A bar file that cannot be used; the message names the file, the line and the problem."""


@dataclass(frozen=True, eq=False)
class Bars:
    """A time-ordered OHLCV series.

    Attributes:
        time: ``datetime64[s]`` close time of each bar, exchange-local, strictly increasing.
        open, high, low, close, volume: float64 arrays of the same length.
        source: Where the bars came from (a path or a generator description).
        timezone: IANA zone of the wall clock ``time`` is in (the contract's exchange
            zone; times in a file in another zone are converted on loading).
        bar_period: What one bar spans; detected from the spacing of ``time`` when not
            given (one minute for a series too short to tell).
    """

    time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    source: str = ""
    timezone: str = EXCHANGE_TZ
    bar_period: BarPeriod = None  # type: ignore[assignment]  # set in __post_init__

    def __post_init__(self) -> None:
        if self.bar_period is None:
            period = detect_bar_period(self.time) if len(self.time) >= 2 else MINUTE_1
            object.__setattr__(self, "bar_period", period)

    def __len__(self) -> int:
        return len(self.close)

    def __getitem__(self, index: slice) -> Bars:
        if not isinstance(index, slice):
            raise TypeError("Bars supports slicing only, e.g. bars[100:200]")
        return Bars(
            self.time[index],
            self.open[index],
            self.high[index],
            self.low[index],
            self.close[index],
            self.volume[index],
            self.source,
            self.timezone,
            self.bar_period,
        )

    @property
    def minute_of_day(self) -> np.ndarray:
        """Minute of the day (0..1439) of each bar's close time."""
        seconds = (self.time - self.time.astype("datetime64[D]")).astype(np.int64)
        return seconds // 60


def check_bar(open_: float, high: float, low: float, close: float, volume: float) -> str | None:
    """Return what is wrong with one bar's values, or None if it is a valid bar.

    Shared by the file loaders and the daemon's message validation.
    """
    for name, value in (("open", open_), ("high", high), ("low", low), ("close", close)):
        if not math.isfinite(value):
            return f"{name} is not a finite number ({value!r})"
        if value <= 0:
            return f"{name} must be > 0, got {value!r}"
    if not math.isfinite(volume):
        return f"volume is not a finite number ({volume!r})"
    if volume < 0:
        return f"volume must be >= 0, got {volume!r}"
    if high < low:
        return f"high {high!r} is below low {low!r}"
    if low > min(open_, close):
        return f"low {low!r} is above min(open, close) {min(open_, close)!r}"
    if high < max(open_, close):
        return f"high {high!r} is below max(open, close) {max(open_, close)!r}"
    return None


_NT_TIME_FORMATS = {15: "%Y%m%d %H%M%S", 8: "%Y%m%d"}


def _parse_number(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} {text.strip()!r} is not a number") from None


def _parse_time(text: str, ninjatrader: bool, zone: ZoneInfo) -> datetime:
    text = text.strip()
    if ninjatrader:
        fmt = _NT_TIME_FORMATS.get(len(text))
        if fmt is None:
            raise ValueError(f"time {text!r} is not yyyyMMdd HHmmss or yyyyMMdd")
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            raise ValueError(f"time {text!r} is not yyyyMMdd HHmmss or yyyyMMdd") from None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"time {text!r} is not an ISO-8601 time") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(zone)
    return parsed.replace(tzinfo=None)


def load_bars(path: str | Path, exchange_tz: str = EXCHANGE_TZ) -> Bars:
    """Load bars from a NinjaTrader 8 text export or a CSV file.

    Formats (detected from the first line):

    - NinjaTrader 8 minute export: ``yyyyMMdd HHmmss;open;high;low;close;volume``
    - NinjaTrader 8 daily export: ``yyyyMMdd;open;high;low;close;volume``
    - CSV with the header ``time,open,high,low,close,volume`` and ISO-8601 times; a time
      with ``Z`` or an offset is converted to ``exchange_tz`` (naive times are taken as
      exchange-local, as NinjaTrader exports are).

    Raises:
        BarsFileError: naming the file, the line number and the problem. Nothing is
            returned from a file with any bad line.
    """
    path = Path(path)
    zone = ZoneInfo(exchange_tz)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BarsFileError(f"{path}: cannot read bars: {exc}") from None
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise BarsFileError(f"{path}: file is empty; expected OHLCV bars")

    header = [c.strip().lower() for c in lines[first].split(",")]
    if header == ["time", "open", "high", "low", "close", "volume"]:
        separator, ninjatrader, start = ",", False, first + 1
    elif ";" in lines[first]:
        separator, ninjatrader, start = ";", True, first
    else:
        raise BarsFileError(
            f"{path}:{first + 1}: unknown format; expected a NinjaTrader 8 export "
            "'yyyyMMdd HHmmss;open;high;low;close;volume' or a CSV with the header "
            "'time,open,high,low,close,volume'"
        )

    times: list[datetime] = []
    values: list[tuple[float, float, float, float, float]] = []
    for number, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            continue
        try:
            time, row = _parse_line(line, separator, ninjatrader, zone)
        except ValueError as exc:
            raise BarsFileError(f"{path}:{number}: {exc}") from None
        if times and time <= times[-1]:
            raise BarsFileError(
                f"{path}:{number}: time {time.isoformat()} is not after the previous "
                f"bar's {times[-1].isoformat()}; bars must be in increasing time order"
            )
        times.append(time)
        values.append(row)
    if not values:
        raise BarsFileError(f"{path}: no bars found")

    array = np.array(values, dtype=np.float64)
    return Bars(
        time=np.array(times, dtype="datetime64[s]"),
        open=array[:, 0].copy(),
        high=array[:, 1].copy(),
        low=array[:, 2].copy(),
        close=array[:, 3].copy(),
        volume=array[:, 4].copy(),
        source=str(path),
    )


def _parse_line(
    line: str, separator: str, ninjatrader: bool, zone: ZoneInfo
) -> tuple[datetime, tuple[float, float, float, float, float]]:
    fields = line.split(separator)
    if len(fields) != 6:
        raise ValueError(
            f"expected 6 fields (time, open, high, low, close, volume), got {len(fields)}"
        )
    time = _parse_time(fields[0], ninjatrader, zone)
    names = ("open", "high", "low", "close", "volume")
    o, h, lo, c, v = (_parse_number(text, name) for text, name in zip(fields[1:], names))
    problem = check_bar(o, h, lo, c, v)
    if problem:
        raise ValueError(problem)
    return time, (o, h, lo, c, v)


def save_bars_csv(bars: Bars, path: str | Path) -> None:
    """Write bars as a ``time,open,high,low,close,volume`` CSV (round-trips with load_bars)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("time,open,high,low,close,volume\n")
        for t, o, h, lo, c, v in zip(
            bars.time.astype(str).tolist(),
            bars.open.tolist(),
            bars.high.tolist(),
            bars.low.tolist(),
            bars.close.tolist(),
            bars.volume.tolist(),
        ):
            f.write(f"{t},{o!r},{h!r},{lo!r},{c!r},{v!r}\n")
