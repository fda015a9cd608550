"""Bundles served without unpickling: plain numpy files checked equal to SB3."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
from bridge_helpers import random_observations, train_bundle
from click.testing import CliRunner

import bridge.policy as policy_module
from ai_trading_bridge import cli
from bridge.config import ModelSource
from bridge.plain import PlainFormatError, check_plain, export_plain, has_plain
from bridge.policy import load_model, load_policy
from env.mask import FLAT_MASK, IN_POSITION_MASK

pytest_plugins = ["bridge_helpers"]


@pytest.fixture(scope="module")
def plain_bundle(tmp_path_factory):
    folder = train_bundle(tmp_path_factory.mktemp("plain") / "b", seed=3)
    result = CliRunner().invoke(cli, ["export-plain", str(folder)])
    assert result.exit_code == 0, result.output
    return folder


def test_plain_bundle_is_served_without_unpickling(plain_bundle, monkeypatch) -> None:
    pickled = load_policy(
        ModelSource(model=plain_bundle / "model.zip", vecnorm=plain_bundle / "vecnormalize.pkl")
    )

    def forbidden(*args, **kwargs):
        raise AssertionError("a plain bundle must not unpickle anything")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(policy_module, "load_model", forbidden)
    plain = load_policy(ModelSource(bundle=plain_bundle))
    assert plain.model is None and plain.sha256 == pickled.sha256  # same model.zip
    for i, raw in enumerate(random_observations(200, seed=5)):
        mask = (FLAT_MASK if i % 2 else IN_POSITION_MASK).tolist()
        a, b = plain.normalizer(raw), pickled.normalizer(raw)
        assert a.tobytes() == b.tobytes()
        assert plain.decide(a, mask) == pickled.decide(b, mask)


def test_the_guides_two_files_still_load_the_pickles(plain_bundle) -> None:
    policy = load_policy(
        ModelSource(model=plain_bundle / "model.zip", vecnorm=plain_bundle / "vecnormalize.pkl")
    )
    assert policy.model is not None  # SB3 loaded it


def test_export_refuses_statistics_that_do_not_match(plain_bundle, tmp_path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(plain_bundle, folder)
    model, _ = load_model(folder / "model.zip")
    with open(folder / "vecnormalize.pkl", "rb") as f:
        vecnorm = pickle.load(f)
    export_plain(model, vecnorm, folder)
    check_plain(folder, model, vecnorm)
    vecnorm.obs_rms.mean = vecnorm.obs_rms.mean + 0.5  # statistics of another run
    with pytest.raises(PlainFormatError, match="normalize_obs"):
        check_plain(folder, model, vecnorm)


def test_corrupt_plain_files_are_a_clear_load_error(plain_bundle, tmp_path) -> None:
    folder = tmp_path / "bad"
    shutil.copytree(plain_bundle, folder)
    with np.load(folder / "policy.npz") as data:
        arrays = dict(data)
    arrays["w0"] = arrays["w0"][:10]
    np.savez(folder / "policy.npz", **arrays)
    assert has_plain(folder)
    with pytest.raises(policy_module.PolicyLoadError, match="layer shapes"):
        load_policy(ModelSource(bundle=folder))


def test_bundled_demo_model_carries_its_plain_files() -> None:
    policy = load_policy(ModelSource.from_options())
    assert policy.model is None  # served from policy.npz / normalizer.npz
