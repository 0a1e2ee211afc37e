"""The lean back office of the replay figures: answers every OCPP 1.6 CALL at once, without checks or recording.

Run as its own process (`python -m bench.responder`); it prints {"port": N} on stdout, then reads one command
per line on stdin and answers each with one JSON line:

    stats PATH       counts and times of the connection at PATH (e.g. /ocpp/CP-TEST-1), see `Peer.stats`
    reset PATH       forget PATH's counts and pings
    ping PATH MS     websocket-ping PATH every MS milliseconds (0 stops); each round trip is kept
    quit

What it counts is only what the figures need: the number of transaction messages answered, when the first
arrived and when the last answer went out (perf_counter and wall time), when the StartTransaction answer
went out and the next message arrived, and ping round trips. A ping's round trip is the time the agent's
event loop took to get to the ping frame: the longest one is the longest stall it had while pinged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

TX_ACTIONS = frozenset({"StartTransaction", "MeterValues", "StopTransaction"})
MAX_FRAME = 65_536  # the agent's frames are far smaller; a longer one is not ours
MAX_PINGS = 200_000  # a bound on the kept round trips (about half an hour at 10 ms)
NOW_ISO = "2026-01-01T00:00:00.000Z"  # the answers need a currentTime; the agent's clock is not measured here


def answer(action: str, tx_id: int) -> dict[str, Any]:
    """A schema-valid CALLRESULT payload for a 1.6 action (the agent validates what it receives)."""
    accepted = {"idTagInfo": {"status": "Accepted"}}
    if action == "BootNotification":
        return {"status": "Accepted", "currentTime": NOW_ISO, "interval": 300}
    if action == "Heartbeat":
        return {"currentTime": NOW_ISO}
    if action == "StartTransaction":
        return {"transactionId": tx_id, **accepted}
    if action in ("Authorize", "StopTransaction"):
        return accepted
    if action == "DataTransfer":
        return {"status": "Accepted"}
    return {}  # StatusNotification, MeterValues, the notifications: an empty object


def reply(frame: str | bytes, tx_id: int) -> tuple[str, str | None]:
    """The answer frame to one received frame and the CALL's action (None when it was not a CALL)."""
    message = json.loads(frame)
    if not isinstance(message, list) or len(message) < 4 or message[0] != 2:
        return "", None
    unique_id, action = message[1], str(message[2])
    return json.dumps([3, unique_id, answer(action, tx_id)], separators=(",", ":")), action


@dataclass
class Peer:
    """What is counted for one connection path."""

    counts: dict[str, int] = field(default_factory=dict)
    tx: int = 0
    first_tx: float | None = None  # perf_counter when the first transaction message arrived
    last_tx_answer: float | None = None
    first_tx_wall: float | None = None
    last_tx_answer_wall: float | None = None
    start_answer: float | None = None  # the first StartTransaction answer went out
    after_start: float | None = None  # the next frame after it arrived
    pings: list[tuple[float, float]] = field(default_factory=list)  # (sent, round trip s)
    connected: bool = False

    def stats(self) -> dict[str, Any]:
        """The JSON form; ping round trips as [sent perf_counter, seconds]."""
        return {"counts": self.counts, "tx": self.tx, "first_tx": self.first_tx, "last_tx_answer": self.last_tx_answer,
                "first_tx_wall": self.first_tx_wall, "last_tx_answer_wall": self.last_tx_answer_wall,
                "start_answer": self.start_answer, "after_start": self.after_start, "pings": self.pings,
                "connected": self.connected, "now": time.perf_counter()}


class Responder:
    """The server and its per-path counters."""

    def __init__(self) -> None:
        self.peers: dict[str, Peer] = {}
        self.pingers: dict[str, asyncio.Task[None]] = {}
        self.connections: dict[str, ServerConnection] = {}
        self.next_tx = 1

    def peer(self, path: str) -> Peer:
        return self.peers.setdefault(path, Peer())

    async def handle(self, ws: ServerConnection) -> None:
        """Answer every frame of one connection, one at a time, as it arrives."""
        path = ws.request.path if ws.request is not None else "/"
        self.connections[path] = ws
        self.peer(path).connected = True
        try:
            async for frame in ws:
                received = time.perf_counter()
                peer = self.peer(path)
                if peer.start_answer is not None and peer.after_start is None:
                    peer.after_start = received
                text, action = reply(frame, self.next_tx)
                if action is None:
                    continue
                if action == "StartTransaction":
                    self.next_tx += 1
                if action in TX_ACTIONS and peer.first_tx is None:
                    peer.first_tx, peer.first_tx_wall = received, time.time()
                await ws.send(text)
                peer.counts[action] = peer.counts.get(action, 0) + 1
                if action in TX_ACTIONS:
                    peer.tx += 1
                    peer.last_tx_answer, peer.last_tx_answer_wall = time.perf_counter(), time.time()
                    if action == "StartTransaction" and peer.start_answer is None:
                        peer.start_answer = peer.last_tx_answer
        except Exception:
            pass
        finally:
            if self.connections.get(path) is ws:
                del self.connections[path]
                self.peer(path).connected = False

    async def _ping_loop(self, path: str, interval_s: float) -> None:
        """One ping every interval, never waiting for the previous pong: each measures its own round trip."""
        waiters: set[asyncio.Task[None]] = set()

        async def one(ws: ServerConnection) -> None:
            sent = time.perf_counter()
            with contextlib.suppress(Exception):
                pong = await ws.ping()
                await pong
                pings = self.peer(path).pings
                if len(pings) < MAX_PINGS:
                    pings.append((sent, time.perf_counter() - sent))

        try:
            while True:
                ws = self.connections.get(path)
                if ws is not None:
                    task = asyncio.create_task(one(ws))
                    waiters.add(task)
                    task.add_done_callback(waiters.discard)
                await asyncio.sleep(interval_s)
        finally:
            for task in waiters:
                task.cancel()

    def command(self, line: str) -> dict[str, Any]:
        """One control command; returns its JSON answer."""
        words = line.split()
        if not words:
            return {"error": "empty command"}
        if words[0] == "stats" and len(words) == 2:
            return self.peer(words[1]).stats()
        if words[0] == "reset" and len(words) == 2:
            connected = self.peer(words[1]).connected
            self.peers[words[1]] = Peer(connected=connected)
            return {"ok": True}
        if words[0] == "ping" and len(words) == 3:
            old = self.pingers.pop(words[1], None)
            if old is not None:
                old.cancel()
            interval_ms = float(words[2])
            if interval_ms > 0:
                self.pingers[words[1]] = asyncio.create_task(self._ping_loop(words[1], interval_ms / 1000))
            return {"ok": True}
        return {"error": f"unknown command {line.strip()[:80]!r}"}


async def main() -> None:
    """Serve on a free loopback port until `quit` or the end of stdin."""
    responder = Responder()
    async with serve(responder.handle, "127.0.0.1", 0, subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                     max_size=MAX_FRAME, ping_interval=None, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = (await reader.readline()).decode()
            if not line or line.strip() == "quit":
                break
            sys.stdout.write(json.dumps(responder.command(line)) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
