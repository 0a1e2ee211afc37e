"""OCPP 2.0.1 monitoring end to end: the agent process, the simulated hardware and the local 2.0.1 back office
(every frame checked against the official schemas): monitors set and reported over OCPP, a simulated meter
that goes silent reported as a NotifyEvent on the PowerMeter's Problem variable, and its clearing."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.harness import CP_ID, Rig

V201 = "2.0.1"
METER = {"name": "PowerMeter", "evse": {"id": 1}}


def problem_events(rig: Rig) -> list[dict[str, Any]]:
    """The eventData on the PowerMeter's Problem variable the back office received, in order."""
    return [e for m in rig.calls("NotifyEvent") for e in m["payload"]["eventData"]
            if e["component"] == METER and e["variable"]["name"] == "Problem"]


async def test_n04_n02_g05_meter_fault_notify_event_and_its_clearing(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp_version=V201, hardware={"device_silent_suspend_s": 1.0,
                                                              "device_silent_stop_s": 30.0})
    answer = await rig.cs_call("SetVariableMonitoring", {"setMonitoringData": [
        {"component": {"name": "PowerMeter", "evse": {"id": 1}}, "variable": {"name": "Voltage"},
         "type": "LowerThreshold", "value": 100, "severity": 2}]})
    assert answer["status"] == "result", answer
    result = answer["payload"]["setMonitoringResult"][0]
    assert result["status"] == "Accepted" and result["id"] >= 1000
    report = await rig.cs_call("GetMonitoringReport", {"requestId": 3, "monitoringCriteria": ["ThresholdMonitoring"]})
    assert report["payload"]["status"] == "Accepted"
    notified = await rig.wait_call("NotifyMonitoringReport")
    ids = [m["id"] for d in notified["payload"]["monitor"] for m in d["variableMonitoring"]]
    assert result["id"] in ids

    rig.fault("meter", "silent")
    try:
        raised = await rig.office.wait_for(lambda: problem_events(rig) or None, timeout=20)
    except TimeoutError:
        raise AssertionError(f"no NotifyEvent for the silent meter\n{rig.agent_log()[-3000:]}") from None
    assert raised[0]["actualValue"] == "true" and not raised[0].get("cleared", False)
    assert raised[0]["eventNotificationType"] == "HardWiredNotification" and raised[0]["trigger"] == "Alerting"
    assert raised[0]["techCode"]
    rig.fault("meter", "silent", on=False)
    try:
        events = await rig.office.wait_for(lambda: problem_events(rig) if len(problem_events(rig)) > 1 else None,
                                           timeout=20)
    except TimeoutError:
        raise AssertionError(f"the meter fault never cleared\n{rig.agent_log()[-3000:]}") from None
    assert (events[1]["actualValue"], events[1]["cleared"]) == ("false", True)
    # the voltage never fell below 100 V while the meter answered: the custom monitor stayed quiet
    assert not [e for m in rig.calls("NotifyEvent") for e in m["payload"]["eventData"]
                if e.get("variableMonitoringId") == result["id"]]
    assert rig.office.violations == []


async def test_n08_g05_an_e_stop_while_offline_is_queued_and_sent_after_reconnect(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp_version=V201)
    await rig.office.go_offline()
    await rig.office.wait_for(lambda: not rig.office.connected(CP_ID), timeout=5)
    rig.estop(True)  # severity 0 (danger): at most OfflineQueuingSeverity, so it is kept
    await asyncio.sleep(2.0)
    rig.estop(False)
    await asyncio.sleep(2.0)
    await rig.office.go_online()

    def tripped() -> list[dict[str, Any]] | None:
        found = [e for m in rig.calls("NotifyEvent") for e in m["payload"]["eventData"]
                 if e["component"] == {"name": "EmergencyStopSensor"}]
        return found if len(found) >= 2 else None

    try:
        events = await rig.office.wait_for(tripped, timeout=30)
    except TimeoutError:
        raise AssertionError(f"the queued e-stop events never arrived\n{rig.agent_log()[-3000:]}") from None
    assert [(e["variable"]["name"], e["actualValue"], e.get("cleared", False)) for e in events] == [
        ("Tripped", "true", False), ("Tripped", "false", True)]
    assert events[0]["timestamp"] < events[1]["timestamp"]  # stamped when they happened, not when sent
    assert rig.office.violations == []
