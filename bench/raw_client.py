"""Baselines of the replay figure: the agent's stored frames sent by a plain client, one call in flight.

Usage: python -m bench.raw_client ocpp|bare URL DB; prints {"sent": N, "seconds": S, "cpu_s": C}.

Both read the outbox rows of DB (the prefilled queue the agent drains in its round) in order and send each
as a CALL after a BootNotification, waiting for its answer before the next (OCPP-J allows one in flight):
- `ocpp`: a plain `ocpp.v16.ChargePoint`, the payload given to the library as its call dataclass, as an
  application using the library writes it (the library converts, validates the request and the answer);
- `bare`: a plain `websockets` client sending `[2, id, action, stored text]` and reading the answer: the
  limit of the loopback, the responder and the websockets library.

The library's schema validation mode is set here explicitly, not by importing some module: inline, in the
event loop, as the agent runs it (`ocpp.messages.ASYNC_VALIDATION = False`), so the comparison is of the
same validation work done once (agent) or on every call (library).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import ocpp.messages
from ocpp.charge_point import camel_to_snake_case
from ocpp.v16 import ChargePoint, call
from websockets.asyncio.client import connect


def stored_frames(db: Path) -> list[tuple[str, str]]:
    """(action, payload text) of every queued row, in the order the agent sends them."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [(str(a), str(p)) for a, p in conn.execute("SELECT action, payload FROM outbox ORDER BY id")]
    finally:
        conn.close()


def _request(action: str, payload: dict[str, Any]) -> Any:
    return getattr(call, action)(**camel_to_snake_case(payload))


async def run_ocpp(url: str, frames: list[tuple[str, str]]) -> dict[str, float]:
    """The plain library client; the frames are parsed before the clock starts, as the agent reads them."""
    ocpp.messages.ASYNC_VALIDATION = False  # explicit: inline validation, as the agent runs it
    payloads = [(action, json.loads(text)) for action, text in frames]
    async with connect(url, subprotocols=["ocpp1.6"], proxy=None, compression=None) as ws:  # type: ignore[list-item]
        cp = ChargePoint(url.rsplit("/", 1)[-1], ws)
        receiver = asyncio.create_task(cp.start())
        await cp.call(call.BootNotification(charge_point_model="raw", charge_point_vendor="bench"), suppress=False)
        cpu, start = time.process_time(), time.perf_counter()
        for action, payload in payloads:
            await cp.call(_request(action, payload), suppress=False)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        receiver.cancel()
    return {"sent": len(payloads), "seconds": elapsed, "cpu_s": cpu}


async def run_bare(url: str, frames: list[tuple[str, str]]) -> dict[str, float]:
    """The plain websockets client: the stored text in a CALL frame, the answer's id checked."""
    async with connect(url, subprotocols=["ocpp1.6"], proxy=None, compression=None) as ws:  # type: ignore[list-item]
        await ws.send('[2,"boot","BootNotification",{"chargePointModel":"raw","chargePointVendor":"bench"}]')
        await ws.recv()
        cpu, start = time.process_time(), time.perf_counter()
        for n, (action, text) in enumerate(frames):
            unique_id = str(n)
            await ws.send(f'[2,"{unique_id}","{action}",{text}]')
            answer = json.loads(await ws.recv())
            if answer[0] != 3 or answer[1] != unique_id:
                raise RuntimeError(f"unexpected answer to {unique_id}: {answer!r}"[:200])
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"sent": len(frames), "seconds": elapsed, "cpu_s": cpu}


def main(argv: list[str]) -> int:
    """Entry point."""
    mode, url, db = argv
    frames = stored_frames(Path(db))
    runner = run_ocpp if mode == "ocpp" else run_bare
    print(json.dumps(asyncio.run(runner(url, frames))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
