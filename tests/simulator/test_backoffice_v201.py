"""The local back office speaking OCPP 2.0.1 to the `ocpp` library's own 2.0.1 charging-station side."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action
from websockets.asyncio.client import ClientConnection, connect

from simulator.backoffice import BackOffice, SchemaValidator, check_transaction_events
from simulator.backoffice.schemas import ERROR_CODES_201
from simulator.backoffice_client import AsyncBackOfficeClient

ID_TAGS = {"ACCEPTED1": "Accepted", "BLOCKED1": "Blocked"}
NOW = "2024-05-01T12:00:00Z"
EVSE = {"id": 1, "connector_id": 1}


class Station(ChargePoint):
    """The library's 2.0.1 charging-station side with the CSMS->CS handlers the tests need."""

    def __init__(self, cp_id: str, ws: ClientConnection) -> None:
        super().__init__(cp_id, ws, response_timeout=5)
        self.requests: list[tuple[str, dict[str, Any]]] = []

    @on(Action.get_variables)
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **kwargs: Any) -> call_result.GetVariables:
        self.requests.append(("GetVariables", {"get_variable_data": get_variable_data}))
        results = [
            {"attribute_status": "Accepted", "attribute_value": "300", **item} for item in get_variable_data
        ]
        return call_result.GetVariables(get_variable_result=results)

    @on(Action.request_start_transaction)
    def on_request_start_transaction(self, **kwargs: Any) -> call_result.RequestStartTransaction:
        self.requests.append(("RequestStartTransaction", kwargs))
        return call_result.RequestStartTransaction(status="Accepted")


@pytest.fixture
async def office(tmp_path: Path) -> AsyncIterator[BackOffice]:
    bo = BackOffice(
        id_tags=ID_TAGS,
        parent_ids={"ACCEPTED1": "GROUP1"},
        heartbeat_interval=60,
        boot_retry_interval=1,
        log_path=tmp_path / "backoffice.jsonl",
        call_timeout_s=3.0,
    )
    await bo.start()
    yield bo
    await bo.stop()


async def open_ws(url: str, subprotocols: list[str] | None = None) -> ClientConnection:
    return await connect(url, proxy=None, open_timeout=5, subprotocols=subprotocols or ["ocpp2.0.1"])


@contextlib.asynccontextmanager
async def station(office: BackOffice, cp_id: str = "CS1") -> AsyncIterator[Station]:
    ws = await open_ws(office.url(cp_id))
    cs = Station(cp_id, ws)
    task = asyncio.create_task(cs.start())
    try:
        await office.wait_for(lambda: office.connected(cp_id), timeout=5)
        yield cs
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await ws.close()


def boot() -> call.BootNotification:
    return call.BootNotification(
        charging_station={"model": "Model-X", "vendor_name": "evse-agent"}, reason="PowerUp"
    )


def tx_event(event_type: str, seq_no: int, trigger: str, **extra: Any) -> call.TransactionEvent:
    return call.TransactionEvent(
        event_type=event_type,
        timestamp=NOW,
        trigger_reason=trigger,
        seq_no=seq_no,
        transaction_info={"transaction_id": "tx-1", **extra.pop("info", {})},
        **extra,
    )


# Version selection


@pytest.mark.parametrize(
    ("offered", "order", "expected"),
    [
        (["ocpp2.0.1"], "station", "ocpp2.0.1"),
        (["ocpp1.6"], "station", "ocpp1.6"),
        (["ocpp2.0.1", "ocpp1.6"], "station", "ocpp2.0.1"),  # the station's first supported one
        (["ocpp1.6", "ocpp2.0.1"], "station", "ocpp1.6"),
        (["ocpp2.0.1", "ocpp1.6"], "office", "ocpp1.6"),  # the office's own order: 1.6 first by default
    ],
)
async def test_the_subprotocol_selects_the_version(offered: list[str], order: str, expected: str) -> None:
    bo = BackOffice(version_order=order)
    await bo.start()
    try:
        ws = await open_ws(bo.url("CS1"), offered)
        assert ws.subprotocol == expected
        await bo.wait_for(lambda: bo.connected("CS1"), timeout=5)
        assert bo.version_of("CS1") == expected.removeprefix("ocpp")
        assert bo.status()["versions"] == {"CS1": expected.removeprefix("ocpp")}
        await ws.close()
    finally:
        await bo.stop()


def test_version_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="ocpp_versions"):
        BackOffice(ocpp_versions=("2.1",))
    with pytest.raises(ValueError, match="version_order"):
        BackOffice(version_order="random")


# What the station sends


async def test_b01_boot_accepted_then_pending_and_rejected(office: BackOffice) -> None:
    async with station(office) as cs:
        accepted = await cs.call(boot(), suppress=False)
        office.set_boot_status("Rejected")
        rejected = await cs.call(boot(), suppress=False)
        office.set_boot_status("Accepted", pending_boots=1)
        pending = await cs.call(boot(), suppress=False)
    assert (accepted.status, accepted.interval) == ("Accepted", 60)
    assert (rejected.status, rejected.interval) == ("Rejected", 1)
    assert (pending.status, pending.interval) == ("Pending", 1)
    first = office.messages("CS1", "BootNotification")[0]
    assert first["payload"] == {"chargingStation": {"model": "Model-X", "vendorName": "evse-agent"},
                                "reason": "PowerUp"}
    assert first["response"]["type"] == "result" and first["response"]["payload"]["status"] == "Accepted"
    assert office.violations == []


async def test_c01_authorize_answers_from_the_id_list(office: BackOffice) -> None:
    async with station(office) as cs:
        await cs.call(boot(), suppress=False)
        accepted = await cs.call(call.Authorize(id_token={"id_token": "ACCEPTED1", "type": "ISO14443"}))
        blocked = await cs.call(call.Authorize(id_token={"id_token": "BLOCKED1", "type": "ISO14443"}))
        unknown = await cs.call(call.Authorize(id_token={"id_token": "NOBODY", "type": "ISO14443"}))
        office.set_id_tag("NOBODY", "Accepted")  # the same list and controls as 1.6's id tags
        known_now = await cs.call(call.Authorize(id_token={"id_token": "NOBODY", "type": "ISO14443"}))
    assert accepted.id_token_info == {"status": "Accepted", "group_id_token": {"id_token": "GROUP1",
                                                                             "type": "Central"}}
    assert blocked.id_token_info == {"status": "Blocked"}
    assert unknown.id_token_info == {"status": "Invalid"}
    assert known_now.id_token_info == {"status": "Accepted"}
    assert office.violations == []


async def test_other_station_messages_are_answered(office: BackOffice) -> None:
    async with station(office) as cs:
        await cs.call(boot(), suppress=False)
        assert (await cs.call(call.Heartbeat(), suppress=False)).current_time.endswith("Z")
        await cs.call(call.StatusNotification(timestamp=NOW, connector_status="Available", evse_id=1,
                                              connector_id=1), suppress=False)
        await cs.call(call.MeterValues(evse_id=1, meter_value=[
            {"timestamp": NOW, "sampled_value": [{"value": 1234.5, "measurand": "Energy.Active.Import.Register"}]}
        ]), suppress=False)
        await cs.call(call.NotifyReport(request_id=1, generated_at=NOW, seq_no=0), suppress=False)
        await cs.call(call.NotifyEvent(generated_at=NOW, seq_no=0, event_data=[{
            "event_id": 1, "timestamp": NOW, "trigger": "Alerting", "actual_value": "true",
            "event_notification_type": "HardWiredNotification",
            "component": {"name": "Connector"}, "variable": {"name": "Problem"},
        }]), suppress=False)
        await cs.call(call.SecurityEventNotification(type="StartupOfTheDevice", timestamp=NOW), suppress=False)
        await cs.call(call.FirmwareStatusNotification(status="Installed"), suppress=False)
        await cs.call(call.LogStatusNotification(status="Uploaded", request_id=1), suppress=False)
        known = await cs.call(call.DataTransfer(vendor_id="evse-agent"), suppress=False)
        unknown = await cs.call(call.DataTransfer(vendor_id="someone-else"), suppress=False)
    assert (known.status, unknown.status) == ("Accepted", "UnknownVendorId")
    assert office.status()["evse_connectors"] == {"CS1/1/1": "Available"}
    assert all(m["response"]["type"] == "result" for m in office.messages("CS1"))
    assert len(office.messages("CS1")) == 11
    assert office.violations == []


# Transactions and the ledger


async def test_e01_transaction_is_recorded_and_the_ledger_passes(office: BackOffice) -> None:
    token = {"id_token": "ACCEPTED1", "type": "ISO14443"}
    meter = [{"timestamp": NOW, "sampled_value": [{"value": 10.0, "context": "Transaction.Begin"}]}]
    async with station(office) as cs:
        await cs.call(boot(), suppress=False)
        started = await cs.call(tx_event("Started", 0, "Authorized", id_token=token, evse=EVSE,
                                         meter_value=meter), suppress=False)
        updated = await cs.call(tx_event("Updated", 1, "ChargingStateChanged",
                                         info={"charging_state": "Charging"}), suppress=False)
        ended = await cs.call(tx_event("Ended", 2, "StopAuthorized", id_token=token,
                                       info={"stopped_reason": "Local"}), suppress=False)
    assert started.id_token_info["status"] == "Accepted"
    assert updated.id_token_info is None  # no idToken in the event, no idTokenInfo in the answer
    assert ended.id_token_info["status"] == "Accepted"
    records = office.messages("CS1", "TransactionEvent")
    assert [r["payload"]["seqNo"] for r in records] == [0, 1, 2]
    assert check_transaction_events(records) == []
    assert office.ledger("CS1")["problems"] == []
    [tx] = office.status()["transactions_201"].values()
    assert tx == {
        "cp_id": "CS1", "transaction_id": "tx-1", "evse_id": 1, "connector_id": 1, "id_token": "ACCEPTED1",
        "start": NOW, "stop": NOW, "stopped_reason": "Local", "events": 3, "last_seq_no": 2,
    }
    assert office.violations == []


def _event(tx: str, event_type: str, seq_no: int) -> dict[str, Any]:
    return {"eventType": event_type, "seqNo": seq_no, "timestamp": NOW, "triggerReason": "Authorized",
            "transactionInfo": {"transactionId": tx}}


def test_ledger_check_finds_gaps_order_and_missing_ends() -> None:
    good = [_event("a", "Started", 0), _event("a", "Updated", 1), _event("a", "Ended", 2)]
    assert check_transaction_events(good) == []
    assert check_transaction_events([{"action": "TransactionEvent", "payload": p} for p in good]) == []
    gap = [_event("a", "Started", 0), _event("a", "Updated", 2), _event("a", "Ended", 3)]
    assert check_transaction_events(gap) == ["transaction a: seqNo [0, 2, 3], expected 0..2 in order"]
    late_start = [_event("b", "Updated", 0), _event("b", "Started", 1), _event("b", "Ended", 2)]
    assert check_transaction_events(late_start) == ["transaction b: first event is Updated, expected Started"]
    open_tx = [_event("c", "Started", 0), _event("c", "Updated", 1)]
    assert check_transaction_events(open_tx) == ["transaction c: 0 Ended events, expected 1"]
    assert check_transaction_events(open_tx, require_ended=False) == []
    after_end = [_event("d", "Started", 0), _event("d", "Ended", 1), _event("d", "Updated", 2)]
    assert check_transaction_events(after_end) == ["transaction d: last event is Updated, expected Ended"]
    resent = [_event("e", "Started", 0), _event("e", "Started", 0), _event("e", "Ended", 1)]
    assert check_transaction_events(resent) == []
    assert check_transaction_events(resent, allow_resends=False) == [
        "transaction e: seqNo [0, 0, 1], expected 0..2 in order",
        "transaction e: 2 Started events, expected 1",
    ]
    # transactions are checked each on its own, interleaved or not
    assert check_transaction_events([good[0], _event("f", "Started", 0), *good[1:], _event("f", "Ended", 1)]) == []


async def test_e01_a_gap_on_the_wire_fails_the_ledger(office: BackOffice) -> None:
    async with station(office) as cs:
        await cs.call(boot(), suppress=False)
        await cs.call(tx_event("Started", 0, "Authorized", evse=EVSE), suppress=False)
        await cs.call(tx_event("Ended", 2, "EVDeparted"), suppress=False)  # seqNo 1 never sent
    assert office.ledger("CS1")["problems"] == ["transaction tx-1: seqNo [0, 2], expected 0..1 in order"]


# Violations


async def test_schema_invalid_and_malformed_frames_are_violations(office: BackOffice) -> None:
    ws = await open_ws(office.url("RAW1"))
    try:
        await ws.send(json.dumps([2, "u1", "BootNotification", {"reason": "PowerUp"}]))  # no chargingStation
        answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
        await ws.send(json.dumps([2, "u2", "Heartbeat"]))  # three elements: a malformed CALL
        malformed = json.loads(await asyncio.wait_for(ws.recv(), 5))
    finally:
        await ws.close()
    assert answer[0] == 4 and answer[1] == "u1" and answer[2] in ERROR_CODES_201
    assert malformed[:3] == [4, "u2", "FormatViolation"]  # 2.0.1's spelling, not 1.6's FormationViolation
    kinds = [(v["kind"], v["action"]) for v in office.violations]
    assert ("schema", "BootNotification") in kinds
    assert ("callerror_sent", "BootNotification") in kinds
    assert ("frame", None) in kinds
    assert office.status()["violations"] == len(office.violations)


def test_validator_of_2_0_1() -> None:
    validator = SchemaValidator(version="2.0.1")
    assert validator.errors("Heartbeat", {}) == []
    assert validator.errors("Heartbeat", {"extra": 1})
    assert validator.errors("Hello", {}) == ["no OCPP 2.0.1 schema for 'HelloRequest'"]
    assert validator.errors("BootNotification", {"currentTime": NOW, "interval": 1, "status": "Accepted"},
                            response=True) == []
    assert validator.errors("BootNotification", {"currentTime": "yesterday", "interval": 1,
                                                 "status": "Accepted"}, response=True)


# Calls from the back office, through the same control API as 1.6


async def test_control_api_calls_reach_the_station_and_answers_are_recorded(office: BackOffice) -> None:
    control_port = await office.start_control()
    client = AsyncBackOfficeClient(f"http://127.0.0.1:{control_port}")
    item = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    async with station(office) as cs:
        await cs.call(boot(), suppress=False)
        answer = await client.call("CS1", "GetVariables", {"getVariableData": [item]})
        start = await office.call("CS1", "RequestStartTransaction",
                                  {"idToken": {"idToken": "ACCEPTED1", "type": "Central"}, "remoteStartId": 7})
        with pytest.raises(ValueError, match="remoteStartId"):  # validated against the 2.0.1 schema
            await office.call("CS1", "RequestStartTransaction", {"idToken": {"idToken": "X", "type": "Central"}})
        await cs.call(tx_event("Started", 0, "RemoteStart", evse=EVSE, info={"remote_start_id": 7}))
        await cs.call(tx_event("Ended", 1, "RemoteStop"))
        assert (await client.ledger("CS1"))["problems"] == []
        assert (await client.wait_for("TransactionEvent", cp_id="CS1", count=2))["payload"]["seqNo"] == 1
    assert answer == {"status": "result", "payload": {"getVariableResult": [
        {"attributeStatus": "Accepted", "attributeValue": "300", **item}]}}
    assert start == {"status": "result", "payload": {"status": "Accepted"}}
    assert [name for name, _ in cs.requests] == ["GetVariables", "RequestStartTransaction"]
    [sent] = office.messages("CS1", "GetVariables", direction="out")
    assert sent["payload"] == {"getVariableData": [item]}
    assert sent["response"]["type"] == "result"
    assert sent["response"]["payload"]["getVariableResult"][0]["attributeValue"] == "300"
    assert await client.violations() == []
