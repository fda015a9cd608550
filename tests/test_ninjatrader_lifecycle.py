"""The real AITradingBridge strategy class under NinjaTrader 8's lifecycle.

The strategy runs on the behavioural NinjaTrader double (tests/ninjatrader_harness/
NinjaTraderStubs.cs + SimDriver.cs, see tests/ninjatrader_sim.py) against a scripted
ZeroMQ daemon (real sockets, decisions chosen per bar) or the real daemon. One test per
way the strategy could lose money in real NinjaTrader: restart with an open account
position, time zones, settings changed in the strategy dialog, stops against the market,
late decisions and retry time, order state touched by out-of-order events, client-side
limits, two instances, a locked log file, and a second copy of the strategy file.

Needs Mono (``apt-get install -y --no-install-recommends mono-mcs``); fails without it.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from ninjatrader_sim import (
    TICK,
    Bar,
    Scenario,
    ScriptedDaemon,
    build_sim,
    buy,
    entries,
    events,
    final,
    printed,
    quiet_bars,
    reply_for,
    strategy_sources,
)
from test_ninjatrader import REPO, compile_cs

HARNESS_DIR = Path(__file__).resolve().parent / "ninjatrader_harness"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sim")
    exe = folder / "sim.exe"
    # The probe strategies (MANAGED_RULE_PROBE) ride along: one compile for every test.
    probe = folder / "Probe.cs"
    probe.write_text(MANAGED_RULE_PROBE)
    result = build_sim(exe, [*strategy_sources(), probe])
    assert result.returncode == 0, result.stdout + result.stderr
    return exe


@pytest.fixture()
def scripted() -> Iterator[ScriptedDaemon]:
    daemon = ScriptedDaemon()
    try:
        yield daemon
    finally:
        daemon.close()


def bars_with_live(live: list[tuple[float, float, float, float]]) -> tuple[list[Bar], list[Bar]]:
    """30 quiet history bars, then live bars with the given (open, high, low, close)."""
    history = quiet_bars(datetime(2025, 11, 7, 9, 31), 30)
    start = history[-1].time
    bars = [
        Bar(start + timedelta(minutes=i + 1), o, h, lo, c) for i, (o, h, lo, c) in enumerate(live)
    ]
    return history, bars


def naive(text: str) -> str:
    return text[:-1] if text.endswith("Z") else text


# ----------------------------------------------------- 1. restart with an open position


def test_restart_with_account_long_never_opens_a_second_position(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    """The account holds 1 long from before a crash; the model says BUY. NinjaTrader's
    default start leaves the account position out of the strategy's view, so an entry
    would make it 2 contracts ("Syncing Account Positions")."""
    scripted.decide = lambda r, i: buy(r, r["bar"]["close"] - 10, r["bar"]["close"] + 10)
    run = Scenario(scripted.endpoint, tmp_path, accounts={"Sim101": (1, 21000.0)}).run(sim)
    assert entries(run) == []
    assert abs(final(run)["account_position"]) <= 1
    assert "Sim101" in printed(run) and "Long 1" in printed(run)


def test_refusing_strategy_trades_again_once_the_account_is_flat(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    scripted.decide = lambda r, i: buy(r, r["bar"]["close"] - 10, r["bar"]["close"] + 10)
    run = Scenario(
        scripted.endpoint, tmp_path, accounts={"Sim101": (1, 21000.0)}, flatten={2: "Sim101"}
    ).run(sim)
    (flattened,) = events(run, "manual_flatten")
    placed = entries(run)
    assert len(placed) == 1 and run.index(placed[0]) > run.index(flattened)
    assert final(run)["account_position"] == 1
    assert "trading resumes" in printed(run)


def test_position_closed_by_hand_while_enabled_stops_trading_and_says_so(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    """The strategy is long; the trader closes the account position from Chart Trader. The
    strategy's own position is still long in NinjaTrader's books ("Strategy Position vs
    Account Position"), so its orders would now open a new position: it must say so loudly
    and place nothing more until the two agree."""
    history, live = bars_with_live([(21000.0, 21001.0, 20999.0, 21000.0)] * 5)

    def decide(r: dict[str, Any], i: int) -> dict[str, Any] | None:
        if r["position"]["side"] == 0:
            return buy(r, r["bar"]["close"] - 10, r["bar"]["close"] + 10)
        return reply_for(r, 3, orders={"stop_price": r["bar"]["close"] - 2})

    scripted.decide = decide
    scenario = Scenario(
        scripted.endpoint, tmp_path, history=history, live=live, flatten={2: "Sim101"}
    )
    run = scenario.run(sim)
    (flattened,) = events(run, "manual_flatten")
    later = run[run.index(flattened) :]
    assert [e for e in later if e["event"] in ("order", "order_change")] == []
    assert "closed outside the strategy" in printed(run)


def test_restart_adopting_the_account_position_protects_and_reports_it(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    scripted.decide = lambda r, i: buy(r, r["bar"]["close"] - 10, r["bar"]["close"] + 10)
    scenario = Scenario(
        scripted.endpoint,
        tmp_path,
        accounts={"Sim101": (1, 21000.0)},
        props={"A": {"AccountPositionAtStart": "Adopt", "AdoptedStopTicks": 40}},
    )
    run = scenario.run(sim)
    # NinjaTrader only honours AdoptAccountPosition in a strategy that declares
    # IsAdoptAccountPositionAware (Help Guide, "StartBehavior").
    assert events(run, "strategy_error") == []
    assert entries(run) == [], "never a second position"
    stops = [e for e in events(run, "order") if e["type"] == "StopMarket"]
    assert stops and stops[0]["price"] == 21000.0 - 40 * TICK
    assert final(run)["account_position"] == 1
    bars = scripted.of_type("bar")
    assert bars and all(b["position"]["side"] == 1 for b in bars)
    assert bars[0]["position"]["sl_price"] == 21000.0 - 40 * TICK


def test_adopted_position_closed_by_its_target_leaves_no_stop_working(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    """The adopted stop and target are separate orders; when one fills the strategy must
    cancel the other, or a stale stop would open a new position later."""
    history, live = bars_with_live(
        [(21000.0, 21001.0, 20999.0, 21000.0), (21000.0, 21021.0, 20999.0, 21018.0)]
    )
    scenario = Scenario(
        scripted.endpoint,
        tmp_path,
        accounts={"Sim101": (1, 21000.0)},
        history=history,
        live=live,
        props={"A": {"AccountPositionAtStart": "Adopt"}},
    )
    result = final(scenario.run(sim))
    assert (result["position"], result["account_position"]) == (0, 0)
    assert result["working"] == ""


def test_adopted_position_closed_after_a_rejected_stop_leaves_no_exit_order_working(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    """Adopted long, IgnoreRejects: the broker rejects the breakeven change of the adopted
    stop, the strategy closes the unprotected position at market. The adopted target must
    go too: left working it would open a short later, and it would make NinjaTrader ignore
    the next entry's Set() bracket ("Managed Approach" order handling rules)."""
    history, live = bars_with_live([(21000.0, 21001.0, 20999.0, 21000.0)] * 5)

    def decide(r: dict[str, Any], i: int) -> dict[str, Any] | None:
        if r["position"]["side"] == 0:
            return buy(r, r["bar"]["close"] - 10, r["bar"]["close"] + 10)
        return reply_for(r, 3, orders={"stop_price": r["bar"]["close"] - 2})

    scripted.decide = decide
    scenario = Scenario(
        scripted.endpoint,
        tmp_path,
        accounts={"Sim101": (1, 21000.0)},
        history=history,
        live=live,
        props={
            "A": {
                "AccountPositionAtStart": "Adopt",
                "RealtimeErrorHandling": "StopCancelCloseIgnoreRejects",
            }
        },
        options={"A": {"reject_stop_changes": True}},
    )
    run = scenario.run(sim)
    assert next(e["name"] for e in events(run, "rejected")) == "AITB Adopted stop"
    assert events(run, "order_ignored") == []
    assert [e for e in events(run, "order") if e["name"] == "Stop loss"], "the next entry's bracket"
    assert "AITB Adopted target" not in final(run)["working"]
    assert final(run)["account_position"] in (0, 1)


def test_adopted_position_follows_the_daemons_breakeven(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    history, live = bars_with_live(
        [
            (21008.0, 21011.0, 21007.0, 21010.0),
            (21010.0, 21012.0, 21009.0, 21011.0),
            (21011.0, 21012.0, 21010.0, 21011.0),
        ]
    )
    scripted.decide = lambda r, i: (
        reply_for(r, 3, orders={"stop_price": 21000.25}) if i == 0 else None
    )
    scenario = Scenario(
        scripted.endpoint,
        tmp_path,
        accounts={"Sim101": (1, 21000.0)},
        history=history,
        live=live,
        props={"A": {"AccountPositionAtStart": "Adopt"}},
    )
    run = scenario.run(sim)
    changes = [e for e in events(run, "order_change") if e["name"] == "AITB Adopted stop"]
    assert [c["price"] for c in changes] == [21000.25]
    assert [b["position"]["sl_price"] for b in scripted.of_type("bar")] == [
        20990.0,
        21000.25,
        21000.25,
    ]
    assert "Stop loss" not in final(run)["working"] and final(run)["position"] == 1


# ------------------------------------------------------------------ 2. time zone


def test_bar_times_go_out_in_utc_from_the_display_time_zone(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    """NinjaTrader stamps bars in Tools > Options > General's time zone (here Berlin,
    UTC+1 in November); the daemon must get UTC with Z."""
    scenario = Scenario(scripted.endpoint, tmp_path, timezone="Europe/Berlin")
    scenario.run(sim)
    history = scripted.of_type("history")[0]["bars"]
    assert history[0]["time"] == "2025-11-07T08:31:00Z"
    live = [b["bar"]["time"] for b in scripted.of_type("bar")]
    expected = [(b.time - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ") for b in scenario.live]
    assert live == expected


# ---------------------------------------------- 3. settings the strategy dialog overrides


def test_calculate_on_each_tick_from_the_dialog_still_sends_each_closed_bar_once(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    scenario = Scenario(scripted.endpoint, tmp_path, props={"A": {"Calculate": "OnEachTick"}})
    run = scenario.run(sim)
    sent = [b["bar"] for b in scripted.of_type("bar")]
    assert [naive(b["time"]) for b in sent] == [
        b.time.strftime("%Y-%m-%dT%H:%M:%S") for b in scenario.live
    ]
    assert [(b["high"], b["low"], b["close"]) for b in sent] == [
        (b.high, b.low, b.close) for b in scenario.live
    ]
    (configured,) = events(run, "configured")
    assert configured["calculate"] == "OnBarClose"
    assert "OnBarClose" in printed(run)


def test_recalculate_on_connection_loss_from_the_dialog_becomes_keep_running(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    """Recalculate restarts the strategy after a connection loss with the flat position it
    rebuilds from history (it never trades there), losing track of the real one."""
    props = {"A": {"ConnectionLossHandling": "Recalculate"}}
    run = Scenario(scripted.endpoint, tmp_path, props=props).run(sim)
    (configured,) = events(run, "configured")
    assert configured["connection_loss_handling"] == "KeepRunning"
    assert "ConnectionLossHandling was Recalculate" in printed(run)


def test_ignore_all_errors_from_the_dialog_is_refused_with_a_message(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    scripted.decide = lambda r, i: buy(r, r["bar"]["close"] - 10, r["bar"]["close"] + 10)
    scenario = Scenario(
        scripted.endpoint,
        tmp_path,
        props={"A": {"RealtimeErrorHandling": "IgnoreAllErrors"}},
        wait_ms=300,
    )
    run = scenario.run(sim)
    assert entries(run) == []
    assert "RealtimeErrorHandling" in printed(run)


# -------------------------------------------------------- 4. stops against the market


def test_breakeven_stop_through_the_market_is_not_sent_and_the_strategy_survives(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    """Long from 21000.25; the model moves the stop to 21000.25 (below the 21005 close)
    but the next bar opens at 20999: a sell stop there is on the wrong side of the bid,
    the broker rejects it, and StopCancelClose would stop the strategy and flatten."""
    history, live = bars_with_live(
        [
            (21000.0, 21001.0, 20999.0, 21000.0),
            (21000.0, 21006.0, 20999.5, 21005.0),
            (20999.0, 21001.0, 20995.0, 21000.0),
            (21000.0, 21002.0, 20998.0, 21001.0),
        ]
    )

    def decide(r: dict[str, Any], i: int) -> dict[str, Any] | None:
        if i == 0:
            return buy(r, 20990.0, 21020.0)
        if i == 1:
            return reply_for(r, 3, orders={"stop_price": 21000.25})
        return None

    scripted.decide = decide
    run = Scenario(scripted.endpoint, tmp_path, history=history, live=live).run(sim)
    assert events(run, "rejected") == [] and events(run, "strategy_stopped") == []
    result = final(run)
    assert result["position"] == 1
    assert "Stop loss@20990" in result["working"]
    assert "bid" in printed(run)


def test_stop_margin_of_zero_still_keeps_the_stop_off_the_bid(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    """Stop margin 0 in the dialog: a breakeven stop exactly at the bid is still a sell stop
    at the market, which the broker rejects (and StopCancelClose flattens). One tick is the
    least any stop may sit beyond the bid/ask."""
    history, live = bars_with_live(
        [
            (21000.0, 21001.0, 20999.0, 21000.0),
            (21000.0, 21006.0, 20999.5, 21005.0),
            (21000.25, 21001.0, 20999.0, 21000.0),
            (21000.0, 21002.0, 20998.0, 21001.0),
        ]
    )

    def decide(r: dict[str, Any], i: int) -> dict[str, Any] | None:
        if i == 0:
            return buy(r, 20990.0, 21020.0)
        if i == 1:
            return reply_for(r, 3, orders={"stop_price": 21000.25})
        return None

    scripted.decide = decide
    scenario = Scenario(
        scripted.endpoint, tmp_path, history=history, live=live, props={"A": {"StopMarginTicks": 0}}
    )
    run = scenario.run(sim)
    assert events(run, "rejected") == [] and events(run, "strategy_stopped") == []
    assert final(run)["position"] == 1
    assert "Stop loss@20990" in final(run)["working"]


# ------------------------------------------------------- 5. late decisions, retry time


def test_decision_older_than_the_freshness_limit_is_not_executed(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    scripted.decide = lambda r, i: buy(r, r["bar"]["close"] - 10, r["bar"]["close"] + 10)
    scripted.delay = lambda r: 1.2 if r["type"] == "bar" else 0.0
    scenario = Scenario(
        scripted.endpoint,
        tmp_path,
        props={"A": {"TimeoutMs": 3000, "MaxDecisionAgeMs": 500}},
        live=quiet_bars(datetime(2025, 11, 7, 10, 1), 2),
    )
    run = scenario.run(sim)
    assert entries(run) == []
    assert "late" in printed(run)


def test_retries_with_resync_stay_within_the_total_budget(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    """The daemon answers ping/history slowly and bar requests never in time: all tries
    of one bar, resyncs included, must end within TimeoutMs x Tries (plus slack)."""
    scripted.delay = lambda r: 5.0 if r["type"] == "bar" else 0.25
    scenario = Scenario(
        scripted.endpoint,
        tmp_path,
        props={"A": {"TimeoutMs": 300, "Retries": 3}},
        live=quiet_bars(datetime(2025, 11, 7, 10, 1), 2),
    )
    scenario.run(sim)
    (log,) = (tmp_path / "userdata" / "AITradingBridge").glob("decisions-*.csv")
    first = next(csv.DictReader(log.read_text().splitlines()))
    assert first["outcome"] == "unreachable"
    assert float(first["latency_ms"]) < 3 * 300 + 150


# --------------------------------------------------------- 6. one owner for order state


def test_late_flat_update_inside_enter_long_keeps_the_new_trade_managed(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    """The first trade hits its target; NinjaTrader delivers its flat OnPositionUpdate
    late, inside the next EnterLong. The new trade's stop and target must survive it and
    be reported to the daemon."""
    history, live = bars_with_live(
        [
            (21000.0, 21001.0, 20999.0, 21000.0),
            (21000.0, 21012.0, 20999.0, 21008.0),
            (21008.0, 21009.0, 21006.0, 21008.0),
            (21008.0, 21010.0, 21007.0, 21009.0),
            (21009.0, 21010.0, 21008.0, 21009.0),
        ]
    )

    def decide(r: dict[str, Any], i: int) -> dict[str, Any] | None:
        if i in (0, 1) and r["position"]["side"] == 0:
            return buy(r, r["bar"]["close"] - 10, r["bar"]["close"] + (10 if i == 0 else 20))
        return None

    scripted.decide = decide
    scenario = Scenario(
        scripted.endpoint,
        tmp_path,
        history=history,
        live=live,
        options={"A": {"late_flat_updates": True}},
    )
    run = scenario.run(sim)
    assert len(entries(run)) == 2
    later = [b["position"] for b in scripted.of_type("bar")[2:]]
    assert later and all(p["side"] == 1 for p in later), later
    assert all(p["sl_price"] == 20998.0 and p["tp_price"] == 21028.0 for p in later), later


@pytest.mark.parametrize("fill_inside_enter", [False, True])
def test_entry_bracket_and_fill_reach_the_daemon_whenever_the_fill_arrives(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path, fill_inside_enter: bool
) -> None:
    """A fill may be reported inside EnterLong (before it returns) or on a later tick:
    either way the stop and target are worked and the daemon hears the position."""
    scripted.decide = lambda r, i: buy(r, 20990.0, 21010.0) if i == 0 else None
    scenario = Scenario(
        scripted.endpoint,
        tmp_path,
        options={"A": {"fill_inside_enter": fill_inside_enter}},
    )
    run = scenario.run(sim)
    assert len(entries(run)) == 1
    assert final(run)["working"] == "Stop loss@20990;Profit target@21010"
    (fill,) = [p["position"] for p in scripted.of_type("position") if p["position"]["side"]]
    assert (fill["sl_price"], fill["tp_price"], fill["quantity"]) == (20990.0, 21010.0, 1)
    assert fill["entry_time"].endswith("Z")
    later = [b["position"] for b in scripted.of_type("bar")[1:]]
    assert later and all(p["side"] == 1 and p["sl_price"] == 20990.0 for p in later)


# ------------------------------------------------------------ 7. client-side limits


def far_stop(r: dict[str, Any], i: int) -> dict[str, Any]:
    close = r["bar"]["close"]
    return buy(r, close - 400 * TICK, close + 10)


def ordinary(r: dict[str, Any], i: int) -> dict[str, Any]:
    close = r["bar"]["close"]
    return buy(r, close - 10, close + 10)


@pytest.mark.parametrize(
    ("case", "decide", "props", "model"),
    [
        ("quantity_too_large", ordinary, {"Quantity": 1000}, {}),
        ("stop_too_far", far_stop, {"MaxStopTicks": 200}, {}),
        ("model_for_another_instrument", ordinary, {}, {"instrument": "ES"}),
        ("model_for_another_period", ordinary, {}, {"bar_period": {"type": "minute", "value": 5}}),
        ("model_not_the_pinned_one", ordinary, {"ExpectedModelSha256": "b" * 64}, {}),
    ],
)
def test_client_side_limit_refuses_the_entry(
    sim: Path,
    scripted: ScriptedDaemon,
    tmp_path: Path,
    case: str,
    decide: Any,
    props: dict[str, Any],
    model: dict[str, Any],
) -> None:
    scripted.decide = decide
    scripted.hello_model = scripted.hello_model | model
    run = Scenario(scripted.endpoint, tmp_path, props={"A": props}, wait_ms=1500).run(sim)
    assert entries(run) == [], case
    assert printed(run), case


# ---------------------------------------------------- 8. two instances, locked log file


def test_two_instances_get_distinct_client_ids_and_log_files(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    scenario = Scenario(scripted.endpoint, tmp_path, instances=[("A", "Sim101"), ("B", "Sim101")])
    scenario.run(sim)
    clients = {r["client"] for r in scripted.of_type("bar")}
    assert len(clients) == 2
    logs = sorted((tmp_path / "userdata" / "AITradingBridge").glob("decisions-*.csv"))
    assert len(logs) == 2
    assert all(len(p.read_text().splitlines()) == 1 + len(scenario.live) for p in logs)


def test_two_instances_on_one_account_and_instrument_never_stack_positions(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    """Two charts of NQ on Sim101, both told BUY: each strategy's own position is flat, but
    the account already holds the first one's contract, so the second must not add one
    (nor may a manual position or another strategy's be stacked on)."""
    scripted.decide = lambda r, i: buy(r, r["bar"]["close"] - 10, r["bar"]["close"] + 10)
    scenario = Scenario(scripted.endpoint, tmp_path, instances=[("A", "Sim101"), ("B", "Sim101")])
    run = scenario.run(sim)
    placed = entries(run)
    assert len(placed) == 1
    assert all(abs(e["account_position"]) <= 1 for e in events(run, "fill"))
    assert "does not own" in printed(run)


def test_locked_decision_log_falls_back_to_a_new_file_and_says_so(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    folder = tmp_path / "userdata" / "AITradingBridge"
    locked = folder / "decisions-desk.csv"
    scenario = Scenario(
        scripted.endpoint, tmp_path, props={"A": {"ClientId": "desk"}}, lockfile=locked
    )
    run = scenario.run(sim)
    others = [p for p in folder.glob("decisions-desk*.csv") if p != locked]
    assert len(others) == 1
    assert len(others[0].read_text().splitlines()) == 1 + len(scenario.live)
    assert others[0].name in printed(run)


# ---------------------------------------- managed approach: Set() and Exit*() do not mix

MANAGED_RULE_PROBE = """
using NinjaTrader.Cbi;
namespace NinjaTrader.NinjaScript.Strategies
{
    public class ManagedRuleProbe : Strategy
    {
        private int step;
        protected override void OnStateChange()
        {
            if (State == State.SetDefaults) { Name = "ManagedRuleProbe"; EntriesPerDirection = 2; }
        }
        protected override void OnBarUpdate()
        {
            if (State != State.Realtime) return;
            step++;
            if (step == 1)
            {
                SetStopLoss("withSet", CalculationMode.Price, Close[0] - 10, false);
                EnterLong(1, "withSet");
            }
            else if (step == 2)
                ExitLongStopMarket(0, true, 1, Close[0] - 5, "exitWhileSet", "");
        }
    }
    public class ManagedRuleProbe2 : Strategy
    {
        private int step;
        protected override void OnStateChange()
        {
            if (State == State.SetDefaults) { Name = "ManagedRuleProbe2"; EntriesPerDirection = 2; }
        }
        protected override void OnBarUpdate()
        {
            if (State != State.Realtime) return;
            step++;
            if (step == 1) EnterLong(1, "plain");
            else if (step == 2) ExitLongLimit(0, true, 1, Close[0] + 50, "exitLimit", "");
            else if (step == 3)
            {
                SetStopLoss("second", CalculationMode.Price, Close[0] - 10, false);
                EnterLong(1, "second");
            }
        }
    }
}
"""


@pytest.mark.parametrize(
    ("probe", "ignored", "never_sent"),
    [
        ("ManagedRuleProbe", "exitWhileSet", "exitWhileSet"),
        ("ManagedRuleProbe2", "second", "Stop loss"),
    ],
)
def test_double_ignores_orders_the_managed_approach_rules_forbid(
    sim: Path, tmp_path: Path, probe: str, ignored: str, never_sent: str
) -> None:
    """The double must refuse what NinjaTrader refuses ("Managed Approach", internal order
    handling rules), or a strategy mixing Set() and Exit*() orders would pass here and run
    unprotected in NinjaTrader. Probe strategies break each rule once."""
    # The probes never talk to a daemon: no decision to wait for after each bar.
    scenario = Scenario(
        "tcp://127.0.0.1:9",
        tmp_path,
        strategy=f"NinjaTrader.NinjaScript.Strategies.{probe}",
        wait_ms=1,
    )
    scenario.live = quiet_bars(scenario.history[-1].time + timedelta(minutes=1), 5)
    run = scenario.run(sim)
    (event,) = events(run, "order_ignored")
    assert event["name"] == ignored
    assert never_sent not in {e["name"] for e in events(run, "order")}


def test_strategy_never_breaks_a_managed_approach_rule(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    """Adopted position (Exit*() orders) closed by its target, then a new entry with its
    Set() bracket: nothing may be ignored by NinjaTrader's order handling rules."""
    history, live = bars_with_live(
        [
            (21000.0, 21001.0, 20999.0, 21000.0),
            (21000.0, 21021.0, 20999.0, 21018.0),
            (21018.0, 21019.0, 21017.0, 21018.0),
            (21018.0, 21019.0, 21017.0, 21018.0),
        ]
    )
    scripted.decide = lambda r, i: (
        buy(r, r["bar"]["close"] - 10, r["bar"]["close"] + 10)
        if r["position"]["side"] == 0
        else None
    )
    scenario = Scenario(
        scripted.endpoint,
        tmp_path,
        accounts={"Sim101": (1, 21000.0)},
        history=history,
        live=live,
        props={"A": {"AccountPositionAtStart": "Adopt"}},
    )
    run = scenario.run(sim)
    assert len(entries(run)) == 1
    assert [e for e in events(run, "order") if e["name"] == "Stop loss"]
    assert events(run, "order_ignored") == []


# ------------------------------------------------- 9. a second copy of the strategy file


def test_a_saved_as_copy_of_the_strategy_compiles_next_to_the_original(tmp_path: Path) -> None:
    """NinjaScript Editor "Save As" copies the strategy file under a new class name; every
    file in bin/Custom is compiled into one assembly, so nothing else may be duplicated."""
    sources = strategy_sources()
    (strategy,) = [p for p in sources if "class AITradingBridge : Strategy" in p.read_text()]
    copy = tmp_path / "AITradingBridgeCopy.cs"
    copy.write_text(
        re.sub(r"\bAITradingBridge\b(?= : Strategy)", "AITradingBridgeCopy", strategy.read_text())
    )
    result = compile_cs(
        tmp_path / "custom.dll",
        [HARNESS_DIR / "NinjaTraderStubs.cs", *sources, copy],
        "-target:library",
        "-r:System.Xml.dll",
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ PROTOCOL v1.1


def test_hello_and_position_carry_the_v1_1_fields(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    history, live = bars_with_live(
        [
            (21000.0, 21001.0, 20999.0, 21000.0),
            (21000.0, 21012.0, 20999.0, 21008.0),
            (21008.0, 21009.0, 21006.0, 21008.0),
        ]
    )
    scripted.decide = lambda r, i: buy(r, 20990.0, 21010.0) if i == 0 else None
    Scenario(scripted.endpoint, tmp_path, history=history, live=live).run(sim)
    (hello,) = scripted.of_type("hello")
    assert hello["instrument_spec"] == {"tick_size": 0.25, "point_value": 20.0, "currency": "USD"}
    assert hello["bar_period"] == {"type": "minute", "value": 1}
    assert hello["account"] == "Sim101"
    positions = scripted.of_type("position")
    assert positions and all(p["account"] == "Sim101" for p in positions)
    flat = [p for p in positions if p["position"]["side"] == 0]
    assert flat and flat[-1]["realized_pnl"] == pytest.approx((21010.0 - 21000.25) * 20.0)


def test_risk_reply_is_shown_and_its_model_action_never_traded(
    sim: Path, scripted: ScriptedDaemon, tmp_path: Path
) -> None:
    def decide(r: dict[str, Any], i: int) -> dict[str, Any]:
        risk = {"rule": "daily_loss", "detail": "session loss limit reached", "model_action": 1}
        return reply_for(r, 0, risk=risk)

    scripted.decide = decide
    run = Scenario(scripted.endpoint, tmp_path).run(sim)
    assert entries(run) == []
    assert "daily_loss" in printed(run)
    texts = [e["text"] for e in events(run, "draw_text")]
    assert any("daily_loss" in t and "session loss limit reached" in t for t in texts)


# ------------------------------------------------------------- the import archive


def test_import_archive_holds_the_sources_and_they_compile(tmp_path: Path) -> None:
    """ninjatrader/build_archive.py builds what Tools > Import > NinjaScript Add-On takes:
    Info.xml plus every source under its bin/Custom folder; extracted, they compile at
    C# 5 against the NinjaTrader API double, with no DLL."""
    out = tmp_path / "AITradingBridge.zip"
    result = subprocess.run(
        [sys.executable, str(REPO / "ninjatrader" / "build_archive.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        info = ElementTree.fromstring(archive.read("Info.xml"))
        archive.extractall(tmp_path / "custom")
    expected = {p.relative_to(REPO / "ninjatrader").as_posix() for p in strategy_sources()} | {
        "Info.xml"
    }
    assert set(names) == expected
    assert "Strategies/AITradingBridge.cs" in names
    assert {"Json.cs", "Transport.cs", "Protocol.cs", "Session.cs"} <= {
        Path(n).name for n in names if n.startswith("AddOns/AITradingBridge/")
    }
    assert re.fullmatch(r"8\.\d+\.\d+\.\d+", info.findtext("Export/Version") or "")
    extracted = sorted((tmp_path / "custom").rglob("*.cs"))
    compiled = compile_cs(
        tmp_path / "custom.dll",
        [HARNESS_DIR / "NinjaTraderStubs.cs", *extracted],
        "-target:library",
        "-r:System.Xml.dll",
        "-warnaserror+",
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    text = " ".join(p.read_text() for p in extracted)
    assert not re.search(r"netmq|asyncio|nacl", text, re.IGNORECASE)
    assert not [n for n in names if n.lower().endswith(".dll")]


def test_import_archive_build_without_the_strategy_says_what_is_missing(tmp_path: Path) -> None:
    script = REPO / "ninjatrader" / "build_archive.py"
    result = subprocess.run(
        [sys.executable, str(script), "--source", str(tmp_path), "--out", str(tmp_path / "x.zip")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "AITradingBridge.cs is missing" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.zip").exists()
