"""Model bundles: a folder with ``model.zip``, ``vecnormalize.pkl`` and ``model.json``.

``model.zip`` and ``vecnormalize.pkl`` are plain SB3 files (``MaskablePPO.load``,
``VecNormalize.load``); ``model.json`` is the model card (SPEC.md, "Artifacts"). The
daemon reads the card's ``version``, ``observation.feature_version`` and ``env``, and
the contract facts ``instrument``, ``tick_size``, ``point_value``, ``bar_period`` and
``data_timezone``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog

from env.config import (
    ACTION_NAMES,
    FEATURE_VERSION,
    MARKET_FEATURE_COUNT,
    POSITION_FEATURE_COUNT,
    TOTAL_OBSERVATION_SIZE,
    WINDOW_SIZE,
)
from env.periods import MINUTE_1

CARD_FORMAT = "ai-trading-bridge/model-card-v1"
MODEL_FILE = "model.zip"
VECNORM_FILE = "vecnormalize.pkl"
CARD_FILE = "model.json"
BUNDLE_FILES = (MODEL_FILE, VECNORM_FILE)
OBS_LAYOUT = "20x11 bar-major oldest first + 8 position features (guide order)"

REQUIRED_CARD_KEYS = (
    "format",
    "version",
    "created",
    "observation",
    "actions",
    "env",
    "algorithm",
    "policy",
    "hyperparameters",
    "data",
    "git_commit",
    "command",
    "timesteps",
    "duration_s",
    "seed",
    "validation",
    "files",
)


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the folder and the problem."""


def observation_spec() -> dict[str, Any]:
    """The observation layout this code computes, as recorded in a card."""
    return {
        "size": TOTAL_OBSERVATION_SIZE,
        "window": WINDOW_SIZE,
        "market_features": MARKET_FEATURE_COUNT,
        "position_features": POSITION_FEATURE_COUNT,
        "feature_version": FEATURE_VERSION,
        "layout": OBS_LAYOUT,
    }


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The current commit of the checkout holding this code (``+dirty`` if modified)."""
    cwd = cwd or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{sha}+dirty" if dirty else sha


def make_version(name: str, when: datetime, commit: str | None) -> str:
    """``<name>-<utc timestamp>-<short sha>``, e.g. ``NQ-20251107T120000Z-1a2b3c4``."""
    short = (commit or "nogit")[:7]
    return f"{name}-{when.astimezone(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{short}"


@dataclass(frozen=True)
class Bundle:
    """A bundle on disk and its card."""

    path: Path
    card: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def vecnorm_path(self) -> Path:
        return self.path / VECNORM_FILE

    @property
    def card_path(self) -> Path:
        return self.path / CARD_FILE

    @property
    def version(self) -> str:
        return str(self.card.get("version", "unknown"))


def read_card(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: cannot read model card: {exc}") from None
    if not isinstance(card, dict):
        raise BundleError(f"{path}: a model card is a JSON object")
    return card


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Open a bundle folder and check its card; with ``verify``, also the file hashes.

    Raises:
        BundleError: naming the folder and what is missing or wrong.
    """
    path = Path(path)
    for name in (*BUNDLE_FILES, CARD_FILE):
        if not (path / name).is_file():
            raise BundleError(f"{path}: not a model bundle: {name} is missing")
    card = read_card(path / CARD_FILE)
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
    if missing:
        raise BundleError(f"{path / CARD_FILE}: model card lacks {missing}")
    if card["format"] != CARD_FORMAT:
        raise BundleError(f"{path / CARD_FILE}: format {card['format']!r} is not {CARD_FORMAT!r}")
    if verify:
        for name, expected in card["files"].items():
            actual = sha256_file(path / name)
            if actual != expected:
                raise BundleError(
                    f"{path / name}: sha256 {actual[:12]}... does not match the card's "
                    f"{str(expected)[:12]}...; the file was changed after the card was written"
                )
    return Bundle(path, card)


def write_card(path: str | Path, card: dict[str, Any]) -> None:
    """Write ``model.json`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    target = path / CARD_FILE
    tmp = path / f".{CARD_FILE}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(card, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def build_card(
    *,
    version: str,
    created: datetime,
    env_config: dict[str, Any],
    hyperparameters: dict[str, Any],
    data: dict[str, Any],
    commit: str | None,
    command: str,
    timesteps: int,
    duration_s: float,
    seed: int,
    files: dict[str, str],
    validation: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The model card dict, keys in the documented order."""
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "version": version,
        "created": created.astimezone(timezone.utc).isoformat(),
        "observation": observation_spec(),
        "actions": list(ACTION_NAMES),
        "env": env_config,
        **contract_fields(env_config, data),
        "algorithm": "MaskablePPO",
        "policy": "MlpPolicy",
        "hyperparameters": hyperparameters,
        "data": data,
        "git_commit": commit,
        "command": command,
        "timesteps": timesteps,
        "duration_s": round(duration_s, 3),
        "seed": seed,
        "validation": validation,
        "files": files,
    }
    if extra:
        card.update(extra)
    return card


def contract_fields(env_config: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The card's top-level facts about what the model trades: ``instrument`` (root),
    ``tick_size``, ``point_value``, ``bar_period`` (``{"type": "minute", "value": 1}``)
    and ``data_timezone`` (the zone the training file's naive times were read in).

    A card without them (older bundles) means NQ 1-minute bars.
    """
    instrument = env_config.get("instrument") or {}
    period = data.get("bar_period") or env_config.get("bar_period") or MINUTE_1.to_json()
    return {
        "instrument": instrument.get("symbol", "NQ"),
        "tick_size": instrument.get("tick_size"),
        "point_value": instrument.get("point_value"),
        "bar_period": period,
        "data_timezone": data.get("data_timezone") or None,
    }


def write_plain_files(path: str | Path, model: Any, vecnorm: Any) -> bool:
    """Write the daemon's pickle-free files (``policy.npz``, ``normalizer.npz``, checked
    equal to SB3) beside ``model.zip``, so ``serve --bundle`` loads nothing by unpickling.

    A stale pair from an earlier run in the same folder is removed first. A policy with no
    plain form (not a plain MLP) is logged and left to be served from ``model.zip``.

    Returns:
        Whether both files were written.
    """
    from bridge.plain import PLAIN_NORMALIZER, PLAIN_POLICY, PlainFormatError, export_plain

    path = Path(path)
    for name in (PLAIN_POLICY, PLAIN_NORMALIZER):
        (path / name).unlink(missing_ok=True)
    try:
        export_plain(model, vecnorm, path)
    except PlainFormatError as exc:
        structlog.get_logger().warning("plain_files_skipped", out=str(path), reason=str(exc))
        return False
    return True


def file_hashes(path: str | Path) -> dict[str, str]:
    path = Path(path)
    return {name: sha256_file(path / name) for name in BUNDLE_FILES}
