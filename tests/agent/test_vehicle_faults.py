"""Vehicle faults (CHAdeMO flags, CCS EV error codes): the stop reason the core decides, and how each protocol
adapter reports them, as one table."""

from __future__ import annotations

import pytest

from agent.core import DeviceRole, FaultCleared, FaultRaised, StatusChanged, StopReason, TransactionStopped
from agent.core.events import ISOLATION_FAULT_CODES, Fault
from agent.core.faults import STOP_REASONS, VEHICLE_FAULT_CODES, stop_reason_for
from agent.ocpp.v16.statuses import ChargePointErrorCode, error_fields, stop_reason_16
from agent.ocpp.v201.journal import ENDED
from agent.ocpp.v201.statuses import fault_report
from drivers.dc import registers as reg
from tests.agent.test_core_rig import Rig, one, only

EVC = ChargePointErrorCode.EV_COMMUNICATION_ERROR
OTHER = ChargePointErrorCode.OTHER_ERROR
EV = StopReason.STOPPED_BY_EV

# code -> (stop reason, 1.6 errorCode, 2.0.1 component whose Problem variable reports it)
TABLE: dict[str, tuple[StopReason, ChargePointErrorCode, str]] = {
    "chademo_battery_over_voltage": (EV, OTHER, "CHAdeMOCtrlr"),
    "chademo_battery_under_voltage": (EV, OTHER, "CHAdeMOCtrlr"),
    "chademo_current_deviation": (EV, EVC, "CHAdeMOCtrlr"),
    "chademo_high_battery_temperature": (EV, OTHER, "CHAdeMOCtrlr"),
    "chademo_voltage_deviation": (EV, EVC, "CHAdeMOCtrlr"),
    "chademo_charging_system_fault": (EV, OTHER, "CHAdeMOCtrlr"),
    "ccs_ress_temperature_inhibit": (EV, OTHER, "ISO15118Ctrlr"),
    "ccs_ev_shift_position": (EV, OTHER, "ISO15118Ctrlr"),
    "ccs_connector_lock_fault": (EV, EVC, "ISO15118Ctrlr"),
    "ccs_ress_malfunction": (EV, OTHER, "ISO15118Ctrlr"),
    "ccs_current_differential": (EV, EVC, "ISO15118Ctrlr"),
    "ccs_voltage_out_of_range": (EV, EVC, "ISO15118Ctrlr"),
    "ccs_reserved_error": (EV, OTHER, "ISO15118Ctrlr"),
    "ccs_system_incompatibility": (EV, EVC, "ISO15118Ctrlr"),
    "ev_error": (EV, OTHER, "Controller"),  # version 1: "the EV reports an error", no detail
    # station faults keep Other
    "isolation_fault": (StopReason.GROUND_FAULT, ChargePointErrorCode.GROUND_FAILURE, "InsulationMonitor"),
    "over_voltage": (StopReason.OTHER, ChargePointErrorCode.OVER_VOLTAGE, "ElectricalFeed"),
    "ev_communication": (StopReason.OTHER, EVC, "ChargingStatusIndicator"),
    "controller_communication": (StopReason.OTHER, OTHER, "Controller"),
}


def driver_vehicle_codes() -> set[str]:
    """Every vehicle fault code the DC driver can report."""
    codes = {code for _, code, _ in reg.CHADEMO_FAULT_CODES} | {reg.CHADEMO_SYSTEM_FAULT_CODE[0]}
    return codes | {code for code, _ in reg.EV_ERROR_CODES.values()}


def test_the_core_knows_every_vehicle_fault_of_the_driver() -> None:
    assert driver_vehicle_codes() | {"ev_error"} == VEHICLE_FAULT_CODES
    assert set(STOP_REASONS) == VEHICLE_FAULT_CODES | ISOLATION_FAULT_CODES
    assert driver_vehicle_codes() <= set(TABLE)


@pytest.mark.parametrize("code", sorted(TABLE))
def test_fault_to_stop_reason_and_ocpp_error(code: str) -> None:
    reason, error_code, component = TABLE[code]
    assert stop_reason_for(code) is reason
    fault = Fault(code, DeviceRole.DC_CONTROLLER, "dc1", "the flag's name")
    fields = error_fields(fault)
    assert fields.error_code is error_code
    assert fields.vendor_error_code == code  # names the flag
    assert fields.info == "dc1: the flag's name"
    report = fault_report(fault)
    assert (report.component, report.variable, report.evse_scoped) == (component, "Problem", True)


def test_stopped_by_ev_is_other_in_1_6_and_stopped_by_ev_in_2_0_1() -> None:
    assert stop_reason_16(StopReason.STOPPED_BY_EV) == "Other"
    assert ENDED[StopReason.STOPPED_BY_EV] == ("AbnormalCondition", "StoppedByEV")
    reasons_16 = {"Local", "Remote", "EVDisconnected", "EmergencyStop", "PowerLoss", "Reboot", "DeAuthorized",
                  "HardReset", "SoftReset", "UnlockCommand", "Other"}
    for reason in StopReason:
        if reason is not StopReason.MASTER_PASS:  # only 2.0.1 configures a master pass
            assert stop_reason_16(reason) in reasons_16, reason


@pytest.mark.parametrize("code", ["chademo_battery_over_voltage", "ccs_ress_malfunction", "ev_error"])
def test_a_vehicle_fault_ends_the_transaction_stopped_by_the_ev(code: str) -> None:
    rig = Rig()
    rig.charge()
    out = rig.send(FaultRaised(1, "dc1", code, True, DeviceRole.DC_CONTROLLER, "the flag's name"))
    assert one(out, TransactionStopped).reason is StopReason.STOPPED_BY_EV
    status = only(rig.log, StatusChanged)[-1]
    assert status.fault is not None and status.fault.code == code
    assert status.status.value == "Faulted"
    rig.send(FaultCleared(1, "dc1"))  # the vehicle is unplugged: its flags go with its session
    assert only(rig.log, StatusChanged)[-1].fault is None


def test_a_station_fault_still_ends_it_with_other() -> None:
    rig = Rig()
    rig.charge()
    out = rig.send(FaultRaised(1, "dc1", "over_voltage", True, DeviceRole.DC_CONTROLLER))
    assert one(out, TransactionStopped).reason is StopReason.OTHER
