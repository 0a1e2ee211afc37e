"""End-to-end sessions against the local back office (OCTT-named where a case applies)."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from simulator.backoffice import BackOffice
from tests.integration.harness import BLOCKED, CARD, CP_ID, EXPIRED, LOCAL, UNKNOWN, Rig
from tests.integration.tcp_proxy import TcpProxy


def _tx_id(start: dict[str, Any]) -> int:
    return int(start["response"]["payload"]["transactionId"])


async def test_tc_001_cold_boot(rig: Rig) -> None:
    boot = rig.calls("BootNotification")[0]
    assert boot["payload"]["chargePointVendor"] == "EvseSim"
    for connector in (0, 1, 2):
        await rig.wait_status(connector, "Available")
    await asyncio.sleep(0.5)
    for connector in (0, 1, 2):  # one status each, not the same one twice
        assert [s["status"] for s in rig.statuses(connector)] == ["Available"], rig.statuses(connector)


async def test_tc_002_boot_pending(office: BackOffice, rig_factory: Any) -> None:
    office.boot_retry_interval = 1
    office.set_boot_status("Accepted", pending_boots=1)
    rig: Rig = await rig_factory()
    boots = rig.calls("BootNotification")
    assert [b["response"]["payload"]["status"] for b in boots] == ["Pending", "Accepted"]
    accepted_at = boots[1]["response"]["ts"]
    before = [m["action"] for m in office.messages(CP_ID) if m["ts"] < accepted_at]
    assert set(before) == {"BootNotification"}, before
    assert office.violations == []


async def test_card_first_session_charges_and_stops_with_same_card(rig: Rig) -> None:
    start = await rig.start_session()
    assert start["payload"]["idTag"] == CARD and start["payload"]["connectorId"] == 1
    await rig.wait_status(1, "Charging")
    rig.card()
    stop = await rig.wait_call("StopTransaction")
    assert stop["payload"]["reason"] == "Local"
    assert stop["payload"]["transactionId"] == _tx_id(start)
    assert stop["payload"]["meterStop"] >= start["payload"]["meterStart"]


async def test_tc_004_2_connection_timeout(rig_factory: Any) -> None:
    # The reader is shared by both connectors: a card first is held for the charge point (no connector
    # knows it is meant yet) and expires after ConnectionTimeOut; a plug-in after that must not start.
    rig: Rig = await rig_factory(ocpp={"ConnectionTimeOut": 1})
    rig.card()
    authorize = await rig.wait_call("Authorize")
    assert authorize["response"]["payload"]["idTagInfo"]["status"] == "Accepted"
    await asyncio.sleep(1.5)
    rig.plug()
    await rig.wait_status(1, "Preparing")
    await asyncio.sleep(1.5)  # the EV is ready after 0.5 s: a start would have happened by now
    assert rig.calls("StartTransaction") == []
    assert not rig.contactor_closed()
    assert rig.statuses(1)[-1]["status"] == "Preparing"


async def test_tc_007_cached_id(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp={"LocalPreAuthorize": True})
    first = await rig.start_session()  # not cached yet: the back office is asked
    assert len(rig.calls("Authorize")) == 1
    rig.card()
    await rig.wait_call("StopTransaction")
    rig.unplug()
    await rig.wait_status(1, "Available")
    second = await rig.start_session()  # cached Accepted: started at once, no second Authorize
    assert len(rig.calls("Authorize")) == 1
    assert second["payload"]["idTag"] == CARD and _tx_id(second) != _tx_id(first)
    await rig.wait_status(1, "Charging")


async def test_tc_008_local_list_id(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp={"LocalPreAuthorize": True})
    rig.office.set_id_tag(LOCAL, "Accepted")
    await rig.send_local_list({LOCAL: "Accepted"})
    start = await rig.start_session(uid=LOCAL)
    assert start["payload"]["idTag"] == LOCAL
    assert [a for a in rig.calls("Authorize") if a["payload"]["idTag"] == LOCAL] == []
    await rig.wait_status(1, "Charging")


async def test_tc_023_invalid_blocked_expired(rig: Rig) -> None:
    rig.plug()
    await rig.wait_status(1, "Preparing")
    for n, uid in enumerate((BLOCKED, EXPIRED, UNKNOWN), start=1):
        rig.card(uid)
        answer = await rig.wait_call("Authorize", count=n)
        assert answer["payload"]["idTag"] == uid
        assert answer["response"]["payload"]["idTagInfo"]["status"] != "Accepted"
    await asyncio.sleep(1.5)  # a wrongly accepted id would start within a poll or two
    assert rig.calls("StartTransaction") == []
    assert not rig.contactor_closed()
    assert all(s["status"] != "Charging" for s in rig.statuses(1))


async def test_plug_first_session(rig: Rig) -> None:
    rig.plug()
    await rig.wait_status(1, "Preparing")
    assert rig.calls("StartTransaction") == []
    rig.card()
    start = await rig.wait_call("StartTransaction")
    assert start["payload"]["idTag"] == CARD
    await rig.wait_status(1, "Charging")
    await rig.wait_contactor(True)


async def test_ev_side_disconnect_stops_with_ev_disconnected(rig: Rig) -> None:
    start = await rig.start_session()
    await rig.wait_status(1, "Charging")
    seen = len(rig.statuses(1))
    rig.unplug()
    stop = await rig.wait_call("StopTransaction")
    assert stop["payload"]["reason"] == "EVDisconnected"
    assert stop["payload"]["transactionId"] == _tx_id(start)
    await rig.wait_contactor(False)
    await rig.wait_status(1, "Available", since=seen)


async def test_remote_start_and_remote_stop(rig: Rig) -> None:
    result = await rig.cs_call("RemoteStartTransaction", {"connectorId": 1, "idTag": CARD})
    assert result == {"status": "result", "payload": {"status": "Accepted"}}
    await rig.wait_status(1, "Preparing")
    rig.plug()
    start = await rig.wait_call("StartTransaction")
    assert start["payload"]["idTag"] == CARD and start["payload"]["connectorId"] == 1
    await rig.wait_status(1, "Charging")
    result = await rig.cs_call("RemoteStopTransaction", {"transactionId": _tx_id(start)})
    assert result == {"status": "result", "payload": {"status": "Accepted"}}
    stop = await rig.wait_call("StopTransaction")
    assert stop["payload"]["reason"] == "Remote" and stop["payload"]["transactionId"] == _tx_id(start)
    await rig.wait_contactor(False)
    await rig.wait_status(1, "Finishing")


async def test_remote_stop_unknown_transaction_rejected(rig: Rig) -> None:
    result = await rig.cs_call("RemoteStopTransaction", {"transactionId": 4242})
    assert result == {"status": "result", "payload": {"status": "Rejected"}}


async def test_tc_041_fault_meter_silent(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(hardware={"device_silent_suspend_s": 1.0, "device_silent_stop_s": 4.0})
    start = await rig.start_session()
    await rig.wait_status(1, "Charging")
    await rig.wait_contactor(True)
    await asyncio.sleep(1.5)  # energy flows and is read
    rig.fault("meter", "silent")
    last_good = rig.meter_wh()
    suspended = await rig.wait_status(1, "SuspendedEVSE", error_code="PowerMeterFailure")
    assert suspended["connectorId"] == 1
    await rig.wait_contactor(False)
    faulted = await rig.wait_status(1, "Faulted", error_code="PowerMeterFailure")
    assert faulted["connectorId"] == 1
    stop = await rig.wait_call("StopTransaction")
    assert stop["payload"]["transactionId"] == _tx_id(start) and stop["payload"]["reason"] == "Other"
    # meterStop is the last reading the agent got, never a guess beyond it
    assert start["payload"]["meterStart"] < stop["payload"]["meterStop"] <= last_good, (stop, last_good)
    rig.fault("meter", "silent", on=False)
    after = len(rig.statuses(1))
    await rig.office.wait_for(lambda: [s for s in rig.statuses(1)[after:] if s["status"] != "Faulted"],
                              timeout=15)
    recovered = rig.statuses(1)[-1]
    assert recovered["status"] in ("Finishing", "Preparing") and recovered["errorCode"] == "NoError", recovered
    assert not rig.contactor_closed()


async def test_meter_silent_for_a_while_suspends_and_resumes_in_the_same_transaction(rig_factory: Any) -> None:
    suspend_s, poll_s = 2.0, 0.5
    rig: Rig = await rig_factory(hardware={"device_silent_suspend_s": suspend_s, "device_silent_stop_s": 30.0})
    start = await rig.start_session()
    await rig.wait_status(1, "Charging")
    # one bad frame is retried: nothing changes for the back office
    statuses = len(rig.statuses(1))
    rig.fault("meter", "crc_error")
    await asyncio.sleep(poll_s * 1.5)
    rig.fault("meter", "crc_error", on=False)
    await asyncio.sleep(poll_s * 3)
    assert [s["status"] for s in rig.statuses(1)[statuses:]] == [], rig.statuses(1)[statuses:]
    assert rig.contactor_closed()
    # a longer silence: charging pauses within the first timeout, the transaction goes on
    peak_w = max(rig.sim_state()["connectors"]["1"]["power_w"], 1.0)
    energy_before = rig.sim_state()["connectors"]["1"]["meter"]["energy_import_wh"]
    rig.fault("meter", "silent")
    await rig.wait_status(1, "SuspendedEVSE", error_code="PowerMeterFailure")
    await rig.wait_contactor(False)
    energy_after = rig.sim_state()["connectors"]["1"]["meter"]["energy_import_wh"]
    bound_wh = peak_w * 1.1 * (suspend_s + 2 * poll_s + 1.0) / 3600.0
    assert energy_after - energy_before <= bound_wh, (energy_after - energy_before, bound_wh)
    rig.fault("meter", "silent", on=False)
    await rig.wait_status(1, "Charging")
    await rig.wait_contactor(True)
    assert not rig.calls("StopTransaction")
    rig.card()
    stop = await rig.wait_call("StopTransaction")
    assert stop["payload"]["transactionId"] == _tx_id(start) and stop["payload"]["reason"] == "Local"


async def test_tc_041_isolation_fault_is_ground_failure(rig: Rig) -> None:
    await rig.start_session()
    await rig.wait_status(1, "Charging")
    rig.fault("dc", "isolation")
    await rig.wait_status(1, "Faulted", error_code="GroundFailure")
    await rig.wait_contactor(False)
    stop = await rig.wait_call("StopTransaction")
    assert stop["payload"]["reason"] in ("Other", "EmergencyStop")
    rig.fault("dc", "isolation", on=False)
    after = len(rig.statuses(1))
    await rig.office.wait_for(lambda: [s for s in rig.statuses(1)[after:] if s["status"] != "Faulted"],
                              timeout=15)


async def test_tc_041_contactor_welded_is_faulted(rig: Rig) -> None:
    await rig.start_session()
    await rig.wait_status(1, "Charging")
    rig.fault("contactor", "welded")
    rig.card()  # stopping opens the coil, but the feedback stays closed
    stop = await rig.wait_call("StopTransaction")
    assert stop["payload"]["reason"] == "Local"
    faulted = await rig.wait_status(1, "Faulted", error_code="PowerSwitchFailure")
    assert faulted["connectorId"] == 1
    # the other connector is unaffected
    assert rig.statuses(2)[-1]["status"] == "Available"


async def test_emergency_stop_during_charging(rig: Rig) -> None:
    start = await rig.start_session()
    await rig.wait_status(1, "Charging")
    await rig.wait_contactor(True)
    rig.estop(True)
    await rig.wait_contactor(False, timeout=3)
    # DC: the controller got its emergency shutdown from the e-stop callback, not a later limit change
    await rig.wait_sim(lambda s: s["connectors"]["1"]["dc"]["emergency"], "DC emergency shutdown", timeout=3)
    stop = await rig.wait_call("StopTransaction")
    assert stop["payload"]["reason"] == "EmergencyStop"
    assert stop["payload"]["transactionId"] == _tx_id(start)
    await rig.wait_status(1, "Faulted")
    await rig.wait_status(2, "Faulted")
    seen1, seen2 = len(rig.statuses(1)), len(rig.statuses(2))
    rig.estop(False)
    await rig.wait_status(1, "Finishing", since=seen1)  # the EV is still plugged in
    await rig.wait_status(2, "Available", since=seen2)
    assert not rig.contactor_closed()
    assert len(rig.calls("StartTransaction")) == 1
    # released: the controller's latched emergency is cleared, so the next session charges
    await rig.wait_sim(lambda s: not s["connectors"]["1"]["dc"]["emergency"], "DC emergency reset", timeout=5)
    seen1 = len(rig.statuses(1))
    rig.unplug(1)
    await rig.wait_status(1, "Available", since=seen1)
    await rig.start_session(1)
    await rig.wait_status(1, "Charging", since=seen1)
    await rig.wait_sim(lambda s: s["connectors"]["1"]["current_a"] > 1.0, "current flowing again")


async def test_boot_rejected_answers_no_back_office_call_and_retries_at_the_interval(
        office: BackOffice, rig_factory: Any) -> None:
    office.boot_retry_interval = 2
    office.set_boot_status("Rejected")
    rig: Rig = await rig_factory(start=False)
    await rig.start_sim()
    rig.start_agent()
    await rig.wait_call("BootNotification", timeout=20)
    answer = await office.call(CP_ID, "RemoteStartTransaction", {"idTag": CARD, "connectorId": 1}, timeout=2)
    assert answer["status"] == "timeout", answer  # 1.6 section 4.2: no answer at all while Rejected
    answer = await office.call(CP_ID, "GetConfiguration", {}, timeout=2)
    assert answer["status"] == "timeout", answer
    rig.plug(1)
    await asyncio.sleep(1.0)
    assert not rig.calls("StartTransaction") and not rig.contactor_closed()
    boots = await rig.office.wait_for(lambda: len(rig.calls("BootNotification")) >= 3 and rig.calls(
        "BootNotification"), timeout=10)
    gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(boots)]
    assert all(1.5 <= gap <= 4.0 for gap in gaps), gaps  # the interval the back office gave
    office.set_boot_status("Accepted")
    await rig.wait_status(1, "Preparing", timeout=15)
    answer = await office.call(CP_ID, "GetConfiguration", {"key": ["HeartbeatInterval"]}, timeout=5)
    assert answer["status"] == "result", answer


async def test_websocket_ping_interval_changed_over_ocpp_detects_a_half_open_connection(
        office: BackOffice, rig_factory: Any) -> None:
    proxy = TcpProxy(office.port)
    await proxy.start()
    try:
        rig: Rig = await rig_factory(start=False)
        rig.backoffice_url = f"ws://127.0.0.1:{proxy.port}/ocpp"
        await rig.start()
        answer = await rig.cs_call("ChangeConfiguration", {"key": "WebSocketPingInterval", "value": "2"}, timeout=10)
        assert answer["payload"]["status"] == "Accepted"
        boots = len(rig.calls("BootNotification"))
        await office.drop(CP_ID)  # the next connection uses the new interval
        await rig.wait_call("BootNotification", count=boots + 1, timeout=20)
        await asyncio.sleep(0.5)
        connections = len(proxy.connections)
        proxy.frozen = True  # half-open: no data, no FIN, no RST
        frozen_at = time.monotonic()
        ping_s, pong_timeout_s, margin_s = 2.0, 5.0, 3.0
        await office.wait_for(lambda: len(proxy.connections) > connections, timeout=30)
        noticed = proxy.connections[connections] - frozen_at
        assert noticed <= ping_s + pong_timeout_s + margin_s, noticed  # the file's 10 s would take 15 s
        proxy.frozen = False
        await rig.wait_call("BootNotification", count=boots + 2, timeout=20)
    finally:
        await proxy.stop()


async def test_reconnect_backoff_grows_while_the_back_office_drops_every_connection(
        office: BackOffice, rig_factory: Any) -> None:
    proxy = TcpProxy(office.port)
    await proxy.start()
    try:
        rig: Rig = await rig_factory(start=False)
        rig.backoffice_url = f"ws://127.0.0.1:{proxy.port}/ocpp"
        rig.reconnect_max_s = 8.0
        await rig.start()
        proxy.drop_after_handshake = True  # the handshake succeeds, the connection goes at once
        await office.drop(CP_ID)
        start = len(proxy.connections)
        await asyncio.sleep(8.0)
        attempts = proxy.connections[start:]
        # min 0.5 s doubling to 8 s: about 0.4 + 0.75 + 1.5 + 3 + 6 s; resetting after every handshake would
        # mean an attempt every 0.25-0.5 s (16 or more)
        assert 3 <= len(attempts) <= 6, [round(t - attempts[0], 2) for t in attempts]
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        assert gaps[-1] > gaps[0], gaps
        proxy.drop_after_handshake = False
        boots = len(rig.calls("BootNotification"))
        await rig.wait_call("BootNotification", count=boots + 1, timeout=20)
    finally:
        await proxy.stop()
