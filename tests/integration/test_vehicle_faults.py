"""Vehicle faults end to end: the simulated EV reports a CHAdeMO fault flag or a CCS EV error code through the
simulated DC controller (map version 2, real Modbus), the agent process ends the transaction as stopped by the
EV and reports the fault to the local back office: 1.6 StatusNotification errorCode with the flag as
vendorErrorCode, 2.0.1 TransactionEvent stoppedReason StoppedByEV and a NotifyEvent on the controller's
Problem variable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration import harness
from tests.integration.harness import CP_ID, Rig


@pytest.fixture
def chademo_sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The integration simulator with a CHAdeMO outlet on connector 1 instead of CCS."""
    text = harness.SIM_CONFIG.read_text()
    assert text.count('protocol = "ccs"') == 1
    path = tmp_path / "sim-chademo.toml"
    path.write_text(text.replace('protocol = "ccs"', 'protocol = "chademo"'))
    monkeypatch.setattr(harness, "SIM_CONFIG", path)
    return path


async def _vehicle_fault_ends_the_session_1_6(rig: Rig, code: str, error_code: str, words: str,
                                              charging_shows: str = "") -> None:
    start = await rig.start_session()
    tx = start["response"]["payload"]["transactionId"]
    await rig.wait_status(1, "Charging")
    if charging_shows:
        from tests.integration.test_evsectl import evsectl

        text = evsectl(rig, "status").stdout
        assert charging_shows in text, text
    since = len(rig.statuses(1))
    rig.fault("ev", code)
    stop = await rig.wait_call("StopTransaction")
    assert (stop["payload"]["transactionId"], stop["payload"]["reason"]) == (tx, "Other")
    faulted = await rig.wait_status(1, "Faulted", error_code=error_code, since=since)
    assert faulted["vendorErrorCode"] == code, faulted  # names the flag
    assert words in faulted.get("info", ""), faulted
    await rig.wait_contactor(False)
    rig.unplug(1)  # the vehicle's flags belong to its session
    await rig.wait_status(1, "Available", since=since)


async def test_ccs_ev_error_code_stops_the_transaction_1_6(rig: Rig) -> None:
    await _vehicle_fault_ends_the_session_1_6(rig, "ccs_ress_malfunction", "OtherError", "FAILED_EVRESSMalfunction")


async def test_chademo_fault_flag_stops_the_transaction_1_6(chademo_sim: Path, rig: Rig) -> None:
    await _vehicle_fault_ends_the_session_1_6(
        rig, "chademo_current_deviation", "EVCommunicationError", "battery current deviation",
        charging_shows="protocol 2  charging enabled  flags charging_enabled  max time 5400 s")


def _problems(rig: Rig, component: str) -> list[dict[str, Any]]:
    return [e for m in rig.calls("NotifyEvent") for e in m["payload"]["eventData"]
            if e["component"].get("name") == component and e["variable"]["name"] == "Problem"]


async def test_ccs_ev_error_code_ends_the_transaction_stopped_by_ev_2_0_1(rig_factory: Any) -> None:
    from tests.integration.test_v201_sessions import wait_event

    rig: Rig = await rig_factory(ocpp_version="2.0.1")
    rig.card()
    rig.plug(1)
    started = await wait_event(rig, "Started")
    await rig.wait_contactor(True)
    rig.fault("ev", "ccs_voltage_out_of_range")
    ended = await wait_event(rig, "Ended")
    assert ended["transactionInfo"]["transactionId"] == started["transactionInfo"]["transactionId"]
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == ("AbnormalCondition",
                                                                                   "StoppedByEV")
    try:
        raised = await rig.office.wait_for(lambda: _problems(rig, "ISO15118Ctrlr") or None, timeout=20)
    except TimeoutError:
        raise AssertionError(f"no NotifyEvent for the vehicle fault\n{rig.agent_log()[-3000:]}") from None
    assert raised[0]["component"] == {"name": "ISO15118Ctrlr", "evse": {"id": 1}}
    assert (raised[0]["actualValue"], raised[0]["techCode"]) == ("true", "ccs_voltage_out_of_range")
    assert "FAILED_ChargingVoltageOutOfRange" in raised[0]["techInfo"]
    await rig.wait_status(1, "Faulted")
    rig.unplug(1)
    try:
        events = await rig.office.wait_for(
            lambda: _problems(rig, "ISO15118Ctrlr") if len(_problems(rig, "ISO15118Ctrlr")) > 1 else None,
            timeout=20)
    except TimeoutError:
        raise AssertionError(f"the vehicle fault never cleared\n{rig.agent_log()[-3000:]}") from None
    assert (events[1]["actualValue"], events[1]["cleared"]) == ("false", True)
    assert rig.office.violations == []
    assert rig.office.version_of(CP_ID) == "2.0.1"


async def test_technician_sees_the_ccs_detail_and_the_vehicle_fault(rig: Rig) -> None:
    import json
    import tarfile

    from tests.integration.test_evsectl import evsectl

    await rig.start_session()
    await rig.wait_status(1, "Charging")
    await rig.wait_sim(lambda s: s["connectors"]["1"]["ev"]["ccs_phase"] == "current_demand", "current demand")

    def dc1() -> dict[str, Any]:
        devices = json.loads(evsectl(rig, "--json", "status").stdout)["devices"]
        return next(d["dc"] for d in devices.values() if d.get("dc", {}).get("connector") == 1)

    view = dc1()
    assert (view["protocol"], view["map_version"]) == ("CCS", 2)
    assert view["ccs"]["phase"] in ("current_demand", "power_delivery")  # the poll may lag the EV by one step
    assert (view["ccs"]["full_soc_pct"], view["ccs"]["bulk_soc_pct"]) == (100.0, 80.0)
    assert view["ccs"]["ev_max_power_w"] == 150_000.0 and view["ccs"]["ev_error_code"] == "NO_ERROR"
    text = evsectl(rig, "status").stdout
    assert "dc connector 1: CCS (map v2)" in text and "CCS phase" in text and "full SoC 100.0 %" in text

    rig.fault("ev", "ccs_ev_shift_position")
    await rig.wait_call("StopTransaction")
    await rig.wait_status(1, "Faulted", error_code="OtherError")
    text = evsectl(rig, "status").stdout
    assert "FAULT ccs_ev_shift_position (FAILED_EVShiftPosition)" in text, text
    assert dc1()["ccs"]["ev_error_code"] == "EV_SHIFT_POSITION"
    bundle = json.loads(evsectl(rig, "--json", "bundle").stdout)
    with tarfile.open(bundle["path"]) as tar:
        member = tar.extractfile("status.json")
        assert member is not None
        status = json.loads(member.read())
    bundled = [d["dc"] for d in status["devices"].values() if d.get("dc", {}).get("connector") == 1]
    assert bundled and bundled[0]["ccs"]["ev_error_code"] == "EV_SHIFT_POSITION"
    assert {"code": "ccs_ev_shift_position", "name": "FAILED_EVShiftPosition"} in bundled[0]["faults"]


async def _get(rig: Rig, component: str, variable: str) -> dict[str, Any]:
    answer = await rig.cs_call("GetVariables", {"getVariableData": [
        {"component": {"name": component, "evse": {"id": 1}}, "variable": {"name": variable}}]})
    assert answer["status"] == "result", answer
    return answer["payload"]["getVariableResult"][0]  # type: ignore[no-any-return]


async def test_chademo_device_model_variables_and_fault_2_0_1(chademo_sim: Path, rig_factory: Any) -> None:
    from tests.integration.test_v201_sessions import wait_event

    rig: Rig = await rig_factory(ocpp_version="2.0.1")
    idle = await _get(rig, "CHAdeMOCtrlr", "CHAdeMOProtocolNumber")
    assert idle["attributeStatus"] == "Accepted" and idle.get("attributeValue", "") == ""  # no vehicle: no value
    rig.card()
    rig.plug(1)
    await wait_event(rig, "Started")
    await rig.wait_contactor(True)
    number = await _get(rig, "CHAdeMOCtrlr", "CHAdeMOProtocolNumber")
    assert (number["attributeStatus"], number["attributeValue"]) == ("Accepted", "2")
    status = await _get(rig, "CHAdeMOCtrlr", "VehicleStatus")
    assert status["attributeValue"] == "false"  # charging: the EV contactor is closed
    rig.fault("ev", "chademo_battery_over_voltage")
    ended = await wait_event(rig, "Ended")
    assert ended["transactionInfo"]["stoppedReason"] == "StoppedByEV"
    try:
        raised = await rig.office.wait_for(lambda: _problems(rig, "CHAdeMOCtrlr") or None, timeout=20)
    except TimeoutError:
        raise AssertionError(f"no NotifyEvent for the vehicle fault\n{rig.agent_log()[-3000:]}") from None
    assert (raised[0]["techCode"], raised[0]["techInfo"]) == ("chademo_battery_over_voltage", "battery overvoltage")
    assert (await _get(rig, "CHAdeMOCtrlr", "Problem"))["attributeValue"] == "true"
    assert rig.office.violations == []
