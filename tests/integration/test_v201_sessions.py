"""OCPP 2.0.1 end to end: the agent process with `ocpp_version = "2.0.1"`, the simulated hardware, and the local
back office speaking 2.0.1 and validating every frame against the official schemas."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.harness import CARD, CP_ID, Rig

V201 = "2.0.1"


def events(rig: Rig, event_type: str | None = None) -> list[dict[str, Any]]:
    """The TransactionEvents the back office received (payloads), optionally of one eventType."""
    payloads = [m["payload"] for m in rig.calls("TransactionEvent")]
    return [p for p in payloads if event_type is None or p["eventType"] == event_type]


async def wait_event(rig: Rig, event_type: str, count: int = 1, timeout: float = 20.0) -> dict[str, Any]:
    """The count-th TransactionEvent of a type, once the back office answered it."""
    def found() -> dict[str, Any] | None:
        answered = [m["payload"] for m in rig.calls("TransactionEvent")
                    if m["response"] is not None and m["payload"]["eventType"] == event_type]
        return answered[count - 1] if len(answered) >= count else None

    try:
        return await rig.office.wait_for(found, timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"no TransactionEvent {event_type} #{count}; saw "
                             f"{[(p['eventType'], p['triggerReason']) for p in events(rig)]}\n"
                             f"{rig.agent_log()[-3000:]}") from None


def energy_wh(event: dict[str, Any]) -> float | None:
    """The Energy.Active.Import.Register value an event carries, in Wh."""
    for value in event.get("meterValue", []):
        for sampled in value["sampledValue"]:
            if sampled.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register":
                multiplier = sampled.get("unitOfMeasure", {}).get("multiplier", 0)
                return float(sampled["value"]) * 10 ** multiplier
    return None


async def set_variable(rig: Rig, component: str, variable: str, value: str) -> None:
    answer = await rig.cs_call("SetVariables", {"setVariableData": [
        {"component": {"name": component}, "variable": {"name": variable}, "attributeValue": value}]})
    assert answer["status"] == "result", answer
    assert answer["payload"]["setVariableResult"][0]["attributeStatus"] == "Accepted", answer


async def test_e02_e06_a_card_and_a_plug_make_one_transaction_with_a_gapless_ledger(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp_version=V201)
    assert rig.office.version_of(CP_ID) == V201
    boot = rig.calls("BootNotification")[-1]["payload"]
    assert boot["reason"] and boot["chargingStation"]["model"]
    await set_variable(rig, "SampledDataCtrlr", "TxUpdatedInterval", "1")

    rig.card(CARD)
    rig.plug(1)
    started = await wait_event(rig, "Started")
    assert started["seqNo"] == 0 and started["idToken"]["idToken"] == CARD
    assert started["evse"]["id"] == 1 and len(started["transactionInfo"]["transactionId"]) == 32
    await rig.wait_status(1, "Occupied")
    await wait_event(rig, "Updated", count=3)  # periodic samples (TxUpdatedInterval 1 s)

    rig.card(CARD)  # the same card again: the driver stops
    ended = await wait_event(rig, "Ended")
    assert ended["transactionInfo"]["stoppedReason"] == "Local"
    assert ended["transactionInfo"]["transactionId"] == started["transactionInfo"]["transactionId"]
    rig.unplug(1)
    await rig.wait_status(1, "Available", since=1)

    ledger = rig.office.ledger(CP_ID)
    assert ledger["problems"] == [], ledger["problems"]
    seq = [e["seqNo"] for e in events(rig)]
    assert seq == list(range(len(seq)))
    readings = [w for w in (energy_wh(e) for e in events(rig)) if w is not None]
    assert readings == sorted(readings) and readings[-1] > readings[0]  # energy flowed, never backwards
    assert rig.office.violations == []
    # the station's security events are queued in the version it speaks (they were once kept as 1.6 dead letters)
    await rig.office.wait_for(lambda: any(m["payload"]["type"] == "StartupOfTheDevice" and m["response"] is not None
                                          for m in rig.calls("SecurityEventNotification")), timeout=10)


async def test_e11_a_power_cut_mid_session_ends_the_transaction_at_boot_without_a_gap(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp_version=V201)
    rig.card(CARD)
    rig.plug(1)
    started = await wait_event(rig, "Started")
    await rig.wait_status(1, "Occupied")
    await asyncio.sleep(1.0)

    rig.power_cut()  # SIGKILL and a new kernel boot id
    rig.start_agent()
    ended = await wait_event(rig, "Ended", timeout=30.0)
    assert ended["transactionInfo"]["transactionId"] == started["transactionInfo"]["transactionId"]
    assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss"
    assert ended["offline"] is True  # decided while no back office was connected
    assert rig.office.ledger(CP_ID)["problems"] == []
