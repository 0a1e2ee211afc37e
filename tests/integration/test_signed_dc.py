"""Signed DC sessions end to end: the agent process, the simulated charger of the dc_signed scenario (a LEM
DCBM signing OCMF data sets over its HTTP API) and the local back office, on OCPP 1.6 and 2.0.1.

Every signed data set the back office received is verified with `pyocmf` (not our code) against the key the
simulated meter itself publishes, and a copy with one byte changed must fail: a data set altered anywhere on
the way (store, journal, outbox, websocket) fails the test.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from pathlib import Path
from typing import Any

import pyocmf

import simulator
from agent.metering import billed_wh
from tests.integration.harness import CARD, CP_ID, Rig
from tests.integration.test_v201_sessions import wait_event

DC_SIGNED = Path(simulator.__file__).parent / "scenarios" / "dc_signed.toml"
V201 = "2.0.1"
KEY_PREFIX = "oca:base16:asn1:"  # the application note's publicKey: base64 of "oca:<encoding>:<type>:<key>"


def meter_key(rig: Rig) -> str:
    """The public key the simulated meter publishes itself (GET /v1/status), not what the agent says it is."""
    url = rig.sim_state()["connectors"]["1"]["meter"]["url"]
    with urllib.request.urlopen(f"{url}/v1/status", timeout=5) as answer:
        return str(json.loads(answer.read())["publicKeyOcmf"])


def meter_record(rig: Rig, transaction_id: str) -> str:
    """The simulated meter's own record of a transaction (GET /v1/ocmf?transactionId=)."""
    url = rig.sim_state()["connectors"]["1"]["meter"]["url"]
    with urllib.request.urlopen(f"{url}/v1/ocmf?transactionId={transaction_id}", timeout=5) as answer:
        return str(answer.read().decode("utf-8"))


def verifies(text: str, key_hex: str) -> bool:
    """pyocmf parses the data set strictly and checks its signature with the key."""
    try:
        return bool(pyocmf.OCMF.from_string(text, strict=True).verify_signature(key_hex))
    except (pyocmf.PyOCMFError, ValueError):
        return False


def readings(text: str) -> dict[str, float]:
    """TX -> RV (Wh) of a data set's readings (the payload is the JSON between the first and the last '|')."""
    payload = json.loads(text.split("|", 1)[1].rsplit("|", 1)[0])
    return {r["TX"]: float(r["RV"]) * (1000.0 if r["RU"] == "kWh" else 1.0) for r in payload["RD"]}


def decode(obj: dict[str, Any]) -> tuple[str, str]:
    """(OCMF text, hex key) of a SignedMeterValueType object as the application note encodes it."""
    text = base64.b64decode(obj["signedMeterData"], validate=True).decode("utf-8")
    key = base64.b64decode(obj["publicKey"], validate=True).decode("ascii")
    assert key.startswith(KEY_PREFIX), key
    assert obj["encodingMethod"] == "OCMF" and obj["signingMethod"] == ""
    return text, key.removeprefix(KEY_PREFIX)


def signed_16(rig: Rig) -> list[tuple[str, str, dict[str, Any]]]:
    """(action, context, SignedMeterValueType) of every SignedData value the 1.6 back office received."""
    found = []
    for msg in rig.office.messages(CP_ID):
        if msg["action"] not in ("MeterValues", "StopTransaction"):
            continue
        values = msg["payload"].get("meterValue") or msg["payload"].get("transactionData") or []
        for value in values:
            for sampled in value["sampledValue"]:
                if sampled.get("format") == "SignedData":
                    assert sampled["measurand"] == "Energy.Active.Import.Register"
                    found.append((msg["action"], sampled["context"], json.loads(sampled["value"])))
    return found


def signed_201(rig: Rig) -> list[tuple[str, str, dict[str, Any]]]:
    """(eventType, context, signedMeterValue) of every signed value in the TransactionEvents received."""
    found = []
    for msg in rig.calls("TransactionEvent"):
        for value in msg["payload"].get("meterValue", []):
            for sampled in value["sampledValue"]:
                if "signedMeterValue" in sampled:
                    found.append((msg["payload"]["eventType"], sampled.get("context", ""), sampled["signedMeterValue"]))
    return found


def check_every_data_set(found: list[tuple[str, str, dict[str, Any]]], key_hex: str) -> list[tuple[str, str, str]]:
    """Each data set verifies with the meter's key, and no longer does with any one byte changed; returns
    (where, context, text) of each."""
    assert found, "the back office received no signed data set"
    texts = []
    for where, context, obj in found:
        text, key = decode(obj)
        assert key.lower() == key_hex.lower(), "the data set names another key than the meter's"
        assert verifies(text, key_hex), f"{where} {context}: the data set does not verify:\n{text}"
        raw = bytearray(text.encode("utf-8"))
        for index in (len(b"OCMF|{\"FV\":\""), len(raw) // 2, len(raw) - 5):  # payload start, middle, signature
            changed = bytearray(raw)
            changed[index] = ord("0") if changed[index] != ord("0") else ord("1")
            assert not verifies(changed.decode("utf-8", "replace"), key_hex), f"byte {index} changed still verifies"
        texts.append((where, context, text))
    return texts


async def _charge_a_while(rig: Rig) -> None:
    await rig.wait_contactor(True)
    start = rig.meter_wh()
    await rig.wait_sim(lambda s: rig.meter_wh() > start + 5, "energy through the signing meter", timeout=20)


async def test_signed_dc_session_16_per_the_application_note(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(sim_config=DC_SIGNED)
    key = meter_key(rig)
    start = await rig.start_session()
    await _charge_a_while(rig)
    rig.card(CARD)  # the same card: a local stop
    stop = await rig.wait_call("StopTransaction")
    found = check_every_data_set(signed_16(rig), key)
    contexts = [(where, context) for where, context, _ in found]
    assert contexts == [("MeterValues", "Transaction.Begin"), ("StopTransaction", "Transaction.End")], contexts
    begin, end = readings(found[0][2]), readings(found[1][2])
    assert set(begin) == {"B"} and set(end) == {"B", "E"}, (begin, end)
    assert end["B"] == begin["B"], "the end data set is not of the transaction the begin data set opened"
    assert start["payload"]["meterStart"] == billed_wh(begin["B"])
    assert stop["payload"]["meterStop"] == billed_wh(end["E"]) and end["E"] > end["B"]
    # the begin MeterValues belongs to this transaction and follows its start
    tx_id = int(start["response"]["payload"]["transactionId"])
    begin_msg = next(m for m in rig.calls("MeterValues") if any(
        s.get("format") == "SignedData" for v in m["payload"]["meterValue"] for s in v["sampledValue"]))
    assert begin_msg["payload"]["transactionId"] == tx_id == stop["payload"]["transactionId"]
    # the application note's read-only configuration key holds the key every data set verifies with
    answer = await rig.cs_call("GetConfiguration", {"key": ["MeterPublicKey[1]"]})
    entry = answer["payload"]["configurationKey"][0]
    assert entry["readonly"] is True
    assert base64.b64decode(entry["value"]).decode() == KEY_PREFIX + key
    refused = await rig.cs_call("ChangeConfiguration", {"key": "MeterPublicKey[1]", "value": "00"})
    assert refused["payload"]["status"] == "Rejected"


async def test_signed_dc_session_201_signed_meter_value_in_started_and_ended(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp_version=V201, sim_config=DC_SIGNED)
    key = meter_key(rig)
    rig.card(CARD)
    rig.plug(1)
    started = await wait_event(rig, "Started")
    await _charge_a_while(rig)
    rig.card(CARD)
    ended = await wait_event(rig, "Ended")
    found = check_every_data_set(signed_201(rig), key)
    assert [(w, c) for w, c, _ in found] == [("Started", "Transaction.Begin"), ("Ended", "Transaction.End")], found
    begin, end = readings(found[0][2]), readings(found[1][2])
    assert end["B"] == begin["B"] and end["E"] > end["B"]
    # the meter filed it under the station's transactionId: its own record is the data set the back office got
    assert meter_record(rig, started["transactionInfo"]["transactionId"]) == found[1][2]
    assert float(started["meterValue"][0]["sampledValue"][0]["value"]) == billed_wh(begin["B"])
    assert float(ended["meterValue"][-1]["sampledValue"][0]["value"]) == billed_wh(end["E"])


async def test_power_cut_mid_session_stop_carries_the_meters_signed_record(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(sim_config=DC_SIGNED)
    key = meter_key(rig)
    start = await rig.start_session()
    await _charge_a_while(rig)
    begin_seen = await rig.office.wait_for(lambda: signed_16(rig) or None, timeout=10)
    assert begin_seen[0][1] == "Transaction.Begin"
    rig.power_cut()
    rig.fault("meter", "power_cut")  # the meter loses its supply too: it closes the transaction itself (P)
    await rig.wait_contactor(False)
    boots = len(rig.calls("BootNotification"))
    rig.start_agent()
    await rig.wait_call("BootNotification", count=boots + 1, timeout=20)
    stop = await rig.wait_call("StopTransaction")
    assert stop["payload"]["reason"] == "PowerLoss"
    found = check_every_data_set(signed_16(rig), key)
    assert [(w, c) for w, c, _ in found] == [("MeterValues", "Transaction.Begin"),
                                              ("StopTransaction", "Transaction.End")]
    end_text = found[1][2]
    end = readings(end_text)
    assert set(end) == {"B", "P"}, end  # OCMF: "P" ends a transaction the power cut terminated
    assert stop["payload"]["meterStop"] == billed_wh(end["P"])
    assert start["payload"]["meterStart"] == billed_wh(end["B"])
    assert "UnsignedTransaction" not in rig.agent_log()


async def test_untrusted_clock_charges_unsigned_and_says_so(rig_factory: Any) -> None:
    """Decided: with no trusted clock (no NTP, the back office not reached since boot) the meter's legal
    transaction is not begun (its clock would be set from ours); the session charges unsigned and the local
    security log says why (docs/signed-values.md)."""
    rig: Rig = await rig_factory(sim_config=DC_SIGNED, ocpp={"AllowOfflineTxForUnknownId": True,
                                                             "LocalAuthorizeOffline": True})
    await rig.stop_agent()
    await rig.office.go_offline()
    rig.start_agent()
    await asyncio.sleep(2.0)  # booted, the back office out of reach: the clock is not trusted
    rig.card(CARD)
    rig.plug(1)
    await rig.wait_contactor(True, timeout=20)
    await rig.office.go_online()
    start = await rig.wait_call("StartTransaction", timeout=30)
    rig.card(CARD)
    await rig.wait_call("StopTransaction", timeout=30)
    assert signed_16(rig) == []
    assert start["payload"]["meterStart"] >= 0
    assert "UnsignedTransaction" in rig.agent_log() or "not signed by its meter" in rig.agent_log()
