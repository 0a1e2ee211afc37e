"""E-stop on DC: the contactor opens first, in the GPIO callback; the controller's emergency shutdown follows."""

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


async def _press_from_gpio_thread(factory: MockFactory) -> threading.Thread:
    """Drive the e-stop edge in a thread of its own, as the pin library does, while the event loop runs."""
    edge = threading.Thread(target=factory.pin(ESTOP).drive_high, name="gpio")
    edge.start()
    while edge.is_alive():
        await asyncio.sleep(0.001)
    edge.join()
    return edge


async def test_estop_opens_the_contactor_before_the_dc_emergency_shutdown(factory: MockFactory) -> None:
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
        await _press_from_gpio_thread(factory)
        assert not coil.state, "the coil drops in the GPIO thread, before the edge's call returns"
        for _ in range(1000):  # the shutdown is handed to the loop; give it its turn
            if dc.shutdowns:
                break
            await asyncio.sleep(0.001)
        assert dc.shutdowns == [False], "the shutdown follows the opened contactor (issue 14: no ramp on e-stop)"
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

    dc: Any = Hanging(coil)
    hw = Hardware(connectors={1: ConnectorDevices(1, "dc", meter=None, contactor=contactor, dc=dc)},  # type: ignore[arg-type]
                  estop=estop)
    try:
        hw.bind_dc_shutdown(asyncio.get_running_loop())
        contactor.close()
        await _press_from_gpio_thread(factory)
        assert not coil.state  # nothing waits for the controller
    finally:
        estop.close()
        contactor.release()
