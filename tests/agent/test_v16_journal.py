"""The OCPP 1.6 journal on a real store: the messages a transaction becomes, and what an answer confirms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.core.events import StopReason
from agent.metering import Sample
from agent.ocpp.v16.journal import TX_ID_UNKNOWN, V16Journal
from agent.ports import SampleTrigger, Stamp, TxStarted, TxStopped
from agent.settings import Settings
from agent.store import Store
from drivers.base import MeterReading

T0 = 1_700_000_000.0
STAMP = Stamp(T0, 10.0, True)


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


def journal(tmp_path: Path, **settings: Any) -> tuple[V16Journal, Store]:
    store = Store(tmp_path / "agent.db")
    return V16Journal(store, FixedSettings(Settings(**settings))), store


def sample(wh: float, power_w: float = 7000.0) -> Sample:
    return Sample(MeterReading(energy_import_wh=wh, power_w=power_w), offered_a=16.0)


def start(j: V16Journal, store: Store, meter_wh: float = 1234.9) -> int:
    tx = store.reserve_tx_id(T0, 10.0)
    j.started(TxStarted(tx, 1, "CARD", meter_wh, T0, reservation_id=7), STAMP)
    return tx


def test_a_transaction_becomes_start_meter_values_and_stop_with_its_data(tmp_path: Path) -> None:
    j, store = journal(tmp_path, sampled_measurands=("Energy.Active.Import.Register", "Power.Active.Import"),
                       ended_sampled_measurands=("Energy.Active.Import.Register",))
    tx = start(j, store)
    assert j.sample(tx, 1, sample(1300.0), SampleTrigger.PERIODIC, T0 + 60, STAMP)
    j.keep_for_end(tx, sample(1300.0), SampleTrigger.PERIODIC, T0 + 60, STAMP)
    j.stopped(TxStopped(tx, 1, 1500.6, T0 + 120, StopReason.LOCAL, "CARD", sample(1500.6)), STAMP)
    start_msg, mv, stop = store.pending()
    assert (start_msg.action, start_msg.payload) == ("StartTransaction", {
        "connectorId": 1, "idTag": "CARD", "meterStart": 1234, "timestamp": "2023-11-14T22:13:20.000Z",
        "reservationId": 7})
    assert mv.action == "MeterValues" and mv.payload["transactionId"] == 0
    assert [v["measurand"] for v in mv.payload["meterValue"][0]["sampledValue"]] == [
        "Energy.Active.Import.Register", "Power.Active.Import"]
    assert mv.payload["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Periodic"
    assert stop.action == "StopTransaction" and stop.payload["meterStop"] == 1500  # billed: rounded down
    assert stop.payload["reason"] == "Local" and stop.payload["idTag"] == "CARD"
    contexts = [d["sampledValue"][0]["context"] for d in stop.payload["transactionData"]]
    assert contexts == ["Sample.Periodic", "Transaction.End"]
    assert all(m.protocol == "1.6" for m in (start_msg, mv, stop))


def test_nothing_is_queued_when_the_measurands_give_no_value(tmp_path: Path) -> None:
    j, store = journal(tmp_path, sampled_measurands=("SoC",))  # the sample has no SoC
    tx = start(j, store)
    assert not j.sample(tx, 1, sample(1300.0), SampleTrigger.PERIODIC, T0 + 60, STAMP)
    assert [m.action for m in store.pending()] == ["StartTransaction"]


def test_the_start_answer_gives_the_queued_messages_their_transaction_id(tmp_path: Path) -> None:
    j, store = journal(tmp_path)
    tx = start(j, store)
    j.sample(tx, 1, sample(1300.0), SampleTrigger.CLOCK, T0 + 60, STAMP)
    head = store.peek()
    assert head is not None
    j.confirm(head, {"transactionId": 88, "idTagInfo": {"status": "Accepted"}})
    j.stopped(TxStopped(tx, 1, 1400.0, T0 + 120, StopReason.REMOTE), STAMP)  # queued after the answer
    assert [(m.action, m.payload["transactionId"]) for m in store.pending()] == [
        ("MeterValues", 88), ("StopTransaction", 88)]


def test_a_start_that_dies_gives_minus_one_and_so_does_an_answer_without_an_id(tmp_path: Path) -> None:
    j, store = journal(tmp_path)
    tx = start(j, store)
    head = store.peek()
    assert head is not None and j.id_when_dead(head) == TX_ID_UNKNOWN
    j.confirm(head, {"idTagInfo": {"status": "Accepted"}})  # a broken answer: logged, the message is gone
    # the later messages must not wait for ever for an id that will not come: the errata's -1, as for a dead start
    assert store.transaction_id_for(tx) == TX_ID_UNKNOWN and store.pending_count() == 0
    j.sample(tx, 1, sample(1300.0), SampleTrigger.TRIGGER, T0 + 60, STAMP)
    queued = store.peek()
    assert queued is not None and j.id_when_dead(queued) is None
    assert queued.payload["transactionId"] == TX_ID_UNKNOWN
