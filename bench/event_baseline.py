"""Baseline of the event-to-wire figure: the least a polling charger can do, as its own process.

Usage: python -m bench.event_baseline URL MODBUS_HOST:PORT DEVICE_ID POLL_S

Polls the simulated DC controller's plug register (input register 3) with a plain pymodbus client at the
agent's poll interval and, on every change, sends a StatusNotification as a bare websocket frame to the back
office at URL: the same device, the same interval, the same back office, nothing else. Prints "ready" once
connected, then runs until killed.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sys

from pymodbus.client import AsyncModbusTcpClient
from websockets.asyncio.client import connect

PLUG_REGISTER = 0x0003


def _status_frame(n: int, plugged: bool) -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    payload = {"connectorId": 1, "errorCode": "NoError", "status": "Preparing" if plugged else "Available",
               "timestamp": stamp}
    return json.dumps([2, f"s{n}", "StatusNotification", payload], separators=(",", ":"))


async def run(url: str, host: str, port: int, device_id: int, poll_s: float) -> None:
    """Poll, send on change; the answers are read and dropped."""
    client = AsyncModbusTcpClient(host, port=port, timeout=1.0, retries=0)
    if not await client.connect():
        raise RuntimeError(f"cannot connect to {host}:{port}")
    async with connect(url, subprotocols=["ocpp1.6"], proxy=None, compression=None) as ws:  # type: ignore[list-item]
        await ws.send('[2,"boot","BootNotification",{"chargePointModel":"base","chargePointVendor":"bench"}]')
        await ws.recv()
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        last: bool | None = None
        n = 0
        tick = loop.time()
        while True:
            rr = await client.read_input_registers(PLUG_REGISTER, count=1, device_id=device_id)
            if not rr.isError():
                plugged = bool(rr.registers[0])
                if last is not None and plugged != last:
                    n += 1
                    await ws.send(_status_frame(n, plugged))
                    await ws.recv()
                last = plugged
            tick += poll_s
            await asyncio.sleep(max(0.0, tick - loop.time()))


if __name__ == "__main__":
    host, _, port = sys.argv[2].rpartition(":")
    asyncio.run(run(sys.argv[1], host, int(port), int(sys.argv[3]), float(sys.argv[4])))
