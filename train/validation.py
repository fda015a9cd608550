"""``ai-trading-bridge validate``: the guide's post-training validation, done right.

Runs N held-out episodes (default 1000) with masks and the saved VecNormalize statistics,
batched over many envs, reading the position from the env's state. Prints the guide's
"POST-TRAINING VALIDATION RESULTS" table, the split by flat / in position and the criteria
(see :mod:`train.criteria`) from those episodes. The trading results beside three
baselines come from one contiguous walk through the held-out span (:mod:`train.backtest`),
never from the overlapping episodes. Writes ``report.json`` and two PNG plots.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from env.bars import Bars, TooFewBarsError
from env.config import ACTION_NAMES, WARMUP_BARS
from env.risk import RiskConfig
from env.trading_env import EnvConfig, TradingEnv
from train import bundle as bundle_io
from train.backtest import WalkResult, backtest
from train.criteria import action_shares, evaluate_criteria, guide_rule, trading_summary
from train.evaluation import (
    ModelPolicy,
    PolicyFn,
    RandomValidPolicy,
    RunResult,
    always_flat_policy,
    momentum_policy,
    run_episodes,
)

BASELINES = ("always_flat", "random_valid", "momentum")
DEFAULT_SEED = 12345  # episode starts; the same for every model, so reports compare
REPORT_FILE = "report.json"
SHARES_PLOT = "action_shares.png"
EQUITY_PLOT = "equity.png"


def load_policy(model_path: Path, vecnorm_path: Path, template: TradingEnv) -> tuple[Any, Any]:
    """Plain SB3 loading: ``MaskablePPO.load`` and ``VecNormalize.load``."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    model = MaskablePPO.load(str(model_path), device="cpu")
    vecnorm = VecNormalize.load(str(vecnorm_path), DummyVecEnv([lambda: template]))
    vecnorm.training = False
    if model.observation_space.shape != template.observation_space.shape:
        raise bundle_io.BundleError(
            f"{model_path}: the model observes {model.observation_space.shape}, this code "
            f"computes {template.observation_space.shape}; retrain from scratch"
        )
    return model, vecnorm


def card_bars_options(card: dict[str, Any] | None) -> dict[str, Any]:
    """``load_bars`` options that read the card's data file as training read it: the
    card's contract (exchange zone and session calendar), the data time zone and the bar
    period recorded with the data. Empty for a card without them (older cards, the
    guide's two files)."""
    from env.periods import BarPeriod

    card = card or {}
    data = card.get("data") or {}
    options: dict[str, Any] = {}
    if card.get("env"):
        options["contract"] = EnvConfig.from_dict(card["env"]).instrument
    if data.get("data_timezone"):
        options["data_timezone"] = data["data_timezone"]
    if data.get("bar_period"):
        options["bar_period"] = BarPeriod.from_json(data["bar_period"])
    return options


def holdout_for_card(card: dict[str, Any] | None, bars: Bars | None) -> Bars:
    """The held-out bars: ``bars`` if given, else the card's data (synthetic default or
    its file, read with :func:`card_bars_options`) from the card's holdout start."""
    from env.config import WARMUP_BARS
    from env.synthetic import DEFAULT_DAYS
    from train.training import load_data

    if bars is not None:
        return after_training(bars, card)
    data = (card or {}).get("data") or {}
    source = str(data.get("source", ""))
    if not source or source.startswith("synthetic:"):
        days = re.search(r"days=(\d+)", source)
        full, sha256 = load_data(None, int(days.group(1)) if days else DEFAULT_DAYS)
    else:
        full, sha256 = load_data(source, **card_bars_options(card))
    split = data.get("holdout_start_index")
    if split is None:
        split = round(len(full) * 0.8)
    end = data.get("holdout_end_index")
    if data.get("sha256") not in (None, sha256) and data.get("holdout_start"):
        split, end = _card_span_by_time(full, data, sha256)
    return full[max(int(split) - (WARMUP_BARS - 1), 0) : None if end is None else int(end)]


def _card_span_by_time(full: Bars, data: dict[str, Any], sha256: str) -> tuple[int, int | None]:
    """The card's held-out span in ``full`` by its times, for data that changed since
    training (the file was edited, the synthetic generator changed): the card's indices
    would point at other bars, earlier ones the model may have trained on among them."""
    import warnings

    times = full.time.astype("datetime64[s]")
    split = int(np.searchsorted(times, np.datetime64(data["holdout_start"], "s")))
    end = None
    if data.get("end"):
        end = int(np.searchsorted(times, np.datetime64(data["end"], "s"), side="right"))
    warnings.warn(
        f"{full.source or 'the data'} is not the data the model card records "
        f"({data.get('n_bars')} bars, sha256 {str(data['sha256'])[:12]}; now {len(full)} bars, "
        f"sha256 {sha256[:12]}): it changed since training; validating on its "
        f"bars from the card's held-out start {data['holdout_start']} by time",
        stacklevel=3,
    )
    return split, end


def after_training(bars: Bars, card: dict[str, Any] | None) -> Bars:
    """``bars`` less any decision bar inside the span the model trained on (the card's
    ``data.start`` .. ``data.holdout_start``): validating on trained bars is in-sample,
    whatever the file is called. The bars kept start ``WARMUP_BARS - 1`` before the
    first held-out bar (indicators warm up, as in training's split).

    Raises:
        TooFewBarsError: when every bar of ``bars`` is from the training span or earlier.
    """
    import warnings

    from env.config import WARMUP_BARS

    data = (card or {}).get("data") or {}
    if not data.get("holdout_start"):
        return bars
    holdout_start = np.datetime64(data["holdout_start"], "s")
    train_start = np.datetime64(data["start"], "s") if data.get("start") else None
    times = bars.time.astype("datetime64[s]")
    trained = times < holdout_start
    if train_start is not None:
        trained &= times >= train_start
    if not trained[WARMUP_BARS - 1 :].any():  # warm-up bars are read, never decided on
        return bars
    first = int(np.searchsorted(times, holdout_start))
    if first >= len(bars):
        raise TooFewBarsError(
            f"{bars.source or 'bars'}: the bars given end before the model's held-out span starts "
            f"({data['holdout_start']}): the model trained on them; give bars from "
            "after its training span"
        )
    warnings.warn(
        f"the bars given overlap the span the model trained on ({data.get('start')} .. "
        f"{data['holdout_start']}); validating from {data['holdout_start']} on only",
        stacklevel=2,
    )
    return bars[max(first - (WARMUP_BARS - 1), 0) :]


def policies_for(
    model: Any, vecnorm: Any, seed: int, deterministic: bool = True
) -> dict[str, PolicyFn]:
    """The model and the baselines, fresh (the random baseline restarts from ``seed``)."""
    return {
        "model": ModelPolicy(model, vecnorm, deterministic=deterministic, seed=seed),
        "always_flat": always_flat_policy,
        "random_valid": RandomValidPolicy(seed),
        "momentum": momentum_policy,
    }


def run_all(
    model: Any,
    vecnorm: Any,
    template: TradingEnv,
    episodes: int,
    seed: int,
    deterministic: bool = True,
) -> dict[str, RunResult]:
    bars, cfg = template.bars, template.config
    return {
        name: run_episodes(policy, bars, cfg, episodes, seed=seed, template=template)
        for name, policy in policies_for(model, vecnorm, seed, deterministic).items()
    }


def build_report(
    results: dict[str, RunResult],
    env_config: EnvConfig,
    meta: dict[str, Any],
    backtest_section: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report: criteria and action shares from the episodes; ``trading`` (per policy)
    and ``backtest`` (data, span, bar period, costs, bootstrap) from the contiguous walk;
    ``episode_activity`` the per-episode trading (overlapping episodes, not a backtest)."""
    model = results["model"]
    criteria = evaluate_criteria(model)
    return {
        **meta,
        "passed": all(c.passed for c in criteria),
        "criteria": [c.to_dict() for c in criteria],
        "criteria_note": (
            "BUY and SELL are each required to be 5-10% of flat bars: with masking, flat "
            "bars are HOLD/BUY/SELL only, so the guide's 'HOLD 80-90%' and 'BUY+SELL 5-10%' "
            "could only both hold at exactly 90/10"
        ),
        "guide_rule": guide_rule(model),
        "decisions": {
            "total": model.decisions,
            "flat": int(model.flat_counts.sum()),
            "in_position": int(model.position_counts.sum()),
            "invalid": model.invalid_actions,
        },
        "action_counts": {
            "flat": dict(zip(ACTION_NAMES, model.flat_counts.tolist())),
            "in_position": dict(zip(ACTION_NAMES, model.position_counts.tolist())),
        },
        "action_shares_pct": {
            k: {n: round(v, 3) for n, v in d.items()} for k, d in action_shares(model).items()
        },
        "episode_activity": {
            name: trading_summary(r, env_config.episode_bars) for name, r in results.items()
        },
        "backtest": {k: v for k, v in (backtest_section or {}).items() if k != "policies"},
        "trading": (backtest_section or {}).get("policies", {}),
    }


def card_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The part of a report stored in the model card (``validation``)."""
    keys = (
        "passed",
        "episodes",
        "episode_bars",
        "seed",
        "holdout_start",
        "deterministic",
        "validated_at",
        "duration_s",
        "criteria",
        "guide_rule",
        "action_shares_pct",
    )
    summary = {k: report[k] for k in keys if k in report}
    if "model" in report["trading"]:
        summary["trading"] = report["trading"]["model"]
        summary["backtest"] = report["backtest"]
    return summary


def format_report(report: dict[str, Any]) -> str:
    """The guide's table, verbatim in format, then the project's split, criteria and
    trading results."""
    counts = report["action_counts"]
    total = report["decisions"]["total"]
    lines = ["", "=" * 70, "POST-TRAINING VALIDATION RESULTS", "=" * 70]
    for action, name in enumerate(ACTION_NAMES):
        count = counts["flat"][name] + counts["in_position"][name]
        lines.append(f"Action {action}: {count:5d} ({count / max(total, 1) * 100:5.1f}%)")
    pm_flat = sum(counts["flat"][n] for n in ACTION_NAMES[3:])
    lines.append(
        f"\nInvalid PM actions when flat: {pm_flat} ({pm_flat / max(total, 1) * 100:.2f}%)"
    )
    guide = report["guide_rule"]
    lines += [
        "\nValidation Criteria:",
        f"  HOLD: {guide['hold_pct_all']:.1f}% (target: 80-90%)",
        f"  PM when flat: {guide['pm_flat_pct_all']:.2f}% (target: <1%)",
    ]
    lines.append(
        "\n(guide's rule: HOLD >= 80% and PM when flat < 1% of all decisions: "
        + ("PASSED" if guide["passed"] else "FAILED")
        + ";\n shown, not the verdict: it counts in-position HOLDs, so a model that never "
        "trades passes it;\n the verdict below is the criteria by position state, see "
        "docs/training.md)"
    )

    decisions = report["decisions"]
    shares = report["action_shares_pct"]
    lines += [
        "",
        f"Action shares by position state ({report['episodes']} held-out episodes "
        f"of {report['episode_bars']} bars, {decisions['flat']} flat and "
        f"{decisions['in_position']} in-position decisions, {_refused_text(report)}):",
        f"  {'action':<14}{'flat':>9}{'in position':>14}",
    ]
    for name in ACTION_NAMES:
        lines.append(
            f"  {name:<14}{shares['flat'][name]:8.1f}%{shares['in_position'][name]:13.1f}%"
        )

    lines += ["", "Criteria (project reading; see docs/training.md):"]
    for c in report["criteria"]:
        mark = "PASS" if c["passed"] else "FAIL"
        lines.append(
            f"  {c['description']:<48}{c['value_pct']:7.2f}%  target {c['target']:<8} {mark}"
        )

    bt = report.get("backtest") or {}
    if bt:
        span, costs = bt["span"], bt["costs"]
        level = round(100 * bt["bootstrap"]["confidence"])
        lines += [
            "",
            f"Backtest: one contiguous walk through the held-out span {span['first_decision']}"
            f" .. {span['last_bar']}",
            f"  data {bt['data']}; {span['decision_bars']} bars of {bt['bar_period_s']} s in "
            f"{span['sessions']} sessions; Sharpe annualised by {bt['annualisation']}",
            f"  costs: {costs['instrument']} ${costs['commission_per_side_usd']:g}/side "
            f"commission + {costs['slippage_ticks']} tick slippage per fill; "
            f"[{level}% bootstrap intervals]",
            f"  {'policy':<14}{'trades':>7}{'win %':>7}{'net $':>10}{'net R':>8}"
            f"{'R/trade':>8}{'Sharpe':>8}  {'Sharpe CI':<17}{'max DD $':>9}",
        ]
        for name, t in report["trading"].items():
            ci = t["ci"].get("sharpe_annualised")
            ci_text = f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "-"
            lines.append(
                f"  {name:<14}{t['trades']:7d}{t['win_rate_pct']:7.1f}{t['net_pnl_usd']:10.0f}"
                f"{t['net_pnl_r']:8.1f}{t['mean_r_per_trade']:8.3f}"
                f"{t['sharpe_annualised']:8.2f}  {ci_text:<17}{t['max_drawdown_usd']:9.0f}"
            )
    lines.append("")
    lines.append(
        "✅ MODEL VALIDATION PASSED"
        if report["passed"]
        else "❌ MODEL VALIDATION FAILED - Retrain required"
    )
    return "\n".join(lines)


def write_plots(
    report: dict[str, Any], walks: dict[str, WalkResult] | None, out: Path
) -> list[Path]:
    """Action shares (flat vs in position) against the target bands; equity vs baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shares = report["action_shares_pct"]
    x = np.arange(len(ACTION_NAMES))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    bands = {"flat": {0: (80, 90), 1: (5, 10), 2: (5, 10), 3: (0, 1), 4: (0, 1), 5: (0, 1)}}
    for ax, label in zip(axes, ("flat", "in_position")):
        values = [shares[label][n] for n in ACTION_NAMES]
        ax.bar(x, values, color="tab:blue")
        for i, (low, high) in bands.get(label, {}).items():
            ax.add_patch(
                plt.Rectangle(
                    (i - 0.45, low),
                    0.9,
                    high - low,
                    color="tab:green",
                    alpha=0.35,
                    label="target" if i == 0 else None,
                )
            )
        if label == "in_position":
            pm = sum(shares[label][n] for n in ACTION_NAMES[3:])
            ax.axhspan(40, 60, color="tab:green", alpha=0.15, label="PM total target 40-60%")
            ax.set_title(f"in position (PM total {pm:.1f}%)")
        else:
            ax.set_title("flat")
        ax.set_xticks(x, ACTION_NAMES, rotation=30, ha="right", fontsize=8)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("% of decisions")
    fig.tight_layout()
    shares_path = out / SHARES_PLOT
    fig.savefig(shares_path, dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, walked in (walks or {}).items():
        ax.plot(walked.equity, label=name)
    ax.set_xlabel("held-out decision bar (one contiguous walk)")
    ax.set_ylabel("net equity, marked to market ($)")
    ax.legend()
    fig.tight_layout()
    equity_path = out / EQUITY_PLOT
    fig.savefig(equity_path, dpi=80)
    plt.close(fig)
    return [shares_path, equity_path]


def validate(
    model_path: Path,
    vecnorm_path: Path,
    card: dict[str, Any] | None,
    episodes: int = 1000,
    seed: int = DEFAULT_SEED,
    report_dir: Path | None = None,
    bars: Bars | None = None,
    deterministic: bool = True,
    episode_bars: int | None = None,
    risk: RiskConfig | None = None,
) -> tuple[dict[str, Any], str]:
    """Validate a model; returns the report and its printable text. With ``risk``, the
    episodes run with the daemon's risk rails on (``EnvConfig.risk``): what is validated
    is what will trade; the report's ``risk_rails`` holds the limits (None: off)."""
    started = time.perf_counter()
    if report_dir is not None:  # a folder that cannot be written fails now, not after the run
        report_dir.mkdir(parents=True, exist_ok=True)
    env_config = EnvConfig.from_dict(card["env"]) if card and card.get("env") else EnvConfig()
    if episode_bars is not None:
        env_config = EnvConfig.from_dict({**env_config.to_dict(), "episode_bars": episode_bars})
    if risk is not None:
        env_config = dataclasses.replace(env_config, risk=risk)
    holdout = holdout_for_card(card, bars)
    template = TradingEnv(holdout, env_config)
    model, vecnorm = load_policy(model_path, vecnorm_path, template)
    results = run_all(model, vecnorm, template, episodes, seed, deterministic)
    section, walks = backtest(
        policies_for(model, vecnorm, seed, deterministic), holdout, env_config, seed=seed
    )
    meta = {
        "model": str(model_path),
        "vecnormalize": str(vecnorm_path),
        "version": (card or {}).get("version"),
        "episodes": episodes,
        "episode_bars": env_config.episode_bars,
        "seed": seed,
        "deterministic": deterministic,
        "holdout_start": str(holdout.time[WARMUP_BARS - 1])
        if len(holdout) >= WARMUP_BARS
        else None,
        "holdout_source": holdout.source,
        "validated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    report = build_report(results, env_config, meta, section)
    report["duration_s"] = round(time.perf_counter() - started, 2)
    report["risk_rails"] = None if env_config.risk is None else env_config.risk.to_dict()
    # What the rails did in the episodes: the model's entries they refused, by rule.
    refusals = results["model"].risk_refusals
    report["risk_refusals"] = None if env_config.risk is None else dict(sorted(refusals.items()))
    if report_dir is not None:
        report["plots"] = [str(p) for p in write_plots(report, walks, report_dir)]
        (report_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = format_report(report)
    if env_config.risk is not None:
        text = _rails_text(env_config.risk) + "\n" + text
    return report, text


def _refused_text(report: dict[str, Any]) -> str:
    """The decisions refused, one count and its rules: the env's refusals of invalid
    actions and, with the risk rails on, the entries the rails turned into HOLD."""
    invalid = report["decisions"]["invalid"]
    by_rule = {"invalid_action": invalid} if invalid else {}
    by_rule.update(report.get("risk_refusals") or {})
    rules = ", ".join(f"{rule} {n}" for rule, n in by_rule.items())
    return f"{sum(by_rule.values())} refused" + (f": {rules}" if rules else "")


def _rails_text(risk: RiskConfig) -> str:
    if not risk.enabled:
        return "Risk rails: given but enabled = false, so none applied"
    values = risk.to_dict()
    limits = ", ".join(f"{k}={v}" for k, v in values.items() if v is not None and k != "enabled")
    return (
        f"Risk rails ON ({limits}): an entry they refuse trades as HOLD (the action "
        "counts below are the model's choices, refused entries included)"
    )


def validate_bundle(
    path: str | Path,
    episodes: int = 1000,
    write_card: bool = False,
    report_dir: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    echo: Any = None,
    deterministic: bool = True,
    episode_bars: int | None = None,
    bars: Bars | None = None,
) -> dict[str, Any]:
    """Validate a bundle folder; with ``write_card``, store the summary in its card.
    ``bars``: the held-out bars when the caller has them (else read from the card's data)."""
    bundle = bundle_io.load_bundle(path)
    report, text = validate(
        bundle.model_path,
        bundle.vecnorm_path,
        bundle.card,
        episodes=episodes,
        seed=seed,
        report_dir=Path(report_dir) if report_dir else bundle.path / "validation",
        bars=bars,
        deterministic=deterministic,
        episode_bars=episode_bars,
    )
    if echo is not None:
        echo(text)
    if write_card:
        card = dict(bundle.card)
        card["validation"] = card_summary(report)
        bundle_io.write_card(bundle.path, card)
    return report
