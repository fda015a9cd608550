"""The daemon computes a stream's features with the served model's terms: its contract's
tick as the ATR floor and its bar period's time features, as the env trained it.

Euro FX (6E) hourly bars, with a run of one-price bars long enough for the raw ATR to
fall under one tick (0.00005): the env and the daemon must floor it the same way."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from bridge_helpers import running_server, serve_config

from bridge.config import ModelSource
from bridge.policy import load_policy
from bridge.protocol import parse_bar
from bridge.replay import ReplayConfig, bar_object, run_replay
from bridge.session import SessionStore
from env.bars import load_bars
from env.config import MARKET_FEATURE_COUNT, TOTAL_MARKET_FEATURES, WINDOW_SIZE
from env.contracts import resolve_contract
from env.features import compute_market_features
from env.periods import BarPeriod
from env.risk import RiskConfig
from env.trading_env import EnvConfig, TradingEnv

pytest_plugins = ["bridge_helpers"]
pytestmark = pytest.mark.filterwarnings("ignore::env.bars.BarsTimezoneWarning")

DATA = Path(__file__).parent / "data"
EURO_FX = DATA / "6E_hourly_zero_volume.Last.txt"
DEFAULT_MODEL = Path(__file__).parent.parent / "bridge" / "default_model"
HOURLY = BarPeriod("minute", 60)
FLAT_FROM, FLAT_BARS = 300, 70  # one-price bars: the raw ATR decays under one tick


def flat_run_file(folder: Path) -> Path:
    """The 6E file with bars FLAT_FROM.. replaced by one-price bars at the last close."""
    lines = EURO_FX.read_text().splitlines()
    price = lines[FLAT_FROM - 1].split(";")[4]
    for i in range(FLAT_FROM, FLAT_FROM + FLAT_BARS):
        stamp = lines[i].split(";")[0]
        lines[i] = ";".join([stamp, price, price, price, price, "0"])
    path = folder / "6E_flat.Last.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def euro_fx_bundle(folder: Path) -> Path:
    """The bundled model's files with a card for 6E on 60-minute bars."""
    bundle = folder / "6e-hourly"
    shutil.copytree(DEFAULT_MODEL, bundle)
    card = json.loads((bundle / "model.json").read_text())
    spec = resolve_contract("6E")
    card["env"] = EnvConfig(instrument=spec, bar_period=HOURLY, episode_bars=60).to_dict()
    card.update(instrument="6E", tick_size=spec.tick_size, bar_period=HOURLY.to_json())
    (bundle / "model.json").write_text(json.dumps(card))
    return bundle


def window_at(env: TradingEnv, i: int) -> np.ndarray:
    start = (i + 1) * MARKET_FEATURE_COUNT - TOTAL_MARKET_FEATURES
    return env._features_flat[start : start + TOTAL_MARKET_FEATURES]


def test_daemon_streams_use_the_models_tick_and_period_bit_for_bit(tmp_path: Path) -> None:
    spec = resolve_contract("6E")
    bars = load_bars(flat_run_file(tmp_path), contract=spec)
    assert bars.bar_period == HOURLY
    _, raw_atr = compute_market_features(
        bars.open, bars.high, bars.low, bars.close, bars.volume, bars.minute_of_day
    )
    under = np.flatnonzero(raw_atr < spec.tick_size)
    assert len(under) >= 10  # the case this test is about: bars whose ATR is under a tick
    env = TradingEnv(bars, EnvConfig(instrument=spec, episode_bars=60))

    policy = load_policy(ModelSource(bundle=euro_fx_bundle(tmp_path)))
    assert policy.feature_terms == (0.00005, True)
    stream = SessionStore(4).stream("c", "6E 03-26", policy.feature_terms)
    for i in range(len(bars)):
        stream.add_bar(parse_bar(bar_object(bars, i), "bar", ZoneInfo(bars.timezone)))
        if i >= WINDOW_SIZE - 1:
            assert stream.features.window().tobytes() == window_at(env, i).tobytes(), i
    assert stream.features.atr == env._atr[-1]

    # over a real socket: the observations the daemon reports with debug
    first = int(under[0]) - 30
    config = serve_config(policy.source.bundle, tmp_path, risk=RiskConfig(enabled=False))
    with running_server(config) as server:
        replay = ReplayConfig(
            endpoint=server.endpoint,
            instrument="6E 03-26",
            history=first,
            max_bars=60,
            debug=True,
            env=policy.env_config,
        )
        result = run_replay(bars, replay)
    assert result.errors == result.missed == 0 and len(result.observations) == 60
    for k, obs in enumerate(result.observations):
        market = obs[:TOTAL_MARKET_FEATURES]
        assert market.tobytes() == window_at(env, first + k).tobytes(), first + k


def test_old_cards_keep_the_unfloored_features(tmp_path: Path) -> None:
    bundle = euro_fx_bundle(tmp_path)
    card = json.loads((bundle / "model.json").read_text())
    for key in ("env", "tick_size", "bar_period"):
        card.pop(key)
    (bundle / "model.json").write_text(json.dumps(card))
    assert load_policy(ModelSource(bundle=bundle)).feature_terms == (0.0, True)


def test_daily_model_streams_have_no_time_features(tmp_path: Path) -> None:
    bundle = euro_fx_bundle(tmp_path)
    card = json.loads((bundle / "model.json").read_text())
    card["bar_period"] = BarPeriod("day", 1).to_json()
    card["env"]["bar_period"] = card["bar_period"]
    (bundle / "model.json").write_text(json.dumps(card))
    policy = load_policy(ModelSource(bundle=bundle))
    stream = SessionStore(4).stream("c", "6E 03-26", policy.feature_terms)
    bars = load_bars(EURO_FX, contract=resolve_contract("6E"))
    for i in range(WINDOW_SIZE):
        stream.add_bar(parse_bar(bar_object(bars, i), "bar", ZoneInfo(bars.timezone)))
    window = stream.features.window().reshape(WINDOW_SIZE, MARKET_FEATURE_COUNT)
    assert np.all(window[:, 9:] == 0.0)


def test_replay_without_a_card_executes_on_the_instruments_terms(tmp_path: Path) -> None:
    """6E replayed without the model's card (the guide's two files, EnvConfig's NQ
    defaults): the trades are the ones replayed with the card, on 6E's tick and point
    value, not NQ's (whose 0.25 tick floored every entry ATR, so R meant nothing)."""
    euro = resolve_contract("6E")
    bars = load_bars(EURO_FX, contract=euro)
    policy = load_policy(ModelSource(bundle=euro_fx_bundle(tmp_path)))
    config = serve_config(policy.source.bundle, tmp_path, risk=RiskConfig(enabled=False))
    with running_server(config) as server:
        runs = [
            run_replay(bars, ReplayConfig(server.endpoint, client, "6E 03-26", env=env))
            for client, env in (("card", policy.env_config), ("no-card", EnvConfig()))
        ]
    with_card, without = runs
    assert without.errors == without.missed == 0 and without.trades, "nothing was traded"
    assert without.trades == with_card.trades
    for trade in without.trades:
        assert trade.entry_atr < resolve_contract("NQ").tick_size
        dollars_per_r = trade.entry_atr * euro.point_value
        assert trade.r_multiple == pytest.approx(trade.pnl_dollars / dollars_per_r)


def test_replay_sends_the_cards_instrument_by_default(tmp_path: Path, restore_logging) -> None:
    """Replaying with a 6E model's bundle and no --instrument: the daemon serving it gets
    6E (not NQ 12-25, another price scale it refuses), and the help says where the
    default comes from. The card's empty data time zone (a model of synthetic bars)
    reads DATA in the default zone, not as a zone named ''."""
    from click.testing import CliRunner

    from ai_trading_bridge import cli
    from bridge.journal import read_journal

    bundle = euro_fx_bundle(tmp_path)
    card = json.loads((bundle / "model.json").read_text())
    card["data"]["data_timezone"] = ""  # as a model of synthetic bars records it
    (bundle / "model.json").write_text(json.dumps(card))
    config = serve_config(bundle, tmp_path, risk=RiskConfig(enabled=False))
    with running_server(config) as server:
        args = ["replay", str(EURO_FX), "--endpoint", server.endpoint, "--bundle", str(bundle)]
        result = CliRunner().invoke(cli, [*args, "--bars", "20"])
    assert result.exit_code == 0, result.output
    entries = read_journal(next((tmp_path / "journal").glob("journal-*.jsonl")))
    assert entries and {e["request"]["instrument"] for e in entries} == {"6E"}
    help_text = " ".join(CliRunner().invoke(cli, ["replay", "--help"]).output.split())
    assert "[the model card's contract with --bundle (or a deploy target); else NQ 12-25]" in (
        help_text
    )
