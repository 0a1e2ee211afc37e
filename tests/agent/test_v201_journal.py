"""The OCPP 2.0.1 journal on a real store: TransactionEvent payloads against the official schemas, seqNo
without gaps across restarts, the offline flag, stoppedReason per StopReason, what may be thinned."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from agent.core import events as ev
from agent.core.events import StopReason
from agent.metering import Sample
from agent.ocpp.v201.journal import ENDED, V201Journal
from agent.ports import SampleTrigger, Stamp, TxStarted, TxStopped
from agent.settings import Settings
from agent.store import Store
from drivers.base import MeterReading

T0 = 1_700_000_000.0
STAMP = Stamp(T0, 10.0, True)
OFFLINE = Stamp(T0, 10.0, True, offline=True)


def schema(action: str) -> dict[str, Any]:
    """The official 2.0.1 request schema the `ocpp` library ships."""
    text = resources.files("ocpp.v201").joinpath("schemas", f"{action}Request.json").read_text()
    return dict(json.loads(text))


def valid(payload: dict[str, Any], action: str = "TransactionEvent") -> dict[str, Any]:
    jsonschema.validate(payload, schema(action))
    return payload


class FixedSettings:
    """A SettingsSource that never changes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def current(self) -> Settings:
        return self.settings

    def subscribe(self, listener: Any) -> None:
        pass

    def add_measurand_check(self, check: Any) -> None:
        pass


def journal(path: Path, **settings: Any) -> tuple[V201Journal, Store]:
    store = Store(path / "agent.db")
    return V201Journal(store, FixedSettings(Settings(**settings))), store


def sample(wh: float, power_w: float = 7000.0) -> Sample:
    return Sample(MeterReading(energy_import_wh=wh, power_w=power_w, current_a=(16.0, 16.1, 15.9)), offered_a=16.0)


def start(j: V201Journal, store: Store, stamp: Stamp = STAMP, meter_wh: float = 1234.9) -> int:
    tx = store.reserve_tx_id(T0, 10.0)
    j.started(TxStarted(tx, 1, "CARD", meter_wh, T0), stamp)
    return tx


def events(store: Store) -> list[dict[str, Any]]:
    return [valid(m.payload) for m in store.pending()]


def test_e01_a_transaction_becomes_started_updated_ended(tmp_path: Path) -> None:
    j, store = journal(tmp_path, sampled_measurands=("Energy.Active.Import.Register", "Power.Active.Import",
                                                     "Current.Import"),
                       ended_sampled_measurands=("Energy.Active.Import.Register", "Power.Active.Import"))
    j.session_event(ev.EvConnected(1, T0 - 5), STAMP)
    j.session_event(ev.Authorized(1, "CARD", ev.AuthSource.CARD, T0), STAMP)
    tx = start(j, store)
    j.session_event(ev.EnergyTransferStarted(1, tx, T0 + 1), STAMP)
    assert j.sample(tx, 1, sample(1300.0), SampleTrigger.PERIODIC, T0 + 60, STAMP)
    j.keep_for_end(tx, sample(1300.0), SampleTrigger.PERIODIC, T0 + 60, STAMP)
    j.stopped(TxStopped(tx, 1, 1500.6, T0 + 120, StopReason.LOCAL, "CARD", sample(1500.6)), STAMP)
    started, charging, periodic, ended = events(store)
    station_id = store.transaction(tx).station_tx_id  # type: ignore[union-attr]
    assert started == {
        "eventType": "Started", "timestamp": "2023-11-14T22:13:20.000Z", "triggerReason": "Authorized",
        "seqNo": 0, "transactionInfo": {"transactionId": station_id, "chargingState": "EVConnected"},
        "evse": {"id": 1, "connectorId": 1}, "idToken": {"idToken": "CARD", "type": "ISO14443"},
        "meterValue": [{"timestamp": "2023-11-14T22:13:20.000Z", "sampledValue": [
            {"value": 1234, "context": "Transaction.Begin", "measurand": "Energy.Active.Import.Register",
             "location": "Outlet", "unitOfMeasure": {"unit": "Wh", "multiplier": 0}}]}]}
    assert (charging["triggerReason"], charging["transactionInfo"]["chargingState"]) == (
        "ChargingStateChanged", "Charging")
    assert periodic["triggerReason"] == "MeterValuePeriodic"
    values = periodic["meterValue"][0]["sampledValue"]
    assert {v["context"] for v in values} == {"Sample.Periodic"}
    assert [(v["measurand"], v.get("phase")) for v in values] == [
        ("Energy.Active.Import.Register", None), ("Power.Active.Import", None), ("Current.Import", "L1"),
        ("Current.Import", "L2"), ("Current.Import", "L3")]
    assert values[0]["value"] == 1300 and values[1]["value"] == 7000.0
    assert ended["eventType"] == "Ended" and ended["triggerReason"] == "StopAuthorized"
    assert ended["transactionInfo"] == {"transactionId": station_id, "stoppedReason": "Local"}
    assert ended["idToken"] == {"idToken": "CARD", "type": "ISO14443"}
    kept, end = ended["meterValue"]
    assert kept["sampledValue"][0]["context"] == "Sample.Periodic"
    assert [(v["measurand"], v["value"], v["context"]) for v in end["sampledValue"]] == [
        ("Energy.Active.Import.Register", 1500, "Transaction.End"),
        ("Power.Active.Import", 7000.0, "Transaction.End")]
    assert [e["seqNo"] for e in (started, charging, periodic, ended)] == [0, 1, 2, 3]
    assert {m.protocol for m in store.pending()} == {"2.0.1"}


def test_e02_cable_plugin_first_starts_on_the_authorization(tmp_path: Path) -> None:
    j, store = journal(tmp_path)
    j.session_event(ev.EvConnected(1, T0 - 5), STAMP)
    j.session_event(ev.Authorized(1, "CARD", ev.AuthSource.CARD, T0), STAMP)
    start(j, store)
    assert events(store)[0]["triggerReason"] == "Authorized"


def test_e03_id_first_starts_on_the_plug_in(tmp_path: Path) -> None:
    j, store = journal(tmp_path)
    j.session_event(ev.Authorized(None, "CARD", ev.AuthSource.CARD, T0 - 5), STAMP)
    j.session_event(ev.EvConnected(1, T0), STAMP)
    start(j, store)
    assert events(store)[0]["triggerReason"] == "CablePluggedIn"


def test_f01_remote_start_names_a_central_token(tmp_path: Path) -> None:
    j, store = journal(tmp_path)
    j.session_event(ev.EvConnected(1, T0 - 5), STAMP)
    j.session_event(ev.Authorized(1, "REMOTE1", ev.AuthSource.REMOTE, T0), STAMP)
    tx = store.reserve_tx_id(T0, 10.0)
    j.started(TxStarted(tx, 1, "REMOTE1", 0.0, T0), STAMP)
    started = events(store)[0]
    assert started["triggerReason"] == "RemoteStart"
    assert started["idToken"] == {"idToken": "REMOTE1", "type": "Central"}


def test_an_authorization_after_the_start_is_an_updated_event(tmp_path: Path) -> None:
    j, store = journal(tmp_path)
    tx = start(j, store)  # TxStartPoint EVConnected: started before the card
    j.session_event(ev.Authorized(1, "CARD2", ev.AuthSource.CARD, T0 + 5), STAMP)
    updated = events(store)[1]
    assert updated["triggerReason"] == "Authorized" and updated["idToken"]["idToken"] == "CARD2"
    assert store.transaction(tx) is not None


def test_e04_seq_no_has_no_gap_and_continues_after_reopening_the_store(tmp_path: Path) -> None:
    j, store = journal(tmp_path)
    tx = start(j, store)
    for i in range(3):
        assert j.sample(tx, 1, sample(1300.0 + i), SampleTrigger.PERIODIC, T0 + 60 * (i + 1), STAMP)
    store.ack(store.pending()[0].id)  # answered messages are gone: the count must not come from the queue
    store.close()
    j2, store2 = journal(tmp_path)
    j2.session_event(ev.EnergyTransferSuspended(1, tx, ev.SuspendedBy.EV, T0 + 300), STAMP)
    assert j2.sample(tx, 1, sample(1400.0), SampleTrigger.CLOCK, T0 + 900, STAMP)
    j2.stopped(TxStopped(tx, 1, 1500.0, T0 + 1000, StopReason.REMOTE), STAMP)
    seq = [e["seqNo"] for e in events(store2)]
    assert seq == [1, 2, 3, 4, 5, 6]
    # a second transaction counts from 0 again
    tx2 = start(j2, store2)
    assert [m.payload["seqNo"] for m in store2.pending() if m.tx_local_id == tx2] == [0]


def test_e04_seq_no_is_not_taken_when_the_commit_fails(tmp_path: Path) -> None:
    j, store = journal(tmp_path)
    tx = start(j, store)
    with pytest.raises(TypeError):  # the payload fails inside the commit that takes the number: rolled back
        store.enqueue("TransactionEvent", {"bad": object()}, tx_local_id=tx,
                      wall_time=T0, monotonic=1.0, clock_trusted=True, protocol="2.0.1", seq_field="seqNo")
    assert j.sample(tx, 1, sample(1300.0), SampleTrigger.PERIODIC, T0 + 60, STAMP)
    assert [e["seqNo"] for e in events(store)] == [0, 1]


def test_e11_events_recorded_offline_carry_the_offline_flag(tmp_path: Path) -> None:
    j, store = journal(tmp_path)
    tx = start(j, store, OFFLINE)
    j.sample(tx, 1, sample(1300.0), SampleTrigger.PERIODIC, T0 + 60, STAMP)
    j.stopped(TxStopped(tx, 1, 1500.0, T0 + 120, StopReason.EV_DISCONNECTED), OFFLINE)
    started, periodic, ended = events(store)
    assert started["offline"] is True and "offline" not in periodic and ended["offline"] is True


@pytest.mark.parametrize("reason", list(StopReason))
def test_e06_stopped_reason_per_stop_reason(tmp_path: Path, reason: StopReason) -> None:
    j, store = journal(tmp_path)
    tx = start(j, store)
    j.stopped(TxStopped(tx, 1, 1500.0, T0 + 120, reason, "CARD"), STAMP)
    ended = events(store)[-1]
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == ENDED[reason]
    assert ended["meterValue"][-1]["sampledValue"][0]["value"] == 1500


def test_only_periodic_and_clock_updates_are_thinnable(tmp_path: Path) -> None:
    j, store = journal(tmp_path)
    tx = start(j, store)
    j.session_event(ev.EnergyTransferStarted(1, tx, T0 + 1), STAMP)
    for trigger in (SampleTrigger.PERIODIC, SampleTrigger.CLOCK, SampleTrigger.TRIGGER):
        assert j.sample(tx, 1, sample(1300.0), trigger, T0 + 60, STAMP)
    assert not j.sample(tx, 1, sample(1300.0), SampleTrigger.BEGIN, T0, STAMP)  # in the Started event
    j.stopped(TxStopped(tx, 1, 1500.0, T0 + 120, StopReason.LOCAL), STAMP)
    with store._read() as conn:
        rows = conn.execute("SELECT json_extract(payload, '$.triggerReason'), thinnable FROM outbox ORDER BY id")
        assert [(r[0], bool(r[1])) for r in rows] == [
            ("Authorized", False), ("ChargingStateChanged", False), ("MeterValuePeriodic", True),
            ("MeterValueClock", True), ("Trigger", False), ("StopAuthorized", False)]


def test_e10_an_unplug_that_stops_reports_only_the_ended_event(tmp_path: Path) -> None:
    j, store = journal(tmp_path)
    tx = start(j, store)
    store.decide_stop(tx, StopReason.EV_DISCONNECTED.value, T0 + 60)  # the core decided the stop first
    j.session_event(ev.EvDisconnected(1, T0 + 60, tx), STAMP)
    j.stopped(TxStopped(tx, 1, 1500.0, T0 + 61, StopReason.EV_DISCONNECTED), STAMP)
    assert [e["eventType"] for e in events(store)] == ["Started", "Ended"]
    assert events(store)[-1]["triggerReason"] == "EVCommunicationLost"


def test_suspensions_and_deauthorization_set_the_charging_state(tmp_path: Path) -> None:
    j, store = journal(tmp_path)
    tx = start(j, store)
    j.session_event(ev.EnergyTransferSuspended(1, tx, ev.SuspendedBy.EVSE, T0 + 1), STAMP)
    j.session_event(ev.EnergyTransferResumed(1, tx, T0 + 2), STAMP)
    j.session_event(ev.EvDisconnected(1, T0 + 3, tx), STAMP)
    j.session_event(ev.EvConnected(1, T0 + 4, tx), STAMP)
    j.session_event(ev.Deauthorized(1, tx, "CARD", T0 + 5), STAMP)
    got = [(e["triggerReason"], e["transactionInfo"].get("chargingState")) for e in events(store)[1:]]
    assert got == [("ChargingStateChanged", "SuspendedEVSE"), ("ChargingStateChanged", "Charging"),
                   ("EVCommunicationLost", "Idle"), ("CablePluggedIn", "EVConnected"),
                   ("Deauthorized", "SuspendedEVSE")]


def test_answers_are_acked_without_rewriting_and_dead_events_name_no_id(tmp_path: Path) -> None:
    j, store = journal(tmp_path)
    start(j, store)
    msg = store.pending()[0]
    assert j.id_when_dead(msg) is None
    j.confirm(msg, {"idTokenInfo": {"status": "Accepted"}})
    assert store.pending() == []


def test_j02_the_started_event_carries_the_tx_started_measurands(tmp_path: Path) -> None:
    j, store = journal(tmp_path, started_measurands=("Energy.Active.Import.Register", "Power.Active.Import",
                                                     "Current.Import"))
    tx = store.reserve_tx_id(T0, 10.0)
    j.started(TxStarted(tx, 1, "CARD", 1234.9, T0, begin=sample(1300.0, power_w=6900.0)), STAMP)
    (started,) = events(store)
    values = started["meterValue"][0]["sampledValue"]
    energy = [v for v in values if v.get("measurand", "Energy.Active.Import.Register") ==
              "Energy.Active.Import.Register"]
    # the register is meterStart itself (what the bill starts from), not the sample's
    assert [v["value"] for v in energy] == [1234]
    assert {v["measurand"] for v in values if "measurand" in v} >= {"Power.Active.Import", "Current.Import"}
    power = next(v for v in values if v.get("measurand") == "Power.Active.Import")
    assert power["value"] == 6900 and power["context"] == "Transaction.Begin"


def test_j02_only_the_energy_register_without_a_begin_sample(tmp_path: Path) -> None:
    j, store = journal(tmp_path, started_measurands=("Energy.Active.Import.Register", "Power.Active.Import"))
    start(j, store)
    (started,) = events(store)
    assert len(started["meterValue"][0]["sampledValue"]) == 1
