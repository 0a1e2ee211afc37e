"""The verdict on each kind of incoming frame (OCPP-J 1.6 section 4.2.3)."""

from __future__ import annotations

import pytest

from agent.ocpp.frames import V16_CODES, V201_CODES, Verdict, check_frame, read_head

ANSWERED = [
    ('[2,"a1",{"x":1}]', "FormationViolation"),  # CALL without an action
    ('[2,"a2","Heartbeat"]', "ProtocolError"),  # CALL without a payload
    ('[2,"a3"]', "FormationViolation"),
    ('[2,"a4","Heartbeat",{},{}]', "FormationViolation"),  # extra element
    ('[7,"a5","Heartbeat",{}]', "NotImplemented"),  # unknown message type id
    ('[null,"a6","Heartbeat",{}]', "NotImplemented"),
    ('["2","a7","Heartbeat",{}]', "TypeConstraintViolation"),  # type id as a string
    ('[2.0,"a8","Heartbeat",{}]', "TypeConstraintViolation"),
    ('[2,"a9","Heartbeat",[]]', "TypeConstraintViolation"),  # payload not an object
    ('[2,"a10","Heartbeat","{}"]', "TypeConstraintViolation"),
    ('[2,"a11",5,{}]', "TypeConstraintViolation"),  # action not a string
    ('[2,"a12","Heartbeat",{', "FormationViolation"),  # not JSON, id readable
    (' [ 2 , "a13" , "Heartbeat" , {"a": ]', "FormationViolation"),
]


@pytest.mark.parametrize(("raw", "code"), ANSWERED)
def test_malformed_call_with_readable_id_answered(raw: str, code: str) -> None:
    check = check_frame(raw)
    assert check.verdict is Verdict.ANSWER
    assert check.code == code
    assert check.unique_id == read_head(raw)[1]  # type: ignore[index]
    assert check.description


@pytest.mark.parametrize("raw", [
    "", "not json", "{}", '{"2":"x"}', "[]", "[2]", "[2, 17, \"Heartbeat\", {}]", "[2, null]", "42", '"x"',
    "[" * 100_000, '[2, "unterminated', b"\xff\xfe",
    '["3","r1",{}]', '[3,"r2"]', '[3,"r3",{},1]', '[4,"r4"]', '[4,"r5","c","d",{},1]',
])
def test_frame_without_answerable_id_dropped(raw: str | bytes) -> None:
    """No readable unique id, or a malformed response (a response is never answered)."""
    check = check_frame(raw)
    assert check.verdict is Verdict.DROP
    assert check.description


@pytest.mark.parametrize("raw", ['[3,"r",{}]', '[3,"r",[]]', '[4,"r","GenericError","x",{}]', '[4,"r","E","x"]'])
def test_response_shapes_go_on(raw: str) -> None:
    assert check_frame(raw).verdict is Verdict.RESPONSE


def test_well_formed_call() -> None:
    check = check_frame(b'[2, "c1", "Reset", {"type": "Soft"}]')
    assert (check.verdict, check.unique_id, check.action, check.payload) == (
        Verdict.CALL, "c1", "Reset", {"type": "Soft"})


def test_description_never_echoes_a_huge_action() -> None:
    check = check_frame('[2,"c2","' + "A" * 100_000 + '"]')
    assert check.code == "ProtocolError"
    assert len(check.description) < 200


@pytest.mark.parametrize("raw", [raw for raw, _ in ANSWERED] + ["[]", "not json", '[3,"r",{}]', '[2,"c","Reset",{}]'])
def test_the_versions_share_the_rules_and_differ_in_codes(raw: str) -> None:
    """Under the 2.0.1 table a frame gets the same verdict and unique id, the code from that table."""
    v16, v201 = check_frame(raw, V16_CODES), check_frame(raw, V201_CODES)
    assert (v201.verdict, v201.unique_id, v201.action, v201.payload) == (
        v16.verdict, v16.unique_id, v16.action, v16.payload)
    if v16.verdict is Verdict.ANSWER:
        assert v201.code in ("RpcFrameworkError", "FormatViolation", "ProtocolError", "MessageTypeNotSupported")
