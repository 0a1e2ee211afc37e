"""OCPP 2.0.1 smart charging (K01-K10) on a real agent and store with two AC EVSEs whose pilot boards record
the current they are told: every answer and every ReportChargingProfiles checked against the official schemas,
and the limits followed down to the hardware."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from agent.clock import iso
from agent.config import parse_config
from agent.core import events as ev
from agent.daemon import wire_services
from agent.hardware import ConnectorDevices, Hardware
from agent.ocpp.library import inline_schema_validation
from agent.ocpp.v201.connection import V201Connection
from agent.ocpp.v201.device_model import DeviceModel
from agent.ocpp.v201.journal import V201Journal
from agent.ocpp.v201.profiles import ProfileError, encode_profile, parse_profile, stored_profiles
from agent.runtime import Agent
from agent.store import Store
from tests.agent.test_runtime_actuation import CountingMeter, RecordingContactor
from tests.agent.test_v201_handlers import Wire, schema

CONFIG = """
[charge_point]
id = "CP-K"
vendor = "Test"
model = "Smart"

[backoffice]
url = "ws://127.0.0.1:9/ocpp"
ocpp_version = "2.0.1"

[state]
directory = "{state}"
"""

CONNECTOR = """
[[connectors]]
id = {cid}
kind = "ac"
max_current_a = 32.0
phases = 3
voltage_v = 230.0
[connectors.meter]
driver = "eastron_sdm630"
url = "tcp://127.0.0.1:{port}"
[connectors.dc_controller]
driver = "modbus_dc"
url = "tcp://127.0.0.1:{port}"
device_id = 2
[connectors.contactor]
driver = "gpio_contactor"
pin = {pin}
"""

T0 = "2024-01-01T00:00:00Z"


class Pilot:
    """An AC pilot board: records the current it is told to offer."""

    def __init__(self) -> None:
        self.limits: list[float] = []

    async def set_limits(self, current_a: float, power_w: float) -> None:
        self.limits.append(current_a)

    async def allow_charging(self, allowed: bool) -> None:
        return None


class AnsweringWire(Wire):
    """The websocket, with a CSMS that answers every CALL of the agent with an empty CALLRESULT."""

    def __init__(self) -> None:
        super().__init__()
        self.route: Any = None

    async def send(self, message: str) -> None:
        await super().send(message)
        frame = json.loads(message)
        if frame[0] == 2 and self.route is not None:
            asyncio.get_running_loop().call_soon(
                lambda: asyncio.ensure_future(self.route(json.dumps([3, frame[1], {}]))))


class Rig:
    """A real agent with two one-connector EVSEs, the 2.0.1 journal and connection, driven frame by frame."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        text = CONFIG.format(state=tmp_path / "state") + "".join(
            CONNECTOR.format(cid=cid, port=9 + cid, pin=21 + cid) for cid in (1, 2))
        cfg = parse_config(text)
        self.store = Store(tmp_path / "agent.db")
        self.pilots = {cid: Pilot() for cid in (1, 2)}
        self.meters = {}
        devices = {}
        for cid in (1, 2):
            contactor = RecordingContactor()
            self.meters[cid] = CountingMeter(contactor)
            devices[cid] = ConnectorDevices(cid, "ac", meter=self.meters[cid],  # type: ignore[arg-type]
                                            contactor=contactor, dc=self.pilots[cid])  # type: ignore[arg-type]
        model = DeviceModel(cfg, self.store)
        self.agent = Agent(cfg, self.store, Hardware(connectors=devices), model, V201Journal(self.store, model),
                           model)
        wire_services(self.agent, model)
        self.wire = AnsweringWire()
        inline_schema_validation()
        self.conn = V201Connection(self.agent, self.wire, device_model=model)
        self.wire.route = self.conn.cp.route_message
        self.loops = [self.loop.create_task(self.agent.actuator_loop(cid)) for cid in (1, 2)]

    def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Route one CALL (checked against the request schema); its CALLRESULT, checked against the response's."""
        jsonschema.validate(payload, schema(f"{action}Request"))
        before = len(self.wire.sent)
        self.loop.run_until_complete(self.conn.cp.route_message(json.dumps([2, "u1", action, payload])))
        self.settle()
        answers = [json.loads(m) for m in self.wire.sent[before:]]
        answers = [a for a in answers if a[0] in (3, 4)]
        assert len(answers) == 1 and answers[0][0] == 3, answers
        jsonschema.validate(answers[0][2], schema(f"{action}Response"))
        return dict(answers[0][2])

    def sent(self, action: str) -> list[dict[str, Any]]:
        """The CALLs of an action the agent sent, each checked against its request schema."""
        calls = [json.loads(m) for m in self.wire.sent]
        payloads = [c[3] for c in calls if c[0] == 2 and c[2] == action]
        for payload in payloads:
            jsonschema.validate(payload, schema(f"{action}Request"))
        return payloads

    def settle(self) -> None:
        self.loop.run_until_complete(asyncio.sleep(0.05))

    def start(self, cid: int) -> str:
        """A remote start and a plug on connector cid: a running transaction; its station transactionId."""
        assert self.call("RequestStartTransaction", {"idToken": {"idToken": f"T{cid}", "type": "Central"},
                                                     "remoteStartId": cid, "evseId": cid})["status"] == "Accepted"
        return self.plug(cid)

    def plug(self, cid: int) -> str:
        """An EV plugged in and ready on connector cid, started: its station transactionId."""
        async def go() -> None:
            reading = await self.meters[cid].read()
            self.agent.connectors[cid].reading = reading
            self.agent.feed(ev.MeterSample(cid, reading.energy_import_wh, 0.0))
            self.agent.feed(ev.PlugChanged(cid, True))
            self.agent.feed(ev.EvReadyChanged(cid, True))

        self.loop.run_until_complete(go())
        self.settle()
        return self.tx_id(cid)

    def tx_id(self, cid: int) -> str:
        session = self.agent.core.session(cid)
        assert session is not None
        row = self.store.transaction(session.local_tx_id)
        assert row is not None and row.station_tx_id
        return row.station_tx_id

    def offered(self, cid: int) -> float:
        """The current the pilot board of connector cid offers now."""
        self.settle()
        return self.pilots[cid].limits[-1]

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


def profile(pid: int, purpose: str, limit: float, *, unit: str = "A", stack: int = 0, kind: str = "Absolute",
            periods: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """A ChargingProfileType: one schedule of one period unless told otherwise."""
    schedule: dict[str, Any] = {"id": pid, "chargingRateUnit": unit,
                                "chargingSchedulePeriod": periods or [{"startPeriod": 0, "limit": limit}]}
    if kind != "Relative":
        schedule["startSchedule"] = T0
    return {"id": pid, "stackLevel": stack, "chargingProfilePurpose": purpose, "chargingProfileKind": kind,
            "chargingSchedule": [schedule], **extra}


def set_profile(rig: Rig, evse_id: int, body: dict[str, Any]) -> dict[str, Any]:
    return rig.call("SetChargingProfile", {"evseId": evse_id, "chargingProfile": body})


# ---- K01 SetChargingProfile ------------------------------------------------------------------------------


def test_k01_a_tx_default_profile_in_watts_reaches_the_pilot_as_amperes_on_three_phases(rig: Rig) -> None:
    rig.start(1)
    assert rig.offered(1) == 32.0  # the connector's configured maximum
    # 6900 W on an AC connector of 3 phases at 230 V: 10 A per phase
    assert set_profile(rig, 1, profile(1, "TxDefaultProfile", 6900.0, unit="W")) == {"status": "Accepted"}
    assert rig.offered(1) == 10.0
    assert rig.agent.core.connectors[1].limit_w is None  # AC: the limit is a current


def test_k01_a_station_max_profile_is_shared_by_two_evses(rig: Rig) -> None:
    rig.start(1)
    rig.start(2)
    assert set_profile(rig, 0, profile(2, "ChargingStationMaxProfile", 40.0))["status"] == "Accepted"
    assert (rig.offered(1), rig.offered(2)) == (20.0, 20.0)  # one limit for the whole station, split evenly
    # the station max caps a higher TxDefaultProfile on one EVSE, the other keeps its share
    assert set_profile(rig, 2, profile(3, "TxDefaultProfile", 8.0))["status"] == "Accepted"
    assert rig.offered(2) == 8.0 and rig.offered(1) == 20.0
    assert set_profile(rig, 1, profile(4, "ChargingStationMaxProfile", 10.0))["statusInfo"]["reasonCode"] == \
        "InvalidValue"  # a station max on an EVSE


def test_k01_tx_profile_needs_the_running_transaction_by_its_station_id(rig: Rig) -> None:
    body = profile(5, "TxProfile", 12.0, transactionId="not-running")
    answer = set_profile(rig, 1, body)
    assert answer["status"] == "Rejected" and answer["statusInfo"]["reasonCode"] == "TxNotFound"
    tx = rig.start(1)
    missing = set_profile(rig, 1, profile(5, "TxProfile", 12.0))
    assert missing["statusInfo"]["reasonCode"] == "MissingParam"  # K01.FR.03
    assert set_profile(rig, 2, profile(5, "TxProfile", 12.0, transactionId=tx))["statusInfo"]["reasonCode"] == \
        "TxNotFound"  # the transaction runs on EVSE 1, not 2
    assert set_profile(rig, 0, profile(5, "TxProfile", 12.0, transactionId=tx))["status"] == "Rejected"
    assert set_profile(rig, 1, profile(5, "TxProfile", 12.0, transactionId=tx))["status"] == "Accepted"
    assert rig.offered(1) == 12.0
    # the TxProfile wins over a TxDefaultProfile at any stack level, and ends with its transaction
    assert set_profile(rig, 1, profile(6, "TxDefaultProfile", 16.0, stack=5))["status"] == "Accepted"
    assert rig.offered(1) == 12.0
    assert rig.call("RequestStopTransaction", {"transactionId": tx})["status"] == "Accepted"
    assert [p.profile_id for p in rig.agent.core.profiles] == [6]


def test_k01_external_constraints_and_unknown_evses_are_refused(rig: Rig) -> None:
    external = set_profile(rig, 0, profile(7, "ChargingStationExternalConstraints", 10.0))
    assert external["status"] == "Rejected" and external["statusInfo"]["reasonCode"] == "InvalidValue"
    assert set_profile(rig, 9, profile(7, "TxDefaultProfile", 10.0))["statusInfo"]["reasonCode"] == "UnknownEvse"
    assert rig.agent.core.profiles == []


@pytest.mark.parametrize(("change", "reason"), [
    ({"chargingProfileKind": "Relative"}, "InvalidSchedule"),  # Relative with startSchedule (K01.FR.41)
    ({"chargingProfileKind": "Recurring"}, "MissingParam"),  # no recurrencyKind
    ({"validFrom": "2024-02-01T00:00:00Z", "validTo": "2024-01-01T00:00:00Z"}, "InvalidValue"),
    ({"chargingSchedule": [{"id": 1, "chargingRateUnit": "A", "startSchedule": T0,
                            "chargingSchedulePeriod": [{"startPeriod": 10, "limit": 6.0}]}]}, "InvalidSchedule"),
    ({"chargingSchedule": [{"id": 1, "chargingRateUnit": "A", "startSchedule": T0,
                            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0},
                                                       {"startPeriod": 0, "limit": 8.0}]}]}, "InvalidSchedule"),
    ({"chargingSchedule": [{"id": 1, "chargingRateUnit": "A",
                            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0}]}]}, "InvalidSchedule"),
    ({"chargingSchedule": [{"id": 1, "chargingRateUnit": "A", "startSchedule": T0,
                            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0, "numberPhases": 1,
                                                        "phaseToUse": 2}]}]}, "InvalidSchedule"),
])
def test_k01_invalid_profiles_are_rejected_with_a_reason(rig: Rig, change: dict[str, Any], reason: str) -> None:
    answer = set_profile(rig, 1, {**profile(8, "TxDefaultProfile", 10.0), **change})
    assert answer["status"] == "Rejected" and answer["statusInfo"]["reasonCode"] == reason, answer
    assert rig.agent.core.profiles == []


def test_k01_smart_charging_ctrlr_limits_are_honoured(rig: Rig) -> None:
    variables = {v["variable"]["name"]: v["attributeValue"] for v in rig.call("GetVariables", {"getVariableData": [
        {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": name, **inst}}
        for name, inst in (("ProfileStackLevel", {}), ("PeriodsPerSchedule", {}),
                           ("Entries", {"instance": "ChargingProfiles"}))]})["getVariableResult"]}
    max_level, max_periods, entries = (int(variables[n]) for n in ("ProfileStackLevel", "PeriodsPerSchedule",
                                                                  "Entries"))
    assert set_profile(rig, 0, profile(1, "TxDefaultProfile", 10.0, stack=max_level + 1))["statusInfo"][
        "reasonCode"] == "InvalidStackLevel"
    too_many = [{"startPeriod": 60 * n, "limit": 10.0} for n in range(max_periods + 1)]
    assert set_profile(rig, 0, profile(1, "TxDefaultProfile", 0, periods=too_many))["statusInfo"][
        "reasonCode"] == "TooManyElements"
    assert set_profile(rig, 0, profile(1, "TxDefaultProfile", 0, periods=too_many[:-1]))["status"] == "Accepted"
    for n in range(2, entries + 1):  # Entries profiles fit (stack levels 0..max_level, two purposes)
        purpose = "TxDefaultProfile" if n <= max_level + 1 else "ChargingStationMaxProfile"
        level = (n - 1) if purpose == "TxDefaultProfile" else n - max_level - 2
        assert set_profile(rig, 0, profile(n, purpose, 30.0, stack=level))["status"] == "Accepted", n
    full = set_profile(rig, 0, profile(entries + 1, "ChargingStationMaxProfile", 30.0, stack=max_level))
    assert full["statusInfo"]["reasonCode"] == "OutOfStorage"
    assert len(rig.agent.core.profiles) == entries


def test_k01_same_purpose_and_stack_level_is_a_duplicate_unless_same_id(rig: Rig) -> None:
    assert set_profile(rig, 1, profile(1, "TxDefaultProfile", 10.0, stack=2))["status"] == "Accepted"
    assert set_profile(rig, 1, profile(2, "TxDefaultProfile", 11.0, stack=2))["statusInfo"]["reasonCode"] == \
        "DuplicateProfile"
    assert set_profile(rig, 0, profile(3, "TxDefaultProfile", 11.0, stack=2))["statusInfo"]["reasonCode"] == \
        "DuplicateProfile"  # a station-wide TxDefaultProfile at the stack level of an EVSE one
    assert set_profile(rig, 1, profile(1, "TxDefaultProfile", 9.0, stack=2))["status"] == "Accepted"  # replaced
    assert [(p.profile_id, p.schedule.periods[0].limit) for p in rig.agent.core.profiles] == [(1, 9.0)]


def test_k01_three_schedules_the_first_applies_all_are_reported(rig: Rig) -> None:
    rig.start(1)
    body = profile(1, "TxDefaultProfile", 0)
    body["chargingSchedule"] = [
        {"id": 10 + n, "chargingRateUnit": "A", "startSchedule": T0,
         "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]} for n, limit in enumerate((14.0, 6.0, 20.0))]
    assert set_profile(rig, 1, body)["status"] == "Accepted"
    assert rig.offered(1) == 14.0
    assert rig.call("GetChargingProfiles", {"requestId": 4, "chargingProfile": {}})["status"] == "Accepted"
    [report] = rig.sent("ReportChargingProfiles")
    assert [s["id"] for s in report["chargingProfile"][0]["chargingSchedule"]] == [10, 11, 12]


def test_k01_valid_from_to_and_recurring_daily_schedule(rig: Rig) -> None:
    rig.start(1)
    now = rig.agent.now()
    later = profile(1, "TxDefaultProfile", 8.0, stack=1, validFrom=iso(now + 3600))
    assert set_profile(rig, 1, later)["status"] == "Accepted"
    assert rig.offered(1) == 32.0  # not valid yet
    # a daily schedule that started at the last midnight: 7 A for the whole day
    midnight = iso(now - now % 86400)
    daily = profile(2, "TxDefaultProfile", 7.0, stack=2, kind="Recurring", recurrencyKind="Daily")
    daily["chargingSchedule"][0]["startSchedule"] = midnight
    assert set_profile(rig, 1, daily)["status"] == "Accepted"
    assert rig.offered(1) == 7.0
    expired = profile(3, "TxDefaultProfile", 6.0, stack=3, validFrom=iso(now - 7200), validTo=iso(now - 3600))
    assert set_profile(rig, 1, expired)["status"] == "Accepted"
    assert rig.offered(1) == 7.0


def test_k01_profiles_survive_a_restart_through_the_store(rig: Rig) -> None:
    assert set_profile(rig, 0, profile(1, "ChargingStationMaxProfile", 30.0))["status"] == "Accepted"
    assert set_profile(rig, 2, profile(2, "TxDefaultProfile", 3450.0, unit="W"))["status"] == "Accepted"
    restored = sorted(stored_profiles(rig.store), key=lambda p: p.profile_id)
    assert restored == sorted(rig.agent.core.profiles, key=lambda p: p.profile_id)
    assert [p.connector_id for p in restored] == [0, 2]


# ---- K05 RequestStartTransaction with a TxProfile -----------------------------------------------------------


def test_k05_request_start_with_a_tx_profile_limits_the_transaction(rig: Rig) -> None:
    body = profile(9, "TxProfile", 5520.0, unit="W", kind="Relative")
    answer = rig.call("RequestStartTransaction", {"idToken": {"idToken": "K5", "type": "Central"},
                                                  "remoteStartId": 55, "evseId": 1, "chargingProfile": body})
    assert answer["status"] == "Accepted"
    rig.plug(1)  # the plug-in starts the transaction, with its TxProfile
    assert rig.offered(1) == 8.0  # 5520 W / (230 V x 3)
    assert rig.call("GetChargingProfiles", {"requestId": 1, "evseId": 1,
                                            "chargingProfile": {"chargingProfilePurpose": "TxProfile"}})[
        "status"] == "Accepted"
    [report] = rig.sent("ReportChargingProfiles")
    assert report["chargingProfile"][0]["transactionId"] == rig.tx_id(1)  # named once the transaction runs


def test_k05_request_start_with_an_invalid_profile_is_rejected(rig: Rig) -> None:
    for body in (profile(9, "TxDefaultProfile", 10.0),  # not a TxProfile
                 profile(9, "TxProfile", 10.0, transactionId="x")):  # no transaction exists yet
        answer = rig.call("RequestStartTransaction", {"idToken": {"idToken": "K5", "type": "Central"},
                                                      "remoteStartId": 56, "evseId": 1, "chargingProfile": body})
        assert answer["status"] == "Rejected" and answer["statusInfo"]["reasonCode"] == "InvalidValue"
    no_evse = rig.call("RequestStartTransaction", {"idToken": {"idToken": "K5", "type": "Central"},
                                                   "remoteStartId": 57,
                                                   "chargingProfile": profile(9, "TxProfile", 10.0)})
    assert no_evse["status"] == "Rejected"  # two EVSEs: the profile could not follow the start
    assert rig.agent.core.session(1) is None and rig.agent.core.connectors[1].auth is None


# ---- K09 GetChargingProfiles ---------------------------------------------------------------------------------


def test_k09_get_charging_profiles_by_criteria_reports_per_evse(rig: Rig) -> None:
    set_profile(rig, 0, profile(1, "ChargingStationMaxProfile", 40.0))
    set_profile(rig, 1, profile(2, "TxDefaultProfile", 10.0, stack=1))
    set_profile(rig, 2, profile(3, "TxDefaultProfile", 12.0, stack=2))
    assert rig.call("GetChargingProfiles", {"requestId": 7, "chargingProfile": {}})["status"] == "Accepted"
    reports = rig.sent("ReportChargingProfiles")
    assert [(r["evseId"], [p["id"] for p in r["chargingProfile"]], r["tbc"]) for r in reports] == [
        (0, [1], True), (1, [2], True), (2, [3], False)]
    assert all(r["requestId"] == 7 and r["chargingLimitSource"] == "CSO" for r in reports)
    assert reports[1]["chargingProfile"][0] == profile(2, "TxDefaultProfile", 10.0, stack=1)  # as received

    def ids(request: dict[str, Any]) -> list[int]:
        before = len(rig.sent("ReportChargingProfiles"))
        answer = rig.call("GetChargingProfiles", {"requestId": 8, **request})
        got = [p["id"] for r in rig.sent("ReportChargingProfiles")[before:] for p in r["chargingProfile"]]
        assert (answer["status"] == "Accepted") == bool(got)
        return got

    assert ids({"evseId": 0, "chargingProfile": {}}) == [1]
    assert ids({"chargingProfile": {"chargingProfilePurpose": "TxDefaultProfile"}}) == [2, 3]
    assert ids({"chargingProfile": {"stackLevel": 2}}) == [3]
    assert ids({"chargingProfile": {"chargingProfileId": [1, 3, 99]}}) == [1, 3]
    assert ids({"chargingProfile": {"chargingLimitSource": ["CSO"]}}) == [1, 2, 3]
    assert ids({"chargingProfile": {"chargingLimitSource": ["EMS", "SO"]}}) == []
    assert ids({"evseId": 5, "chargingProfile": {}}) == []
    answer = rig.call("GetChargingProfiles", {"requestId": 9, "chargingProfile": {"stackLevel": 7}})
    assert answer["status"] == "NoProfiles"


# ---- K10 ClearChargingProfile --------------------------------------------------------------------------------


def test_k10_clear_by_id_and_by_criteria_restores_the_current(rig: Rig) -> None:
    rig.start(1)
    rig.start(2)
    set_profile(rig, 0, profile(1, "ChargingStationMaxProfile", 20.0))
    set_profile(rig, 1, profile(2, "TxDefaultProfile", 8.0, stack=1))
    set_profile(rig, 2, profile(3, "TxDefaultProfile", 9.0, stack=1))
    assert (rig.offered(1), rig.offered(2)) == (8.0, 9.0)
    assert rig.call("ClearChargingProfile", {"chargingProfileId": 42})["status"] == "Unknown"
    assert rig.call("ClearChargingProfile", {"chargingProfileId": 2})["status"] == "Accepted"
    assert rig.offered(1) == 10.0  # back to its share of the station max
    assert rig.call("ClearChargingProfile", {"chargingProfileCriteria": {"evseId": 1}})["status"] == "Unknown"
    assert rig.call("ClearChargingProfile", {"chargingProfileCriteria": {
        "evseId": 2, "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 1}})["status"] == "Accepted"
    assert rig.call("ClearChargingProfile", {"chargingProfileCriteria": {
        "chargingProfilePurpose": "ChargingStationMaxProfile"}})["status"] == "Accepted"
    assert (rig.offered(1), rig.offered(2)) == (32.0, 32.0)
    assert rig.agent.core.profiles == [] and rig.store.profiles() == []
    assert rig.call("ClearChargingProfile", {"chargingProfileCriteria": {
        "chargingProfilePurpose": "ChargingStationExternalConstraints"}})["status"] == "Unknown"


# ---- K08 GetCompositeSchedule -------------------------------------------------------------------------------


def test_k08_composite_schedule_per_evse_in_a_and_w_and_the_station_total(rig: Rig) -> None:
    rig.start(1)
    start = rig.agent.now()
    periods = [{"startPeriod": 0, "limit": 16.0}, {"startPeriod": 600, "limit": 10.0}]
    body = profile(1, "TxDefaultProfile", 0, periods=periods)
    body["chargingSchedule"][0]["startSchedule"] = iso(start - 1)
    set_profile(rig, 1, body)
    set_profile(rig, 0, profile(2, "ChargingStationMaxProfile", 40.0))
    answer = rig.call("GetCompositeSchedule", {"duration": 3600, "evseId": 1, "chargingRateUnit": "A"})
    schedule = answer["schedule"]
    assert answer["status"] == "Accepted" and schedule["evseId"] == 1 and schedule["duration"] == 3600
    assert [(p["startPeriod"] // 10, p["limit"]) for p in schedule["chargingSchedulePeriod"]] == [
        (0, 16.0), (59, 10.0)]
    watts = rig.call("GetCompositeSchedule", {"duration": 60, "evseId": 1, "chargingRateUnit": "W"})["schedule"]
    assert watts["chargingSchedulePeriod"][0]["limit"] == 16.0 * 230.0 * 3
    total = rig.call("GetCompositeSchedule", {"duration": 60, "evseId": 0})["schedule"]
    assert total["chargingRateUnit"] == "A" and total["chargingSchedulePeriod"][0]["limit"] == 40.0
    unknown = rig.call("GetCompositeSchedule", {"duration": 60, "evseId": 3})
    assert unknown["status"] == "Rejected" and unknown["statusInfo"]["reasonCode"] == "UnknownEvse"


def test_k08_station_total_without_a_station_max_is_every_evse_together(rig: Rig) -> None:
    set_profile(rig, 2, profile(1, "TxDefaultProfile", 10.0))
    total = rig.call("GetCompositeSchedule", {"duration": 60, "evseId": 0})["schedule"]
    assert total["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 42.0}]  # 32 A + 10 A


# ---- the codec -------------------------------------------------------------------------------------------------


def test_codec_round_trip_and_hostile_input() -> None:
    body = profile(1, "ChargingStationMaxProfile", 11000.0, unit="W", stack=3, validTo="2030-01-01T00:00:00Z")
    parsed = parse_profile(body)
    assert parse_profile(encode_profile(parsed)) == parsed
    jsonschema.validate({"requestId": 1, "chargingLimitSource": "CSO", "evseId": 0,
                         "chargingProfile": [encode_profile(parsed)]}, schema("ReportChargingProfilesRequest"))
    for bad in ({}, {"id": True, "stackLevel": 0}, {**body, "stackLevel": -1}, {**body, "chargingSchedule": "x"},
                {**body, "chargingSchedule": [body["chargingSchedule"][0]] * 4},
                {**body, "chargingProfileKind": "Relative"}, {**body, "validTo": "yesterday"},
                {**body, "chargingSchedule": [{**body["chargingSchedule"][0], "chargingRateUnit": "kW"}]},
                {**body, "chargingSchedule": [{**body["chargingSchedule"][0], "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": float("nan")}]}]}):
        with pytest.raises(ProfileError):
            parse_profile(bad)


def test_codec_reads_the_librarys_decimal_numbers() -> None:
    from decimal import Decimal

    from agent.ocpp.v201.profiles import wire_form
    raw = wire_form({"id": 1, "stack_level": 0, "charging_profile_purpose": "TxDefaultProfile",
                     "charging_profile_kind": "Absolute",
                     "charging_schedule": [{"id": 1, "charging_rate_unit": "A", "start_schedule": T0,
                                            "charging_schedule_period": [{"start_period": 0,
                                                                          "limit": Decimal("7.5")}]}]})
    assert json.loads(json.dumps(raw))["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"] == 7.5
    assert parse_profile(raw).schedule.periods[0].limit == 7.5
