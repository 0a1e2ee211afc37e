"""The Modbus register map of the Bender ISOMETER isoCHA425HV, as data shared by the driver and the simulator.

Source: EVerest everest-core, modules/HardwareDrivers/IsolationMonitors/Bender_isoCHA425HV (the register
enum and channel decoding in main/isolation_monitorImpl.hpp, the writes in main/isolation_monitorImpl.cpp,
the defaults in manifest.yaml and docs/index.rst); docs/dc-safety.md says which parts we use. All values are
holding registers (function 3 to read, function 16 to write), PDU addresses as the EVerest module uses them.

A measurement channel is four registers:

    [value high word][value low word][alarm/test byte | unit/validity byte][channel description]

the value an IEEE 754 float32 (high word first); the third register's high byte holds the alarm type in bits
0-2 and the test type in bits 6-7, its low byte the unit in bits 0-4 and the validity in bits 6-7.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass

# ---------------------------------------------------------------- measurement channels (4 registers each)
RESISTANCE_RF = 1000  # insulation resistance rF, ohm
VOLTAGE_UN = 1008  # voltage between the DC conductors, V
VOLTAGE_UL1E = 1016  # voltage L1 (DC+) to earth, V
VOLTAGE_UL2E = 1020  # voltage L2 (DC-) to earth, V
CHANNEL_COUNT = 4

# ---------------------------------------------------------------- settings (one register each)
VOLTAGE_TO_EARTH_ALARM = 3000  # 1 enables the voltage-to-earth alarm
R1_PREALARM_KOHM = 3005  # response value R1 (pre-alarm): our warning threshold, kOhm
R2_ALARM_KOHM = 3007  # response value R2 (alarm): our fault threshold, kOhm
UNDERVOLTAGE_ALARM = 3008
OVERVOLTAGE_ALARM = 3010
AUTO_SELF_TEST = 3021  # 0 off; 3 the faster cable-check self-test of firmware above 5.00
CHADEMO_MODE = 3023  # 0 CCS, 1 CHAdeMO
SELF_TEST_AT_START = 3025
DEVICE_ENABLE = 3026  # 1 measures, 0 disabled
THRESHOLD_MIN_KOHM = 15  # the device's range for R1 and R2 (EVerest manifest: 15..600 kOhm on the isoCHA)
THRESHOLD_MAX_KOHM = 600

# ---------------------------------------------------------------- commands and identification
SELF_TEST_COMMAND = 8005
SELF_TEST_START = 0x5445  # "TE"
DEVICE_NAME = 9800  # 10 registers, two ASCII characters each, high byte first
DEVICE_NAME_COUNT = 10
FIRMWARE = 9820  # 6 registers: ident, version (x100), year, month, day, Modbus driver version
FIRMWARE_COUNT = 6
FAST_SELF_TEST_FIRMWARE = 500  # versions above this support the faster cable-check self-test


class Alarm(enum.IntEnum):
    """Alarm type, bits 0-2 of the third register's high byte."""

    NONE = 0
    PRE_WARNING = 1
    DEVICE_ERROR = 2
    WARNING = 4
    ALARM = 5


class TestType(enum.IntEnum):
    """Test type, bits 6-7 of the third register's high byte."""

    NONE = 0
    INTERNAL = 1
    EXTERNAL = 2  # a self-test started over Modbus


class Validity(enum.IntEnum):
    """Validity, bits 6-7 of the third register's low byte."""

    TRUE_VALUE = 0
    TRUE_IS_SMALLER = 1  # the real value is below the one shown
    TRUE_IS_BIGGER = 2  # the real value is above the one shown (e.g. beyond the measuring range)
    INVALID = 3


class Unit(enum.IntEnum):
    """Unit, bits 0-4 of the third register's low byte (the ones this map uses)."""

    INVALID = 0
    NO_UNIT = 1
    OHM = 2
    VOLT = 4


DESCRIPTION_INSULATION = 71  # "IsolationError_rF"
DESCRIPTION_VOLTAGE = 76


class DecodeError(ValueError):
    """A channel holds something the map does not allow (the driver counts it as implausible)."""


@dataclass(frozen=True, slots=True)
class Channel:
    """One decoded measurement channel."""

    value: float
    alarm: Alarm
    test: TestType
    unit: Unit
    validity: Validity
    description: int


def encode_channel(value: float, alarm: Alarm = Alarm.NONE, test: TestType = TestType.NONE,
                   unit: Unit = Unit.OHM, validity: Validity = Validity.TRUE_VALUE,
                   description: int = DESCRIPTION_INSULATION) -> list[int]:
    """Four registers of a channel."""
    raw = struct.unpack(">I", struct.pack(">f", value))[0]
    flags = ((int(test) << 6 | int(alarm)) << 8) | (int(validity) << 6 | int(unit))
    return [raw >> 16, raw & 0xFFFF, flags, description]


def decode_channel(regs: list[int], expected_unit: Unit) -> Channel:
    """Decode four registers; DecodeError for an unknown alarm, test or unit code or a non-finite value."""
    if len(regs) != CHANNEL_COUNT:
        raise DecodeError(f"a channel is {CHANNEL_COUNT} registers, got {len(regs)}")
    value = struct.unpack(">f", struct.pack(">I", (regs[0] << 16) | regs[1]))[0]
    high, low = regs[2] >> 8, regs[2] & 0xFF
    try:
        alarm = Alarm(high & 0x07)
        test = TestType(high >> 6)
    except ValueError:
        raise DecodeError(f"unknown alarm/test byte 0x{high:02X}") from None
    if high & 0x38:
        raise DecodeError(f"reserved bits set in the alarm/test byte 0x{high:02X}")
    validity = Validity(low >> 6)
    unit_code = low & 0x1F
    if validity is not Validity.INVALID:
        if unit_code != expected_unit:
            raise DecodeError(f"unit code {unit_code}, expected {int(expected_unit)} ({expected_unit.name})")
        if not math.isfinite(value) or value < 0:
            raise DecodeError(f"value {value!r} is not a non-negative number")
    return Channel(value, alarm, test, Unit(unit_code) if unit_code in Unit._value2member_map_ else Unit.INVALID,
                   validity, regs[3])


def encode_name(name: str) -> list[int]:
    """DEVICE_NAME registers for an ASCII name (padded with spaces)."""
    data = name.encode("ascii")[: DEVICE_NAME_COUNT * 2].ljust(DEVICE_NAME_COUNT * 2, b" ")
    return [data[i] << 8 | data[i + 1] for i in range(0, len(data), 2)]


def decode_name(regs: list[int]) -> str:
    """The device name; printable ASCII only (anything else is replaced by '?')."""
    chars = bytes(b for r in regs for b in (r >> 8, r & 0xFF))
    return "".join(chr(c) if 32 <= c < 127 else "?" for c in chars).strip(" ?\x00")
