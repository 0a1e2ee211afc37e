"""The OCPP 2.0.1 adapter on a real agent (fake hardware, real store): the handlers answer the frames a CSMS
sends, the session adapter builds the station's messages; every answer and request is checked against the
official 2.0.1 schemas of the `ocpp` library."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ocpp.charge_point import snake_to_camel_case
from ocpp.v201 import call_result

from agent.config import parse_config
from agent.core import events as ev
from agent.daemon import wire_services
from agent.hardware import ConnectorDevices, Hardware
from agent.metering import Sample
from agent.ocpp.library import inline_schema_validation
from agent.ocpp.v201.connection import V201Connection, auth_result
from agent.ocpp.v201.device_model import DeviceModel
from agent.ocpp.v201.journal import V201Journal
from agent.ocpp.v201.statuses import connector_status, fault_report
from agent.ports import SampleTrigger
from agent.runtime import Agent
from agent.store import Store
from drivers.base import MeterReading
from tests.agent.test_runtime_actuation import CountingMeter, RecordingContactor
from tests.agent.test_watchdog import CONFIG


def schema(name: str) -> dict[str, Any]:
    text = resources.files("ocpp.v201").joinpath("schemas", f"{name}.json").read_text()
    return dict(json.loads(text))


class Wire:
    """The websocket as the router sees it: what the agent sends is kept."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: str) -> None:
        self.sent.append(message)

    async def recv(self) -> str:
        await asyncio.Event().wait()
        return ""


class Rig:
    """A real agent with the 2.0.1 journal and connection, driven one CSMS frame at a time."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        cfg = parse_config(CONFIG.format(state=tmp_path / "state"))
        self.store = Store(tmp_path / "agent.db")
        contactor = RecordingContactor()
        self.meter = CountingMeter(contactor)
        hw = Hardware(connectors={1: ConnectorDevices(1, "ac", meter=self.meter,  # type: ignore[arg-type]
                                                      contactor=contactor)})  # type: ignore[arg-type]
        self.device_model = DeviceModel(cfg, self.store)  # the settings source, as the daemon wires 2.0.1
        model = self.device_model
        self.agent = Agent(cfg, self.store, hw, model, V201Journal(self.store, model), model)
        wire_services(self.agent, model)
        self.wire = Wire()
        inline_schema_validation()
        self.conn = V201Connection(self.agent, self.wire, device_model=self.device_model)

    def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Route one CALL; its CALLRESULT payload (checked against the response schema)."""
        before = len(self.wire.sent)
        self.loop.run_until_complete(self.conn.cp.route_message(json.dumps([2, "u1", action, payload])))
        self.loop.run_until_complete(asyncio.sleep(0.05))  # @after handlers run as tasks
        answers = [json.loads(m) for m in self.wire.sent[before:]]
        answers = [a for a in answers if a[0] in (3, 4)]
        assert len(answers) == 1 and answers[0][0] == 3, answers
        jsonschema.validate(answers[0][2], schema(f"{action}Response"))
        return dict(answers[0][2])

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.loop.run_until_complete(cancel_all())
        self.loop.close()
        self.store.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.close()


def request_payload(request: Any) -> dict[str, Any]:
    """A call dataclass as the wire payload, checked against its request schema."""
    payload = {k: v for k, v in snake_to_camel_case(dataclasses.asdict(request)).items() if v is not None}
    jsonschema.validate(payload, schema(f"{type(request).__name__}Request"))
    return payload


def test_b01_boot_notification_names_the_station_and_its_reason(rig: Rig) -> None:
    payload = request_payload(rig.conn.adapter.boot_request())
    assert payload["reason"] == "PowerUp"
    assert set(payload["chargingStation"]) >= {"model", "vendorName"}


def test_b02_b03_pending_and_rejected_boot_answers(rig: Rig) -> None:
    answer = rig.conn.adapter.boot_answer(call_result.BootNotification("2024-01-01T00:00:00Z", 30, "Pending"))
    assert (answer.status, answer.interval_s) == ("Pending", 30)
    assert rig.call("RequestStartTransaction", {"idToken": {"idToken": "A1", "type": "Central"},
                                                "remoteStartId": 1})["status"] == "Rejected"
    rig.conn.adapter.boot_answer(call_result.BootNotification("2024-01-01T00:00:00Z", 30, "Rejected"))
    assert rig.conn.cp.boot_rejected


def test_status_heartbeat_authorize_and_meter_values_requests(rig: Rig) -> None:
    adapter = rig.conn.adapter
    status = request_payload(adapter.status_request(ev.StatusChanged(1, ev.ConnectorStatus.CHARGING,
                                                                     timestamp=1_700_000_000.0)))
    assert status == {"timestamp": "2023-11-14T22:13:20.000Z", "connectorStatus": "Occupied", "evseId": 1,
                      "connectorId": 1}
    request_payload(adapter.heartbeat_request())
    assert request_payload(adapter.authorize_request("0F00A1")) == {"idToken": {"idToken": "0F00A1",
                                                                                "type": "ISO14443"}}
    sample = Sample(MeterReading(energy_import_wh=1500.0, power_w=3.0))
    values = request_payload(adapter.sample_request(1, sample, SampleTrigger.CLOCK, 1_700_000_000.0))
    assert values["evseId"] == 1 and values["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"


def test_c01_authorize_answer_reads_id_token_info() -> None:
    result = auth_result("A1", {"status": "NotAtThisTime", "group_id_token": {"id_token": "G", "type": "Central"}})
    assert result.status is ev.AuthStatus.INVALID and result.parent_id_tag == "G"
    assert auth_result("A1", {"status": "Accepted"}).status is ev.AuthStatus.ACCEPTED


def test_f01_request_start_then_f03_request_stop_by_the_station_transaction_id(rig: Rig) -> None:
    answer = rig.call("RequestStartTransaction", {"idToken": {"idToken": "A1", "type": "Central"},
                                                  "remoteStartId": 5, "evseId": 1})
    assert answer["status"] == "Accepted"
    assert rig.call("RequestStopTransaction", {"transactionId": "no-such-transaction"})["status"] == "Rejected"


def test_f02_remote_start_then_plug_in_then_f03_request_stop_by_its_transaction_id(rig: Rig) -> None:
    agent = rig.agent

    async def observe() -> None:
        reading = await rig.meter.read()
        agent.connectors[1].reading = reading
        agent.feed(ev.MeterSample(1, reading.energy_import_wh, 0.0))

    rig.loop.run_until_complete(observe())
    assert rig.call("RequestStartTransaction", {"idToken": {"idToken": "A1", "type": "Central"},
                                                "remoteStartId": 5, "evseId": 1})["status"] == "Accepted"
    agent.feed(ev.PlugChanged(1, True))
    rig.loop.run_until_complete(asyncio.sleep(0.05))
    session = agent.core.session(1)
    assert session is not None
    row = rig.store.transaction(session.local_tx_id)
    assert row is not None
    started = rig.store.pending()[0].payload
    jsonschema.validate(started, schema("TransactionEventRequest"))
    assert (started["eventType"], started["triggerReason"], started["idToken"]) == (
        "Started", "CablePluggedIn", {"idToken": "A1", "type": "Central"})
    assert started["transactionInfo"]["remoteStartId"] == 5  # F02: the back office links its request
    assert started["transactionInfo"]["transactionId"] == row.station_tx_id and started["offline"] is True
    # cable first: a second start on the busy EVSE names the running transaction
    again = rig.call("RequestStartTransaction", {"idToken": {"idToken": "A2", "type": "Central"},
                                                 "remoteStartId": 6, "evseId": 1})
    assert again.get("transactionId") == row.station_tx_id
    assert rig.call("RequestStopTransaction", {"transactionId": row.station_tx_id})["status"] == "Accepted"
    assert agent.core.session(1) is None


def test_g03_change_availability_of_an_evse_and_the_station(rig: Rig) -> None:
    assert rig.call("ChangeAvailability", {"operationalStatus": "Inoperative",
                                           "evse": {"id": 1, "connectorId": 1}})["status"] == "Accepted"
    assert rig.agent.core.availability()[1] is False
    assert rig.call("ChangeAvailability", {"operationalStatus": "Operative"})["status"] == "Accepted"
    assert rig.call("ChangeAvailability", {"operationalStatus": "Operative",
                                           "evse": {"id": 9}})["status"] == "Rejected"


def test_f05_unlock_connector_answers(rig: Rig) -> None:
    assert rig.call("UnlockConnector", {"evseId": 9, "connectorId": 1})["status"] == "UnknownConnector"
    assert rig.call("UnlockConnector", {"evseId": 1, "connectorId": 1})["status"] in ("Unlocked", "UnlockFailed")


def test_f06_trigger_message(rig: Rig) -> None:
    assert rig.call("TriggerMessage", {"requestedMessage": "Heartbeat"})["status"] == "Accepted"
    assert rig.call("TriggerMessage", {"requestedMessage": "SignV2GCertificate"})["status"] == "NotImplemented"
    assert rig.call("TriggerMessage", {"requestedMessage": "StatusNotification",
                                       "evse": {"id": 7}})["status"] == "Rejected"


def test_b11_reset_of_an_evse_is_rejected(rig: Rig) -> None:
    assert rig.call("Reset", {"type": "Immediate", "evseId": 1})["status"] == "Rejected"


def test_c11_clear_cache_and_d01_d02_local_list(rig: Rig) -> None:
    assert rig.call("ClearCache", {})["status"] == "Accepted"
    assert rig.call("SendLocalList", {"versionNumber": 3, "updateType": "Full", "localAuthorizationList": [
        {"idToken": {"idToken": "A1", "type": "ISO14443"}, "idTokenInfo": {"status": "Accepted"}}]}) == {
        "status": "Accepted"}
    assert rig.call("GetLocalListVersion", {}) == {"versionNumber": 3}
    assert rig.call("SendLocalList", {"versionNumber": 2, "updateType": "Differential"})["status"] == (
        "VersionMismatch")
    assert rig.store.local_list_version() == 3


def test_b06_b07_device_model_calls_go_to_the_device_model(rig: Rig) -> None:
    item = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    got = rig.call("GetVariables", {"getVariableData": [item]})
    assert got["getVariableResult"][0]["attributeStatus"] == "Accepted"
    assert got["getVariableResult"][0]["attributeValue"] == "300"
    got = rig.call("SetVariables", {"setVariableData": [{**item, "attributeValue": "30"}]})
    assert got["setVariableResult"][0]["attributeStatus"] == "Accepted"
    assert rig.agent.settings.heartbeat_interval_s == 30.0  # the runtime reads it as a setting
    evse = {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"},
            "attributeType": "MaxSet"}
    got = rig.call("GetVariables", {"getVariableData": [evse]})
    assert got["getVariableResult"][0]["component"]["evse"] == {"id": 1}  # nested keys back in camelCase
    before = len(rig.wire.sent)
    assert rig.call("GetBaseReport", {"requestId": 4, "reportBase": "FullInventory"}) == {"status": "Accepted"}
    reports = [json.loads(m) for m in rig.wire.sent[before:]]
    parts = [m[3] for m in reports if m[0] == 2 and m[2] == "NotifyReport"]
    assert parts and parts[0]["requestId"] == 4 and parts[0]["seqNo"] == 0
    for part in parts:
        jsonschema.validate(part, schema("NotifyReportRequest"))


def test_p01_data_transfer_of_an_unknown_vendor(rig: Rig) -> None:
    assert rig.call("DataTransfer", {"vendorId": "acme"})["status"] == "UnknownVendorId"


def test_an_action_without_a_handler_is_not_supported(rig: Rig) -> None:
    before = len(rig.wire.sent)
    # L04 (a local controller's firmware) is not a charging station's job
    rig.loop.run_until_complete(rig.conn.cp.route_message(json.dumps([2, "u9", "UnpublishFirmware", {
        "checksum": "0123456789abcdef0123456789abcdef"}])))
    assert json.loads(rig.wire.sent[before])[2] == "NotSupported"


@pytest.mark.parametrize("status", list(ev.ConnectorStatus))
def test_connector_status_is_one_of_the_five(status: ev.ConnectorStatus) -> None:
    assert connector_status(status) in ("Available", "Occupied", "Reserved", "Unavailable", "Faulted")


def test_faults_name_their_component() -> None:
    assert fault_report(ev.Fault("contactor_welded")).component == "PowerContactor"
    assert fault_report(ev.Fault("communication", ev.DeviceRole.METER)).component == "PowerMeter"
    assert fault_report(ev.Fault(ev.FAULT_EMERGENCY_STOP)).evse_scoped is False
    assert fault_report(ev.Fault("whatever")).component == "Connector"

