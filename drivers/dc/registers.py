"""The evse-agent generic DC charge controller Modbus register map, as data shared by driver and simulator.

docs/dc-controller.md is the human version of this module (a test keeps both in step). Addresses are PDU
addresses (what pymodbus takes). Every status value lives in ONE contiguous block of input registers
(function 4) so that one request gives a consistent snapshot; commands are holding registers (functions
3/6/16). 32-bit values are two registers, high word first.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from drivers.base import (
    ChargeProtocol,
    DcError,
    DcStatus,
    EstopReason,
    EvState,
    Isolation,
    PlugState,
)

MAGIC = 0x4443  # "DC" in ASCII: a meter or another device at this id answers something else here
MAP_VERSION = 1  # bumped on an incompatible change; the driver refuses versions it does not know
SUPPORTED_MAP_VERSIONS = frozenset({1})

E = TypeVar("E", bound=enum.IntEnum)


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
)
STATUS_COUNT = 0x0018  # one read of 24 registers: 0x0000..0x0017

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


def encode_value(field: Field, value: float | None) -> list[int]:
    """Encode an engineering value (None = not available) into the field's registers."""
    if value is None:
        if field.not_available is None:
            raise ValueError(f"{field.name} has no not-available marker")
        return [field.not_available]
    raw = round(value / field.scale)
    if field.type is RegType.U16:
        if not 0 <= raw <= 0xFFFF or raw == field.not_available:
            raise ValueError(f"{field.name}: {value} out of range")
        return [raw]
    if field.type is RegType.S16:
        if not -0x8000 <= raw <= 0x7FFF or raw == field.not_available:
            raise ValueError(f"{field.name}: {value} out of range")
        return [raw & 0xFFFF]
    if not 0 <= raw <= 0xFFFFFFFF:
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
    """Decode the status block (STATUS_COUNT registers from STATUS_BASE) into a DcStatus."""
    if len(block) != STATUS_COUNT:
        raise DecodeError(f"status block: expected {STATUS_COUNT} registers, got {len(block)}")
    check_identity(block)

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
    )


def encode_status(status: DcStatus, heartbeat_echo: int = 0, emergency_latched: bool = False) -> list[int]:
    """Encode a DcStatus (plus the two controller-only registers) into the status block."""
    values: dict[str, float | None] = {
        "magic": MAGIC,
        "map_version": MAP_VERSION,
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
    }
    block = [0] * STATUS_COUNT
    for f in STATUS_FIELDS:
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
