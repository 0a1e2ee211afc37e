"""Helper process of the meter figure: one simulated meter served over Modbus TCP; prints its port."""

from __future__ import annotations

import asyncio
import json
import sys

from simulator.devices.meter import SimMeter
from simulator.devices.modbus_server import ModbusDeviceServer


async def serve(model: str) -> None:
    """Serve until killed."""
    meter = SimMeter(model, device_id=1)
    meter.set_load([125.0, 125.0, 125.0])
    server = ModbusDeviceServer({1: meter.bank})
    port = await server.start_tcp()
    print(json.dumps({"port": port}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1] if len(sys.argv) > 1 else "eastron_sdm630"))
