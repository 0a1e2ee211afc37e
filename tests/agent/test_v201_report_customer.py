"""OCPP 2.0.1 B08 GetReport and N09/N10 CustomerInformation on a real agent and store: the answers, then the
NotifyReport / NotifyCustomerInformation that follow them, all checked against the official schemas."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from agent.ocpp.v201.customer import DATA_MAX_CHARS, PARTS_MAX, notify_parts
from agent.store import AuthEntry
from tests.agent.test_v201_handlers import Rig, schema


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.close()


def sent_calls(rig: Rig, before: int, action: str) -> list[dict[str, Any]]:
    """The payloads of the CALLs of an action the agent sent since `before`, checked against the schema."""
    frames = [json.loads(m) for m in rig.wire.sent[before:]]
    payloads = [f[3] for f in frames if f[0] == 2 and f[2] == action]
    for payload in payloads:
        jsonschema.validate(payload, schema(f"{action}Request"))
    return payloads


# ---- B08 GetReport ------------------------------------------------------------------------------------


def test_b08_get_report_of_one_variable_is_followed_by_notify_report(rig: Rig) -> None:
    before = len(rig.wire.sent)
    answer = rig.call("GetReport", {"requestId": 9, "componentVariable": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
    assert answer == {"status": "Accepted"}
    (report,) = sent_calls(rig, before, "NotifyReport")
    assert report["requestId"] == 9 and report["seqNo"] == 0 and report.get("tbc", False) is False
    assert [(d["component"]["name"], d["variable"]["name"]) for d in report["reportData"]] == [
        ("OCPPCommCtrlr", "HeartbeatInterval")]


def test_b08_get_report_of_an_evse_component_names_its_variables(rig: Rig) -> None:
    before = len(rig.wire.sent)
    assert rig.call("GetReport", {"requestId": 10, "componentVariable": [
        {"component": {"name": "EVSE", "evse": {"id": 1}}}]})["status"] == "Accepted"
    (report,) = sent_calls(rig, before, "NotifyReport")
    assert {d["variable"]["name"] for d in report["reportData"]} >= {"AvailabilityState", "Power"}
    assert all(d["component"]["evse"]["id"] == 1 for d in report["reportData"])


def test_b08_get_report_by_criteria(rig: Rig) -> None:
    before = len(rig.wire.sent)
    assert rig.call("GetReport", {"requestId": 11, "componentCriteria": ["Enabled"]})["status"] == "Accepted"
    (report,) = sent_calls(rig, before, "NotifyReport")
    components = {d["component"]["name"] for d in report["reportData"]}
    assert "ReservationCtrlr" in components and "OCPPCommCtrlr" not in components  # it has no Enabled


def test_b08_get_report_empty_result_set_and_rejected(rig: Rig) -> None:
    before = len(rig.wire.sent)
    assert rig.call("GetReport", {"requestId": 12, "componentVariable": [
        {"component": {"name": "NoSuchCtrlr"}}]})["status"] == "EmptyResultSet"
    assert sent_calls(rig, before, "NotifyReport") == []
    many = [{"component": {"name": "OCPPCommCtrlr"}}] * 51  # ItemsPerMessage[GetReport] is 50
    assert rig.call("GetReport", {"requestId": 13, "componentVariable": many})["status"] == "Rejected"
    assert sent_calls(rig, before, "NotifyReport") == []


def test_b08_get_report_without_a_device_model_is_not_supported(rig: Rig) -> None:
    rig.conn.cp.device_model = None
    assert rig.call("GetReport", {"requestId": 14})["status"] == "NotSupported"


# ---- N09/N10 CustomerInformation ----------------------------------------------------------------------


def _token(value: str) -> dict[str, str]:
    return {"idToken": value, "type": "ISO14443"}


def _finished_transaction(rig: Rig, id_tag: str) -> str:
    """A transaction of id_tag recorded, ended and delivered (its messages acked); its station id."""
    store = rig.store
    now = time.time()
    local = store.reserve_tx_id(now, time.monotonic())
    store.begin_transaction(local, 1, id_tag, 1000.0, now, time.monotonic(), None, "TransactionEvent",
                            {"eventType": "Started"}, clock_trusted=True, protocol="2.0.1")
    store.end_transaction(local, 1500.0, now + 60, time.monotonic(), "Local", "TransactionEvent",
                          {"eventType": "Ended"}, clock_trusted=True, protocol="2.0.1")
    for msg in store.pending():
        store.ack(msg.id)
    row = store.transaction(local)
    assert row is not None
    return row.station_tx_id


def test_n09_customer_information_reports_what_the_station_holds_about_a_token(rig: Rig) -> None:
    rig.store.replace_local_list(1, [AuthEntry("CARD1", "Accepted", None, "FLEET")])
    rig.store.cache_put(AuthEntry("CARD1", "Accepted", "2030-01-01T00:00:00Z", None))
    tx = _finished_transaction(rig, "CARD1")
    before = len(rig.wire.sent)
    answer = rig.call("CustomerInformation", {"requestId": 3, "report": True, "clear": False,
                                              "idToken": _token("CARD1")})
    assert answer == {"status": "Accepted"}
    (part,) = sent_calls(rig, before, "NotifyCustomerInformation")
    assert part["requestId"] == 3 and part["seqNo"] == 0 and part["tbc"] is False
    assert "local list: status=Accepted" in part["data"] and "group=FLEET" in part["data"]
    assert "authorization cache: status=Accepted" in part["data"]
    assert f"transaction {tx}" in part["data"] and "energy_wh=500" in part["data"]
    assert rig.store.cache_get("CARD1") is not None  # a report alone clears nothing


def test_n10_customer_information_clear_erases_cache_and_delivered_transactions(rig: Rig) -> None:
    rig.store.replace_local_list(1, [AuthEntry("CARD1", "Accepted")])
    rig.store.cache_put(AuthEntry("CARD1", "Accepted"))
    _finished_transaction(rig, "CARD1")
    before = len(rig.wire.sent)
    assert rig.call("CustomerInformation", {"requestId": 4, "report": False, "clear": True,
                                            "idToken": _token("CARD1")})["status"] == "Accepted"
    (part,) = sent_calls(rig, before, "NotifyCustomerInformation")
    assert "authorization cache entry cleared" in part["data"] and "1 finished transaction" in part["data"]
    assert rig.store.cache_get("CARD1") is None
    assert rig.store.transactions_of_id("CARD1", 10) == []
    assert rig.store.local_list_get("CARD1") is not None  # the back office's own list is its to change


def test_n10_a_transaction_still_queued_keeps_its_token(rig: Rig) -> None:
    now = time.time()
    local = rig.store.reserve_tx_id(now, time.monotonic())
    rig.store.begin_transaction(local, 1, "CARD2", 0.0, now, time.monotonic(), None, "TransactionEvent",
                                {"eventType": "Started"}, clock_trusted=True, protocol="2.0.1")
    assert rig.call("CustomerInformation", {"requestId": 5, "report": False, "clear": True,
                                            "idToken": _token("CARD2")})["status"] == "Accepted"
    assert len(rig.store.transactions_of_id("CARD2", 10)) == 1  # running: the back office must still get it


def test_n09_customer_information_invalid_requests(rig: Rig) -> None:
    before = len(rig.wire.sent)
    assert rig.call("CustomerInformation", {"requestId": 6, "report": True,
                                            "clear": False})["status"] == "Invalid"
    assert rig.call("CustomerInformation", {"requestId": 7, "report": False, "clear": False,
                                            "idToken": _token("X")})["status"] == "Invalid"
    assert sent_calls(rig, before, "NotifyCustomerInformation") == []


def test_n09_a_customer_identifier_the_station_does_not_keep_finds_nothing(rig: Rig) -> None:
    before = len(rig.wire.sent)
    assert rig.call("CustomerInformation", {"requestId": 8, "report": True, "clear": False,
                                            "customerIdentifier": "cust-42"})["status"] == "Accepted"
    (part,) = sent_calls(rig, before, "NotifyCustomerInformation")
    assert part["data"] == "no information held"


def test_n09_notify_parts_are_bounded_and_numbered() -> None:
    lines = [f"transaction {n:04d}: " + "x" * 80 for n in range(60)]
    parts = notify_parts(1, lines, 1_700_000_000.0)
    assert len(parts) > 1 and [p["seqNo"] for p in parts] == list(range(len(parts)))
    assert [p["tbc"] for p in parts] == [True] * (len(parts) - 1) + [False]
    for part in parts:
        assert len(str(part["data"])) <= DATA_MAX_CHARS
        jsonschema.validate(part, schema("NotifyCustomerInformationRequest"))
    assert "".join(str(p["data"]) for p in parts).count("transaction") == 60  # nothing dropped
    huge = notify_parts(1, ["y" * 10_000] * 10_000, 1_700_000_000.0)
    assert len(huge) <= PARTS_MAX and huge[-1]["tbc"] is False
