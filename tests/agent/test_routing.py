"""The version-neutral frame routing (agent/ocpp/routing.py) on the library's 2.0.1 ChargePoint: the same
rules as in 1.6, answered with the 2.0.1 codes (OCPP-J 2.0.1 section 4.3) when given V201_CODES."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ocpp.v16
import ocpp.v16.enums
import ocpp.v201
import ocpp.v201.enums
import pytest
from ocpp.routing import on

from agent.ocpp.frames import V16_CODES, V201_CODES, read_head
from agent.ocpp.routing import FrameGuard
from tests.agent.ocpp_peer import Peer, Reply, result

NOW = "2024-01-01T00:00:00Z"


class V201Guarded(FrameGuard, ocpp.v201.ChargePoint):
    """The library's 2.0.1 ChargePoint behind the shared routing, with no handlers."""

    FRAME_CODES = V201_CODES
    ACTIONS = frozenset(a.value for a in ocpp.v201.enums.Action)


class V16Guarded(FrameGuard, ocpp.v16.ChargePoint):
    """The library's 1.6 ChargePoint behind the shared routing, with no handlers."""

    FRAME_CODES = V16_CODES
    ACTIONS = frozenset(a.value for a in ocpp.v16.enums.Action)


class V201ClearCache(V201Guarded):
    @on(ocpp.v201.enums.Action.clear_cache)
    def on_clear_cache(self, **_: Any) -> Any:
        return ocpp.v201.call_result.ClearCache(status="Accepted")

    @on(ocpp.v201.enums.Action.reset)
    def on_reset(self, **_: Any) -> Any:
        return 42  # not a result dataclass: the library fails after the handler, before it answers


class V16ClearCache(V16Guarded):
    @on(ocpp.v16.enums.Action.clear_cache)
    def on_clear_cache(self, **_: Any) -> Any:
        return ocpp.v16.call_result.ClearCache(status="Accepted")


async def answers(cp: FrameGuard, peer: Peer, raw: str) -> list[list[Any]]:
    """Route one incoming frame; what the charge point sent for it."""
    before = len(peer.sent)
    await cp.route_message(raw)
    return peer.sent[before:]


MALFORMED_201 = [  # (raw frame, the one CALLERROR code 2.0.1 answers it with)
    ('[2,"p1","Heartbeat",[]]', "FormatViolation"),  # payload not an object: syntactically incorrect
    ('[2,"p2","Heartbeat","{}"]', "FormatViolation"),
    ('[2,"a1","NoSuchAction",{}]', "NotImplemented"),  # not known by the receiver
    ('[2,"a2","ChangeConfiguration",{}]', "NotImplemented"),  # a 1.6 action is unknown in 2.0.1
    ('[2,"a3","Reset",{"type":"Immediate"}]', "NotSupported"),  # a 2.0.1 action with no handler here
    ('[2,"r1","Heartbeat",{', "RpcFrameworkError"),  # not JSON, the id readable
    (' [ 2 , "r2" , "Reset" , {"type": ]', "RpcFrameworkError"),
    ('[2,"r3",{}]', "RpcFrameworkError"),  # no action
    ('[2,"r4"]', "RpcFrameworkError"),
    ('[2,"r5","Reset",{},{}]', "RpcFrameworkError"),  # an extra element
    ('["2","r6","Reset",{}]', "RpcFrameworkError"),  # the type id as a string
    ('[2,"r7",5,{}]', "RpcFrameworkError"),  # the action not a string
    ('[2,"n1","Reset"]', "ProtocolError"),  # no payload
    ('[7,"t1","Reset",{}]', "MessageTypeNotSupported"),
    ('[null,"t2","Reset",{}]', "MessageTypeNotSupported"),
]


@pytest.mark.parametrize(("raw", "code"), MALFORMED_201)
async def test_v201_a_malformed_call_gets_one_callerror_with_the_201_code(raw: str, code: str) -> None:
    peer = Peer(result())
    cp = V201Guarded("CS1", peer, response_timeout=1)
    sent = await answers(cp, peer, raw)
    assert len(sent) == 1, sent
    frame = sent[0]
    assert frame[0] == 4 and frame[2] == code, frame
    assert frame[1] == read_head(raw)[1]  # type: ignore[index]
    assert isinstance(frame[3], str) and frame[3] and frame[4] == {}


async def test_v201_unknown_action_names_the_version() -> None:
    peer = Peer(result())
    sent = await answers(V201Guarded("CS1", peer, response_timeout=1), peer, '[2,"a","ChangeConfiguration",{}]')
    assert sent == [[4, "a", "NotImplemented", "ChangeConfiguration is not an OCPP 2.0.1 action", {}]]


@pytest.mark.parametrize("raw", ["", "not json", "[]", '[2,17,"Reset",{}]', '{"a":1}', '[3,"r",{}]', '[3,"r"]',
                                 '[4,"r","GenericError","x",{}]', '[4,"r"]', '["3","r",{}]'])
async def test_v201_no_readable_id_or_a_response_gets_no_answer(raw: str) -> None:
    """A frame with no readable id cannot be answered; a response is never answered (none is in flight)."""
    peer = Peer(result())
    assert await answers(V201Guarded("CS1", peer, response_timeout=1), peer, raw) == []


@pytest.mark.parametrize(("cls", "code"), [(V16ClearCache, "FormationViolation"), (V201ClearCache, "FormatViolation")])
async def test_a_payload_against_the_schema_gets_the_versions_code(cls: type[FrameGuard], code: str) -> None:
    """The library answers schema errors FormatViolation: 1.6 renames it, 2.0.1 keeps it."""
    peer = Peer(result())
    cp = cls("CS1", peer, response_timeout=1)
    sent = await answers(cp, peer, '[2,"s1","ClearCache",{"noSuchField":1}]')
    assert len(sent) == 1 and sent[0][:3] == [4, "s1", code], sent
    assert await answers(cp, peer, '[2,"s2","ClearCache",{}]') == [[3, "s2", {"status": "Accepted"}]]


async def test_v201_a_call_the_library_fails_on_gets_one_internal_error() -> None:
    peer = Peer(result())
    sent = await answers(V201ClearCache("CS1", peer, response_timeout=1), peer,
                         '[2,"i1","Reset",{"type":"Immediate"}]')
    assert sent == [[4, "i1", "InternalError", "the call could not be handled", {}]]


async def test_v201_only_the_answer_to_the_call_in_flight_is_routed(caplog: pytest.LogCaptureFixture) -> None:
    """A stray answer and a late answer to a call that timed out are ignored; the next call gets its own."""
    replies = iter([None, [3, "", {"currentTime": NOW}]])

    def reply(frame: list[Any]) -> list[Any] | None:
        answer = next(replies)
        return None if answer is None else [answer[0], frame[1], *answer[2:]]

    peer = Peer(reply, delay_s=0.05)
    cp = V201Guarded("CS1", peer, response_timeout=0.2)
    receiver = asyncio.create_task(cp.start())
    caplog.set_level(logging.WARNING, "agent.ocpp.routing")
    try:
        peer.push([3, "never-sent", {"currentTime": NOW}])
        with pytest.raises(TimeoutError):
            await cp.call(ocpp.v201.call.Heartbeat(), suppress=False)
        late = peer.calls[0][1]
        second = asyncio.create_task(cp.call(ocpp.v201.call.Heartbeat(), suppress=False))
        await asyncio.sleep(0)  # the second call is on the wire, its answer 50 ms away
        peer.push([3, late, {"currentTime": "1999-01-01T00:00:00Z"}])
        assert (await second).current_time == NOW
    finally:
        receiver.cancel()
    ignored = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ignored an answer")]
    assert ignored == ["ignored an answer to no call in flight (unique id 'never-sent')",
                       f"ignored an answer to no call in flight (unique id '{late}')"]


def boot_replies(*statuses: str) -> Reply:
    """Answer each BootNotification with the next status, anything else with an empty CALLRESULT."""
    left = iter(statuses)

    def reply(frame: list[Any]) -> list[Any]:
        if frame[2] != "BootNotification":
            return [3, frame[1], {}]
        return [3, frame[1], {"currentTime": NOW, "interval": 10, "status": next(left)}]

    return reply


async def test_v201_no_call_is_answered_while_boot_notification_is_rejected() -> None:
    """B03: while Rejected the station does not respond to CSMS messages, malformed ones included."""
    peer = Peer(boot_replies("Rejected", "Accepted"))
    cp = V201ClearCache("CS1", peer, response_timeout=1)
    receiver = asyncio.create_task(cp.start())
    boot = ocpp.v201.call.BootNotification(charging_station={"model": "m", "vendor_name": "v"}, reason="PowerUp")
    try:
        assert (await cp.call(boot, suppress=False)).status == "Rejected"
        assert cp.boot_rejected
        for raw in ('[2,"x1","ClearCache",{}]', '[2,"x2",{}]', '[2,"x3","NoSuchAction",{}]', '[2,"x4","Reset"'):
            assert await answers(cp, peer, raw) == [], raw
        assert (await cp.call(boot, suppress=False)).status == "Accepted"
        assert not cp.boot_rejected
        assert await answers(cp, peer, '[2,"y1","ClearCache",{}]') == [[3, "y1", {"status": "Accepted"}]]
    finally:
        receiver.cancel()
