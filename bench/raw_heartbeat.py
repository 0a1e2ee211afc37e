"""Baseline of the replay figure: a plain `ocpp` 1.6 ChargePoint doing Heartbeat round trips to a URL.

Usage: python -m bench.raw_heartbeat URL SECONDS [heartbeat|meter]; prints {"calls": N, "seconds": S}.
"meter" sends the replay's MeterValues payload instead: the part of the gap that the payload itself costs.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from ocpp.charge_point import camel_to_snake_case
from ocpp.v16 import ChargePoint, call
from websockets.asyncio.client import connect

from agent.ocpp.library import inline_schema_validation
from bench.rig import meter_values_payload


def _message(mode: str, n: int) -> call.Heartbeat | call.MeterValues:
    if mode == "heartbeat":
        return call.Heartbeat()
    payload = meter_values_payload(n, 12_345_600.0 + n)
    return call.MeterValues(**camel_to_snake_case(payload))


async def run(url: str, seconds: float, mode: str = "heartbeat") -> dict[str, float]:
    """Boot, then as many Heartbeats as fit in `seconds`, one in flight (as OCPP-J allows)."""
    inline_schema_validation()  # as the agent and the back office run it
    async with connect(url, subprotocols=["ocpp1.6"], proxy=None) as ws:  # type: ignore[list-item]
        cp = ChargePoint(url.rsplit("/", 1)[-1], ws)
        receiver = asyncio.create_task(cp.start())
        await cp.call(call.BootNotification(charge_point_model="raw", charge_point_vendor="bench"))
        for _ in range(50):  # warm-up: first calls load schemas and spin up the validation thread pool
            await cp.call(_message(mode, 0))
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            await cp.call(_message(mode, calls), suppress=False)
            calls += 1
        elapsed = time.perf_counter() - start
        receiver.cancel()
    return {"calls": calls, "seconds": elapsed}


if __name__ == "__main__":
    mode = sys.argv[3] if len(sys.argv) > 3 else "heartbeat"
    print(json.dumps(asyncio.run(run(sys.argv[1], float(sys.argv[2]), mode))), flush=True)
