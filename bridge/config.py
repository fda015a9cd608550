"""Daemon configuration: frozen dataclasses, validated once at the entry point.

Every default lives here, and the click options in :mod:`bridge.cli` read them from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from bridge.killswitch import default_log_file, default_state_dir
from env.bars import EXCHANGE_TZ
from env.risk import RiskConfig
from env.timezones import zone_info

DEFAULT_BIND = "tcp://127.0.0.1:5555"
DEFAULT_CONTROL = "tcp://127.0.0.1:*"  # a free port, published in the state folder
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20  # 1 MiB
DEFAULT_EXCHANGE_TZ = EXCHANGE_TZ  # CME Globex: the training data's wall clock
DEFAULT_JOURNAL_DIR = default_state_dir() / "journal"  # per-user data folder, any OS
DEFAULT_LOG_FILE = default_log_file()
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "default_model"
DEFAULT_MAX_SESSIONS = 256  # client+instrument states kept; the least recently used go first
DEFAULT_MAX_CLOCK_SKEW_S = 300.0  # bars more than 5 minutes in the future are refused
DEFAULT_POLL_MS = 100  # how often the loop looks at the stop and reload flags

BUNDLE_MODEL = "model.zip"
BUNDLE_VECNORM = "vecnormalize.pkl"
BUNDLE_CARD = "model.json"

_ENDPOINT_SCHEMES = ("tcp", "ipc", "inproc")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class ModelSource:
    """Where the policy comes from: a bundle folder, or the guide's two files.

    Attributes:
        bundle: A folder holding ``model.zip``, ``vecnormalize.pkl`` and ``model.json``.
        model: An SB3 ``.zip`` (MaskablePPO or PPO), e.g. ``NQ_o1_fixed.zip``.
        vecnorm: The VecNormalize statistics saved with it, e.g.
            ``phase2_position_mgmt_final_vecnorm_fixed.pkl``.
    """

    bundle: Path | None = None
    model: Path | None = None
    vecnorm: Path | None = None

    def __post_init__(self) -> None:
        if self.bundle is not None:
            if self.model is not None or self.vecnorm is not None:
                raise ConfigError("give either --bundle DIR or --model ZIP --vecnorm PKL, not both")
        elif self.model is None or self.vecnorm is None:
            raise ConfigError(
                "--model and --vecnorm go together: the model zip and the VecNormalize "
                "statistics saved with it (e.g. --model NQ_o1_fixed.zip --vecnorm "
                "phase2_position_mgmt_final_vecnorm_fixed.pkl)"
            )

    @classmethod
    def from_options(
        cls,
        bundle: str | Path | None = None,
        model: str | Path | None = None,
        vecnorm: str | Path | None = None,
    ) -> ModelSource:
        """The source named by command-line options; the bundled demo model when none."""
        if bundle is None and model is None and vecnorm is None:
            return cls(bundle=DEFAULT_BUNDLE)
        return cls(
            bundle=Path(bundle) if bundle is not None else None,
            model=Path(model) if model is not None else None,
            vecnorm=Path(vecnorm) if vecnorm is not None else None,
        )

    def resolved(self) -> ModelSource:
        """The source with a deploy target (a folder with ``current.json``, written by
        ``ai-trading-bridge deploy``, of either form) replaced by the files it makes live
        now. Resolved once per load, so a deploy switching the pointer mid-load cannot mix
        two models (:func:`train.deploy.resolve_model`)."""
        if self.bundle is None:
            self._check_deployed_pair()
            return self
        from train.deploy import POINTER_FILE, ModelArgsError, resolve_model

        if not (self.bundle / POINTER_FILE).is_file():
            return self
        try:
            files = resolve_model(bundle=self.bundle)
        except ModelArgsError as exc:
            raise ConfigError(str(exc)) from None
        if files.bundle is not None:
            return ModelSource(bundle=files.bundle)
        return ModelSource(model=files.model, vecnorm=files.vecnorm)

    def _check_deployed_pair(self) -> None:
        """The guide's two files named directly, in a folder ``deploy --target`` made
        them live in: when ``current.json`` there names this very pair, its hashes must
        match (a half-finished deploy or a file changed by hand is refused, as
        ``--bundle FOLDER`` refuses it)."""
        from train import deploy

        if self.model is None or self.vecnorm is None:
            return
        folder = self.model.parent
        if not (folder / deploy.POINTER_FILE).is_file():
            return
        try:
            pointer = deploy.read_pointer(folder)
        except (OSError, ValueError):
            pointer = None  # unreadable: resolve_model says so
        if isinstance(pointer, dict):
            names = (pointer.get("model"), pointer.get("vecnorm"))
            if pointer.get("form") != deploy.FILES_FORM:
                return
            if names != (self.model.name, self.vecnorm.name):
                return
            if self.vecnorm.parent.resolve() != folder.resolve():
                return
        try:
            deploy.resolve_model(bundle=folder)
        except deploy.ModelArgsError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def model_path(self) -> Path:
        """The SB3 zip."""
        return self.bundle / BUNDLE_MODEL if self.bundle is not None else self.model  # type: ignore[return-value]

    @property
    def vecnorm_path(self) -> Path:
        """The VecNormalize pickle."""
        if self.bundle is not None:
            return self.bundle / BUNDLE_VECNORM
        return self.vecnorm  # type: ignore[return-value]

    @property
    def card_path(self) -> Path | None:
        """The model card, for a bundle."""
        return self.bundle / BUNDLE_CARD if self.bundle is not None else None

    def describe(self) -> str:
        """Human-readable form for logs and error messages."""
        if self.bundle is not None:
            return f"bundle {self.bundle}"
        return f"model {self.model} with statistics {self.vecnorm}"

    def to_dict(self) -> dict[str, str | None]:
        """Plain-JSON form (control messages, logs)."""
        return {
            "bundle": None if self.bundle is None else str(self.bundle),
            "model": None if self.model is None else str(self.model),
            "vecnorm": None if self.vecnorm is None else str(self.vecnorm),
        }


@dataclass(frozen=True)
class MonitorConfig:
    """The rolling action histogram and its warnings.

    Attributes:
        window: Decisions in the rolling histogram of each client+instrument.
        every: Log the histogram every this many decisions (1: every bar), and always
            with a warning.
        hold_band: Expected share of HOLD among flat bars (the guide's 80-90%); a full
            window outside it is warned about.
        max_action_share: Warn when one action takes more than this share of a window.
    """

    window: int = 100
    every: int = 100
    hold_band: tuple[float, float] = (0.80, 0.90)
    max_action_share: float = 0.95

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ConfigError(f"histogram window must be >= 1 bar, got {self.window}")
        if self.every < 1:
            raise ConfigError(f"--histogram-every must be >= 1 bar, got {self.every}")
        low, high = self.hold_band
        if not 0.0 <= low <= high <= 1.0:
            raise ConfigError(f"HOLD band must satisfy 0 <= low <= high <= 1, got {self.hold_band}")
        if not (math.isfinite(self.max_action_share) and 0.0 < self.max_action_share <= 1.0):
            raise ConfigError(
                f"--max-action-share must be in (0, 1], got {self.max_action_share!r}"
            )


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``ai-trading-bridge serve`` needs.

    Attributes:
        bind: ZeroMQ endpoint of the REP socket NinjaTrader connects to.
        control: Loopback endpoint of the control socket (reload, status), or None.
        control_required: Whether failing to bind ``control`` is fatal (it was asked for
            explicitly) or only a warning (the default endpoint is taken).
        model: The policy to serve.
        max_message_bytes: Larger requests get a ``too_large`` reply.
        journal_dir: Folder of the daily decision journals, or None for no journal.
        exchange_tz: IANA zone of the exchange; times with ``Z``/offset are converted to it.
        max_sessions: Client+instrument states kept before the least recently used is dropped.
        monitor: Histogram and warnings.
        poll_ms: Poll timeout of the loop, i.e. how fast a stop or reload is noticed.
        busy_poll: Spin on the sockets instead of sleeping in poll: keeps a CPU core (and its
            caches) hot for the next bar at the cost of that core running at 100%.
        max_clock_skew_s: A bar whose time is further ahead of the daemon's clock is
            refused (a client clock or time-zone mistake).
        allow_other_scale: Serve instruments whose tick size is an order of magnitude
            from the model's contract (another price scale); refused by default.
        risk: Limits of the risk rails (``--risk-config``).
        state_dir: Folder of the persistent kill switch (``halt.json``) and of the files
            publishing each running daemon's control endpoint and token.
        model_dirs: Folders a control-socket reload may load from; empty: the folder of
            the model served at start.
        allow_remote: Serve a non-loopback ``bind`` (no authentication on that socket).
    """

    bind: str = DEFAULT_BIND
    control: str | None = DEFAULT_CONTROL
    control_required: bool = False
    model: ModelSource = field(default_factory=ModelSource.from_options)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    journal_dir: Path | None = DEFAULT_JOURNAL_DIR
    exchange_tz: str = DEFAULT_EXCHANGE_TZ
    max_sessions: int = DEFAULT_MAX_SESSIONS
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    poll_ms: int = DEFAULT_POLL_MS
    busy_poll: bool = False
    max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S
    allow_other_scale: bool = False
    risk: RiskConfig = field(default_factory=RiskConfig)
    state_dir: Path = field(default_factory=default_state_dir)
    model_dirs: tuple[Path, ...] = ()
    allow_remote: bool = False

    def __post_init__(self) -> None:
        check_endpoint(self.bind, "--bind")
        if not is_loopback(self.bind) and not self.allow_remote:
            raise ConfigError(
                f"--bind {self.bind} would accept order requests from any computer that can "
                "reach this one, with no authentication. Keep the daemon on "
                "tcp://127.0.0.1:PORT and reach it from another computer through an SSH "
                "tunnel (Windows ships OpenSSH: ssh -N -L 5555:127.0.0.1:5555 user@daemon-pc), "
                "or pass --allow-remote if you accept the risk"
            )
        if self.control is not None:
            check_endpoint(self.control, "--control")
            if not is_loopback(self.control):
                raise ConfigError(
                    f"--control {self.control} is not a loopback address; the control socket "
                    "loads model files, so bind it to tcp://127.0.0.1:PORT (or ipc://)"
                )
        if self.max_message_bytes < 1024:
            raise ConfigError(
                f"--max-message-bytes must be at least 1024, got {self.max_message_bytes}"
            )
        if self.max_sessions < 1:
            raise ConfigError(f"max_sessions must be >= 1, got {self.max_sessions}")
        if self.poll_ms < 1:
            raise ConfigError(f"poll_ms must be >= 1, got {self.poll_ms}")
        if not (math.isfinite(self.max_clock_skew_s) and self.max_clock_skew_s >= 0):
            raise ConfigError(
                f"--max-clock-skew must be a number of minutes >= 0, got {self.max_clock_skew_s}"
            )
        object.__setattr__(self, "exchange_tz", exchange_zone(self.exchange_tz).key)


def check_endpoint(endpoint: str, option: str) -> None:
    """Refuse an endpoint ZeroMQ would not understand, naming the option."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep or scheme not in _ENDPOINT_SCHEMES or not rest:
        raise ConfigError(
            f"{option} {endpoint!r} is not a ZeroMQ endpoint; expected e.g. tcp://127.0.0.1:5555"
        )


def is_loopback(endpoint: str) -> bool:
    """Whether an endpoint can only be reached from this machine."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = urlsplit(endpoint).hostname or ""
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


def exchange_zone(name: str) -> ZoneInfo:
    """The exchange time zone (its name in any case), or a ConfigError a trader can act on."""
    try:
        return zone_info(name)
    except ValueError as exc:
        raise ConfigError(f"--exchange-tz: {exc}") from None
