"""Where a bar sits in its trading session: which session, how long to its close, and
whether the market is open now. The risk rails and the stale-data watchdog need these.

Sessions come from the contract's calendar (:class:`env.sessions.SessionCalendar`, built
on pandas-market-calendars: holidays, early closes and the daily halt included). Building
one takes about a second, so the daemon builds the served model's calendar at start and
any other contract's on a background thread the first time it is seen; until that is
ready the stream is placed on CME Globex's regular week (17:00 to 16:00 exchange time,
Sunday to Friday), which is right for most CME products except on holidays.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Hashable
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import NamedTuple

import structlog

from env.contracts import ContractSpec
from env.sessions import SessionCalendar

log = structlog.get_logger()

GLOBEX_OPEN_HOUR = 17  # the session closing on day D opens at 17:00 the day before
GLOBEX_CLOSE_HOUR = 16
_BAR_STAMP = timedelta(seconds=1)  # bars are stamped with their close: look just before
# UTC seconds of (t - _BAR_STAMP) are (t - _STAMP_EPOCH).total_seconds(), exactly.
_STAMP_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc) + _BAR_STAMP


class SessionPoint(NamedTuple):
    """A bar's place in its session."""

    session: Hashable  # changes when a new session starts
    minutes_to_close: float | None  # None or inf: not known / market closed


def globex_point(local_time: datetime) -> SessionPoint:
    """CME Globex's regular week: the session of a naive exchange-local bar time is named
    by the date it closes on (16:00)."""
    stamp = local_time - _BAR_STAMP
    session_day: date = (stamp + timedelta(hours=24 - GLOBEX_OPEN_HOUR)).date()
    close = datetime.combine(session_day, datetime.min.time()).replace(hour=GLOBEX_CLOSE_HOUR)
    return SessionPoint(("globex", session_day), (close - local_time).total_seconds() / 60.0)


def globex_is_open(local_time: datetime) -> bool:
    """Whether CME Globex's regular week trades at a naive exchange-local time."""
    weekday, hour = local_time.weekday(), local_time.hour
    if weekday == 5 or (weekday == 4 and hour >= GLOBEX_CLOSE_HOUR):
        return False
    if weekday == 6:
        return hour >= GLOBEX_OPEN_HOUR
    return not GLOBEX_CLOSE_HOUR <= hour < GLOBEX_OPEN_HOUR


class Calendars:
    """Session calendars by name, built once (at start, or in the background)."""

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        self._ready: dict[str, SessionCalendar | None] = {}
        self._lock = threading.Lock()
        # Per calendar, the session the last bar fell in: (from, until) UTC seconds between
        # which bisecting the opens gives the same index, that index, its close, and the
        # calendar these come from.
        self._last: dict[str, tuple[float, float, int, float, SessionCalendar]] = {}

    def build(self, spec: ContractSpec) -> None:
        """Build ``spec``'s calendar now (start-up)."""
        self._build(spec)

    def _build(self, spec: ContractSpec) -> None:
        try:
            calendar: SessionCalendar | None = SessionCalendar.for_contract(spec)
        except Exception as exc:
            log.warning(
                "calendar_unavailable",
                calendar=spec.calendar,
                error=repr(exc),
                detail="sessions follow CME Globex's regular week (no holidays)",
            )
            calendar = None
        with self._lock:
            self._ready[spec.calendar] = calendar

    def get(self, spec: ContractSpec) -> SessionCalendar | None:
        """The calendar if built; otherwise start building it and return None."""
        calendar = self._ready.get(spec.calendar, self)  # a dict read needs no lock
        if calendar is not self:
            return calendar  # type: ignore[return-value]
        with self._lock:
            if spec.calendar in self._ready:
                return self._ready[spec.calendar]
            self._ready[spec.calendar] = None
            building = spec.calendar
        threading.Thread(
            target=self._build, args=(spec,), name=f"calendar-{building}", daemon=True
        ).start()
        return None

    def point(
        self, spec: ContractSpec, local_time: datetime, utc_s: float | None = None
    ) -> SessionPoint:
        """The session and minutes to its close of a naive exchange-local bar time;
        ``utc_s``, when the caller has it, is that time in UTC seconds since the epoch."""
        calendar = self.get(spec)
        if calendar is None:
            return globex_point(local_time)
        # UTC seconds of the instant just before the bar's close.
        if utc_s is None:
            t_utc = (local_time.replace(tzinfo=self.zone) - _STAMP_EPOCH).total_seconds()
        else:
            t_utc = utc_s - _BAR_STAMP.seconds
        last = self._last.get(spec.calendar)
        if last is None or not last[0] <= t_utc < last[1] or last[4] is not calendar:
            last = self._last[spec.calendar] = _session_at(calendar, t_utc)  # bisect
        _, _, index, close, _ = last
        # SessionCalendar.minutes_to_close and session_index, from the cached session.
        minutes = (close - t_utc) / 60.0 if index >= 0 and t_utc < close else math.inf
        return SessionPoint((spec.calendar, index), minutes - _BAR_STAMP.seconds / 60)

    def is_open(self, spec: ContractSpec, utc_now: datetime) -> bool:
        """Whether ``spec``'s market trades at ``utc_now``."""
        calendar = self.get(spec)
        if calendar is None:
            return globex_is_open(utc_now.astimezone(self.zone).replace(tzinfo=None))
        return calendar.is_open(utc_now)


def _session_at(
    calendar: SessionCalendar, t_utc: float
) -> tuple[float, float, int, float, SessionCalendar]:
    """``(from, until, index, close, calendar)``: ``calendar.session_index(t)`` is
    ``index`` for every ``from <= t < until``, and ``close`` is that session's close (UTC
    seconds)."""
    index = calendar.session_index(t_utc)
    opens, closes = calendar.opens, calendar.closes
    start = int(opens[index]) if index >= 0 else -math.inf
    until = int(opens[index + 1]) if index + 1 < len(opens) else math.inf
    close = int(closes[index]) if index >= 0 else math.inf
    return start, until, index, close, calendar
