"""OCPP 2.0.1 device model: components and variables as one table, mapped onto `Settings` and persisted.

The controllers' variables are data (`CATALOGUE`); the station, every EVSE (one per connector) and every connector
are added from the `AgentConfig`. Names follow the 2.0.1 specification, Part 2 appendix 3 ("Referenced Components
and Variables"). The vocabulary's names (technician CLI, diagnostics, guards) are written
`Component.Variable`, with an EVSE or connector as `EVSE[1].Power` / `Connector[1,1].ConnectorType`, a component
instance as `Component(instance)`, a variable instance as `Variable[instance]`, and an attribute other than
Actual as a suffix `@MaxSet`.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.config import AgentConfig
from agent.ports import ChangeResult
from agent.settings import TX_POINTS, PublishedSettings, Settings, parse_csl
from agent.store import Store

LOGGER = logging.getLogger(__name__)

__all__ = ["CATALOGUE", "DeviceModel", "VariableSpec", "split_report", "station_variables"]

KEY_PREFIX = "ocpp201."  # rows in the store's config table (1.6 uses "ocpp16.")


class Attr(enum.StrEnum):
    """AttributeEnumType."""

    ACTUAL = "Actual"
    TARGET = "Target"
    MIN_SET = "MinSet"
    MAX_SET = "MaxSet"


class DataType(enum.StrEnum):
    """DataEnumType."""

    STRING = "string"
    DECIMAL = "decimal"
    INTEGER = "integer"
    DATETIME = "dateTime"
    BOOLEAN = "boolean"
    OPTION_LIST = "OptionList"
    SEQUENCE_LIST = "SequenceList"
    MEMBER_LIST = "MemberList"


class Mutability(enum.StrEnum):
    """MutabilityEnumType."""

    READ_ONLY = "ReadOnly"
    WRITE_ONLY = "WriteOnly"
    READ_WRITE = "ReadWrite"


class Status(enum.StrEnum):
    """GetVariableStatusEnumType and SetVariableStatusEnumType."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_COMPONENT = "UnknownComponent"
    UNKNOWN_VARIABLE = "UnknownVariable"
    NOT_SUPPORTED_ATTRIBUTE_TYPE = "NotSupportedAttributeType"
    REBOOT_REQUIRED = "RebootRequired"


_I, _D, _B, _S = DataType.INTEGER, DataType.DECIMAL, DataType.BOOLEAN, DataType.STRING
_RO, _WO, _RW = Mutability.READ_ONLY, Mutability.WRITE_ONLY, Mutability.READ_WRITE
_LISTS = (DataType.OPTION_LIST, DataType.SEQUENCE_LIST, DataType.MEMBER_LIST)


@dataclass(frozen=True, slots=True)
class VariableSpec:
    """One variable of one component: its attributes, characteristics, default and the setting it feeds."""

    component: str
    variable: str
    data_type: DataType
    default: str | None  # the Actual value as sent on the wire; None: no value (a secret, or unknown until set)
    mutability: Mutability = _RW
    persistent: bool = True
    constant: bool = False
    unit: str | None = None
    min_limit: float | None = None
    max_limit: float | None = None  # for strings and lists: the longest (CSV) string
    values_list: tuple[str, ...] = ()
    supports_monitoring: bool = False
    setting: str | None = None  # the `Settings` field it maps to, if any
    reboot_required: bool = False  # SetVariables answers RebootRequired: read at start only
    non_empty: bool = False  # a list that must name at least one item
    secret: bool = False  # never stored in the config table, never read back: handed to secret_setter
    component_instance: str | None = None
    variable_instance: str | None = None
    evse_id: int | None = None
    connector_id: int | None = None
    extra_attributes: Mapping[Attr, str] = field(default_factory=dict)  # e.g. MaxSet: a hardware limit (constant)

    @property
    def component_key(self) -> str:
        """The component's part of the vocabulary name."""
        name = self.component
        if self.evse_id is not None:
            name += f"[{self.evse_id}]" if self.connector_id is None else f"[{self.evse_id},{self.connector_id}]"
        if self.component_instance is not None:
            name += f"({self.component_instance})"
        return name

    @property
    def key(self) -> str:
        """The vocabulary name of the variable (its Actual attribute)."""
        name = f"{self.component_key}.{self.variable}"
        return name if self.variable_instance is None else f"{name}[{self.variable_instance}]"

    @property
    def attributes(self) -> tuple[Attr, ...]:
        """The attribute types this variable has."""
        return (Attr.ACTUAL, *self.extra_attributes)

    def component_json(self) -> dict[str, Any]:
        """ComponentType."""
        out: dict[str, Any] = {"name": self.component}
        if self.component_instance is not None:
            out["instance"] = self.component_instance
        if self.evse_id is not None:
            out["evse"] = {"id": self.evse_id} if self.connector_id is None else {
                "id": self.evse_id, "connectorId": self.connector_id}
        return out

    def variable_json(self) -> dict[str, Any]:
        """VariableType."""
        out: dict[str, Any] = {"name": self.variable}
        if self.variable_instance is not None:
            out["instance"] = self.variable_instance
        return out

    def characteristics_json(self) -> dict[str, Any]:
        """VariableCharacteristicsType."""
        out: dict[str, Any] = {"dataType": str(self.data_type), "supportsMonitoring": self.supports_monitoring}
        if self.unit is not None:
            out["unit"] = self.unit
        if self.min_limit is not None:
            out["minLimit"] = self.min_limit
        if self.max_limit is not None:
            out["maxLimit"] = self.max_limit
        if self.values_list:
            out["valuesList"] = ",".join(self.values_list)
        return out


def _v(component: str, variable: str, data_type: DataType, default: str | None, **kw: Any) -> VariableSpec:
    return VariableSpec(component, variable, data_type, default, **kw)


# MeasurandEnumType of 2.0.1 (the same names as 1.6's, plus a few)
MEASURANDS = (
    "Current.Export", "Current.Import", "Current.Offered", "Energy.Active.Export.Register",
    "Energy.Active.Import.Register", "Energy.Reactive.Export.Register", "Energy.Reactive.Import.Register",
    "Energy.Active.Export.Interval", "Energy.Active.Import.Interval", "Energy.Active.Net",
    "Energy.Reactive.Export.Interval", "Energy.Reactive.Import.Interval", "Energy.Reactive.Net",
    "Energy.Apparent.Net", "Energy.Apparent.Import", "Energy.Apparent.Export", "Frequency", "Power.Active.Export",
    "Power.Active.Import", "Power.Factor", "Power.Offered", "Power.Reactive.Export", "Power.Reactive.Import", "SoC",
    "Voltage",
)
AVAILABILITY_STATES = ("Available", "Occupied", "Reserved", "Unavailable", "Faulted")
TIME_SOURCES = ("Heartbeat", "NTP", "GPS", "RealTimeClock", "MobileNetwork", "RadioTimeTransmitter")
MONITORING_BASES = ("All", "FactoryDefault", "HardWiredOnly")
NETWORK_SLOTS = ("0", "1", "2")  # configuration slots SetNetworkProfile may fill; slot 0 is the config file's
_MEAS: dict[str, Any] = {"data_type": DataType.MEMBER_LIST, "values_list": MEASURANDS, "max_limit": 1000}
_ENERGY = "Energy.Active.Import.Register"

# The controllers' variables (Part 2 appendix 3). Mutability follows the spec's "required" column where we
# remember it; limits the agent itself imposes (store sizes, message sizes) are ReadOnly.
CATALOGUE: tuple[VariableSpec, ...] = (
    # OCPPCommCtrlr
    _v("OCPPCommCtrlr", "HeartbeatInterval", _I, "300", unit="s", min_limit=1, setting="heartbeat_interval_s"),
    _v("OCPPCommCtrlr", "MessageTimeout", _I, "30", unit="s", min_limit=1, variable_instance="Default",
       reboot_required=True, setting="message_timeout_s"),  # read when a connection opens
    _v("OCPPCommCtrlr", "MessageAttempts", _I, "3", min_limit=1, variable_instance="TransactionEvent",
       setting="message_attempts"),
    _v("OCPPCommCtrlr", "MessageAttemptInterval", _I, "60", unit="s", min_limit=0,
       variable_instance="TransactionEvent", setting="message_retry_interval_s"),
    _v("OCPPCommCtrlr", "WebSocketPingInterval", _I, "10", unit="s", min_limit=0,
       setting="websocket_ping_interval_s"),  # 0 disables pings (spec); the default is the config file's
    # Uncertain: the spec lets the station apply a new priority at once or at the next reconnect; we ask a reboot.
    _v("OCPPCommCtrlr", "NetworkConfigurationPriority", DataType.SEQUENCE_LIST, "0", values_list=NETWORK_SLOTS,
       reboot_required=True),
    # B10: failed attempts on one network profile before the next one in NetworkConfigurationPriority
    _v("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", _I, "3", min_limit=1, max_limit=100),
    _v("OCPPCommCtrlr", "OfflineThreshold", _I, "60", unit="s", min_limit=0),
    _v("OCPPCommCtrlr", "ResetRetries", _I, "2", min_limit=0),
    # a signing meter's key goes into every signedMeterValue (agent/ocpp/signed.py; docs/signed-values.md)
    _v("OCPPCommCtrlr", "PublicKeyWithSignedMeterValue", DataType.OPTION_LIST, "EveryMeterValue",
       values_list=("Never", "OncePerTransaction", "EveryMeterValue"), mutability=_RO),
    # TxCtrlr
    _v("TxCtrlr", "EVConnectionTimeOut", _I, "60", unit="s", min_limit=0, setting="connection_timeout_s"),
    _v("TxCtrlr", "StopTxOnEVSideDisconnect", _B, "true", setting="stop_transaction_on_ev_side_disconnect"),
    _v("TxCtrlr", "StopTxOnInvalidId", _B, "true", setting="stop_transaction_on_invalid_id"),
    _v("TxCtrlr", "TxStartPoint", DataType.MEMBER_LIST, "PowerPathClosed", values_list=TX_POINTS,
       setting="tx_start_point", non_empty=True),
    _v("TxCtrlr", "TxStopPoint", DataType.MEMBER_LIST, "PowerPathClosed", values_list=TX_POINTS,
       setting="tx_stop_point", non_empty=True),
    _v("TxCtrlr", "MaxEnergyOnInvalidId", _I, "0", unit="Wh", min_limit=0, setting="max_energy_on_invalid_id_wh"),
    # SampledDataCtrlr
    _v("SampledDataCtrlr", "Enabled", _B, "true"),  # false: no periodic samples in transactions (mapping below)
    _v("SampledDataCtrlr", "TxStartedMeasurands", default=_ENERGY, setting="started_measurands", **_MEAS),
    _v("SampledDataCtrlr", "TxUpdatedMeasurands", default=_ENERGY, setting="sampled_measurands", **_MEAS),
    _v("SampledDataCtrlr", "TxUpdatedInterval", _I, "60", unit="s", min_limit=0, setting="sample_interval_s"),
    _v("SampledDataCtrlr", "TxEndedMeasurands", default="", setting="ended_sampled_measurands", **_MEAS),
    _v("SampledDataCtrlr", "TxEndedInterval", _I, "0", unit="s", min_limit=0, setting="ended_sample_interval_s"),
    # AlignedDataCtrlr
    _v("AlignedDataCtrlr", "Enabled", _B, "true"),
    _v("AlignedDataCtrlr", "Interval", _I, "0", unit="s", min_limit=0, setting="aligned_interval_s"),
    _v("AlignedDataCtrlr", "Measurands", default=_ENERGY, setting="aligned_measurands", **_MEAS),
    _v("AlignedDataCtrlr", "TxEndedMeasurands", default="", setting="ended_aligned_measurands", **_MEAS),
    _v("AlignedDataCtrlr", "TxEndedInterval", _I, "0", unit="s", min_limit=0, setting="ended_aligned_interval_s"),
    # AuthCtrlr
    _v("AuthCtrlr", "Enabled", _B, "true", mutability=_RO),  # false would mean free vend: no Settings field yet
    _v("AuthCtrlr", "LocalPreAuthorize", _B, "false", setting="local_pre_authorize"),
    _v("AuthCtrlr", "LocalAuthorizeOffline", _B, "true", setting="local_authorize_offline"),
    _v("AuthCtrlr", "OfflineTxForUnknownIdEnabled", _B, "false", setting="allow_offline_tx_for_unknown_id"),
    _v("AuthCtrlr", "AuthorizeRemoteStart", _B, "false", setting="authorize_remote_tx_requests"),
    _v("AuthCtrlr", "MasterPassGroupId", _S, "", max_limit=36, setting="master_pass_group_id"),  # "": none
    # AuthCacheCtrlr
    _v("AuthCacheCtrlr", "Enabled", _B, "true", setting="auth_cache_enabled"),
    # not applied yet: the cache keeps no time of last use, and an expiry would read as Expired, not as unknown
    _v("AuthCacheCtrlr", "LifeTime", _I, "86400", unit="s", min_limit=0),
    _v("AuthCacheCtrlr", "Storage", _I, "1000000", unit="B", mutability=_RO, constant=True),  # uncertain size
    # Uncertain: the store's eviction order is taken to be least recently used; LFU/FIFO/CUSTOM are not offered.
    _v("AuthCacheCtrlr", "Policy", DataType.OPTION_LIST, "LRU", values_list=("LRU",)),
    # LocalAuthListCtrlr
    _v("LocalAuthListCtrlr", "Enabled", _B, "true", setting="local_auth_list_enabled"),
    _v("LocalAuthListCtrlr", "Entries", _I, "0", mutability=_RO, persistent=False),  # the handler keeps it current
    _v("LocalAuthListCtrlr", "ItemsPerMessage", _I, "250", mutability=_RO, constant=True),
    _v("LocalAuthListCtrlr", "BytesPerMessage", _I, "65536", mutability=_RO, constant=True),
    _v("LocalAuthListCtrlr", "Storage", _I, "1000000", unit="B", mutability=_RO, constant=True),
    # SmartChargingCtrlr
    _v("SmartChargingCtrlr", "Enabled", _B, "true", mutability=_RO, constant=True),
    _v("SmartChargingCtrlr", "ProfileStackLevel", _I, "10", mutability=_RO, constant=True,
       setting="max_stack_level"),
    _v("SmartChargingCtrlr", "PeriodsPerSchedule", _I, "24", mutability=_RO, constant=True,
       setting="max_schedule_periods"),
    _v("SmartChargingCtrlr", "Entries", _I, "20", mutability=_RO, constant=True, variable_instance="ChargingProfiles",
       setting="max_profiles_installed"),  # the spec's Entries reports the count; we report the capacity
    _v("SmartChargingCtrlr", "LimitChangeSignificance", _D, "0.1", min_limit=0, max_limit=1),
    _v("SmartChargingCtrlr", "RateUnit", DataType.MEMBER_LIST, "A,W", values_list=("A", "W"), mutability=_RO,
       constant=True),
    # ReservationCtrlr
    _v("ReservationCtrlr", "Enabled", _B, "true"),
    _v("ReservationCtrlr", "NonEvseSpecific", _B, "false", mutability=_RO, constant=True),
    # DeviceDataCtrlr: the bounds of one GetVariables/SetVariables request and one NotifyReport
    *(_v("DeviceDataCtrlr", "ItemsPerMessage", _I, "50", mutability=_RO, constant=True, variable_instance=inst)
      for inst in ("GetReport", "GetVariables", "SetVariables")),
    *(_v("DeviceDataCtrlr", "BytesPerMessage", _I, "65536", mutability=_RO, constant=True, variable_instance=inst)
      for inst in ("GetReport", "GetVariables", "SetVariables")),
    # ClockCtrlr
    _v("ClockCtrlr", "DateTime", DataType.DATETIME, None, mutability=_RO, persistent=False),  # read live
    _v("ClockCtrlr", "TimeSource", DataType.SEQUENCE_LIST, "Heartbeat", values_list=TIME_SOURCES),
    # SecurityCtrlr: the profile changes through SetNetworkProfile only (spec: ReadOnly here)
    _v("SecurityCtrlr", "SecurityProfile", _I, "0", mutability=_RO, min_limit=0, max_limit=3),
    _v("SecurityCtrlr", "OrganizationName", _S, "", max_limit=50),
    _v("SecurityCtrlr", "CertificateEntries", _I, "0", mutability=_RO, persistent=False),
    _v("SecurityCtrlr", "BasicAuthPassword", _S, None, mutability=_WO, min_limit=16, max_limit=40, secret=True),
    _v("SecurityCtrlr", "Identity", _S, "", mutability=_RO, constant=True, max_limit=48),
    # MonitoringCtrlr (N02-N08, agent/ocpp/v201/monitors.py): the base and level are set by their own messages
    _v("MonitoringCtrlr", "Enabled", _B, "true"),
    *(_v("MonitoringCtrlr", "ItemsPerMessage", _I, "20", mutability=_RO, constant=True, variable_instance=inst)
      for inst in ("ClearVariableMonitoring", "SetVariableMonitoring")),
    *(_v("MonitoringCtrlr", "BytesPerMessage", _I, "16384", mutability=_RO, constant=True, variable_instance=inst)
      for inst in ("ClearVariableMonitoring", "SetVariableMonitoring")),
    _v("MonitoringCtrlr", "OfflineQueuingSeverity", _I, "3", min_limit=0, max_limit=9),  # up to Critical
    _v("MonitoringCtrlr", "ActiveMonitoringBase", DataType.OPTION_LIST, "FactoryDefault", mutability=_RO,
       values_list=MONITORING_BASES),
    _v("MonitoringCtrlr", "ActiveMonitoringLevel", _I, "9", min_limit=0, max_limit=9),
)


def _connector_type(kind: str) -> str:
    """ConnectorEnumType from the config's connector kind."""
    # Uncertain: the config names AC or DC only; a Type 2 socket (AC) and a CCS2 cable (DC) are the usual fit.
    return "cCCS2" if kind == "dc" else "sType2"


def station_variables(config: AgentConfig) -> list[VariableSpec]:
    """The ChargingStation, one EVSE per connector, and the connectors, from the config (one table row each)."""
    cp = config.charge_point
    ro: dict[str, Any] = {"mutability": _RO, "constant": True, "persistent": False}
    state: dict[str, Any] = {"data_type": DataType.OPTION_LIST, "values_list": AVAILABILITY_STATES, "mutability": _RO,
             "persistent": False, "supports_monitoring": True}
    specs = [
        _v("ChargingStation", "Model", _S, cp.model, max_limit=20, **ro),
        _v("ChargingStation", "VendorName", _S, cp.vendor, max_limit=50, **ro),
        _v("ChargingStation", "SerialNumber", _S, cp.serial_number or "", max_limit=25, **ro),
        _v("ChargingStation", "AvailabilityState", default="Available", **state),
        _v("ChargingStation", "Available", _B, "true", mutability=_RO, persistent=False),
        _v("ChargingStation", "SupplyPhases", _I, str(max((c.phases for c in config.connectors), default=3)), **ro),
    ]
    for conn in config.connectors:
        # one EVSE per connector: EVSE n holds connector 1
        at: dict[str, Any] = {"evse_id": conn.id}
        at_conn: dict[str, Any] = {"evse_id": conn.id, "connector_id": 1}
        max_power_w = conn.max_current_a * conn.voltage_v * conn.phases  # DC: the config's current limit too
        specs += [
            _v("EVSE", "AvailabilityState", default="Available", **state, **at),
            _v("EVSE", "Available", _B, "true", mutability=_RO, persistent=False, **at),
            _v("EVSE", "Power", _D, "0", unit="W", mutability=_RO, persistent=False, supports_monitoring=True,
               extra_attributes={Attr.MAX_SET: f"{max_power_w:g}"}, **at),
            _v("EVSE", "SupplyPhases", _I, str(conn.phases), **ro, **at),
            _v("Connector", "ConnectorType", _S, _connector_type(str(conn.kind)), **ro, **at_conn),
            _v("Connector", "AvailabilityState", default="Available", **state, **at_conn),
            _v("Connector", "Available", _B, "true", mutability=_RO, persistent=False, **at_conn),
        ]
    return specs


def measured_variables(config: AgentConfig) -> list[VariableSpec]:
    """What the meters and controllers measure, per EVSE, as monitorable variables (values read live by
    agent/ocpp/v201/monitors.py); EVSE.Power is in station_variables."""
    # Uncertain: appendix 3 names Power on the EVSE; the meter's other quantities are put on a PowerMeter
    # component of the EVSE (the component its faults are reported on) as Current, Voltage and Energy.
    live: dict[str, Any] = {"mutability": _RO, "persistent": False, "supports_monitoring": True}
    specs: list[VariableSpec] = []
    for conn in config.connectors:
        at: dict[str, Any] = {"evse_id": conn.id}
        specs += [
            _v("PowerMeter", "Current", _D, None, unit="A", **live, **at),  # the highest phase current
            _v("PowerMeter", "Voltage", _D, None, unit="V", **live, **at),  # L1-N (AC) or the DC voltage
            _v("PowerMeter", "Energy", _D, None, unit="Wh", **live, **at),  # the import register
            _v("PowerMeter", "Problem", _B, "false", **live, **at),
        ]
        if conn.dc_controller is not None:
            specs.append(_v("TemperatureSensor", "Temperature", _D, None, unit="Celsius", **live, **at))
            specs += dc_vehicle_variables(at, live)
    return specs


def dc_vehicle_variables(at: dict[str, Any], live: dict[str, Any]) -> list[VariableSpec]:
    """What a DC controller of map version 2 tells about the vehicle, as appendix 3 names it: CHAdeMOCtrlr's
    CHAdeMOProtocolNumber (H'102.0) and VehicleStatus (H'102.5.3: the EV contactor is open), and the Problem
    variable the vehicle's faults are reported on (agent/ocpp/v201/statuses.py). No value while the outlet
    speaks another protocol or the controller has map version 1."""
    # Uncertain: the appendix lists these controllers station-wide; one per DC EVSE is what a station with
    # several DC outlets needs. ISO15118Ctrlr names no live vehicle values (SoC, phase): evsectl shows them.
    return [
        _v("CHAdeMOCtrlr", "CHAdeMOProtocolNumber", _I, None, **live, **at),
        _v("CHAdeMOCtrlr", "VehicleStatus", _B, None, **live, **at),
        _v("CHAdeMOCtrlr", "Problem", _B, "false", **live, **at),
        _v("ISO15118Ctrlr", "Problem", _B, "false", **live, **at),
    ]


OPERATIONS_PERIODS = ("Day", "Year")  # variable instances: the UTC day so far, the last 365 days (NEVI's period)
OPERATIONS_WEAR = ("ContactorOperations", "ContactorOperationsUnderLoad", "PlugCycles", "LockCycles")


def operations_variables(config: AgentConfig) -> list[VariableSpec]:
    """The operations ledger's figures (docs/operations.md), read-only, values read live from the ledger by
    agent/ocpp/v201/operations.py: uptime, sessions and energy per period, wear since the last service."""
    # Uncertain: appendix 3 names no uptime, usage or wear counters; they sit on a custom OperationsCtrlr
    # component, one per EVSE (the ports NEVI counts), with the period as the variable instance.
    live: dict[str, Any] = {"mutability": _RO, "persistent": False}
    specs: list[VariableSpec] = [_v("OperationsCtrlr", "ProblemReport", _I, "0", **live)]
    for conn in config.connectors:
        at: dict[str, Any] = {"evse_id": conn.id}
        for period in OPERATIONS_PERIODS:
            specs += [
                _v("OperationsCtrlr", "Uptime", _D, None, unit="Percent", variable_instance=period, **live, **at),
                _v("OperationsCtrlr", "Sessions", _I, "0", variable_instance=period, **live, **at),
                _v("OperationsCtrlr", "Energy", _D, "0", unit="Wh", variable_instance=period, **live, **at),
            ]
        specs += [_v("OperationsCtrlr", name, _I, "0", **live, **at) for name in OPERATIONS_WEAR]
        specs += [
            _v("OperationsCtrlr", "OperatingHours", _D, "0", unit="h", **live, **at),
            _v("OperationsCtrlr", "MaintenanceDue", _B, "false", **live, **at),
            _v("OperationsCtrlr", "Replacement", _S, "", max_limit=250, **live, **at),
            _v("OperationsCtrlr", "ProblemReport", _I, "0", **live, **at),
        ]
    return specs


def check_value(spec: VariableSpec, value: str) -> str:
    """The value in its canonical wire form; ValueError when it does not fit the type and characteristics."""
    dtype = spec.data_type
    number: float | None = None
    if dtype is DataType.INTEGER:
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError(f"{spec.key}: {value!r} is not an integer") from None
        canonical = str(number)
    elif dtype is DataType.DECIMAL:
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"{spec.key}: {value!r} is not a decimal") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"{spec.key}: {value!r} is not a finite decimal")
        canonical = f"{number:g}"
    elif dtype is DataType.BOOLEAN:
        if value.strip().lower() not in ("true", "false"):
            raise ValueError(f"{spec.key}: {value!r} is not true or false")
        canonical = value.strip().lower()
    elif dtype is DataType.DATETIME:
        try:
            dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{spec.key}: {value!r} is not an RFC 3339 date-time") from None
        canonical = value.strip()
    elif dtype in _LISTS:
        items = parse_csl(value)
        unknown = [item for item in items if spec.values_list and item not in spec.values_list]
        if unknown:
            raise ValueError(f"{spec.key}: {', '.join(unknown)} not in {','.join(spec.values_list)}")
        if len(set(items)) != len(items):
            raise ValueError(f"{spec.key}: an item is listed twice")
        if spec.non_empty and not items:
            raise ValueError(f"{spec.key}: at least one of {','.join(spec.values_list)}")
        if dtype is DataType.OPTION_LIST and len(items) != 1:
            raise ValueError(f"{spec.key}: exactly one of {','.join(spec.values_list)}")
        canonical = ",".join(items)
    else:
        canonical = value
    if number is not None:
        if spec.min_limit is not None and number < spec.min_limit:
            raise ValueError(f"{spec.key}: {canonical} is below {spec.min_limit:g}")
        if spec.max_limit is not None and number > spec.max_limit:
            raise ValueError(f"{spec.key}: {canonical} is above {spec.max_limit:g}")
    else:
        if spec.max_limit is not None and len(canonical) > spec.max_limit:
            raise ValueError(f"{spec.key}: longer than {spec.max_limit:g} characters")
        if dtype is DataType.STRING and spec.min_limit is not None and len(canonical) < spec.min_limit:
            raise ValueError(f"{spec.key}: shorter than {spec.min_limit:g} characters")
    return canonical


def _typed(spec: VariableSpec, value: str) -> int | bool | str:
    """The value as the guards and getters see it: int, bool, or the string (lists stay CSV)."""
    if spec.data_type is DataType.INTEGER:
        return int(value)
    if spec.data_type is DataType.BOOLEAN:
        return value == "true"
    return value


def _fold(text: str | None) -> str | None:
    # component and variable names are case-insensitive (ComponentType in the 2.0.1 schemas)
    return None if text is None else text.casefold()


def split_report(request_id: int, report_data: Sequence[dict[str, Any]], items_per_message: int,
                 generated_at: str) -> list[dict[str, Any]]:
    """NotifyReport payloads of at most `items_per_message` reportData each, with seqNo from 0 and tbc."""
    size = max(1, items_per_message)
    chunks = [list(report_data[i:i + size]) for i in range(0, len(report_data), size)]
    return [
        {"requestId": request_id, "generatedAt": generated_at, "seqNo": seq, "tbc": seq < len(chunks) - 1,
         "reportData": chunk}
        for seq, chunk in enumerate(chunks)
    ]


class DeviceModel(PublishedSettings):
    """The 2.0.1 device model: SettingsSource, GuardedConfig, and GetVariables/SetVariables/reports."""

    REFUSED_BY = "SetVariables"

    def __init__(self, config: AgentConfig, store: Store, *,
                 now: Callable[[], dt.datetime] | None = None) -> None:
        self._store = store
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self._specs: dict[str, VariableSpec] = {}
        for spec in (*CATALOGUE, *station_variables(config), *measured_variables(config),
                     *operations_variables(config)):
            assert spec.key not in self._specs, spec.key
            self._specs[spec.key] = spec
        # values by (vocabulary name, attribute), in wire form
        self._values: dict[tuple[str, Attr], str] = {}
        for spec in self._specs.values():
            if spec.default is not None and not spec.secret:
                self._values[spec.key, Attr.ACTUAL] = spec.default
            for attr, value in spec.extra_attributes.items():
                self._values[spec.key, attr] = value
        # what the config file says wins over the catalogue's defaults
        self._values["SecurityCtrlr.SecurityProfile", Attr.ACTUAL] = str(config.backoffice.security_profile)
        self._values["SecurityCtrlr.Identity", Attr.ACTUAL] = config.charge_point.id
        self._values["OCPPCommCtrlr.WebSocketPingInterval", Attr.ACTUAL] = str(round(config.backoffice.ping_interval_s))
        self._values["OCPPCommCtrlr.MessageTimeout[Default]", Attr.ACTUAL] = str(
            max(1, round(config.backoffice.response_timeout_s)))
        self._load(store, config.backoffice.security_profile)
        self.listeners: list[Callable[[str], None]] = []
        # each may refuse a change (returns a status) or let it go on (None): security, measurands...
        self.change_guards: list[Callable[[str, int | bool | str], str | None]] = []
        self.secret_setter: Callable[[str, str], str] | None = None
        # Actual values measured now (power, availability...): vocabulary name -> reader (None: no value now)
        self.live: dict[str, Callable[[], str | None]] = {}
        self._start_publishing()

    def _load(self, store: Store, file_profile: int) -> None:
        for row_key, raw in store.config_all().items():
            if not row_key.startswith(KEY_PREFIX):
                continue
            key, attr = self._split_key(row_key.removeprefix(KEY_PREFIX))
            spec = self._specs.get(key)
            if spec is None or spec.constant or spec.secret or not spec.persistent or attr is not Attr.ACTUAL:
                continue
            try:
                value = check_value(spec, raw)
            except ValueError as err:
                LOGGER.warning("ignoring persisted value of %s: %s", key, err)
                continue
            if key == "SecurityCtrlr.SecurityProfile":
                # Raised over OCPP (SetNetworkProfile) it stays raised; raised in the file (by root) it is raised too.
                value = str(max(int(value), file_profile))
            self._values[key, attr] = value

    @staticmethod
    def _split_key(name: str) -> tuple[str, Attr | None]:
        key, _, attr = name.partition("@")
        try:
            return key, Attr(attr) if attr else Attr.ACTUAL
        except ValueError:
            return key, None

    # ---- the typed settings the runtime reads (agent/settings.py) ---------------------------------

    def _to_settings(self) -> Settings:
        """The 2.0.1 variables as typed settings."""
        max_energy = self.get_int("TxCtrlr.MaxEnergyOnInvalidId")
        ping = self.get_int("OCPPCommCtrlr.WebSocketPingInterval", -1)
        sampled = self.get_bool("SampledDataCtrlr.Enabled", True)
        aligned = self.get_bool("AlignedDataCtrlr.Enabled", True)
        return Settings(
            connection_timeout_s=float(self.get_int("TxCtrlr.EVConnectionTimeOut", 60)),
            stop_transaction_on_invalid_id=self.get_bool("TxCtrlr.StopTxOnInvalidId", True),
            max_energy_on_invalid_id_wh=float(max_energy) if max_energy > 0 else None,
            stop_transaction_on_ev_side_disconnect=self.get_bool("TxCtrlr.StopTxOnEVSideDisconnect", True),
            # 2.0.1 has no UnlockConnectorOnEVSideDisconnect: the field keeps its default (unlock)
            local_pre_authorize=self.get_bool("AuthCtrlr.LocalPreAuthorize"),
            local_authorize_offline=self.get_bool("AuthCtrlr.LocalAuthorizeOffline", True),
            allow_offline_tx_for_unknown_id=self.get_bool("AuthCtrlr.OfflineTxForUnknownIdEnabled"),
            authorize_remote_tx_requests=self.get_bool("AuthCtrlr.AuthorizeRemoteStart"),
            master_pass_group_id=self.get_str("AuthCtrlr.MasterPassGroupId") or None,
            local_auth_list_enabled=self.get_bool("LocalAuthListCtrlr.Enabled", True),
            auth_cache_enabled=self.get_bool("AuthCacheCtrlr.Enabled", True),
            tx_start_point=tuple(parse_csl(self.get_str("TxCtrlr.TxStartPoint"))),
            tx_stop_point=tuple(parse_csl(self.get_str("TxCtrlr.TxStopPoint"))),
            max_stack_level=self.get_int("SmartChargingCtrlr.ProfileStackLevel", 10),
            max_profiles_installed=self.get_int("SmartChargingCtrlr.Entries[ChargingProfiles]", 20),
            max_schedule_periods=self.get_int("SmartChargingCtrlr.PeriodsPerSchedule", 24),
            # a disabled controller samples nothing: interval 0 and no measurands
            sample_interval_s=self.get_int("SampledDataCtrlr.TxUpdatedInterval", 60) if sampled else 0,
            aligned_interval_s=self.get_int("AlignedDataCtrlr.Interval", 0) if aligned else 0,
            sampled_measurands=tuple(parse_csl(self.get_str("SampledDataCtrlr.TxUpdatedMeasurands")))
            if sampled else (),
            aligned_measurands=tuple(parse_csl(self.get_str("AlignedDataCtrlr.Measurands"))) if aligned else (),
            ended_sampled_measurands=tuple(parse_csl(self.get_str("SampledDataCtrlr.TxEndedMeasurands")))
            if sampled else (),
            ended_aligned_measurands=tuple(parse_csl(self.get_str("AlignedDataCtrlr.TxEndedMeasurands")))
            if aligned else (),
            started_measurands=tuple(parse_csl(self.get_str("SampledDataCtrlr.TxStartedMeasurands")))
            if sampled else (_ENERGY,),
            ended_sample_interval_s=self.get_int("SampledDataCtrlr.TxEndedInterval", 0),
            ended_aligned_interval_s=self.get_int("AlignedDataCtrlr.TxEndedInterval", 0),
            message_timeout_s=float(self.get_int("OCPPCommCtrlr.MessageTimeout[Default]", 30)),
            heartbeat_interval_s=float(self.get_int("OCPPCommCtrlr.HeartbeatInterval", 300)),
            message_attempts=self.get_int("OCPPCommCtrlr.MessageAttempts[TransactionEvent]", 3),
            message_retry_interval_s=float(self.get_int("OCPPCommCtrlr.MessageAttemptInterval[TransactionEvent]", 60)),
            websocket_ping_interval_s=float(ping) if ping >= 0 else None,
        )

    def _measurand_names(self) -> list[str]:
        return [spec.key for spec in self._specs.values() if spec.values_list == MEASURANDS]

    # ---- the vocabulary (ConfigVocabulary / GuardedConfig) ------------------------------------------

    def spec(self, key: str) -> VariableSpec | None:
        """The variable behind a vocabulary name (without an @attribute suffix), if any."""
        return self._specs.get(key)

    def get(self, key: str) -> int | bool | str | None:
        """The typed Actual value (or `key@MaxSet`...), None when unset or write-only."""
        name, attr = self._split_key(key)
        spec = self._specs.get(name)
        if spec is None or attr is None or spec.mutability is _WO:
            return None
        if spec.variable == "DateTime" and spec.component == "ClockCtrlr":
            return self._now().isoformat().replace("+00:00", "Z")
        reader = self.live.get(name) if attr is Attr.ACTUAL else None
        if reader is not None:
            measured = reader()
            return None if measured is None else _typed(spec, measured)
        raw = self._values.get((name, attr))
        return None if raw is None else _typed(spec, raw)

    def get_int(self, key: str, default: int = 0) -> int:
        """An integer variable."""
        value = self.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    def get_bool(self, key: str, default: bool = False) -> bool:
        """A boolean variable."""
        value = self.get(key)
        return value if isinstance(value, bool) else default

    def get_str(self, key: str, default: str = "") -> str:
        """A string or list variable (lists as CSV)."""
        value = self.get(key)
        return value if isinstance(value, str) else default

    def change(self, key: str, value: str) -> str:
        """SetVariables by vocabulary name: Accepted, Rejected, RebootRequired; NotSupported when unknown."""
        name, attr = self._split_key(key)
        spec = self._specs.get(name)
        if spec is None or attr is None or attr not in spec.attributes:
            return ChangeResult.NOT_SUPPORTED
        return self._set(spec, attr, value)

    def set_local(self, key: str, value: int | bool | str) -> None:
        """Set a variable from the charger itself (evsectl, the handlers' live values), ReadOnly ones included."""
        name, attr = self._split_key(key)
        spec = self._specs.get(name)
        if spec is None or attr is None or attr not in spec.attributes or spec.secret:
            raise KeyError(key)
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        canonical = check_value(spec, text)
        if spec.persistent and not spec.constant and attr is Attr.ACTUAL:
            self._store.config_set(KEY_PREFIX + self._row(spec, attr), canonical)
        self._values[name, attr] = canonical
        for listener in self.listeners:
            listener(name)

    def entries(self, keys: list[str] | None = None) -> tuple[list[dict[str, object]], list[str]]:
        """(entries {key, readonly, value}, unknown names); write-only and secret variables show no value."""
        wanted = keys or [self._row(spec, attr) for spec in self._specs.values() for attr in spec.attributes]
        known: list[dict[str, object]] = []
        unknown: list[str] = []
        for key in wanted:
            name, attr = self._split_key(key)
            spec = self._specs.get(name)
            if spec is None or attr is None or attr not in spec.attributes:
                unknown.append(key)
                continue
            entry: dict[str, object] = {"key": key, "readonly": spec.mutability is _RO or attr is not Attr.ACTUAL}
            value = self.get(key)
            if value is not None:
                entry["value"] = self._wire(spec, value)
            known.append(entry)
        return known, unknown

    @staticmethod
    def _row(spec: VariableSpec, attr: Attr) -> str:
        return spec.key if attr is Attr.ACTUAL else f"{spec.key}@{attr}"

    @staticmethod
    def _wire(spec: VariableSpec, value: int | bool | str) -> str:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)

    def _set(self, spec: VariableSpec, attr: Attr, value: str) -> str:
        """Validate, guard, persist and publish one value; the SetVariables status."""
        if spec.mutability is _RO or attr is not Attr.ACTUAL:
            return Status.REJECTED  # only the Actual attribute of a writable variable is set over OCPP
        try:
            canonical = check_value(spec, value)
        except ValueError as err:
            # a secret's value never reaches the log
            LOGGER.info("SetVariables %s refused: %s", spec.key, "bad value" if spec.secret else err)
            return Status.REJECTED
        typed = _typed(spec, canonical)
        for guard in self.change_guards:
            refused = guard(spec.key, typed)
            if refused is not None:
                return refused
        if spec.secret:
            # Secrets never enter the config table: the security module keeps them in a 0600 file.
            if self.secret_setter is None:
                return Status.REJECTED
            return self.secret_setter(spec.key, canonical)
        if spec.persistent:
            self._store.config_set(KEY_PREFIX + spec.key, canonical)
        self._values[spec.key, attr] = canonical
        for listener in self.listeners:
            listener(spec.key)
        return Status.REBOOT_REQUIRED if spec.reboot_required else Status.ACCEPTED

    # ---- GetVariables / SetVariables ---------------------------------------------------------------

    def _lookup(self, component: Mapping[str, Any], variable: Mapping[str, Any],
                attr_name: str | None) -> tuple[VariableSpec | None, Attr | None, Status]:
        """The variable and attribute a request item names, or the status saying why there is none."""
        evse = component.get("evse") or {}
        comp_id = (_fold(component.get("name")), _fold(component.get("instance")), evse.get("id"),
                   evse.get("connectorId"))
        in_component = [s for s in self._specs.values()
                        if (_fold(s.component), _fold(s.component_instance), s.evse_id, s.connector_id) == comp_id]
        if not in_component:
            return None, None, Status.UNKNOWN_COMPONENT
        var_id = (_fold(variable.get("name")), _fold(variable.get("instance")))
        found = [s for s in in_component if (_fold(s.variable), _fold(s.variable_instance)) == var_id]
        if not found:
            return None, None, Status.UNKNOWN_VARIABLE
        try:
            attr = Attr(attr_name or Attr.ACTUAL)
        except ValueError:
            return found[0], None, Status.NOT_SUPPORTED_ATTRIBUTE_TYPE
        if attr not in found[0].attributes:
            return found[0], None, Status.NOT_SUPPORTED_ATTRIBUTE_TYPE
        return found[0], attr, Status.ACCEPTED

    def get_variables(self, requests: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """GetVariables: one GetVariableResult per getVariableData item, in order."""
        results: list[dict[str, Any]] = []
        for item in requests:
            spec, attr, status = self._lookup(item["component"], item["variable"], item.get("attributeType"))
            result: dict[str, Any] = {"attributeStatus": str(status), "component": dict(item["component"]),
                                      "variable": dict(item["variable"])}
            if item.get("attributeType") is not None:
                result["attributeType"] = item["attributeType"]
            if spec is not None and attr is not None:
                value = self.get(self._row(spec, attr))
                if spec.mutability is _WO:
                    result["attributeStatus"] = str(Status.REJECTED)  # a write-only value is never read back
                elif value is not None:
                    result["attributeValue"] = self._wire(spec, value)
            results.append(result)
        return results

    def set_variables(self, requests: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """SetVariables: one SetVariableResult per setVariableData item, in order."""
        results: list[dict[str, Any]] = []
        for item in requests:
            spec, attr, status = self._lookup(item["component"], item["variable"], item.get("attributeType"))
            if spec is not None and attr is not None:
                status = Status(self._set(spec, attr, str(item["attributeValue"])))
            result: dict[str, Any] = {"attributeStatus": str(status), "component": dict(item["component"]),
                                      "variable": dict(item["variable"])}
            if item.get("attributeType") is not None:
                result["attributeType"] = item["attributeType"]
            results.append(result)
        return results

    # ---- GetBaseReport / GetReport -----------------------------------------------------------------

    def report_data(self, spec: VariableSpec) -> dict[str, Any]:
        """ReportData for one variable: every attribute (no value when write-only) and its characteristics."""
        attributes: list[dict[str, Any]] = []
        for attr in spec.attributes:
            actual = attr is Attr.ACTUAL  # other attributes are hardware limits: read-only and constant
            entry: dict[str, Any] = {"type": str(attr), "mutability": str(spec.mutability if actual else _RO),
                                     "persistent": spec.persistent, "constant": spec.constant or not actual}
            value = self.get(self._row(spec, attr))
            if value is not None:
                entry["value"] = self._wire(spec, value)
            attributes.append(entry)
        return {"component": spec.component_json(), "variable": spec.variable_json(), "variableAttribute": attributes,
                "variableCharacteristics": spec.characteristics_json()}

    def base_report(self, report_base: str) -> list[dict[str, Any]]:
        """GetBaseReport: ConfigurationInventory (what the operator can set), FullInventory, SummaryInventory."""
        specs = list(self._specs.values())
        if report_base == "ConfigurationInventory":
            specs = [s for s in specs if s.mutability is not _RO]
        elif report_base == "SummaryInventory":
            # Uncertain: the spec leaves the summary's contents to the station; availability is what it is for.
            specs = [s for s in specs if s.variable in ("AvailabilityState", "Available", "Problem")]
        elif report_base != "FullInventory":
            raise ValueError(f"unknown reportBase {report_base!r}")
        return [self.report_data(s) for s in specs]

    def report(self, component_variable: Sequence[Mapping[str, Any]] | None = None,
               component_criteria: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """GetReport: the variables named by componentVariable (a component alone: all its variables) of the
        components meeting every componentCriteria (Active, Available, Enabled, Problem set true)."""
        specs = list(self._specs.values())
        if component_variable:
            specs = [s for s in specs if any(self._matches(s, cv) for cv in component_variable)]
        if component_criteria:
            specs = [s for s in specs if all(self._component_flag(s, c) for c in component_criteria)]
        return [self.report_data(s) for s in specs]

    def report_parts(self, request_id: int, report_data: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """NotifyReport payloads split by DeviceDataCtrlr.ItemsPerMessage[GetReport]."""
        generated_at = self._now().isoformat().replace("+00:00", "Z")
        return split_report(request_id, report_data, self.get_int("DeviceDataCtrlr.ItemsPerMessage[GetReport]", 50),
                            generated_at)

    def lookup(self, component: Mapping[str, Any], variable: Mapping[str, Any]) -> tuple[VariableSpec | None, str]:
        """The variable a wire-form component and variable name, or the status saying why there is none."""
        spec, _, status = self._lookup(component, variable, None)
        return spec, str(status)

    def variables(self) -> list[VariableSpec]:
        """Every variable of the model."""
        return list(self._specs.values())

    @staticmethod
    def matches(spec: VariableSpec, cv: Mapping[str, Any]) -> bool:
        """Whether a componentVariable item (a component alone: all its variables) names the variable."""
        return DeviceModel._matches(spec, cv)

    @staticmethod
    def _matches(spec: VariableSpec, cv: Mapping[str, Any]) -> bool:
        component = cv.get("component") or {}
        if _fold(component.get("name")) != _fold(spec.component):
            return False
        if component.get("instance") is not None and _fold(component["instance"]) != _fold(spec.component_instance):
            return False
        evse = component.get("evse")
        if evse is not None:
            # an EVSE without a connector names the EVSE and its connectors (the spec's reporting hierarchy)
            if evse.get("id") != spec.evse_id:
                return False
            if evse.get("connectorId") is not None and evse["connectorId"] != spec.connector_id:
                return False
        variable = cv.get("variable")
        if variable is None:
            return True
        if _fold(variable.get("name")) != _fold(spec.variable):
            return False
        return variable.get("instance") is None or _fold(variable["instance"]) == _fold(spec.variable_instance)

    def _component_flag(self, spec: VariableSpec, criterion: str) -> bool:
        """Whether the component of `spec` has its variable `criterion` (Active, Available...) set true."""
        for other in self._specs.values():
            if (other.component, other.component_instance, other.evse_id, other.connector_id) == (
                    spec.component, spec.component_instance, spec.evse_id, spec.connector_id) \
                    and other.variable == criterion and other.variable_instance is None:
                return self.get(other.key) is True
        return False
