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

The retraining guide's two-file form (its section 8, "Deployment Steps") deploys in place
instead: ``deploy --model NQ_o1_fixed.zip --vecnorm
phase2_position_mgmt_final_vecnorm_fixed.pkl --target DIR`` makes the files live under
their names without ``_fixed`` (``DIR/NQ_o1.zip``,
``DIR/phase2_position_mgmt_final_vecnorm.pkl``), after copying the live pair to the guide's
backup names (``NQ_o1_broken_backup.zip``, ``..._vecnorm_broken_backup.pkl``); an older
backup pair is first kept in ``DIR/backups/<timestamp>/``, so nothing is overwritten.
Every file is written under a temporary name, fsynced and renamed into place; the two live
files are renamed one after the other, and ``current.json`` (written last) records both
files' sha256, so a crash between the two renames is caught by :func:`resolve_model`
(the pair is refused, naming ``deploy``/``rollback``) rather than served mixed.

:func:`resolve_model` is the one place that turns a command's model arguments (a bundle
folder, a deploy target of either form, or the two files) into files.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog

from bridge.plain import PLAIN_NORMALIZER, PLAIN_POLICY
from bridge.policy import card_bar_period
from bridge.protocol import describe_period, same_period
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
FILES_FORM = "files"  # a pointer's "form" for the guide's two-file deployments
FIXED_SUFFIX = "_fixed"  # the guide's retrained files; the live names drop it
BACKUP_SUFFIX = "_broken_backup"  # the guide's backup names
VALIDATION_SUFFIX = ".validation.json"  # beside a two-file model: `validate --write-card`
# A bundle's plain-format policy (bridge.plain), copied with it when present so that a
# deployed bundle is still served without unpickling.
PLAIN_FILES = (PLAIN_POLICY, PLAIN_NORMALIZER)


class DeployError(RuntimeError):
    """A deploy or rollback that was refused; the message says why."""


class ModelArgsError(ValueError):
    """Model arguments that name no usable model; the message says what to give instead."""


@dataclass(frozen=True)
class ModelFiles:
    """The files of one model, however the command line named it.

    Attributes:
        model: The SB3 ``.zip``.
        vecnorm: The VecNormalize ``.pkl`` saved with it.
        bundle: The bundle folder (with ``model.json``) when the model is a bundle.
        target: The deploy target the model was found through, if any.
    """

    model: Path
    vecnorm: Path
    bundle: Path | None = None
    target: Path | None = None

    @property
    def card_path(self) -> Path | None:
        """The model card, for a bundle."""
        return None if self.bundle is None else self.bundle / bundle_io.CARD_FILE


_TWO_FILES_EXAMPLE = (
    "--model NQ_o1_fixed.zip --vecnorm phase2_position_mgmt_final_vecnorm_fixed.pkl"
)


def resolve_model(
    bundle: str | Path | None = None,
    model: str | Path | None = None,
    vecnorm: str | Path | None = None,
    default_bundle: str | Path | None = None,
) -> ModelFiles:
    """Turn a command's model arguments into the model's files.

    Args:
        bundle: A bundle folder (``model.zip``, ``vecnormalize.pkl``, ``model.json``) or a
            deploy target (a folder with ``current.json``, of either form).
        model: The guide's model zip, e.g. ``NQ_o1_fixed.zip`` (with ``vecnorm``).
        vecnorm: The guide's statistics, e.g. ``phase2_position_mgmt_final_vecnorm_fixed.pkl``.
        default_bundle: Used when nothing is named; without it, nothing named is an error.

    Raises:
        ModelArgsError: both forms, one of the two files, a missing file or folder, a
            folder that is neither a bundle nor a deploy target, or a two-file deploy
            target whose live files do not match its pointer.
    """
    if bundle is not None and (model is not None or vecnorm is not None):
        raise ModelArgsError(f"give either a bundle folder or {_TWO_FILES_EXAMPLE}, not both")
    if bundle is None and model is None and vecnorm is None:
        if default_bundle is None:
            raise ModelArgsError(f"name a model: a bundle folder, or {_TWO_FILES_EXAMPLE}")
        bundle = default_bundle
    if bundle is not None:
        return _resolve_folder(Path(bundle))
    if model is None or vecnorm is None:
        raise ModelArgsError(
            "--model and --vecnorm go together: the model zip and the VecNormalize "
            f"statistics saved with it (e.g. {_TWO_FILES_EXAMPLE})"
        )
    for option, path in (("--model", Path(model)), ("--vecnorm", Path(vecnorm))):
        if not path.is_file():
            where = "is a folder; give it as the bundle" if path.is_dir() else "does not exist"
            raise ModelArgsError(f"{option} {path} {where}")
    return ModelFiles(Path(model), Path(vecnorm))


def _resolve_folder(folder: Path) -> ModelFiles:
    if folder.is_file():
        raise ModelArgsError(
            f"{folder} is a file, not a bundle folder; for the guide's two files give "
            f"{_TWO_FILES_EXAMPLE}"
        )
    if not folder.is_dir():
        raise ModelArgsError(f"{folder} is not a model bundle or deploy target: it does not exist")
    if (folder / POINTER_FILE).is_file():
        return _resolve_target(folder)
    missing = [
        name
        for name in (*bundle_io.BUNDLE_FILES, bundle_io.CARD_FILE)
        if not (folder / name).is_file()
    ]
    if missing:
        raise ModelArgsError(
            f"{folder} is neither a model bundle ({', '.join(missing)} missing) nor a deploy "
            f"target ({POINTER_FILE} missing)"
        )
    return ModelFiles(folder / bundle_io.MODEL_FILE, folder / bundle_io.VECNORM_FILE, bundle=folder)


def _resolve_target(target: Path) -> ModelFiles:
    """The live model of a deploy target, resolved once (a deploy switching the pointer
    meanwhile cannot mix two models)."""
    try:
        pointer = read_pointer(target)
        if not isinstance(pointer, dict):
            raise ValueError("not a JSON object")
        if pointer.get("form") != FILES_FORM:
            folder = target / str(pointer["path"])
            return ModelFiles(
                folder / bundle_io.MODEL_FILE,
                folder / bundle_io.VECNORM_FILE,
                bundle=folder,
                target=target,
            )
        files = ModelFiles(
            target / str(pointer["model"]), target / str(pointer["vecnorm"]), target=target
        )
        expected = dict(pointer["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelArgsError(
            f"{target / POINTER_FILE} is not a readable deploy pointer ({exc}); "
            "run `ai-trading-bridge rollback` or deploy again"
        ) from None
    for path in (files.model, files.vecnorm):
        if not path.is_file() or bundle_io.sha256_file(path) != expected.get(path.name):
            raise ModelArgsError(
                f"{path} does not match {target / POINTER_FILE} (a deploy was interrupted or "
                "the file was changed by hand); run `ai-trading-bridge deploy` again or "
                "`ai-trading-bridge rollback`"
            )
    return files


def shell_path(path: Path | str) -> str:
    """``path`` as a command line argument to paste: in double quotes when it holds a
    space or a shell character (PowerShell, cmd.exe and POSIX shells all read those)."""
    text = str(path)
    plain = text and all(c.isalnum() or c in "/\\._-:+~,@" for c in text)
    return text if plain else f'"{text}"'


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


def _was_forced(target: Path, entry: dict[str, Any]) -> bool:
    """Whether the deployment a history ``entry`` records went live with ``--force``: a
    rollback to it puts that model live again, unvalidated as before. Entries written
    before history recorded it are looked up in the deploy log (its last deploy of that
    version); the two files live before any deploy were never forced."""
    if "forced" in entry:
        return bool(entry["forced"])
    forced = False
    try:
        lines = (target / LOG_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(record, dict)
            and record.get("action") == "deploy"
            and record.get("version") == entry.get("version")
            and record.get("path", entry.get("path")) == entry.get("path")
        ):
            forced = bool(record.get("forced"))
    return forced


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
    """The live bundle of a deploy target, or None if nothing was deployed yet (or the
    target holds a two-file deployment: :func:`resolve_model` reads both forms)."""
    pointer = read_pointer(target)
    if pointer is None or pointer.get("form") == FILES_FORM:
        return None
    return bundle_io.load_bundle(Path(target) / pointer["path"], verify=verify)


def _clean_staging(target: Path) -> None:
    for parent in (target / VERSIONS_DIR, target / BACKUPS_DIR):
        if parent.is_dir():
            for leftover in parent.glob(f"{STAGING_PREFIX}*"):
                shutil.rmtree(leftover, ignore_errors=True)
    for leftover in target.glob(f".{POINTER_FILE}.*.tmp"):
        leftover.unlink(missing_ok=True)
    for leftover in target.glob(f"{STAGING_PREFIX}*"):  # a two-file deploy's staged copies
        if leftover.is_file():
            leftover.unlink(missing_ok=True)


def held_out_loss(validation: Any) -> str | None:
    """Why a validated model lost money on its held-out walk, or None.

    The guide's criteria are about behaviour (how often each action is taken), not
    profit: a model can pass them and lose on every held-out trade. A model is called
    losing here when the bootstrap interval (90% by default, as the validation's
    ``backtest.bootstrap.confidence`` records) of its mean R per trade on the
    contiguous held-out walk (``train.backtest``, in the validation summary's
    ``trading``) lies wholly below 0. Deploy does not refuse it (the trader decides);
    it says so on the console, in the pointer and in the deploy log.

    Args:
        validation: a card's (or validation record's) ``validation`` summary.
    """
    trading = validation.get("trading") if isinstance(validation, dict) else None
    if not isinstance(trading, dict):
        return None
    interval = (trading.get("ci") or {}).get("mean_r_per_trade")
    if not isinstance(interval, (list, tuple)) or len(interval) != 2 or interval[1] >= 0:
        return None
    low, high = interval
    bootstrap = (validation.get("backtest") or {}).get("bootstrap") or {}
    confidence = bootstrap.get("confidence")
    level = f"{confidence:.0%}" if isinstance(confidence, (int, float)) else "bootstrap"
    return (
        f"the model lost {trading.get('net_pnl_r', 0):+.1f} R "
        f"({trading.get('net_pnl_usd', 0):+,.0f} in account currency) over "
        f"{trading.get('trades', 0)} trades on its held-out walk: mean "
        f"{trading.get('mean_r_per_trade', 0):+.3f} R per trade, {level} interval {low:+.3f} to "
        f"{high:+.3f} (the guide's criteria check behaviour, not profit)"
    )


def _warn_held_out_loss(version: str, validation: Any) -> str | None:
    loss = held_out_loss(validation)
    if loss is not None:
        log.warning("deploy_held_out_loss", version=version, detail=loss)
    return loss


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
                f"{shell_path(new.path)} --write-card` (or --force)"
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
        period, live_period = card_bar_period(new.card), card_bar_period(current.card)
        if not same_period(period, live_period):  # the charts send the live model's bars
            problems.append(
                f"bundle {new.version} was trained on {describe_period(period)} bars, the "
                f"deployed {current.version} on {describe_period(live_period)} bars: the "
                "daemon would refuse the charts sending them (--allow-layout-change if the "
                "charts change too)"
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
    if pointer is not None and pointer.get("form") == FILES_FORM:
        raise DeployError(
            f"{target} holds the guide's two-file deployment ({pointer.get('model')}); "
            "deploy this bundle to another --target"
        )
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
    names = (*bundle_io.BUNDLE_FILES, bundle_io.CARD_FILE, *PLAIN_FILES)
    files = {name: new.path / name for name in names if (new.path / name).is_file()}
    version_dir = target / VERSIONS_DIR / f"{new.version}-{stamp}"
    _write_folder(files, version_dir)
    staged = bundle_io.load_bundle(version_dir)  # hashes re-checked on the copy
    _pause_point("staged")

    backup = None
    if current is not None:
        backup = target / BACKUPS_DIR / stamp
        live = {name: current.path / name for name in names}
        _write_folder({name: path for name, path in live.items() if path.is_file()}, backup)
    _pause_point("backed_up")

    history = [*(pointer or {}).get("history", [])]
    if pointer is not None:
        history.append(
            {
                "path": pointer["path"],
                "version": pointer["version"],
                "forced": bool(pointer.get("forced")),
            }
        )
    new_pointer = {
        "path": version_dir.relative_to(target).as_posix(),
        "version": staged.version,
        "deployed_at": datetime.now(timezone.utc).isoformat(),
        "forced": bool(force and not (new.card.get("validation") or {}).get("passed")),
        "held_out_loss": _warn_held_out_loss(staged.version, new.card.get("validation")),
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
            "held_out_loss": new_pointer["held_out_loss"],
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
    if pointer is not None and pointer.get("form") == FILES_FORM:
        return _rollback_files(target, pointer)
    if pointer is None or not pointer.get("history"):
        raise DeployError(f"{target}: no previous deployment to roll back to")
    history = list(pointer["history"])
    previous = history.pop()
    restored = bundle_io.load_bundle(target / previous["path"])  # complete and unchanged
    new_pointer = {
        "path": previous["path"],
        "version": restored.version,
        "deployed_at": datetime.now(timezone.utc).isoformat(),
        "forced": _was_forced(target, previous),
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
            "forced": new_pointer["forced"],
        },
    )
    log.info("rolled_back", version=restored.version, rolled_back_from=pointer["version"])
    return new_pointer


# -- the guide's two-file form ---------------------------------------------------------


def live_name(path: Path) -> str:
    """The name a retrained file is served under: the guide's ``NQ_o1_fixed.zip`` becomes
    ``NQ_o1.zip``; a name without ``_fixed`` is kept."""
    stem = path.stem[: -len(FIXED_SUFFIX)] if path.stem.endswith(FIXED_SUFFIX) else path.stem
    return f"{stem}{path.suffix}"


def backup_name(path: Path) -> str:
    """The guide's backup name of a live file: ``NQ_o1.zip`` -> ``NQ_o1_broken_backup.zip``."""
    return f"{path.stem}{BACKUP_SUFFIX}{path.suffix}"


def validation_record_path(model: Path) -> Path:
    """Where ``validate --model ... --write-card`` records its verdict on a two-file model:
    ``NQ_o1_fixed.zip`` -> ``NQ_o1_fixed.validation.json`` beside it."""
    return model.with_name(f"{model.stem}{VALIDATION_SUFFIX}")


def write_validation_record(model: Path, vecnorm: Path, summary: dict[str, Any]) -> Path:
    """Record a validation summary for the pair, with both files' sha256 so that a later
    change to either file voids it."""
    path = validation_record_path(model)
    record = {
        "model_sha256": bundle_io.sha256_file(model),
        "vecnorm_sha256": bundle_io.sha256_file(vecnorm),
        "validation": summary,
    }
    _write_json_atomic(path, record)
    return path


def zip_observation_size(model: Path) -> int | None:
    """The observation size an SB3 zip was trained on, read from its JSON ``data`` entry
    (nothing is unpickled); None when the zip does not say."""
    try:
        with zipfile.ZipFile(model) as archive:
            data = json.loads(archive.read("data"))
        return int(data["observation_space"]["_shape"][0])
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, TypeError, IndexError):
        return None


def check_files_deployable(model: Path, vecnorm: Path, force: bool) -> list[str]:
    """Reasons to refuse the guide's two files; ``force`` waives only validation."""
    problems: list[str] = []
    size = zip_observation_size(model)
    expected = bundle_io.observation_spec()["size"]
    if size != expected:
        problems.append(
            f"{model} has observation size {size}, this code computes {expected} "
            "(retrain from scratch with the 8 position features)"
        )
    record_path = validation_record_path(model)
    why = None
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("model_sha256") != bundle_io.sha256_file(model) or record.get(
            "vecnorm_sha256"
        ) != bundle_io.sha256_file(vecnorm):
            why = f"was changed after its validation ({record_path.name})"
        elif not (record.get("validation") or {}).get("passed"):
            why = "failed validation"
    except FileNotFoundError:
        why = "has no validation"
    except (OSError, ValueError, AttributeError) as exc:
        why = f"has an unreadable validation record {record_path} ({exc})"
    if why is not None:
        if force:
            log.warning(
                "deploy_forced_without_passing_validation",
                version=model.stem,
                reason=why,
                warning="THIS MODEL DID NOT PASS POST-TRAINING VALIDATION",
            )
        else:
            problems.append(
                f"{model.name} {why}; run `ai-trading-bridge validate --model "
                f"{shell_path(model)} --vecnorm {shell_path(vecnorm)} --write-card` (or --force)"
            )
    return problems


def _stage_file(src: Path, final: Path) -> Path:
    """A fsynced copy of ``src`` beside ``final`` under a staging name."""
    staging = final.with_name(f"{STAGING_PREFIX}{final.name}-{os.getpid()}")
    _copy_durable(src, staging)
    return staging


def _place_file(src: Path, final: Path) -> None:
    """Copy ``src`` to ``final`` so that ``final`` is always complete (stage, rename)."""
    os.replace(_stage_file(src, final), final)


def _keep_old_backups(target: Path, live: list[Path], stamp: str) -> str | None:
    """Move an existing ``*_broken_backup`` pair into ``backups/<stamp>/`` before it is
    overwritten; returns that folder (relative) or None."""
    old = {backup_name(path): target / backup_name(path) for path in live}
    old = {name: path for name, path in old.items() if path.is_file()}
    if not old:
        return None
    _write_folder(old, target / BACKUPS_DIR / stamp)
    return f"{BACKUPS_DIR}/{stamp}"


def deploy_files(
    model: str | Path, vecnorm: str | Path, target: str | Path, force: bool = False
) -> dict[str, Any]:
    """The guide's deployment of its two files into ``target`` (section 8): back up the
    live pair as ``*_broken_backup``, then make the new pair live under the names without
    ``_fixed``. Returns the new pointer.

    Raises:
        DeployError: missing files, a 225-value (or other) layout, no passing validation
            record without ``force``, a target holding bundle deployments, or files that
            already are the live ones. The refusal is logged in ``deploy.log.jsonl``.
    """
    model, vecnorm, target = Path(model), Path(vecnorm), Path(target)
    try:
        resolve_model(model=model, vecnorm=vecnorm)
    except ModelArgsError as exc:
        raise DeployError(str(exc)) from None
    target.mkdir(parents=True, exist_ok=True)
    _clean_staging(target)
    live = [target / live_name(model), target / live_name(vecnorm)]
    pointer = read_pointer(target)
    problems = _files_target_problems(target, pointer, model, vecnorm, live)
    problems += check_files_deployable(model, vecnorm, force)
    if problems:
        _append_log(target, {"action": "refused", "model": str(model), "reasons": problems})
        raise DeployError("; ".join(problems))

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    staged = [_stage_file(src, final) for src, final in zip((model, vecnorm), live)]
    _pause_point("staged")
    archived = _keep_old_backups(target, live, stamp)
    backups = []
    for path in live:
        if path.is_file():
            _place_file(path, target / backup_name(path))
            backups.append(backup_name(path))
    _fsync_dir(target)
    _pause_point("backed_up")
    for src, final in zip(staged, live):
        os.replace(src, final)
        _pause_point(f"switched_{final.suffix.lstrip('.')}")
    _fsync_dir(target)
    hashes = {path.name: bundle_io.sha256_file(path) for path in live}
    history = [*(pointer or {}).get("history", [])]
    if pointer is not None:
        history.append(
            {
                "version": pointer["version"],
                "files": pointer["files"],
                "forced": bool(pointer.get("forced")),
            }
        )
    new_pointer = {
        "form": FILES_FORM,
        "model": live[0].name,
        "vecnorm": live[1].name,
        "files": hashes,
        "version": f"{model.stem}-{hashes[live[0].name][:8]}",
        "deployed_at": datetime.now(timezone.utc).isoformat(),
        "forced": bool(force and check_files_deployable(model, vecnorm, False)),
        "held_out_loss": _warn_held_out_loss(
            f"{model.stem}-{hashes[live[0].name][:8]}", _files_validation(model, live[0])
        ),
        "history": history,
    }
    _write_json_atomic(target / POINTER_FILE, new_pointer)
    _append_log(
        target,
        {
            "action": "deploy",
            "version": new_pointer["version"],
            "model": str(model.resolve()),
            "vecnorm": str(vecnorm.resolve()),
            "live": [path.name for path in live],
            "previous": pointer["version"] if pointer else None,
            "backup": backups,
            "older_backups": archived,
            "forced": new_pointer["forced"],
            "held_out_loss": new_pointer["held_out_loss"],
        },
    )
    log.info("deployed", version=new_pointer["version"], target=str(target), backup=backups)
    return new_pointer


def _files_validation(model: Path, live: Path) -> Any:
    """The validation summary recorded for the two files deployed from ``model`` (now
    ``live``), if its record is there and names these bytes; else None."""
    try:
        record = json.loads(validation_record_path(model).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("model_sha256") != bundle_io.sha256_file(live):
        return None
    return record.get("validation")


def _files_target_problems(
    target: Path, pointer: dict[str, Any] | None, model: Path, vecnorm: Path, live: list[Path]
) -> list[str]:
    if pointer is not None and pointer.get("form") != FILES_FORM:
        return [f"{target} holds bundle deployments; deploy the two files to another --target"]
    if pointer is not None and [pointer.get("model"), pointer.get("vecnorm")] != [
        p.name for p in live
    ]:
        return [
            f"{target} serves {pointer.get('model')} and {pointer.get('vecnorm')}; files "
            f"named {model.name} and {vecnorm.name} would go live under other names"
        ]
    for src, final in zip((model, vecnorm), live):
        if final.exists() and src.resolve() == final.resolve():
            return [f"{src} already is the live file; give the retrained (_fixed) file"]
    return []


def _rollback_files(target: Path, pointer: dict[str, Any]) -> dict[str, Any]:
    """Make the ``*_broken_backup`` pair live again; the pair being replaced is kept in
    ``backups/<timestamp>/`` first."""
    live = [target / str(pointer["model"]), target / str(pointer["vecnorm"])]
    backups = [target / backup_name(path) for path in live]
    missing = [path.name for path in backups if not path.is_file()]
    if missing:
        raise DeployError(f"{target}: no backup to roll back to ({', '.join(missing)} missing)")
    if all(path.is_file() for path in live) and all(
        bundle_io.sha256_file(backup) == bundle_io.sha256_file(path)
        for backup, path in zip(backups, live)
    ):
        # The guide's form keeps one earlier pair: after one rollback it is the live one.
        raise DeployError(
            f"{target}: the backup pair ({', '.join(b.name for b in backups)}) is already "
            "the live pair; the two-file form keeps one earlier pair (older ones are in "
            f"{target / BACKUPS_DIR}: copy one back by hand, then deploy it)"
        )
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    replaced = {path.name: path for path in live if path.is_file()}
    _write_folder(replaced, target / BACKUPS_DIR / stamp)
    for backup, path in zip(backups, live):
        _place_file(backup, path)
    _fsync_dir(target)
    hashes = {path.name: bundle_io.sha256_file(path) for path in live}
    history = list(pointer.get("history", []))
    previous = history.pop() if history else {"version": "backup"}
    new_pointer = {
        **pointer,
        "files": hashes,
        "version": previous["version"],
        "deployed_at": datetime.now(timezone.utc).isoformat(),
        "forced": _was_forced(target, previous),
        "history": history,
        "rolled_back_from": pointer["version"],
    }
    _write_json_atomic(target / POINTER_FILE, new_pointer)
    _append_log(
        target,
        {
            "action": "rollback",
            "version": new_pointer["version"],
            "from": pointer["version"],
            "kept": f"{BACKUPS_DIR}/{stamp}",
            "forced": new_pointer["forced"],
        },
    )
    log.info("rolled_back", version=new_pointer["version"], rolled_back_from=pointer["version"])
    return new_pointer
