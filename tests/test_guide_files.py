"""The retraining guide's two files by their own names: validate, deploy (with the guide's
*_broken_backup copies), rollback and serve."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from bridge_helpers import train_bundle
from click.testing import CliRunner
from test_cli_entry import (
    SERVING,
    clean_env,
    decide_one_bar,
    start_script,
    stop_with_sigint,
)
from train_helpers import make_fake_bundle

from ai_trading_bridge import cli
from bridge.config import ConfigError, ModelSource
from bridge.policy import PolicyLoadError, load_policy
from train.bundle import sha256_file
from train.deploy import (
    BACKUPS_DIR,
    POINTER_FILE,
    DeployError,
    ModelArgsError,
    deploy_files,
    resolve_model,
    rollback,
    validation_record_path,
    write_validation_record,
)

FIXED_ZIP = "NQ_o1_fixed.zip"
FIXED_PKL = "phase2_position_mgmt_final_vecnorm_fixed.pkl"
LIVE_ZIP = "NQ_o1.zip"
LIVE_PKL = "phase2_position_mgmt_final_vecnorm.pkl"
BACKUP_ZIP = "NQ_o1_broken_backup.zip"
BACKUP_PKL = "phase2_position_mgmt_final_vecnorm_broken_backup.pkl"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real tiny MaskablePPO models: ``old`` (the broken one) and ``new``."""
    root = tmp_path_factory.mktemp("models")
    return {
        "old": train_bundle(root / "old", seed=1),
        "new": train_bundle(root / "new", seed=0),
    }


def guide_folder(tmp_path: Path, models: dict[str, Path], validated: bool = True) -> Path:
    """The user's bridge folder: the old model live under the guide's names, the retrained
    one beside it as *_fixed (as the guide's train.py saves them)."""
    folder = tmp_path / "bridge folder"
    folder.mkdir()
    for bundle, zip_name, pkl_name in (
        (models["old"], LIVE_ZIP, LIVE_PKL),
        (models["new"], FIXED_ZIP, FIXED_PKL),
    ):
        shutil.copy(bundle / "model.zip", folder / zip_name)
        shutil.copy(bundle / "vecnormalize.pkl", folder / pkl_name)
    if validated:
        write_validation_record(folder / FIXED_ZIP, folder / FIXED_PKL, {"passed": True})
    return folder


def guide_args(folder: Path) -> list[str]:
    return ["--model", str(folder / FIXED_ZIP), "--vecnorm", str(folder / FIXED_PKL)]


def test_guide_deploy_backs_up_as_broken_backup_then_serves_by_file_names(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    folder = guide_folder(tmp_path, models)
    old_zip, old_pkl = (folder / LIVE_ZIP).read_bytes(), (folder / LIVE_PKL).read_bytes()
    result = CliRunner().invoke(
        cli,
        ["deploy", *guide_args(folder), "--target", str(folder)],
    )
    assert result.exit_code == 0, result.output
    assert (folder / BACKUP_ZIP).read_bytes() == old_zip
    assert (folder / BACKUP_PKL).read_bytes() == old_pkl
    assert (folder / LIVE_ZIP).read_bytes() == (folder / FIXED_ZIP).read_bytes()
    assert (folder / LIVE_PKL).read_bytes() == (folder / FIXED_PKL).read_bytes()

    # The guide's "Test with Live Connection", naming the live files as its bridge does.
    env = clean_env(tmp_path, AITB_BIND="tcp://127.0.0.1:*", AITB_CONTROL="none")
    process, first = start_script(
        ["serve", "--model", LIVE_ZIP, "--vecnorm", LIVE_PKL], folder, env
    )
    try:
        match = SERVING.match(first)
        assert match, first
        assert match.group(1) == f"{LIVE_ZIP}@{sha256_file(folder / FIXED_ZIP)[:12]}"
        reply = decide_one_bar(match.group(3))
    finally:
        code = stop_with_sigint(process)
    assert reply["ok"] is True and reply["mask"][reply["action"]] == 1
    assert code == 0


def test_deploy_target_of_two_files_resolves_to_the_live_pair(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    folder = guide_folder(tmp_path, models)
    target = tmp_path / "live"
    deploy_files(folder / FIXED_ZIP, folder / FIXED_PKL, target)
    files = resolve_model(bundle=target)
    assert (files.model, files.vecnorm, files.bundle) == (
        target / LIVE_ZIP,
        target / LIVE_PKL,
        None,
    )
    assert not (target / BACKUP_ZIP).exists()  # nothing was live before: nothing to back up

    (target / LIVE_PKL).write_bytes(b"half of an interrupted deploy")
    with pytest.raises(ModelArgsError, match=f"{LIVE_PKL} does not match"):
        resolve_model(bundle=target)
    # named as the guide serves them (--model/--vecnorm), the pair is refused the same way
    live_pair = ModelSource(model=target / LIVE_ZIP, vecnorm=target / LIVE_PKL)
    with pytest.raises(ConfigError, match=f"{LIVE_PKL} does not match"):
        live_pair.resolved()
    with pytest.raises(PolicyLoadError, match=f"{LIVE_PKL} does not match"):
        load_policy(live_pair)
    # files the pointer does not name (the backups, say) are not its business
    other = ModelSource(model=target / LIVE_ZIP, vecnorm=folder / FIXED_PKL)
    assert other.resolved() == other


def test_second_deploy_keeps_the_older_backup_and_rollback_restores_the_backup(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    folder = guide_folder(tmp_path, models)
    first_live = (folder / LIVE_ZIP).read_bytes()
    deploy_files(folder / FIXED_ZIP, folder / FIXED_PKL, folder)
    # A second retrained model (here: the old one again, renamed) on top.
    other = tmp_path / "second"
    other.mkdir()
    shutil.copy(models["old"] / "model.zip", other / FIXED_ZIP)
    shutil.copy(models["old"] / "vecnormalize.pkl", other / FIXED_PKL)
    write_validation_record(other / FIXED_ZIP, other / FIXED_PKL, {"passed": True})
    deploy_files(other / FIXED_ZIP, other / FIXED_PKL, folder)

    kept = list((folder / BACKUPS_DIR).glob(f"*/{BACKUP_ZIP}"))
    assert [p.read_bytes() for p in kept] == [first_live]  # the first backup was not lost
    new_zip = (models["new"] / "model.zip").read_bytes()
    assert (folder / BACKUP_ZIP).read_bytes() == new_zip

    pointer = rollback(folder)
    assert (folder / LIVE_ZIP).read_bytes() == new_zip
    assert resolve_model(bundle=folder).model == folder / LIVE_ZIP  # hashes match again
    assert pointer["rolled_back_from"].startswith("NQ_o1_fixed-")


def test_rollback_to_a_forced_two_file_deploy_records_forced(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    folder = guide_folder(tmp_path, models, validated=False)
    write_validation_record(folder / FIXED_ZIP, folder / FIXED_PKL, {"passed": False})
    assert deploy_files(folder / FIXED_ZIP, folder / FIXED_PKL, folder, force=True)["forced"]
    other = tmp_path / "second"
    other.mkdir()
    shutil.copy(models["old"] / "model.zip", other / FIXED_ZIP)
    shutil.copy(models["old"] / "vecnormalize.pkl", other / FIXED_PKL)
    write_validation_record(other / FIXED_ZIP, other / FIXED_PKL, {"passed": True})
    assert deploy_files(other / FIXED_ZIP, other / FIXED_PKL, folder)["forced"] is False

    pointer = rollback(folder)  # the forced, unvalidated pair is live again
    assert pointer["forced"] is True
    assert json.loads((folder / POINTER_FILE).read_text())["forced"] is True

    # One earlier pair is all the guide's form keeps: a second rollback would put the
    # same files live under another name (and as not forced); it is refused instead.
    before = (folder / POINTER_FILE).read_text()
    with pytest.raises(DeployError, match="already the live pair"):
        rollback(folder)
    assert (folder / POINTER_FILE).read_text() == before


def test_validate_write_card_records_the_verdict_that_deploy_requires(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    folder = guide_folder(tmp_path, models, validated=False)
    args = guide_args(folder)
    report = ["--report-dir", str(tmp_path / "report")]
    result = CliRunner().invoke(
        cli, ["validate", *args, "--episodes", "2", "--episode-bars", "60", "--write-card", *report]
    )
    assert result.exit_code in (0, 3), result.output
    record = json.loads(validation_record_path(folder / FIXED_ZIP).read_text())
    assert record["validation"]["passed"] is (result.exit_code == 0)
    assert record["model_sha256"] == sha256_file(folder / FIXED_ZIP)

    write_validation_record(folder / FIXED_ZIP, folder / FIXED_PKL, {"passed": False})
    deployed = CliRunner().invoke(cli, ["deploy", *args, "--target", str(folder)])
    assert deployed.exit_code == 1 and "failed validation" in deployed.output
    assert (folder / LIVE_ZIP).read_bytes() == (models["old"] / "model.zip").read_bytes()
    assert not (folder / POINTER_FILE).exists() and not (folder / BACKUP_ZIP).exists()

    write_validation_record(folder / FIXED_ZIP, folder / FIXED_PKL, {"passed": True})
    (folder / FIXED_PKL).write_bytes((folder / FIXED_PKL).read_bytes() + b"\0")
    with pytest.raises(DeployError, match="changed after its validation"):
        deploy_files(folder / FIXED_ZIP, folder / FIXED_PKL, folder)


def test_a_225_value_model_is_refused_even_with_force(tmp_path: Path) -> None:
    zip_path, pkl_path = tmp_path / FIXED_ZIP, tmp_path / FIXED_PKL
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("data", json.dumps({"observation_space": {"_shape": [225]}}))
    pkl_path.write_bytes(b"statistics")
    with pytest.raises(DeployError, match="observation size 225"):
        deploy_files(zip_path, pkl_path, tmp_path / "live", force=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bundle": "b", "model": FIXED_ZIP}, "not both"),
        ({"model": FIXED_ZIP}, "--model and --vecnorm go together"),
        ({"vecnorm": FIXED_PKL}, "--model and --vecnorm go together"),
        ({"model": "absent.zip", "vecnorm": FIXED_PKL}, "--model absent.zip does not exist"),
        ({"bundle": FIXED_ZIP}, "is a file, not a bundle folder"),
        ({"bundle": "absent"}, "does not exist"),
        ({"bundle": "."}, "neither a model bundle"),
        ({}, "name a model"),
    ],
)
def test_model_arguments_refused_with_what_to_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kwargs: dict, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / FIXED_ZIP).write_bytes(b"zip")
    (tmp_path / FIXED_PKL).write_bytes(b"pkl")
    with pytest.raises(ModelArgsError, match=message):
        resolve_model(**kwargs)


@pytest.mark.parametrize("command", ["serve", "reload", "replay", "validate", "deploy"])
def test_every_model_command_takes_the_same_model_options(command: str) -> None:
    params = {p.name for p in cli.commands[command].params}
    assert {"bundle", "model", "vecnorm"} <= params


def test_bundle_deploy_target_resolves_to_its_live_bundle_and_card(tmp_path: Path) -> None:
    from train.deploy import deploy

    target = tmp_path / "live"
    deploy(make_fake_bundle(tmp_path / "a", "A"), target)
    files = resolve_model(bundle=target)
    assert files.target == target and files.bundle is not None
    assert files.bundle.parent == target / "versions"
    assert json.loads(files.card_path.read_text())["version"] == "A"  # what replay reads


def fake_pair(folder: Path, tag: str) -> tuple[Path, Path]:
    """A validated pair whose zip declares 228 observations (deploy never unpickles)."""
    folder.mkdir(parents=True, exist_ok=True)
    zip_path, pkl_path = folder / FIXED_ZIP, folder / FIXED_PKL
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("data", json.dumps({"observation_space": {"_shape": [228]}}))
        archive.writestr("tag", tag * 1000)
    pkl_path.write_bytes(tag.encode() * 1000)
    write_validation_record(zip_path, pkl_path, {"passed": True})
    return zip_path, pkl_path


@pytest.mark.parametrize(
    ("step", "served"),
    [
        ("staged", "old"),
        ("copy_backups", "old"),
        ("backed_up", "old"),
        ("switched_zip", None),  # new zip, old statistics: refused, never served mixed
        ("switched_pkl", None),
        ("pointer_written", None),
    ],
)
def test_two_file_deploy_killed_midway_is_never_served_mixed(
    tmp_path: Path, step: str, served: str | None
) -> None:
    import os
    import subprocess
    import sys
    import time

    from test_cli_entry import ROOT

    from train.deploy import PAUSE_ENV

    target = tmp_path / "bridge"
    deploy_files(*fake_pair(tmp_path / "first", "A"), target)
    deploy_files(*fake_pair(tmp_path / "second", "B"), target)  # a backup pair exists now
    old = (target / LIVE_ZIP).read_bytes()
    new_zip, new_pkl = fake_pair(tmp_path / "third", "C")
    args = ["deploy", "--model", str(new_zip), "--vecnorm", str(new_pkl), "--target", str(target)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ai_trading_bridge", *args],
        cwd=ROOT,
        env={**os.environ, PAUSE_ENV: step},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline, line = time.monotonic() + 60, ""
        while "deploy paused at" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
        assert f"deploy paused at {step}" in line, f"deploy never reached {step}"
    finally:
        proc.kill()  # mid-deploy: SIGKILL, TerminateProcess on Windows; no clean-up runs
        proc.wait()
        proc.stderr.close()

    if served == "old":
        assert resolve_model(bundle=target).model.read_bytes() == old
    else:
        with pytest.raises(ModelArgsError, match="does not match"):
            resolve_model(bundle=target)
    deploy_files(new_zip, new_pkl, target)  # the next deploy cleans up and succeeds
    assert resolve_model(bundle=target).model.read_bytes() == new_zip.read_bytes()
    assert not list(target.rglob(".staging-*"))


def test_deploy_carries_the_plain_format_files_so_the_target_is_served_without_pickles(
    tmp_path: Path,
) -> None:
    from bridge.plain import PLAIN_NORMALIZER, PLAIN_POLICY
    from train.deploy import deploy

    bundle = make_fake_bundle(tmp_path / "a", "A")
    (bundle / PLAIN_POLICY).write_bytes(b"weights")
    (bundle / PLAIN_NORMALIZER).write_bytes(b"statistics")
    target = tmp_path / "live"
    deploy(bundle, target)
    live = resolve_model(bundle=target).bundle
    assert live is not None
    assert (live / PLAIN_POLICY).read_bytes() == b"weights"
    assert (live / PLAIN_NORMALIZER).read_bytes() == b"statistics"
    deploy(make_fake_bundle(tmp_path / "b", "B"), target)  # one without them backs A up whole
    backup = next((target / BACKUPS_DIR).iterdir())
    assert (backup / PLAIN_POLICY).read_bytes() == b"weights"


def test_deploying_two_files_that_lost_held_out_records_the_loss(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    folder = guide_folder(tmp_path, models, validated=False)
    trading = {
        "trades": 40,
        "net_pnl_r": -9.5,
        "net_pnl_usd": -2000.0,
        "mean_r_per_trade": -0.24,
        "ci": {"mean_r_per_trade": [-0.4, -0.05]},
    }
    write_validation_record(
        folder / FIXED_ZIP, folder / FIXED_PKL, {"passed": True, "trading": trading}
    )
    pointer = deploy_files(folder / FIXED_ZIP, folder / FIXED_PKL, tmp_path / "live")
    assert "lost -9.5 R" in pointer["held_out_loss"] and "40 trades" in pointer["held_out_loss"]
