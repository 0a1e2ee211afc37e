"""E-stop on DC: the controller's emergency shutdown goes out from the GPIO callback, before the contactor opens."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockConnectedPin, MockFactory

from agent.hardware import ConnectorDevices, Hardware
from drivers.gpio import GpioContactor, GpioEmergencyStop

COIL, MIRROR, ESTOP = 17, 27, 4


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    """gpiozero's own mock pins as the global factory."""
    previous = Device.pin_factory
    mock = MockFactory()
    Device.pin_factory = mock
    yield mock
    mock.reset()
    Device.pin_factory = previous


class RecordingController:
    """A DC controller that notes, when its emergency shutdown arrives, whether the contactor was still closed."""

    name = "controller1"

    def __init__(self, coil: Any) -> None:
        self.coil = coil
        self.shutdowns: list[bool] = []
        self.resets = 0

    async def emergency_shutdown(self) -> None:
        self.shutdowns.append(bool(self.coil.state))

    async def reset_faults(self) -> None:
        self.resets += 1


async def test_estop_sends_the_dc_emergency_shutdown_before_the_contactor_opens(factory: MockFactory) -> None:
    mirror = factory.pin(MIRROR)
    coil = factory.pin(COIL, pin_class=MockConnectedPin, input_pin=mirror)
    contactor = GpioContactor.from_config("contactor1", {"pin": COIL, "feedback_pin": MIRROR, "settle_s": 0.0})
    estop = GpioEmergencyStop.from_config("estop", {"pin": ESTOP})
    factory.pin(ESTOP).drive_low()  # released
    dc = RecordingController(coil)
    hw = Hardware(connectors={1: ConnectorDevices(1, "dc", meter=None, contactor=contactor, dc=dc)},  # type: ignore[arg-type]
                  estop=estop)
    try:
        hw.bind_dc_shutdown(asyncio.get_running_loop())
        contactor.close()
        assert coil.state
        # the edge arrives in the pin library's own thread, while the event loop runs
        edge = threading.Thread(target=factory.pin(ESTOP).drive_high, name="gpio")
        edge.start()
        while edge.is_alive():
            await asyncio.sleep(0.001)
        edge.join()
        assert dc.shutdowns == [True], "the shutdown must reach the controller while the contactor is still closed"
        assert not coil.state
        await hw.reset_controllers()
        assert dc.resets == 1
    finally:
        estop.close()
        contactor.release()


async def test_estop_opens_the_contactor_even_when_the_controller_never_answers(factory: MockFactory) -> None:
    factory.pin(MIRROR)
    coil = factory.pin(COIL, pin_class=MockConnectedPin, input_pin=factory.pin(MIRROR))
    contactor = GpioContactor.from_config("contactor1", {"pin": COIL, "feedback_pin": MIRROR, "settle_s": 0.0})
    estop = GpioEmergencyStop.from_config("estop", {"pin": ESTOP})
    factory.pin(ESTOP).drive_low()

    class Hanging(RecordingController):
        async def emergency_shutdown(self) -> None:
            await asyncio.Event().wait()

    hw = Hardware(connectors={1: ConnectorDevices(1, "dc", meter=None, contactor=contactor,  # type: ignore[arg-type]
                                                  dc=Hanging(coil))}, estop=estop)
    try:
        hw.bind_dc_shutdown(asyncio.get_running_loop())
        contactor.close()
        edge = threading.Thread(target=factory.pin(ESTOP).drive_high, name="gpio")
        edge.start()
        while edge.is_alive():
            await asyncio.sleep(0.001)
        assert not coil.state  # the wait for the controller is bounded
    finally:
        estop.close()
        contactor.release()
