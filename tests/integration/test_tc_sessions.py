"""End-to-end sessions against the local back office (OCTT-named where a case applies)."""

from __future__ import annotations

from tests.integration.harness import CARD, Rig


async def test_tc_001_cold_boot(rig: Rig) -> None:
    boot = rig.calls("BootNotification")[0]
    assert boot["payload"]["chargePointVendor"] == "EvseSim"
    for connector in (0, 1, 2):
        await rig.wait_status(connector, "Available")


async def test_card_first_session_charges_and_stops_with_same_card(rig: Rig) -> None:
    start = await rig.start_session()
    assert start["payload"]["idTag"] == CARD and start["payload"]["connectorId"] == 1
    await rig.wait_status(1, "Charging")
    rig.card()
    stop = await rig.wait_call("StopTransaction")
    assert stop["payload"]["reason"] == "Local"
    assert stop["payload"]["transactionId"] == start["response"]["payload"]["transactionId"]
    assert stop["payload"]["meterStop"] >= start["payload"]["meterStart"]
