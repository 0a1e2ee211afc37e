"""DC safety end to end: the agent process on a CCS connector whose cable check is a Bender isoCHA425HV's own
measurement (served by the simulator over Modbus TCP), the local back office in 1.6 and 2.0.1; docs/dc-safety.md."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.harness import CARD, CP_ID, HERE, Rig

V201 = "2.0.1"
SIM_DC_SAFETY = HERE / "sim_dc_safety.toml"
IMD = {"name": "InsulationMonitor", "evse": {"id": 1}}
CONTACTOR = {"name": "PowerContactor", "evse": {"id": 1}}


async def dc_rig(rig_factory: Any, ocpp_version: str = "1.6") -> Rig:
    """The DC safety charger, started once its IMD self-test at start has passed."""
    rig: Rig = await rig_factory(start=False, ocpp_version=ocpp_version)
    rig.sim_config = SIM_DC_SAFETY
    await rig.start()
    await rig.wait_sim(lambda s: s["connectors"]["1"]["imd"]["self_tests"] >= 1, "IMD self-test at start")
    # the agent wrote its thresholds into the device (R1 warning, R2 fault)
    await rig.wait_sim(lambda s: s["connectors"]["1"]["imd"]["warning_ohm"] == 500_000.0, "IMD thresholds written")
    return rig


def problem_events(rig: Rig, component: dict[str, Any]) -> list[dict[str, Any]]:
    """The NotifyEvent eventData on a component's Problem variable, in the order received."""
    return [e for m in rig.calls("NotifyEvent") for e in m["payload"]["eventData"]
            if e["component"] == component and e["variable"]["name"] == "Problem"]


async def wait_problem(rig: Rig, component: dict[str, Any], tech_code: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        hits = [e for e in problem_events(rig, component) if e.get("techCode") == tech_code and not e.get("cleared")]
        return hits[-1] if hits else None

    try:
        return await rig.office.wait_for(found, timeout=20)
    except TimeoutError:
        raise AssertionError(f"no NotifyEvent {tech_code} on {component['name']}; saw "
                             f"{problem_events(rig, component)}\n{rig.agent_log()[-3000:]}") from None


async def wait_event(rig: Rig, event_type: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        hits = [m["payload"] for m in rig.calls("TransactionEvent") if m["payload"]["eventType"] == event_type]
        return hits[-1] if hits else None

    try:
        return await rig.office.wait_for(found, timeout=20)
    except TimeoutError:
        raise AssertionError(f"no TransactionEvent {event_type}\n{rig.agent_log()[-3000:]}") from None


async def energy_grows(rig: Rig) -> None:
    """Energy flows: the meter register grows by more than a rounding step from now on."""
    before = rig.meter_wh()
    await rig.wait_sim(lambda s: s["connectors"]["1"]["meter"]["register_wh"] > before + 5, "energy flowing")


async def test_isolation_warning_session_goes_on_and_is_reported(rig_factory: Any) -> None:
    rig = await dc_rig(rig_factory)
    start = await rig.start_session()
    await rig.wait_status(1, "Charging")
    await rig.wait_contactor(True)
    seen = len(rig.statuses(1))
    rig.fault("imd", "warning")  # 300 kOhm: below R1 (500), above R2 (100)
    warned = await rig.wait_status(1, "Charging", error_code="OtherError", since=seen)
    assert warned["vendorErrorCode"] == "isolation_warning" and "kOhm" in warned["info"]
    await energy_grows(rig)  # charging goes on
    assert rig.contactor_closed() and rig.calls("StopTransaction") == []
    seen = len(rig.statuses(1))
    rig.fault("imd", "warning", on=False)
    await rig.wait_status(1, "Charging", error_code="NoError", since=seen)
    rig.card()
    stop = await rig.wait_call("StopTransaction")
    assert stop["payload"]["reason"] == "Local"
    assert stop["payload"]["transactionId"] == int(start["response"]["payload"]["transactionId"])


async def test_isolation_fault_session_stops_energy_with_the_reason(rig_factory: Any) -> None:
    rig = await dc_rig(rig_factory)
    await rig.start_session()
    await rig.wait_status(1, "Charging")
    await rig.wait_contactor(True)
    rig.fault("imd", "fault")  # 50 kOhm: below R2
    await rig.wait_contactor(False)
    await rig.wait_sim(lambda s: s["connectors"]["1"]["current_a"] == 0.0, "no current")
    stop = await rig.wait_call("StopTransaction")
    assert stop["payload"]["reason"] == "Other"  # 1.6 has no GroundFault reason
    faulted = await rig.wait_status(1, "Faulted", error_code="GroundFailure")
    assert faulted["vendorErrorCode"] == "isolation_fault"
    assert "current still flowing" not in rig.agent_log()  # the controller ramped down before the opening
    # nothing starts while the insulation is bad
    seen = len(rig.calls("StartTransaction"))
    rig.card()
    await rig.wait_status(1, "Faulted")
    assert len(rig.calls("StartTransaction")) == seen and not rig.contactor_closed()
    rig.fault("imd", "fault", on=False)
    await rig.wait_status(1, "Finishing", since=len(rig.statuses(1)) - 1)


async def test_cable_check_gates_the_close(rig_factory: Any) -> None:
    """The IMD does not answer: no cable check passes, the transaction waits with the contactor open; once
    the IMD answers again (healthy) the contactor closes."""
    rig = await dc_rig(rig_factory)
    await asyncio.sleep(1.0)  # the self-test at start has ended (0.3 s) and its result is recorded
    rig.fault("imd", "silent")
    await rig.start_session()
    await rig.wait_status(1, "SuspendedEVSE")
    assert not rig.contactor_closed()
    rig.fault("imd", "silent", on=False)
    await rig.wait_status(1, "Charging")
    await rig.wait_contactor(True)


async def test_v201_warning_then_fault_notify_event_and_ground_fault(rig_factory: Any) -> None:
    rig = await dc_rig(rig_factory, V201)
    rig.card(CARD)
    rig.plug(1)
    started = await wait_event(rig, "Started")
    await rig.wait_contactor(True)
    rig.fault("imd", "warning")
    warning = await wait_problem(rig, IMD, "isolation_warning")
    assert warning["actualValue"] == "true" and warning["trigger"] == "Alerting"
    await energy_grows(rig)
    assert [m for m in rig.calls("TransactionEvent") if m["payload"]["eventType"] == "Ended"] == []
    rig.fault("imd", "fault")
    ended = await wait_event(rig, "Ended")
    assert ended["transactionInfo"]["stoppedReason"] == "GroundFault"
    assert ended["transactionInfo"]["transactionId"] == started["transactionInfo"]["transactionId"]
    await wait_problem(rig, IMD, "isolation_fault")
    await rig.wait_status(1, "Faulted")
    assert not rig.contactor_closed()
    assert rig.office.ledger(CP_ID)["problems"] == []


async def test_v201_welding_detected_after_opening_keeps_the_cable_locked(rig_factory: Any) -> None:
    rig = await dc_rig(rig_factory, V201)
    rig.card(CARD)
    rig.plug(1)
    await wait_event(rig, "Started")
    await rig.wait_contactor(True)
    rig.fault("contactor", "welded")
    rig.card(CARD)  # the driver stops: the current ramps down, the coil opens, the mirror contact stays closed
    ended = await wait_event(rig, "Ended")
    assert ended["transactionInfo"]["stoppedReason"] == "Local"
    welded = await wait_problem(rig, CONTACTOR, "contactor_welded")
    assert welded["actualValue"] == "true"
    await rig.wait_status(1, "Faulted")
    assert rig.sim_state()["connectors"]["1"]["locked"]
    answer = await rig.cs_call("UnlockConnector", {"evseId": 1, "connectorId": 1})
    assert answer["payload"]["status"] != "Unlocked", answer
    assert rig.sim_state()["connectors"]["1"]["locked"]


def evsectl(rig: Rig, *args: str) -> subprocess.CompletedProcess[str]:
    sock = str(rig.state_dir / "evsectl.sock")
    return subprocess.run([str(Path(sys.executable).parent / "evsectl"), "--socket", sock, *args],
                          capture_output=True, text=True, timeout=60, check=False)


async def test_evsectl_selftest_runs_the_imd_self_test(rig_factory: Any) -> None:
    rig = await dc_rig(rig_factory)
    await asyncio.sleep(1.0)  # the self-test at start has ended
    before = rig.sim_state()["connectors"]["1"]["imd"]["self_tests"]
    result = await asyncio.to_thread(evsectl, rig, "--json", "selftest", "1")
    report = json.loads(result.stdout)
    assert report["1"]["insulation_monitor"]["ok"], report
    assert rig.sim_state()["connectors"]["1"]["imd"]["self_tests"] == before + 1
    rig.fault("imd", "self_test_fail")
    failed = await asyncio.to_thread(evsectl, rig, "--json", "selftest", "1")
    assert failed.returncode == 1 and not json.loads(failed.stdout)["1"]["insulation_monitor"]["ok"]
    faulted = await rig.wait_status(1, "Faulted")
    assert faulted["vendorErrorCode"] in ("imd_self_test_failed", "imd_device_error")
    rig.fault("imd", "self_test_fail", on=False)
    passed = await asyncio.to_thread(evsectl, rig, "--json", "selftest", "1")
    assert json.loads(passed.stdout)["1"]["insulation_monitor"]["ok"]
    await rig.wait_status(1, "Available", since=len(rig.statuses(1)) - 1)
