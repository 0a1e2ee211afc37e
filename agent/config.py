"""The agent's one TOML config file: schema, validation with line-precise errors, a writer, OCPP 1.6 keys.

Every refusal raises `ConfigError` whose message reads "FILE:LINE: key.path: reason" (one line per problem,
sorted by line), so an installer can fix the whole file in one pass. tomllib gives no positions, so
`_LineIndex` scans the text once and maps each table and key path to the line that defines it.
"""

from __future__ import annotations

import datetime as dt
import difflib
import enum
import importlib.metadata
import logging
import math
import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from agent.errors import AgentError
from drivers.registry import known_names

LOGGER = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = "/etc/evse-agent/agent.toml"
CHARGE_POINT_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,48}$")
PIN_FACTORIES = ("lgpio", "rpigpio", "pigpio", "native", "mock", "evsesim")
MAX_QUEUE_BYTES = 50_000_000  # 50 MB: a week offline at 1 sample/min on 2 connectors is ~10 MB
SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes including the terminating NUL
REDACTED = "***"
_SECRET_NAME_RE = re.compile(r"password|passwd|secret|token|key", re.IGNORECASE)

Path_ = tuple[str | int, ...]  # a key path: ("connectors", 0, "meter", "driver")


class ConfigError(AgentError):
    """The config file is unreadable or invalid; each problem reads FILE:LINE: path: reason."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [message]


def _package_version() -> str:
    """The installed evse-agent version, the default firmware_version."""
    try:
        return importlib.metadata.version("evse-agent")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


PACKAGE_VERSION = _package_version()


class OcppVersion(enum.StrEnum):
    """The OCPP protocol version spoken to the back office."""

    V16 = "1.6"
    V201 = "2.0.1"


class ConnectorKind(enum.StrEnum):
    """Whether a connector delivers AC (meter + contactor) or DC (meter + DC controller + contactor)."""

    AC = "ac"
    DC = "dc"


@dataclass(frozen=True)
class DeviceConfig:
    """A driver table: the driver name and the whole table (including "driver") for `from_config`."""

    driver: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # options always carries "driver" first, so a hand-built DeviceConfig equals a parsed one.
        if self.options.get("driver", self.driver) != self.driver:
            raise ValueError(
                f"options['driver'] {self.options['driver']!r} differs from driver {self.driver!r}"
            )
        rest = {k: v for k, v in self.options.items() if k != "driver"}
        object.__setattr__(self, "options", {"driver": self.driver, **rest})


@dataclass(frozen=True)
class ChargePointConfig:
    """Identity of the charge point, sent in BootNotification; `id` is the last URL path segment."""

    id: str
    vendor: str
    model: str
    serial_number: str | None = None
    firmware_version: str = PACKAGE_VERSION


@dataclass(frozen=True)
class BackofficeConfig:
    """Where and how to reach the back office."""

    url: str
    ocpp_version: OcppVersion = OcppVersion.V16
    security_profile: int = 0
    authorization_key_file: str | None = None
    ca_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    ping_interval_s: float = 10.0
    response_timeout_s: float = 30.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0  # back offices rate-limit reconnect storms


@dataclass(frozen=True)
class StateConfig:
    """Where the SQLite database and logs live, and the outbox disk cap."""

    directory: str
    max_queue_bytes: int = MAX_QUEUE_BYTES


@dataclass(frozen=True)
class DiagConfig:
    """The technician CLI's Unix socket; group "" leaves the socket's group as the process's."""

    socket: str = "/run/evse-agent/evsectl.sock"
    group: str = "evse"


@dataclass(frozen=True)
class GpioConfig:
    """gpiozero pin factory; None leaves the choice to GPIOZERO_PIN_FACTORY / gpiozero's default."""

    pin_factory: str | None = None
    sim_address: str | None = None  # "host:port" of the simulator's GPIO server, for pin_factory "evsesim"


@dataclass(frozen=True)
class FirmwareConfig:
    """How firmware is installed: a command that gets the downloaded file, run when no session is active."""

    installer: str = ""  # e.g. "/usr/local/sbin/evse-install-firmware {file}"; "" = updates are refused
    download_dir: str = ""  # "" = <state directory>/firmware
    max_bytes: int = 512_000_000


@dataclass(frozen=True)
class HardwareConfig:
    """Hardware polling."""

    poll_interval_s: float = 1.0
    # a meter or controller silent this long suspends charging (the transaction goes on) ...
    device_silent_suspend_s: float = 5.0
    # ... and this long ends the transaction (reason Other, meterStop from the last good reading)
    device_silent_stop_s: float = 60.0
    # an energy register consistently below the last accepted one this long is a replaced or reset meter:
    # recorded, the connector faulted once, and the new register becomes the baseline
    meter_replaced_after_s: float = 300.0


@dataclass(frozen=True)
class ConnectorConfig:
    """One connector and its devices."""

    id: int
    kind: ConnectorKind
    max_current_a: float
    meter: DeviceConfig
    contactor: DeviceConfig
    phases: int = 3
    voltage_v: float = 230.0
    free_vend_id_tag: str | None = None
    dc_controller: DeviceConfig | None = None
    lock: DeviceConfig | None = None
    indicator: DeviceConfig | None = None


@dataclass(frozen=True)
class AgentConfig:
    """The whole validated config file."""

    charge_point: ChargePointConfig
    backoffice: BackofficeConfig
    state: StateConfig
    diag: DiagConfig = field(default_factory=DiagConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    firmware: FirmwareConfig = field(default_factory=FirmwareConfig)
    ocpp: dict[str, int | bool | str] = field(default_factory=dict)
    estop: DeviceConfig | None = None
    rfid: DeviceConfig | None = None
    connectors: tuple[ConnectorConfig, ...] = ()

    @property
    def endpoint_url(self) -> str:
        """The websocket URL with the charge point id appended as the last path segment."""
        return self.backoffice.url.rstrip("/") + "/" + urllib.parse.quote(self.charge_point.id, safe="")

    def connector(self, connector_id: int) -> ConnectorConfig:
        """The connector with this id; KeyError if there is none."""
        for conn in self.connectors:
            if conn.id == connector_id:
                return conn
        raise KeyError(connector_id)

    def ocpp_initial_values(self) -> dict[str, int | bool | str]:
        """Initial OCPP 1.6 key values: defaults, then values derived from this file, then [ocpp]."""
        values: dict[str, int | bool | str] = {
            key: spec.default
            for key, spec in OCPP16_KEYS.items()
            if spec.default is not None and not spec.secret
        }
        values["NumberOfConnectors"] = len(self.connectors)
        values["SecurityProfile"] = self.backoffice.security_profile
        values["WebSocketPingInterval"] = round(self.backoffice.ping_interval_s)
        values.update(self.ocpp)
        return values

    def redacted(self) -> dict[str, Any]:
        """Plain dict of the config with every secret-looking value replaced by "***"."""
        plain = _to_plain(self)
        assert isinstance(plain, dict)
        return _redact(plain)


def _to_plain(value: Any) -> Any:
    """Dataclasses, enums and tuples to dicts, strings and lists (JSON-friendly)."""
    if isinstance(value, DeviceConfig):
        return _to_plain(value.options)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    return value


def _is_secret_name(name: str) -> bool:
    """A key that holds a secret: *password*, *secret*, *token*, *key*, but not a *_file path to one."""
    return bool(_SECRET_NAME_RE.search(name)) and not name.lower().endswith("_file")


def _redact(value: Any, name: str = "") -> Any:
    """Replace non-empty values of secret-looking keys, recursively."""
    if isinstance(value, dict):
        return {k: _redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, name) for v in value]
    if name and _is_secret_name(name) and value not in (None, ""):
        return REDACTED
    return value


# ---------------------------------------------------------------------------------------------------------
# OCPP 1.6 configuration keys


class KeyType(enum.StrEnum):
    """Value type of an OCPP configuration key; CSL = comma-separated list carried as a string."""

    INT = "int"
    BOOL = "bool"
    STR = "str"
    CSL = "csl"


class CslItems(enum.StrEnum):
    """What the items of a CSL key must be."""

    ANY = "any"
    MEASURAND = "measurand"
    PHASE_ROTATION = "phase_rotation"
    FEATURE_PROFILE = "feature_profile"
    CHARGING_RATE_UNIT = "charging_rate_unit"
    FILE_TRANSFER = "file_transfer"


@dataclass(frozen=True)
class KeySpec:
    """One standard OCPP 1.6 configuration key."""

    type: KeyType
    default: int | bool | str | None
    readonly: bool = False
    reboot_required: bool = False
    min: int | None = None
    max: int | None = None
    secret: bool = False  # write-only: never returned by GetConfiguration, never logged
    derived: bool = False  # its value comes from elsewhere in this file or from the hardware
    profile: str = "Core"
    items: CslItems = CslItems.ANY
    max_items_key: str | None = None  # the readonly key that caps the number of CSL items


# The 1.6 Measurand enum (OCPP 1.6 section 7.31); tests check it against ocpp.v16.enums.Measurand.
MEASURANDS_16 = frozenset(
    {
        "Current.Export",
        "Current.Import",
        "Current.Offered",
        "Energy.Active.Export.Register",
        "Energy.Active.Import.Register",
        "Energy.Reactive.Export.Register",
        "Energy.Reactive.Import.Register",
        "Energy.Active.Export.Interval",
        "Energy.Active.Import.Interval",
        "Energy.Reactive.Export.Interval",
        "Energy.Reactive.Import.Interval",
        "Frequency",
        "Power.Active.Export",
        "Power.Active.Import",
        "Power.Factor",
        "Power.Offered",
        "Power.Reactive.Export",
        "Power.Reactive.Import",
        "RPM",
        "SoC",
        "Temperature",
        "Voltage",
    }
)
PHASES_16 = ("L1", "L2", "L3", "N", "L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1")
PHASE_ROTATIONS = frozenset({"NotApplicable", "Unknown", "RST", "RTS", "SRT", "STR", "TRS", "TSR"})
FEATURE_PROFILES = frozenset(
    {"Core", "FirmwareManagement", "LocalAuthListManagement", "Reservation", "SmartCharging", "RemoteTrigger"}
)
FILE_TRANSFER_PROTOCOLS = frozenset({"FTP", "FTPS", "HTTP", "HTTPS", "SFTP"})
CHARGING_RATE_UNITS = frozenset({"Current", "Power"})
MAX_CSL_ITEMS = 20
MAX_VALUE_LEN = 500  # ChangeConfiguration.req value is CiString500

_I, _B, _S, _C = KeyType.INT, KeyType.BOOL, KeyType.STR, KeyType.CSL
_MEAS = CslItems.MEASURAND
_DAY_S = 86_400

OCPP16_KEYS: dict[str, KeySpec] = {
    # Core profile (OCPP 1.6 section 9.1)
    "AllowOfflineTxForUnknownId": KeySpec(_B, False),
    "AuthorizationCacheEnabled": KeySpec(_B, True),
    "AuthorizeRemoteTxRequests": KeySpec(_B, False),
    "BlinkRepeat": KeySpec(_I, 3, min=0, max=100),
    "ClockAlignedDataInterval": KeySpec(_I, 900, min=0, max=_DAY_S),
    "ConnectionTimeOut": KeySpec(_I, 60, min=1, max=3600),
    "ConnectorPhaseRotation": KeySpec(
        _C, "0.Unknown", items=CslItems.PHASE_ROTATION, max_items_key="ConnectorPhaseRotationMaxLength"
    ),
    "ConnectorPhaseRotationMaxLength": KeySpec(_I, MAX_CSL_ITEMS, readonly=True),
    "GetConfigurationMaxKeys": KeySpec(_I, 50, readonly=True),
    "HeartbeatInterval": KeySpec(_I, 300, min=0, max=_DAY_S),
    "LightIntensity": KeySpec(_I, 100, min=0, max=100),
    "LocalAuthorizeOffline": KeySpec(_B, True),
    "LocalPreAuthorize": KeySpec(_B, False),
    "MaxEnergyOnInvalidId": KeySpec(_I, 0, min=0),
    "MeterValuesAlignedData": KeySpec(
        _C, "Energy.Active.Import.Register", items=_MEAS, max_items_key="MeterValuesAlignedDataMaxLength"
    ),
    "MeterValuesAlignedDataMaxLength": KeySpec(_I, MAX_CSL_ITEMS, readonly=True),
    "MeterValuesSampledData": KeySpec(
        _C,
        "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage",
        items=_MEAS,
        max_items_key="MeterValuesSampledDataMaxLength",
    ),
    "MeterValuesSampledDataMaxLength": KeySpec(_I, MAX_CSL_ITEMS, readonly=True),
    "MeterValueSampleInterval": KeySpec(_I, 60, min=0, max=_DAY_S),
    "MinimumStatusDuration": KeySpec(_I, 0, min=0, max=3600),
    "NumberOfConnectors": KeySpec(_I, None, readonly=True, derived=True),
    "ResetRetries": KeySpec(_I, 3, min=0, max=100),
    "StopTransactionOnEVSideDisconnect": KeySpec(_B, True),
    "StopTransactionOnInvalidId": KeySpec(_B, True),
    "StopTxnAlignedData": KeySpec(_C, "", items=_MEAS, max_items_key="StopTxnAlignedDataMaxLength"),
    "StopTxnAlignedDataMaxLength": KeySpec(_I, MAX_CSL_ITEMS, readonly=True),
    "StopTxnSampledData": KeySpec(
        _C, "Energy.Active.Import.Register", items=_MEAS, max_items_key="StopTxnSampledDataMaxLength"
    ),
    "StopTxnSampledDataMaxLength": KeySpec(_I, MAX_CSL_ITEMS, readonly=True),
    "SupportedFeatureProfiles": KeySpec(
        _C,
        "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger",
        readonly=True,
        items=CslItems.FEATURE_PROFILE,
    ),
    "SupportedFeatureProfilesMaxLength": KeySpec(_I, 6, readonly=True),
    "TransactionMessageAttempts": KeySpec(_I, 3, min=1, max=100),
    "TransactionMessageRetryInterval": KeySpec(_I, 60, min=0, max=_DAY_S),
    "UnlockConnectorOnEVSideDisconnect": KeySpec(_B, True),
    "WebSocketPingInterval": KeySpec(_I, 10, min=0, max=3600),
    # LocalAuthListManagement profile (9.2)
    "LocalAuthListEnabled": KeySpec(_B, True, profile="LocalAuthListManagement"),
    "LocalAuthListMaxLength": KeySpec(_I, 1000, readonly=True, profile="LocalAuthListManagement"),
    "SendLocalListMaxLength": KeySpec(_I, 100, readonly=True, profile="LocalAuthListManagement"),
    # Reservation profile (9.3)
    "ReserveConnectorZeroSupported": KeySpec(_B, False, readonly=True, profile="Reservation"),
    # SmartCharging profile (9.4)
    "ChargeProfileMaxStackLevel": KeySpec(_I, 10, readonly=True, profile="SmartCharging"),
    "ChargingScheduleAllowedChargingRateUnit": KeySpec(
        _C, "Current,Power", readonly=True, profile="SmartCharging", items=CslItems.CHARGING_RATE_UNIT
    ),
    "ChargingScheduleMaxPeriods": KeySpec(_I, 24, readonly=True, profile="SmartCharging"),
    "ConnectorSwitch3to1PhaseSupported": KeySpec(_B, False, readonly=True, profile="SmartCharging"),
    "MaxChargingProfilesInstalled": KeySpec(_I, 20, readonly=True, profile="SmartCharging"),
    # FirmwareManagement profile (9.5)
    "SupportedFileTransferProtocols": KeySpec(
        _C, "FTP,FTPS,HTTP,HTTPS", readonly=True, profile="FirmwareManagement", items=CslItems.FILE_TRANSFER
    ),
    # Security Whitepaper edition 3
    "AdditionalRootCertificateCheck": KeySpec(_B, False, readonly=True, profile="Security"),
    "AuthorizationKey": KeySpec(_S, None, secret=True, derived=True, profile="Security"),
    "CertificateSignedMaxChainSize": KeySpec(_I, 10000, readonly=True, profile="Security"),
    "CertificateStoreMaxLength": KeySpec(_I, 20, readonly=True, profile="Security"),
    "CpoName": KeySpec(_S, None, profile="Security"),
    # Raising it needs a new connection with new credentials; lowering is refused by the handler.
    "SecurityProfile": KeySpec(_I, 0, min=0, max=3, reboot_required=True, derived=True, profile="Security"),
}


def _csl_item_ok(kind: CslItems, item: str) -> bool:
    """Whether one CSL item is valid for its key."""
    if kind is CslItems.MEASURAND:
        if item in MEASURANDS_16:
            return True
        base, _, phase = item.rpartition(".")
        return phase in PHASES_16 and base in MEASURANDS_16
    if kind is CslItems.PHASE_ROTATION:
        conn, _, rotation = item.partition(".")
        return conn.isdigit() and rotation in PHASE_ROTATIONS
    if kind is CslItems.FEATURE_PROFILE:
        return item in FEATURE_PROFILES
    if kind is CslItems.CHARGING_RATE_UNIT:
        return item in CHARGING_RATE_UNITS
    if kind is CslItems.FILE_TRANSFER:
        return item in FILE_TRANSFER_PROTOCOLS
    return True


def _check_csl(spec: KeySpec, text: str) -> str:
    """Validate a CSL value and return it normalised ("a,b", no blanks)."""
    items = [item.strip() for item in text.split(",")] if text.strip() else []
    if any(not item for item in items):
        raise ValueError("empty item in comma-separated list")
    bad = [item for item in items if not _csl_item_ok(spec.items, item)]
    if bad:
        allowed = {
            CslItems.MEASURAND: "OCPP 1.6 measurands, optionally with a phase suffix (.L1, .L2-N, ...)",
            CslItems.PHASE_ROTATION: "connectorId.Rotation with Rotation in "
            + ", ".join(sorted(PHASE_ROTATIONS)),
            CslItems.FEATURE_PROFILE: ", ".join(sorted(FEATURE_PROFILES)),
            CslItems.CHARGING_RATE_UNIT: ", ".join(sorted(CHARGING_RATE_UNITS)),
            CslItems.FILE_TRANSFER: ", ".join(sorted(FILE_TRANSFER_PROTOCOLS)),
        }.get(spec.items, "")
        raise ValueError(f"invalid item(s) {', '.join(bad)}; allowed: {allowed}")
    if spec.max_items_key is not None:
        limit = OCPP16_KEYS[spec.max_items_key].default
        if isinstance(limit, int) and len(items) > limit:
            raise ValueError(f"{len(items)} items, at most {limit} ({spec.max_items_key})")
    return ",".join(items)


def _check_range(spec: KeySpec, value: int) -> int:
    """Check an int against the key's bounds."""
    if spec.min is not None and value < spec.min:
        raise ValueError(f"{value} is below the minimum {spec.min}")
    if spec.max is not None and value > spec.max:
        raise ValueError(f"{value} is above the maximum {spec.max}")
    return value


def _check_authorization_key(value: str) -> str:
    """AuthorizationKey: 16 to 40 printable ASCII characters (Security Whitepaper)."""
    if not 16 <= len(value) <= 40 or not all(33 <= ord(ch) <= 126 for ch in value):
        raise ValueError("AuthorizationKey must be 16 to 40 printable ASCII characters without spaces")
    return value


def validate_key_value(key: str, value_str: str) -> int | bool | str:
    """Validate a ChangeConfiguration value and return it typed.

    Unknown key: KeyError("NotSupported"); readonly key: PermissionError("Rejected"); bad value: ValueError.
    SecurityProfile may not be lowered: the caller knows the current value and refuses that.
    """
    spec = OCPP16_KEYS.get(key)
    if spec is None:
        raise KeyError("NotSupported")
    if spec.readonly:
        raise PermissionError("Rejected")
    if len(value_str) > MAX_VALUE_LEN:
        raise ValueError(f"value longer than {MAX_VALUE_LEN} characters")
    text = value_str.strip()
    if spec.type is KeyType.INT:
        if not re.fullmatch(r"[+-]?\d{1,18}", text):
            raise ValueError(f"{value_str!r} is not an integer")
        return _check_range(spec, int(text))
    if spec.type is KeyType.BOOL:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{value_str!r} is not true or false")
        return text.lower() == "true"
    if spec.type is KeyType.CSL:
        return _check_csl(spec, text)
    if key == "AuthorizationKey":
        return _check_authorization_key(value_str)
    return value_str


def check_typed_value(key: str, value: object) -> int | bool | str:
    """Validate an already-typed value (from the [ocpp] table) for a known key; ValueError if wrong."""
    spec = OCPP16_KEYS[key]
    if spec.type is KeyType.INT:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"expected an integer, got {_type_name(value)}")
        return _check_range(spec, value)
    if spec.type is KeyType.BOOL:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {_type_name(value)}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_type_name(value)}")
    if spec.type is KeyType.CSL:
        return _check_csl(spec, value)
    return value


def format_key_value(value: int | bool | str) -> str:
    """A typed key value as the string OCPP carries (booleans as "true"/"false")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------------------------------------------
# Line index: where each table and key is defined (tomllib gives no positions)

_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


def _parse_key(text: str, pos: int) -> tuple[list[str], int] | None:
    """Parse a dotted key at text[pos:]; return (parts, position after it) or None if there is none."""
    parts: list[str] = []
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos >= len(text):
            return None
        ch = text[pos]
        if ch in "\"'":
            end = pos + 1
            while end < len(text) and text[end] != ch:
                end += 2 if ch == '"' and text[end] == "\\" else 1
            if end >= len(text):
                return None
            raw = text[pos + 1 : end]
            parts.append(_unescape(raw) if ch == '"' else raw)
            pos = end + 1
        else:
            match = _BARE_KEY_RE.match(text, pos)
            if match is None:
                return None
            parts.append(match.group())
            pos = match.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        return parts, pos


def _unescape(raw: str) -> str:
    """Unescape a TOML basic-string key (good enough for keys; values are never read from here)."""
    try:
        parsed = tomllib.loads(f'k = "{raw}"')["k"]
    except tomllib.TOMLDecodeError:
        return raw
    return str(parsed)


def _open_multiline(text: str) -> str | None:
    """Scan a value for strings; return the delimiter of a multi-line string left open at line end."""
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch == "#":
            return None
        for delim in ('"""', "'''"):
            if text.startswith(delim, pos):
                end = _find_close(text, pos + 3, delim)
                if end < 0:
                    return delim
                pos = end + 3
                break
        else:
            if ch in "\"'":
                end = pos + 1
                while end < len(text) and text[end] != ch:
                    end += 2 if ch == '"' and text[end] == "\\" else 1
                pos = end + 1
            else:
                pos += 1
    return None


def _find_close(text: str, pos: int, delim: str) -> int:
    """Index of the closing multi-line delimiter in text[pos:], or -1."""
    while True:
        idx = text.find(delim, pos)
        if idx < 0:
            return -1
        if delim == '"""':
            backslashes = len(text[:idx]) - len(text[:idx].rstrip("\\"))
            if backslashes % 2:
                pos = idx + 1
                continue
        return idx


class _LineIndex:
    """Maps key paths to the 1-based line that defines them, tracking [table] and [[array]] indices."""

    def __init__(self, text: str) -> None:
        self.lines: dict[Path_, int] = {}
        self.arrays: dict[Path_, int] = {}
        self.last_line = max(1, text.count("\n") + 1)
        self._scan(text)

    def _resolve(self, names: list[str]) -> Path_:
        """Insert the current index after each name that is an array of tables."""
        path: Path_ = ()
        for name in names:
            path = (*path, name)
            if path in self.arrays:
                path = (*path, self.arrays[path] - 1)
        return path

    def _scan(self, text: str) -> None:
        table: Path_ = ()
        open_delim: str | None = None
        for lineno, line in enumerate(text.splitlines(), start=1):
            if open_delim is not None:
                end = _find_close(line, 0, open_delim)
                if end < 0:
                    continue
                rest = line[end + 3 :]
                open_delim = _open_multiline(rest)
                continue
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("[["):
                parsed = _parse_key(stripped, 2)
                if parsed is not None:
                    parent = self._resolve(parsed[0][:-1])
                    array = (*parent, parsed[0][-1])
                    self.arrays[array] = self.arrays.get(array, 0) + 1
                    table = (*array, self.arrays[array] - 1)
                    self.lines.setdefault(array, lineno)
                    self.lines[table] = lineno
                continue
            if stripped.startswith("["):
                parsed = _parse_key(stripped, 1)
                if parsed is not None:
                    table = self._resolve(parsed[0])
                    self.lines.setdefault(table, lineno)
                continue
            parsed = _parse_key(stripped, 0)
            if parsed is None or parsed[1] >= len(stripped) or stripped[parsed[1]] != "=":
                continue
            parts = parsed[0]
            for depth in range(1, len(parts) + 1):
                self.lines.setdefault((*table, *parts[:depth]), lineno)
            open_delim = _open_multiline(stripped[parsed[1] + 1 :])

    def line_of(self, path: Path_) -> int | None:
        """The line of the path, else of its closest defined parent, else None."""
        for depth in range(len(path), 0, -1):
            line = self.lines.get(path[:depth])
            if line is not None:
                return line
        return None


def format_path(path: Path_) -> str:
    """("connectors", 0, "meter") -> "connectors[0].meter"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _type_name(value: object) -> str:
    """TOML-ish name of a parsed value's type, for messages."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


# ---------------------------------------------------------------------------------------------------------
# Validation


class _Problems:
    """Collects "FILE:LINE: path: reason" problems so one run reports them all."""

    def __init__(self, source: str, index: _LineIndex) -> None:
        self.source = source
        self.index = index
        self.items: list[tuple[int, int, str]] = []

    def add(self, path: Path_, reason: str, line: int | None = None) -> None:
        """Record a problem at the line of path (or the given line)."""
        if line is None:
            line = self.index.line_of(path)
        where = f"{self.source}:{line}" if line is not None else self.source
        label = format_path(path)
        message = f"{where}: {label}: {reason}" if label else f"{where}: {reason}"
        self.items.append((line if line is not None else 0, len(self.items), message))

    def raise_if_any(self) -> None:
        """Raise ConfigError listing every problem by line."""
        if self.items:
            messages = [message for _, _, message in sorted(self.items)]
            raise ConfigError("\n".join(messages), messages)


_MISSING = object()


class _Table:
    """Typed access to one TOML table; remembers the keys read so unknown ones can be refused."""

    def __init__(
        self, data: Mapping[str, Any], path: Path_, problems: _Problems, allowed: tuple[str, ...]
    ) -> None:
        self.data = data
        self.path = path
        self.problems = problems
        self.allowed = allowed
        self.absent = False
        self.check_unknown()

    def check_unknown(self) -> None:
        """Refuse keys that are not in the schema, suggesting the closest allowed one."""
        for key in self.data:
            if key not in self.allowed:
                close = difflib.get_close_matches(key, self.allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.problems.add(
                    (*self.path, key), f"unknown key{hint}; allowed keys: {', '.join(self.allowed)}"
                )

    def _get(self, key: str, required: bool) -> Any:
        value = self.data.get(key, _MISSING)
        if value is _MISSING and required and not self.absent:
            self.problems.add((*self.path, key), "missing required key")
        return value

    def _bad(self, key: str, expected: str, value: Any) -> None:
        self.problems.add((*self.path, key), f"expected {expected}, got {_type_name(value)}")

    def string(
        self, key: str, default: str | None = None, *, required: bool = False, max_len: int = 0
    ) -> str:
        """A string; an empty string is kept as is."""
        value = self._get(key, required)
        if value is _MISSING:
            return default or ""
        if not isinstance(value, str):
            self._bad(key, "a string", value)
            return default or ""
        if max_len and len(value) > max_len:
            self.problems.add((*self.path, key), f"longer than {max_len} characters ({len(value)})")
        if required and not value:
            self.problems.add((*self.path, key), "must not be empty")
        return value

    def opt_string(self, key: str, max_len: int = 0) -> str | None:
        """An optional string; absent or "" gives None."""
        value = self.string(key, None, max_len=max_len)
        return value or None

    def integer(
        self,
        key: str,
        default: int = 0,
        *,
        required: bool = False,
        lo: int | None = None,
        hi: int | None = None,
    ) -> int:
        """An integer (a boolean is not an integer) within [lo, hi]."""
        value = self._get(key, required)
        if value is _MISSING:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            self._bad(key, "an integer", value)
            return default
        self._range(key, value, lo, hi)
        return value

    def number(
        self,
        key: str,
        default: float = 0.0,
        *,
        required: bool = False,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
    ) -> float:
        """A float or integer (not a boolean), finite, within bounds; lo_open makes lo exclusive."""
        value = self._get(key, required)
        if value is _MISSING:
            return default
        if not isinstance(value, int | float) or isinstance(value, bool):
            self._bad(key, "a number", value)
            return default
        if not math.isfinite(value):
            self.problems.add((*self.path, key), f"must be a finite number, got {value}")
            return default
        if lo_open and lo is not None and value <= lo:
            self.problems.add((*self.path, key), f"must be > {lo:g}, got {value:g}")
        else:
            self._range(key, value, lo, hi)
        return float(value)

    def _range(self, key: str, value: float, lo: float | None, hi: float | None) -> None:
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = (
                f"{lo:g}..{hi:g}"
                if lo is not None and hi is not None
                else (f">= {lo:g}" if lo is not None else f"<= {hi:g}")
            )
            self.problems.add((*self.path, key), f"must be {bounds}, got {value:g}")

    def table(self, key: str, *, required: bool = False) -> Mapping[str, Any] | None:
        """A sub-table, or None if absent (or wrong)."""
        value = self._get(key, required)
        if value is _MISSING:
            return None
        if not isinstance(value, dict):
            self._bad(key, "a table", value)
            return None
        return value


_TOP_KEYS = (
    "charge_point",
    "backoffice",
    "state",
    "diag",
    "gpio",
    "hardware",
    "firmware",
    "ocpp",
    "estop",
    "rfid",
    "connectors",
)
_CHARGE_POINT_KEYS = ("id", "vendor", "model", "serial_number", "firmware_version")
_BACKOFFICE_KEYS = (
    "url",
    "ocpp_version",
    "security_profile",
    "authorization_key_file",
    "ca_file",
    "client_cert_file",
    "client_key_file",
    "ping_interval_s",
    "response_timeout_s",
    "reconnect_min_s",
    "reconnect_max_s",
)
_STATE_KEYS = ("directory", "max_queue_bytes")
_DIAG_KEYS = ("socket", "group")
_GPIO_KEYS = ("pin_factory", "sim_address")
_HARDWARE_KEYS = ("poll_interval_s", "device_silent_suspend_s", "device_silent_stop_s", "meter_replaced_after_s")
_FIRMWARE_KEYS = ("installer", "download_dir", "max_bytes")
_CONNECTOR_KEYS = (
    "id",
    "kind",
    "max_current_a",
    "phases",
    "voltage_v",
    "free_vend_id_tag",
    "meter",
    "dc_controller",
    "contactor",
    "lock",
    "indicator",
)
_DEFAULT_VOLTAGE_V = {ConnectorKind.AC: 230.0, ConnectorKind.DC: 400.0}


class _Validator:
    """Turns the parsed TOML document into an AgentConfig, collecting problems."""

    def __init__(self, doc: dict[str, Any], problems: _Problems) -> None:
        self.doc = doc
        self.p = problems
        self.known_drivers = known_names()
        self.devices: list[tuple[Path_, DeviceConfig]] = []  # every valid device table, for the pin check

    def sub(self, root: _Table, key: str, allowed: tuple[str, ...], *, required: bool = False) -> _Table:
        """The named sub-table of root as a _Table (empty if absent)."""
        data = root.table(key, required=required)
        table = _Table(data or {}, (*root.path, key), self.p, allowed)
        table.absent = data is None  # one "missing table" problem, not one per required key
        return table

    def build(self) -> AgentConfig:
        root = _Table(self.doc, (), self.p, _TOP_KEYS)
        charge_point = self.charge_point(self.sub(root, "charge_point", _CHARGE_POINT_KEYS, required=True))
        backoffice = self.backoffice(self.sub(root, "backoffice", _BACKOFFICE_KEYS, required=True))
        state = self.state(self.sub(root, "state", _STATE_KEYS, required=True))
        diag_t = self.sub(root, "diag", _DIAG_KEYS)
        diag = DiagConfig(
            socket=diag_t.string("socket", DiagConfig.socket), group=diag_t.string("group", DiagConfig.group)
        )
        if not os.path.isabs(diag.socket):
            self.p.add(("diag", "socket"), f"must be an absolute path, got {diag.socket!r}")
        elif len(os.fsencode(diag.socket)) > SUN_PATH_MAX:
            self.p.add(("diag", "socket"), f"a Unix socket path is at most {SUN_PATH_MAX} bytes")
        gpio_t = self.sub(root, "gpio", _GPIO_KEYS)
        pin_factory = gpio_t.opt_string("pin_factory")
        if pin_factory is not None and pin_factory not in PIN_FACTORIES:
            self.p.add(
                ("gpio", "pin_factory"),
                f"unknown pin factory {pin_factory!r}; known: "
                f"{', '.join(PIN_FACTORIES)} (or leave it out for gpiozero's default)",
            )
        sim_address = gpio_t.opt_string("sim_address")
        if sim_address is not None:
            host, _, port = sim_address.rpartition(":")
            if pin_factory != "evsesim":
                self.p.add(("gpio", "sim_address"), 'only used with pin_factory = "evsesim"')
            elif not host or not port.isdigit() or not 0 < int(port) < 65536:
                self.p.add(("gpio", "sim_address"), f"must be host:port, got {sim_address!r}")
        hw_t = self.sub(root, "hardware", _HARDWARE_KEYS)
        hardware = HardwareConfig(
            poll_interval_s=hw_t.number(
                "poll_interval_s", HardwareConfig.poll_interval_s, lo=0.0, lo_open=True, hi=60.0
            ),
            device_silent_suspend_s=hw_t.number(
                "device_silent_suspend_s", HardwareConfig.device_silent_suspend_s, lo=0.0, hi=60.0
            ),
            device_silent_stop_s=hw_t.number(
                "device_silent_stop_s", HardwareConfig.device_silent_stop_s, lo=0.0, hi=3600.0
            ),
            meter_replaced_after_s=hw_t.number(
                "meter_replaced_after_s", HardwareConfig.meter_replaced_after_s, lo=1.0, hi=86400.0
            ),
        )
        if hardware.meter_replaced_after_s < hardware.device_silent_stop_s + 2 * hardware.poll_interval_s:
            # the transaction must have ended (device silent too long) a poll or two before the baseline moves
            self.p.add(("hardware", "meter_replaced_after_s"),
                       f"must be at least device_silent_stop_s + 2 poll intervals "
                       f"({hardware.device_silent_stop_s + 2 * hardware.poll_interval_s:g})")
        if hardware.device_silent_stop_s < hardware.device_silent_suspend_s:
            self.p.add(("hardware", "device_silent_stop_s"),
                       f"must be at least device_silent_suspend_s ({hardware.device_silent_suspend_s})")
        fw_t = self.sub(root, "firmware", _FIRMWARE_KEYS)
        firmware = FirmwareConfig(
            installer=fw_t.string("installer", FirmwareConfig.installer),
            download_dir=fw_t.string("download_dir", FirmwareConfig.download_dir),
            max_bytes=fw_t.integer("max_bytes", FirmwareConfig.max_bytes, lo=1),
        )
        if firmware.download_dir and not os.path.isabs(firmware.download_dir):
            self.p.add(("firmware", "download_dir"), f"must be an absolute path, got {firmware.download_dir!r}")
        ocpp = self.ocpp(root.table("ocpp") or {})
        estop = self.device(root, "estop", ())
        rfid = self.device(root, "rfid", ())
        connectors = self.connectors(root)
        self.check_pins_and_addresses()
        return AgentConfig(
            charge_point=charge_point,
            backoffice=backoffice,
            state=state,
            diag=diag,
            gpio=GpioConfig(pin_factory, sim_address),
            hardware=hardware,
            firmware=firmware,
            ocpp=ocpp,
            estop=estop,
            rfid=rfid,
            connectors=connectors,
        )

    def charge_point(self, t: _Table) -> ChargePointConfig:
        cp_id = t.string("id", required=True)
        if cp_id and (not CHARGE_POINT_ID_RE.fullmatch(cp_id) or cp_id in (".", "..")):
            t.problems.add(
                ("charge_point", "id"),
                f"{cp_id!r} must be 1 to 48 characters of A-Z a-z 0-9 . _ - "
                "(it is the last path segment of the back-office URL)",
            )
        return ChargePointConfig(
            id=cp_id,
            vendor=t.string("vendor", required=True, max_len=20),
            model=t.string("model", required=True, max_len=20),
            serial_number=t.opt_string("serial_number", max_len=25),
            firmware_version=t.string("firmware_version", PACKAGE_VERSION, max_len=50) or PACKAGE_VERSION,
        )

    def backoffice(self, t: _Table) -> BackofficeConfig:
        url = t.string("url", required=True)
        if url:
            self.check_url(url)
        version_raw = t.string("ocpp_version", OcppVersion.V16.value)
        try:
            version = OcppVersion(version_raw)
        except ValueError:
            self.p.add(("backoffice", "ocpp_version"), f'must be "1.6" or "2.0.1", got {version_raw!r}')
            version = OcppVersion.V16
        if version is OcppVersion.V201:
            # refused rather than silently spoken as 1.6: the 2.0.1 adapter is not part of this release
            self.p.add(("backoffice", "ocpp_version"), 'OCPP 2.0.1 is not implemented yet in this release; use "1.6"')
        profile = t.integer("security_profile", 0, lo=0, hi=3)
        cfg = BackofficeConfig(
            url=url,
            ocpp_version=version,
            security_profile=profile,
            authorization_key_file=t.opt_string("authorization_key_file"),
            ca_file=t.opt_string("ca_file"),
            client_cert_file=t.opt_string("client_cert_file"),
            client_key_file=t.opt_string("client_key_file"),
            ping_interval_s=t.number("ping_interval_s", 10.0, lo=0.0, hi=3600.0),
            response_timeout_s=t.number("response_timeout_s", 30.0, lo=0.0, lo_open=True, hi=600.0),
            reconnect_min_s=t.number("reconnect_min_s", 1.0, lo=0.0, lo_open=True, hi=3600.0),
            reconnect_max_s=t.number("reconnect_max_s", 60.0, lo=0.0, lo_open=True, hi=86400.0),
        )
        if cfg.reconnect_max_s < cfg.reconnect_min_s:
            self.p.add(
                ("backoffice", "reconnect_max_s"), f"must be >= reconnect_min_s ({cfg.reconnect_min_s:g})"
            )
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if profile in (2, 3) and scheme == "ws":
            self.p.add(("backoffice", "url"), f"security profile {profile} needs TLS: use wss://")
        if profile == 1 and scheme == "wss":
            self.p.add(
                ("backoffice", "url"),
                "security profile 1 is Basic auth without TLS (ws://); use security_profile = 2 for wss://",
            )
        if profile in (1, 2) and cfg.authorization_key_file is None:
            self.p.add(
                (
                    "backoffice",
                    "authorization_key_file" if "authorization_key_file" in t.data else "security_profile",
                ),
                f"security profile {profile} needs authorization_key_file (Basic auth password)",
            )
        if profile == 3:
            for key in ("client_cert_file", "client_key_file"):
                if getattr(cfg, key) is None:
                    self.p.add(
                        ("backoffice", key if key in t.data else "security_profile"),
                        f"security profile 3 needs {key} (TLS client certificate)",
                    )
        for key in ("authorization_key_file", "ca_file", "client_cert_file", "client_key_file"):
            value = getattr(cfg, key)
            if value is not None and not os.path.isabs(value):
                self.p.add(("backoffice", key), f"must be an absolute path, got {value!r}")
        return cfg

    def check_url(self, url: str) -> None:
        try:
            parts = urllib.parse.urlsplit(url)
            _ = parts.port  # raises ValueError on a bad port
        except ValueError as err:
            self.p.add(("backoffice", "url"), f"invalid URL {url!r}: {err}")
            return
        if parts.scheme.lower() not in ("ws", "wss"):
            self.p.add(("backoffice", "url"), f"scheme must be ws:// or wss://, got {url!r}")
        elif not parts.hostname:
            self.p.add(("backoffice", "url"), f"no host in {url!r}")
        elif parts.query or parts.fragment:
            self.p.add(
                ("backoffice", "url"),
                "must have no ?query or #fragment: the charge point id is appended as the last path segment",
            )
        elif parts.username or parts.password:
            self.p.add(("backoffice", "url"), "must carry no credentials; use authorization_key_file")

    def state(self, t: _Table) -> StateConfig:
        directory = t.string("directory", required=True)
        if directory and not os.path.isabs(directory):
            self.p.add(("state", "directory"), f"must be an absolute path, got {directory!r}")
        return StateConfig(
            directory=directory, max_queue_bytes=t.integer("max_queue_bytes", MAX_QUEUE_BYTES, lo=1)
        )

    def ocpp(self, data: Mapping[str, Any]) -> dict[str, int | bool | str]:
        out: dict[str, int | bool | str] = {}
        settable = tuple(k for k, s in OCPP16_KEYS.items() if not s.readonly and not s.derived)
        for key, value in data.items():
            path = ("ocpp", key)
            spec = OCPP16_KEYS.get(key)
            if spec is None:
                close = difflib.get_close_matches(key, settable, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.p.add(
                    path, f"unknown OCPP 1.6 configuration key{hint}; known keys: {', '.join(settable)}"
                )
                continue
            if spec.readonly:
                self.p.add(path, "readonly key: the charge point reports it, it cannot be configured")
                continue
            if spec.derived:
                source = {
                    "AuthorizationKey": "backoffice.authorization_key_file",
                    "SecurityProfile": "backoffice.security_profile",
                }.get(key, "the hardware")
                self.p.add(path, f"set from {source}, not here")
                continue
            try:
                out[key] = check_typed_value(key, value)
            except ValueError as err:
                self.p.add(path, str(err))
        return out

    def device(
        self, parent: _Table, key: str, prefix: Path_, *, required: bool = False
    ) -> DeviceConfig | None:
        data = parent.table(key, required=required)
        if data is None:
            return None
        path = (*prefix, key)
        driver = data.get("driver", _MISSING)
        if driver is _MISSING:
            self.p.add(
                (*path, "driver"), f"missing required key; known drivers: {', '.join(self.known_drivers)}"
            )
            return None
        if not isinstance(driver, str):
            self.p.add((*path, "driver"), f"expected a string, got {_type_name(driver)}")
            return None
        if driver not in self.known_drivers:
            close = difflib.get_close_matches(driver, self.known_drivers, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.p.add(
                (*path, "driver"),
                f"unknown driver {driver!r}{hint}; known drivers: {', '.join(self.known_drivers)}",
            )
            return None
        device = DeviceConfig(driver, dict(data))
        self.devices.append((path, device))
        return device

    def connectors(self, root: _Table) -> tuple[ConnectorConfig, ...]:
        raw = root.data.get("connectors", _MISSING)
        if raw is _MISSING or raw == []:
            self.p.add(("connectors",), "at least one [[connectors]] table is required")
            return ()
        if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
            self.p.add(("connectors",), "must be an array of tables ([[connectors]])")
            return ()
        result: list[ConnectorConfig] = []
        seen: dict[int, int] = {}
        for index, item in enumerate(raw):
            conn = self.connector(_Table(item, ("connectors", index), self.p, _CONNECTOR_KEYS))
            if conn is None:
                continue
            if conn.id in seen:
                self.p.add(
                    ("connectors", index, "id"),
                    f"duplicate connector id {conn.id} (also connectors[{seen[conn.id]}])",
                )
                continue
            seen[conn.id] = index
            result.append(conn)
        expected = range(1, len(raw) + 1)
        for conn_id, index in seen.items():
            if conn_id not in expected:
                missing = sorted(set(expected) - set(seen))
                self.p.add(
                    ("connectors", index, "id"),
                    f"connector ids must be 1..{len(raw)} without gaps; "
                    f"{conn_id} is out of range (missing: {', '.join(map(str, missing))})",
                )
        return tuple(sorted(result, key=lambda c: c.id))

    def connector(self, t: _Table) -> ConnectorConfig | None:
        conn_id = t.integer("id", required=True, lo=1)
        kind_raw = t.string("kind", required=True)
        kind: ConnectorKind | None = None
        if kind_raw:
            try:
                kind = ConnectorKind(kind_raw)
            except ValueError:
                self.p.add((*t.path, "kind"), f'must be "ac" or "dc", got {kind_raw!r}')
        max_current_a = t.number("max_current_a", required=True, lo=0.0, lo_open=True, hi=1000.0)
        phases = t.integer("phases", 3)
        if phases not in (1, 3):
            self.p.add((*t.path, "phases"), f"must be 1 or 3, got {phases}")
        voltage_v = t.number(
            "voltage_v",
            _DEFAULT_VOLTAGE_V.get(kind or ConnectorKind.AC, 230.0),
            lo=0.0,
            lo_open=True,
            hi=1500.0,
        )
        free_vend = t.opt_string("free_vend_id_tag", max_len=20)
        meter = self.device(t, "meter", t.path, required=True)
        contactor = self.device(t, "contactor", t.path, required=True)
        dc_controller = self.device(t, "dc_controller", t.path)
        if kind is ConnectorKind.DC and "dc_controller" not in t.data:
            self.p.add((*t.path, "kind"), "a DC connector needs a [connectors.dc_controller] table")
        if kind is ConnectorKind.AC and "dc_controller" not in t.data:
            # IEC 61851: the control pilot is how an AC charger sees the EV plug in and become ready and how
            # it offers a current; without it no session could ever start (RemoteStart would hang).
            self.p.add((*t.path, "kind"), "an AC connector needs a [connectors.dc_controller] table: its "
                       'IEC 61851 pilot board (driver "modbus_dc", the generic controller register map)')
        lock = self.device(t, "lock", t.path)
        indicator = self.device(t, "indicator", t.path)
        if kind is None or meter is None or contactor is None or conn_id < 1:
            return None
        return ConnectorConfig(
            id=conn_id,
            kind=kind,
            max_current_a=max_current_a,
            meter=meter,
            contactor=contactor,
            phases=phases,
            voltage_v=voltage_v,
            free_vend_id_tag=free_vend,
            dc_controller=dc_controller,
            lock=lock,
            indicator=indicator,
        )

    def check_pins_and_addresses(self) -> None:
        """A GPIO pin, or a (bus URL, device id) pair, belongs to one device; the later one is refused."""
        pins: dict[int | str, Path_] = {}
        addresses: dict[tuple[str, object], Path_] = {}
        in_file_order = sorted(self.devices, key=lambda item: self.p.index.line_of(item[0]) or 0)
        for path, device in in_file_order:
            for key, value in device.options.items():
                if key == "pin" or key.endswith("_pin"):
                    pin = _normalise_pin(value)
                    if pin is None:
                        continue  # the driver refuses a malformed pin with its own message
                    where = (*path, key)
                    if pin in pins:
                        first = pins[pin]
                        self.p.add(
                            where,
                            f"pin {value!r} is already used by {format_path(first)} "
                            f"(line {self.p.index.line_of(first)})",
                        )
                    else:
                        pins[pin] = where
            url, device_id = device.options.get("url"), device.options.get("device_id", 1)
            if isinstance(url, str) and not isinstance(device_id, list | dict):  # the driver refuses those
                address = (url, device_id)
                if address in addresses:
                    first = addresses[address]
                    self.p.add(
                        (*path, "url"),
                        f"{url} device_id {device_id} is already used by "
                        f"{format_path(first)} (line {self.p.index.line_of(first)})",
                    )
                else:
                    addresses[address] = path


def _normalise_pin(value: object) -> int | str | None:
    """BCM number for 17, "17", "GPIO17", "BCM17"; other strings (e.g. "BOARD11") as they are."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"(?i)(?:gpio|bcm)?(\d+)", value.strip())
        return int(match.group(1)) if match else value.strip().upper()
    return None


def parse_config(text: str, source: str = "<config>") -> AgentConfig:
    """Parse and validate config text; raise ConfigError("FILE:LINE: key.path: reason") on any problem."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        match = re.search(r"\(at line (\d+), column (\d+)\)$", message)
        if match:
            reason = message[: match.start()].rstrip()
            raise ConfigError(f"{source}:{match.group(1)}:{match.group(2)}: invalid TOML: {reason}") from None
        match = re.search(r"\(at end of document\)$", message)
        line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
        reason = message[: match.start()].rstrip() if match else message
        raise ConfigError(f"{source}:{line}: invalid TOML: {reason} (at end of document)") from None
    index = _LineIndex(text)
    problems = _Problems(source, index)
    cfg = _Validator(doc, problems).build()
    problems.raise_if_any()
    return cfg


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate the config file at path."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file: {err.strerror or err}") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: invalid TOML: not UTF-8 ({err.reason})") from err
    cfg = parse_config(text, str(path))
    LOGGER.info("config %s: charge point %s, %d connector(s)", path, cfg.charge_point.id, len(cfg.connectors))
    return cfg


# ---------------------------------------------------------------------------------------------------------
# Writer: a small TOML emitter for this schema (tomllib cannot write)


def _toml_key(key: str) -> str:
    """A bare key if possible, else a quoted one."""
    return key if _BARE_KEY_RE.fullmatch(key) else _toml_str(key)


def _toml_str(value: str) -> str:
    """A TOML basic string with every control character escaped."""
    out = []
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    """One TOML value: string, bool, int, float, date/time, array or inline table."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # repr round-trips exactly and always has "." or "e"
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _emit_table(lines: list[str], header: str, values: Mapping[str, Any]) -> None:
    """Emit "[header]" and key = value lines; None values are left out."""
    lines.append("")
    lines.append(header)
    for key, value in values.items():
        if value is not None:
            lines.append(f"{_toml_key(key)} = {toml_value(value)}")


def _dataclass_values(obj: Any) -> dict[str, Any]:
    """Field name -> value of a dataclass instance."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def config_to_toml(cfg: AgentConfig) -> str:
    """The config as TOML text that parse_config reads back to an equal AgentConfig."""
    lines = ["# evse-agent configuration (written by config_to_toml); see docs/config.md"]
    _emit_table(lines, "[charge_point]", _dataclass_values(cfg.charge_point))
    _emit_table(lines, "[backoffice]", _dataclass_values(cfg.backoffice))
    _emit_table(lines, "[state]", _dataclass_values(cfg.state))
    _emit_table(lines, "[diag]", _dataclass_values(cfg.diag))
    if cfg.gpio.pin_factory is not None:
        _emit_table(lines, "[gpio]", _dataclass_values(cfg.gpio))
    _emit_table(lines, "[hardware]", _dataclass_values(cfg.hardware))
    if cfg.firmware != FirmwareConfig():
        _emit_table(lines, "[firmware]", _dataclass_values(cfg.firmware))
    if cfg.ocpp:
        _emit_table(lines, "[ocpp]", cfg.ocpp)
    if cfg.estop is not None:
        _emit_table(lines, "[estop]", cfg.estop.options)
    if cfg.rfid is not None:
        _emit_table(lines, "[rfid]", cfg.rfid.options)
    roles = ("meter", "dc_controller", "contactor", "lock", "indicator")
    for conn in cfg.connectors:
        scalars = {k: v for k, v in _dataclass_values(conn).items() if k not in roles}
        _emit_table(lines, "[[connectors]]", scalars)
        for role in roles:
            device = getattr(conn, role)
            if device is not None:
                _emit_table(lines, f"[connectors.{role}]", device.options)
    return "\n".join(lines) + "\n"


def write_config(cfg: AgentConfig, path: str | Path) -> None:
    """Write the config to path atomically (temp file + rename), after checking it reads back equal."""
    text = config_to_toml(cfg)
    if parse_config(text, str(path)) != cfg:
        raise ConfigError(f"{path}: config does not survive a write/read round trip")
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
