"""The 1.6 names of the core's faults: ChargePointErrorCode, info and vendorErrorCode of a StatusNotification.

The core reports a domain `Fault` (the driver's code, the device's role, the device, its message); the
table here is where 1.6 decides which errorCode the back office sees for it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from agent.core.events import FAULT_EMERGENCY_STOP, FAULT_LOCAL_LIST_CONFLICT, DeviceRole, Fault, StopReason

INFO_MAX = 50  # StatusNotification.info: CiString50Type
VENDOR_CODE_MAX = 255  # what the snapshot keeps; the wire cuts vendorErrorCode to its CiString50Type


class ChargePointErrorCode(enum.StrEnum):
    """Error code reported with a status; values are the OCPP 1.6 ChargePointErrorCode strings."""

    NO_ERROR = "NoError"
    CONNECTOR_LOCK_FAILURE = "ConnectorLockFailure"
    EV_COMMUNICATION_ERROR = "EVCommunicationError"
    GROUND_FAILURE = "GroundFailure"
    HIGH_TEMPERATURE = "HighTemperature"
    INTERNAL_ERROR = "InternalError"
    LOCAL_LIST_CONFLICT = "LocalListConflict"
    OTHER_ERROR = "OtherError"
    OVER_CURRENT_FAILURE = "OverCurrentFailure"
    OVER_VOLTAGE = "OverVoltage"
    POWER_METER_FAILURE = "PowerMeterFailure"
    POWER_SWITCH_FAILURE = "PowerSwitchFailure"
    READER_FAILURE = "ReaderFailure"
    RESET_FAILURE = "ResetFailure"
    UNDER_VOLTAGE = "UnderVoltage"
    WEAK_SIGNAL = "WeakSignal"


_CODE_MAP = {
    "energy_backwards": ChargePointErrorCode.POWER_METER_FAILURE,
    "meter_replaced": ChargePointErrorCode.POWER_METER_FAILURE,
    "isolation_fault": ChargePointErrorCode.GROUND_FAILURE,
    # an insulation warning: charging goes on, so not GroundFailure (back offices take that for a failure);
    # OtherError with vendorErrorCode isolation_warning, the device and resistance in info
    "over_current": ChargePointErrorCode.OVER_CURRENT_FAILURE,
    "over_voltage": ChargePointErrorCode.OVER_VOLTAGE,
    "under_voltage": ChargePointErrorCode.UNDER_VOLTAGE,
    "over_temperature": ChargePointErrorCode.HIGH_TEMPERATURE,
    "lock_failure": ChargePointErrorCode.CONNECTOR_LOCK_FAILURE,
    "ev_communication": ChargePointErrorCode.EV_COMMUNICATION_ERROR,
    "contactor_welded": ChargePointErrorCode.POWER_SWITCH_FAILURE,
    "contactor_not_closed": ChargePointErrorCode.POWER_SWITCH_FAILURE,
    FAULT_EMERGENCY_STOP: ChargePointErrorCode.OTHER_ERROR,
    FAULT_LOCAL_LIST_CONFLICT: ChargePointErrorCode.LOCAL_LIST_CONFLICT,
    # Vehicle faults (docs/dc-controller.md): the vehicle says the exchange with the charger went wrong
    # (what it asked and what it got differ, incompatible systems, the charger's lock) -> EVCommunicationError;
    # a fault of its own battery or drivetrain -> OtherError. vendorErrorCode names the flag either way.
    "chademo_current_deviation": ChargePointErrorCode.EV_COMMUNICATION_ERROR,
    "chademo_voltage_deviation": ChargePointErrorCode.EV_COMMUNICATION_ERROR,
    "ccs_connector_lock_fault": ChargePointErrorCode.EV_COMMUNICATION_ERROR,
    "ccs_current_differential": ChargePointErrorCode.EV_COMMUNICATION_ERROR,
    "ccs_voltage_out_of_range": ChargePointErrorCode.EV_COMMUNICATION_ERROR,
    "ccs_system_incompatibility": ChargePointErrorCode.EV_COMMUNICATION_ERROR,
    "chademo_battery_over_voltage": ChargePointErrorCode.OTHER_ERROR,
    "chademo_battery_under_voltage": ChargePointErrorCode.OTHER_ERROR,
    "chademo_high_battery_temperature": ChargePointErrorCode.OTHER_ERROR,
    "chademo_charging_system_fault": ChargePointErrorCode.OTHER_ERROR,
    "ccs_ress_temperature_inhibit": ChargePointErrorCode.OTHER_ERROR,
    "ccs_ev_shift_position": ChargePointErrorCode.OTHER_ERROR,
    "ccs_ress_malfunction": ChargePointErrorCode.OTHER_ERROR,
    "ccs_reserved_error": ChargePointErrorCode.OTHER_ERROR,
}

# stop reasons 1.6's Reason enumeration lacks (the 1.6 schema refuses anything else), and what 1.6 says instead
_REASONS_16: dict[StopReason, str] = {StopReason.STOPPED_BY_EV: "Other", StopReason.GROUND_FAULT: "Other"}

# A generic device code ("it does not answer") is named by the kind of device.
_BY_ROLE = {
    DeviceRole.METER: ChargePointErrorCode.POWER_METER_FAILURE,
    DeviceRole.ID_READER: ChargePointErrorCode.READER_FAILURE,
    DeviceRole.LOCK: ChargePointErrorCode.CONNECTOR_LOCK_FAILURE,
}
_GENERIC_CODES = ("communication", "timeout", "stale")

# vendorErrorCode of the core's own codes: the e-stop keeps the word back offices already alarm on; a
# local list conflict says all in its errorCode
_VENDOR_CODES: dict[str, str | None] = {FAULT_EMERGENCY_STOP: "EmergencyStop", FAULT_LOCAL_LIST_CONFLICT: None}


def stop_reason_16(reason: StopReason) -> str:
    """The 1.6 Reason of a StopTransaction for the core's stop reason."""
    return _REASONS_16.get(reason, reason.value)


def error_code_for(code: str, role: DeviceRole) -> ChargePointErrorCode:
    """The 1.6 errorCode of a fault code (and of the device's role for generic codes)."""
    if code in _CODE_MAP:
        return _CODE_MAP[code]
    if code in _GENERIC_CODES and role in _BY_ROLE:
        return _BY_ROLE[role]
    return ChargePointErrorCode.OTHER_ERROR


@dataclass(frozen=True, slots=True)
class ErrorFields:
    """errorCode, info and vendorErrorCode of a StatusNotification (before the wire's 50-character cut)."""

    error_code: ChargePointErrorCode = ChargePointErrorCode.NO_ERROR
    info: str | None = None
    vendor_error_code: str | None = None


def error_fields(fault: Fault | None) -> ErrorFields:
    """How 1.6 reports a fault: info names the device (and its message), vendorErrorCode is the driver's code."""
    if fault is None:
        return ErrorFields()
    info = fault.info
    if fault.source:
        info = f"{fault.source}: {fault.info}" if fault.info else fault.source
    vendor = _VENDOR_CODES[fault.code] if fault.code in _VENDOR_CODES else fault.code[:VENDOR_CODE_MAX]
    return ErrorFields(error_code_for(fault.code, fault.role), info[:INFO_MAX] or None, vendor)


def snapshot_fields(fault: Fault | None) -> dict[str, Any]:
    """The error columns `evsectl status` shows: what the back office was told."""
    fields = error_fields(fault)
    return {"error_code": fields.error_code.value, "vendor_error_code": fields.vendor_error_code}
