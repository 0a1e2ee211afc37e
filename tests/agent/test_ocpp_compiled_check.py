"""The outbox's requests are checked against the ocpp library's own schemas compiled once (agent/ocpp/library.py):
the compiled check agrees with the library's validator, and a payload it refuses gets the library's verdict."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult, MessageType, validate_payload

import agent.ocpp.library as library
from agent.ocpp.library import _compiled_check, _passes, _request_check
from tests.agent.ocpp_peer import Peer, PeerChargePoint

SAMPLED = [{"value": "1234.5", "measurand": "Energy.Active.Import.Register", "unit": "Wh",
            "context": "Sample.Periodic"}, {"value": "16.0", "measurand": "Current.Import", "unit": "A"}]
VALID: list[tuple[str, str, dict[str, Any]]] = [
    ("1.6", "StartTransaction", {"connectorId": 1, "idTag": "TAG1", "meterStart": 10,
                                 "timestamp": "2023-11-14T22:13:20Z"}),
    ("1.6", "MeterValues", {"connectorId": 1, "transactionId": 5,
                            "meterValue": [{"timestamp": "2023-11-14T22:13:20Z", "sampledValue": SAMPLED}]}),
    ("1.6", "StopTransaction", {"transactionId": 5, "meterStop": 20, "timestamp": "2023-11-14T22:13:20Z",
                                "reason": "Local", "transactionData": [
                                    {"timestamp": "2023-11-14T22:13:20Z", "sampledValue": SAMPLED}]}),
    ("2.0.1", "TransactionEvent", {"eventType": "Updated", "timestamp": "2023-11-14T22:13:20Z",
                                   "triggerReason": "MeterValuePeriodic", "seqNo": 3,
                                   "transactionInfo": {"transactionId": "abc"},
                                   "meterValue": [{"timestamp": "2023-11-14T22:13:20Z",
                                                   "sampledValue": [{"value": 12.5}]}]}),
    ("2.0.1", "SecurityEventNotification", {"type": "SettingSystemTime", "timestamp": "2023-11-14T22:13:20Z"}),
]


def broken(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Invalid variants: an unknown field, a required field missing, a wrong type, a value outside an enum."""
    variants = [{**payload, "notInTheSchema": 1}]
    first = next(iter(payload))
    variants.append({k: v for k, v in payload.items() if k != first})
    variants.append({**payload, first: [1]})
    if "reason" in payload:
        variants.append({**payload, "reason": "NotAReason"})
    if "meterValue" in payload:
        bad = copy.deepcopy(payload)
        bad["meterValue"][0]["sampledValue"][0]["value"] = {"x": 1}
        variants.append(bad)
    return variants


def library_accepts(version: str, action: str, payload: dict[str, Any]) -> bool:
    try:
        asyncio.run(validate_payload(Call("1", action, copy.deepcopy(payload)), version))
    except OCPPError:
        return False
    return True


@pytest.mark.parametrize("version, action, payload", VALID, ids=[f"{v}-{a}" for v, a, _ in VALID])
def test_the_compiled_check_agrees_with_the_library(version: str, action: str, payload: dict[str, Any]) -> None:
    check = _request_check(action, version)
    assert check is not None
    assert _passes(check, payload) and library_accepts(version, action, payload)
    for variant in broken(payload):
        assert not library_accepts(version, action, variant)
        assert not _passes(check, variant), variant


async def test_call_raw_sends_a_valid_payload_without_the_library_check_and_refuses_an_invalid_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    real = library.validate_payload

    async def counting(message: Any, version: str) -> None:
        checked.append(type(message).__name__)
        await real(message, version)

    monkeypatch.setattr(library, "validate_payload", counting)
    peer = Peer(lambda frame: [3, frame[1], {}])
    cp = PeerChargePoint("CP1", peer, response_timeout=0.5)
    receiver = asyncio.create_task(cp.start())
    _, action, payload = VALID[1]
    try:
        assert await cp.call_raw(action, payload) == {}
        assert checked == []  # the request and the answer passed the compiled checks
        with pytest.raises(OCPPError):
            await cp.call_raw(action, {**payload, "connectorId": "one"})
    finally:
        receiver.cancel()
    assert checked == ["Call"]  # the refused request got the library's verdict and error
    assert len(peer.calls) == 1  # and was never sent


ANSWERS: list[tuple[str, str, dict[str, Any]]] = [
    ("1.6", "StartTransaction", {"transactionId": 7, "idTagInfo": {"status": "Accepted"}}),
    ("1.6", "MeterValues", {}),
    ("1.6", "StopTransaction", {"idTagInfo": {"status": "Accepted", "parentIdTag": "P1"}}),
    ("2.0.1", "TransactionEvent", {"totalCost": 1.5, "idTokenInfo": {"status": "Accepted"}}),
    ("2.0.1", "SecurityEventNotification", {}),
]


def library_accepts_answer(version: str, action: str, payload: dict[str, Any]) -> bool:
    try:
        asyncio.run(validate_payload(CallResult("1", copy.deepcopy(payload), action), version))
    except OCPPError:
        return False
    return True


@pytest.mark.parametrize("version, action, payload", ANSWERS, ids=[f"{v}-{a}" for v, a, _ in ANSWERS])
def test_the_compiled_answer_check_agrees_with_the_library(version: str, action: str,
                                                           payload: dict[str, Any]) -> None:
    check = _compiled_check(MessageType.CallResult, action, version)
    assert check is not None
    assert _passes(check, payload) and library_accepts_answer(version, action, payload)
    variants = broken(payload) if payload else [{"notInTheSchema": 1}]
    verdicts = [(library_accepts_answer(version, action, v), _passes(check, v)) for v in variants]
    assert [lib for lib, _ in verdicts] == [compiled for _, compiled in verdicts], variants  # the same verdicts
    assert not all(lib for lib, _ in verdicts)  # and some of them refusals


@pytest.mark.parametrize("answer", [{"transactionId": "seven", "idTagInfo": {"status": "Accepted"}},
                                    {"transactionId": 7}, ["not", "an", "object"]])
async def test_call_raw_refuses_an_answer_against_the_schema_with_the_library_error(
        monkeypatch: pytest.MonkeyPatch, answer: Any) -> None:
    checked: list[str] = []
    real = library.validate_payload

    async def counting(message: Any, version: str) -> None:
        checked.append(type(message).__name__)
        await real(message, version)

    monkeypatch.setattr(library, "validate_payload", counting)
    peer = Peer(lambda frame: [3, frame[1], answer])
    cp = PeerChargePoint("CP1", peer, response_timeout=0.5)
    receiver = asyncio.create_task(cp.start())
    try:
        with pytest.raises(OCPPError):
            await cp.call_raw(*VALID[0][1:])
    finally:
        receiver.cancel()
    assert checked == ["CallResult"]  # the compiled check refused it: the library decided, with its error


@pytest.mark.parametrize("version, actions", [("1.6", ["StartTransaction", "MeterValues", "StartTransaction"]),
                                              ("2.0.1", ["TransactionEvent", "SecurityEventNotification"])])
async def test_the_checks_of_the_queued_actions_are_compiled_ahead(monkeypatch: pytest.MonkeyPatch, version: str,
                                                                  actions: list[str]) -> None:
    monkeypatch.setattr(library, "_checks", {})
    await library.warm_checks(version, actions)
    assert set(library._checks) == {(kind, version, action) for action in actions
                                    for kind in (MessageType.Call, MessageType.CallResult)}
    assert all(check is not None for check in library._checks.values())


@pytest.mark.parametrize("version, action, payload", VALID, ids=[f"{v}-{a}" for v, a, _ in VALID])
def test_the_compiled_check_leaves_the_payload_as_it_is(version: str, action: str, payload: dict[str, Any]) -> None:
    """The stored text is what goes out: the check adds no schema defaults (2.0.1 declares some: location)."""
    checked = copy.deepcopy(payload)
    assert _passes(_request_check(action, version), checked)
    assert checked == payload


@pytest.mark.parametrize("code", ["NoSuchErrorCode", 7])
async def test_a_callerror_with_an_unknown_code_is_an_ocpp_error(code: Any) -> None:
    """A back office's CALLERROR with a code OCPP does not name is a failed attempt like any other (an OCPPError
    the sender counts towards the dead letters), not an exception that ends the session and resends for ever."""
    peer = Peer(lambda frame: [4, frame[1], code, "what happened", {}])
    cp = PeerChargePoint("CP1", peer, response_timeout=0.5)
    receiver = asyncio.create_task(cp.start())
    try:
        with pytest.raises(OCPPError) as err:
            await cp.call_raw(*VALID[0][1:])
    finally:
        receiver.cancel()
    assert str(code) in str(err.value)
