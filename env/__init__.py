"""The trading world: instruments, bars, features, mask, execution, reward and the env."""

from env.bars import Bars, BarsFileError, load_bars
from env.config import (
    ACTION_NAMES,
    FEATURE_VERSION,
    N_ACTIONS,
    TOTAL_OBSERVATION_SIZE,
    WARMUP_BARS,
    Action,
)
from env.execution import ExecutionConfig, SimulatedPosition, Trade
from env.instruments import INSTRUMENTS, Instrument, get_instrument
from env.mask import action_mask
from env.synthetic import default_bars, generate_bars
from env.trading_env import EnvConfig, TradingEnv

__all__ = [
    "ACTION_NAMES",
    "FEATURE_VERSION",
    "INSTRUMENTS",
    "N_ACTIONS",
    "TOTAL_OBSERVATION_SIZE",
    "WARMUP_BARS",
    "Action",
    "Bars",
    "BarsFileError",
    "EnvConfig",
    "ExecutionConfig",
    "Instrument",
    "SimulatedPosition",
    "Trade",
    "TradingEnv",
    "action_mask",
    "default_bars",
    "generate_bars",
    "get_instrument",
    "load_bars",
]
