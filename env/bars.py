"""OHLCV bar series and the loaders for NinjaTrader 8 exports and CSV files."""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np

from env.periods import MINUTE_1, BarPeriod, detect_bar_period
from env.timezones import canonical_zone

if TYPE_CHECKING:
    from env.contracts import ContractSpec

# Exchange-local wall clock of CME Globex, the default zone of bar times.
EXCHANGE_TZ = "America/Chicago"


class BarsFileError(ValueError):
    """A bar file that cannot be used; the message names the file, the line and the problem."""


class NoBarsError(BarsFileError):
    """A bar file with no bars at all (empty, or a header alone): the wrong file was
    given, rather than a bad line in the right one."""


class DataOptionError(BarsFileError):
    """Data that is readable but does not fit an option given with it (a public series'
    bar period, data time zone or contract); ``option`` is the flag to change."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # pickled by Ray's workers
        return type(self), (str(self), self.option)


class TooFewBarsError(ValueError):
    """Bars that cannot hold one episode (with its warm-up): the data given is too short
    for the episode length asked for."""


class PriceScaleError(ValueError):
    """Bars whose prices are on another scale than the contract they are traded as (a
    6E file trained as NQ): every order, stop and R-multiple would be meaningless."""


# The median bar range, in ticks of the traded contract, outside which the bars cannot
# be that contract's: under one tick, the contract could not express a typical bar (6E's
# 0.0015 against NQ's 0.25); over this many, it would be a price far finer than any
# contract's (NQ's 10 points in 6E's 0.00005 ticks is 200,000). Real futures bars, from
# 1-minute to daily, lie between a few ticks and a few thousand.
MAX_MEDIAN_RANGE_TICKS = 20_000


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
        data_timezone: Zone the source's naive times were read in (``"UTC"`` for a
            NinjaTrader export), recorded in the model card; empty when unknown.
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
    data_timezone: str = ""

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
            self.data_timezone,
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
_NT_TIME = re.compile(r"^\s*\d{8}( \d{6})?\s*$")
_COMMA_DECIMAL = re.compile(r"^\s*[-+]?\d+,\d+\s*$")
_HEADER = ["time", "open", "high", "low", "close", "volume"]

# NinjaTrader 8 writes its exports in UTC (NT8 help guide, "Importing": "exports are
# always done in UTC"); the export's naive times are read in this zone unless told.
NINJATRADER_EXPORT_TZ = "UTC"

# Share of intraday bars that may close while the calendar says the market is closed
# (a few odd prints, a settlement bar) before the loader warns about the time zone.
OUT_OF_SESSION_WARN_FRACTION = 0.02


class BarsTimezoneWarning(UserWarning):
    """Bars that close when the contract's calendar says the market is closed."""


def _parse_number(text: str, name: str, decimal_comma: bool) -> float:
    if decimal_comma and _COMMA_DECIMAL.match(text):
        text = text.replace(",", ".")
    try:
        return float(text)
    except ValueError:
        hint = ""
        if _COMMA_DECIMAL.match(text):
            hint = "; comma decimals need a ';'-separated file (or write '.' decimals)"
        raise ValueError(f"{name} {text.strip()!r} is not a number{hint}") from None


def _parse_time(text: str, ninjatrader: bool, source: ZoneInfo, target: ZoneInfo) -> datetime:
    """Wall-clock time in ``target`` of a file time; naive times are in ``source``."""
    text = text.strip()
    if ninjatrader:
        fmt = _NT_TIME_FORMATS.get(len(text))
        if fmt is None:
            raise ValueError(f"time {text!r} is not yyyyMMdd HHmmss or yyyyMMdd")
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            raise ValueError(f"time {text!r} is not yyyyMMdd HHmmss or yyyyMMdd") from None
        if len(text) == 8:
            return parsed  # a daily bar is a trading date, in no zone
    else:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"time {text!r} is not an ISO-8601 time") from None
        if parsed.tzinfo is None and len(text) <= 10:
            return parsed  # a date alone: a daily bar
    if parsed.tzinfo is None:
        if source is target:
            return parsed
        parsed = parsed.replace(tzinfo=source)
    return parsed.astimezone(target).replace(tzinfo=None)


def _read_text(path: Path) -> str:
    """The file's text: UTF-8 (with or without BOM) or UTF-16 (a PowerShell ``>``
    redirect writes UTF-16 LE with a BOM), detected from the bytes."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BarsFileError(f"{path}: cannot read bars: {exc.strerror or exc}") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    elif len(raw) >= 4 and raw[1:4:2] == b"\x00\x00" and raw[0:1] != b"\x00":
        encoding = "utf-16-le"  # UTF-16 without a BOM: every other byte is 0
    else:
        encoding = "utf-8-sig"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BarsFileError(
            f"{path}:{line}: byte {exc.start} is not {encoding} text; save the file as UTF-8 "
            "(NinjaTrader's Export does; in PowerShell use Out-File -Encoding utf8)"
        ) from None


def load_bars(
    path: str | os.PathLike[str],
    exchange_tz: str | None = None,
    *,
    contract: ContractSpec | None = None,
    data_timezone: str | None = None,
    bar_period: BarPeriod | None = None,
    check_sessions: bool = True,
) -> Bars:
    """Load bars from a NinjaTrader 8 text export or a CSV file.

    Formats (detected from the first line; UTF-8 or UTF-16 text):

    - NinjaTrader 8 minute export: ``yyyyMMdd HHmmss;open;high;low;close;volume``
      (comma decimals, as a European-locale PC writes them, are read too).
    - NinjaTrader 8 daily export: ``yyyyMMdd;open;high;low;close;volume``
    - CSV with the header ``time,open,high,low,close,volume`` (or ``;``-separated, then
      comma decimals are allowed) and ISO-8601 times.

    Time zones. Bar times come out as the wall clock of ``exchange_tz`` (default: the
    contract's exchange zone, America/Chicago for CME Globex):

    - NinjaTrader exports are read as UTC (NinjaTrader writes exports in UTC, NT8 help
      guide "Importing"); ``data_timezone`` says otherwise for a file written elsewhere.
    - CSV times with ``Z`` or an offset are honoured; naive CSV times are in
      ``data_timezone`` if given, else already in the exchange zone.
    - Daily bars (a date only) are trading dates, not converted.

    ``pypi:PACKAGE/SERIES`` (e.g. ``pypi:arch/sp500``) loads a real public series from an
    installed package instead (``env.public_series``; its contract by default).

    Args:
        path: The file, or a public series' name.
        exchange_tz: Zone of the returned times; default ``contract.timezone``.
        contract: The traded contract (zone and session calendar); default NQ.
        data_timezone: IANA zone of the file's naive times (see above).
        bar_period: The bar period; default detected from the spacing.
        check_sessions: Warn (``BarsTimezoneWarning``) when intraday bars close while
            the contract's calendar says the market is closed: the cheap way to catch a
            file read in the wrong zone.

    Raises:
        BarsFileError: one line naming the file, the line number, the problem and the
            fix. Nothing is returned from a file with any bad line.
        NoBarsError: (a BarsFileError) the file holds no bars at all.
    """
    from env.contracts import resolve_contract
    from env.public_series import is_public_source, load_public_series

    if is_public_source(path):
        return load_public_series(
            str(path),
            exchange_tz,
            contract=contract,
            data_timezone=data_timezone,
            bar_period=bar_period,
            check_sessions=check_sessions,
        )
    path = Path(path)
    spec = contract or resolve_contract("NQ")
    try:
        target_name = canonical_zone(exchange_tz or spec.timezone)
        if data_timezone is not None:
            data_timezone = canonical_zone(data_timezone)
    except ValueError as exc:
        raise BarsFileError(f"{path}: {exc}") from None
    target = ZoneInfo(target_name)
    lines = _read_text(path).splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise NoBarsError(f"{path} holds no bars (the file is empty); give a file of OHLCV bars")

    head = lines[first]
    separator = ";" if ";" in head else ","
    header = [c.strip().lower() for c in head.split(separator)]
    if header == _HEADER:
        ninjatrader, start = False, first + 1
        source_name = data_timezone or target_name
    elif separator == ";" and _NT_TIME.match(head.split(";")[0]):
        ninjatrader, start = True, first
        source_name = data_timezone or NINJATRADER_EXPORT_TZ
    else:
        raise BarsFileError(
            f"{path}:{first + 1}: unknown format; expected a NinjaTrader 8 export "
            "'yyyyMMdd HHmmss;open;high;low;close;volume' or a CSV with the header "
            "'time,open,high,low,close,volume'"
        )
    source = target if source_name == target_name else ZoneInfo(source_name)
    decimal_comma = separator == ";"

    times: list[datetime] = []
    values: list[tuple[float, float, float, float, float]] = []
    for number, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            continue
        try:
            time, row = _parse_line(line, separator, ninjatrader, source, target, decimal_comma)
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
        raise NoBarsError(
            f"{path} holds no bars (line {first + 1} is a header and no bar follows); "
            "give a file of OHLCV bars"
        )

    array = np.array(values, dtype=np.float64)
    bars = Bars(
        time=np.array(times, dtype="datetime64[s]"),
        open=array[:, 0].copy(),
        high=array[:, 1].copy(),
        low=array[:, 2].copy(),
        close=array[:, 3].copy(),
        volume=array[:, 4].copy(),
        source=str(path),
        timezone=target_name,
        bar_period=bar_period,  # type: ignore[arg-type]  # None: detected
        data_timezone=source_name,
    )
    if check_sessions:
        warn_if_outside_sessions(bars, spec)
    return bars


def _parse_line(
    line: str,
    separator: str,
    ninjatrader: bool,
    source: ZoneInfo,
    target: ZoneInfo,
    decimal_comma: bool,
) -> tuple[datetime, tuple[float, float, float, float, float]]:
    fields = line.split(separator)
    if len(fields) != 6:
        hint = ""
        if separator == "," and len(fields) > 6:
            hint = (
                "; comma decimals in a comma-separated file? write '.' decimals or "
                "separate the fields with ';'"
            )
        raise ValueError(
            f"expected 6 fields (time, open, high, low, close, volume), got {len(fields)}{hint}"
        )
    time = _parse_time(fields[0], ninjatrader, source, target)
    names = ("open", "high", "low", "close", "volume")
    o, h, lo, c, v = (
        _parse_number(text, name, decimal_comma) for text, name in zip(fields[1:], names)
    )
    problem = check_bar(o, h, lo, c, v)
    if problem:
        raise ValueError(problem)
    return time, (o, h, lo, c, v)


def utc_seconds(bars: Bars) -> np.ndarray:
    """int64 UTC seconds of each bar's close time (``bars.time`` is wall clock in
    ``bars.timezone``). Ambiguous fall-back hours are resolved from the bar order."""
    import pandas as pd  # type: ignore[import-untyped]

    index = pd.DatetimeIndex(bars.time)
    try:
        local = index.tz_localize(bars.timezone, ambiguous="infer", nonexistent="shift_forward")
    except Exception:
        local = index.tz_localize(
            bars.timezone, ambiguous=np.zeros(len(index), dtype=bool), nonexistent="shift_forward"
        )
    return (
        local.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[s]").astype(np.int64)
    )


PRICE_SCALE_FIX = (
    "give the contract they trade as (--instrument, e.g. 6E), or its --tick-size and --point-value"
)


def check_price_scale(bars: Bars, spec: ContractSpec, fix: str = PRICE_SCALE_FIX) -> None:
    """Refuse bars that cannot be ``spec``'s: a median bar range (high - low, bars with a
    range) under one tick or over ``MAX_MEDIAN_RANGE_TICKS`` ticks; ``fix`` ends the
    message (what the command's user can change).

    Raises:
        PriceScaleError: one line naming the data, the contract, the scale found and the
            options that give the right contract.
    """
    ranges = bars.high - bars.low
    ranges = ranges[ranges > 0]
    if ranges.size == 0:
        return
    ticks = float(np.median(ranges)) / spec.tick_size
    if 1.0 <= ticks <= MAX_MEDIAN_RANGE_TICKS:
        return
    raise PriceScaleError(
        f"{bars.source or 'the bars'}: a typical bar spans {ticks:.3g} ticks of "
        f"{spec.symbol} (tick {spec.tick_size:g}; median high - low "
        f"{float(np.median(ranges)):.6g}): these are another contract's prices; {fix}"
    )


def warn_if_outside_sessions(bars: Bars, spec: ContractSpec) -> float:
    """Warn when many bars lie where ``spec``'s calendar has no trading; return that
    share (0 for weekly or longer bars, or when the calendar cannot tell).

    Intraday bars: closing while the market is closed (the daily halt, a weekend, a
    holiday): a file read in the wrong zone puts its bars there. Daily bars: dated on a
    day with no session (a weekend, a holiday): dates shifted by a time zone, or a series
    of another market.
    """
    from env.sessions import SessionCalendar, UnknownCalendarError

    period = bars.bar_period
    daily = period.type == "day"
    if len(bars) < 2 or not (daily or (period.is_intraday and period.seconds is not None)):
        return 0.0
    if daily:
        stamps = bars.time.astype("datetime64[D]")
    else:
        close_utc = utc_seconds(bars)
        stamps = close_utc.astype("datetime64[s]").astype("datetime64[D]")
    week = np.timedelta64(7, "D")
    try:
        calendar = SessionCalendar.for_contract(spec, str(stamps[0] - week), str(stamps[-1] + week))
    except UnknownCalendarError:
        return 0.0
    if daily:
        outside = ~np.isin(stamps, calendar.session_dates(spec.timezone))
    else:
        outside = ~np.isfinite(calendar.minutes_to_close_array(close_utc))
    share = float(outside.mean())
    if share > OUT_OF_SESSION_WARN_FRACTION:
        example = str(bars.time[int(np.argmax(outside))]).replace("T", " ")
        if daily:
            message = (
                f"{bars.source}: {share:.0%} of the daily bars are dated on days with no "
                f"session in {spec.symbol}'s calendar ({spec.calendar}; first: "
                f"{example[:10]}); are the dates trading dates of this market?"
            )
        else:
            message = (
                f"{bars.source}: {share:.0%} of the bars close while {spec.symbol}'s "
                f"calendar ({spec.calendar}) says the market is closed (first: {example} "
                f"{bars.timezone}); are the file's times really {bars.data_timezone}? "
                "NinjaTrader exports are UTC; set the data time zone (--data-timezone) if not"
            )
        warnings.warn(message, BarsTimezoneWarning, stacklevel=3)
    return share


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
