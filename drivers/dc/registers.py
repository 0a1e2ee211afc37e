"""The evse-agent generic DC charge controller Modbus register map, as data shared by driver and simulator.

docs/dc-controller.md is the human version of this module (a test keeps both in step). Addresses are PDU
addresses (what pymodbus takes). Every status value lives in ONE contiguous block of input registers
(function 4) so that one request gives a consistent snapshot; commands are holding registers (functions
3/6/16). 32-bit values are two registers, high word first.

Map version 2 appends CHAdeMO and CCS detail (0x0018-0x0023) to the version 1 block and changes nothing
before it: a version 1 controller answers the first 24 registers, a version 2 controller all 36. The driver
learns the version from register 0x0001.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from drivers.base import (
    CcsPhase,
    ChademoFault,
    ChademoStatus,
    ChargeProtocol,
    DcError,
    DcStatus,
    DcVehicleDetail,
    EstopReason,
    EvErrorCode,
    EvState,
    Isolation,
    PlugState,
)

MAGIC = 0x4443  # "DC" in ASCII: a meter or another device at this id answers something else here
MAP_VERSION = 2  # the newest map; the driver refuses versions it does not know
SUPPORTED_MAP_VERSIONS = frozenset({1, 2})

E = TypeVar("E", bound=enum.IntEnum)
F = TypeVar("F", bound=enum.IntFlag)


class RegType(enum.Enum):
    """How a value is laid out in registers."""

    U16 = "u16"
    S16 = "s16"
    U32 = "u32"  # two registers, high word first

    @property
    def width(self) -> int:
        """Number of 16-bit registers the type occupies."""
        return 2 if self is RegType.U32 else 1


class DecodeError(ValueError):
    """A register holds a value outside its documented range (the driver turns this into a HardwareFault)."""


@dataclass(frozen=True, slots=True)
class Field:
    """One value of the map: where it is, how it is encoded, and what it means."""

    name: str
    address: int
    type: RegType
    scale: float = 1.0  # engineering value = raw * scale
    unit: str = ""
    meaning: str = ""
    not_available: int | None = None  # raw marker meaning "no value" (decoded as None)
    version: int = 1  # the map version that introduced the field
    high: float | None = None  # largest plausible engineering value (a larger one is garbage)

    @property
    def width(self) -> int:
        """Number of registers."""
        return self.type.width


# ---------------------------------------------------------------- status: input registers, function 4
STATUS_BASE = 0x0000
STATUS_FIELDS: tuple[Field, ...] = (
    Field("magic", 0x0000, RegType.U16, meaning="identification: always 0x4443 (\"DC\")"),
    Field("map_version", 0x0001, RegType.U16, meaning="version of this register map, 1"),
    Field("protocol", 0x0002, RegType.U16, meaning="charging protocol: 0 none, 1 CCS, 2 CHAdeMO"),
    Field("plug", 0x0003, RegType.U16, meaning="0 unplugged, 1 plugged into an EV"),
    Field("ev_state", 0x0004, RegType.U16,
          meaning="IEC 61851-1 pilot state: 0 A, 1 B, 2 C, 3 D, 4 E, 5 F"),
    Field("chademo_step", 0x0005, RegType.U16,
          meaning="CHAdeMO sequence step as the controller numbers it (0 when idle or CCS)"),
    Field("ev_ready", 0x0006, RegType.U16, meaning="1 when the EV declares itself ready to charge"),
    Field("soc_pct", 0x0007, RegType.U16, 0.1, "%", "EV state of charge", not_available=0xFFFF),
    Field("ev_target_v", 0x0008, RegType.U16, 0.1, "V", "voltage the EV requests"),
    Field("ev_target_a", 0x0009, RegType.U16, 0.1, "A", "current the EV requests"),
    Field("ev_max_v", 0x000A, RegType.U16, 0.1, "V", "EV maximum voltage"),
    Field("ev_max_a", 0x000B, RegType.U16, 0.1, "A", "EV maximum current"),
    Field("present_v", 0x000C, RegType.U16, 0.1, "V", "voltage measured at the outlet"),
    Field("present_a", 0x000D, RegType.U16, 0.1, "A", "current measured at the outlet"),
    Field("isolation", 0x000E, RegType.U16,
          meaning="IMD result: 0 invalid/not measured, 1 valid, 2 warning, 3 fault, 4 no IMD"),
    Field("errors", 0x000F, RegType.U16, meaning="error bits, see the error bit table"),
    Field("estop", 0x0010, RegType.U16,
          meaning="emergency stop reason: 0 none, 1 button, 2 host command, 3 host timeout, "
                  "4 over-temperature, 5 HV malfunction, 6 isolation"),
    Field("temperature_c", 0x0011, RegType.S16, 0.1, "°C", "hottest power-path temperature",
          not_available=0x7FFF),
    Field("charging_allowed", 0x0012, RegType.U16,
          meaning="echo of the allow-charging command as the controller applies it"),
    Field("limit_a", 0x0013, RegType.U16, 0.1, "A", "current limit the controller applies"),
    Field("limit_w", 0x0014, RegType.U32, 1.0, "W", "power limit the controller applies"),
    Field("heartbeat_echo", 0x0016, RegType.U16, meaning="last host heartbeat value the controller saw"),
    Field("emergency_latched", 0x0017, RegType.U16,
          meaning="1 while a host emergency shutdown is latched (until fault reset)"),
    # ---- map version 2: CHAdeMO and CCS detail
    Field("chademo_protocol", 0x0018, RegType.U16,
          meaning="CHAdeMO control protocol number of the vehicle (H'102.0), 0-255", not_available=0xFFFF,
          version=2, high=255),
    Field("chademo_status", 0x0019, RegType.U16,
          meaning="CHAdeMO vehicle status flags (H'102.5), see the bit table", version=2),
    Field("chademo_faults", 0x001A, RegType.U16,
          meaning="CHAdeMO vehicle fault flags (H'102.4), see the bit table", version=2),
    Field("max_charging_time_s", 0x001B, RegType.U16, 1.0, "s",
          "maximum charging time the vehicle allows (H'101.1/2), 0-15300", not_available=0xFFFF,
          version=2, high=15300),
    Field("estimated_charging_time_s", 0x001C, RegType.U16, 1.0, "s",
          "charging time the vehicle estimates (H'101.3), 0-15300", not_available=0xFFFF, version=2,
          high=15300),
    Field("battery_capacity_kwh", 0x001D, RegType.U16, 0.1, "kWh",
          "vehicle battery capacity (H'101.5-6), 0-1000", not_available=0xFFFF, version=2, high=1000),
    Field("ccs_phase", 0x001E, RegType.U16,
          meaning="DIN 70121 / ISO 15118-2 session phase, see the phase table", version=2),
    Field("ev_error_code", 0x001F, RegType.U16,
          meaning="DC_EVErrorCodeType the EV sent last, see the error code table", version=2),
    Field("full_soc_pct", 0x0020, RegType.U16, 0.1, "%", "EV FullSOC, 0-100", not_available=0xFFFF,
          version=2, high=100),
    Field("bulk_soc_pct", 0x0021, RegType.U16, 0.1, "%", "EV BulkSOC, 0-100", not_available=0xFFFF,
          version=2, high=100),
    Field("ev_max_power_w", 0x0022, RegType.U32, 1.0, "W", "EVMaximumPowerLimit, 0-5000000",
          not_available=0xFFFFFFFF, version=2, high=5_000_000),
)
STATUS_COUNT_V1 = 0x0018  # version 1: one read of 24 registers, 0x0000..0x0017 (every version has them)
STATUS_COUNT_V2 = 0x0024  # version 2: one read of 36 registers, 0x0000..0x0023
STATUS_COUNT = STATUS_COUNT_V2  # the whole map this module describes
STATUS_COUNTS = {1: STATUS_COUNT_V1, 2: STATUS_COUNT_V2}

# ---------------------------------------------------------------- commands: holding registers, fc 3/6/16
SETPOINT_BASE = 0x0100  # allow, limit_a, limit_w, heartbeat timeout: written together in one fc 16
SETPOINT_COUNT = 5
COMMAND_FIELDS: tuple[Field, ...] = (
    Field("allow_charging", 0x0100, RegType.U16, meaning="1 allows charging, 0 stops (ramp down)"),
    Field("limit_a", 0x0101, RegType.U16, 0.1, "A", "current limit"),
    Field("limit_w", 0x0102, RegType.U32, 1.0, "W", "power limit"),
    Field("heartbeat_timeout_s", 0x0104, RegType.U16, 0.1, "s",
          "host watchdog timeout, default 50 (5 s), 0 is read as 1 (0.1 s)"),
    Field("heartbeat", 0x0105, RegType.U16, meaning="host heartbeat counter: write a changed value"),
    Field("emergency_shutdown", 0x0106, RegType.U16,
          meaning="write 1: immediate stop, latched until fault reset; writing 0 has no effect"),
    Field("fault_reset", 0x0107, RegType.U16,
          meaning="write 1: clear latched faults; the controller sets it back to 0"),
)
COMMAND_BASE = 0x0100
COMMAND_COUNT = 0x0008

DEFAULT_HEARTBEAT_TIMEOUT_S = 5.0
LATCHED_ERRORS = DcError.HOST_TIMEOUT  # errors that stay set until fault reset; the rest follow their cause

STATUS = {f.name: f for f in STATUS_FIELDS}
COMMANDS = {f.name: f for f in COMMAND_FIELDS}

# Stable machine-readable codes per error bit (drivers.errors.HardwareFault codes, OCPP mapping upstream).
ERROR_CODES: tuple[tuple[DcError, str], ...] = (
    (DcError.ISOLATION, "isolation_fault"),
    (DcError.OVER_VOLTAGE, "over_voltage"),
    (DcError.OVER_CURRENT, "over_current"),
    (DcError.OVER_TEMPERATURE, "over_temperature"),
    (DcError.EV_COMMUNICATION, "ev_communication"),
    (DcError.EV_ERROR, "ev_error"),
    (DcError.POWER_MODULE, "power_module"),
    (DcError.CONTACTOR, "contactor"),
    (DcError.HOST_TIMEOUT, "host_timeout"),
    (DcError.PILOT_FAULT, "pilot_fault"),
    (DcError.INTERNAL, "internal"),
)
ALL_ERRORS = DcError(sum(bit for bit, _ in ERROR_CODES))

# Vehicle faults of map version 2, each a stable fault code (and the flag's name in its standard, for people).
CHADEMO_FAULT_CODES: tuple[tuple[ChademoFault, str, str], ...] = (
    (ChademoFault.BATTERY_OVER_VOLTAGE, "chademo_battery_over_voltage", "battery overvoltage"),
    (ChademoFault.BATTERY_UNDER_VOLTAGE, "chademo_battery_under_voltage", "battery undervoltage"),
    (ChademoFault.CURRENT_DEVIATION, "chademo_current_deviation", "battery current deviation error"),
    (ChademoFault.HIGH_BATTERY_TEMPERATURE, "chademo_high_battery_temperature", "high battery temperature"),
    (ChademoFault.VOLTAGE_DEVIATION, "chademo_voltage_deviation", "battery voltage deviation error"),
)
ALL_CHADEMO_FAULTS = ChademoFault(sum(bit for bit, _, _ in CHADEMO_FAULT_CODES))
ALL_CHADEMO_STATUS = ChademoStatus(sum(ChademoStatus))
# the status flag that is a fault too: the vehicle's charging system (H'102.5.2)
CHADEMO_SYSTEM_FAULT_CODE = ("chademo_charging_system_fault", "vehicle charging system fault")
EV_ERROR_CODES: dict[EvErrorCode, tuple[str, str]] = {
    EvErrorCode.RESS_TEMPERATURE_INHIBIT: ("ccs_ress_temperature_inhibit", "FAILED_RESSTemperatureInhibit"),
    EvErrorCode.EV_SHIFT_POSITION: ("ccs_ev_shift_position", "FAILED_EVShiftPosition"),
    EvErrorCode.CHARGER_CONNECTOR_LOCK_FAULT: ("ccs_connector_lock_fault", "FAILED_ChargerConnectorLockFault"),
    EvErrorCode.EV_RESS_MALFUNCTION: ("ccs_ress_malfunction", "FAILED_EVRESSMalfunction"),
    EvErrorCode.CHARGING_CURRENT_DIFFERENTIAL: ("ccs_current_differential",
                                                "FAILED_ChargingCurrentdifferential"),
    EvErrorCode.CHARGING_VOLTAGE_OUT_OF_RANGE: ("ccs_voltage_out_of_range", "FAILED_ChargingVoltageOutOfRange"),
    EvErrorCode.RESERVED_A: ("ccs_reserved_error", "Reserved_A"),
    EvErrorCode.RESERVED_B: ("ccs_reserved_error", "Reserved_B"),
    EvErrorCode.RESERVED_C: ("ccs_reserved_error", "Reserved_C"),
    EvErrorCode.CHARGING_SYSTEM_INCOMPATIBILITY: ("ccs_system_incompatibility",
                                                  "FAILED_ChargingSystemIncompatibility"),
}


def encode_value(field: Field, value: float | None) -> list[int]:
    """Encode an engineering value (None = not available) into the field's registers."""
    if value is None:
        if field.not_available is None:
            raise ValueError(f"{field.name} has no not-available marker")
        marker = field.not_available
        return [marker >> 16, marker & 0xFFFF] if field.type is RegType.U32 else [marker]
    raw = round(value / field.scale)
    if field.type is RegType.U16:
        if not 0 <= raw <= 0xFFFF or raw == field.not_available:
            raise ValueError(f"{field.name}: {value} out of range")
        return [raw]
    if field.type is RegType.S16:
        if not -0x8000 <= raw <= 0x7FFF or raw == field.not_available:
            raise ValueError(f"{field.name}: {value} out of range")
        return [raw & 0xFFFF]
    if not 0 <= raw <= 0xFFFFFFFF or raw == field.not_available:
        raise ValueError(f"{field.name}: {value} out of range")
    return [raw >> 16, raw & 0xFFFF]


def decode_raw(field: Field, regs: Sequence[int]) -> int | None:
    """Return the raw integer of a field from its registers (None for the not-available marker)."""
    if len(regs) != field.width:
        raise DecodeError(f"{field.name}: expected {field.width} registers, got {len(regs)}")
    raw = (regs[0] << 16) | regs[1] if field.type is RegType.U32 else regs[0]
    if field.not_available is not None and raw == field.not_available:
        return None
    if field.type is RegType.S16 and raw >= 0x8000:
        raw -= 0x10000
    return raw


def decode_value(field: Field, regs: Sequence[int]) -> float | None:
    """Decode a field's registers into its engineering value (None when not available)."""
    raw = decode_raw(field, regs)
    return None if raw is None else raw * field.scale


def field_regs(field: Field, block: Sequence[int], base: int) -> Sequence[int]:
    """Slice a field's registers out of a block read from `base`."""
    start = field.address - base
    return block[start:start + field.width]


def _enum_value(kind: type[E], field: Field, raw: int | None) -> E:
    try:
        return kind(-1 if raw is None else raw)
    except ValueError:
        raise DecodeError(f"{field.name}: {raw} is not a valid {kind.__name__}") from None


def _flag(field: Field, raw: int | None) -> bool:
    if raw not in (0, 1):
        raise DecodeError(f"{field.name}: {raw} is not 0 or 1")
    return raw == 1


def status_count(version: int) -> int:
    """How many status registers a controller of this map version answers."""
    return STATUS_COUNTS[version]


def fields_of(version: int) -> tuple[Field, ...]:
    """The status fields a controller of this map version has."""
    return tuple(f for f in STATUS_FIELDS if f.version <= version)


def check_identity(block: Sequence[int]) -> None:
    """Raise DecodeError unless the block starts with this map's magic and a supported version."""
    if len(block) < 2 or block[0] != MAGIC:
        found = f"0x{block[0]:04X}" if block else "nothing"
        raise DecodeError(f"identification register 0x0000 holds {found}, expected 0x{MAGIC:04X}")
    if block[1] not in SUPPORTED_MAP_VERSIONS:
        raise DecodeError(
            f"register map version {block[1]} is not supported (supported: "
            f"{', '.join(str(v) for v in sorted(SUPPORTED_MAP_VERSIONS))})"
        )


def decode_status(block: Sequence[int], read_monotonic: float = 0.0, read_wall: float = 0.0) -> DcStatus:
    """Decode the status block (status_count(version) registers from STATUS_BASE) into a DcStatus."""
    check_identity(block)
    version = block[1]
    if len(block) != status_count(version):
        raise DecodeError(f"status block of map version {version}: expected {status_count(version)} registers, "
                          f"got {len(block)}")

    def raw(name: str) -> int | None:
        f = STATUS[name]
        return decode_raw(f, field_regs(f, block, STATUS_BASE))

    def value(name: str) -> float:
        f = STATUS[name]
        v = decode_value(f, field_regs(f, block, STATUS_BASE))
        if v is None:  # only fields with a marker can be None
            raise DecodeError(f"{name}: not available")
        return v

    errors_raw = raw("errors") or 0
    if errors_raw & ~int(ALL_ERRORS):
        raise DecodeError(f"errors: undefined bits 0x{errors_raw & ~int(ALL_ERRORS):04X}")
    soc_f, temp_f = STATUS["soc_pct"], STATUS["temperature_c"]
    return DcStatus(
        protocol=_enum_value(ChargeProtocol, STATUS["protocol"], raw("protocol")),
        plug=_enum_value(PlugState, STATUS["plug"], raw("plug")),
        ev_state=_enum_value(EvState, STATUS["ev_state"], raw("ev_state")),
        chademo_step=raw("chademo_step") or 0,
        ev_ready=_flag(STATUS["ev_ready"], raw("ev_ready")),
        soc_pct=decode_value(soc_f, field_regs(soc_f, block, STATUS_BASE)),
        ev_target_v=value("ev_target_v"),
        ev_target_a=value("ev_target_a"),
        ev_max_v=value("ev_max_v"),
        ev_max_a=value("ev_max_a"),
        present_v=value("present_v"),
        present_a=value("present_a"),
        isolation=_enum_value(Isolation, STATUS["isolation"], raw("isolation")),
        errors=DcError(errors_raw),
        estop=_enum_value(EstopReason, STATUS["estop"], raw("estop")),
        charging_allowed=_flag(STATUS["charging_allowed"], raw("charging_allowed")),
        limit_a=value("limit_a"),
        limit_w=value("limit_w"),
        temperature_c=decode_value(temp_f, field_regs(temp_f, block, STATUS_BASE)),
        read_monotonic=read_monotonic,
        read_wall=read_wall,
        map_version=version,
        detail=_decode_detail(block) if version >= 2 else None,
    )


def _bits(kind: type[F], field: Field, raw: int | None, defined: int) -> F:
    value = raw or 0
    if value & ~defined:
        raise DecodeError(f"{field.name}: undefined bits 0x{value & ~defined:04X}")
    return kind(value)


def _decode_detail(block: Sequence[int]) -> DcVehicleDetail:
    """The version 2 fields, each checked against its documented range."""

    def raw(name: str) -> int | None:
        f = STATUS[name]
        return decode_raw(f, field_regs(f, block, STATUS_BASE))

    def value(name: str) -> float | None:
        f = STATUS[name]
        v = decode_value(f, field_regs(f, block, STATUS_BASE))
        if v is not None and f.high is not None and v > f.high + f.scale / 2:
            raise DecodeError(f"{name}: {v:g} {f.unit} is above {f.high:g}")
        return v

    def whole(name: str) -> int | None:
        v = value(name)
        return None if v is None else round(v)

    return DcVehicleDetail(
        chademo_protocol=whole("chademo_protocol"),
        chademo_status=_bits(ChademoStatus, STATUS["chademo_status"], raw("chademo_status"),
                             int(ALL_CHADEMO_STATUS)),
        chademo_faults=_bits(ChademoFault, STATUS["chademo_faults"], raw("chademo_faults"),
                             int(ALL_CHADEMO_FAULTS)),
        max_charging_time_s=whole("max_charging_time_s"),
        estimated_charging_time_s=whole("estimated_charging_time_s"),
        battery_capacity_kwh=value("battery_capacity_kwh"),
        ccs_phase=_enum_value(CcsPhase, STATUS["ccs_phase"], raw("ccs_phase")),
        ev_error_code=_enum_value(EvErrorCode, STATUS["ev_error_code"], raw("ev_error_code")),
        full_soc_pct=value("full_soc_pct"),
        bulk_soc_pct=value("bulk_soc_pct"),
        ev_max_power_w=value("ev_max_power_w"),
    )


def encode_status(status: DcStatus, heartbeat_echo: int = 0, emergency_latched: bool = False) -> list[int]:
    """Encode a DcStatus (plus the two controller-only registers) into the status block of its map version."""
    version = status.map_version
    detail = status.detail or DcVehicleDetail()
    values: dict[str, float | None] = {
        "magic": MAGIC,
        "map_version": version,
        "protocol": int(status.protocol),
        "plug": int(status.plug),
        "ev_state": int(status.ev_state),
        "chademo_step": status.chademo_step,
        "ev_ready": int(status.ev_ready),
        "soc_pct": status.soc_pct,
        "ev_target_v": status.ev_target_v,
        "ev_target_a": status.ev_target_a,
        "ev_max_v": status.ev_max_v,
        "ev_max_a": status.ev_max_a,
        "present_v": status.present_v,
        "present_a": status.present_a,
        "isolation": int(status.isolation),
        "errors": int(status.errors),
        "estop": int(status.estop),
        "temperature_c": status.temperature_c,
        "charging_allowed": int(status.charging_allowed),
        "limit_a": status.limit_a,
        "limit_w": status.limit_w,
        "heartbeat_echo": heartbeat_echo & 0xFFFF,
        "emergency_latched": int(emergency_latched),
        "chademo_protocol": detail.chademo_protocol,
        "chademo_status": int(detail.chademo_status),
        "chademo_faults": int(detail.chademo_faults),
        "max_charging_time_s": detail.max_charging_time_s,
        "estimated_charging_time_s": detail.estimated_charging_time_s,
        "battery_capacity_kwh": detail.battery_capacity_kwh,
        "ccs_phase": int(detail.ccs_phase),
        "ev_error_code": int(detail.ev_error_code),
        "full_soc_pct": detail.full_soc_pct,
        "bulk_soc_pct": detail.bulk_soc_pct,
        "ev_max_power_w": detail.ev_max_power_w,
    }
    block = [0] * status_count(version)
    for f in fields_of(version):
        start = f.address - STATUS_BASE
        block[start:start + f.width] = encode_value(f, values[f.name])
    return block


def encode_setpoints(allowed: bool, limit_a: float, limit_w: float, heartbeat_timeout_s: float) -> list[int]:
    """Encode the setpoint block written in one fc 16 request at SETPOINT_BASE."""
    return (
        encode_value(COMMANDS["allow_charging"], int(allowed))
        + encode_value(COMMANDS["limit_a"], limit_a)
        + encode_value(COMMANDS["limit_w"], limit_w)
        + encode_value(COMMANDS["heartbeat_timeout_s"], heartbeat_timeout_s)
    )


def default_commands() -> list[int]:
    """The holding registers as a controller presents them after power-up."""
    return [*encode_setpoints(False, 0.0, 0.0, DEFAULT_HEARTBEAT_TIMEOUT_S), 0, 0, 0]


def error_codes(errors: DcError) -> list[str]:
    """Stable codes of the error bits set, in bit order."""
    return [code for bit, code in ERROR_CODES if errors & bit]


def vehicle_faults(detail: DcVehicleDetail | None) -> list[tuple[str, str]]:
    """(code, the flag's name in its standard) of each vehicle fault a version 2 status reports, CHAdeMO
    fault flags in bit order, then the CHAdeMO charging-system flag, then the CCS EV error code."""
    if detail is None:
        return []
    found = [(code, name) for bit, code, name in CHADEMO_FAULT_CODES if detail.chademo_faults & bit]
    if detail.chademo_status & ChademoStatus.CHARGING_SYSTEM_FAULT:
        found.append(CHADEMO_SYSTEM_FAULT_CODE)
    if detail.ev_error_code in EV_ERROR_CODES:
        found.append(EV_ERROR_CODES[detail.ev_error_code])
    return found
