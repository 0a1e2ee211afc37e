"""Back-office commands that act on connectors: remote start/stop, reset, unlock, availability, reservation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.integration.harness import CARD, CP_ID, Rig

OTHER = "0F00FFEE01"  # a second card the back office accepts


async def ok(rig: Rig, action: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """Send a call that must be answered with a CALLRESULT; return its payload."""
    result = await rig.cs_call(action, payload or {}, timeout=10)
    assert result["status"] == "result", f"{action}: {result}\n{rig.agent_log()[-2000:]}"
    return result["payload"]  # type: ignore[no-any-return]


def in_s(seconds: float) -> str:
    """An OCPP date-time `seconds` from now."""
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def charging(rig: Rig, connector: int = 1) -> int:
    """Card and plug on a connector; wait for Charging; return the transactionId."""
    start = await rig.start_session(connector)
    await rig.wait_status(connector, "Charging")
    return int(start["response"]["payload"]["transactionId"])


async def agent_exit(rig: Rig, timeout: float = 20.0) -> int:
    """Wait for the agent process to exit by itself; its exit code."""
    assert rig.agent is not None
    for _ in range(int(timeout / 0.05)):
        code = rig.agent.poll()
        if code is not None:
            return code
        await asyncio.sleep(0.05)
    raise AssertionError(f"agent did not exit\n{rig.agent_log()[-2000:]}")


async def restart_agent(rig: Rig) -> None:
    boots = len(rig.calls("BootNotification"))
    await rig.stop_agent()
    rig.start_agent()
    await rig.wait_call("BootNotification", count=boots + 1, timeout=20)


# ---- remote start / stop ------------------------------------------------------------------------------


async def test_remote_start_with_connector_then_remote_stop(rig: Rig) -> None:
    answer = await ok(rig, "RemoteStartTransaction", {"idTag": CARD, "connectorId": 1})
    assert answer["status"] == "Accepted"
    rig.plug(1)
    start = await rig.wait_call("StartTransaction")
    assert start["payload"]["idTag"] == CARD and start["payload"]["connectorId"] == 1
    await rig.wait_status(1, "Charging")
    tx = start["response"]["payload"]["transactionId"]
    assert (await ok(rig, "RemoteStopTransaction", {"transactionId": tx + 1000}))["status"] == "Rejected"
    assert (await ok(rig, "RemoteStopTransaction", {"transactionId": tx}))["status"] == "Accepted"
    stop = await rig.wait_call("StopTransaction")
    assert stop["payload"]["transactionId"] == tx and stop["payload"]["reason"] == "Remote"


async def test_remote_start_without_connector(rig: Rig) -> None:
    assert (await ok(rig, "RemoteStartTransaction", {"idTag": CARD}))["status"] == "Accepted"
    rig.plug(2)
    start = await rig.wait_call("StartTransaction")
    assert start["payload"]["idTag"] == CARD and start["payload"]["connectorId"] == 2


async def test_remote_start_with_tx_profile_limits_the_controller(rig: Rig) -> None:
    profile = {"chargingProfileId": 31, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
               "chargingProfileKind": "Relative",
               "chargingSchedule": {"chargingRateUnit": "A",
                                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 32.0}]}}
    answer = await ok(rig, "RemoteStartTransaction", {"idTag": CARD, "connectorId": 1, "chargingProfile": profile})
    assert answer["status"] == "Accepted"
    rig.plug(1)
    await rig.wait_call("StartTransaction")
    await rig.wait_status(1, "Charging")
    await rig.office.wait_for(lambda: rig.sim_state()["connectors"]["1"]["dc"]["limit_a"] == 32.0, timeout=10)


async def test_a_profile_the_codec_refuses_is_rejected_by_remote_start_and_set_charging_profile(rig: Rig) -> None:
    """Schema-valid, but the first period starts at 5 s: the 1.6 codec refuses it before the core sees it."""
    profile = {"chargingProfileId": 32, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
               "chargingProfileKind": "Relative",
               "chargingSchedule": {"chargingRateUnit": "A",
                                    "chargingSchedulePeriod": [{"startPeriod": 5, "limit": 16.0}]}}
    answer = await ok(rig, "RemoteStartTransaction", {"idTag": CARD, "connectorId": 1, "chargingProfile": profile})
    assert answer["status"] == "Rejected"
    default = {**profile, "chargingProfilePurpose": "TxDefaultProfile"}
    answer = await ok(rig, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": default})
    assert answer["status"] == "Rejected"
    assert "first startPeriod must be 0" in rig.agent_log()


async def test_remote_start_rejected_unknown_connector_and_busy(rig: Rig) -> None:
    answer = await ok(rig, "RemoteStartTransaction", {"idTag": CARD, "connectorId": 7})
    assert answer["status"] == "Rejected"
    await charging(rig, 1)
    answer = await ok(rig, "RemoteStartTransaction", {"idTag": OTHER, "connectorId": 1})
    assert answer["status"] == "Rejected"
    assert (await ok(rig, "RemoteStopTransaction", {"transactionId": 424242}))["status"] == "Rejected"


# ---- reset ----------------------------------------------------------------------------------------


async def _reset(rig: Rig, kind: str) -> None:
    tx = await charging(rig, 1)
    assert (await ok(rig, "Reset", {"type": kind}))["status"] == "Accepted"
    stop = await rig.wait_call("StopTransaction")
    assert stop["payload"]["transactionId"] == tx and stop["payload"]["reason"] == f"{kind}Reset"
    assert await agent_exit(rig) == 0  # systemd restarts it in production
    boots = len(rig.calls("BootNotification"))
    rig.start_agent()
    await rig.wait_call("BootNotification", count=boots + 1, timeout=20)
    assert len(rig.calls("StopTransaction")) == 1  # stopped once, not again as PowerLoss


async def test_reset_soft_stops_the_transaction_and_restarts(rig: Rig) -> None:
    await _reset(rig, "Soft")


async def test_reset_hard_stops_the_transaction_and_restarts(rig: Rig) -> None:
    await _reset(rig, "Hard")


# ---- unlock connector -------------------------------------------------------------------------------


async def test_unlock_connector_stops_the_transaction(rig: Rig) -> None:
    tx = await charging(rig, 1)
    assert (await ok(rig, "UnlockConnector", {"connectorId": 1}))["status"] == "Unlocked"
    stop = await rig.wait_call("StopTransaction")
    assert stop["payload"]["transactionId"] == tx and stop["payload"]["reason"] == "UnlockCommand"


async def test_unlock_connector_failed_when_the_lock_is_stuck(rig: Rig) -> None:
    await charging(rig, 1)
    rig.fault("lock", "stuck", connector=1)
    await rig.wait_status(1, "Faulted", error_code="ConnectorLockFailure")
    assert (await ok(rig, "UnlockConnector", {"connectorId": 1}))["status"] == "UnlockFailed"


async def test_unlock_connector_without_lock_not_supported(rig: Rig) -> None:
    assert (await ok(rig, "UnlockConnector", {"connectorId": 2}))["status"] == "NotSupported"
    assert (await ok(rig, "UnlockConnector", {"connectorId": 9}))["status"] == "NotSupported"


# ---- change availability ----------------------------------------------------------------------------


async def test_change_availability_connector_and_persisted(rig: Rig) -> None:
    assert (await ok(rig, "ChangeAvailability", {"connectorId": 2, "type": "Inoperative"}))["status"] == "Accepted"
    await rig.wait_status(2, "Unavailable")
    await restart_agent(rig)
    seen = len(rig.statuses(2))
    await rig.office.wait_for(lambda: len(rig.statuses(2)) > seen, timeout=10)
    assert rig.statuses(2)[-1]["status"] == "Unavailable"
    # Inoperative refuses a remote start there.
    assert (await ok(rig, "RemoteStartTransaction", {"idTag": CARD, "connectorId": 2}))["status"] == "Rejected"
    assert (await ok(rig, "ChangeAvailability", {"connectorId": 2, "type": "Operative"}))["status"] == "Accepted"
    await rig.wait_status(2, "Available")
    assert (await ok(rig, "ChangeAvailability", {"connectorId": 5, "type": "Operative"}))["status"] == "Rejected"


async def test_change_availability_scheduled_during_transaction(rig: Rig) -> None:
    await charging(rig, 1)
    answer = await ok(rig, "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert answer["status"] == "Scheduled"
    assert rig.statuses(1)[-1]["status"] == "Charging"
    rig.card()
    await rig.wait_call("StopTransaction")
    rig.unplug(1)
    await rig.wait_status(1, "Unavailable")


async def test_scheduled_unavailable_survives_a_reboot(rig: Rig) -> None:
    await charging(rig, 1)
    answer = await ok(rig, "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert answer["status"] == "Scheduled"
    rig.card()
    await rig.wait_call("StopTransaction")
    await rig.wait_status(1, "Unavailable")
    await restart_agent(rig)
    seen = len(rig.statuses(1))
    await rig.office.wait_for(lambda: len(rig.statuses(1)) > seen, timeout=10)
    assert rig.statuses(1)[-1]["status"] == "Unavailable"


async def test_change_availability_connector_zero_during_a_transaction_is_scheduled(rig: Rig) -> None:
    await charging(rig, 1)
    seen = {c: len(rig.statuses(c)) for c in (0, 1, 2)}
    answer = await ok(rig, "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
    assert answer["status"] == "Scheduled"
    await asyncio.sleep(1.5)
    assert all(len(rig.statuses(c)) == seen[c] for c in (0, 1, 2)), "nothing changes before the transaction ends"
    rig.card()
    await rig.wait_call("StopTransaction")
    for connector in (0, 1, 2):
        await rig.wait_status(connector, "Unavailable")


async def test_change_availability_connector_zero(rig: Rig) -> None:
    assert (await ok(rig, "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}))["status"] == "Accepted"
    for connector in (0, 1, 2):
        await rig.wait_status(connector, "Unavailable")
    assert (await ok(rig, "ChangeAvailability", {"connectorId": 0, "type": "Operative"}))["status"] == "Accepted"
    for connector in (1, 2):
        await rig.office.wait_for(lambda c=connector: rig.statuses(c)[-1]["status"] == "Available", timeout=10)


# ---- reservation ------------------------------------------------------------------------------------


def reserve(connector: int, reservation_id: int, seconds: float = 120, id_tag: str = CARD) -> dict[str, Any]:
    return {"connectorId": connector, "expiryDate": in_s(seconds), "idTag": id_tag, "reservationId": reservation_id}


async def test_reservation_only_the_reserved_id_starts(rig: Rig) -> None:
    rig.office.id_tags[OTHER] = "Accepted"
    assert (await ok(rig, "ReserveNow", reserve(1, 11)))["status"] == "Accepted"
    await rig.wait_status(1, "Reserved")
    rig.card(OTHER)
    rig.plug(1)
    await asyncio.sleep(1.0)
    rig.card(CARD)
    start = await rig.wait_call("StartTransaction")
    assert start["payload"]["idTag"] == CARD and start["payload"]["reservationId"] == 11
    assert len(rig.calls("StartTransaction")) == 1


async def test_reservation_expires(rig: Rig) -> None:
    assert (await ok(rig, "ReserveNow", reserve(1, 12, seconds=3)))["status"] == "Accepted"
    await rig.wait_status(1, "Reserved")
    await rig.office.wait_for(lambda: rig.statuses(1)[-1]["status"] == "Available", timeout=15)


async def test_cancel_reservation(rig: Rig) -> None:
    assert (await ok(rig, "ReserveNow", reserve(2, 13)))["status"] == "Accepted"
    await rig.wait_status(2, "Reserved")
    assert (await ok(rig, "CancelReservation", {"reservationId": 99}))["status"] == "Rejected"
    assert (await ok(rig, "CancelReservation", {"reservationId": 13}))["status"] == "Accepted"
    await rig.office.wait_for(lambda: rig.statuses(2)[-1]["status"] == "Available", timeout=10)


async def test_reserve_now_occupied_faulted_unavailable(rig: Rig) -> None:
    await charging(rig, 1)
    assert (await ok(rig, "ReserveNow", reserve(1, 14)))["status"] == "Occupied"
    rig.fault("dc", "over_temperature", connector=1)
    await rig.wait_status(1, "Faulted")
    assert (await ok(rig, "ReserveNow", reserve(1, 15)))["status"] == "Faulted"
    assert (await ok(rig, "ChangeAvailability", {"connectorId": 2, "type": "Inoperative"}))["status"] == "Accepted"
    await rig.wait_status(2, "Unavailable")
    assert (await ok(rig, "ReserveNow", reserve(2, 16)))["status"] == "Unavailable"
    assert (await ok(rig, "ReserveNow", reserve(0, 17)))["status"] == "Rejected"  # no connector-0 reservations
    assert CP_ID


async def test_a_reservation_survives_a_restart_of_the_agent(rig: Rig) -> None:
    rig.office.id_tags[OTHER] = "Accepted"
    assert (await ok(rig, "ReserveNow", reserve(1, 16)))["status"] == "Accepted"
    await rig.wait_status(1, "Reserved")
    rig.power_cut()
    boots = len(rig.calls("BootNotification"))
    rig.start_agent()
    await rig.wait_call("BootNotification", count=boots + 1, timeout=20)
    await rig.office.wait_for(lambda: rig.statuses(1)[-1]["status"] == "Reserved", timeout=15)
    rig.card(OTHER)  # still held for CARD only
    rig.plug(1)
    await asyncio.sleep(1.0)
    assert rig.calls("StartTransaction") == []
    rig.card(CARD)
    start = await rig.wait_call("StartTransaction")
    assert start["payload"]["idTag"] == CARD and start["payload"]["reservationId"] == 16
