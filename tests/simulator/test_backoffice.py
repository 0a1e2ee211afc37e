"""The local back office against the `ocpp` library's own charge-point side over a real websocket."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ocpp.exceptions import InternalError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from simulator.backoffice import BackOffice, SchemaValidator, frame_errors
from simulator.backoffice_client import AsyncBackOfficeClient, BackOfficeClient, BackOfficeError

ROOT = Path(__file__).resolve().parents[2]
ID_TAGS = {"ACCEPTED1": "Accepted", "BLOCKED1": "Blocked", "EXPIRED1": "Expired"}
NOW = "2024-05-01T12:00:00Z"


class RawChargePoint(ChargePoint):
    """The library's charge-point side with the two CS->CP handlers the tests need."""

    def __init__(self, cp_id: str, ws: ClientConnection) -> None:
        super().__init__(cp_id, ws, response_timeout=5)
        self.remote_starts: list[dict[str, Any]] = []

    @on(Action.remote_start_transaction)
    def on_remote_start_transaction(self, id_tag: str, **kwargs: Any) -> call_result.RemoteStartTransaction:
        self.remote_starts.append({"id_tag": id_tag, **kwargs})
        return call_result.RemoteStartTransaction(status="Accepted")

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, **kwargs: Any) -> call_result.TriggerMessage:
        return call_result.TriggerMessage(status="Accepted")


def boot() -> call.BootNotification:
    return call.BootNotification(charge_point_model="Model-X", charge_point_vendor="evse-agent")


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


async def open_ws(url: str, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("subprotocols", ["ocpp1.6"])
    return await connect(url, proxy=None, open_timeout=5, **kwargs)


@contextlib.asynccontextmanager
async def charge_point(
    office: BackOffice, cp_id: str = "CP1", **kwargs: Any
) -> AsyncIterator[RawChargePoint]:
    ws = await open_ws(office.url(cp_id), **kwargs)
    cp = RawChargePoint(cp_id, ws)
    task = asyncio.create_task(cp.start())
    try:
        await office.wait_for(lambda: office.connected(cp_id), timeout=5)
        yield cp
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await ws.close()


@contextlib.asynccontextmanager
async def raw_charge_point(office: BackOffice, cp_id: str = "RAW1") -> AsyncIterator[ClientConnection]:
    ws = await open_ws(office.url(cp_id))
    try:
        await office.wait_for(lambda: office.connected(cp_id), timeout=5)
        yield ws
    finally:
        await ws.close()


async def raw_call(ws: ClientConnection, frame: list[Any]) -> list[Any]:
    await ws.send(json.dumps(frame))
    answer: list[Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return answer


# Boot (TC_001, TC_002)


async def test_tc_001_boot_accepted(office: BackOffice, tmp_path: Path) -> None:
    async with charge_point(office) as cp:
        result = await cp.call(boot(), suppress=False)
    assert result.status == "Accepted"
    assert result.interval == 60
    assert dt.datetime.fromisoformat(result.current_time.replace("Z", "+00:00")).tzinfo is not None
    [message] = office.messages(cp_id="CP1", action="BootNotification")
    assert message["payload"] == {"chargePointModel": "Model-X", "chargePointVendor": "evse-agent"}
    assert message["response"]["type"] == "result"
    assert message["response"]["payload"]["status"] == "Accepted"
    assert office.violations == []
    lines = [json.loads(line) for line in (tmp_path / "backoffice.jsonl").read_text().splitlines()]
    assert [(line["direction"], line["message"][0]) for line in lines] == [("in", 2), ("out", 3)]
    assert all(line["cp_id"] == "CP1" and isinstance(line["ts"], float) for line in lines)


async def test_tc_002_boot_pending_then_accepted(office: BackOffice) -> None:
    office.set_boot_status("Accepted", pending_boots=1)
    async with charge_point(office) as cp:
        first = await cp.call(boot(), suppress=False)
        second = await cp.call(boot(), suppress=False)
    assert (first.status, first.interval) == ("Pending", 1)
    assert (second.status, second.interval) == ("Accepted", 60)
    assert office.violations == []


async def test_boot_rejected(office: BackOffice) -> None:
    office.set_boot_status("Rejected")
    async with charge_point(office) as cp:
        result = await cp.call(boot(), suppress=False)
    assert (result.status, result.interval) == ("Rejected", 1)


async def test_request_while_pending_is_a_protocol_violation_unless_triggered(office: BackOffice) -> None:
    office.set_boot_status("Accepted", pending_boots=1)
    async with charge_point(office) as cp:
        assert (await cp.call(boot(), suppress=False)).status == "Pending"
        await cp.call(call.Heartbeat(), suppress=False)
        assert [(v["kind"], v["action"]) for v in office.violations] == [("protocol", "Heartbeat")]
        answer = await office.call("CP1", "TriggerMessage", {"requestedMessage": "StatusNotification"})
        assert answer == {"status": "result", "payload": {"status": "Accepted"}}
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
        assert len(office.violations) == 1
        assert (await cp.call(boot(), suppress=False)).status == "Accepted"
        await cp.call(call.Heartbeat(), suppress=False)
    assert len(office.violations) == 1


def test_boot_status_must_be_known() -> None:
    with pytest.raises(ValueError, match="boot status"):
        BackOffice(boot_status="Maybe")
    with pytest.raises(ValueError, match="status must be one of"):
        BackOffice(id_tags={"X": "Fine"})


# Authorization (TC_023) and transactions


@pytest.mark.parametrize(
    ("id_tag", "expected"),
    [
        ("ACCEPTED1", {"status": "Accepted", "parent_id_tag": "GROUP1"}),
        ("BLOCKED1", {"status": "Blocked"}),
        ("EXPIRED1", {"status": "Expired"}),
        ("NOBODY", {"status": "Invalid"}),
    ],
)
async def test_tc_023_authorize(office: BackOffice, id_tag: str, expected: dict[str, str]) -> None:
    async with charge_point(office) as cp:
        result = await cp.call(call.Authorize(id_tag=id_tag), suppress=False)
    assert result.id_tag_info == expected
    assert office.violations == []


async def test_set_id_tag_changes_the_answer(office: BackOffice) -> None:
    office.set_id_tag("NOBODY", "Accepted")
    async with charge_point(office) as cp:
        result = await cp.call(call.Authorize(id_tag="NOBODY"), suppress=False)
    assert result.id_tag_info == {"status": "Accepted"}
    with pytest.raises(ValueError):
        office.set_id_tag("NOBODY", "Fine")


async def test_transactions_get_increasing_ids(office: BackOffice) -> None:
    async with charge_point(office) as cp:
        first = await cp.call(
            call.StartTransaction(connector_id=1, id_tag="ACCEPTED1", meter_start=1000, timestamp=NOW),
            suppress=False,
        )
        second = await cp.call(
            call.StartTransaction(connector_id=2, id_tag="BLOCKED1", meter_start=5, timestamp=NOW),
            suppress=False,
        )
        stop = await cp.call(
            call.StopTransaction(
                meter_stop=2500, timestamp=NOW, transaction_id=first.transaction_id, id_tag="ACCEPTED1"
            ),
            suppress=False,
        )
    assert second.transaction_id > first.transaction_id
    assert first.id_tag_info["status"] == "Accepted"
    assert second.id_tag_info["status"] == "Blocked"
    assert stop.id_tag_info["status"] == "Accepted"
    starts = office.messages(action="StartTransaction")
    assert [m["payload"]["meterStart"] for m in starts] == [1000, 5]
    assert [m["response"]["payload"]["transactionId"] for m in starts] == [
        first.transaction_id,
        second.transaction_id,
    ]
    tx = office.transactions[first.transaction_id]
    assert (tx["meter_start"], tx["meter_stop"], tx["reason"]) == (1000, 2500, "Local")
    assert office.transactions[second.transaction_id]["stop"] is None
    assert office.violations == []


async def test_other_charge_point_messages_are_answered(office: BackOffice) -> None:
    async with charge_point(office) as cp:
        heartbeat = await cp.call(call.Heartbeat(), suppress=False)
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
        await cp.call(
            call.MeterValues(
                connector_id=1,
                meter_value=[{"timestamp": NOW, "sampled_value": [{"value": "1234", "unit": "Wh"}]}],
            ),
            suppress=False,
        )
        known = await cp.call(call.DataTransfer(vendor_id="evse-agent", message_id="x"), suppress=False)
        unknown = await cp.call(call.DataTransfer(vendor_id="acme"), suppress=False)
        await cp.call(call.DiagnosticsStatusNotification(status="Uploaded"), suppress=False)
        await cp.call(call.FirmwareStatusNotification(status="Installed"), suppress=False)
        await cp.call(
            call.SecurityEventNotification(type="StartupOfTheDevice", timestamp=NOW, tech_info="boot"),
            suppress=False,
        )
        await cp.call(call.LogStatusNotification(status="Uploaded", request_id=1), suppress=False)
        await cp.call(call.SignedFirmwareStatusNotification(status="Installed", request_id=2), suppress=False)
        signed = await cp.call(
            call.SignCertificate(csr="-----BEGIN CERTIFICATE REQUEST-----"), suppress=False
        )
    assert heartbeat.current_time.endswith("Z")
    assert office.connector_status[("CP1", 1)] == {"status": "Preparing", "errorCode": "NoError"}
    assert (known.status, unknown.status, signed.status) == ("Accepted", "UnknownVendorId", "Accepted")
    assert all(m["response"]["type"] == "result" for m in office.messages())
    assert office.violations == []


# Strict validation, independent of the library


async def test_invalid_start_transaction_is_recorded(office: BackOffice) -> None:
    async with raw_charge_point(office) as ws:
        frame = [2, "bad-1", "StartTransaction", {"connectorId": 1, "idTag": "ACCEPTED1", "timestamp": NOW}]
        answer = await raw_call(ws, frame)
    assert answer[0] == 4 and answer[1] == "bad-1"
    kinds = {(v["kind"], v["action"]) for v in office.violations}
    assert ("schema", "StartTransaction") in kinds
    assert ("callerror_sent", "StartTransaction") in kinds
    schema_error = next(v for v in office.violations if v["kind"] == "schema")
    assert "meterStart" in schema_error["error"]
    assert schema_error["message"] == frame
    assert office.transactions == {}
    [message] = office.messages(action="StartTransaction")
    assert message["response"]["type"] == "error"


async def test_bad_date_time_is_caught_although_the_library_accepts_it(office: BackOffice) -> None:
    async with raw_charge_point(office) as ws:
        frame = [
            2,
            "bad-2",
            "StartTransaction",
            {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": "now"},
        ]
        answer = await raw_call(ws, frame)
    assert answer[0] == 3  # the library let it through
    [violation] = office.violations
    assert violation["kind"] == "schema" and "timestamp" in violation["error"]


async def test_malformed_frames_are_recorded(office: BackOffice) -> None:
    async with raw_charge_point(office) as ws:
        await ws.send("this is not json")
        await ws.send(json.dumps([7, "x", {}]))
        answer = await raw_call(ws, [2, "u" * 40, "Heartbeat", {}])
    assert answer[0] == 3
    errors = [v["error"] for v in office.violations if v["kind"] == "frame"]
    assert len(errors) == 3
    assert errors[0].startswith("not JSON")
    assert "unknown message type" in errors[1]
    assert "at most 36" in errors[2]


def test_validator_and_frame_checks() -> None:
    validator = SchemaValidator()
    assert validator.errors("Heartbeat", {}) == []
    assert validator.errors("Heartbeat", {"extra": 1})
    assert validator.errors("Hello", {}) == ["no OCPP 1.6 schema for 'Hello'"]
    assert validator.errors("Hello", {}, response=True) == ["no OCPP 1.6 schema for 'HelloResponse'"]
    assert validator.errors("Heartbeat", {"currentTime": NOW}, response=True) == []
    assert validator.errors("Heartbeat", {"currentTime": "2024-05-01 12:00"}, response=True)
    assert validator.errors("Heartbeat", {"currentTime": "2024-05-01T12:00:00"}, response=True)  # no offset
    assert validator.errors("UpdateFirmware", {"location": "not a uri", "retrieveDate": NOW})
    assert validator.errors("UpdateFirmware", {"location": "ftp://host/fw.bin", "retrieveDate": NOW}) == []
    assert frame_errors([2, "1", "Heartbeat", {}]) == []
    assert frame_errors([4, "1", "FormatViolation", "", {}]) == [
        "error code 'FormatViolation' is not an OCPP 1.6 error code"
    ]
    assert frame_errors([3, 5, {}]) == ["unique id 5 is not a non-empty string"]
    assert frame_errors({}) == ["frame is not a non-empty JSON array"]


# Calls from the back office


async def test_call_remote_start_reaches_the_charge_point(office: BackOffice) -> None:
    async with charge_point(office) as cp:
        answer = await office.call("CP1", "RemoteStartTransaction", {"idTag": "ACCEPTED1", "connectorId": 1})
        assert await office.wait_for(lambda: cp.remote_starts) == cp.remote_starts
        assert cp.remote_starts == [{"id_tag": "ACCEPTED1", "connector_id": 1}]
    assert answer == {"status": "result", "payload": {"status": "Accepted"}}
    [sent] = office.messages(action="RemoteStartTransaction", direction="out")
    assert sent["payload"] == {"idTag": "ACCEPTED1", "connectorId": 1}
    assert sent["response"]["payload"] == {"status": "Accepted"}
    assert office.violations == []


async def test_call_errors_and_local_failures(office: BackOffice) -> None:
    assert (await office.call("NOPE", "ClearCache"))["status"] == "not_connected"
    with pytest.raises(ValueError, match="connectorId"):
        await office.call("CP1", "UnlockConnector", {})
    async with charge_point(office) as cp:
        not_implemented = await office.call("CP1", "Reset", {"type": "Soft"})
        invalid = await office.call("CP1", "UnlockConnector", {"connectorId": "one"}, validate=False)
        assert cp.remote_starts == []
    assert not_implemented["status"] == "error" and not_implemented["code"] == "NotImplemented"
    assert invalid["status"] == "error"
    assert office.violations == []  # the charge point answered correctly both times


async def test_call_result_is_validated_and_timeout_reported(office: BackOffice) -> None:
    async with raw_charge_point(office) as ws:
        pending = asyncio.create_task(office.call("RAW1", "ClearCache"))
        request = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert request[0] == 2 and request[2] == "ClearCache" and request[3] == {}
        await ws.send(json.dumps([3, request[1], {"status": "Perhaps"}]))
        assert await pending == {"status": "result", "payload": {"status": "Perhaps"}}
        [violation] = office.violations
        assert (violation["kind"], violation["action"]) == ("schema", "ClearCache")
        assert await office.call("RAW1", "ClearCache", timeout=0.3) == {"status": "timeout", "cp_id": "RAW1"}
        await ws.send(json.dumps([3, "never-asked", {}]))
        await office.wait_for(lambda: len(office.violations) == 2)
        assert office.violations[1]["kind"] == "unknown_response"


# Connection controls


async def test_refuse_connections_closes_then_accepts(office: BackOffice) -> None:
    port = office.port
    async with charge_point(office) as cp:
        await office.refuse_connections(1.0)
        await asyncio.wait_for(cp._connection.wait_closed(), 5)
        assert not office.connected("CP1")
        with pytest.raises(OSError):
            await open_ws(office.url("CP1"))
    await office.wait_for(lambda: not office.refusing and office.status()["listening"], timeout=5)
    assert office.port == port
    async with charge_point(office) as cp:
        assert (await cp.call(boot(), suppress=False)).status == "Accepted"


async def test_refuse_connections_reject_mode_answers_503(office: BackOffice) -> None:
    async with charge_point(office) as cp:
        await office.refuse_connections(1.0, mode="reject")
        await asyncio.wait_for(cp._connection.wait_closed(), 5)
        with pytest.raises(InvalidStatus) as caught:
            await open_ws(office.url("CP1"))
    assert caught.value.response.status_code == 503
    await office.wait_for(lambda: not office.refusing, timeout=5)
    async with charge_point(office):
        assert office.connected("CP1")


async def test_go_online_ends_a_refusal_early(office: BackOffice) -> None:
    await office.refuse_connections(60)
    assert office.status()["refusing"]
    await office.go_online()
    async with charge_point(office):
        assert not office.refusing


async def test_offline_and_online(office: BackOffice) -> None:
    await office.go_offline()
    with pytest.raises(OSError):
        await open_ws(office.url("CP1"))
    await office.go_online()
    async with charge_point(office):
        assert office.connected("CP1")


@pytest.mark.parametrize("abrupt", [False, True])
async def test_drop_closes_the_websocket(office: BackOffice, abrupt: bool) -> None:
    async with charge_point(office) as cp:
        assert await office.drop("CP1", abrupt=abrupt)
        await asyncio.wait_for(cp._connection.wait_closed(), 5)
        await office.wait_for(lambda: not office.connected("CP1"))
    assert not await office.drop("CP1")


async def test_new_connection_replaces_the_old_one(office: BackOffice) -> None:
    async with charge_point(office) as old, charge_point(office) as new:
        await asyncio.wait_for(old._connection.wait_closed(), 5)
        assert office.connected("CP1")
        assert (await new.call(boot(), suppress=False)).status == "Accepted"


async def test_reject_next_answers_callerror(office: BackOffice) -> None:
    office.reject_next("StartTransaction", 2, "InternalError")
    request = call.StartTransaction(connector_id=1, id_tag="ACCEPTED1", meter_start=0, timestamp=NOW)
    async with charge_point(office) as cp:
        for _ in range(2):
            with pytest.raises(InternalError):
                await cp.call(request, suppress=False)
        accepted = await cp.call(request, suppress=False)
    assert list(office.transactions) == [accepted.transaction_id]
    codes = [m["response"].get("code") for m in office.messages(action="StartTransaction")]
    assert codes == ["InternalError", "InternalError", None]
    assert office.violations == []
    with pytest.raises(ValueError):
        office.reject_next("Heartbeat", 1, "Oops")


@pytest.mark.parametrize("subprotocols", [["ocpp2.1"], None])  # 2.0.1 is served now; 2.1 is not
async def test_wrong_or_missing_subprotocol_is_refused(office: BackOffice, subprotocols: Any) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await open_ws(office.url("CP1"), subprotocols=subprotocols)
    assert caught.value.response.status_code == 400
    assert not office.connected("CP1")


async def test_a_1_6_only_office_refuses_2_0_1() -> None:
    bo = BackOffice(ocpp_versions=("1.6",))
    await bo.start()
    try:
        with pytest.raises(InvalidStatus) as caught:
            await open_ws(bo.url("CP1"), subprotocols=["ocpp2.0.1"])
        assert caught.value.response.status_code == 400
    finally:
        await bo.stop()


async def test_charge_point_id_is_the_last_path_segment(office: BackOffice) -> None:
    ws = await open_ws(f"ws://127.0.0.1:{office.port}/some/deep/path/CP%2077")
    try:
        assert ws.subprotocol == "ocpp1.6"
        await office.wait_for(lambda: office.connected("CP 77"))
    finally:
        await ws.close()


async def test_basic_auth() -> None:
    office = BackOffice(passwords={"CP1": "0123456789abcdef"})
    await office.start()
    try:
        for header in (None, "Basic " + base64.b64encode(b"CP1:wrong").decode(), "Bearer x"):
            headers = {"Authorization": header} if header else None
            with pytest.raises(InvalidStatus) as caught:
                await open_ws(office.url("CP1"), additional_headers=headers)
            assert caught.value.response.status_code == 401
        good = {"Authorization": "Basic " + base64.b64encode(b"CP1:0123456789abcdef").decode()}
        async with charge_point(office, additional_headers=good) as cp:
            assert (await cp.call(boot(), suppress=False)).status == "Accepted"
    finally:
        await office.stop()


async def test_security_profile_2_tls_with_basic_auth(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
    command += " -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
    subprocess.run(
        [*command.split(), "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    office = BackOffice(passwords={"CP1": "0123456789abcdef"})
    await office.start(ssl_context=server_ctx)
    try:
        assert office.url("CP1").startswith("wss://")
        good = {"Authorization": "Basic " + base64.b64encode(b"CP1:0123456789abcdef").decode()}
        async with charge_point(office, additional_headers=good, ssl=client_ctx) as cp:
            assert (await cp.call(boot(), suppress=False)).status == "Accepted"
        with pytest.raises(ssl.SSLError):
            await open_ws(office.url("CP1"), additional_headers=good, ssl=ssl.create_default_context())
    finally:
        await office.stop()


async def test_wait_for_times_out(office: BackOffice) -> None:
    with pytest.raises(TimeoutError):
        await office.wait_for("BootNotification", timeout=0.1)


# Control API


async def test_control_api_over_http(office: BackOffice) -> None:
    control_port = await office.start_control()
    client = BackOfficeClient(f"http://127.0.0.1:{control_port}")
    aclient = AsyncBackOfficeClient(f"http://127.0.0.1:{control_port}")
    await asyncio.to_thread(client.set_id_tags, {"NEW1": "Accepted"})
    await asyncio.to_thread(client.reject_next, "Heartbeat", 1, "GenericError")
    async with charge_point(office) as cp:
        assert (await cp.call(call.Authorize(id_tag="NEW1"), suppress=False)).id_tag_info[
            "status"
        ] == "Accepted"
        assert await cp.call(call.Heartbeat()) is None  # rejected once
        status = await aclient.status()
        assert status["connected"] == ["CP1"] and status["ocpp_port"] == office.port
        answer = await aclient.call("CP1", "RemoteStartTransaction", {"idTag": "NEW1"})
        assert answer == {"status": "result", "payload": {"status": "Accepted"}}
        assert cp.remote_starts == [{"id_tag": "NEW1"}]
        authorize = await aclient.wait_for("Authorize", cp_id="CP1")
        assert authorize["response"]["payload"]["idTagInfo"]["status"] == "Accepted"
        assert len(await aclient.messages(direction=None)) == 3
        assert (await aclient.messages(action="Heartbeat"))[0]["response"]["code"] == "GenericError"
        assert await aclient.violations() == []
        with pytest.raises(BackOfficeError, match="400"):
            await aclient.call("CP1", "UnlockConnector", {})
        with pytest.raises(BackOfficeError, match="404"):
            await asyncio.to_thread(client._request, "GET", "/nothing")
        assert await aclient.drop("CP1")
        await asyncio.wait_for(cp._connection.wait_closed(), 5)
    await aclient.set_boot_status("Rejected")
    await aclient.offline()
    assert (await aclient.status())["listening"] is False
    await aclient.online()
    async with charge_point(office) as cp:
        assert (await cp.call(boot(), suppress=False)).status == "Rejected"
    await aclient.refuse(0.2)
    await aclient.clear()
    assert await aclient.frames() == []


def test_cli_process_serves_ocpp_and_control_api(tmp_path: Path) -> None:
    log = tmp_path / "frames.jsonl"
    command = [sys.executable, "-m", "simulator.backoffice", "--port", "0", "--control-port", "0"]
    command += ["--id-tag", "CARD1=Blocked", "--log", str(log)]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        ports = json.loads(process.stdout.readline())
        client = BackOfficeClient(f"http://127.0.0.1:{ports['control_port']}")

        async def session() -> str:
            ws = await open_ws(f"ws://127.0.0.1:{ports['ocpp_port']}/ocpp/CLI1")
            cp = RawChargePoint("CLI1", ws)
            task = asyncio.create_task(cp.start())
            try:
                result = await cp.call(call.Authorize(id_tag="CARD1"), suppress=False)
                return str(result.id_tag_info["status"])
            finally:
                task.cancel()
                await ws.close()

        assert asyncio.run(session()) == "Blocked"
        assert client.wait_for("Authorize", cp_id="CLI1")["payload"] == {"idTag": "CARD1"}
        assert client.violations() == []
        assert [json.loads(line)["direction"] for line in log.read_text().splitlines()] == ["in", "out"]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
