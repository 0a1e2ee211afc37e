"""OCPP 2.0.1 monitoring (N02-N08) and fault notifications (G05) on a real agent and store: the handlers'
answers, the monitors tripping on the agent's own values, NotifyEvent sent online and queued offline by
severity; every answer and every message checked against the official 2.0.1 schemas."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from agent.core import events as ev
from agent.ocpp.v201.monitors import FIRST_CUSTOM_ID, MonitorEngine
from drivers.base import MeterReading
from tests.agent.test_v201_handlers import Rig, schema

EVSE1 = {"name": "EVSE", "evse": {"id": 1}}
POWER = {"name": "Power"}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    made.monitors = MonitorEngine(made.agent, made.device_model)  # type: ignore[attr-defined]
    yield made
    made.close()


def engine(rig: Rig) -> MonitorEngine:
    return rig.monitors  # type: ignore[attr-defined,no-any-return]


def item(component: dict[str, Any], variable: dict[str, Any], kind: str, value: float, severity: int = 4,
         **extra: Any) -> dict[str, Any]:
    return {"component": component, "variable": variable, "type": kind, "value": value, "severity": severity,
            **extra}


def set_monitors(rig: Rig, *items: dict[str, Any]) -> list[dict[str, Any]]:
    payload = {"setMonitoringData": list(items)}
    jsonschema.validate(payload, schema("SetVariableMonitoringRequest"))
    return list(rig.call("SetVariableMonitoring", payload)["setMonitoringResult"])


def read(rig: Rig, power_w: float | None = 0.0, *, stale: bool = False, energy_wh: float = 10_000.0) -> None:
    """The meter of connector 1 as the runtime last read it."""
    rig.agent.connectors[1].reading = MeterReading(energy_import_wh=energy_wh, power_w=power_w,
                                                   voltage_v=(231.0, 229.0, 230.0), current_a=(10.0, 12.5, 11.0),
                                                   stale=stale)


def queued_events(rig: Rig) -> list[dict[str, Any]]:
    """The eventData of the NotifyEvents in the outbox, each message checked against the schema."""
    out = []
    for msg in rig.store.pending(limit=500):
        if msg.action == "NotifyEvent":
            jsonschema.validate(msg.payload, schema("NotifyEventRequest"))
            assert msg.protocol == "2.0.1"
            out += msg.payload["eventData"]
    return out


def feed(rig: Rig, *events: ev.Input) -> None:
    """Observations to the core, inside the loop (the runtime executes its decisions as tasks)."""
    async def run() -> None:
        for event in events:
            rig.agent.feed(event)
        await asyncio.sleep(0.02)

    rig.loop.run_until_complete(run())


def inoperative(rig: Rig) -> None:
    assert rig.call("ChangeAvailability", {"operationalStatus": "Inoperative",
                                           "evse": {"id": 1, "connectorId": 1}})["status"] == "Accepted"


def tick(rig: Rig, now: float | None = None, mono: float | None = None) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        events = engine(rig).tick(now, mono)
        await asyncio.sleep(0.02)
        return events

    return rig.loop.run_until_complete(run())


def sent(rig: Rig, action: str) -> list[dict[str, Any]]:
    """The payloads of the CALLs the agent sent, each checked against its request schema."""
    out = []
    for frame in map(json.loads, rig.wire.sent):
        if frame[0] == 2 and frame[2] == action:
            jsonschema.validate(frame[3], schema(f"{action}Request"))
            out.append(frame[3])
    return out


def answer_calls(rig: Rig) -> None:
    """The CSMS answers every CALL the agent sent so far (empty CALLRESULTs)."""
    async def run() -> None:
        answered: set[str] = set()
        for _ in range(50):
            pending = [f for f in map(json.loads, rig.wire.sent) if f[0] == 2 and f[1] not in answered]
            if not pending:
                await asyncio.sleep(0.02)
                if not [f for f in map(json.loads, rig.wire.sent) if f[0] == 2 and f[1] not in answered]:
                    return
                continue
            for frame in pending:
                answered.add(frame[1])
                await rig.conn.cp.route_message(json.dumps([3, frame[1], {}]))
            await asyncio.sleep(0.02)

    rig.loop.run_until_complete(run())


def test_n04_set_variable_monitoring_answers_per_item(rig: Rig) -> None:
    results = set_monitors(
        rig,
        item(EVSE1, POWER, "UpperThreshold", 7000),
        item({"name": "NoSuchCtrlr"}, {"name": "X"}, "Delta", 1),
        item(EVSE1, {"name": "NoSuchVariable"}, "Delta", 1),
        item(EVSE1, {"name": "AvailabilityState"}, "UpperThreshold", 1),  # not a number
        item({"name": "TxCtrlr"}, {"name": "EVConnectionTimeOut"}, "Delta", 1),  # not monitorable
        item(EVSE1, POWER, "Delta", -5),
        item(EVSE1, POWER, "Periodic", 0),
        item(EVSE1, POWER, "UpperThreshold", 7000, severity=12),
        item(EVSE1, POWER, "UpperThreshold", 9000),  # same type and severity on the same variable
    )
    statuses = [r["status"] for r in results]
    assert statuses == ["Accepted", "UnknownComponent", "UnknownVariable", "UnsupportedMonitorType",
                        "UnsupportedMonitorType", "Rejected", "Rejected", "Rejected", "Duplicate"]
    first = results[0]["id"]
    assert first >= FIRST_CUSTOM_ID and all("id" not in r for r in results[1:])
    # the station assigns ids; an id given replaces that monitor; an unknown or hard-wired one is refused
    again = set_monitors(rig, item(EVSE1, POWER, "UpperThreshold", 8000, id=first),
                         item(EVSE1, POWER, "LowerThreshold", 10),
                         item(EVSE1, POWER, "Delta", 100, id=4242))
    assert [r["status"] for r in again] == ["Accepted", "Accepted", "Rejected"]
    assert again[0]["id"] == first and again[1]["id"] == first + 1
    hard_wired = next(m for m in engine(rig).active() if m.kind == "HardWiredMonitor")
    assert set_monitors(rig, item(EVSE1, POWER, "UpperThreshold", 1, id=hard_wired.id))[0]["status"] == "Rejected"
    # persisted: a new engine on the same store has them
    reborn = MonitorEngine(rig.agent, rig.device_model)
    assert reborn.custom[first].value == 8000 and first + 1 in reborn.custom


def test_n04_a_request_beyond_items_per_message_is_refused_whole(rig: Rig) -> None:
    limit = rig.device_model.get_int("MonitoringCtrlr.ItemsPerMessage[SetVariableMonitoring]")
    items = [item(EVSE1, POWER, "UpperThreshold", 1000 + n, severity=n % 10) for n in range(limit + 1)]
    before = len(rig.wire.sent)
    rig.loop.run_until_complete(rig.conn.cp.route_message(json.dumps(
        [2, "big", "SetVariableMonitoring", {"setMonitoringData": items}])))
    answer = json.loads(rig.wire.sent[before])
    assert answer[0] == 4 and answer[2] == "OccurrenceConstraintViolation"
    assert engine(rig).custom == {}


def test_n07_threshold_monitor_trips_on_the_meter_power_and_clears_queued_offline(rig: Rig) -> None:
    monitor_id = set_monitors(rig, item(EVSE1, POWER, "UpperThreshold", 7000, severity=3))[0]["id"]
    quiet = set_monitors(rig, item(EVSE1, POWER, "LowerThreshold", 100, severity=7))[0]["id"]
    read(rig, 5000.0)
    tick(rig)
    read(rig, 7400.0)
    tick(rig)
    read(rig, 7300.0)  # still above: no second event
    tick(rig)
    read(rig, None, stale=True)  # the meter went silent: no value, nothing tripped or cleared
    tick(rig)
    read(rig, 6000.0)
    tick(rig)
    read(rig, 50.0)
    tick(rig)
    events = [e for e in queued_events(rig) if e.get("variableMonitoringId") == monitor_id]
    assert [(e["actualValue"], e.get("cleared", False), e["trigger"]) for e in events] == [
        ("7400", False, "Alerting"), ("6000", True, "Alerting")]
    assert events[0]["eventNotificationType"] == "CustomMonitor" and events[0]["component"] == EVSE1
    # offline: severity 7 is above OfflineQueuingSeverity (3): dropped, not queued
    assert not [e for e in queued_events(rig) if e.get("variableMonitoringId") == quiet]
    ids = [e["eventId"] for e in queued_events(rig)]
    assert len(set(ids)) == len(ids)


def test_n07_online_events_are_sent_at_once_and_the_level_filters_them(rig: Rig) -> None:
    rig.agent.link_session = rig.conn
    set_monitors(rig, item(EVSE1, POWER, "UpperThreshold", 7000, severity=5))
    assert rig.call("SetMonitoringLevel", {"severity": 4})["status"] == "Accepted"
    read(rig, 8000.0)
    tick(rig)
    assert sent(rig, "NotifyEvent") == []  # severity 5 is above the level
    assert rig.call("SetMonitoringLevel", {"severity": 5})["status"] == "Accepted"
    assert rig.device_model.get_int("MonitoringCtrlr.ActiveMonitoringLevel") == 5
    read(rig, 6000.0)
    tick(rig)
    answer_calls(rig)
    read(rig, 8000.0)
    tick(rig)
    answer_calls(rig)
    notified = sent(rig, "NotifyEvent")
    assert [e["actualValue"] for n in notified for e in n["eventData"]] == ["6000", "8000"]
    assert rig.store.pending() == []  # online: sent, not queued


def test_n07_delta_and_periodic_monitors(rig: Rig) -> None:
    voltage = {"name": "PowerMeter", "evse": {"id": 1}}
    delta = set_monitors(rig, item(voltage, {"name": "Voltage"}, "Delta", 5, severity=1))[0]["id"]
    period = set_monitors(rig, item(voltage, {"name": "Energy"}, "Periodic", 10, severity=1))[0]["id"]
    state = set_monitors(rig, item({"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                                   {"name": "AvailabilityState"}, "Delta", 0, severity=1))[0]["id"]
    read(rig)
    tick(rig, mono=100.0)
    rig.agent.connectors[1].reading = MeterReading(energy_import_wh=10_500.0, voltage_v=(233.0,))
    tick(rig, mono=105.0)  # 2 V: within the delta, and the period is not over
    rig.agent.connectors[1].reading = MeterReading(energy_import_wh=10_600.0, voltage_v=(238.0,))
    inoperative(rig)
    tick(rig, mono=111.0)
    events = queued_events(rig)
    by_monitor = {e["variableMonitoringId"]: e for e in events}
    assert by_monitor[delta]["actualValue"] == "238" and by_monitor[delta]["trigger"] == "Delta"
    assert by_monitor[period]["actualValue"] == "10600" and by_monitor[period]["trigger"] == "Periodic"
    assert by_monitor[state]["actualValue"] == "Unavailable"
    assert len(events) == 3


def test_n03_monitoring_base_and_n06_clear(rig: Rig) -> None:
    custom = set_monitors(rig, item(EVSE1, POWER, "UpperThreshold", 7000))[0]["id"]
    presets = {m.id: m for m in engine(rig).presets.values()}
    state_preset = next(i for i, m in presets.items() if m.kind == "PreconfiguredMonitor" and not m.factory)
    hard_wired = next(i for i, m in presets.items() if m.kind == "HardWiredMonitor")
    assert state_preset not in [m.id for m in engine(rig).active()]  # FactoryDefault: not all of them
    assert rig.call("SetMonitoringBase", {"monitoringBase": "All"})["status"] == "Accepted"
    assert {state_preset, hard_wired, custom} <= {m.id for m in engine(rig).active()}
    cleared = rig.call("ClearVariableMonitoring", {"id": [custom, hard_wired, state_preset, 99999]})
    assert [r["status"] for r in cleared["clearMonitoringResult"]] == ["Accepted", "Rejected", "Accepted", "NotFound"]
    assert {m.id for m in engine(rig).active()} == {m.id for m in engine(rig).presets.values()} - {state_preset}
    assert rig.call("SetMonitoringBase", {"monitoringBase": "All"})["status"] == "Accepted"  # restored
    assert state_preset in {m.id for m in engine(rig).active()}
    set_monitors(rig, item(EVSE1, POWER, "UpperThreshold", 7000))
    assert rig.call("SetMonitoringBase", {"monitoringBase": "HardWiredOnly"})["status"] == "Accepted"
    assert [m.kind for m in engine(rig).active()] == ["HardWiredMonitor"]
    assert rig.device_model.get_str("MonitoringCtrlr.ActiveMonitoringBase") == "HardWiredOnly"
    assert rig.call("SetMonitoringLevel", {"severity": 10})["status"] == "Rejected"


def test_n02_get_monitoring_report_by_criteria_and_component_split_by_items_per_message(rig: Rig) -> None:
    set_monitors(rig, item(EVSE1, POWER, "UpperThreshold", 7000), item(EVSE1, POWER, "Delta", 500),
                 item({"name": "PowerMeter", "evse": {"id": 1}}, {"name": "Voltage"}, "LowerThreshold", 200))
    rig.device_model.set_local("DeviceDataCtrlr.ItemsPerMessage[GetReport]", 1)
    answer = rig.call("GetMonitoringReport", {"requestId": 7, "monitoringCriteria": ["ThresholdMonitoring"]})
    assert answer["status"] == "Accepted"
    answer_calls(rig)
    parts = sent(rig, "NotifyMonitoringReport")
    assert [(p["requestId"], p["seqNo"], p["tbc"]) for p in parts] == [(7, 0, True), (7, 1, True), (7, 2, False)]
    types = {m["type"] for p in parts for d in p["monitor"] for m in d["variableMonitoring"]}
    assert types == {"UpperThreshold", "LowerThreshold"}  # the hard-wired over-power monitor included
    assert rig.call("GetMonitoringReport", {"requestId": 8, "componentVariable": [
        {"component": {"name": "PowerMeter", "evse": {"id": 1}}, "variable": {"name": "Voltage"}}],
        "monitoringCriteria": ["DeltaMonitoring"]})["status"] == "EmptyResultSet"
    rig.call("GetMonitoringReport", {"requestId": 9, "componentVariable": [{"component": EVSE1}]})
    answer_calls(rig)
    nine = [p for p in sent(rig, "NotifyMonitoringReport") if p["requestId"] == 9]
    assert {d["variable"]["name"] for p in nine for d in p["monitor"]} == {"Power"}


def test_live_values_come_from_the_meter_and_the_core(rig: Rig) -> None:
    read(rig, 3680.0, energy_wh=12_345.6)
    answer = rig.call("GetVariables", {"getVariableData": [
        {"component": EVSE1, "variable": POWER},
        {"component": {"name": "PowerMeter", "evse": {"id": 1}}, "variable": {"name": "Current"}},
        {"component": {"name": "PowerMeter", "evse": {"id": 1}}, "variable": {"name": "Voltage"}},
        {"component": {"name": "PowerMeter", "evse": {"id": 1}}, "variable": {"name": "Energy"}},
        {"component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
         "variable": {"name": "AvailabilityState"}}]})
    values = [r.get("attributeValue") for r in answer["getVariableResult"]]
    assert values == ["3680", "12.5", "231", "12345", "Available"]
    inoperative(rig)
    assert rig.device_model.get("Connector[1,1].AvailabilityState") == "Unavailable"
    read(rig, 3680.0, stale=True)
    assert rig.device_model.get("EVSE[1].Power") is None  # a silent meter's old value is not presented as now


def test_g05_fault_notify_event_on_the_problem_variable_and_its_clearing(rig: Rig) -> None:
    feed(rig, ev.FaultRaised(1, "meter1", "timeout", stops_charging=False, role=ev.DeviceRole.METER,
                                  info="silent 6 s", suspends_charging=True))
    tick(rig)
    assert rig.device_model.get("PowerMeter[1].Problem") is True
    feed(rig, ev.EstopChanged(True))
    tick(rig)
    tick(rig)  # nothing new: nothing sent again
    feed(rig, ev.FaultCleared(1, "meter1"))
    feed(rig, ev.EstopChanged(False))
    tick(rig)
    events = [(e["component"], e["variable"]["name"], e["actualValue"], e.get("cleared", False))
              for e in queued_events(rig)]
    meter = {"name": "PowerMeter", "evse": {"id": 1}}
    estop = {"name": "EmergencyStopSensor"}
    assert events[:2] == [(meter, "Problem", "true", False), (estop, "Tripped", "true", False)]
    assert sorted(map(str, events[2:])) == sorted(map(str, [(meter, "Problem", "false", True),
                                                            (estop, "Tripped", "false", True)]))
    first = queued_events(rig)[0]
    assert first["eventNotificationType"] == "HardWiredNotification" and first["trigger"] == "Alerting"
    assert first["techCode"] == "timeout" and first["techInfo"] == "silent 6 s"
    assert rig.device_model.get("PowerMeter[1].Problem") is False


def test_g05_a_fault_that_cleared_while_the_agent_was_down_is_reported_cleared(rig: Rig) -> None:
    feed(rig, ev.FaultRaised(1, "contactor1", "contactor_welded", role=ev.DeviceRole.CONTACTOR))
    tick(rig)
    feed(rig, ev.FaultCleared(1, "contactor1"))  # the next engine has never seen it
    reborn = MonitorEngine(rig.agent, rig.device_model)
    events = reborn.tick()
    assert [(e["component"]["name"], e["actualValue"], e.get("cleared")) for e in events] == [
        ("PowerContactor", "false", True)]


def test_g05_offline_fault_queuing_follows_offline_queuing_severity(rig: Rig) -> None:
    assert rig.call("SetVariables", {"setVariableData": [
        {"component": {"name": "MonitoringCtrlr"}, "variable": {"name": "OfflineQueuingSeverity"},
         "attributeValue": "0"}]})["setVariableResult"][0]["attributeStatus"] == "Accepted"
    feed(rig, ev.FaultRaised(1, "meter1", "timeout", role=ev.DeviceRole.METER))  # severity 1
    tick(rig)
    assert queued_events(rig) == []
    feed(rig, ev.FaultRaised(1, "dc1", "isolation_fault", role=ev.DeviceRole.DC_CONTROLLER))  # severity 0
    tick(rig)
    assert [e["component"]["name"] for e in queued_events(rig)] == ["InsulationMonitor"]
