"""Trading sessions of a contract: open and close times from pandas-market-calendars.

A :class:`SessionCalendar` asks pandas-market-calendars once, at construction, for every
session of a span (holidays, early closes and the daily halt come from the library, not a
table of ours) and keeps the opens and closes as sorted int64 arrays of UTC seconds. Every
query after that is one ``numpy.searchsorted``-style bisection with no pandas: cheap enough
for the daemon's per-bar path.

A CME Globex session (e.g. equity index) opens at 17:00 Central time on the evening before
its trading day and closes at 16:00 Central time; the hour between is the daily halt. A
holiday either has no session or closes early (e.g. 12:00 CT).
"""

from __future__ import annotations

import bisect
import functools
from datetime import datetime, timedelta, timezone

import numpy as np

from env.contracts import ContractSpec

# Span precomputed when none is given: early enough for any history a trader exports,
# late enough for years of serving.
DEFAULT_START = "2000-01-01"
DEFAULT_YEARS_AHEAD = 3

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class UnknownCalendarError(ValueError):
    """A calendar name pandas-market-calendars does not know."""


def calendar_names() -> list[str]:
    """Every calendar name pandas-market-calendars offers."""
    import pandas_market_calendars as mcal  # type: ignore[import-untyped]

    return sorted(mcal.get_calendar_names())


def _to_seconds(t: datetime | np.datetime64 | float | int) -> float:
    """UTC seconds since the epoch of a time; naive datetimes are taken as UTC."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        return (t - _EPOCH).total_seconds()
    if isinstance(t, np.datetime64):
        return float(t.astype("datetime64[s]").astype(np.int64))
    return float(t)


class SessionCalendar:
    """Session opens and closes of one calendar over a span, in UTC.

    Attributes:
        name: pandas-market-calendars calendar name.
        opens, closes: int64 UTC seconds since the epoch of each session's open and
            close, sorted, one per session (``opens[i] < closes[i] <= opens[i+1]``).
    """

    def __init__(self, name: str, opens: np.ndarray, closes: np.ndarray) -> None:
        self.name = name
        self.opens = np.asarray(opens, dtype=np.int64)
        self.closes = np.asarray(closes, dtype=np.int64)
        # Python lists for bisect: the per-call path touches no numpy scalar machinery.
        self._opens = self.opens.tolist()
        self._closes = self.closes.tolist()

    @classmethod
    def for_contract(
        cls,
        spec: ContractSpec,
        start: str | datetime | None = None,
        end: str | datetime | None = None,
    ) -> SessionCalendar:
        """The sessions of ``spec.calendar`` from ``start`` to ``end`` (dates).

        Defaults: from 2000-01-01 to three years after today. Calendars are cached per
        (name, span), so many envs on one contract build it once.

        Raises:
            UnknownCalendarError: naming the calendar and where to find valid names.
        """
        return cls.from_name(spec.calendar, start, end)

    @classmethod
    def from_name(
        cls,
        name: str,
        start: str | datetime | None = None,
        end: str | datetime | None = None,
    ) -> SessionCalendar:
        """Like :meth:`for_contract`, by pandas-market-calendars name."""
        start_day = _day(start) if start is not None else DEFAULT_START
        if end is None:
            end_day = datetime.now(timezone.utc) + timedelta(days=365 * DEFAULT_YEARS_AHEAD)
            end_day_str = f"{end_day.year}-12-31"
        else:
            end_day_str = _day(end)
        return _build(name, start_day, end_day_str)

    def __repr__(self) -> str:
        return f"SessionCalendar({self.name!r}, {len(self._opens)} sessions)"

    def session_dates(self, timezone: str) -> np.ndarray:
        """Trading date of each session (``datetime64[D]``): the date of its close on
        the exchange's wall clock ``timezone`` (a CME Globex session that opens on Sunday
        evening trades Monday's date)."""
        import pandas as pd  # type: ignore[import-untyped]

        closes = pd.to_datetime(self.closes, unit="s", utc=True).tz_convert(timezone)
        return closes.tz_localize(None).to_numpy(dtype="datetime64[D]")

    def session_index(self, t_utc: datetime | np.datetime64 | float) -> int:
        """Index of the last session that opened at or before ``t_utc`` (-1 if none)."""
        return bisect.bisect_right(self._opens, _to_seconds(t_utc)) - 1

    def is_open(self, t_utc: datetime | np.datetime64 | float) -> bool:
        """Whether the market trades at ``t_utc`` (open <= t < close of a session)."""
        s = _to_seconds(t_utc)
        i = bisect.bisect_right(self._opens, s) - 1
        return i >= 0 and s < self._closes[i]

    def next_close(self, t_utc: datetime | np.datetime64 | float) -> datetime | None:
        """The first session close strictly after ``t_utc`` (aware UTC), or None past the
        precomputed span."""
        s = _to_seconds(t_utc)
        i = bisect.bisect_right(self._closes, s)
        if i >= len(self._closes):
            return None
        return _EPOCH + timedelta(seconds=self._closes[i])

    def minutes_to_close(self, t_utc: datetime | np.datetime64 | float) -> float:
        """Minutes from ``t_utc`` to the close of the session it lies in; ``inf`` when the
        market is closed at ``t_utc`` or the time is past the span."""
        s = _to_seconds(t_utc)
        i = bisect.bisect_right(self._opens, s) - 1
        if i < 0 or s >= self._closes[i]:
            return float("inf")
        return (self._closes[i] - s) / 60.0

    def minutes_to_close_array(self, t_utc: np.ndarray) -> np.ndarray:
        """Minutes from each bar's close time (int64 UTC seconds) to its session's close
        (float64; inf when the bar closes outside every session). A bar closing at a
        session's close is 0 minutes from it; one closing at a session's open covers the
        minute before the open, so it is outside."""
        s = np.asarray(t_utc, dtype=np.int64)
        i = np.searchsorted(self.opens, s, side="left") - 1
        safe = np.clip(i, 0, max(len(self.closes) - 1, 0))
        inside = (i >= 0) & (s <= self.closes[safe])
        return np.where(inside, (self.closes[safe] - s) / 60.0, np.inf)

    def bar_session_ids(self, close_utc: np.ndarray) -> np.ndarray:
        """Session index of each bar by its close time (int64 UTC seconds): a bar closing
        exactly at a session's close belongs to that session. -1 before the span."""
        s = np.asarray(close_utc, dtype=np.int64)
        # A bar closing at t covers (t - period, t]: it belongs to the session open before t.
        return np.searchsorted(self.opens, s, side="left") - 1


def _day(value: str | datetime) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d")
    return str(value)[:10]


@functools.lru_cache(maxsize=16)
def _build(name: str, start: str, end: str) -> SessionCalendar:
    import pandas_market_calendars as mcal  # type: ignore[import-untyped]

    try:
        calendar = mcal.get_calendar(name)
    except (RuntimeError, KeyError, ValueError):
        raise UnknownCalendarError(
            f"unknown session calendar {name!r}; use a pandas-market-calendars name, e.g. "
            "'CME Globex Equity', CMEGlobex_FX, CMEGlobex_Energy (list them with "
            "env.sessions.calendar_names())"
        ) from None
    schedule = calendar.schedule(start_date=start, end_date=end)
    opens = _utc_seconds(schedule["market_open"])
    closes = _utc_seconds(schedule["market_close"])
    if "break_start" in schedule and "break_end" in schedule:
        # A mid-session break (CBOT grains 07:45-08:30 CT) is a halt: two sessions.
        starts = _utc_seconds(schedule["break_start"])
        ends = _utc_seconds(schedule["break_end"])
        has_break = (starts > opens) & (ends < closes) & (starts < ends)
        opens = np.concatenate([opens, ends[has_break]])
        closes = np.concatenate([np.where(has_break, starts, closes), closes[has_break]])
        order = np.argsort(opens, kind="stable")
        opens, closes = opens[order], closes[order]
    return SessionCalendar(name, opens, closes)


def _utc_seconds(column: object) -> np.ndarray:
    """int64 UTC seconds of a pandas datetime column; NaT (no break that day) -> min."""
    import pandas as pd  # type: ignore[import-untyped]

    series = pd.to_datetime(column, utc=True)  # type: ignore[call-overload]
    values = series.to_numpy(dtype="datetime64[s]")
    out = values.astype(np.int64)
    out[np.isnat(values)] = np.iinfo(np.int64).min
    return out
