"""Model loading and the fast path: real SB3 models saved and loaded.

- the fast path agrees with ``MaskablePPO.predict(obs, action_masks=mask, deterministic=True)``
  on thousands of observations, and the normaliser with ``VecNormalize.normalize_obs``;
- a model trained outside the project with the guide's own code and file names is served;
- a 225-input model is refused with the guide's troubleshooting advice;
- a plain PPO model is served with the mask applied to its logits.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from bridge_helpers import (
    Client,
    bar_message,
    history_message,
    random_observations,
    running_server,
    serve_config,
    tiny_bars,
    train_bundle,
)
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bridge.config import DEFAULT_BUNDLE, ConfigError, ModelSource
from bridge.policy import (
    NumpyActor,
    PolicyLoadError,
    TorchActor,
    agrees_with_reference,
    load_policy,
    masked_decision,
)
from env.config import FEATURE_VERSION, TOTAL_OBSERVATION_SIZE, WARMUP_BARS
from env.mask import FLAT_MASK, IN_POSITION_MASK

pytest_plugins = ["bridge_helpers"]

ROOT = Path(__file__).resolve().parent.parent
MASKS = (FLAT_MASK, IN_POSITION_MASK)


# -- the guide's own training code, outside this project -------------------------------


class GuideTradingEnv(gym.Env):
    """A small env written the way the retraining guide's section 1 writes one: 220
    market values, the guide's ``_get_position_features`` (8 values), its
    ``action_masks`` and its -10 invalid-action penalty. Nothing from this project."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Box(
            low=-np.inf, high=np.inf, shape=(228,), dtype=np.float32
        )
        self.action_space = spaces.Discrete(6)
        self.rng = np.random.default_rng(0)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.position = 0
        self.current_bar = 0
        self.entry_bar = 0
        self.current_price = 21000.0
        self.current_atr = 5.0
        self.entry_price = self.sl_price = self.tp_price = 0.0
        return self._get_observation(), {}

    def action_masks(self):
        if self.position == 0:
            return np.array([1, 1, 1, 0, 0, 0], dtype=np.int8)
        return np.array([1, 1, 1, 1, 1, 1], dtype=np.int8)

    def _get_position_features(self):
        position_value = float(self.position)
        entry_price_ratio = self.entry_price / self.current_price if self.position != 0 else 1.0
        sl_distance_atr = (
            abs(self.current_price - self.sl_price) / self.current_atr
            if self.position != 0
            else 0.0
        )
        tp_distance_atr = (
            abs(self.tp_price - self.current_price) / self.current_atr
            if self.position != 0
            else 0.0
        )
        time_in_position = float(self.current_bar - self.entry_bar) if self.position != 0 else 0.0
        can_enter = 1.0 if self.position == 0 else 0.0
        can_manage = 1.0 if self.position != 0 else 0.0
        has_position = 1.0 if self.position != 0 else 0.0
        return np.array(
            [
                position_value,
                entry_price_ratio,
                sl_distance_atr,
                tp_distance_atr,
                time_in_position,
                can_enter,
                can_manage,
                has_position,
            ],
            dtype=np.float32,
        )

    def _get_observation(self):
        market = self.rng.normal(size=220).astype(np.float32)
        return np.concatenate([market, self._get_position_features()])

    def step(self, action):
        valid_actions = self.action_masks()
        if valid_actions[action] == 0:
            info = {"invalid_action": True, "action": action, "position": self.position}
            return self._get_observation(), -10.0, False, False, info
        self.current_bar += 1
        self.current_price += float(self.rng.normal())
        if action in (1, 2) and self.position == 0:
            self.position = 1 if action == 1 else -1
            self.entry_price = self.current_price
            self.entry_bar = self.current_bar
            self.sl_price = self.current_price - self.position * 5.0
            self.tp_price = self.current_price + self.position * 10.0
        elif self.position != 0 and self.rng.random() < 0.1:
            self.position = 0
        done = self.current_bar >= 50
        return self._get_observation(), 0.01 if action == 0 else 0.0, done, False, {}


@pytest.fixture(scope="module")
def guide_files(tmp_path_factory) -> tuple[Path, Path]:
    """The guide's train.py, step by step (section 2), with a tiny budget."""
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.wrappers import ActionMasker
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    folder = tmp_path_factory.mktemp("guide")

    def make_env():
        env = GuideTradingEnv()
        return env

    env = make_env()

    def mask_fn(env):
        return env.action_masks()

    env = ActionMasker(env, mask_fn)
    env = DummyVecEnv([lambda: env])
    env = VecNormalize(env, norm_obs=True, norm_reward=False, clip_obs=10.0, clip_reward=10.0)
    model = MaskablePPO(
        policy="MlpPolicy",
        env=env,
        learning_rate=3e-4,
        n_steps=64,
        batch_size=64,
        n_epochs=1,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        ent_coef=0.01,
        verbose=0,
        seed=0,
    )
    model.learn(total_timesteps=128, log_interval=10, reset_num_timesteps=True)
    model.save(folder / "NQ_o1_fixed.zip")
    env.save(str(folder / "phase2_position_mgmt_final_vecnorm_fixed.pkl"))
    return folder / "NQ_o1_fixed.zip", folder / "phase2_position_mgmt_final_vecnorm_fixed.pkl"


@pytest.fixture(scope="module")
def legacy_files(tmp_path_factory) -> tuple[Path, Path]:
    """A model and statistics of the old 225-value observation."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    class OldEnv(GuideTradingEnv):
        def __init__(self) -> None:
            super().__init__()
            self.observation_space = spaces.Box(
                low=-np.inf, high=np.inf, shape=(225,), dtype=np.float32
            )

    folder = tmp_path_factory.mktemp("legacy")
    env = VecNormalize(DummyVecEnv([OldEnv]))
    MaskablePPO("MlpPolicy", env, n_steps=64, batch_size=64, device="cpu").save(
        folder / "NQ_o1.zip"
    )
    env.save(str(folder / "phase2_position_mgmt_final_vecnorm.pkl"))
    return folder / "NQ_o1.zip", folder / "phase2_position_mgmt_final_vecnorm.pkl"


@pytest.fixture(scope="module")
def ppo_policy(tmp_path_factory):
    folder = train_bundle(tmp_path_factory.mktemp("ppo") / "ppo", seed=1, maskable=False)
    return load_policy(ModelSource(bundle=folder))


# -- agreement with SB3 ----------------------------------------------------------------


def test_fast_path_is_the_numpy_copy_for_mlp_policies(tiny_policy, ppo_policy) -> None:
    assert isinstance(tiny_policy.actor, NumpyActor) and tiny_policy.algorithm == "MaskablePPO"
    assert isinstance(ppo_policy.actor, NumpyActor) and ppo_policy.algorithm == "PPO"


def test_fast_path_agrees_with_maskable_predict_on_thousands_of_observations(tiny_policy) -> None:
    observations = random_observations(3000, seed=1)
    disagreements = [
        i
        for i, obs in enumerate(observations)
        if not agrees_with_reference(tiny_policy, tiny_policy.normalizer(obs), MASKS[i % 2].copy())
    ]
    assert disagreements == []


def test_fast_path_picks_exactly_sb3s_action_away_from_ties(tiny_policy) -> None:
    observations = random_observations(1000, seed=2)
    same = 0
    for i, raw in enumerate(observations):
        obs, mask = tiny_policy.normalizer(raw), MASKS[i % 2].copy()
        action, probs = tiny_policy.decide(obs, mask.tolist())
        same += action == tiny_policy.reference_action(obs, mask)
        assert mask[action] == 1 and sum(probs) == pytest.approx(1.0)
        assert all(p == 0.0 for p, valid in zip(probs, mask) if not valid)
    assert same == len(observations)


def test_masked_probabilities_match_sb3s_distribution(tiny_policy) -> None:
    import torch

    for i, raw in enumerate(random_observations(50, seed=3)):
        obs, mask = tiny_policy.normalizer(raw), MASKS[i % 2].copy()
        _, probs = tiny_policy.decide(obs, mask.tolist())
        obs_tensor, _ = tiny_policy.model.policy.obs_to_tensor(obs)
        with torch.no_grad():
            distribution = tiny_policy.model.policy.get_distribution(obs_tensor, action_masks=mask)
        expected = distribution.distribution.probs[0].numpy()
        np.testing.assert_allclose(probs, expected, atol=1e-6)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float32, 228, elements=st.floats(-1e4, 1e4, width=32)))
def test_normaliser_is_vecnormalize_normalize_obs_bit_for_bit(tiny_bundle, obs) -> None:
    policy = _policy_for(tiny_bundle)
    with open(tiny_bundle / "vecnormalize.pkl", "rb") as f:
        vecnorm = pickle.load(f)
    expected = vecnorm.normalize_obs(obs)
    actual = policy.normalizer(obs)
    assert actual.dtype == expected.dtype == np.float32
    np.testing.assert_array_equal(actual, expected)


_POLICIES: dict[Path, object] = {}


def _policy_for(bundle: Path):
    if bundle not in _POLICIES:
        _POLICIES[bundle] = load_policy(ModelSource(bundle=bundle))
    return _POLICIES[bundle]


def test_torch_path_gives_the_same_logits_as_the_numpy_copy(tiny_policy) -> None:
    torch_actor = TorchActor(tiny_policy.model.policy)
    for raw in random_observations(200, seed=4):
        obs = tiny_policy.normalizer(raw)
        np.testing.assert_allclose(tiny_policy.actor(obs), torch_actor(obs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activations", [("Tanh", "Tanh"), ("ReLU", ""), ("", "ReLU")])
def test_numpy_actor_computes_each_layer_as_written(activations) -> None:
    """Any depth and activation (none included), against the layers computed one by one
    in float64; each call returns its own array."""
    rng = np.random.default_rng(3)
    sizes = [TOTAL_OBSERVATION_SIZE, 32, 16, 6]
    names = [*activations, ""]
    layers = [
        (
            (rng.normal(size=(n_in, n_out)) / np.sqrt(n_in)).astype(np.float32),
            rng.normal(size=n_out).astype(np.float32),
            NumpyActor._ACTIVATIONS.get(name),
        )
        for n_in, n_out, name in zip(sizes[:-1], sizes[1:], names)
    ]
    actor = NumpyActor(layers)
    functions = {"Tanh": np.tanh, "ReLU": lambda v: np.maximum(v, 0.0), "": lambda v: v}
    observations = rng.normal(size=(50, TOTAL_OBSERVATION_SIZE)).astype(np.float32)
    for obs in observations:
        expected = obs.astype(np.float64)
        for (weight, bias, _), name in zip(layers, names):
            expected = functions[name](expected @ weight.astype(np.float64) + bias)
        logits = actor(obs)
        assert logits.dtype == np.float32 and logits.shape == (6,)
        np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    kept = actor(observations[0])
    before = kept.copy()
    actor(observations[1])  # the shared hidden buffers are not the returned logits
    assert np.array_equal(kept, before)


def test_masked_decision_never_picks_a_masked_action() -> None:
    action, probs = masked_decision(np.array([0, 0, 0, 9, 9, 9], np.float32), [1, 1, 1, 0, 0, 0])
    assert action == 0 and probs[3:] == [0.0, 0.0, 0.0] and sum(probs) == pytest.approx(1.0)


# -- models from outside the project ----------------------------------------------------


def test_model_trained_with_the_guides_code_and_file_names_is_served(guide_files, tmp_path) -> None:
    model, vecnorm = guide_files
    source = ModelSource(model=model, vecnorm=vecnorm)
    policy = load_policy(source)
    assert policy.algorithm == "MaskablePPO" and policy.card == {}
    assert policy.version.startswith("NQ_o1_fixed.zip@") and len(policy.version) == 16 + 12
    bars = tiny_bars()
    with running_server(serve_config(model.parent, tmp_path, model=source), policy) as server:
        client = Client(server.endpoint)
        hello = client.ask({"v": 1, "type": "hello", "client": "g", "instrument": "NQ 12-25"})
        assert hello["model"]["version"] == policy.version
        client.ask(history_message(bars, 0, WARMUP_BARS))
        with open(vecnorm, "rb") as f:
            statistics = pickle.load(f)
        for k, i in enumerate(range(WARMUP_BARS, WARMUP_BARS + 60)):
            reply = client.ask(bar_message(bars, i, seq=k, debug=True))
            obs = np.array(reply["debug"]["obs"], dtype=np.float32)
            normalized = statistics.normalize_obs(obs)
            np.testing.assert_array_equal(reply["debug"]["obs_normalized"], normalized)
            expected, _ = policy.model.predict(
                normalized, action_masks=FLAT_MASK.copy(), deterministic=True
            )
            assert reply["action"] == int(expected)
        client.close()


def test_225_input_model_is_refused_with_the_retraining_advice(legacy_files) -> None:
    model, vecnorm = legacy_files
    with pytest.raises(PolicyLoadError) as error:
        load_policy(ModelSource(model=model, vecnorm=vecnorm))
    message = str(error.value)
    assert "225" in message and "8 position features" in message
    assert "retrained" in message and "Observation shape mismatch" in message


def test_serve_command_exits_non_zero_on_a_225_input_model(legacy_files, tmp_path) -> None:
    model, vecnorm = legacy_files
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ai_trading_bridge",
            "serve",
            "--bind",
            "tcp://127.0.0.1:*",
            "--control",
            "none",
            "--no-journal",
            "--model",
            str(model),
            "--vecnorm",
            str(vecnorm),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "225" in result.stderr and "retrained" in result.stderr


def test_statistics_of_another_size_are_refused(guide_files, legacy_files) -> None:
    with pytest.raises(PolicyLoadError, match="225"):
        load_policy(ModelSource(model=guide_files[0], vecnorm=legacy_files[1]))


def test_plain_ppo_model_is_served_with_the_mask_on_its_logits(ppo_policy, tmp_path) -> None:
    bars = tiny_bars()
    bundle = ppo_policy.source.bundle
    with running_server(serve_config(bundle, tmp_path), ppo_policy) as server:
        client = Client(server.endpoint)
        client.ask(history_message(bars, 0, WARMUP_BARS))
        replies = [
            client.ask(bar_message(bars, i, seq=i)) for i in range(WARMUP_BARS, WARMUP_BARS + 300)
        ]
        client.close()
    assert all(r["ok"] and r["action"] in (0, 1, 2) for r in replies)  # flat: never 3, 4, 5
    for i, raw in enumerate(random_observations(500, seed=5)):
        obs, mask = ppo_policy.normalizer(raw), MASKS[i % 2].copy()
        action, _ = ppo_policy.decide(obs, mask.tolist())
        assert mask[action] == 1
        assert agrees_with_reference(ppo_policy, obs, mask)


# -- refusals with a message a trader can act on ---------------------------------------


def test_card_with_other_feature_version_is_refused(tiny_bundle, tmp_path) -> None:
    bundle = tmp_path / "other"
    shutil.copytree(tiny_bundle, bundle)
    card = json.loads((bundle / "model.json").read_text())
    card["observation"]["feature_version"] = "prices-v0"
    (bundle / "model.json").write_text(json.dumps(card))
    with pytest.raises(PolicyLoadError, match=f"prices-v0.*{FEATURE_VERSION}"):
        load_policy(ModelSource(bundle=bundle))


def test_card_with_other_format_or_size_is_refused(tiny_bundle, tmp_path) -> None:
    for key, value, expected in (
        ("format", "other/v9", "format"),
        ("observation", {"size": 225}, "225"),
    ):
        bundle = tmp_path / key
        shutil.copytree(tiny_bundle, bundle)
        card = json.loads((bundle / "model.json").read_text())
        card[key] = value
        (bundle / "model.json").write_text(json.dumps(card))
        with pytest.raises(PolicyLoadError, match=expected):
            load_policy(ModelSource(bundle=bundle))


def test_card_without_optional_keys_uses_defaults(tiny_bundle, tmp_path) -> None:
    bundle = tmp_path / "minimal"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / "model.json").write_text("{}")
    policy = load_policy(ModelSource(bundle=bundle))
    assert policy.version.startswith("model.zip@") and policy.env_config.instrument.symbol == "NQ"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (lambda tmp, b: ModelSource(bundle=tmp / "missing"), "does not exist"),
        (
            lambda tmp, b: ModelSource(model=tmp / "nope.zip", vecnorm=b / "vecnormalize.pkl"),
            "not found",
        ),
        (
            lambda tmp, b: ModelSource(model=b / "model.json", vecnorm=b / "vecnormalize.pkl"),
            "not a stable-baselines3 model zip",
        ),
        (
            lambda tmp, b: ModelSource(model=b / "model.zip", vecnorm=b / "model.json"),
            "cannot read VecNormalize",
        ),
    ],
)
def test_unusable_files_are_refused_with_a_clear_message(
    tiny_bundle, tmp_path, source, expected
) -> None:
    with pytest.raises(PolicyLoadError, match=expected):
        load_policy(source(tmp_path, tiny_bundle))


def test_model_and_vecnorm_go_together() -> None:
    with pytest.raises(ConfigError, match="--vecnorm"):
        ModelSource.from_options(model="NQ_o1_fixed.zip")
    with pytest.raises(ConfigError, match="not both"):
        ModelSource(bundle=Path("x"), model=Path("y.zip"), vecnorm=Path("z.pkl"))


def test_missing_default_bundle_says_how_to_serve_another(monkeypatch, tmp_path) -> None:
    import bridge.policy

    monkeypatch.setattr(bridge.policy, "DEFAULT_BUNDLE", tmp_path / "default_model")
    with pytest.raises(PolicyLoadError, match=r"demo model is not installed.*--bundle"):
        load_policy(ModelSource(bundle=tmp_path / "default_model"))


def test_bundled_demo_model_loads_when_present() -> None:
    if not (DEFAULT_BUNDLE / "model.zip").exists():
        pytest.skip("the training engineer has not landed bridge/default_model yet")
    policy = load_policy(ModelSource.from_options())
    assert policy.info()["obs_size"] == 228


def test_serving_a_deploy_target_loads_the_bundle_its_pointer_names(tmp_path: Path) -> None:
    from bridge.config import DEFAULT_BUNDLE, ModelSource
    from bridge.policy import PolicyLoadError, load_policy
    from train.deploy import POINTER_FILE, deploy, read_pointer

    target = tmp_path / "live"
    deploy(DEFAULT_BUNDLE, target, force=True)  # the demo has no passing validation
    policy = load_policy(ModelSource(bundle=target))
    card = json.loads((DEFAULT_BUNDLE / "model.json").read_text())
    assert policy.version == card["version"]
    assert policy.source.bundle == target  # a reload re-reads the pointer
    pointer = read_pointer(target)
    assert pointer is not None and (target / pointer["path"] / "model.zip").is_file()

    (target / POINTER_FILE).write_text("{not json")
    with pytest.raises(PolicyLoadError, match="not a readable deploy pointer"):
        load_policy(ModelSource(bundle=target))
