"""``ai-trading-bridge walkforward``: walk-forward folds and several seeds, one report.

The bars are cut into ``folds`` consecutive test slices covering the last
``test_fraction`` of the series. Fold *k* trains on the bars before its slice (all of them
from the first bar: ``expanding``; or a window as long as the first fold's: ``rolling``)
and is validated on its slice only: the guide's criteria on ``validate_episodes``
held-out episodes and the contiguous backtest (``train.backtest``). Each (fold, seed) is
an independent job: run one after the other in this process, or on a Ray cluster
(``ray_address``: ``"auto"`` or ``host:port``; ``pip install 'ai-trading-bridge[ray]'``).

The report gives every job's criteria and backtest, the pass rate, and the spread (mean,
standard deviation, min, max) of each criterion and of the model's backtest figures.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from env.bars import TooFewBarsError
from env.config import WARMUP_BARS
from train.config import TrainConfig

MODES = ("expanding", "rolling")
REPORT_FILE = "walkforward.json"


@dataclass(frozen=True)
class Fold:
    """Bar indices of one fold: train on ``[train_start, test_start)``, test on
    ``[test_start, test_end)`` (the test's indicator warm-up reads the bars before it)."""

    index: int
    train_start: int
    test_start: int
    test_end: int


def make_folds(
    n_bars: int, folds: int, test_fraction: float, mode: str, min_bars: int
) -> list[Fold]:
    """Consecutive test slices over the last ``test_fraction`` of ``n_bars``.

    Raises:
        ValueError: for an unknown mode, or a fraction outside (0, 1).
        TooFewBarsError: slices or training windows shorter than ``min_bars`` (one
            episode plus warm-up).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    first_test = round(n_bars * (1.0 - test_fraction))
    size = (n_bars - first_test) // folds
    if first_test < min_bars or size + WARMUP_BARS - 1 < min_bars:
        raise TooFewBarsError(
            f"{n_bars} bars in {folds} folds over the last {test_fraction:g} leaves a "
            f"training window of {first_test} or test slices of {size} bars; each needs "
            f"{min_bars} (one episode plus warm-up): use more data, fewer folds or "
            "shorter episodes (--episode-bars)"
        )
    out = []
    for k in range(folds):
        test_start = first_test + k * size
        test_end = n_bars if k == folds - 1 else test_start + size
        train_start = 0 if mode == "expanding" else test_start - first_test
        out.append(Fold(k, train_start, test_start, test_end))
    return out


@dataclass(frozen=True)
class Job:
    """One training run: picklable, so Ray can ship it to any worker."""

    config: TrainConfig
    fold: Fold
    out: str
    data_path: str | None
    validate_episodes: int


def run_job(job: Job) -> dict[str, Any]:
    """Train on the fold's past, validate on its slice; returns the job's summary."""
    from train.training import DataSplit, configure_torch, load_data, train

    configure_torch(job.config.torch_threads)
    bars, sha256 = load_data(job.data_path, job.config.synthetic_days, **job.config.bars_options())
    fold = job.fold
    window = bars[fold.train_start : fold.test_end]
    split = DataSplit(window, fold.test_start - fold.train_start, offset=fold.train_start)
    bundle = train(
        job.config,
        job.out,
        data_path=job.data_path,
        progress_bar=False,
        validate_episodes=job.validate_episodes,
        data=(split, sha256),
    )
    validation = bundle.card.get("validation") or {}
    report_path = Path(job.out) / "validation" / "report.json"
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.exists() else {}
    return {
        "fold": fold.index,
        "seed": job.config.seed,
        "bundle": str(bundle.path),
        "train_bars": [fold.train_start, fold.test_start],
        "test_bars": [fold.test_start, fold.test_end],
        "test_span": (report.get("backtest") or {}).get("span"),
        "passed": bool(validation.get("passed", False)),
        "criteria": {c["name"]: c["value_pct"] for c in validation.get("criteria", [])},
        "failed": [c["name"] for c in validation.get("criteria", []) if not c["passed"]],
        "backtest": report.get("trading", {}),
        "shaping": (bundle.card.get("shaping") or {}).get("final_terms"),
    }


def run_jobs(jobs: list[Job], ray_address: str | None = None) -> list[dict[str, Any]]:
    """Run the jobs in this process (``ray_address`` None) or as Ray tasks, one CPU each.

    Raises:
        RuntimeError: when ``ray_address`` is given and Ray is not installed, or no Ray
            cluster answers there.
    """
    if ray_address is None:
        return [run_job(job) for job in jobs]
    try:
        import ray
    except ImportError:
        raise RuntimeError(
            "--ray needs Ray: pip install 'ai-trading-bridge[ray]' (or omit --ray to run "
            "the jobs in this process)"
        ) from None
    if not ray.is_initialized():
        try:
            ray.init(address=ray_address)
        except ConnectionError:  # Ray's own text names its CLI's --address flag, not ours
            raise RuntimeError(
                f"--ray {ray_address}: no running Ray cluster found; start one (`ray start "
                "--head`) and give its address (--ray HOST:PORT, or auto on its head node), "
                "or omit --ray to run the jobs in this process"
            ) from None
    remote = ray.remote(num_cpus=1)(run_job)
    return list(ray.get([remote.remote(job) for job in jobs]))


def _spread(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, float)
    return {
        "mean": round(float(a.mean()), 3),
        "std": round(float(a.std(ddof=1)), 3) if len(a) > 1 else 0.0,
        "min": round(float(a.min()), 3),
        "max": round(float(a.max()), 3),
    }


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Pass rate and the spread of each criterion and backtest figure over the jobs;
    per seed, the folds' backtests laid end to end (net $ and R out of sample)."""
    names = sorted({n for r in results for n in r["criteria"]})
    figures = ("net_pnl_usd", "net_pnl_r", "mean_r_per_trade", "sharpe_annualised", "trades")
    model = [r["backtest"].get("model", {}) for r in results]
    baselines = sorted({b for r in results for b in r["backtest"] if b != "model"})
    per_seed: dict[int, dict[str, float]] = {}
    for r in results:
        stats = r["backtest"].get("model", {})
        seed = per_seed.setdefault(r["seed"], {"net_pnl_usd": 0.0, "net_pnl_r": 0.0, "folds": 0})
        seed["net_pnl_usd"] = round(seed["net_pnl_usd"] + stats.get("net_pnl_usd", 0.0), 2)
        seed["net_pnl_r"] = round(seed["net_pnl_r"] + stats.get("net_pnl_r", 0.0), 3)
        seed["folds"] += 1
    return {
        "jobs": len(results),
        "passed": sum(r["passed"] for r in results),
        "pass_rate": round(sum(r["passed"] for r in results) / max(len(results), 1), 3),
        "criteria_spread_pct": {
            n: _spread([r["criteria"][n] for r in results if n in r["criteria"]]) for n in names
        },
        "backtest_spread": {
            f: _spread([m[f] for m in model if f in m])
            for f in figures
            if any(f in m for m in model)
        },
        "baseline_net_pnl_r": {
            b: _spread([r["backtest"][b]["net_pnl_r"] for r in results if b in r["backtest"]])
            for b in baselines
        },
        "out_of_sample_by_seed": {str(k): v for k, v in sorted(per_seed.items())},
    }


def walkforward(
    config: TrainConfig,
    out: str | Path,
    data_path: str | None = None,
    folds: int = 3,
    test_fraction: float = 0.4,
    mode: str = "expanding",
    seeds: int = 1,
    validate_episodes: int = 200,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Plan, run and report ``folds x seeds`` jobs (seeds ``config.seed`` onwards);
    writes ``out/walkforward.json`` and each job's bundle under ``out/fold<k>_seed<s>``."""
    from train.training import load_data

    out = Path(out)
    bars, _ = load_data(data_path, config.synthetic_days, **config.bars_options())  # scale checked
    config = config.for_bars(bars)
    try:
        plan = make_folds(
            len(bars), folds, test_fraction, mode, min_bars=WARMUP_BARS + config.episode_bars + 1
        )
    except TooFewBarsError as exc:
        raise TooFewBarsError(f"{bars.source or 'bars'}: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)  # only now: refused data leaves no folder
    jobs = [
        Job(
            dataclasses.replace(config, seed=config.seed + s),
            fold,
            str(out / f"fold{fold.index}_seed{config.seed + s}"),
            data_path,
            validate_episodes,
        )
        for fold in plan
        for s in range(seeds)
    ]
    results = run_jobs(jobs, ray_address)
    report = {
        "data": bars.source,
        "mode": mode,
        "folds": [dataclasses.asdict(f) for f in plan],
        "seeds": [config.seed + s for s in range(seeds)],
        "timesteps": config.timesteps,
        "validate_episodes": validate_episodes,
        "runner": "ray" if ray_address else "in-process",
        "summary": summarise(results),
        "jobs": results,
    }
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def format_report(report: dict[str, Any]) -> str:
    """A table per job, then the pass rate and spreads."""
    s = report["summary"]
    lines = [
        f"walk-forward ({report['mode']}, {len(report['folds'])} folds x "
        f"{len(report['seeds'])} seeds, {report['timesteps']} steps each, "
        f"{report['runner']}) on {report['data']}",
        f"  {'fold':>4} {'seed':>4}  {'HOLD%':>6} {'BUY%':>6} {'SELL%':>6} {'PMpos%':>7}"
        f"  {'net R':>7} {'Sharpe':>7}  result",
    ]
    for r in report["jobs"]:
        c, m = r["criteria"], r["backtest"].get("model", {})
        lines.append(
            f"  {r['fold']:>4} {r['seed']:>4}  {c.get('hold_flat', 0):6.1f} "
            f"{c.get('buy_flat', 0):6.1f} {c.get('sell_flat', 0):6.1f} "
            f"{c.get('pm_in_position', 0):7.1f}  {m.get('net_pnl_r', 0):7.1f} "
            f"{m.get('sharpe_annualised', 0):7.2f}  "
            + ("PASS" if r["passed"] else "FAIL " + ",".join(r["failed"]))
        )
    lines.append(f"passed {s['passed']}/{s['jobs']} (pass rate {s['pass_rate']:.0%})")
    for name, sp in s["criteria_spread_pct"].items():
        lines.append(
            f"  {name:<16} mean {sp['mean']:6.1f}%  sd {sp['std']:5.1f}  "
            f"[{sp['min']:.1f}, {sp['max']:.1f}]"
        )
    for name, sp in s["backtest_spread"].items():
        lines.append(f"  model {name:<18} mean {sp['mean']:10.3f}  sd {sp['std']:8.3f}")
    return "\n".join(lines)
