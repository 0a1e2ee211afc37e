"""TriggerMessage and SmartCharging commands against the running agent; limits read back from the simulator."""

from __future__ import annotations

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
