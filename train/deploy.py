"""``deploy`` and ``rollback``: put a validated bundle live, crash-safely, with backups.

Layout of a deploy target ``DIR``::

    DIR/current.json            the pointer: which version folder is live (+ history)
    DIR/versions/<version>/     immutable bundle copies (model.zip, vecnormalize.pkl, model.json)
    DIR/backups/<timestamp>/    a copy of the bundle that was live before each deploy
                                (the guide's ``*_broken_backup`` step)
    DIR/deploy.log.jsonl        one JSON line per deploy, rollback or refusal

Crash safety: every folder is written under a temporary name (files fsynced, then the
folder renamed into place and its parent fsynced), and the live model changes only when
``current.json`` is replaced by ``os.replace`` of a fully written, fsynced temp file,
followed by an fsync of ``DIR``. A crash at any point therefore leaves ``current.json``
naming either the complete old version or the complete new one, never a mix; leftovers
(``.staging-*``) are ignored by readers and removed by the next deploy. ``os.replace`` is
an atomic rename on POSIX and a ``MoveFileEx(MOVEFILE_REPLACE_EXISTING)`` on Windows (atomic
on NTFS for a same-volume file), and the design needs no symlinks (which Windows restricts);
directory fsync is skipped where the OS does not support it (Windows).

Readers (the daemon) call :func:`deployed_bundle` on ``DIR``.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog

from env.config import COMPATIBLE_FEATURE_VERSIONS
from train import bundle as bundle_io

log = structlog.get_logger()

POINTER_FILE = "current.json"
VERSIONS_DIR = "versions"
BACKUPS_DIR = "backups"
LOG_FILE = "deploy.log.jsonl"
STAGING_PREFIX = ".staging-"
# Test hook: pause (sleep) at a named step so a test can kill the process there.
PAUSE_ENV = "AITB_DEPLOY_PAUSE_AT"
PAUSE_SECONDS = 60.0


class DeployError(RuntimeError):
    """A deploy or rollback that was refused; the message says why."""


def _fsync_dir(path: Path) -> None:
    if sys.platform == "win32":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pause_point(step: str) -> None:
    if os.environ.get(PAUSE_ENV) == step:
        print(f"deploy paused at {step}", file=sys.stderr, flush=True)
        time.sleep(PAUSE_SECONDS)


def _copy_durable(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())


def _write_folder(files: dict[str, Path], final: Path) -> None:
    """Copy ``files`` (name -> source) into ``final`` atomically: a staging folder beside
    it, each file fsynced, then one rename."""
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f"{STAGING_PREFIX}{final.name}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    for i, (name, src) in enumerate(files.items()):
        _copy_durable(src, staging / name)
        if i == 0:
            _pause_point(f"copy_{parent.name}")
    _fsync_dir(staging)
    os.replace(staging, final)
    _fsync_dir(parent)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    _pause_point("pointer_written")
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _append_log(target: Path, entry: dict[str, Any]) -> None:
    entry = {"time": datetime.now(timezone.utc).isoformat(), "user": _user(), **entry}
    with open(target / LOG_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers/services
        return "unknown"


def read_pointer(target: str | Path) -> dict[str, Any] | None:
    path = Path(target) / POINTER_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def deployed_bundle(target: str | Path, verify: bool = True) -> bundle_io.Bundle | None:
    """The live bundle of a deploy target, or None if nothing was deployed yet."""
    pointer = read_pointer(target)
    if pointer is None:
        return None
    return bundle_io.load_bundle(Path(target) / pointer["path"], verify=verify)


def _clean_staging(target: Path) -> None:
    for parent in (target / VERSIONS_DIR, target / BACKUPS_DIR):
        if parent.is_dir():
            for leftover in parent.glob(f"{STAGING_PREFIX}*"):
                shutil.rmtree(leftover, ignore_errors=True)
    for leftover in target.glob(f".{POINTER_FILE}.*.tmp"):
        leftover.unlink(missing_ok=True)


def check_deployable(
    new: bundle_io.Bundle, current: bundle_io.Bundle | None, force: bool, allow_layout_change: bool
) -> list[str]:
    """Reasons to refuse ``new``; ``force`` waives only the validation requirement."""
    problems: list[str] = []
    validation = new.card.get("validation")
    if not (isinstance(validation, dict) and validation.get("passed") is True):
        why = "has no validation" if not validation else "failed validation"
        if force:
            log.warning(
                "deploy_forced_without_passing_validation",
                version=new.version,
                reason=why,
                warning="THIS MODEL DID NOT PASS POST-TRAINING VALIDATION",
            )
        else:
            problems.append(
                f"bundle {new.version} {why}; run `ai-trading-bridge validate "
                f"{new.path} --write-card` (or --force)"
            )
    spec = bundle_io.observation_spec()
    obs = new.card.get("observation", {})
    for key in ("size", "feature_version"):
        if obs.get(key) != spec[key] and obs.get(key) not in COMPATIBLE_FEATURE_VERSIONS:
            problems.append(
                f"bundle observation {key} {obs.get(key)!r} differs from this code's {spec[key]!r}"
            )
    if current is not None and not allow_layout_change:
        live = current.card.get("observation", {})
        for key in ("size", "feature_version"):
            if obs.get(key) != live.get(key):
                problems.append(
                    f"bundle observation {key} {obs.get(key)!r} differs from the deployed "
                    f"{current.version}'s {live.get(key)!r} (--allow-layout-change to override)"
                )
    return problems


def deploy(
    bundle_path: str | Path,
    target: str | Path,
    force: bool = False,
    allow_layout_change: bool = False,
) -> dict[str, Any]:
    """Deploy a bundle to ``target``; returns the new pointer.

    Raises:
        DeployError: when the bundle is refused (the refusal is logged too).
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    _clean_staging(target)
    try:
        new = bundle_io.load_bundle(bundle_path)
    except bundle_io.BundleError as exc:
        _append_log(
            target, {"action": "refused", "bundle": str(bundle_path), "reasons": [str(exc)]}
        )
        raise DeployError(str(exc)) from None
    pointer = read_pointer(target)
    current = deployed_bundle(target) if pointer else None
    problems = check_deployable(new, current, force, allow_layout_change)
    if problems:
        _append_log(
            target,
            {
                "action": "refused",
                "bundle": str(bundle_path),
                "version": new.version,
                "reasons": problems,
            },
        )
        raise DeployError("; ".join(problems))

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    files = {name: new.path / name for name in (*bundle_io.BUNDLE_FILES, bundle_io.CARD_FILE)}
    version_dir = target / VERSIONS_DIR / f"{new.version}-{stamp}"
    _write_folder(files, version_dir)
    staged = bundle_io.load_bundle(version_dir)  # hashes re-checked on the copy
    _pause_point("staged")

    backup = None
    if current is not None:
        backup = target / BACKUPS_DIR / stamp
        _write_folder({name: current.path / name for name in files}, backup)
    _pause_point("backed_up")

    history = [*(pointer or {}).get("history", [])]
    if pointer is not None:
        history.append({"path": pointer["path"], "version": pointer["version"]})
    new_pointer = {
        "path": version_dir.relative_to(target).as_posix(),
        "version": staged.version,
        "deployed_at": datetime.now(timezone.utc).isoformat(),
        "forced": bool(force and not (new.card.get("validation") or {}).get("passed")),
        "history": history,
    }
    _write_json_atomic(target / POINTER_FILE, new_pointer)
    _pause_point("switched")
    _append_log(
        target,
        {
            "action": "deploy",
            "version": staged.version,
            "bundle": str(Path(bundle_path).resolve()),
            "path": new_pointer["path"],
            "previous": pointer["version"] if pointer else None,
            "backup": backup.relative_to(target).as_posix() if backup else None,
            "forced": new_pointer["forced"],
        },
    )
    log.info(
        "deployed", version=staged.version, target=str(target), previous=current and current.version
    )
    return new_pointer


def rollback(target: str | Path) -> dict[str, Any]:
    """Make the previously deployed version live again; returns the new pointer.

    Raises:
        DeployError: when there is nothing to roll back to.
    """
    target = Path(target)
    _clean_staging(target)
    pointer = read_pointer(target)
    if pointer is None or not pointer.get("history"):
        raise DeployError(f"{target}: no previous deployment to roll back to")
    history = list(pointer["history"])
    previous = history.pop()
    restored = bundle_io.load_bundle(target / previous["path"])  # complete and unchanged
    new_pointer = {
        "path": previous["path"],
        "version": restored.version,
        "deployed_at": datetime.now(timezone.utc).isoformat(),
        "forced": False,
        "history": history,
        "rolled_back_from": pointer["version"],
    }
    _write_json_atomic(target / POINTER_FILE, new_pointer)
    _append_log(
        target,
        {
            "action": "rollback",
            "version": restored.version,
            "from": pointer["version"],
            "path": previous["path"],
        },
    )
    log.info("rolled_back", version=restored.version, rolled_back_from=pointer["version"])
    return new_pointer
