"""The config schema: frozen dataclasses for each table of the TOML file, and its enums."""

from __future__ import annotations

import enum
import importlib.metadata
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from agent.cardid import CardIdFormat
from agent.config.ocpp16_keys import OCPP16_KEYS
from agent.config.redaction import redact

DEFAULT_CONFIG_PATH = "/etc/evse-agent/agent.toml"
MAX_QUEUE_BYTES = 50_000_000  # 50 MB: a week offline at 1 sample/min on 2 connectors is ~10 MB


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
class OperationsConfig:
    """The operations ledger (docs/operations.md): upstream reports, the problem button, service intervals."""

    vendor_id: str = "org.evse-agent"  # DataTransfer vendorId of the reports (OCPP 1.6)
    problem_button_pin: int | None = None  # a push button for drivers' "report a problem" (BCM pin)
    contactor_service_interval: float = 100_000.0  # contactor operations (a typical AC-1 electrical endurance)
    connector_service_interval: float = 10_000.0  # plug-in cycles (IEC 62196-1 mechanical endurance)
    lock_service_interval: float = 50_000.0  # lock cycles
    station_service_interval: float = 0.0  # hours with a contactor closed before an inspection; 0 = none


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
    insulation_monitor: DeviceConfig | None = None  # DC: an IMD on the output (docs/dc-safety.md)
    # DC: whose measurement the cable check before the contactor closes trusts: the DC controller's isolation
    # result ("controller") or the insulation monitor's own ("imd")
    cable_check: str = "controller"


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
    operations: OperationsConfig = field(default_factory=OperationsConfig)
    ocpp: dict[str, int | bool | str] = field(default_factory=dict)
    estop: DeviceConfig | None = None
    rfid: DeviceConfig | None = None
    connectors: tuple[ConnectorConfig, ...] = ()
    card_id: CardIdFormat = field(default_factory=CardIdFormat)  # [card_id]: how a UID becomes the idTag

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
        return redact(plain)


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
