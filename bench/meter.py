"""Meter polling: ModbusMeter.read() against a raw pymodbus client reading the same blocks, same server."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time

from pymodbus.client import AsyncModbusTcpClient

from bench.common import Figure, ratio
from bench.rig import ROOT, env_quiet
from drivers.meters.codec import load_model
from drivers.meters.modbus_meter import ModbusMeter
from drivers.transport import ModbusBus, parse_endpoint

MODEL = "eastron_sdm630"  # the DC connector's meter in the scenario
ROUND_S = 2.0
ROUNDS = 2
TARGET_RATIO = 0.8


async def _driver_round(meter: ModbusMeter, seconds: float) -> tuple[int, float]:
    blocks = len(meter.model.blocks)
    n, begin = 0, time.perf_counter()
    while time.perf_counter() - begin < seconds:
        await meter.read()
        n += blocks
    return n, time.perf_counter() - begin


async def _raw_round(client: AsyncModbusTcpClient, plan: list[tuple[int, int]], function: int,
                     seconds: float) -> tuple[int, float]:
    read = client.read_input_registers if function == 4 else client.read_holding_registers
    n, begin = 0, time.perf_counter()
    while time.perf_counter() - begin < seconds:
        for address, count in plan:
            rr = await read(address, count=count, device_id=1)
            if rr.isError():
                raise RuntimeError(f"raw read of {count} @{address} failed: {rr}")
        n += len(plan)
    return n, time.perf_counter() - begin


async def run() -> list[Figure]:
    """Figure 6: block reads per second, the server in its own process."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    proc = subprocess.Popen([sys.executable, "-m", "bench.meter_server", MODEL], cwd=ROOT, env=env_quiet(),
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        port = json.loads(await asyncio.to_thread(proc.stdout.readline))["port"]
        url = f"tcp://127.0.0.1:{port}"
        model = load_model(MODEL)
        plan = [(b.address, b.count) for b in model.blocks]
        bus = ModbusBus(parse_endpoint(url))
        meter = ModbusMeter("meter1", model, bus, 1)
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0, reconnect_delay=0)
        if not await client.connect():
            raise RuntimeError(f"raw client cannot connect to {url}")
        await meter.read()  # connect and warm up both sides
        await _raw_round(client, plan, model.function, 0.2)
        totals = {"driver": [0, 0.0], "raw": [0, 0.0]}
        for _ in range(ROUNDS):
            n, t = await _raw_round(client, plan, model.function, ROUND_S)
            totals["raw"][0] += n
            totals["raw"][1] += t
            n, t = await _driver_round(meter, ROUND_S)
            totals["driver"][0] += n
            totals["driver"][1] += t
        client.close()
        await bus.close()
    finally:
        proc.terminate()
        proc.wait(10)
    driver = totals["driver"][0] / totals["driver"][1]
    raw = totals["raw"][0] / totals["raw"][1]
    return [Figure("meter block reads (ModbusMeter.read)", driver, "reads/s", raw, ratio(driver, raw),
                   f"ratio >= {TARGET_RATIO}", driver >= TARGET_RATIO * raw,
                   f"{MODEL}, {len(plan)} blocks {plan}; baseline: AsyncModbusTcpClient, same blocks, same server")]
