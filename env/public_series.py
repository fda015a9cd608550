"""Real public price series that PyPI packages ship, loaded as ``Bars`` on a futures
contract's terms.

A *public source* is written ``pypi:PACKAGE/SERIES`` (case-insensitive), e.g.
``pypi:arch/sp500`` or ``pypi:gym-anytrading/eurusd``, and is accepted wherever a bars
file is (``--data``, ``env.bars.load_bars``). The data is read from the user's installed
package at run time: nothing is copied into this project (``pip install
'ai-trading-bridge[realdata]'`` installs the packages).

Each series is an index or a spot rate, so it is a **proxy** for the future it is traded
as: the S&P 500 index has no overnight session, no roll and no basis to ES; EUR/USD spot
ask quotes are not 6E trades. Good enough to check that the pipeline trains and validates
on real price paths, not a backtest of the future.

- ``pypi:arch/sp500``: the S&P 500 index, daily bars, 1999-01-04..2018-12-31, from the
  ``arch`` package (NCSA license); traded as ES (or MES).
- ``pypi:arch/nasdaq``: the NASDAQ Composite index, daily bars, 1999-01-04..2018-12-31,
  from the ``arch`` package (NCSA license); traded as NQ (or MNQ). NQ follows the
  Nasdaq-100, a narrower index of the same exchange: a proxy, like the others.
- ``pypi:gym-anytrading/eurusd``: EUR/USD spot ask quotes, hourly bars, 2017, from the
  ``gym-anytrading`` package (MIT license); traded as 6E (or M6E), on CME Globex hours.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from env.timezones import canonical_zone

if TYPE_CHECKING:
    from env.bars import Bars
    from env.contracts import ContractSpec
    from env.periods import BarPeriod

PREFIX = "pypi:"
INSTALL_HINT = "pip install 'ai-trading-bridge[realdata]'"


@dataclass(frozen=True)
class PublicSeries:
    """One series a PyPI package ships, and how to read it.

    Attributes:
        name: ``PACKAGE/SERIES``, the part after ``pypi:`` (lower case).
        distribution: The PyPI distribution that ships the file.
        resource: The file's path inside the installed distribution.
        description: What the prices are, for docs and errors.
        license: The distribution's license (the data is read, never copied).
        contract: Root of the futures contract the series is traded as by default.
        proxies: Contract roots the series may stand for (same underlying).
        time_column, time_format: The time column and its ``strptime`` format.
        columns: The open, high, low, close and volume columns.
        data_timezone: IANA zone of the file's naive times. For daily bars, the zone of
            the exchange whose trading dates they are (dates are not converted).
        time_marks_open: Whether a time labels the bar's *open* (then the bar closes one
            period later; ``Bars.time`` is the close).
        futures_hours_only: Drop bars that close while the contract's calendar says the
            future is not trading (the daily halt, holidays): a spot rate trades through
            them, the future does not.
    """

    name: str
    distribution: str
    resource: str
    description: str
    license: str
    contract: str
    proxies: tuple[str, ...]
    time_column: str
    time_format: str
    columns: tuple[str, str, str, str, str]
    data_timezone: str
    time_marks_open: bool = False
    futures_hours_only: bool = False


def _arch_daily(series: str, description: str, proxies: tuple[str, ...]) -> PublicSeries:
    """A daily index file of the ``arch`` package (``arch/data/NAME/NAME.csv.gz``, Yahoo
    columns, US trading dates), traded as ``proxies[0]``."""
    return PublicSeries(
        name=f"arch/{series}",
        distribution="arch",
        resource=f"arch/data/{series}/{series}.csv.gz",
        description=description,
        license="NCSA",
        contract=proxies[0],
        proxies=proxies,
        time_column="Date",
        time_format="%m/%d/%Y",
        columns=("Open", "High", "Low", "Close", "Volume"),
        data_timezone="America/New_York",
    )


SERIES: dict[str, PublicSeries] = {
    s.name: s
    for s in (
        _arch_daily(
            "sp500",
            "S&P 500 index, daily OHLC and share volume, 1999-01-04..2018-12-31 "
            "(NYSE trading dates)",
            ("ES", "MES"),
        ),
        # The Composite, not the Nasdaq-100 that NQ tracks: the closest daily index series
        # a package ships (same exchange, most of the same weight).
        _arch_daily(
            "nasdaq",
            "NASDAQ Composite index, daily OHLC and share volume, 1999-01-04..2018-12-31 "
            "(Nasdaq trading dates)",
            ("NQ", "MNQ"),
        ),
        PublicSeries(
            name="gym-anytrading/eurusd",
            distribution="gym-anytrading",
            resource="gym_anytrading/datasets/data/FOREX_EURUSD_1H_ASK.csv",
            # The week opens on Sunday at 17:00 New York time: 22:00 in the file in
            # winter, 21:00 in summer (switching on the US DST dates): the times are UTC,
            # and the first bar of a week is stamped at the open, so times mark bar opens.
            description="EUR/USD spot ask quotes, hourly OHLC and quote volume, "
            "2017-01-01 22:00..2017-12-29 22:00 UTC",
            license="MIT",
            contract="6E",
            proxies=("6E", "M6E"),
            time_column="Time",
            time_format="%d.%m.%Y %H:%M:%S.%f",
            columns=("Open", "High", "Low", "Close", "Volume"),
            data_timezone="UTC",
            time_marks_open=True,
            futures_hours_only=True,
        ),
    )
}


def is_public_source(source: object) -> bool:
    """Whether ``source`` (a ``--data`` value or path) names a public series."""
    return str(source).strip().lower().startswith(PREFIX)


def public_series(source: str) -> PublicSeries:
    """The series ``pypi:PACKAGE/SERIES[@VERSION]`` names (the version, as a card
    records it, is informational: the card's sha256 identifies the bytes).

    Raises:
        ValueError: for a name not in :data:`SERIES`, listing the known ones.
    """
    text = str(source).strip().replace("\\", "/")
    name = text[len(PREFIX) :].split("@", 1)[0].strip().lower()
    series = SERIES.get(name)
    if series is None:
        known = ", ".join(PREFIX + n for n in SERIES)
        raise ValueError(f"unknown public series {text!r}; known: {known}")
    return series


def series_file(series: PublicSeries) -> tuple[Path, str]:
    """The installed file of ``series`` and its distribution's version.

    Raises:
        ValueError: one line, when the package is not installed (with the pip command)
            or its installed version does not ship the file.
    """
    try:
        dist = metadata.distribution(series.distribution)
    except metadata.PackageNotFoundError:
        raise ValueError(
            f"{PREFIX}{series.name} is read from the '{series.distribution}' package, which "
            f"is not installed; {INSTALL_HINT}"
        ) from None
    path = Path(str(dist.locate_file(series.resource)))
    if not path.is_file():
        raise ValueError(
            f"{PREFIX}{series.name}: {series.distribution} {dist.version} does not ship "
            f"{series.resource}; {INSTALL_HINT} --upgrade"
        )
    return path, dist.version


def series_sha256(source: str) -> str:
    """sha256 of the installed file behind ``source`` (recorded in the model card)."""
    path, _ = series_file(public_series(source))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_public_series(
    source: str,
    exchange_tz: str | None = None,
    *,
    contract: ContractSpec | None = None,
    data_timezone: str | None = None,
    bar_period: BarPeriod | None = None,
    check_sessions: bool = True,
) -> Bars:
    """Load a public series as bars on ``contract``'s terms (``load_bars``' arguments).

    Times become bar *closes* on the contract's exchange wall clock (daily bars stay
    trading dates). A series that trades around the clock (spot FX) keeps only the bars
    that close while the future trades (``futures_hours_only``). ``Bars.source`` is
    ``pypi:PACKAGE/SERIES@VERSION``, which loads the series again.

    Raises:
        env.bars.BarsFileError: one line: an unknown series, a missing package (with
            ``pip install 'ai-trading-bridge[realdata]'``), a contract of another
            underlying, a ``data_timezone`` or ``bar_period`` other than the series'
            own, or a bad bar.
    """
    from env.bars import Bars, BarsFileError, DataOptionError, warn_if_outside_sessions
    from env.contracts import CONTRACTS, contract_root, resolve_contract

    try:
        series = public_series(source)
        path, version = series_file(series)
    except ValueError as exc:
        raise BarsFileError(str(exc)) from None
    label = f"{PREFIX}{series.name}"
    spec = contract or resolve_contract(series.contract)
    root = contract_root(spec.symbol)
    if root in CONTRACTS and root not in series.proxies:
        raise DataOptionError(
            f"{label} is {series.description.split(',')[0]}: trade it as "
            f"{' or '.join(series.proxies)} (--instrument {series.contract}), not {root}",
            "--instrument",
        )
    if data_timezone is not None:
        try:
            data_timezone = canonical_zone(data_timezone)
        except ValueError as exc:
            raise BarsFileError(f"{label}: {exc}") from None
    if data_timezone is not None and data_timezone != series.data_timezone:
        raise DataOptionError(
            f"{label}: its times are known to be {series.data_timezone}; drop the data "
            f"time zone ({data_timezone!r})",
            "--data-timezone",
        )
    times, values, period = _read_series(series, path, label)
    if bar_period is not None and bar_period.seconds != period.seconds:
        raise DataOptionError(
            f"{label} has bars of {period} ({period.type}:{period.value}), not {bar_period}; "
            "drop the bar period (--bar-period, or bar_period in the config file): a "
            "public series has its own",
            "--bar-period",
        )
    zone = exchange_tz or spec.timezone
    if period.is_intraday:
        times, keep = _exchange_clock(times, series, spec, zone)
        values = values[keep]
    bars = Bars(
        time=times,
        open=values[:, 0].copy(),
        high=values[:, 1].copy(),
        low=values[:, 2].copy(),
        close=values[:, 3].copy(),
        volume=values[:, 4].copy(),
        source=f"{label}@{version}",
        timezone=zone,
        bar_period=period,
        data_timezone=series.data_timezone,
    )
    if check_sessions:
        warn_if_outside_sessions(bars, spec)
    return bars


def _read_series(
    series: PublicSeries, path: Path, label: str
) -> tuple[np.ndarray, np.ndarray, BarPeriod]:
    """Bar times (``datetime64[s]``: trading dates for daily bars, else bar *closes* in
    UTC), an ``(n, 5)`` float64 array of open, high, low, close, volume, and the bar
    period detected from the times."""
    import pandas as pd  # type: ignore[import-untyped]

    from env.bars import BarsFileError, check_bar
    from env.periods import detect_bar_period

    try:
        frame = pd.read_csv(path, usecols=[series.time_column, *series.columns])
        stamps = pd.to_datetime(frame[series.time_column], format=series.time_format)
    except (ValueError, KeyError) as exc:
        raise BarsFileError(f"{label} ({path}): cannot read it: {exc}") from None
    values = frame[list(series.columns)].to_numpy(dtype=np.float64)
    for row, bar in enumerate(values.tolist()):
        problem = check_bar(*bar)
        if problem:
            raise BarsFileError(f"{label} ({path}):{row + 2}: {problem}")
    naive = stamps.to_numpy(dtype="datetime64[s]")
    if len(naive) < 2 or (np.diff(naive.astype(np.int64)) <= 0).any():
        raise BarsFileError(f"{label} ({path}): bar times are not increasing")
    period = detect_bar_period(naive)
    if not period.is_intraday or period.seconds is None:
        return naive, values, period  # trading dates: no zone, no shift
    utc = (
        pd.DatetimeIndex(naive)
        .tz_localize(series.data_timezone)
        .tz_convert("UTC")
        .tz_localize(None)
        .to_numpy(dtype="datetime64[s]")
    )
    if series.time_marks_open:
        utc = utc + np.timedelta64(period.seconds, "s")
    return utc, values, period


def _exchange_clock(
    close_utc: np.ndarray, series: PublicSeries, spec: ContractSpec, zone: str
) -> tuple[np.ndarray, np.ndarray]:
    """Bar closes (UTC) as wall-clock times in ``zone``, and which bars to keep: all, or
    with ``futures_hours_only`` those that close inside one of the contract's sessions."""
    import pandas as pd

    from env.sessions import SessionCalendar

    keep = np.ones(len(close_utc), dtype=bool)
    if series.futures_hours_only:
        week = np.timedelta64(7, "D")
        days = close_utc.astype("datetime64[D]")
        calendar = SessionCalendar.for_contract(spec, str(days[0] - week), str(days[-1] + week))
        keep = np.isfinite(calendar.minutes_to_close_array(close_utc.astype(np.int64)))
    local = (
        pd.DatetimeIndex(close_utc[keep])
        .tz_localize("UTC")
        .tz_convert(zone)
        .tz_localize(None)
        .to_numpy(dtype="datetime64[s]")
    )
    return local, keep
