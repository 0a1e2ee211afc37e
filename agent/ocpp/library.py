"""The private parts of the `ocpp` library the agent relies on, each used in one place here and nowhere else.

The library has no public hook for the frames it sends, for the wait on an answer, for sending a payload
already in wire form, or for running a CALL through its handlers; these wrap its private members
(`_send`, `_get_specific_response`, `_call_lock`, `_unique_id_generator`, `_ocpp_version`,
`_response_timeout`, `_connection`, `_handle_call`) and the module flag `ocpp.messages.ASYNC_VALIDATION`.
tests/agent/test_ocpp_library.py fails, naming the library version, when one of them changes.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable
from typing import Any

import fastjsonschema
import ocpp.messages
from ocpp.charge_point import ChargePoint
from ocpp.messages import Call, MessageType, get_validator, validate_payload

LIBRARY_VERSION = importlib.metadata.version("ocpp")
LOGGER = logging.getLogger(__name__)

# The library's validator checks no string format; the compiled one must not either (an accepted payload is
# accepted by both, a refused one goes to the library's own check for its verdict and its error).
_NO_FORMATS: dict[str, Callable[[str], bool]] = {
    name: (lambda _text: True) for name in ("date-time", "uri", "email", "hostname", "ipv4", "ipv6", "regex")
}
_request_checks: dict[tuple[str, str], Callable[[Any], Any] | None] = {}


def _request_check(action: str, ocpp_version: str) -> Callable[[Any], Any] | None:
    """The library's request schema of an action compiled once into Python (fastjsonschema): about 40x
    cheaper per message than its jsonschema validator (docs/bench.md); None when it does not compile."""
    key = (ocpp_version, action)
    if key not in _request_checks:
        try:
            schema = get_validator(MessageType.Call, action, ocpp_version).schema
            _request_checks[key] = fastjsonschema.compile(schema, formats=_NO_FORMATS)
        except Exception as err:  # the library's own check stays in force for this action
            LOGGER.warning("schema of %s %s not compiled (%s): the library's validator checks it", ocpp_version,
                           action, err)
            _request_checks[key] = None
    return _request_checks[key]


def _passes(check: Callable[[Any], Any] | None, payload: dict[str, Any]) -> bool:
    if check is None:
        return False
    try:
        check(payload)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


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

    async def call_raw(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a stored wire-form payload as a CALL and return the CALLRESULT payload (camelCase).

        The same contract as the library's call(suppress=False) (one call in flight, schema validation both
        ways, OCPPError for a CALLERROR, TimeoutError without an answer) without the dataclass round trip:
        the outbox already holds the exact JSON to send. The request is checked against the library's schema
        compiled once (the library's validator costs about 0.5 ms per MeterValues, most of a replay's time);
        a payload the compiled check refuses goes to the library's validator, which decides and raises its
        own error.
        """
        message = Call(unique_id=str(self._unique_id_generator()), action=action, payload=payload)
        if not _passes(_request_check(action, self._ocpp_version), payload):
            await validate_payload(message, self._ocpp_version)
        async with self._call_lock:
            await self._send(message.to_json())
            response = await self._get_specific_response(message.unique_id, self._response_timeout)
        if response.message_type_id == MessageType.CallError:
            raise response.to_exception()
        response.action = action
        await validate_payload(response, self._ocpp_version)
        return dict(response.payload)
