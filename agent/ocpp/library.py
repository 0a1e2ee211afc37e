"""The private parts of the `ocpp` library the agent relies on, each used in one place here and nowhere else.

The library has no public hook for the frames it sends, for the wait on an answer, for sending a payload
already in wire form, or for running a CALL through its handlers; these wrap its private members
(`_send`, `_get_specific_response`, `_call_lock`, `_unique_id_generator`, `_ocpp_version`,
`_response_timeout`, `_connection`, `_handle_call`) and the module flag `ocpp.messages.ASYNC_VALIDATION`.
tests/agent/test_ocpp_library.py fails, naming the library version, when one of them changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

import fastjsonschema
import ocpp.messages
from ocpp.charge_point import ChargePoint
from ocpp.exceptions import GenericError, UnknownCallErrorCodeError
from ocpp.messages import Call, CallError, CallResult, MessageType, get_validator, validate_payload

LIBRARY_VERSION = importlib.metadata.version("ocpp")
LOGGER = logging.getLogger(__name__)

# The library's validator checks no string format; the compiled one must not either (an accepted payload is
# accepted by both, a refused one goes to the library's own check for its verdict and its error).
_NO_FORMATS: dict[str, Callable[[str], bool]] = {
    name: (lambda _text: True) for name in ("date-time", "uri", "email", "hostname", "ipv4", "ipv6", "regex")
}
_ENCODER = json.JSONEncoder(separators=(",", ":"))  # the library's wire form (compact, ASCII)
_checks: dict[tuple[int, str, str], Callable[[Any], Any] | None] = {}


def _compiled_check(kind: int, action: str, ocpp_version: str) -> Callable[[Any], Any] | None:
    """The library's schema of an action's request or answer compiled once into Python (fastjsonschema):
    about 40x cheaper per message than its jsonschema validator (docs/bench.md); None when it does not compile."""
    key = (kind, ocpp_version, action)
    if key not in _checks:
        try:
            schema = get_validator(kind, action, ocpp_version).schema
            # use_default=False: the check must not write the schema's defaults into the stored payload it checks
            _checks[key] = fastjsonschema.compile(schema, formats=_NO_FORMATS, use_default=False)
        except Exception as err:  # the library's own check stays in force for this action
            LOGGER.warning("schema of %s %s not compiled (%s): the library's validator checks it", ocpp_version,
                           action, err)
            _checks[key] = None
    return _checks[key]


async def warm_checks(ocpp_version: str, actions: Iterable[str]) -> None:
    """Compile the request and answer checks of these actions ahead, one per event-loop step (the loop waits
    for one compile at most, never for all of them); cached for the process.

    The session calls it when a connection opens with messages queued, for the actions at the head of the
    queue: a first use would stall the loop for the compile (3 to 50 ms here per schema, ten times that on a
    Pi) in the middle of an exchange, e.g. right after a StartTransaction answer. Only those: a compile's
    peak memory stays in the process (about 4 MB for 1.6 MeterValues). A thread does not help: while it
    compiles, every wait of the loop costs up to the interpreter's switch interval (measured: worse stalls).
    """
    for action in sorted(set(actions)):
        for kind in (MessageType.Call, MessageType.CallResult):
            if (kind, ocpp_version, action) not in _checks:
                _compiled_check(kind, action, ocpp_version)
                await asyncio.sleep(0)


def _request_check(action: str, ocpp_version: str) -> Callable[[Any], Any] | None:
    """The compiled check of an action's request."""
    return _compiled_check(MessageType.Call, action, ocpp_version)


def _passes(check: Callable[[Any], Any] | None, payload: Any) -> bool:
    if check is None:
        return False
    try:
        check(payload)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def _is_answer(frame: list[Any]) -> bool:
    """A CALLRESULT [3, id, payload] or a CALLERROR [4, id, code, description(, details)]."""
    if len(frame) < 2 or not isinstance(frame[1], str) or isinstance(frame[0], bool):
        return False
    return (frame[0] == MessageType.CallResult and len(frame) == 3) or (
        frame[0] == MessageType.CallError and len(frame) in (4, 5))


def inline_schema_validation() -> None:
    """Validate schemas in the event loop; called once by whoever starts the agent or a back office.

    A thread-pool hop per message costs more than the validation itself (about 3x the throughput when the
    queue drains after an outage; see docs/bench.md). Not done at import: importing must change nothing.
    """
    ocpp.messages.ASYNC_VALIDATION = False


class HookedChargePoint(ChargePoint):
    """The library's ChargePoint with its private send and response wait turned into hooks of ours.

    Put it before the version's ChargePoint: `class V16ChargePoint(HookedChargePoint, ocpp.v16.ChargePoint)`.
    """

    async def _send(self, message: str) -> None:
        # every frame the library sends (our CALLs, its CALLRESULTs and CALLERRORs) goes through _send
        await self.send_frame(message)

    async def _get_specific_response(self, unique_id: str, timeout: float) -> Any:
        try:
            return await super()._get_specific_response(unique_id, timeout)
        finally:
            self.response_waited(unique_id)

    async def send_frame(self, message: str) -> None:
        """Put one frame on the websocket (override to look at it first)."""
        await self._connection.send(message)

    def response_waited(self, unique_id: str) -> None:
        """The wait for the answer to `unique_id` ended (answered, timed out or cancelled)."""

    def handles(self, action: str) -> bool:
        """Whether an `@on` or `@after` handler is registered for the action (the library's route map)."""
        return action in self.route_map

    async def handle_call(self, message: Call) -> None:
        """Run a well-formed CALL through the library's handlers (`@on`, then `@after`)."""
        await self._handle_call(message)

    _answer: asyncio.Future[list[Any]] | None = None  # call_raw's wait for the answer to _answer_id
    _answer_id: str | None = None

    def answered(self, unique_id: str, frame: list[Any]) -> bool:
        """Hand a parsed CALLRESULT or CALLERROR to call_raw's call in flight; False when it is not its answer
        (the library's own wait, for call(), gets it instead)."""
        waiter = self._answer
        if waiter is None or waiter.done() or unique_id != self._answer_id:
            return False
        waiter.set_result(frame)
        return True

    async def route_message(self, raw_msg: str | bytes) -> None:
        # without a frame check in front (FrameGuard parses and calls answered() itself): call_raw's answer
        if self._answer is not None:
            with contextlib.suppress(ValueError, RecursionError):
                frame = json.loads(raw_msg)
                if isinstance(frame, list) and _is_answer(frame) and self.answered(frame[1], frame):
                    return
        await super().route_message(raw_msg)

    async def warm_checks(self, actions: Iterable[str]) -> None:
        """Compile the checks of these actions in this version ahead (see warm_checks())."""
        await warm_checks(self._ocpp_version, actions)

    def wire_payload(self, action: str, payload: dict[str, Any]) -> str | None:
        """The payload's wire text when it passes the compiled request check; None when that check refuses it
        (then call_raw asks the library's validator, which decides and raises its own error)."""
        if not _passes(_request_check(action, self._ocpp_version), payload):
            return None
        return _ENCODER.encode(payload)

    async def call_raw(self, action: str, payload: dict[str, Any], *, text: str | None = None,
                       while_waiting: Callable[[], None] | None = None) -> dict[str, Any]:
        """Send a stored wire-form payload as a CALL and return the CALLRESULT payload (camelCase).

        The same contract as the library's call(suppress=False) (one call in flight, schema validation both
        ways, OCPPError for a CALLERROR, TimeoutError without an answer) without the dataclass round trip:
        the outbox already holds the exact JSON to send. Both ways are checked against the library's schemas
        compiled once (the library's validator costs about 0.5 ms per MeterValues, most of a replay's time);
        a payload the compiled check refuses goes to the library's validator, which decides and raises its
        own error. The answer comes straight from the frame check (`answered`), parsed once, instead of
        through the library's response queue and its wait task.

        `text`: this payload's wire_payload(), when the caller prepared it already. `while_waiting`: run once
        the CALL is sent, before the answer is awaited (the sender prepares its next message there: that work
        then overlaps with the back office's instead of adding to each exchange).
        """
        version = self._ocpp_version
        unique_id = str(self._unique_id_generator())
        if text is None:
            text = self.wire_payload(action, payload)
            if text is None:
                await validate_payload(Call(unique_id=unique_id, action=action, payload=payload), version)
                text = _ENCODER.encode(payload)  # the library accepted what the compiled check did not
        frame_text = f"[2,{_ENCODER.encode(unique_id)},{_ENCODER.encode(action)},{text}]"
        async with self._call_lock:
            waiter: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            self._answer, self._answer_id = waiter, unique_id
            try:
                await self._send(frame_text)
                if while_waiting is not None:
                    try:
                        while_waiting()
                    except Exception:  # preparing ahead is an optimisation: the exchange goes on
                        LOGGER.exception("work while waiting for the answer to %s failed", action)
                async with asyncio.timeout(self._response_timeout):
                    frame = await waiter
            finally:
                self._answer = self._answer_id = None
                self.response_waited(unique_id)
        if frame[0] == MessageType.CallError:
            try:
                error = CallError(*frame[1:]).to_exception()
            except UnknownCallErrorCodeError:
                # a code OCPP does not name is still the back office refusing the call: a failed attempt
                error = GenericError(description=f"unknown CALLERROR code {str(frame[2])[:40]!r}: "
                                                 f"{str(frame[3])[:200]}")
            raise error
        answer = frame[2]
        if not (isinstance(answer, dict) and _passes(_compiled_check(MessageType.CallResult, action, version),
                                                     answer)):
            response = CallResult(unique_id, answer, action)
            await validate_payload(response, version)
            answer = response.payload
        return dict(answer)
