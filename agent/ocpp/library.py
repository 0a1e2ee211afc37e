"""The private parts of the `ocpp` library the agent relies on, each used in one place here and nowhere else.

The library has no public hook for the frames it sends, for the wait on an answer, for sending a payload
already in wire form, or for running a CALL through its handlers; these wrap its private members
(`_send`, `_get_specific_response`, `_call_lock`, `_unique_id_generator`, `_ocpp_version`,
`_response_timeout`, `_connection`, `_handle_call`) and the module flag `ocpp.messages.ASYNC_VALIDATION`.
tests/agent/test_ocpp_library.py fails, naming the library version, when one of them changes.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import ocpp.messages
from ocpp.charge_point import ChargePoint
from ocpp.messages import Call, MessageType, validate_payload

LIBRARY_VERSION = importlib.metadata.version("ocpp")


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
        the outbox already holds the exact JSON to send.
        """
        message = Call(unique_id=str(self._unique_id_generator()), action=action, payload=payload)
        await validate_payload(message, self._ocpp_version)
        async with self._call_lock:
            await self._send(message.to_json())
            response = await self._get_specific_response(message.unique_id, self._response_timeout)
        if response.message_type_id == MessageType.CallError:
            raise response.to_exception()
        response.action = action
        await validate_payload(response, self._ocpp_version)
        return dict(response.payload)
