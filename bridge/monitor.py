"""``ai-trading-bridge monitor LOGFILE``: a live terminal view of the daemon's JSON log.

Reads the ``--log-file`` the daemon writes (one JSON object per line) and shows, per
client+instrument, the latest rolling action histogram, the risk rails' state, the
latency percentiles of the recent decisions and the most recent warnings. ``--once``
prints one snapshot and exits.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from bridge.killswitch import halt_text, one_line
from env.config import ACTION_NAMES

LATENCY_SAMPLES = 5000  # recent decisions the percentiles are computed over
RECENT_WARNINGS = 12


@dataclass
class MonitorState:
    """What the log has said so far."""

    histograms: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    latencies: deque[int] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    warnings: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_WARNINGS))
    decisions: int = 0
    rejected: int = 0
    retries: int = 0
    model_version: str = ""
    unreadable_lines: int = 0
    events: int = 0  # lines that are log events (JSON objects with an "event")
    risk: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    refusals: dict[str, int] = field(default_factory=dict)
    kill_switch: str = "off"

    def feed(self, lines: Iterable[str]) -> None:
        """Take in log lines (JSON objects; anything else is counted and skipped)."""
        for line in lines:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                self.unreadable_lines += 1
                continue
            if isinstance(event, dict):
                self.events += "event" in event
                self._event(event)

    def _event(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        if name == "decision":
            self.decisions += 1
            if isinstance(event.get("latency_us"), (int, float)):
                self.latencies.append(int(event["latency_us"]))
            self.model_version = str(event.get("model_version", self.model_version))
        elif name == "action_histogram":
            key = (str(event.get("client")), str(event.get("instrument")))
            self.histograms[key] = event
        elif name == "risk_state":
            key = (str(event.get("client")), str(event.get("instrument")))
            self.risk[key] = event
        elif name == "risk_refused":
            rule = str(event.get("rule"))
            self.refusals[rule] = self.refusals.get(rule, 0) + 1
        elif name == "kill_switch_engaged":
            self.kill_switch = f"ON {halt_text(event)}"
        elif name == "kill_switch_released":
            self.kill_switch = "off"
        elif name == "request_rejected":
            self.rejected += 1
        elif name == "retry":
            self.retries += 1
        elif name in ("serving", "model_reloaded"):
            self.model_version = str(event.get("model_version", self.model_version))
        if event.get("level") in ("warning", "error", "critical"):
            self.warnings.append(event)

    def percentiles(self) -> dict[str, int]:
        """p50, p90, p99 and max of the recent decision latencies (microseconds)."""
        if not self.latencies:
            return {}
        ordered = sorted(self.latencies)
        pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
        return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": ordered[-1]}


def render(state: MonitorState) -> Group:
    """The snapshot as rich renderables."""
    header = Text.assemble(
        ("ai-trading-bridge monitor", "bold"),
        f"  model {state.model_version or '?'}  decisions {state.decisions}  "
        f"rejected {state.rejected}  retries {state.retries}",
    )
    latency = Table(title="Decision latency (µs, receive to reply sent)", title_justify="left")
    stats = state.percentiles()
    for name in ("samples", "p50", "p90", "p99", "max"):
        latency.add_column(name, justify="right")
    if stats:
        latency.add_row(
            str(len(state.latencies)), *(str(stats[k]) for k in ("p50", "p90", "p99", "max"))
        )
    parts: list[Any] = [header, latency, _risk_table(state)]
    for (client, instrument), event in sorted(state.histograms.items()):
        parts.append(_histogram_table(client, instrument, event))
    warnings = Table(title="Recent warnings", title_justify="left")
    for name in ("time", "level", "event", "where", "detail"):
        warnings.add_column(name)
    for event in state.warnings:
        where = " ".join(str(event[k]) for k in ("client", "instrument") if event.get(k))
        detail = one_line(
            ", ".join(
                f"{k}={v}"
                for k, v in event.items()
                if k not in ("timestamp", "level", "event", "client", "instrument", "detail")
            )
        )
        warnings.add_row(
            str(event.get("timestamp", ""))[11:19],
            str(event.get("level")),
            str(event.get("event")),
            where,
            detail[:100],
        )
    parts.append(warnings)
    return Group(*parts)


def _risk_table(state: MonitorState) -> Table:
    refused = ", ".join(f"{rule} {n}" for rule, n in sorted(state.refusals.items())) or "none"
    table = Table(
        title=f"Risk rails  kill switch {state.kill_switch}  refused entries: {refused}",
        title_justify="left",
    )
    columns = ("stream", "state", "blocking", "P&L / limit", "entries", "cooldown", "to close")
    for name in (*columns, "as of bar (exchange time)"):
        table.add_column(name)
    for (client, instrument), event in sorted(state.risk.items()):
        rails = event.get("rails") or {}
        loss = rails.get("session_loss") or {}
        entries = rails.get("max_entries") or {}
        cooldown = rails.get("cooldown") or {}
        close = rails.get("session_close") or {}
        table.add_row(
            f"{instrument} ({client})",
            str(event.get("state")),
            str(rails.get("blocking") or "-"),
            f"{loss.get('realized_pnl')} / {_limit(loss.get('limit'), '-')}",
            f"{entries.get('entries')} / {_limit(entries.get('limit'))}",
            f"{cooldown.get('bars_left', 0)} bars",
            f"{close.get('minutes_to_close')} min",
            # logged when the state or a count changes: the clock-driven columns (cooldown
            # countdown, minutes to the close) are as of that bar
            str(event.get("bar_time") or "-").replace("T", " "),
        )
    return table


def _limit(value: Any, sign: str = "") -> str:
    """A rail's limit, or ``off`` when the risk config disables it."""
    return "off" if value is None else f"{sign}{value}"


def _histogram_table(client: str, instrument: str, event: dict[str, Any]) -> Table:
    table = Table(
        title=f"{instrument}  ({client}): last {event.get('bars', 0)} bars", title_justify="left"
    )
    table.add_column("action")
    for column in ("all", "share", "flat", "flat share", "in position", "pos share"):
        table.add_column(column, justify="right")
    for name in ACTION_NAMES:
        table.add_row(
            name,
            str(event.get("counts", {}).get(name, 0)),
            f"{event.get('shares', {}).get(name, 0.0):.1%}",
            str(event.get("flat_counts", {}).get(name, 0)),
            f"{event.get('flat_shares', {}).get(name, 0.0):.1%}",
            str(event.get("position_counts", {}).get(name, 0)),
            f"{event.get('position_shares', {}).get(name, 0.0):.1%}",
        )
    return table


def snapshot(path: Path) -> MonitorState:
    """Read a whole log file."""
    state = MonitorState()
    with open(path, encoding="utf-8", errors="replace") as f:
        state.feed(f)
    return state


class LogFollower:
    """Reads what was appended to a log file since the last look (like ``tail -f``);
    starts over when the file is truncated or replaced by a shorter one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = MonitorState()
        self._position = 0
        self._pending = ""

    def poll(self) -> bool:
        """Take in new complete lines; returns whether anything was read."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < self._position:  # truncated or rotated
            self._position, self._pending, self.state = 0, "", MonitorState()
        if size == self._position:
            return False
        with open(self.path, encoding="utf-8", errors="replace") as f:
            f.seek(self._position)
            chunk = f.read()
            self._position = f.tell()
        lines = (self._pending + chunk).split("\n")
        self._pending = lines.pop()  # an incomplete last line waits for the rest
        self.state.feed(lines)
        return True


def follow(path: Path, refresh_s: float, console: Console) -> None:
    """Follow ``path`` and redraw until Ctrl+C."""
    from rich.live import Live

    follower = LogFollower(path)
    follower.poll()
    with Live(render(follower.state), console=console, refresh_per_second=4) as live:
        while True:
            if follower.poll():
                live.update(render(follower.state))
            time.sleep(refresh_s)
