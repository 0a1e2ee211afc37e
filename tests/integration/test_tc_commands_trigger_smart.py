"""TriggerMessage and SmartCharging commands against the running agent; limits read back from the simulator."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.harness import Rig


async def ok(rig: Rig, action: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """Send a call that must be answered with a CALLRESULT; return its payload."""
    result = await rig.cs_call(action, payload or {}, timeout=10)
    assert result["status"] == "result", f"{action}: {result}\n{rig.agent_log()[-2000:]}"
    return result["payload"]  # type: ignore[no-any-return]


def at(seconds: float) -> str:
    """An OCPP date-time `seconds` from now."""
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def dc_limit(rig: Rig) -> float:
    return float(rig.sim_state()["connectors"]["1"]["dc"]["limit_a"])


async def wait_limit(rig: Rig, limit: float, timeout: float = 10.0) -> None:
    try:
        await rig.office.wait_for(lambda: abs(dc_limit(rig) - limit) < 0.01, timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"DC limit is {dc_limit(rig)}, not {limit}\n{rig.agent_log()[-2500:]}") from None


def profile(pid: int, purpose: str, periods: list[tuple[int, float]], *, stack: int = 0, unit: str = "A",
            start_in_s: float = -1.0) -> dict[str, Any]:
    return {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {"chargingRateUnit": unit, "startSchedule": at(start_in_s),
                                 "chargingSchedulePeriod": [{"startPeriod": s, "limit": lim} for s, lim in periods]}}


# ---- trigger message -----------------------------------------------------------------------------------


@pytest.mark.parametrize("message", ["BootNotification", "Heartbeat", "DiagnosticsStatusNotification",
                                     "FirmwareStatusNotification"])
async def test_trigger_message_plain(rig: Rig, message: str) -> None:
    before = len(rig.calls(message))
    assert (await ok(rig, "TriggerMessage", {"requestedMessage": message}))["status"] == "Accepted"
    await rig.wait_call(message, count=before + 1, timeout=10)


async def test_trigger_status_and_meter_values(rig: Rig) -> None:
    seen = {c: len(rig.statuses(c)) for c in (0, 1, 2)}
    answer = await ok(rig, "TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 2})
    assert answer["status"] == "Accepted"
    await rig.office.wait_for(lambda: len(rig.statuses(2)) > seen[2], timeout=10)
    assert len(rig.statuses(1)) == seen[1]
    assert (await ok(rig, "TriggerMessage", {"requestedMessage": "StatusNotification"}))["status"] == "Accepted"
    await rig.office.wait_for(lambda: all(len(rig.statuses(c)) > seen[c] + (c == 2) for c in (0, 1, 2)),
                              timeout=10)
    answer = await ok(rig, "TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1})
    assert answer["status"] == "Accepted"
    values = await rig.wait_call("MeterValues", timeout=10)
    assert values["payload"]["connectorId"] == 1
    sampled = values["payload"]["meterValue"][0]["sampledValue"]
    assert sampled and all(s["context"] == "Trigger" for s in sampled)
    answer = await ok(rig, "TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 7})
    assert answer["status"] == "Rejected"


# ---- smart charging ------------------------------------------------------------------------------------


async def test_tx_profile_without_transaction_rejected(rig: Rig) -> None:
    answer = await ok(rig, "SetChargingProfile",
                      {"connectorId": 1, "csChargingProfiles": profile(5, "TxProfile", [(0, 20.0)])})
    assert answer["status"] == "Rejected"


async def test_smart_charging_limits_follow_profiles(rig: Rig) -> None:
    start = await rig.start_session(1)
    await rig.wait_status(1, "Charging")
    await wait_limit(rig, 200.0)
    answer = await ok(rig, "SetChargingProfile",
                      {"connectorId": 1, "csChargingProfiles": profile(1, "TxDefaultProfile", [(0, 50.0)])})
    assert answer["status"] == "Accepted"
    await wait_limit(rig, 50.0)
    # A higher stack level with a period boundary 4 s from now.
    answer = await ok(rig, "SetChargingProfile",
                      {"connectorId": 1, "csChargingProfiles": profile(2, "TxDefaultProfile",
                                                                       [(0, 60.0), (5, 40.0)], stack=1)})
    assert answer["status"] == "Accepted"
    await wait_limit(rig, 60.0)
    await wait_limit(rig, 40.0, timeout=15)
    # The charge point maximum caps whatever the transaction profiles allow.
    answer = await ok(rig, "SetChargingProfile",
                      {"connectorId": 0, "csChargingProfiles": profile(3, "ChargePointMaxProfile", [(0, 30.0)])})
    assert answer["status"] == "Accepted"
    await wait_limit(rig, 30.0)
    composite = await ok(rig, "GetCompositeSchedule", {"connectorId": 1, "duration": 120, "chargingRateUnit": "A"})
    assert composite["status"] == "Accepted" and composite["connectorId"] == 1
    schedule = composite["chargingSchedule"]
    assert schedule["chargingRateUnit"] == "A"
    assert schedule["chargingSchedulePeriod"][0]["startPeriod"] == 0
    assert {p["limit"] for p in schedule["chargingSchedulePeriod"]} == {30.0}
    watts = await ok(rig, "GetCompositeSchedule", {"connectorId": 1, "duration": 120, "chargingRateUnit": "W"})
    assert watts["status"] == "Accepted" and watts["chargingSchedule"]["chargingRateUnit"] == "W"
    assert watts["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] > 1000.0
    # A transaction profile for the running transaction.
    tx = start["response"]["payload"]["transactionId"]
    tx_profile = {**profile(4, "TxProfile", [(0, 20.0)]), "transactionId": tx}
    assert (await ok(rig, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": tx_profile}))["status"] \
        == "Accepted"
    await wait_limit(rig, 20.0)
    # Clearing everything restores the connector's own maximum.
    for pid in (4, 3, 2, 1):
        assert (await ok(rig, "ClearChargingProfile", {"id": pid}))["status"] == "Accepted"
    await wait_limit(rig, 200.0)
    assert (await ok(rig, "ClearChargingProfile", {"id": 99}))["status"] == "Unknown"


# ---- limits in W are honoured as power (issue 10) ------------------------------------------------------


@pytest.mark.parametrize("pack_v", [400.0, 800.0])
async def test_dc_power_profile_holds_50_kw_at_400_and_800_volts(rig: Rig, pack_v: float) -> None:
    # an EV that could take 150 A: 60 kW at 400 V, 120 kW at 800 V, so only the power limit holds it
    rig.sim_call("/ev", {"connector": 1, "pack_voltage_v": pack_v, "max_voltage_v": pack_v + 100,
                         "max_current_a": 150.0, "soc_pct": 20.0})
    answer = await ok(rig, "SetChargingProfile", {"connectorId": 0, "csChargingProfiles": profile(
        1, "TxDefaultProfile", [(0, 50000.0)], unit="W")})
    assert answer["status"] == "Accepted"
    await rig.start_session(1)
    await rig.wait_status(1, "Charging")
    await rig.wait_sim(lambda s: s["connectors"]["1"]["power_w"] > 40000.0, "power above 40 kW")
    powers = []
    for _ in range(8):
        state = rig.sim_state()["connectors"]["1"]
        assert state["dc"]["limit_w"] == 50000.0, state  # W to the power register, not 41.7 A
        assert state["dc"]["limit_a"] == 200.0, state  # the current limit is the connector's own
        powers.append(state["power_w"])
        await asyncio.sleep(0.25)
    assert max(powers) <= 50000.0 * 1.01, powers  # the controller's tolerance
    assert min(powers) >= 45000.0, powers  # honoured as power: not cut to 41.7 A x the battery voltage


async def test_ac_11_kw_profile_on_three_phases_offers_15_9_amps(rig: Rig) -> None:
    schedule = profile(1, "TxDefaultProfile", [(0, 11000.0)], unit="W")
    schedule["chargingSchedule"]["chargingSchedulePeriod"][0]["numberPhases"] = 1  # cannot switch: ignored
    assert (await ok(rig, "SetChargingProfile", {"connectorId": 2, "csChargingProfiles": schedule}))[
        "status"] == "Accepted"
    await rig.office.wait_for(lambda: rig.sim_state()["connectors"]["2"]["dc"]["limit_a"] == 15.9, timeout=10)
    composite = await ok(rig, "GetCompositeSchedule", {"connectorId": 2, "duration": 60, "chargingRateUnit": "W"})
    assert composite["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] <= 11000.0
