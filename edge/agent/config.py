"""Agent configuration: TOML (``tomllib``) validated into dataclasses.

Every error names the dotted key and the problem, e.g.
``mqtt.port: expected an integer, got 'abc'``. Unknown keys are errors too (a typo must not
silently fall back to a default). Every numeric option has a range (``_RANGES``; a test checks
none is missing): ``model.watch_interval_s = 0`` would never look for a new model,
``store.outbox_max_mb = 0`` would drop every message, ``store.retention_days = 0`` would prune
every reading; each is refused by ``check-config`` and at start with the range and the reason. Secrets (the MQTT password) come from a file or an
environment variable named in the config, never from the TOML itself, and are never logged:
``Secret.__repr__`` hides the value.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from edge.agent.guards import meter_limits
from edge.errors import ConfigError
from edge.signing import SigningError, load_public_key
from edge.sim.specs import ALL_APPLIANCES
from firmware_bridge.guard import LimitsError


class Secret(str):
    """A string whose repr/str in logs never shows the value."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"

    def reveal(self) -> str:
        return str.__str__(self)

    def __str__(self) -> str:
        return "***" if self else ""


@dataclass
class GatewayConfig:
    id: str = "gateway"
    state_dir: str = "/var/lib/unimeter"  # systemd StateDirectory; the store lives here
    log_level: str = "info"


@dataclass
class MqttConfig:
    enabled: bool = True
    protocol: str = "auto"  # auto (MQTT 5, 3.1.1 if the broker lacks it) | 5 | 3.1.1
    host: str = "localhost"
    port: int = 1883
    client_id: str = ""  # default: unimeter-<gateway id>
    base_topic: str = "unimeter"
    keepalive_s: int = 30
    qos: int = 1
    username: str = ""
    password_file: str = ""  # a file holding the password (first line), or
    password_env: str = ""  # the name of an environment variable holding it
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_insecure: bool = False  # skip hostname verification (self-signed test brokers only)
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    max_inflight: int = 200  # messages awaiting PUBACK
    max_readings_per_message: int = 1  # >1: a high-rate meter's readings of one commit share a message
    reconnect_max_s: float = 30.0
    refused_retry_s: float = 300.0  # a topic the broker refused is offered again this often
    offline_after_missed: int = 3  # a meter is offline after this many of its reading intervals
    password: Secret = field(default_factory=lambda: Secret(""), repr=False)  # resolved, not read from TOML


@dataclass
class StoreConfig:
    path: str = "agent.sqlite"  # relative to gateway.state_dir
    batch_max: int = 500  # readings per commit at most
    batch_interval_s: float = 0.05  # longest a received reading waits for its commit
    synchronous: str = "normal"  # SQLite synchronous= in WAL mode: "normal" or "full"
    retention_days: float = 30.0  # readings older than this (and already published) are pruned
    outbox_max_rows: int = 200_000  # bounded-disk policy, see edge.agent.store
    outbox_max_mb: float = 256.0


@dataclass
class ModelConfig:
    bundle: str = ""  # bundle directory; empty: no inference (readings/quality only)
    backend: str = "auto"  # auto | onnx | tflite
    precision: str = "int8"  # int8 | fp32
    threads: int = 1
    watch_interval_s: float = 30.0  # how often the bundle path is checked for a new model
    public_key_file: str = ""  # ed25519 public key (PEM) bundles must be signed with (edge/signing.py)
    unsigned_bundles: str = "auto"  # auto (refuse when a key is set, else allow) | refuse | allow


@dataclass
class ScheduleConfig:
    profile_every_s: float = 1800.0  # imputation + anomaly on the last day of half-hour profiles
    nilm_every_s: float = 60.0  # NILM on the rolling high-rate window
    forecast_every_s: float = 1800.0  # hour-ahead and day-ahead forecast, each half hour
    quality_every_s: float = 300.0
    report_every_s: float = 86400.0
    status_every_s: float = 60.0
    nilm_resolution_s: float = 0.0  # 0: from the bundle manifest (fallback 10 s)
    profile_resolution_s: float = 0.0  # 0: from the bundle manifest (fallback 1800 s)
    min_coverage: float = 0.5  # skip inference on windows with less observed data than this
    # an anomaly alarm stays up until the windows have been clean this long (edge.calibration.AlarmHold);
    # default one window span (a day): the bins that raised it have left the window; 0: no hold
    alarm_release_after_s: float = 86400.0


@dataclass
class MeterConfig:
    id: str
    kind: str  # a firmware_bridge source kind ("dsmr", "modbus", "zigbee", ...) or "sim*"
    name: str = ""  # display name for Home Assistant
    options: dict[str, Any] = field(default_factory=dict)  # passed to build_source
    limits: dict[str, Any] = field(default_factory=dict)  # plausibility limits (firmware_bridge.guard)
    offline_after_s: float = 0.0  # offline after this long without a reading; 0: learnt interval
    appliances: list[str] = field(default_factory=list)  # NILM keys the home has; empty: all the model knows


@dataclass
class AgentConfig:
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    meters: list[MeterConfig] = field(default_factory=list)

    @property
    def store_path(self) -> Path:
        p = Path(self.store.path)
        return p if p.is_absolute() else Path(self.gateway.state_dir) / p

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"unimeter-{self.gateway.id}"


# --- validation --------------------------------------------------------------------------------

_TOPIC_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CHOICES = {
    "gateway.log_level": ("debug", "info", "warning", "error"),
    "store.synchronous": ("normal", "full"),
    "model.backend": ("auto", "onnx", "tflite"),
    "model.precision": ("int8", "fp32"),
    "mqtt.qos": (0, 1, 2),
    "mqtt.protocol": ("auto", "5", "3.1.1"),
    "model.unsigned_bundles": ("auto", "refuse", "allow"),
}
_WEEK_S = 7 * 86400
# Every numeric option: key -> (lowest, highest, what the bound protects; "" when obvious).
_RANGES: dict[str, tuple[float, float, str]] = {
    "mqtt.port": (1, 65535, ""),
    "mqtt.keepalive_s": (5, 3600, ""),
    "mqtt.max_inflight": (1, 65535, ""),
    "mqtt.max_readings_per_message": (1, 10_000, ""),
    "mqtt.reconnect_max_s": (1, 3600, "the ceiling of the reconnect backoff"),
    "mqtt.refused_retry_s": (1, 86400, "how often a refused topic is offered to the broker again"),
    "mqtt.offline_after_missed": (1, 1000, "missed reading intervals before a meter is shown offline"),
    "store.batch_max": (1, 100_000, ""),
    "store.batch_interval_s": (0.001, 10, "the longest a received reading waits for its commit"),
    "store.retention_days": (1, 36_500, "below a day the model windows lose their history; 0 would "
                             "prune every reading within the hour"),
    "store.outbox_max_rows": (100, 10**9, ""),
    "store.outbox_max_mb": (1, 1_000_000, "0 would drop every message before it is sent"),
    "model.threads": (1, 64, ""),
    "model.watch_interval_s": (0.1, 86400, "0 would never look for a new model bundle"),
    "schedule.profile_every_s": (0.1, _WEEK_S, ""),
    "schedule.nilm_every_s": (0.1, _WEEK_S, ""),
    "schedule.forecast_every_s": (0.1, _WEEK_S, ""),
    "schedule.quality_every_s": (0.1, _WEEK_S, ""),
    "schedule.report_every_s": (0.1, _WEEK_S, ""),
    "schedule.status_every_s": (0.1, 86400, ""),
    "schedule.nilm_resolution_s": (0, 86400, "0 takes it from the bundle manifest"),
    "schedule.profile_resolution_s": (0, 86400, "0 takes it from the bundle manifest"),
    "schedule.min_coverage": (0, 1, "a fraction of the window"),
    "schedule.alarm_release_after_s": (0, _WEEK_S, "0: the published flag follows each window"),
}


def _check_type(key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}", key=key)
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {value!r}", key=key)
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", key=key)
        if not math.isfinite(value):
            raise ConfigError(f"expected a finite number, got {value!r}", key=key)
        if value < 0:
            raise ConfigError(f"must not be negative, got {value!r}", key=key)
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {value!r}", key=key)
        return value
    if kind is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table, got {value!r}", key=key)
        return value
    if kind is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"expected an array of strings, got {value!r}", key=key)
        return list(value)
    raise ConfigError(f"unsupported type {kind}", key=key)  # pragma: no cover


_KINDS = {"bool": bool, "int": int, "float": float, "str": str, "dict[str, Any]": dict, "list[str]": list}


def _check_range(key: str, value: float, integer: bool) -> None:
    lo, hi, why = _RANGES[key]
    if lo <= value <= hi:
        return
    kind = "an integer" if integer else "a number"
    raise ConfigError(f"expected {kind} in {lo:g}..{hi:g}, got {value!r}" + (f" ({why})" if why else ""), key=key)


def _build(cls: type, section: str, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"expected a table, got {data!r}", key=section)
    known = {f.name: f for f in fields(cls) if f.name != "password"}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown key (known: {', '.join(sorted(known))})", key=f"{section}.{key}")
    kwargs = {}
    for name, f in known.items():
        key = f"{section}.{name}"
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError("required key is missing", key=key)
            continue
        value = _check_type(key, data[name], _KINDS[str(f.type)])
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(f"must be one of {_CHOICES[key]}, got {value!r}", key=key)
        if key in _RANGES:
            _check_range(key, value, f.type == "int")
        kwargs[name] = value
    return cls(**kwargs)


def _resolve_password(mqtt: MqttConfig) -> Secret:
    if mqtt.password_file and mqtt.password_env:
        raise ConfigError("set password_file or password_env, not both", key="mqtt.password_file")
    if mqtt.password_file:
        # "$CREDENTIALS_DIRECTORY/mqtt-password" works with systemd's LoadCredential=
        path = os.path.expandvars(mqtt.password_file)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror}", key="mqtt.password_file") from e
        lines = text.splitlines()
        return Secret(lines[0] if lines else "")
    if mqtt.password_env:
        if mqtt.password_env not in os.environ:
            raise ConfigError(f"environment variable {mqtt.password_env} is not set", key="mqtt.password_env")
        return Secret(os.environ[mqtt.password_env])
    return Secret("")


def _check_semantics(cfg: AgentConfig) -> None:
    if not _TOPIC_ID.match(cfg.gateway.id):
        raise ConfigError(f"must match {_TOPIC_ID.pattern} (used in MQTT topics), got {cfg.gateway.id!r}", key="gateway.id")
    if not cfg.mqtt.base_topic or any(c in cfg.mqtt.base_topic for c in "#+"):
        raise ConfigError(f"must be non-empty without MQTT wildcards, got {cfg.mqtt.base_topic!r}", key="mqtt.base_topic")
    if (cfg.mqtt.password_file or cfg.mqtt.password_env) and not cfg.mqtt.username:
        raise ConfigError("a password is configured but no username", key="mqtt.username")
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(cfg.mqtt, key)
        if path and not Path(path).is_file():
            raise ConfigError(f"file not found: {path}", key=f"mqtt.{key}")
    if bool(cfg.mqtt.cert_file) != bool(cfg.mqtt.key_file):
        raise ConfigError("cert_file and key_file go together", key="mqtt.cert_file")
    for name in ("nilm_resolution_s", "profile_resolution_s"):
        value = getattr(cfg.schedule, name)
        if 0 < value < 0.1:
            raise ConfigError(f"expected 0 (from the bundle) or at least 0.1 s, got {value!r}", key=f"schedule.{name}")
    if cfg.model.unsigned_bundles == "refuse" and not cfg.model.public_key_file:
        raise ConfigError("refuse needs model.public_key_file (the key bundles "
                                                    "must be signed with)", key="model.unsigned_bundles")
    if not cfg.meters:
        raise ConfigError("at least one [[meters]] entry is required", key="meters")
    seen: set[str] = set()
    for i, m in enumerate(cfg.meters):
        if not _TOPIC_ID.match(m.id):
            raise ConfigError(f"must match {_TOPIC_ID.pattern}, got {m.id!r}", key=f"meters[{i}].id")
        if m.id in seen:
            raise ConfigError(f"duplicate meter id {m.id!r}", key=f"meters[{i}].id")
        if not (m.offline_after_s == 0 or 1 <= m.offline_after_s <= _WEEK_S):
            raise ConfigError("must be 0 (learnt from the meter's reading "
                              f"interval) or 1..{_WEEK_S} seconds, got {m.offline_after_s!r}", key=f"meters[{i}].offline_after_s")
        seen.add(m.id)
        _check_limits(i, m)
        _check_appliances(i, m)


def _check_appliances(i: int, m: MeterConfig) -> None:
    """The meter's NILM appliances, each once, as the model names them (``washing_machine``); a
    display name (``"Washing machine"``) is accepted and stored as its key. Unknown names are an
    error that lists the known ones (``edge.sim.specs.ALL_APPLIANCES``)."""
    keys = []
    for j, name in enumerate(m.appliances):
        key = "_".join(re.split(r"[^a-z0-9]+", name.strip().lower())).strip("_")
        if key not in ALL_APPLIANCES:
            raise ConfigError(f"unknown appliance {name!r}; known: {', '.join(ALL_APPLIANCES)}",
                              key=f"meters[{i}].appliances[{j}]")
        if key in keys:
            raise ConfigError(f"{name!r} is listed twice", key=f"meters[{i}].appliances[{j}]")
        keys.append(key)
    m.appliances = keys


def _check_limits(i: int, m: MeterConfig) -> None:
    """The meter's plausibility limits must build (range checks live with the limits)."""

    try:
        meter_limits(m.kind, m.options, m.limits)
    except LimitsError as e:
        raise ConfigError(e.problem, key=f"meters[{i}].limits.{e.key}") from e


def _check_public_key(model: ModelConfig) -> None:
    """The bundle-signing public key must be a readable ed25519 PEM (checked with the secrets:
    on the gateway, where the file is)."""
    if model.public_key_file:

        try:
            load_public_key(model.public_key_file)
        except SigningError as e:
            raise ConfigError(str(e), key="model.public_key_file") from e


def parse_config(data: dict, *, resolve_secrets: bool = True) -> AgentConfig:
    """Validate a parsed TOML document into an :class:`AgentConfig`."""
    sections = {"gateway": GatewayConfig, "mqtt": MqttConfig, "store": StoreConfig,
                "model": ModelConfig, "schedule": ScheduleConfig}
    for key in data:
        if key not in (*sections, "meters"):
            raise ConfigError(f"unknown section (known: {', '.join([*sections, 'meters'])})", key=key)
    built = {name: _build(cls, name, data.get(name, {})) for name, cls in sections.items()}
    meters_raw = data.get("meters", [])
    if not isinstance(meters_raw, list):
        raise ConfigError("expected an array of tables ([[meters]])", key="meters")
    meters = [_build(MeterConfig, f"meters[{i}]", m) for i, m in enumerate(meters_raw)]
    cfg = AgentConfig(meters=meters, **built)
    _check_semantics(cfg)
    if resolve_secrets:
        cfg.mqtt.password = _resolve_password(cfg.mqtt)
        _check_public_key(cfg.model)
    return cfg


def load_config(path: str | Path, *, resolve_secrets: bool = True) -> AgentConfig:
    """Read and validate an agent TOML file; raises :class:`ConfigError` naming the key."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}", key="<file>") from e
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid TOML: {e}", key="<toml>") from e
    return parse_config(data, resolve_secrets=resolve_secrets)
