"""Structured monitoring: the canonical decision line, the rolling action histogram and
the warnings the retraining guide asks to watch for ("check action distribution over 100
bars; verify PM actions only when position open; confirm HOLD is dominant when flat").

Events (all structured fields, rendered as JSON lines by ``configure_logging``):

- ``decision`` (info): one per bar: client, instrument, seq, time, action, action_id,
  model_action, side, mask, probs, warming_up, guarded, latency_us, model_version.
- ``action_histogram`` (info): every ``every`` decisions per client+instrument, and with
  every warning below: counts and shares over the last ``window`` decisions overall, on
  flat bars and in a position.
- ``risk_refused`` (info): a risk rail turned the model's entry into HOLD (rule, detail,
  model_action as the wire's integer and model_action_name).
- ``guarded`` (info): the model chose an entry while in a position; HOLD was sent
  (model_action as the wire's integer and model_action_name, as ``risk_refused``).
- ``pm_action_while_flat`` (warning): a position-management action sent while flat
  (impossible under the mask: seeing it means a bug).
- ``hold_share_out_of_band`` (warning): over a full window, HOLD's share of the flat bars
  left the guide's 80-90% band; repeated once per window while it stays out.
- ``action_share_high`` (warning): one action took more than ``max_action_share`` of a
  full window (the guide's collapse: MOVE_TO_BE 76%), repeated once per window.
- ``request_rejected`` (warning), ``retry`` (info), ``request`` (debug) for the rest.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import structlog

from bridge.config import MonitorConfig
from bridge.dispatch import Decision, Outcome
from env.config import ACTION_NAMES, N_ACTIONS, POSITION_MANAGEMENT_ACTIONS

log = structlog.get_logger()

MIN_FLAT_BARS = 20  # flat bars a window needs before the HOLD band is judged
SHARE_DIGITS = 3


class ActionHistogram:
    """Counts of the last ``window`` actions, overall, on flat bars and in a position."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._recent: deque[tuple[int, bool]] = deque()
        self.flat = [0] * N_ACTIONS
        self.in_position = [0] * N_ACTIONS

    def add(self, action: int, flat: bool) -> None:
        """Count one decision, dropping the oldest once the window is full."""
        if len(self._recent) == self.window:
            old_action, old_flat = self._recent.popleft()
            (self.flat if old_flat else self.in_position)[old_action] -= 1
        self._recent.append((action, flat))
        (self.flat if flat else self.in_position)[action] += 1

    @property
    def full(self) -> bool:
        """Whether the window holds ``window`` decisions."""
        return len(self._recent) == self.window

    @property
    def total(self) -> list[int]:
        """Counts over the whole window."""
        return [f + p for f, p in zip(self.flat, self.in_position)]

    def fields(self) -> dict[str, Any]:
        """Structured log fields: counts and shares overall, flat and in position."""
        total = self.total
        return {
            "bars": len(self._recent),
            "counts": _named(total),
            "shares": _shares(total),
            "flat_bars": sum(self.flat),
            "flat_counts": _named(self.flat),
            "flat_shares": _shares(self.flat),
            "position_bars": sum(self.in_position),
            "position_counts": _named(self.in_position),
            "position_shares": _shares(self.in_position),
        }


def _named(counts: list[int]) -> dict[str, int]:
    return dict(zip(ACTION_NAMES, counts))


def _shares(counts: list[int]) -> dict[str, float]:
    n = sum(counts)
    return {name: round(c / n, SHARE_DIGITS) if n else 0.0 for name, c in zip(ACTION_NAMES, counts)}


@dataclass
class _StreamWatch:
    histogram: ActionHistogram
    decisions: int = 0
    hold_out_since: int | None = None  # decision count at the last band warning
    share_warned: dict[int, int] = field(default_factory=dict)


class Monitor:
    """Logs every outcome and watches each client+instrument's action distribution."""

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self._streams: dict[tuple[str, str], _StreamWatch] = {}

    def observe(self, outcome: Outcome, latency_us: int) -> None:
        """Log one request's outcome; ``latency_us`` is receive to reply sent."""
        if not outcome.ok:
            log.warning(
                "request_rejected",
                code=outcome.error_code,
                message=outcome.error_message,
                type=outcome.type,
                client=outcome.client,
                instrument=outcome.instrument,
                seq=outcome.seq,
                latency_us=latency_us,
            )
        elif outcome.retry:
            log.info(
                "retry",
                client=outcome.client,
                instrument=outcome.instrument,
                seq=outcome.seq,
                latency_us=latency_us,
                detail="same seq as the last request: cached reply resent, model not run",
            )
        elif outcome.decision is not None:
            self._decision(outcome, outcome.decision, latency_us)
        else:
            log.debug(
                "request",
                type=outcome.type,
                client=outcome.client,
                instrument=outcome.instrument,
                seq=outcome.seq,
                latency_us=latency_us,
            )

    def _decision(self, outcome: Outcome, decision: Decision, latency_us: int) -> None:
        where = {"client": outcome.client, "instrument": outcome.instrument}
        log.info(
            "decision",
            **where,
            seq=outcome.seq,
            time=decision.time,
            action=ACTION_NAMES[decision.action],
            action_id=decision.action,
            model_action=decision.model_action,
            side=decision.side,
            mask=decision.mask,
            probs=decision.probs,
            warming_up=decision.warming_up,
            guarded=decision.guarded,
            risk_rule=decision.risk_rule,
            latency_us=latency_us,
            model_version=outcome.model_version,
        )
        if decision.risk_rule is not None:
            log.info(
                "risk_refused",
                **where,
                seq=outcome.seq,
                rule=decision.risk_rule,
                detail=decision.risk_detail,
                # An integer, as the reply's risk block carries it; the name for people.
                model_action=decision.model_action,
                model_action_name=ACTION_NAMES[decision.model_action],
            )
        if decision.guarded:
            log.info(
                "guarded",
                **where,
                seq=outcome.seq,
                # As risk_refused: the wire's integer, and the name for people.
                model_action=decision.model_action,
                model_action_name=ACTION_NAMES[decision.model_action],
                side=decision.side,
                detail="entry chosen while in a position: HOLD sent instead",
            )
        warned = False
        if decision.side == 0 and decision.action in POSITION_MANAGEMENT_ACTIONS:
            warned = True
            log.warning(
                "pm_action_while_flat",
                **where,
                seq=outcome.seq,
                action=ACTION_NAMES[decision.action],
                detail="a position-management action was sent while flat; the mask should "
                "make this impossible",
            )
        if decision.warming_up:
            return
        key = (outcome.client or "", outcome.instrument or "")
        watch = self._streams.get(key)
        if watch is None:
            watch = self._streams[key] = _StreamWatch(ActionHistogram(self.config.window))
        watch.histogram.add(decision.action, decision.side == 0)
        watch.decisions += 1
        if watch.histogram.full:
            warned = self._check_hold_band(watch, where) | warned
            warned = self._check_action_shares(watch, where) | warned
        if warned or watch.decisions % self.config.every == 0:  # always with a warning
            log.info(
                "action_histogram", **where, window=self.config.window, **watch.histogram.fields()
            )

    def _check_hold_band(self, watch: _StreamWatch, where: dict[str, Any]) -> bool:
        """Warn when HOLD left its band; returns whether a warning was logged."""
        flat = watch.histogram.flat
        flat_bars = sum(flat)
        if flat_bars < MIN_FLAT_BARS:
            return False
        share = flat[0] / flat_bars
        low, high = self.config.hold_band
        if low <= share <= high:
            if watch.hold_out_since is not None:
                log.info("hold_share_back_in_band", **where, hold_share=round(share, SHARE_DIGITS))
            watch.hold_out_since = None
            return False
        since = watch.hold_out_since
        if since is None or watch.decisions - since >= self.config.window:
            watch.hold_out_since = watch.decisions
            log.warning(
                "hold_share_out_of_band",
                **where,
                hold_share=round(share, SHARE_DIGITS),
                band=list(self.config.hold_band),
                flat_bars=flat_bars,
                detail="HOLD should take 80-90% of flat bars (guide's success criteria)",
            )
            return True
        return False

    def _check_action_shares(self, watch: _StreamWatch, where: dict[str, Any]) -> bool:
        """Warn when one action dominates; returns whether a warning was logged."""
        total = watch.histogram.total
        n = sum(total)
        warned = False
        for action, count in enumerate(total):
            share = count / n
            if share <= self.config.max_action_share:
                watch.share_warned.pop(action, None)
                continue
            since = watch.share_warned.get(action)
            if since is None or watch.decisions - since >= self.config.window:
                watch.share_warned[action] = watch.decisions
                log.warning(
                    "action_share_high",
                    **where,
                    action=ACTION_NAMES[action],
                    share=round(share, SHARE_DIGITS),
                    limit=self.config.max_action_share,
                    bars=n,
                    detail="one action dominates the window: is the model collapsing?",
                )
                warned = True
        return warned
