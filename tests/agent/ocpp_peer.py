"""An in-memory back office for tests of agent/ocpp: a websocket stand-in that answers our CALLs as told."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from ocpp.v16 import ChargePoint

from agent.ocpp.library import HookedChargePoint

# What the peer does with one CALL frame [2, id, action, payload]: an answer frame, or None to stay silent.
Reply = Callable[[list[Any]], list[Any] | None]


def result(payload: dict[str, Any] | None = None) -> Reply:
    """Answer every CALL with a CALLRESULT."""
    return lambda frame: [3, frame[1], payload or {}]


class Peer:
    """The websocket a ChargePoint talks to: records our frames, answers CALLs after `delay_s`."""

    def __init__(self, reply: Reply, delay_s: float = 0.0) -> None:
        self.reply = reply
        self.delay_s = delay_s
        self.sent: list[list[Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._inbox: asyncio.Queue[str] = asyncio.Queue()

    @property
    def calls(self) -> list[list[Any]]:
        """The CALLs we sent, in order."""
        return [f for f in self.sent if f[0] == 2]

    async def send(self, message: str) -> None:
        frame = json.loads(message)
        self.sent.append(frame)
        if frame[0] != 2:
            return
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        answer = self.reply(frame)
        if answer is None:
            self.in_flight -= 1  # dropped: the caller times out
            return
        asyncio.get_running_loop().call_later(self.delay_s, self._answer, answer)

    def _answer(self, answer: list[Any]) -> None:
        self.in_flight -= 1
        self._inbox.put_nowait(json.dumps(answer))

    def push(self, frame: list[Any]) -> None:
        """Send a frame to the charge point (a CALL of the back office)."""
        self._inbox.put_nowait(json.dumps(frame))

    async def recv(self) -> str:
        return await self._inbox.get()


class PeerChargePoint(HookedChargePoint, ChargePoint):
    """The library's 1.6 ChargePoint with the agent's hooks and no handlers."""
