"""Signed data sets in the store and in both journals: kept byte for byte, carried as the application note says."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from agent.core.events import StopReason
from agent.metering import Sample, SignedValue
from agent.ocpp.signed import KEY_PREFIX, decode, signed_meter_value
from agent.ocpp.v16.journal import V16Journal
from agent.ocpp.v201.journal import V201Journal
from agent.ports import SampleTrigger, Stamp, TxStarted, TxStopped
from agent.settings import Settings
from agent.store import Store
from drivers.base import MeterReading
from tests.agent.test_v16_journal import FixedSettings

T0 = 1_700_000_000.0
STAMP = Stamp(T0, 10.0, True)
KEY = "3059301306072A8648CE3D020106082A8648CE3D03010703420004" + "AB" * 64
# not a real signature: these tests check that the text travels unchanged (the integration tests verify real ones)
BEGIN = SignedValue('OCMF|{"FV":"1.0","RD":[{"TX":"B","RV":1.234}]}|{"SA":"ECDSA-secp256r1-SHA256","SD":"30"}',
                    "OCMF", "ECDSA-secp256r1-SHA256", KEY, begin_wh=1234.0)
END = SignedValue('OCMF|{"FV":"1.0","RD":[{"TX":"B","RV":1.234},{"TX":"E","RV":2.5}]}|{"SA":"ECDSA-secp256r1-SHA256",'
                  '"SD":"31"}', "OCMF", "ECDSA-secp256r1-SHA256", KEY, begin_wh=1234.0, end_wh=2500.0)


def sample(wh: float, signed: SignedValue | None = None) -> Sample:
    return Sample(MeterReading(energy_import_wh=wh), offered_a=100.0, signed=signed)


def test_the_store_keeps_the_legal_transaction_and_its_data_sets_across_a_reopen(tmp_path: Path) -> None:
    with Store(tmp_path / "agent.db") as store:
        tx = store.reserve_tx_id(T0, 1.0)
        store.signed_legal_begin(tx, 1, "abc", T0)
        legal = store.signed_legal(tx)
        assert legal is not None and (legal.connector_id, legal.meter_tx_id, legal.begun, legal.ended) == (
            1, "abc", False, False)
        assert [r.tx_local_id for r in store.signed_legal_open()] == [tx]
        store.signed_put(tx, "begin", BEGIN, T0)
    with Store(tmp_path / "agent.db") as store:
        assert store.signed_get(tx, "begin") == BEGIN
        store.signed_put(tx, "end", END, T0 + 60)
        store.signed_put(tx, "end", BEGIN, T0 + 61)  # the first end stays
        assert store.signed_get(tx, "end") == END
        assert store.signed_legal_open() == []
        store.signed_forget(tx)
        assert store.signed_legal(tx) is None and store.signed_get(tx, "begin") is None


def test_the_note_encoding_round_trips_the_exact_bytes() -> None:
    obj = signed_meter_value(END)
    assert obj is not None and obj["encodingMethod"] == "OCMF" and obj["signingMethod"] == ""
    assert base64.b64decode(obj["publicKey"]).decode() == KEY_PREFIX + KEY
    assert decode(obj) == (END.data, KEY)
    too_long = SignedValue("OCMF|" + "x" * 2000 + "|{}", "OCMF", "", KEY)
    assert signed_meter_value(too_long) is None  # over 2.0.1's 2500 characters: never cut, never sent broken


def test_v16_begin_meter_values_and_stop_transaction_data_carry_signed_data(tmp_path: Path) -> None:
    store = Store(tmp_path / "agent.db")
    j = V16Journal(store, FixedSettings(Settings(sampled_measurands=("Energy.Active.Import.Register",))))
    tx = store.reserve_tx_id(T0, 10.0)
    j.started(TxStarted(tx, 1, "CARD", 1234.0, T0, signed=BEGIN), STAMP)
    assert j.sample(tx, 1, sample(1234.0, BEGIN), SampleTrigger.BEGIN, T0, STAMP)
    j.stopped(TxStopped(tx, 1, 2500.0, T0 + 60, StopReason.LOCAL, "CARD", sample(2500.0), END), STAMP)
    _, begin, stop = store.pending()
    signed = [v for v in begin.payload["meterValue"][0]["sampledValue"] if v["format"] == "SignedData"]
    assert len(signed) == 1 and signed[0]["context"] == "Transaction.Begin"
    assert decode(json.loads(signed[0]["value"])) == (BEGIN.data, KEY)
    data = [v for mv in stop.payload["transactionData"] for v in mv["sampledValue"] if v["format"] == "SignedData"]
    assert len(data) == 1 and data[0]["context"] == "Transaction.End"
    assert decode(json.loads(data[0]["value"])) == (END.data, KEY)
    assert stop.payload["meterStop"] == 2500


def test_v201_started_and_ended_carry_signed_meter_value_on_the_energy_register(tmp_path: Path) -> None:
    store = Store(tmp_path / "agent.db")
    j = V201Journal(store, FixedSettings(Settings()))
    tx = store.reserve_tx_id(T0, 10.0)
    j.started(TxStarted(tx, 1, "CARD", 1234.0, T0, signed=BEGIN), STAMP)
    assert not j.sample(tx, 1, sample(1234.0, BEGIN), SampleTrigger.BEGIN, T0, STAMP)  # it rides in Started
    j.stopped(TxStopped(tx, 1, 2500.0, T0 + 60, StopReason.LOCAL, "CARD", sample(2500.0), END), STAMP)
    started, ended = (m.payload for m in store.pending())
    first = started["meterValue"][0]["sampledValue"][0]
    assert first["context"] == "Transaction.Begin" and decode(first["signedMeterValue"]) == (BEGIN.data, KEY)
    last = ended["meterValue"][-1]["sampledValue"][0]
    assert last["context"] == "Transaction.End" and decode(last["signedMeterValue"]) == (END.data, KEY)
    assert float(last["value"]) == 2500.0
