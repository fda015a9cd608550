"""The masked futures trading environment."""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from env.bars import Bars, TooFewBarsError, load_bars, utc_seconds
from env.config import (
    ACTION_NAMES,
    MARKET_FEATURE_COUNT,
    N_ACTIONS,
    TOTAL_MARKET_FEATURES,
    TOTAL_OBSERVATION_SIZE,
    WARMUP_BARS,
    Action,
)
from env.contracts import ContractSpec
from env.execution import ExecutionConfig, SimulatedPosition, bracket_prices
from env.features import compute_market_features, position_features
from env.instruments import DEFAULT_INSTRUMENT, Instrument
from env.mask import (
    FLAT_MASK,
    FLAT_NO_ENTRY_MASK,
    IN_POSITION_MASK,
    NO_ENTRY_MINUTES_BEFORE_CLOSE,
    entry_blocked_by_close,
)
from env.periods import BarPeriod, default_episode_bars
from env.reward import (
    INVALID_ACTION_PENALTY,
    REWARD_PRESETS,
    SHAPING_TERMS,
    clip_step_reward,
    shaping_reward,
)
from env.risk import RailState, RiskConfig
from env.synthetic import default_bars

_PM_BITS = {Action.MOVE_TO_BE: 1, Action.ENABLE_TRAIL: 2, Action.DISABLE_TRAIL: 4}


@dataclass(frozen=True)
class EnvConfig:
    """Everything that defines an environment besides its bars.

    Attributes:
        instrument: Contract terms (tick size, point value, commission).
        execution: Bracket, trailing and slippage settings.
        reward: Reward preset name, ``"default"``, ``"constrained"`` (default plus
            settable shaping terms, :meth:`TradingEnv.set_shaping`) or ``"seed"``.
        episode_bars: Decisions per episode; 0: the default for the bars' period
            (``env.periods.default_episode_bars``: 390 one-minute bars, 60 hourly or
            daily bars). ``TradingEnv`` without a config uses 0.
        max_invalid_streak: Consecutive invalid actions after which the episode is
            truncated; an unmasked agent cannot stall an episode forever.
        bar_period: The period the env trades; None: the bars' own. Given, it must
            match the bars' (a model trained on 1-minute bars is not a 5-minute model).
        flatten_at_session_close: Close a position at the session's close, as
            NinjaTrader's strategy setting "Exit on session close" (on by default) does.
        exit_seconds_before_close: NinjaTrader's "Exit on session close seconds" (30 by
            default): the flatten happens on the bar closing within this many seconds
            of the session's close (or the last bar before a halt, weekend or holiday).
        no_entry_minutes_before_close: No BUY/SELL (masked) on a bar closing less than
            this many minutes before its session's close; 0: no limit. The same rule as
            the daemon's ``session_close`` risk rail (``env.mask.entry_blocked_by_close``).
        risk: The daemon's risk rails (``env.risk.RiskConfig``) applied to each action as
            the daemon applies them, so what is validated is what will trade; None (the
            default, and for training): no rails. A refused entry becomes HOLD (no invalid
            penalty: the agent chose a valid action) and ``info["risk"]`` records it.

    Sessions come from the contract's calendar (``env.sessions``) and apply to intraday
    bars; on daily or longer bars positions are held across days.
    """

    instrument: Instrument = DEFAULT_INSTRUMENT
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    reward: str = "default"
    episode_bars: int = 390
    max_invalid_streak: int = 1000
    bar_period: BarPeriod | None = None
    flatten_at_session_close: bool = True
    exit_seconds_before_close: int = 30
    no_entry_minutes_before_close: float = NO_ENTRY_MINUTES_BEFORE_CLOSE
    risk: RiskConfig | None = None

    def __post_init__(self) -> None:
        if self.reward not in REWARD_PRESETS:
            raise ValueError(
                f"unknown reward preset {self.reward!r}; expected one of {sorted(REWARD_PRESETS)}"
            )
        if self.episode_bars < 0:
            raise ValueError(f"episode_bars must be >= 1 (or 0: default), got {self.episode_bars}")
        if self.exit_seconds_before_close < 0:
            raise ValueError(
                f"exit_seconds_before_close must be >= 0, got {self.exit_seconds_before_close}"
            )
        if not 0 <= self.no_entry_minutes_before_close <= 1440:
            raise ValueError(
                "no_entry_minutes_before_close must be 0..1440, got "
                f"{self.no_entry_minutes_before_close}"
            )

    def resolved(self, bar_period: BarPeriod) -> EnvConfig:
        """This config for bars of ``bar_period``: the period filled in and a 0
        ``episode_bars`` replaced by the period's default.

        Raises:
            ValueError: when the config names another period than ``bar_period``.
        """
        if self.bar_period is not None and self.bar_period != bar_period:
            raise ValueError(
                f"the bars are {bar_period} bars but the env config says {self.bar_period}; "
                "use bars of the model's period (or set the period explicitly)"
            )
        return dataclasses.replace(
            self,
            bar_period=bar_period,
            episode_bars=self.episode_bars or default_episode_bars(bar_period),
        )

    def feature_terms(self) -> tuple[float, bool]:
        """``(tick_size, intraday)`` the market features are computed with, the one rule
        for the env and the daemon: the contract's tick (the ATR floor, price units) and
        whether the bar period is shorter than a day (no period: intraday).
        """
        intraday = self.bar_period is None or self.bar_period.is_intraday
        return self.instrument.tick_size, intraday

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, as stored in a model card."""
        return {
            "instrument": dataclasses.asdict(self.instrument),
            "execution": dataclasses.asdict(self.execution),
            "reward": self.reward,
            "episode_bars": self.episode_bars,
            "max_invalid_streak": self.max_invalid_streak,
            "bar_period": None if self.bar_period is None else self.bar_period.to_json(),
            "flatten_at_session_close": self.flatten_at_session_close,
            "exit_seconds_before_close": self.exit_seconds_before_close,
            "no_entry_minutes_before_close": self.no_entry_minutes_before_close,
            **({} if self.risk is None else {"risk": self.risk.to_dict()}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvConfig:
        """Inverse of :meth:`to_dict`; unknown keys are rejected with their names."""
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown env config keys {sorted(unknown)}")
        values = dict(data)
        if "instrument" in values:
            values["instrument"] = ContractSpec.from_dict(values["instrument"])
        if "execution" in values:
            values["execution"] = ExecutionConfig(**values["execution"])
        if values.get("bar_period") is not None:
            values["bar_period"] = BarPeriod.from_json(values["bar_period"])
        if values.get("risk") is not None:
            # to_dict writes an off limit as None; from_dict reads it as false
            values["risk"] = RiskConfig.from_dict(
                {k: False if v is None else v for k, v in values["risk"].items()}
            )
        return cls(**values)


class TradingEnv(gym.Env):
    """Trade one futures contract on its bars (any period), one decision per bar close.

    ## Action space: ``Discrete(6)``

    | id | action        | flat                          | long / short                        |
    |----|---------------|-------------------------------|-------------------------------------|
    | 0  | HOLD          | do nothing                    | do nothing                          |
    | 1  | BUY           | enter long at the next open   | -10, not executed                   |
    | 2  | SELL          | enter short at the next open  | -10, not executed                   |
    | 3  | MOVE_TO_BE    | invalid: -10, not executed    | stop to the entry price             |
    | 4  | ENABLE_TRAIL  | invalid: -10, not executed    | trail ``trail_atr`` x ATR behind    |
    | 5  | DISABLE_TRAIL | invalid: -10, not executed    | stop trailing; the stop stays       |

    ``action_masks()`` is ``[1,1,1,0,0,0]`` flat (``[1,0,0,0,0,0]`` on a bar closing less than
    ``no_entry_minutes_before_close`` before its session's close) and ``[1,1,1,1,1,1]``
    in a position. An
    invalid action is not executed: the same observation comes back, time does not advance,
    the reward is -10.0 and ``info`` holds ``invalid_action``, ``action``, ``position`` and
    ``reason``. Entries get a tick-rounded bracket: stop ``stop_atr`` x ATR and target
    ``target_atr`` x ATR from the decision bar's close (see ``env.execution``).

    ## Observation space: ``Box(-inf, inf, (228,), float32)``

    | index     | meaning                                                  | range            |
    |-----------|----------------------------------------------------------|------------------|
    | 0..219    | 20 bars x 11 features, oldest bar first, bar-major:      | see env.features |
    |           | bar k (0 = oldest) at 11k..11k+10                        |                  |
    | 220       | position_value: -1 short, 0 flat, 1 long                 | {-1, 0, 1}       |
    | 221       | entry_price_ratio: entry / close (1 when flat)           | ~1               |
    | 222       | sl_distance_atr: abs(close - stop) / ATR (0 when flat)   | >= 0             |
    | 223       | tp_distance_atr: abs(target - close) / ATR (0 when flat) | >= 0             |
    | 224       | time_in_position: bars since the entry fill (0 flat)     | >= 0             |
    | 225       | can_enter: 1 when flat                                   | {0, 1}           |
    | 226       | can_manage: 1 in a position                              | {0, 1}           |
    | 227       | has_position: 1 in a position                            | {0, 1}           |

    ## Reward

    The preset's shaping reward (``env.reward``: ``default`` or the guide's ``seed``) plus,
    on the step a trade closes, its net PnL in R (dollars over the entry ATR's dollar value),
    clipped to ``[-20, 20]`` per step (``env.reward.MAX_STEP_REWARD``).

    ## Episodes

    ``reset`` starts at a random bar (from ``self.np_random``) with at least
    ``WARMUP_BARS`` bars of history, flat. After ``episode_bars`` decisions the episode
    terminates and any position is flattened at that bar's close. On intraday bars a
    position is also flattened at the session's close (NinjaTrader's Exit on session
    close; ``exit_reason`` ``"session_close"``), see :class:`EnvConfig`. ``info["trade"]``
    holds the :class:`~env.execution.Trade` closed during a step, if any.

    ``bars`` is a :class:`~env.bars.Bars` series or the path of a NinjaTrader export or
    CSV (loaded with the config's contract); without a config the episode length
    follows the bars' period.

    ## Version history

    - v1: 228-value observation (guide's 8 position features), masks, -10 penalty.
    - v2: any contract and bar period; session-close flatten and no-entry window; ATR
      floored at one tick; step reward bounded; features ``scalefree-v2``.
    """

    metadata = {"render_modes": []}

    def __init__(
        self, bars: Bars | str | os.PathLike[str] | None = None, config: EnvConfig | None = None
    ) -> None:
        super().__init__()
        config = config or EnvConfig(episode_bars=0)
        if isinstance(bars, (str, os.PathLike)):
            bars = load_bars(bars, contract=config.instrument)
        elif bars is None:
            bars = default_bars()
        elif not isinstance(bars, Bars):
            raise TypeError(
                "bars must be a Bars series or the path of a bar file (str or PathLike), "
                f"got {type(bars).__name__}"
            )
        self.bars = bars
        self.config = config = config.resolved(bars.bar_period)
        n = len(self.bars)
        self._first_decision = WARMUP_BARS - 1
        need = self._first_decision + config.episode_bars + 1
        if n < need:
            raise TooFewBarsError(
                f"{bars.source or 'bars'}: {n} bars is too short for one episode of "
                f"{config.episode_bars} bars (needs {need} with the warm-up); use more bars "
                "or fewer per episode (--episode-bars)"
            )
        self.observation_space = spaces.Box(
            low=-np.inf, high=np.inf, shape=(TOTAL_OBSERVATION_SIZE,), dtype=np.float32
        )
        self.action_space = spaces.Discrete(N_ACTIONS)

        b = self.bars
        tick_size, intraday = config.feature_terms()
        features, atr = compute_market_features(
            b.open,
            b.high,
            b.low,
            b.close,
            b.volume,
            b.minute_of_day,
            tick_size=tick_size,
            intraday=intraday,
        )
        self._flatten_at, self._no_entry, self._session_id, self._minutes_to_close = session_points(
            b, config
        )
        # Random episode starts are bars where an entry is possible: an episode that opens
        # in the no-entry minutes before a close has nothing to decide (and the guide's
        # pre-training test expects a fresh flat env to allow BUY and SELL).
        starts = np.arange(self._first_decision, len(b) - config.episode_bars)
        open_starts = starts[~np.asarray(self._no_entry, dtype=bool)[starts]]
        self._random_starts = open_starts if len(open_starts) else starts
        self.rails: RailState | None = None  # the risk rails of the current episode
        self._rails_bar = -1  # the last bar fed to the rails
        self._session_pnl = 0.0  # realized P&L of the rails' session, account currency
        self.market_features = features
        self._features_flat = features.reshape(-1)
        self._open = b.open.tolist()
        self._high = b.high.tolist()
        self._low = b.low.tolist()
        self._close = b.close.tolist()
        self._atr = atr.tolist()
        self._reward_fn = REWARD_PRESETS[self.config.reward]
        self.book = SimulatedPosition(self.config.instrument, self.config.execution)
        self.t = self._first_decision
        self._end = self.t + self.config.episode_bars
        self._pm_paid = 0
        self._invalid_streak = 0
        self.shaping: dict[str, float] = {}

    def set_shaping(self, terms: dict[str, float]) -> None:
        """Set the ``constrained`` preset's shaping terms (``env.reward.SHAPING_TERMS``);
        other presets ignore them."""
        unknown = set(terms) - set(SHAPING_TERMS)
        if unknown:
            raise ValueError(f"unknown shaping terms {sorted(unknown)}; known: {SHAPING_TERMS}")
        constrained = self.config.reward == "constrained"
        self.shaping = {k: float(v) for k, v in terms.items()} if constrained else {}

    def clone(self) -> TradingEnv:
        """A new env on the same bars sharing this one's read-only feature arrays, with
        its own position and random generator: a hundred envs cost one feature pass."""
        twin = copy.copy(self)
        twin.book = SimulatedPosition(self.config.instrument, self.config.execution)
        twin._np_random = None
        twin._np_random_seed = None
        twin.t = self._first_decision
        twin._end = twin.t + self.config.episode_bars
        twin._pm_paid = 0
        twin._invalid_streak = 0
        twin.shaping = dict(self.shaping)
        twin.rails = None if self.config.risk is None else RailState(self.config.risk)
        twin._rails_bar = -1
        twin._session_pnl = 0.0
        return twin

    # -- the guide's API -------------------------------------------------------------

    @property
    def position(self) -> int:
        """-1 short, 0 flat, 1 long."""
        return self.book.side

    @position.setter
    def position(self, side: int) -> None:
        """Force a position, as the guide's tests do: a non-zero side opens one at the
        current close with a fresh bracket; 0 closes it without a trade."""
        if side not in (-1, 0, 1):
            raise ValueError(f"position must be -1, 0 or 1, got {side!r}")
        book = self.book
        if side == 0:
            book.reset()
            return
        close, atr = self._close[self.t], self._atr[self.t]
        book.reset()
        book.side = side
        book.entry_price = close
        book.entry_bar = self.t
        book.entry_atr = atr
        book.stop_price, book.target_price = bracket_prices(
            side, close, atr, self.config.instrument, self.config.execution
        )

    def action_masks(self) -> np.ndarray:
        """Binary mask of valid actions: ``[1,1,1,0,0,0]`` flat (``[1,0,0,0,0,0]`` in the
        last minutes before a session's close), all ones in a position."""
        if self.book.side != 0:
            return IN_POSITION_MASK.copy()
        return (FLAT_NO_ENTRY_MASK if self._no_entry[self.t] else FLAT_MASK).copy()

    # -- gymnasium API ---------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        last_start = len(self._close) - 1 - self.config.episode_bars
        if options and "start" in options:
            start = int(options["start"])
            if not self._first_decision <= start <= last_start:
                raise ValueError(
                    f"start {start} out of range [{self._first_decision}, {last_start}]"
                )
        else:
            start = int(self._random_starts[self.np_random.integers(len(self._random_starts))])
        self.t = start
        self._end = start + self.config.episode_bars
        self.book.reset()
        self._pm_paid = 0
        self._invalid_streak = 0
        if self.config.risk is not None:
            self.rails = RailState(self.config.risk)
            self._rails_bar = -1
            self._session_pnl = 0.0
        return self._get_obs(), self._get_info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = int(action)
        book = self.book
        side_before = book.side
        if side_before == 0 and (
            action >= Action.MOVE_TO_BE or (action != Action.HOLD and self._no_entry[self.t])
        ):
            return self._invalid(action)
        self._invalid_streak = 0
        refusal = None
        if self.rails is not None:
            action, refusal = self._apply_rails(action)

        t = self.t
        changed = book.apply(action, self._close[t], self._atr[t])
        first_in_trade = True
        bit = _PM_BITS.get(action)  # type: ignore[call-overload]
        if bit is not None:
            first_in_trade = not (self._pm_paid & bit)
            if changed:
                self._pm_paid |= bit

        t += 1
        self.t = t
        trade = book.on_bar(t, self._open[t], self._high[t], self._low[t], self._close[t])
        terminated = t >= self._end
        if trade is None and book.side != 0 and self._flatten_at[t]:
            trade = book.flatten(t, self._close[t], "session_close")
        if terminated and book.side != 0:
            trade = book.flatten(t, self._close[t])
        if trade is not None or book.side == 0:
            self._pm_paid = 0

        reward = self._reward_fn(action, side_before, book.side, changed, first_in_trade)
        if self.shaping:
            reward += shaping_reward(self.shaping, action, side_before)
        info = self._get_info()
        if refusal is not None:
            info["risk"] = refusal
        if trade is not None:
            reward += trade.r_multiple
            info["trade"] = trade
            self._session_pnl += trade.pnl_dollars
        return self._get_obs(), clip_step_reward(reward), terminated, False, info

    def _apply_rails(self, action: int) -> tuple[int, dict[str, Any] | None]:
        """The daemon's rails on the bar just closed (``bridge.dispatch``'s order: the
        bar, then the position report with the session's realized P&L, then the action;
        an entry while in a position is the env's own invalid action, left as it is)."""
        rails = self.rails
        assert rails is not None
        t = self.t
        if t != self._rails_bar:
            self._rails_bar = t
            session = self._session_id[t]
            if session != rails.session:
                self._session_pnl = 0.0
            local_time = self.bars.time[t].astype("datetime64[us]").item()
            rails.on_bar(session, local_time, self._minutes_to_close[t])
            rails.on_position(self.book.side, self._session_pnl)
        if self.book.side != 0:
            return action, None
        decided, refusal = rails.decide(action)
        if refusal is None:
            return decided, None
        return decided, {"rule": refusal.rule, "detail": refusal.detail, "model_action": action}

    # -- internals -------------------------------------------------------------------

    def _invalid(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._invalid_streak += 1
        info = {
            "invalid_action": True,
            "action": action,
            "position": self.book.side,
            "reason": f"Action {action} ({ACTION_NAMES[action]}) invalid when "
            f"position={self.book.side}"
            + (" (no entries this close to the session's close)" if action < 3 else ""),
        }
        truncated = self._invalid_streak >= self.config.max_invalid_streak
        return self._get_obs(), INVALID_ACTION_PENALTY, False, truncated, info

    def _get_obs(self) -> np.ndarray:
        t = self.t
        book = self.book
        obs = np.empty(TOTAL_OBSERVATION_SIZE, dtype=np.float32)
        start = (t + 1) * MARKET_FEATURE_COUNT - TOTAL_MARKET_FEATURES
        obs[:TOTAL_MARKET_FEATURES] = self._features_flat[start : start + TOTAL_MARKET_FEATURES]
        obs[TOTAL_MARKET_FEATURES:] = position_features(
            book.side,
            book.entry_price,
            book.stop_price,
            book.target_price,
            t - book.entry_bar,
            self._close[t],
            self._atr[t],
        )
        return obs

    def _get_info(self) -> dict[str, Any]:
        return {"invalid_action": False, "position": self.book.side}

    @property
    def current_atr(self) -> float:
        """ATR of the bar just closed."""
        return self._atr[self.t]

    @property
    def current_price(self) -> float:
        """Close of the bar just closed."""
        return self._close[self.t]


def entry_blocked_at(minutes_to_close: float | None, config: EnvConfig) -> bool:
    """Whether BUY/SELL are masked on an intraday bar closing ``minutes_to_close`` minutes
    before its session's close: inside ``no_entry_minutes_before_close``, or at the close
    itself (within ``exit_seconds_before_close``). The one rule for the env's mask and the
    daemon's (a bar whose next bar opens another session is also blocked in the env, which
    sees that next bar)."""
    if entry_blocked_by_close(minutes_to_close, config.no_entry_minutes_before_close):
        return True
    return minutes_to_close is not None and minutes_to_close * 60.0 <= (
        config.exit_seconds_before_close
    )


def session_rules(bars: Bars, config: EnvConfig) -> tuple[list[bool], list[bool]]:
    """Per bar: whether a position is flattened at its close, and whether an entry is
    refused at its close (see :func:`session_points`)."""
    flatten, no_entry, _, _ = session_points(bars, config)
    return flatten, no_entry


def session_points(
    bars: Bars, config: EnvConfig
) -> tuple[list[bool], list[bool], list[int], list[float | None]]:
    """Per bar: whether a position is flattened at its close, and whether an entry is
    refused at its close, from the contract's session calendar (intraday bars only).

    Also per bar, for the risk rails: its session's id (a calendar session index; the
    bar's date on daily or longer bars) and the minutes from its close to the session's
    close (None on daily or longer bars), the values the daemon's rails get.

    A bar flattens when it closes within ``exit_seconds_before_close`` of its session's
    close, or when the next bar belongs to another session (a halt, weekend or holiday
    lies between them: a gap is a gap). Entries are refused on those bars and on bars
    closing less than ``no_entry_minutes_before_close`` before the close.
    """
    n = len(bars)
    period = bars.bar_period
    if n == 0 or not period.is_intraday or period.seconds is None:
        days = bars.time.astype("datetime64[D]").astype(np.int64).tolist()
        return [False] * n, [False] * n, days, [None] * n
    from env.sessions import SessionCalendar

    close_utc = utc_seconds(bars)
    day = np.timedelta64(7, "D")
    first = np.datetime64(int(close_utc[0]), "s").astype("datetime64[D]") - day
    last = np.datetime64(int(close_utc[-1]), "s").astype("datetime64[D]") + day
    calendar = SessionCalendar.for_contract(config.instrument, str(first), str(last))
    minutes = calendar.minutes_to_close_array(close_utc)
    session = calendar.bar_session_ids(close_utc)
    boundary = np.zeros(n, dtype=bool)
    boundary[:-1] = session[1:] != session[:-1]
    at_close = minutes * 60.0 <= config.exit_seconds_before_close
    flatten = (at_close | boundary) if config.flatten_at_session_close else np.zeros(n, bool)
    no_entry = np.array([entry_blocked_at(m, config) for m in minutes.tolist()])
    no_entry |= boundary
    return flatten.tolist(), no_entry.tolist(), session.tolist(), minutes.tolist()
