"""OCPP 2.0.1 smart charging end to end: the agent process, the simulated AC pilot board on RS-485, and the local
2.0.1 back office sending SetChargingProfile, GetChargingProfiles, GetCompositeSchedule and ClearChargingProfile
(every frame checked against the official schemas by the back office)."""

from __future__ import annotations

from typing import Any

from tests.integration.harness import CARD, Rig
from tests.integration.test_tc_commands_trigger_smart import at
from tests.integration.test_v201_sessions import V201, wait_event

AC = 2  # the simulator's AC connector (EVSE 2): 3 phases, 230 V, a pilot board on the RS-485 line


async def ok(rig: Rig, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    result = await rig.cs_call(action, payload, timeout=10)
    assert result["status"] == "result", f"{action}: {result}\n{rig.agent_log()[-2000:]}"
    return result["payload"]  # type: ignore[no-any-return]


def offered_a(rig: Rig) -> float:
    return float(rig.sim_state()["connectors"][str(AC)]["dc"]["limit_a"])


async def wait_offered(rig: Rig, amps: float) -> None:
    await rig.wait_sim(lambda s: abs(float(s["connectors"][str(AC)]["dc"]["limit_a"]) - amps) < 0.01,
                       f"the pilot offers {amps} A (it offers {offered_a(rig)} A)")


def profile(pid: int, purpose: str, limit: float, unit: str = "A", **extra: Any) -> dict[str, Any]:
    return {"id": pid, "stackLevel": 0, "chargingProfilePurpose": purpose, "chargingProfileKind": "Absolute",
            "chargingSchedule": [{"id": 1, "chargingRateUnit": unit, "startSchedule": at(-1),
                                  "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}], **extra}


async def test_k01_k08_k09_k10_profiles_drive_the_ac_pilot_of_a_running_transaction(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp_version=V201)
    rig.card(CARD)
    rig.plug(AC)
    started = await wait_event(rig, "Started")
    tx = started["transactionInfo"]["transactionId"]
    assert started["evse"]["id"] == AC
    await wait_offered(rig, 32.0)

    # a TxProfile in W for the running transaction: 6900 W on 3 phases at 230 V is 10 A at the pilot
    answer = await ok(rig, "SetChargingProfile", {"evseId": AC, "chargingProfile": profile(
        1, "TxProfile", 6900.0, unit="W", transactionId=tx)})
    assert answer["status"] == "Accepted", answer
    await wait_offered(rig, 10.0)
    # the station max is lower still
    answer = await ok(rig, "SetChargingProfile", {"evseId": 0, "chargingProfile": profile(
        2, "ChargingStationMaxProfile", 8.0)})
    assert answer["status"] == "Accepted", answer
    await wait_offered(rig, 8.0)

    composite = await ok(rig, "GetCompositeSchedule", {"duration": 300, "evseId": AC, "chargingRateUnit": "A"})
    assert composite["status"] == "Accepted"
    assert composite["schedule"]["chargingSchedulePeriod"][0]["limit"] <= 8.0

    answer = await ok(rig, "GetChargingProfiles", {"requestId": 11, "chargingProfile": {}})
    assert answer["status"] == "Accepted"
    await rig.wait_call("ReportChargingProfiles", count=2)
    reports = [m["payload"] for m in rig.calls("ReportChargingProfiles")]
    assert {(r["evseId"], r["chargingProfile"][0]["id"]) for r in reports} == {(0, 2), (AC, 1)}
    assert [r["tbc"] for r in reports] == [True, False]

    assert (await ok(rig, "ClearChargingProfile", {"chargingProfileId": 2}))["status"] == "Accepted"
    await wait_offered(rig, 10.0)
    assert (await ok(rig, "ClearChargingProfile", {"chargingProfileCriteria": {
        "evseId": AC, "chargingProfilePurpose": "TxProfile"}}))["status"] == "Accepted"
    await wait_offered(rig, 32.0)
    answer = await ok(rig, "GetChargingProfiles", {"requestId": 12, "chargingProfile": {}})
    assert answer["status"] == "NoProfiles"
    assert rig.office.violations == []
