"""systemd notify: READY after the first hardware poll, WATCHDOG pings from the healthy loop, none when stuck."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from agent.config import parse_config
from agent.daemon import watchdog, wire_services
from agent.hardware import ConnectorDevices, Hardware
from agent.keys import OcppKeys
from agent.runtime import Agent
from agent.sdnotify import notify
from agent.store import Store
from drivers.base import MeterCapabilities, MeterReading, now_stamps
from drivers.gpio import GpioContactor

CONFIG = """
[charge_point]
id = "CP-WD"
vendor = "Test"
model = "Watchdog"

[backoffice]
url = "ws://127.0.0.1:9/ocpp"

[state]
directory = "{state}"

[[connectors]]
id = 1
kind = "ac"
max_current_a = 16.0
[connectors.meter]
driver = "eastron_sdm630"
url = "tcp://127.0.0.1:9"
[connectors.dc_controller]
driver = "modbus_dc"
url = "tcp://127.0.0.1:9"
device_id = 2
[connectors.contactor]
driver = "gpio_contactor"
pin = 22
"""


class HangingMeter:
    """A meter whose read() never returns once `hang` is set: a driver call without a working timeout."""

    name = "meter1"
    capabilities = MeterCapabilities(phases=3, export_energy=False, per_phase_power=False)

    def __init__(self) -> None:
        self.hang = asyncio.Event()
        self.energy_wh = 1000.0

    async def read(self) -> MeterReading:
        if self.hang.is_set():
            await asyncio.Event().wait()
        mono, wall = now_stamps()
        return MeterReading(energy_import_wh=self.energy_wh, power_w=0.0, read_monotonic=mono, read_wall=wall)

    def last_reading(self) -> MeterReading | None:
        return None

    async def close(self) -> None:
        return None


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # systemd asks for a ping every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


async def test_ready_after_first_poll_pings_while_healthy_none_when_stuck(
        tmp_path: Path, notify_socket: socket.socket) -> None:
    Device.pin_factory = MockFactory()
    cfg = parse_config(CONFIG.format(state=tmp_path / "state"))
    store = Store(tmp_path / "agent.db")
    meter = HangingMeter()
    contactor = GpioContactor("contactor1", 22)
    hw = Hardware(connectors={1: ConnectorDevices(1, "ac", meter=meter, contactor=contactor)})  # type: ignore[arg-type]
    agent = Agent(cfg, store, hw, OcppKeys(cfg, store))
    wire_services(agent)
    tasks = [
        asyncio.create_task(agent.run(0.05, on_first_poll=lambda: notify("READY=1"))),
        asyncio.create_task(watchdog(agent, 0.05, stall_after_s=0.5)),
    ]
    try:
        await asyncio.sleep(1.0)
        healthy = received(notify_socket)
        assert healthy[0] == "READY=1"
        assert healthy.count("WATCHDOG=1") >= 5  # about one every 0.1 s
        meter.hang.set()  # the next poll never completes: the main loop is stuck
        await asyncio.sleep(0.8)  # let the stall be detected (0.5 s)
        received(notify_socket)  # pings sent before the stall was detected
        await asyncio.sleep(1.0)
        assert "WATCHDOG=1" not in received(notify_socket)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        contactor.release()
        store.close()
        Device.pin_factory.reset()


async def test_no_ready_before_the_first_poll_succeeds(tmp_path: Path, notify_socket: socket.socket) -> None:
    Device.pin_factory = MockFactory()
    cfg = parse_config(CONFIG.format(state=tmp_path / "state"))
    store = Store(tmp_path / "agent.db")
    meter = HangingMeter()
    meter.hang.set()  # the hardware never answers
    contactor = GpioContactor("contactor1", 22)
    hw = Hardware(connectors={1: ConnectorDevices(1, "ac", meter=meter, contactor=contactor)})  # type: ignore[arg-type]
    agent = Agent(cfg, store, hw, OcppKeys(cfg, store))
    wire_services(agent)
    task = asyncio.create_task(agent.run(0.05, on_first_poll=lambda: notify("READY=1")))
    try:
        await asyncio.sleep(0.5)
        assert "READY=1" not in received(notify_socket)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        contactor.release()
        store.close()
        Device.pin_factory.reset()
