"""Risk rails: the rules that can refuse a policy's entry, as pure code (no I/O, no clock).

The daemon runs them on every decision; the environment and validation can run the very
same :class:`RailState` so that what is validated is what will trade. Each rail refuses
*entries* (BUY, SELL) only: managing or closing a position is always allowed, because a
rail must never leave a position without its stop.

Rails (names are the ``rule`` of a refusal, PROTOCOL v1.1 ``risk``):

- ``kill_switch``: an operator's halt (``ai-trading-bridge halt``); persists across
  restarts (the daemon keeps it in a file, see ``bridge.killswitch``).
- ``session_loss``: the strategy's realized P&L for the session (NinjaTrader's, sent with
  ``position``) is at or below ``-session_loss_limit``: no entries until the next session.
  Like the account-level "daily loss limit" of prop-firm rules and NinjaTrader's own
  Account Risk "Daily loss limit".
- ``max_entries``: ``max_entries_per_session`` entries were sent this session.
- ``cooldown``: after ``cooldown_losses`` losing trades in a row (a trade's result is the
  change of the realized P&L when the position closes), no entries for ``cooldown_bars``
  bars (freqtrade's "StoplossGuard"/"CooldownPeriod" protections).
- ``trading_window``: outside ``trading_window`` (exchange-local ``HH:MM`` start, end).
- ``session_close``: fewer than ``no_entry_minutes_before_close`` minutes before the
  session's close (from the contract's calendar): NinjaTrader's "Exit on session close"
  would flatten a new position within minutes.

The stale-data watchdog (:func:`is_stale`) only warns: it has no decision to refuse.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Any

from env.config import ENTRY_ACTIONS, Action

RULES = (
    "kill_switch",
    "session_loss",
    "max_entries",
    "cooldown",
    "trading_window",
    "session_close",
)
ACTIVE, REDUCING, HALTED = "active", "reducing", "halted"


class RiskConfigError(ValueError):
    """A risk configuration that cannot be used; the message names the key and the fix."""


@dataclass(frozen=True)
class RiskConfig:
    """Limits of the risk rails (defaults: on).

    Attributes:
        enabled: False turns every rail off except the kill switch.
        session_loss_limit: Account currency, > 0; None: no loss limit.
        max_entries_per_session: Entries sent per session; None: no limit.
        cooldown_losses: Losing trades in a row that start a cooldown; None: no cooldown.
        cooldown_bars: Bars a cooldown lasts.
        no_entry_minutes_before_close: No entries this close to the session's close; 0 off.
        trading_window: Exchange-local (start, end) for entries; None: the whole session.
            A window whose end is before its start spans midnight (e.g. 17:00-15:00).
        stale_after_bars: Warn when no bar came for this many bar periods while the market
            is open.
    """

    enabled: bool = True
    session_loss_limit: float | None = 1000.0
    max_entries_per_session: int | None = 20
    cooldown_losses: int | None = 3
    cooldown_bars: int = 30
    no_entry_minutes_before_close: float = 15.0
    trading_window: tuple[time, time] | None = None
    stale_after_bars: int = 5

    def __post_init__(self) -> None:
        _check(isinstance(self.enabled, bool), "enabled", "true or false")
        if self.session_loss_limit is not None:
            _check(
                _number(self.session_loss_limit) and self.session_loss_limit > 0,
                "session_loss_limit",
                "an amount > 0 in the account currency, or false to turn it off",
            )
        if self.max_entries_per_session is not None:
            _check(
                _integer(self.max_entries_per_session) and self.max_entries_per_session >= 1,
                "max_entries_per_session",
                "an integer >= 1, or false to turn it off",
            )
        if self.cooldown_losses is not None:
            _check(
                _integer(self.cooldown_losses) and self.cooldown_losses >= 1,
                "cooldown_losses",
                "an integer >= 1, or false to turn the cooldown off",
            )
        _check(
            _integer(self.cooldown_bars) and self.cooldown_bars >= 1,
            "cooldown_bars",
            "an integer >= 1",
        )
        _check(
            _number(self.no_entry_minutes_before_close)
            and 0 <= self.no_entry_minutes_before_close <= 24 * 60,
            "no_entry_minutes_before_close",
            "minutes from 0 (off) to 1440",
        )
        _check(
            _integer(self.stale_after_bars) and self.stale_after_bars >= 1,
            "stale_after_bars",
            "an integer >= 1",
        )
        if self.trading_window is not None:
            start, end = self.trading_window
            _check(
                isinstance(start, time) and isinstance(end, time) and start != end,
                "trading_window",
                'two different exchange-local times like ["08:30", "15:00"]',
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RiskConfig:
        """Build from a TOML/JSON table; unknown keys and bad values raise
        :class:`RiskConfigError`. ``false`` turns an optional limit off."""
        if not isinstance(data, Mapping):
            raise RiskConfigError("the risk configuration must be a table of keys and values")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise RiskConfigError(
                f"unknown key {unknown[0]!r}; the known keys are {', '.join(known)}"
            )
        values: dict[str, Any] = {}
        for key, value in data.items():
            if value is False and key in _OPTIONAL:
                values[key] = None
            elif key == "trading_window":
                values[key] = _window(value)
            elif key in ("session_loss_limit", "no_entry_minutes_before_close"):
                values[key] = float(value) if _number(value) else value
            else:
                values[key] = value
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> RiskConfig:
        """Read a TOML file (keys at the top level, or under a ``[risk]`` table).

        Raises:
            RiskConfigError: unreadable file, bad TOML, unknown key or bad value; the
                message names the file.
        """
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]

        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
        except OSError as exc:
            raise RiskConfigError(f"cannot read risk config {path}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise RiskConfigError(f"risk config {path} is not valid TOML: {exc}") from None
        if set(data) == {"risk"} and isinstance(data["risk"], dict):
            data = data["risk"]
        try:
            return cls.from_dict(data)
        except RiskConfigError as exc:
            raise RiskConfigError(f"risk config {path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (hello replies, logs); an off limit is ``None``."""
        values = dataclasses.asdict(self)
        if self.trading_window is not None:
            values["trading_window"] = [t.strftime("%H:%M") for t in self.trading_window]
        return values


_OPTIONAL = ("session_loss_limit", "max_entries_per_session", "cooldown_losses", "trading_window")


def _check(ok: bool, key: str, expected: str) -> None:
    if not ok:
        raise RiskConfigError(f"{key} must be {expected}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _window(value: Any) -> tuple[time, time]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        try:
            start, end = (v if isinstance(v, time) else time.fromisoformat(v) for v in value)
            return start, end
        except (TypeError, ValueError):
            pass
    raise RiskConfigError(
        'trading_window must be two exchange-local times like ["08:30", "15:00"], or false'
    )


@dataclass(frozen=True)
class Refusal:
    """Why an entry was refused: the rule's name and a sentence for the trader."""

    rule: str
    detail: str


class RailState:
    """The rails' state for one stream (one client's instrument, or one env episode).

    Feed it in time order: :meth:`on_bar` for every bar (with the session it belongs to and
    the minutes left before that session's close), :meth:`on_position` for every position
    report, then :meth:`decide` for the policy's action on the bar.
    """

    def __init__(self, config: RiskConfig) -> None:
        self.config = config
        self.session: Hashable | None = None
        self.entries = 0
        self.losses_in_a_row = 0
        self.cooldown_left = 0
        self.realized_pnl: float | None = None
        self.side = 0
        self.minutes_to_close: float | None = None
        self.time_of_day: time | None = None

    def on_bar(
        self, session: Hashable, local_time: datetime, minutes_to_close: float | None
    ) -> None:
        """A new bar of ``session`` (any hashable that changes when a session starts)."""
        if session != self.session:
            self.session = session
            self.entries = 0
            self.realized_pnl = None  # NinjaTrader's session P&L starts again
            if self.side == 0:
                self.losses_in_a_row = 0  # a losing streak is counted within a session
        # A cooldown counts bars, whichever session they belong to.
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
        self.minutes_to_close = minutes_to_close
        self.time_of_day = local_time.time()

    def on_position(self, side: int, realized_pnl: float | None) -> None:
        """A position report; ``realized_pnl`` is the session's realized P&L (or None)."""
        if realized_pnl is not None:
            previous = self.realized_pnl
            # A trade closed: the position went flat, or the flat P&L moved (a report
            # that came apart from the fill). A scratch trade (no P&L change) counts too:
            # it ends a losing streak.
            closed = self.side != 0 or realized_pnl != previous
            if previous is not None and side == 0 and closed:
                self._trade_closed(realized_pnl - previous)
            self.realized_pnl = realized_pnl
        self.side = side

    def _trade_closed(self, result: float) -> None:
        if result < 0:
            self.losses_in_a_row += 1
            limit = self.config.cooldown_losses
            if limit is not None and self.losses_in_a_row >= limit:
                self.cooldown_left = self.config.cooldown_bars
                self.losses_in_a_row = 0
        else:
            self.losses_in_a_row = 0

    def blocking(self, halted: bool = False) -> str | None:
        """The rule of the first rail that refuses an entry now, or None (what
        :meth:`refusal` names, without building its sentence)."""
        if halted:
            return "kill_switch"
        config = self.config
        if not config.enabled:
            return None
        limit = config.session_loss_limit
        if limit is not None and self.realized_pnl is not None and self.realized_pnl <= -limit:
            return "session_loss"
        most = config.max_entries_per_session
        if most is not None and self.entries >= most:
            return "max_entries"
        if self.cooldown_left > 0:
            return "cooldown"
        window = config.trading_window
        if window is not None and self.time_of_day is not None:
            start, end = window
            now = self.time_of_day
            inside = start <= now < end if start < end else (now >= start or now < end)
            if not inside:
                return "trading_window"
        before = config.no_entry_minutes_before_close
        if before > 0 and self.minutes_to_close is not None and self.minutes_to_close < before:
            return "session_close"
        return None

    def refusal(self, halted: bool = False) -> Refusal | None:
        """The first rail that refuses an entry now, or None."""
        rule = self.blocking(halted)
        return None if rule is None else Refusal(rule, self._detail(rule))

    def _detail(self, rule: str) -> str:
        """The trader's sentence for a refusal by ``rule`` (the rail's state now)."""
        config = self.config
        if rule == "kill_switch":
            return "trading is halted by the operator; `ai-trading-bridge resume`"
        if rule == "session_loss":
            return (
                f"session realized P&L {self.realized_pnl:.2f} is at or below the loss limit "
                f"-{config.session_loss_limit:.2f}; no entries until the next session"
            )
        if rule == "max_entries":
            return f"{self.entries} entries this session (limit {config.max_entries_per_session})"
        if rule == "cooldown":
            return (
                f"{config.cooldown_losses} losing trades in a row: no entries for "
                f"{self.cooldown_left} more bars"
            )
        if rule == "trading_window":
            assert config.trading_window is not None and self.time_of_day is not None
            start, end = config.trading_window
            return (
                f"{self.time_of_day.strftime('%H:%M')} is outside the trading window "
                f"{start.strftime('%H:%M')}-{end.strftime('%H:%M')} (exchange time)"
            )
        return (
            f"{self.minutes_to_close:.0f} minutes to the session close (no entries in "
            f"the last {config.no_entry_minutes_before_close:g})"
        )

    def decide(self, action: int, halted: bool = False) -> tuple[int, Refusal | None]:
        """The action to send for the policy's ``action``: an entry a rail refuses
        becomes HOLD; an entry let through is counted."""
        if action not in ENTRY_ACTIONS:
            return action, None
        refused = self.refusal(halted)
        if refused is not None:
            return int(Action.HOLD), refused
        self.entries += 1
        return action, None

    def counters(self) -> tuple[Any, ...]:
        """What the trader reads off the rails, minus the clock: entries, realized P&L,
        losing streak and whether a cooldown runs. A change is worth a log line; the
        minutes to the close and the cooldown's countdown change every bar and are not."""
        return (self.entries, self.realized_pnl, self.losses_in_a_row, self.cooldown_left > 0)

    def state(self, halted: bool = False) -> str:
        """``halted`` (kill switch), ``reducing`` (a rail refuses entries) or ``active``."""
        if halted:
            return HALTED
        return REDUCING if self.blocking() is not None else ACTIVE

    def rails(self, halted: bool = False) -> dict[str, Any]:
        """Each rail's state, for hello replies and the monitor."""
        config = self.config
        return {
            "blocking": self.blocking(halted),
            "kill_switch": halted,
            "enabled": config.enabled,
            "session_loss": {
                "limit": config.session_loss_limit,
                "realized_pnl": self.realized_pnl,
            },
            "max_entries": {"limit": config.max_entries_per_session, "entries": self.entries},
            "cooldown": {
                "after_losses": config.cooldown_losses,
                "losses_in_a_row": self.losses_in_a_row,
                "bars_left": self.cooldown_left,
            },
            "trading_window": None
            if config.trading_window is None
            else [t.strftime("%H:%M") for t in config.trading_window],
            "session_close": {
                "no_entry_minutes": config.no_entry_minutes_before_close,
                "minutes_to_close": None
                if self.minutes_to_close is None
                else round(self.minutes_to_close, 1),
            },
        }


def is_stale(
    seconds_since_bar: float, period_s: float, stale_after_bars: int, market_open: bool
) -> bool:
    """The stale-data watchdog: no bar for ``stale_after_bars`` periods while open."""
    return market_open and period_s > 0 and seconds_since_bar > stale_after_bars * period_s
