"""Which weighting of the training span should band calibration use? Evidence on bundles.

For each bundle from ``train`` (its card's calibration offsets are taken back out of the
action head, so the learned policy is measured), five ways of combining the shares of
``K`` chronological blocks of the training bars into the one share that is put at the
band centre:

- ``pooled``: every decision counts once (the earlier calibration);
- ``midrange``: minimax over blocks, ``(min + max) / 2`` of the block shares (the worst
  block as far inside the band as the spread allows);
- ``last``: the last block only;
- ``recent``: blocks weighted ``2**k`` (oldest ``k = 0``), times their decisions;
- ``mid_recent``: the mean of ``midrange`` and ``last``.

Each is solved as ``train.calibration`` solves (monotone bisections, re-run episodes,
3 rounds, 80 episodes per block) twice:

- ``inner``: on the first 80% of the training span, checked on the last 20% of it (a
  pseudo hold-out that is still training data: this is the evidence a method may be
  chosen on, since it never reads the held-out bars);
- ``full``: on the whole training span, checked on the held-out span with 1000 episodes
  as ``validate`` runs them (reported for information only; reading it to choose a
  method would leak the held-out bars into the choice).

Prints each block's BUY/SELL/PM-in-position shares after the solve and the checked span's
shares, ``in`` when all four are inside the guide's bands.

``--train-calibrate`` instead runs ``train.calibration.calibrate`` itself on the same
learned policy twice, with one block (the earlier pooled calibration) and with its
default blocks and weights, and checks both the same two ways.

    python benchmarks/calibration_weighting.py runs/wf_sp500_100k/fold0_seed0 ...
    python benchmarks/calibration_weighting.py --train-calibrate runs/wf_sp500_100k/fold0_seed0
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from env.config import ACTION_NAMES, N_ACTIONS, WARMUP_BARS, Action
from env.trading_env import EnvConfig, TradingEnv
from train.calibration import (
    PM_IDS,
    _RecordingPolicy,
    bisect_offset,
    masked_argmax,
    shares_of,
)
from train.evaluation import numpy_actor, run_episodes
from train.training import load_data
from train.validation import card_bars_options, load_policy


def blocks_of(bars, k):
    """``k`` chronological blocks of decision bars, each with the warm-up bars before it."""
    edges = np.linspace(0, len(bars), k + 1).astype(int)
    return [bars[max(0, a - (WARMUP_BARS - 1)) : b] for a, b in itertools.pairwise(edges)]


def record(recorder, blocks, env_config, episodes, seed):
    """Logits, masks and block index of every decision of ``episodes`` per block."""
    logits, masks, block_ids = [], [], []
    for i, block in enumerate(blocks):
        run_episodes(recorder, block, env_config, episodes, seed=seed + 101 * i)
        block_logits, block_masks = recorder.take()
        logits.append(block_logits)
        masks.append(block_masks)
        block_ids.append(np.full(len(block_logits), i))
    return np.concatenate(logits), np.concatenate(masks), np.concatenate(block_ids)


def block_shares(chosen, rows, block_ids, k, actions):
    """Share (percent) of ``actions`` among ``rows`` per block, and the rows per block."""
    hit = np.isin(chosen, actions) & rows
    n = np.bincount(block_ids[rows], minlength=k).astype(float)
    hits = np.bincount(block_ids[hit], minlength=k).astype(float)
    return 100 * hits / np.maximum(n, 1), n


def _pooled(s, n):
    return float((s * n).sum() / max(n.sum(), 1))


def _midrange(s, n):
    return float((s[n > 0].min() + s[n > 0].max()) / 2)


def _last(s, n):
    return float(s[-1])


def _recent(s, n):
    w = n * 2.0 ** np.arange(len(s))
    return float((s * w).sum() / w.sum())


def _mid_recent(s, n):
    return 0.5 * _midrange(s, n) + 0.5 * _last(s, n)


METHODS = {
    "pooled": _pooled,
    "midrange": _midrange,
    "last": _last,
    "recent": _recent,
    "mid_recent": _mid_recent,
}


def solve(logits, masks, block_ids, k, start, combine):
    """``train.calibration.solve_offsets`` with the block shares combined by ``combine``."""
    offsets = np.array(start, float)
    offsets[0] = 0
    flat = masks[:, Action.MOVE_TO_BE] == 0
    for _ in range(30):
        previous = offsets.copy()
        for action in (Action.BUY, Action.SELL):

            def share(value, action=action):
                trial = offsets.copy()
                trial[action] = value
                chosen = masked_argmax(logits, masks, trial)
                return combine(*block_shares(chosen, flat, block_ids, k, [action]))

            offsets[action] = bisect_offset(share, 7.5)
        if np.abs(offsets - previous).max() < 1e-4:
            break

    def pm_share(value):
        trial = offsets.copy()
        trial[list(PM_IDS)] = value
        chosen = masked_argmax(logits, masks, trial)
        return combine(*block_shares(chosen, ~flat, block_ids, k, list(PM_IDS)))

    if (~flat).any():
        offsets[list(PM_IDS)] = bisect_offset(pm_share, 50.0)
    return offsets


def per_block(logits, masks, block_ids, k, offsets):
    chosen = masked_argmax(logits, masks, offsets)
    flat = masks[:, Action.MOVE_TO_BE] == 0
    buy, _ = block_shares(chosen, flat, block_ids, k, [Action.BUY])
    sell, _ = block_shares(chosen, flat, block_ids, k, [Action.SELL])
    pm, _ = block_shares(chosen, ~flat, block_ids, k, list(PM_IDS))
    return buy, sell, pm


def inside(sh):
    return (
        80 <= sh["hold_flat"] <= 90
        and 5 <= sh["buy_flat"] <= 10
        and 5 <= sh["sell_flat"] <= 10
        and 40 <= sh["pm_in_position"] <= 60
    )


def load_bundle(bundle):
    """Card, training bars, held-out bars (with warm-up), env config, model, vecnorm."""
    card = json.loads((bundle / "model.json").read_text())
    data = card["data"]
    source = data["source"].split("@")[0]
    if source.startswith("synthetic"):
        bars, _ = load_data(None, card["train_config"]["synthetic_days"])
    else:
        bars, _ = load_data(source, **card_bars_options(card))
    train = bars[data["start_index"] : data["holdout_start_index"]]
    hold = bars[data["holdout_start_index"] - (WARMUP_BARS - 1) : data["holdout_end_index"]]
    env_config = EnvConfig.from_dict(card["env"])
    model, vecnorm = load_policy(
        bundle / "model.zip", bundle / "vecnormalize.pkl", TradingEnv(train, env_config)
    )
    return card, train, hold, env_config, model, vecnorm


def compare_train_calibrate(bundle):
    """``calibrate`` with one block and with its defaults, on the learned policy."""
    import torch

    from train.calibration import BLOCKS, calibrate

    card, train, hold, env_config, model, vecnorm = load_bundle(bundle)
    offsets = [card["calibration"]["offsets"][n] for n in ACTION_NAMES]
    head = model.policy.action_net
    with torch.no_grad():
        head.bias.sub_(torch.as_tensor(offsets, dtype=head.bias.dtype))
    learned = head.bias.detach().clone()
    cut = int(len(train) * 0.8)
    checks = {
        "full": (train, hold, "HELD-OUT"),
        "inner": (train[:cut], train[cut - (WARMUP_BARS - 1) :], "pseudo(last20%train)"),
    }
    print(f"== {bundle} train={len(train)} hold={len(hold)}")
    for name, n_blocks in (("pooled(1 block)", 1), (f"weighted({BLOCKS} blocks)", BLOCKS)):
        for setting, (span, checked, tag) in checks.items():
            with torch.no_grad():
                head.bias.copy_(learned)
            result = calibrate(model, vecnorm, span, env_config, n_blocks=n_blocks)
            recorder = _RecordingPolicy(numpy_actor(model.policy), vecnorm)
            sh = shares_of(run_episodes(recorder, checked, env_config, 1000, seed=0))
            blocks = [round(b["after_pct"]["buy_flat"], 1) for b in result.blocks]
            print(
                f"{name:18s} {setting:5s} rounds {result.rounds} blocksBUY {blocks} | {tag}:"
                f" H {sh['hold_flat']:.1f} B {sh['buy_flat']:.1f} S {sh['sell_flat']:.1f}"
                f" PM {sh['pm_in_position']:.1f} {'in' if inside(sh) else 'OUT'}",
                flush=True,
            )


def main(bundle, k=5, eps_per_block=80, rounds=3):
    card, train, hold, env_config, model, vecnorm = load_bundle(bundle)
    layers = numpy_actor(model.policy)
    weight, bias, activation = layers[-1]
    calibration = np.array([card["calibration"]["offsets"][n] for n in ACTION_NAMES])
    layers[-1] = (weight, (bias - calibration).astype(np.float32), activation)
    recorder = _RecordingPolicy(layers, vecnorm)
    cut = int(len(train) * 0.8)
    settings = {"full": train, "inner": train[:cut]}
    pseudo = train[cut - (WARMUP_BARS - 1) :]
    print(f"== {bundle} train={len(train)} hold={len(hold)}")
    for name, combine in METHODS.items():
        for setting, span in settings.items():
            kk = k if setting == "full" else max(1, round(k * 0.8))
            blocks = blocks_of(span, kk)
            offsets = np.zeros(N_ACTIONS)
            best = None
            for r in range(rounds + 1):
                recorder.offsets = offsets
                logits, masks, block_ids = record(
                    recorder, blocks, env_config, eps_per_block, 777 + r
                )
                buy, sell, pm = per_block(logits, masks, block_ids, kk, offsets)
                ones = np.ones(kk)
                score = max(
                    abs(combine(buy, ones) - 7.5),
                    abs(combine(sell, ones) - 7.5),
                    abs(combine(pm, ones) - 50) / 2,
                )
                if best is None or score < best[0]:
                    best = (score, offsets.copy(), buy, sell, pm)
                if r == rounds:
                    break
                offsets = solve(logits, masks, block_ids, kk, offsets, combine)
            _, offsets, buy, sell, pm = best
            recorder.offsets = offsets
            checked = hold if setting == "full" else pseudo
            sh = shares_of(run_episodes(recorder, checked, env_config, 1000, seed=0))
            recorder.take()
            tag = "HELD-OUT" if setting == "full" else "pseudo(last20%train)"
            print(
                f"{name:10s} {setting:5s} blocksBUY {np.round(buy, 1)} SELL {np.round(sell, 1)}"
                f" PM {np.round(pm, 0)} | {tag}: H {sh['hold_flat']:.1f}"
                f" B {sh['buy_flat']:.1f} S {sh['sell_flat']:.1f}"
                f" PM {sh['pm_in_position']:.1f} {'in' if inside(sh) else 'OUT'}",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--train-calibrate", action="store_true")
    args = parser.parse_args()
    for bundle_dir in args.bundles:
        (compare_train_calibrate if args.train_calibrate else main)(bundle_dir)
