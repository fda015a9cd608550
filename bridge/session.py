"""Per-client state: the feature stream of each client+instrument, its contract terms,
its bar spacing, its risk state and its last reply for idempotent retries."""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from datetime import datetime
from typing import Any

from bridge.protocol import FLAT, Bar, Position
from env.config import WARMUP_BARS
from env.features import StreamingFeatures

# Bar times kept to count bars in a position (a week of 1-minute bars and then some);
# a position older than that counts every bar kept.
MAX_BAR_TIMES = 16384


class InstrumentSession:
    """One client's stream of one instrument: features, bar times and the position."""

    def __init__(self, tick_size: float = 0.0, intraday: bool = True) -> None:
        """Args: tick_size, intraday: the served model's feature terms
        (``LoadedPolicy.feature_terms``: its contract tick as the ATR floor, and whether
        its bar period is intraday); the defaults are those of models without them."""
        self.features = StreamingFeatures(tick_size=tick_size, intraday=intraday)
        self.times: list[datetime] = []
        self.position: Position = FLAT
        self.decisions = 0
        # Idempotent retries: the last successful request with a seq and its exact reply.
        self.last_seq: int | None = None
        self.last_type = ""
        self.last_raw = b""  # the last processed request as received
        self.last_request: dict[str, Any] | None = None  # decoded; None until needed
        self.last_reply = b""
        # Contract terms orders are priced with (set by hello or on first use), and the
        # execution settings built from them for the policy being served.
        self.instrument_spec: dict[str, Any] | None = None
        self.terms: Any = None  # env.trading_env.EnvConfig, cached per policy
        self.terms_policy: object | None = None
        self.declared_period: dict[str, Any] | None = None  # hello's bar_period
        # Bar spacing: the last bar time seen (accepted or not) and the run of equal gaps
        # that do not match the model's period.
        self.seen_time: datetime | None = None
        self.odd_gap_s = 0.0
        self.odd_gap_run = 0
        self.risk: Any = None  # env.risk.RailState of this stream, created on first use
        self.risk_state: tuple[Any, ...] = ("", ())  # last logged (rail state, counters)
        self.last_bar_at: float | None = None  # monotonic arrival of the last bar
        self.stale = False  # the watchdog warned and no bar came since
        self.entries_allowed = True  # False near the session close, as the env masks

    @property
    def last_time(self) -> datetime | None:
        """Exchange-local time of the last bar, or None before the first."""
        return self.times[-1] if self.times else None

    @property
    def bars_known(self) -> int:
        """Bars fed to the features so far."""
        return self.features.n_bars

    @property
    def ready(self) -> bool:
        """Whether enough bars are known for every feature to be defined."""
        return self.features.n_bars >= WARMUP_BARS

    def is_new(self, bar: Bar) -> bool:
        """Whether ``bar`` is after the last known bar."""
        last = self.last_time
        return last is None or bar.local_time > last

    def use_feature_terms(self, tick_size: float, intraday: bool) -> None:
        """Serve another model's feature terms from the next bar on (a reload)."""
        self.features.indicators.tick_size = tick_size
        self.features.intraday = intraday

    def add_bar(self, bar: Bar) -> None:
        """Feed one bar (the caller has checked it is new)."""
        self.features.push(bar.minute_of_day, bar.open, bar.high, bar.low, bar.close, bar.volume)
        times = self.times
        times.append(bar.local_time)
        if len(times) > 2 * MAX_BAR_TIMES:
            del times[:MAX_BAR_TIMES]

    def bars_since(self, time: datetime) -> int:
        """Known bars whose time is strictly after ``time``: the bars in a position that
        was filled on the bar closing at ``time`` (the env's ``t - entry_bar``)."""
        return len(self.times) - bisect_right(self.times, time)


class SessionStore:
    """Sessions by client+instrument, least recently used dropped first."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._streams: OrderedDict[tuple[str, str], InstrumentSession] = OrderedDict()
        self.evicted = 0

    def stream(
        self, client: str, instrument: str, feature_terms: tuple[float, bool] = (0.0, True)
    ) -> InstrumentSession:
        """The session of ``client`` + ``instrument``, created on first use with
        ``feature_terms`` (``(tick_size, intraday)``, see :class:`InstrumentSession`)."""
        key = (client, instrument)
        session = self._streams.get(key)
        if session is None:
            session = self._streams[key] = InstrumentSession(*feature_terms)
            if len(self._streams) > self.max_sessions:
                self._streams.popitem(last=False)
                self.evicted += 1
        else:
            self._streams.move_to_end(key)
        return session

    def items(self) -> list[tuple[tuple[str, str], InstrumentSession]]:
        """Every (client, instrument) and its session (a copy, safe to iterate)."""
        return list(self._streams.items())

    def __len__(self) -> int:
        return len(self._streams)
