"""The trading world: contracts, sessions, bars, features, mask, execution, reward and
the env."""

from env.bars import Bars, BarsFileError, BarsTimezoneWarning, load_bars
from env.config import (
    ACTION_NAMES,
    FEATURE_VERSION,
    N_ACTIONS,
    TOTAL_OBSERVATION_SIZE,
    WARMUP_BARS,
    Action,
)
from env.contracts import CONTRACTS, ContractSpec, UnknownContractError, resolve_contract
from env.execution import ExecutionConfig, SimulatedPosition, Trade
from env.instruments import INSTRUMENTS, Instrument, get_instrument
from env.mask import action_mask
from env.periods import BarPeriod, detect_bar_period
from env.synthetic import default_bars, generate_bars
from env.trading_env import EnvConfig, TradingEnv

__all__ = [
    "ACTION_NAMES",
    "CONTRACTS",
    "FEATURE_VERSION",
    "INSTRUMENTS",
    "N_ACTIONS",
    "TOTAL_OBSERVATION_SIZE",
    "WARMUP_BARS",
    "Action",
    "BarPeriod",
    "Bars",
    "BarsFileError",
    "BarsTimezoneWarning",
    "ContractSpec",
    "EnvConfig",
    "ExecutionConfig",
    "Instrument",
    "SimulatedPosition",
    "Trade",
    "TradingEnv",
    "UnknownContractError",
    "action_mask",
    "default_bars",
    "detect_bar_period",
    "generate_bars",
    "get_instrument",
    "load_bars",
    "resolve_contract",
]
