"""Signed DC sessions end to end: the agent process, the simulated charger of the dc_signed scenario (a LEM
DCBM signing OCMF data sets over its HTTP API) and the local back office, on OCPP 1.6 and 2.0.1.

Every signed data set the back office received is verified with `pyocmf` (not our code) against the key the
simulated meter itself publishes, and a copy with one byte changed must fail: a data set altered anywhere on
the way (store, journal, outbox, websocket) fails the test.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import random
import sqlite3
import urllib.request
from pathlib import Path
from typing import Any

import pyocmf
import pytest

import simulator
import simulator.backoffice.v16
from agent.metering import billed_wh
from tests.integration.harness import CARD, CP_ID, Rig
from tests.integration.test_kill import _ledger
from tests.integration.test_v201_sessions import set_variable, wait_event

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


def signed_time(text: str) -> str:
    """The begin reading's TM as an OCPP timestamp ("2026-12-06T23:15:14,123+0000 S" -> "...T23:15:14.123Z")."""
    payload = json.loads(text.split("|", 1)[1].rsplit("|", 1)[0])
    tm = next(r["TM"] for r in payload["RD"] if r["TX"] == "B")
    assert tm.endswith("+0000 S"), tm  # UTC, the meter's clock set (time status S)
    return tm.removesuffix("+0000 S").replace(",", ".") + "Z"


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


@pytest.mark.parametrize("start_point", ["PowerPathClosed", "DataSigned"])
async def test_signed_dc_session_201_signed_meter_value_in_started_and_ended(rig_factory: Any,
                                                                             start_point: str) -> None:
    rig: Rig = await rig_factory(ocpp_version=V201, sim_config=DC_SIGNED)
    key = meter_key(rig)
    await set_variable(rig, "TxCtrlr", "TxStartPoint", start_point)
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
    # PowerPathClosed dates the start at the agent's decision, before the meter signed; DataSigned at the
    # signature (the meter's TM of the begin reading), which is what the transaction then starts from
    signed_at = signed_time(found[0][2])
    if start_point == "DataSigned":
        assert started["timestamp"] >= signed_at, (started["timestamp"], signed_at)
    else:
        assert started["timestamp"] <= signed_at, (started["timestamp"], signed_at)


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
    with sqlite3.connect(f"file:{rig.state_dir / 'agent.db'}?mode=ro", uri=True, timeout=5) as conn:
        reported = conn.execute("SELECT tech_info FROM security_log WHERE event_type = ?",
                                ("UnsignedTransaction",)).fetchall()
    assert len(reported) == 1 and "clock is not trusted" in reported[0][0], reported
    # the meter was never asked: it has no record of a legal transaction
    url = rig.sim_state()["connectors"]["1"]["meter"]["url"]
    with urllib.request.urlopen(f"{url}/v1/status", timeout=5) as answer:
        assert json.loads(answer.read())["numberOfStoredTransactions"] == 0


# ---- the kill test on a signing DC meter ------------------------------------------------------------------



def _transactions(rig: Rig) -> int:
    """How many transaction ids the agent has taken so far (a start waiting for the meter's begin included)."""
    db = rig.state_dir / "agent.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return int(conn.execute("SELECT COALESCE(MAX(tx_local_id), 0) FROM transactions").fetchone()[0])


def _answered_boots(rig: Rig) -> list[int]:
    """Indexes of the answered BootNotifications among the messages the back office received."""
    return [i for i, m in enumerate(rig.office.messages(CP_ID)) if m["action"] == "BootNotification" and m["response"]]


async def _wait_booted_again(rig: Rig, boots_before: int) -> None:
    """Wait until the restarted agent's own boot was answered and it reported its connectors after it: only then
    is its clock trusted again (the back office's connection flag alone may still be the killed run's)."""
    def booted() -> bool:
        boots = _answered_boots(rig)
        return len(boots) > boots_before and any(m["action"] == "StatusNotification"
                                                 for m in rig.office.messages(CP_ID)[boots[-1]:])

    try:
        await rig.office.wait_for(booted, timeout=60)
    except TimeoutError:
        raise AssertionError(f"the restarted agent did not boot\n{rig.agent_log()[-3000:]}") from None


async def _signed_kill_sessions(rig: Rig, sessions: int, rng: random.Random) -> int:
    """Sessions with SIGKILLs at random moments (charging, or in the middle of the stop); after each kill
    the agent restarts and reaches the back office before the next session (the clock is trusted again)."""
    kills = 0
    # a kill while charging, two in the middle of a stop (before or after the meter's end), one clean session
    moments: list[str | None] = [("charging", "stopping", "stopping", None)[i % 4] for i in range(sessions)]
    rng.shuffle(moments)
    for moment in moments:
        await rig.wait_connected(30)
        await rig.wait_sim(lambda s: not s["connectors"]["1"]["contactor_closed"], "contactor open")
        rig.plug(1)
        before: int | None = None
        for _attempt in range(4):
            if before is None or _transactions(rig) == before:
                # the card again only if the last one took no transaction id: a second one would stop it
                before = _transactions(rig)
                rig.card()
            try:
                await rig.wait_contactor(True, timeout=8)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError(f"session never started\n{rig.agent_log()[-12000:]}")
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        if moment == "stopping":
            rig.card()  # a local stop, killed in the middle of it
            await asyncio.sleep(rng.uniform(0.0, 1.5))
        if moment is not None:
            boots = len(_answered_boots(rig))
            rig.power_cut()
            kills += 1
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            rig.start_agent()
            await _wait_booted_again(rig, boots)
        else:
            rig.card()
        await rig.wait_sim(lambda s: not s["connectors"]["1"]["contactor_closed"], "contactor open", 30)
        seen = len(rig.statuses(1))
        rig.unplug(1)
        # the agent saw the unplug (a restarting agent polls late: an unplug and plug within one poll are missed)
        await rig.wait_status(1, "Available", timeout=30, since=seen)
    return kills


def _signing_log(rig: Rig) -> str:
    """The agent's log lines about signing, meters and stops (what a failure needs to be understood)."""
    words = ("legal", "signed", "unsigned", "stopped with", "meter", "Traceback", "Error")
    return "\n".join(line for line in rig.agent_log().splitlines() if any(w in line for w in words))[-8000:]


# make test: three sessions, each killed (once while charging, twice in the middle of its stop); make soak: 8
# or EVSE_SIGNED_KILL_SESSIONS, with clean sessions between. Its two failures under load last session were the
# test's and the simulator's, not the agent's: the next session began before the restarted agent's boot was
# answered (its clock not yet trusted: correctly unsigned), and the simulated meter signed its register rounded
# to the nearest Wh while the live value is read whole Wh.
SOAK_SESSIONS = int(os.environ.get("EVSE_SIGNED_KILL_SESSIONS", "8"))


@pytest.mark.parametrize("sessions", [3, pytest.param(SOAK_SESSIONS, marks=pytest.mark.soak, id="soak")])
async def test_kill_test_on_a_signing_dc_meter_every_data_set_verifies(rig_factory: Any, sessions: int) -> None:
    rng = random.Random(int(os.environ.get("EVSE_KILL_SEED", "7")))
    rig: Rig = await rig_factory(sim_config=DC_SIGNED, ocpp={"TransactionMessageRetryInterval": 1})
    key = meter_key(rig)
    kills = await _signed_kill_sessions(rig, sessions, rng)
    await rig.wait_connected(30)
    db = rig.state_dir / "agent.db"

    def drained() -> bool:
        """Every stop recorded (the last one may still wait for the meter's end) and the outbox empty."""
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            running = conn.execute("SELECT COUNT(*) FROM transactions WHERE stop_wall IS NULL AND connector_id != 0")
            queued = conn.execute("SELECT COUNT(*) FROM outbox")
            return int(running.fetchone()[0]) == 0 and int(queued.fetchone()[0]) == 0

    await rig.office.wait_for(drained, timeout=90)
    try:
        ledger = _ledger(rig, rig.meter_wh(1))  # the register tiled by meterStart/meterStop, nothing lost
    except AssertionError as err:
        raise AssertionError(f"{err}\n{_signing_log(rig)}") from err
    assert ledger["sessions"] == sessions, ledger
    assert "is not signed by its meter" not in rig.agent_log(), _signing_log(rig)
    texts = check_every_data_set(signed_16(rig), key)
    # every stop the back office answered carries the signed end of its own session, the meter's record
    stops = {json.dumps(m["payload"], sort_keys=True): m["payload"] for m in rig.calls("StopTransaction")
             if m["response"]}
    ends = {text for where, context, text in texts if context == "Transaction.End"}
    if not len(ends) == len(stops) == sessions:
        seen = []
        for stop in stops.values():
            signed = [decode(json.loads(sv["value"]))[0] for v in stop.get("transactionData", [])
                      for sv in v["sampledValue"] if sv.get("format") == "SignedData"]
            seen.append((stop["transactionId"], stop["meterStop"], stop.get("reason"),
                         [(readings(t), json.loads(t.split("|", 1)[1].rsplit("|", 1)[0]).get("PG")) for t in signed]))
        raise AssertionError(f"{len(ends)} distinct signed ends for {len(stops)} stops: {seen}\n{_signing_log(rig)}")
    for stop in stops.values():
        end_values = [json.loads(sv["value"]) for v in stop["transactionData"] for sv in v["sampledValue"]
                      if sv.get("format") == "SignedData"]
        assert len(end_values) == 1, stop
        end = readings(decode(end_values[0])[0])
        last = end.get("E", end.get("P"))
        assert last is not None and stop["meterStop"] == billed_wh(last), (stop, end)
    print(f"\nsigned kill test: {ledger}, kills {kills}, data sets verified {len(texts)}")


async def test_estop_while_the_meter_signs_the_begin_is_not_held_up(rig_factory: Any) -> None:
    """The begin runs beside the event loop: an e-stop pressed while a slow meter is still signing the begin
    shuts the DC controller down at once (before the start is even recorded), the contactor never closes,
    and the transaction still ends with the meter's signed data set, verified."""
    rig: Rig = await rig_factory(sim_config=DC_SIGNED)
    key = meter_key(rig)
    rig.fault("meter", "slow", value=1.2)  # every meter request answers 1.2 s late: the begin takes ~5 s
    rig.card(CARD)
    rig.plug(1)
    await rig.office.wait_for(lambda: "transaction 1 started" in rig.agent_log() or None, timeout=20)
    assert rig.calls("StartTransaction") == [], "the start was recorded before the slow meter answered"
    rig.estop(True)
    await rig.wait_sim(lambda s: s["connectors"]["1"]["dc"]["emergency"], "DC emergency shutdown")
    assert rig.calls("StartTransaction") == [], "the e-stop waited for the meter's begin"
    assert not rig.contactor_closed()
    stop = await rig.wait_call("StopTransaction", timeout=40)
    assert stop["payload"]["reason"] == "EmergencyStop"
    assert not rig.contactor_closed()
    rig.fault("meter", "slow", on=False)
    found = check_every_data_set(signed_16(rig), key)
    assert [(w, c) for w, c, _ in found] == [("MeterValues", "Transaction.Begin"),
                                              ("StopTransaction", "Transaction.End")]
    end = readings(found[1][2])
    assert end["E"] == end["B"], "energy flowed although the contactor never closed"


async def test_a_system_clock_the_back_office_says_is_wrong_charges_unsigned(rig_factory: Any,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver sets the meter's clock from the system clock: when the back office's time says that clock is
    two minutes off, no legal transaction is begun (the meter would sign with a wrong time); reported."""
    ahead = datetime.timedelta(seconds=120)
    monkeypatch.setattr(simulator.backoffice.v16, "utc_now_iso", lambda: (datetime.datetime.now(datetime.UTC) + ahead)
                        .isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    rig: Rig = await rig_factory(sim_config=DC_SIGNED)
    await rig.start_session()
    await rig.wait_contactor(True)
    rig.card(CARD)
    await rig.wait_call("StopTransaction")
    assert signed_16(rig) == []
    with sqlite3.connect(f"file:{rig.state_dir / 'agent.db'}?mode=ro", uri=True, timeout=5) as conn:
        reported = conn.execute("SELECT tech_info FROM security_log WHERE event_type = ?",
                                ("UnsignedTransaction",)).fetchall()
    assert len(reported) == 1 and "s off the back office's time" in reported[0][0], reported


async def test_a_kill_while_the_meter_begins_ends_the_orphan_at_boot(rig_factory: Any) -> None:
    """SIGKILL after the legal transaction was asked of the meter but before the start was recorded: no energy
    flowed (the close was held), the back office never heard of it; at boot the agent ends the meter's legal
    transaction, so the next session begins (a DCBM refuses a second one while one runs) and is signed."""
    rig: Rig = await rig_factory(sim_config=DC_SIGNED)
    key = meter_key(rig)
    rig.fault("meter", "slow", value=1.2)  # the begin's requests each answer 1.2 s late
    rig.card(CARD)
    rig.plug(1)
    # the meter has begun it (POST /v1/legal carried out); the agent still waits 1.2 s for the data set
    await rig.wait_sim(lambda s: s["connectors"]["1"]["meter"]["legal_running"], "the meter's legal transaction")
    rig.kill_agent()
    assert rig.calls("StartTransaction") == [] and not rig.contactor_closed()
    rig.fault("meter", "slow", on=False)
    rig.unplug(1)
    boots = len(rig.calls("BootNotification"))
    rig.start_agent()
    await rig.wait_call("BootNotification", count=boots + 1, timeout=20)
    await rig.wait_status(1, "Available", since=len(rig.statuses(1)))
    # the new process reads the card reader only once it opened it: a card presented before is not seen
    await rig.office.wait_for(lambda: rig.agent_log().count("reading cards on") >= 2 or None, timeout=20)
    url = rig.sim_state()["connectors"]["1"]["meter"]["url"]
    with urllib.request.urlopen(f"{url}/v1/status", timeout=5) as answer:
        status = json.loads(answer.read())
    assert status["status"]["bits"]["transactionIsOnGoing"] is False, status
    rig.plug(1)
    for _attempt in range(4):  # like a driver (and test_kill.py): the card again if the charger did not react
        rig.card(CARD)
        try:
            await rig.wait_contactor(True, timeout=6)
            break
        except AssertionError:
            continue
    await _charge_a_while(rig)
    rig.card(CARD)
    await rig.wait_call("StopTransaction")
    found = check_every_data_set(signed_16(rig), key)
    assert [(w, c) for w, c, _ in found] == [("MeterValues", "Transaction.Begin"),
                                              ("StopTransaction", "Transaction.End")]
    assert len(rig.calls("StartTransaction")) == 1
    assert "UnsignedTransaction" not in rig.agent_log()
