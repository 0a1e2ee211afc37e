"""A charger switched from OCPP 1.6 to 2.0.1 with messages still queued: they are sent in 1.6 first and only
then does the agent speak 2.0.1; a back office that no longer takes 1.6 leaves them as dead letters with the
reason. Nothing is converted, nothing is lost without a record."""

from __future__ import annotations

import sqlite3
from typing import Any

from tests.integration.harness import CARD, CP_ID, Rig


async def queue_a_stop_in_16(rig: Rig) -> int:
    """A session runs, the back office goes away, the agent is stopped: its StopTransaction waits in 1.6."""
    await rig.start_session(1, CARD)
    await rig.office.go_offline()
    await rig.office.wait_for(lambda: not rig.office.connected(CP_ID), timeout=5)
    assert await rig.stop_agent() == 0
    return int(rig.calls("StartTransaction")[-1]["response"]["payload"]["transactionId"])


def switch_config(rig: Rig) -> None:
    text = rig.agent_config.read_text()
    assert 'ocpp_version = "1.6"' in text
    rig.agent_config.write_text(text.replace('ocpp_version = "1.6"', 'ocpp_version = "2.0.1"'))


def boots(rig: Rig) -> list[dict[str, Any]]:
    return rig.calls("BootNotification")


async def test_messages_queued_in_16_are_sent_in_16_before_the_agent_speaks_201(rig_factory: Any) -> None:
    rig: Rig = await rig_factory()
    tx_id = await queue_a_stop_in_16(rig)
    switch_config(rig)
    before = len(boots(rig))
    rig.start_agent()
    await rig.office.go_online()
    stop = await rig.wait_call("StopTransaction", timeout=30)
    assert stop["payload"]["transactionId"] == tx_id and stop["payload"]["reason"] == "Reboot"
    # then the same process starts again in 2.0.1: a 2.0.1 boot after the 1.6 one that carried the stop
    await rig.office.wait_for(lambda: any("chargingStation" in b["payload"] for b in boots(rig)[before:]),
                              timeout=30)
    new = boots(rig)[before:]
    assert "chargingStation" not in new[0]["payload"] and "chargingStation" in new[-1]["payload"], new
    assert new[-1]["ts"] >= stop["ts"]
    assert rig.office.version_of(CP_ID) == "2.0.1"
    await rig.wait_status(1, "Available")  # 2.0.1 StatusNotification (connectorStatus)
    assert rig.agent.poll() is None, rig.agent_log()[-3000:]
    assert "starting OCPP 2.0.1" in rig.agent_log()


async def test_a_back_office_without_16_leaves_the_16_messages_as_dead_letters_with_the_reason(
        rig_factory: Any) -> None:
    rig: Rig = await rig_factory()
    await queue_a_stop_in_16(rig)
    switch_config(rig)
    rig.office.ocpp_versions = ("2.0.1",)  # the new back office speaks 2.0.1 only
    before = len(boots(rig))
    rig.start_agent()
    await rig.office.go_online()
    await rig.office.wait_for(lambda: len(boots(rig)) > before, timeout=40)
    assert all("chargingStation" in b["payload"] for b in boots(rig)[before:])
    assert rig.calls("StopTransaction") == []
    await rig.stop_agent()
    db = sqlite3.connect(rig.state_dir / "agent.db")
    try:
        dead = db.execute("SELECT action, protocol, error FROM dead_letters").fetchall()
        pending = db.execute("SELECT COUNT(*) FROM outbox WHERE protocol = '1.6'").fetchone()[0]
    finally:
        db.close()
    assert pending == 0
    assert ("StopTransaction", "1.6") in [(a, p) for a, p, _ in dead], dead
    assert all("does not speak it" in error for _, _, error in dead), dead


async def test_a_transaction_open_at_a_power_cut_ends_in_16_when_the_agent_comes_back_in_201(
        rig_factory: Any) -> None:
    rig: Rig = await rig_factory()
    start = await rig.start_session(1, CARD)
    tx_id = int(start["response"]["payload"]["transactionId"])
    await rig.wait_contactor(True)
    rig.power_cut()  # everything sent was answered: only the open transaction says which version it began in
    switch_config(rig)
    rig.start_agent()
    stop = await rig.wait_call("StopTransaction", timeout=30)
    assert stop["payload"]["transactionId"] == tx_id and stop["payload"]["reason"] == "PowerLoss"
    await rig.office.wait_for(lambda: rig.office.version_of(CP_ID) == "2.0.1", timeout=30)
    assert [e for e in rig.calls("TransactionEvent") if e["payload"]["eventType"] == "Ended"] == []
