"""The private parts of the `ocpp` library that agent/ocpp/library.py wraps: each test fails, naming the library
version, when an upgrade changed one of them (then adapt library.py, and only it)."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import ocpp.messages
import ocpp.v16
import ocpp.v201
import pytest
from ocpp.charge_point import ChargePoint
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, validate_payload
from ocpp.routing import after, on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action

from agent.ocpp.library import LIBRARY_VERSION, HookedChargePoint, inline_schema_validation
from tests.agent.ocpp_peer import Peer, PeerChargePoint, result

ROOT = Path(__file__).resolve().parents[2]


def changed(what: str) -> str:
    """The failure message: which private part changed in which library version."""
    return (f"ocpp {LIBRARY_VERSION} changed {what}, which agent/ocpp/library.py relies on: "
            "adapt the wrapper there (and only there)")


def params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


@pytest.mark.parametrize("base, version", [(ocpp.v16.ChargePoint, "1.6"), (ocpp.v201.ChargePoint, "2.0.1")])
async def test_private_attributes_of_a_chargepoint(base: type[Any], version: str) -> None:
    connection = object()
    cp = base("CP1", connection, response_timeout=7)
    assert isinstance(getattr(cp, "_call_lock", None), asyncio.Lock), changed("ChargePoint._call_lock")
    generator = getattr(cp, "_unique_id_generator", None)
    assert callable(generator) and str(generator()), changed("ChargePoint._unique_id_generator")
    assert getattr(cp, "_response_timeout", None) == 7, changed("ChargePoint._response_timeout")
    assert getattr(cp, "_connection", None) is connection, changed("ChargePoint._connection")
    assert getattr(cp, "_ocpp_version", None) == version, changed("ChargePoint._ocpp_version")


def test_private_methods_keep_their_signatures() -> None:
    expected = {"_send": ["self", "message"], "_get_specific_response": ["self", "unique_id", "timeout"],
                "_handle_call": ["self", "msg"]}
    for name, names in expected.items():
        method = getattr(ChargePoint, name, None)
        assert method is not None and inspect.iscoroutinefunction(method), changed(f"ChargePoint.{name}")
        assert params(method) == names, changed(f"the signature of ChargePoint.{name}: {params(method)}")


async def test_the_library_sends_and_waits_through_the_hooks() -> None:
    """call() must go through _send and _get_specific_response, or HookedChargePoint's hooks stay silent."""
    seen: list[str] = []
    waited: list[str] = []

    class Spy(PeerChargePoint):
        async def send_frame(self, message: str) -> None:
            seen.append(message)
            await super().send_frame(message)

        def response_waited(self, unique_id: str) -> None:
            waited.append(unique_id)

    peer = Peer(result({"currentTime": "2024-01-01T00:00:00Z"}))
    cp = Spy("CP1", peer, response_timeout=2)
    receiver = asyncio.create_task(cp.start())
    try:
        answer = await cp.call(call.Heartbeat(), suppress=False)
    finally:
        receiver.cancel()
    assert answer.current_time == "2024-01-01T00:00:00Z"
    assert len(seen) == 1 and seen[0].startswith("[2,"), changed("ChargePoint.call (it no longer calls _send)")
    assert waited == [peer.calls[0][1]], changed("ChargePoint.call (it no longer calls _get_specific_response)")


async def test_call_raw_answers_times_out_and_raises_callerrors() -> None:
    replies = iter([[3, "", {"status": "Accepted"}], None, [4, "", "InternalError", "no", {}]])

    def reply(frame: list[Any]) -> list[Any] | None:
        answer = next(replies)
        return None if answer is None else [answer[0], frame[1], *answer[2:]]

    peer = Peer(reply)
    cp = PeerChargePoint("CP1", peer, response_timeout=0.2)
    receiver = asyncio.create_task(cp.start())
    try:
        assert await cp.call_raw("DataTransfer", {"vendorId": "v"}) == {"status": "Accepted"}
        with pytest.raises(TimeoutError):
            await cp.call_raw("DataTransfer", {"vendorId": "v"})
        with pytest.raises(OCPPError) as refused:
            await cp.call_raw("DataTransfer", {"vendorId": "v"})
    finally:
        receiver.cancel()
    assert refused.value.code == "InternalError"
    assert [f[2] for f in peer.calls] == ["DataTransfer"] * 3
    assert len({f[1] for f in peer.calls}) == 3, changed("ChargePoint._unique_id_generator (ids repeat)")


async def test_handle_call_runs_the_handlers_and_answers_through_the_hook() -> None:
    ran: list[str] = []

    class Handled(PeerChargePoint):
        @on(Action.clear_cache)
        def on_clear_cache(self, **_: Any) -> Any:
            ran.append("on")
            return call_result.ClearCache(status="Accepted")

        @after(Action.clear_cache)
        def after_clear_cache(self, **_: Any) -> None:
            ran.append("after")

    peer = Peer(result())
    cp = Handled("CP1", peer, response_timeout=1)
    await cp.handle_call(Call(unique_id="u1", action="ClearCache", payload={}))
    assert ran == ["on", "after"], changed("ChargePoint._handle_call (handlers not run)")
    assert peer.sent == [[3, "u1", {"status": "Accepted"}]], changed("ChargePoint._handle_call (answer not sent)")


@pytest.mark.parametrize("base", [ocpp.v16.ChargePoint, ocpp.v201.ChargePoint])
def test_handles_reads_the_route_map_by_action_name(base: type[Any]) -> None:
    """FrameGuard answers NotImplemented/NotSupported itself for an action `handles` says has no handler."""

    class Handled(HookedChargePoint, base):  # type: ignore[misc, valid-type]
        @on("ClearCache")
        def on_clear_cache(self, **_: Any) -> Any:
            return None

    cp = Handled("CP1", object(), response_timeout=1)
    assert cp.handles("ClearCache"), changed("ChargePoint.route_map (no longer keyed by the action name)")
    assert not cp.handles("Reset") and not cp.handles("NoSuchAction"), changed("ChargePoint.route_map")


@pytest.mark.parametrize("base", [ocpp.v16.ChargePoint, ocpp.v201.ChargePoint])
async def test_a_schema_violation_raises_format_violation_out_of_handle_call(base: type[Any]) -> None:
    """FrameGuard turns it into the version's code (1.6: FormationViolation) and answers it once."""

    class Handled(HookedChargePoint, base):  # type: ignore[misc, valid-type]
        @on("ClearCache")
        def on_clear_cache(self, **_: Any) -> Any:
            raise AssertionError("the handler ran on a payload against the schema")

    peer = Peer(result())
    cp = Handled("CP1", peer, response_timeout=1)
    with pytest.raises(OCPPError) as refused:
        await cp.handle_call(Call(unique_id="u1", action="ClearCache", payload={"noSuchField": 1}))
    assert refused.value.code == "FormatViolation", changed(f"the schema error code ({refused.value.code})")
    assert peer.sent == [], changed("ChargePoint._handle_call (it answered a schema error itself)")


async def test_inline_schema_validation_runs_validation_in_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(getattr(ocpp.messages, "ASYNC_VALIDATION", None), bool), changed("messages.ASYNC_VALIDATION")
    monkeypatch.setattr(ocpp.messages, "ASYNC_VALIDATION", True)  # restored after the test
    inline_schema_validation()
    validation = validate_payload(Call(unique_id="u1", action="Heartbeat", payload={}), "1.6")
    # no thread-pool hop: the coroutine finishes without suspending once
    with pytest.raises(StopIteration):
        validation.send(None)
    assert ocpp.messages.ASYNC_VALIDATION is False


def test_importing_the_agent_and_the_back_office_changes_no_library_global() -> None:
    code = ("import ocpp.messages, agent.daemon, agent.ocpp.session, agent.ocpp.v16.connection, simulator.backoffice, "
            "bench.rig; assert ocpp.messages.ASYNC_VALIDATION is True, 'set at import'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]

