"""Helpers for the train tests: small hand-made bundles for deploy tests."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from train import bundle as bundle_io


def make_fake_bundle(
    folder: Path,
    version: str,
    passed: bool | None = True,
    feature_version: str | None = None,
    size: int | None = None,
) -> Path:
    """A bundle whose model files are placeholder bytes (deploy never unpickles them);
    ``passed=None`` leaves the card without a validation."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / bundle_io.MODEL_FILE).write_bytes(f"model {version}".encode() * 100)
    (folder / bundle_io.VECNORM_FILE).write_bytes(f"vecnorm {version}".encode() * 10)
    card = bundle_io.build_card(
        version=version,
        created=datetime(2025, 11, 7, tzinfo=timezone.utc),
        env_config={},
        hyperparameters={},
        data={},
        commit=None,
        command="test",
        timesteps=0,
        duration_s=0.0,
        seed=0,
        files=bundle_io.file_hashes(folder),
        validation=None if passed is None else {"passed": passed},
    )
    if feature_version is not None:
        card["observation"]["feature_version"] = feature_version
    if size is not None:
        card["observation"]["size"] = size
    (folder / bundle_io.CARD_FILE).write_text(json.dumps(card), encoding="utf-8")
    return folder
