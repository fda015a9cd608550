"""Bar periods: what one bar spans, detected from data and carried in cards and messages.

The shape is NinjaTrader 8's ``BarsPeriod`` (``BarsPeriodType`` and ``Value``), as the wire
protocol carries it (PROTOCOL.md v1.1): ``{"type": "minute", "value": 1}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Seconds per unit of the time-based period types. A month and a year have no fixed
# length; their nominal lengths only size episodes and annualise statistics.
_UNIT_SECONDS: dict[str, int] = {
    "second": 1,
    "minute": 60,
    "day": 86_400,
    "week": 7 * 86_400,
    "month": 30 * 86_400,
    "year": 365 * 86_400,
}
# NinjaTrader's bar types that are not time-based: their spacing is not a period.
_OTHER_TYPES = ("tick", "volume", "range")
PERIOD_TYPES = tuple(_UNIT_SECONDS) + _OTHER_TYPES

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class BarPeriod:
    """What one bar spans.

    Attributes:
        type: ``"second"``, ``"minute"``, ``"day"``, ``"week"``, ``"month"``, ``"year"``
            (time-based) or ``"tick"``, ``"volume"``, ``"range"`` (not time-based).
        value: How many units one bar spans (> 0), e.g. 5 for 5-minute bars.

    Raises:
        ValueError: on an unknown type or a value that is not a positive integer.
    """

    type: str
    value: int = 1

    def __post_init__(self) -> None:
        if self.type not in PERIOD_TYPES:
            raise ValueError(
                f"unknown bar period type {self.type!r}; expected one of {list(PERIOD_TYPES)}"
            )
        if isinstance(self.value, bool) or not isinstance(self.value, int) or self.value < 1:
            raise ValueError(f"bar period value must be an integer >= 1, got {self.value!r}")

    @property
    def is_time_based(self) -> bool:
        """Whether bars of this period are equally spaced in time (within a session)."""
        return self.type in _UNIT_SECONDS

    @property
    def seconds(self) -> int | None:
        """Nominal length of one bar in seconds; None for tick, volume and range bars."""
        unit = _UNIT_SECONDS.get(self.type)
        return None if unit is None else unit * self.value

    @property
    def is_intraday(self) -> bool:
        """Whether a bar is shorter than a day, so time of day means something (tick,
        volume and range bars are intraday)."""
        seconds = self.seconds
        return seconds is None or seconds < SECONDS_PER_DAY

    def to_json(self) -> dict[str, Any]:
        """``{"type": "minute", "value": 1}`` (PROTOCOL.md v1.1 shape)."""
        return {"type": self.type, "value": self.value}

    @classmethod
    def from_json(cls, data: Any) -> BarPeriod:
        """Inverse of :meth:`to_json`; accepts NinjaTrader's capitalised type names.

        Raises:
            ValueError: naming what is wrong with ``data``.
        """
        if not isinstance(data, dict) or set(data) - {"type", "value"} or "type" not in data:
            raise ValueError(
                f'bar_period must be {{"type": "minute", "value": 1}}-shaped, got {data!r}'
            )
        kind = data["type"]
        if not isinstance(kind, str):
            raise ValueError(f"bar_period type must be a string, got {kind!r}")
        value = data.get("value", 1)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return cls(kind.strip().lower(), value)

    def __str__(self) -> str:
        return f"{self.value} {self.type}{'s' if self.value != 1 else ''}"


MINUTE_1 = BarPeriod("minute", 1)

# Episode length: one regular trading day (6.5 h) of bars, between 60 and 390 decisions:
# 390 one-minute bars, 78 five-minute bars, 60 hourly or daily bars (a quarter).
_EPISODE_SECONDS = 390 * 60
MIN_EPISODE_BARS, MAX_EPISODE_BARS = 60, 390


def default_episode_bars(period: BarPeriod) -> int:
    """Decisions per episode for bars of ``period`` (see the table above)."""
    seconds = period.seconds
    if seconds is None:
        return MAX_EPISODE_BARS
    return max(MIN_EPISODE_BARS, min(MAX_EPISODE_BARS, _EPISODE_SECONDS // seconds))


def detect_bar_period(times: np.ndarray) -> BarPeriod:
    """The bar period of a series from the spacing of its bar times.

    The most common positive spacing between consecutive bars is the period (gaps across
    halts, weekends and holidays are rarer than in-session steps). Daily bars whose most
    common step is one day are ``day``; a step of 5-7 days is ``week``.

    Args:
        times: ``datetime64`` bar times, increasing, at least two.

    Raises:
        ValueError: with fewer than two bars, or spacing that is no whole number of
            seconds, minutes or days.
    """
    stamps = np.asarray(times).astype("datetime64[s]").astype(np.int64)
    if len(stamps) < 2:
        raise ValueError("need at least two bars to detect the bar period")
    steps = np.diff(stamps)
    steps = steps[steps > 0]
    if len(steps) == 0:
        raise ValueError("bar times do not increase; cannot detect the bar period")
    values, counts = np.unique(steps, return_counts=True)
    step = int(values[np.argmax(counts)])
    if step >= SECONDS_PER_DAY:
        days = step // SECONDS_PER_DAY
        if days >= 5:
            return BarPeriod("week", 1)
        # Daily bars: 1 calendar day apart most of the time (Mon..Fri).
        return BarPeriod("day", days)
    if step % 60 == 0:
        return BarPeriod("minute", step // 60)
    return BarPeriod("second", step)
