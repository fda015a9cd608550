"""Training: config handling, the time split, and a tiny end-to-end run of `train`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ai_trading_bridge import cli
from env.config import WARMUP_BARS
from env.synthetic import generate_bars
from env.trading_env import TradingEnv
from train import bundle as bundle_io
from train.config import TrainConfig, load_config_file
from train.training import rounded_budget, split_bars


def test_config_defaults_are_the_guides_hyperparameters() -> None:
    c = TrainConfig()
    assert (c.learning_rate, c.n_steps, c.batch_size, c.n_epochs) == (3e-4, 2048, 64, 10)
    assert (c.gamma, c.gae_lambda, c.clip_range, c.ent_coef) == (0.99, 0.95, 0.2, 0.01)
    assert c.timesteps == 5_000_000 and c.holdout_fraction == 0.2
    assert c.n_steps_per_env * c.n_envs == 2048


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("c.json", '{"timesteps": 1000, "ent_coef": 0.02}'),
        ("c.toml", "timesteps = 1000\nent_coef = 0.02\n"),
    ],
)
def test_config_file_json_or_toml_overrides_defaults(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    config = TrainConfig.from_mapping(load_config_file(tmp_path / name))
    assert config.timesteps == 1000 and config.ent_coef == 0.02 and config.n_epochs == 10


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"learning_rat": 1e-3}, "unknown training config keys"),
        ({"n_steps": 1000, "n_envs": 3}, "multiple of n_envs"),
        ({"timesteps": "many"}, "must be int"),
        ({"reward": "greedy"}, "reward must be one of"),
        ({"holdout_fraction": 1.0}, "holdout_fraction"),
    ],
)
def test_config_bad_values_rejected_with_the_key(values: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_mapping(values)


def test_split_holdout_first_decision_is_the_split_bar_and_never_trained_on() -> None:
    bars = generate_bars(n_days=2, seed=3)
    data = split_bars(bars, 0.2, episode_bars=100)
    holdout_env = TradingEnv(data.holdout)
    holdout_env.reset(options={"start": WARMUP_BARS - 1})  # the earliest possible decision
    assert data.holdout.time[holdout_env.t] == bars.time[data.split]
    assert len(data.train) == data.split and data.train.time[-1] < bars.time[data.split]
    # The training env's features never see a held-out bar.
    assert np.array_equal(data.train.close, bars.close[: data.split])


def test_split_too_little_data_rejected() -> None:
    with pytest.raises(ValueError, match="shorter than one episode"):
        split_bars(generate_bars(n_days=1, seed=3), 0.2, episode_bars=390)


def test_train_cli_smoke_writes_a_bundle_plain_sb3_can_load(tmp_path: Path) -> None:
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    out = tmp_path / "bundle"
    args = [
        "train",
        "--out",
        str(out),
        "--timesteps",
        "1024",
        "--n-steps",
        "256",
        "--n-envs",
        "2",
        "--episode-bars",
        "100",
        "--eval-every",
        "512",
        "--eval-episodes",
        "4",
        "--checkpoint-every",
        "512",
        "--validate-episodes",
        "8",
        "--no-progress",
        "--reward",
        "seed",
        "--seed",
        "3",
        "--name",
        "SMOKE",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 3), result.output

    card = json.loads((out / "model.json").read_text())
    assert result.exit_code == (0 if card["validation"]["passed"] else 3)
    assert set(bundle_io.REQUIRED_CARD_KEYS) <= set(card)
    assert card["format"] == "ai-trading-bridge/model-card-v1"
    assert card["version"].startswith("SMOKE-")
    assert card["observation"]["size"] == 228 and card["actions"][3] == "MOVE_TO_BE"
    assert card["env"]["reward"] == "seed" and card["env"]["episode_bars"] == 100
    assert card["hyperparameters"]["n_steps_per_env"] == 128 and card["seed"] == 3
    assert card["timesteps"] >= 1024 and "--timesteps 1024" in card["command"]
    assert card["data"]["train_bars"] < card["data"]["n_bars"]
    assert card["validation"] is not None and card["validation"]["episodes"] == 8
    assert card["files"]["model.zip"] == bundle_io.sha256_file(out / "model.zip")
    assert card["train_config"]["device"] == "auto"  # asked for; the device that trained:
    assert card["device"] == ("cuda" if torch.cuda.is_available() else "cpu")

    model = MaskablePPO.load(str(out / "model.zip"))
    assert model.observation_space.shape == (228,) and model.action_space.n == 6
    venv = VecNormalize.load(str(out / "vecnormalize.pkl"), DummyVecEnv([TradingEnv]))
    assert venv.obs_rms.mean.shape == (228,) and venv.clip_obs == 10.0 and not venv.norm_reward
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "model_1024_steps.zip",
        "model_512_steps.zip",
        "model_vecnormalize_1024_steps.pkl",
        "model_vecnormalize_512_steps.pkl",
    ]

    # --resume continues from a checkpoint up to the new total.
    resumed = tmp_path / "resumed"
    args2 = [
        "train",
        "--out",
        str(resumed),
        "--resume",
        str(out / "checkpoints" / "model_512_steps.zip"),
        "--timesteps",
        "1536",
        "--n-steps",
        "256",
        "--n-envs",
        "2",
        "--episode-bars",
        "100",
        "--eval-every",
        "0",
        "--checkpoint-every",
        "0",
        "--validate-episodes",
        "0",
        "--no-progress",
    ]
    result = CliRunner().invoke(cli, args2)
    assert result.exit_code == 0, result.output
    assert json.loads((resumed / "model.json").read_text())["timesteps"] == 1536


def test_train_subproc_vec_env_gets_masks_from_the_env_itself(tmp_path: Path) -> None:
    """SubprocVecEnv cannot use ActionMasker; MaskablePPO must reach env.action_masks()."""
    out = tmp_path / "sub"
    args = [
        "train",
        "--out",
        str(out),
        "--vec",
        "subproc",
        "--n-envs",
        "2",
        "--timesteps",
        "512",
        "--n-steps",
        "256",
        "--episode-bars",
        "100",
        "--eval-every",
        "0",
        "--checkpoint-every",
        "0",
        "--validate-episodes",
        "0",
        "--no-progress",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "model.json").read_text())
    assert card["train_config"]["vec"] == "subproc" and card["timesteps"] == 512


@pytest.mark.parametrize(
    ("steps", "n_steps", "n_envs", "expected"),
    [(300, 256, 2, 512), (512, 256, 2, 512), (513, 256, 2, 768), (5_000_000, 2048, 8, 5_001_216)],
)
def test_rounded_budget_is_whole_rollouts(
    steps: int, n_steps: int, n_envs: int, expected: int
) -> None:
    config = TrainConfig(n_steps=n_steps, n_envs=n_envs)
    assert rounded_budget(steps, config) == expected


class _RecordedBar:
    """Stands in for SB3's tqdm progress bar, recording its total and its updates."""

    bars: list[_RecordedBar] = []

    def __init__(self, total: int) -> None:
        self.total, self.n = total, 0
        _RecordedBar.bars.append(self)

    def update(self, n: int) -> None:
        self.n += n

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("timesteps", "ran"), [("200", 256), ("512", 512)])
def test_train_logs_the_rounded_budget_and_why_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timesteps: str, ran: int
) -> None:
    import zipfile

    from stable_baselines3.common import callbacks
    from structlog.testing import capture_logs

    monkeypatch.setattr(callbacks, "tqdm", _RecordedBar)
    monkeypatch.setattr(_RecordedBar, "bars", [])
    out = tmp_path / "bundle"
    args = ["train", "--out", str(out), "--timesteps", timesteps, "--n-steps", "256"]
    args += ["--n-envs", "2", "--episode-bars", "100", "--synthetic-days", "3"]
    args += ["--eval-every", "0", "--checkpoint-every", "0", "--validate-episodes", "0"]
    args += ["--reward", "seed", "--progress"]
    with capture_logs() as logs:
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rounded = [line for line in result.stderr.splitlines() if "rounded" in line]
    card = json.loads((out / "model.json").read_text())
    assert card["timesteps"] == ran  # what really ran, either way
    # The progress bar counts to the rounded budget, not past the asked one (256/200).
    [bar] = _RecordedBar.bars
    assert (bar.n, bar.total) == (ran, ran)
    # PPO's schedules end at the rounded budget: progress remaining 0, not below.
    with zipfile.ZipFile(out / "model.zip") as archive:
        saved = json.loads(archive.read("data"))
    assert saved["_total_timesteps"] == ran and saved["_current_progress_remaining"] == 0.0
    [started] = [e for e in logs if e["event"] == "training_started"]
    [finished] = [e for e in logs if e["event"] == "training_finished"]
    # The budget that runs, and why it is not the one asked for, in one line: the log's.
    assert started["timesteps"] == ran
    assert finished["steps_per_s"] == pytest.approx(ran / card["duration_s"], rel=0.05)
    assert rounded == []  # no second statement of the rounding on the console
    if ran != int(timesteps):
        assert started["log_level"] == "warning" and started["requested"] == 200
        assert started["rounded"] == (
            "up to whole rollouts of 256 steps (n_steps 128 per env x 2 envs): PPO updates "
            "on whole rollouts"
        )
    else:
        assert started["log_level"] == "info"
        assert "requested" not in started and "rounded" not in started


@pytest.mark.parametrize("given", ["flag", "config file"])
@pytest.mark.parametrize("device", ["cuda", "CUDA", "Cuda"])
def test_train_device_cuda_without_cuda_is_a_usage_error_naming_it_as_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str, given: str
) -> None:
    """SB3 trains on the CPU when CUDA is missing; the run must not pretend otherwise.
    The one line names the device where and as it was given (flag or config file)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "bundle"
    args = ["train", "--out", str(out), "--timesteps", "256"]
    if given == "flag":
        args += ["--device", device]
        named = f"--device {device}"
    else:
        config = tmp_path / "train.toml"
        config.write_text(f'device = "{device}"\n')
        args += ["--config", str(config)]
        named = f'device = "{device}" in {config}'
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert "Traceback" not in result.output
    assert line.startswith(f"error: {named}: this torch ")
    assert "cannot use CUDA" in line and torch.__version__ in line
    assert "--device cpu" in line and "install a CUDA build of torch" in line
    assert not out.exists()


@pytest.mark.parametrize(("written", "device"), [("CPU", "cpu"), ("Auto", "auto"), ("cpu", "cpu")])
def test_train_config_device_takes_any_case(written: str, device: str) -> None:
    assert TrainConfig.from_mapping({"device": written}).device == device


def test_train_config_device_unknown_is_refused_as_written() -> None:
    with pytest.raises(ValueError, match=r"device must be one of .*got 'GPU'"):
        TrainConfig.from_mapping({"device": "GPU"})


def test_walkforward_config_device_cuda_without_cuda_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = tmp_path / "wf.toml"
    config.write_text('device = "cuda"\n')
    out = tmp_path / "wf"
    result = CliRunner().invoke(cli, ["walkforward", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "cannot use CUDA" in lines[0]
    assert lines[0].startswith(f'error: device = "cuda" in {config}: ')
    assert f'device = "cpu" or "auto" in {config}' in lines[0]
    assert not out.exists()


def test_train_with_validation_warns_about_closed_market_bars_once(tmp_path: Path) -> None:
    """Bars read in the wrong zone close while the market is closed: one warning, not a
    second one when the held-out part is validated after training."""
    data = Path(__file__).resolve().parent / "data" / "NQ 12-25.Last.txt"
    out = tmp_path / "bundle"
    args = ["train", "--data", str(data), "--data-timezone", "Asia/Tokyo", "--out", str(out)]
    args += ["--timesteps", "64", "--n-steps", "64", "--n-envs", "1", "--batch-size", "32"]
    args += ["--episode-bars", "60", "--reward", "seed", "--eval-every", "0"]
    args += ["--checkpoint-every", "0", "--validate-episodes", "2", "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 3), result.output  # 3: the tiny model failed validation
    closed = [line for line in result.stderr.splitlines() if "says the market is closed" in line]
    assert len(closed) == 1 and closed[0].startswith("warning: "), result.stderr
    # Validated on the held-out bars the card names, as a separate validate reads them.
    card = json.loads((out / "model.json").read_text())
    report = json.loads((out / "validation" / "report.json").read_text())
    assert report["holdout_start"] == card["data"]["holdout_start"]


def test_train_exits_3_when_its_validation_fails(tmp_path: Path) -> None:
    """A bundle that fails its post-training validation is written, and the run ends
    with exit 3 and says so: a script running train && deploy stops there."""
    out = tmp_path / "bundle"
    args = ["train", "--out", str(out), "--timesteps", "64", "--n-steps", "64", "--n-envs", "1"]
    args += ["--batch-size", "32", "--episode-bars", "60", "--reward", "seed", "--seed", "1"]
    args += ["--eval-every", "0", "--checkpoint-every", "0", "--validate-episodes", "4"]
    result = CliRunner().invoke(cli, [*args, "--synthetic-days", "3", "--no-progress"])
    card = json.loads((out / "model.json").read_text())
    assert card["validation"]["passed"] is False  # 64 steps: far from the guide's bands
    assert result.exit_code == 3, result.output
    last = result.stdout.splitlines()[-1]
    assert last.startswith(f"bundle {card['version']} written to {out} (validation FAILED, exit 3")


@pytest.mark.parametrize(("extra", "prefix"), [([], "6E-"), (["--name", "euro-v2"], "euro-v2-")])
def test_train_names_the_model_after_the_instrument_unless_named(
    tmp_path: Path, extra: list[str], prefix: str
) -> None:
    """A 6E model's version (the daemon's banner, replies, the journal) starts with 6E,
    not the default NQ; --name still wins."""
    data = Path(__file__).resolve().parent / "data" / "6E_hourly_zero_volume.Last.txt"
    out = tmp_path / "bundle"
    args = ["train", "--data", str(data), "--instrument", "6E 03-26", "--out", str(out)]
    args += ["--timesteps", "64", "--n-steps", "64", "--n-envs", "1", "--batch-size", "32"]
    args += ["--episode-bars", "60", "--reward", "seed", "--eval-every", "0"]
    args += ["--checkpoint-every", "0", "--validate-episodes", "0", "--no-progress", *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "model.json").read_text())
    assert card["instrument"] == "6E" and card["version"].startswith(prefix), card["version"]
    assert f"bundle {card['version']} written" in result.stdout
