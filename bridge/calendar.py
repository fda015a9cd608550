"""Where a bar sits in its trading session: which session, how long to its close, and
whether the market is open now. The risk rails and the stale-data watchdog need these.

Sessions come from the contract's calendar (``env.sessions.SessionCalendar``, built on
pandas-market-calendars) when that module is installed; otherwise from CME Globex's
regular week (17:00 to 16:00 exchange time, Sunday to Friday), which holidays and early
closes are not part of.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import NamedTuple


class SessionPoint(NamedTuple):
    """A bar's place in its session."""

    session: Hashable  # changes when a new session starts
    minutes_to_close: float | None


GLOBEX_OPEN_HOUR = 17  # the session of day D opens at 17:00 on the day before
GLOBEX_CLOSE_HOUR = 16


def globex_point(local_time: datetime) -> SessionPoint:
    """CME Globex's regular week: the session a naive exchange-local time belongs to is
    named by the date it closes on (16:00)."""
    session_day: date = (local_time + timedelta(hours=24 - GLOBEX_OPEN_HOUR)).date()
    close = datetime.combine(session_day, datetime.min.time()).replace(hour=GLOBEX_CLOSE_HOUR)
    return SessionPoint(session_day, (close - local_time).total_seconds() / 60.0)


def globex_is_open(local_time: datetime) -> bool:
    """Whether CME Globex's regular week is trading at a naive exchange-local time."""
    weekday, hour = local_time.weekday(), local_time.hour
    if weekday == 5 or (weekday == 4 and hour >= GLOBEX_CLOSE_HOUR):
        return False
    if weekday == 6:
        return hour >= GLOBEX_OPEN_HOUR
    return not GLOBEX_CLOSE_HOUR <= hour < GLOBEX_OPEN_HOUR


def session_functions(
    instrument: str, zone: tzinfo
) -> tuple[Callable[[datetime], SessionPoint], Callable[[datetime], bool]]:
    """``(point, is_open)`` for an instrument: ``point(local_time)`` places a naive
    exchange-local bar time, ``is_open(utc_now)`` says whether the market trades now."""
    try:
        from env.contracts import resolve_contract  # type: ignore[import-not-found]
        from env.sessions import SessionCalendar  # type: ignore[import-not-found]

        calendar = SessionCalendar.for_contract(resolve_contract(instrument))
    except Exception:  # no calendar module or no such contract: CME Globex's week
        return globex_point, lambda now: globex_is_open(now.astimezone(zone).replace(tzinfo=None))

    def point(local_time: datetime) -> SessionPoint:
        t_utc = local_time.replace(tzinfo=zone).astimezone(timezone.utc)
        close = calendar.next_close(t_utc)
        return SessionPoint(close, None if close is None else calendar.minutes_to_close(t_utc))

    return point, calendar.is_open
