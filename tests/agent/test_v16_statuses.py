"""The 1.6 names of the core's faults: errorCode, info and vendorErrorCode of a StatusNotification."""

from __future__ import annotations

import pytest

from agent.core.events import FAULT_EMERGENCY_STOP, FAULT_LOCAL_LIST_CONFLICT, DeviceRole, Fault
from agent.ocpp.v16.statuses import ChargePointErrorCode, ErrorFields, error_code_for, error_fields, snapshot_fields
from tests.agent.test_core_status import FAULT_CODES


@pytest.mark.parametrize(("code", "role", "expected"), FAULT_CODES)
def test_fault_code_maps_to_error_code(code: str, role: DeviceRole, expected: ChargePointErrorCode) -> None:
    assert error_code_for(code, role) is expected
    assert error_fields(Fault(code, role, "dev")) == ErrorFields(expected, "dev", code)


def test_no_fault_is_no_error() -> None:
    assert error_fields(None) == ErrorFields(ChargePointErrorCode.NO_ERROR, None, None)
    assert snapshot_fields(None) == {"error_code": "NoError", "vendor_error_code": None}


def test_info_names_the_device_and_its_message_in_50_characters() -> None:
    fields = error_fields(Fault("over_voltage", DeviceRole.DC_CONTROLLER, "dc1", "x" * 80))
    assert fields.info == ("dc1: " + "x" * 80)[:50]


def test_the_emergency_stop_is_other_error_with_its_vendor_code() -> None:
    fields = error_fields(Fault(FAULT_EMERGENCY_STOP, DeviceRole.ESTOP, info="emergency stop"))
    assert fields == ErrorFields(ChargePointErrorCode.OTHER_ERROR, "emergency stop", "EmergencyStop")


def test_a_local_list_conflict_has_its_own_error_code_and_no_vendor_code() -> None:
    fields = error_fields(Fault(FAULT_LOCAL_LIST_CONFLICT, info="list Accepted, office Invalid"))
    assert fields == ErrorFields(ChargePointErrorCode.LOCAL_LIST_CONFLICT, "list Accepted, office Invalid", None)
