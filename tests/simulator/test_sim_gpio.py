"""The GPIO drivers through the simulator's pin factory: agent-side gpiozero devices, simulator-side pins."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from gpiozero import Device

from drivers.errors import HardwareFault
from drivers.gpio import GpioConnectorLock, GpioContactor, GpioEmergencyStop, select_pin_factory
from simulator.devices.gpio import ENV_ADDRESS, GpioPinServer, SimPinFactory

COIL, MIRROR, ESTOP, LOCK, LOCK_FB = 17, 27, 4, 22, 23


async def eventually(predicate: Callable[[], bool], timeout_s: float = 3.0) -> None:
    """Wait for a condition that the factory's reader thread makes true."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.fixture
async def server() -> AsyncIterator[GpioPinServer]:
    """A pin server on an ephemeral port."""
    pins = GpioPinServer()
    await pins.start()
    yield pins
    pins.stop()
    await pins.wait_closed()


@pytest.fixture
def factory(server: GpioPinServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimPinFactory]:
    """The agent side: gpiozero's global factory selected by name, as the daemon does from its config."""
    previous = Device.pin_factory
    Device.pin_factory = None
    monkeypatch.setenv(ENV_ADDRESS, f"127.0.0.1:{server.port}")
    select_pin_factory("evsesim")
    sim = Device.pin_factory
    assert isinstance(sim, SimPinFactory)
    yield sim
    sim.close()
    Device.pin_factory = previous


async def test_server_sees_contactor_and_mirror_contact_follows(
    server: GpioPinServer, factory: SimPinFactory
) -> None:
    server.mirror(COIL, MIRROR)
    seen: list[tuple[int, bool]] = []
    server.on_output(lambda pin, level: seen.append((pin, level)))
    contactor = GpioContactor.from_config("contactor", {"pin": COIL, "feedback_pin": MIRROR, "settle_s": 0})
    try:
        await server.wait_output(COIL, False)  # the pin is driven (off) as soon as the device exists
        contactor.close()
        await server.wait_output(COIL, True)
        await eventually(lambda: contactor.feedback_closed is True)
        contactor.check()
        contactor.open()
        await server.wait_output(COIL, False)
        await eventually(lambda: contactor.feedback_closed is False)
        contactor.check()
        assert (COIL, True) in seen and seen[-1] == (COIL, False)
    finally:
        contactor.release()
    await server.wait_output(COIL, None)  # released pins are no longer driven


async def test_welded_contactor(server: GpioPinServer, factory: SimPinFactory) -> None:
    server.mirror(COIL, MIRROR)
    server.welded(COIL)
    contactor = GpioContactor.from_config("contactor", {"pin": COIL, "feedback_pin": MIRROR, "settle_s": 0})
    try:
        contactor.close()
        await eventually(lambda: contactor.feedback_closed is True)
        contactor.open()
        await server.wait_output(COIL, False)
        with pytest.raises(HardwareFault) as info:
            contactor.check()
        assert info.value.code == "contactor_welded"
        server.welded(COIL, False)  # repaired: the mirror contact follows again
        await eventually(lambda: contactor.feedback_closed is False)
        contactor.check()
    finally:
        contactor.release()


async def test_contactor_stuck_open(server: GpioPinServer, factory: SimPinFactory) -> None:
    server.mirror(COIL, MIRROR)
    server.stuck_open(COIL)
    contactor = GpioContactor.from_config("contactor", {"pin": COIL, "feedback_pin": MIRROR, "settle_s": 0})
    try:
        contactor.close()
        await server.wait_output(COIL, True)
        await asyncio.sleep(0.1)  # give a wrong mirror update the chance to arrive
        with pytest.raises(HardwareFault) as info:
            contactor.check()
        assert info.value.code == "contactor_not_closed"
    finally:
        contactor.release()


async def test_lock_feedback_through_simulator(server: GpioPinServer, factory: SimPinFactory) -> None:
    server.mirror(LOCK, LOCK_FB)
    lock = GpioConnectorLock.from_config("lock", {"pin": LOCK, "feedback_pin": LOCK_FB, "settle_s": 0})
    try:
        lock.lock()
        await eventually(lambda: lock.locked is True)
        lock.check()
        server.stuck_open(LOCK)  # the bolt springs back
        await eventually(lambda: lock.locked is False)
        with pytest.raises(HardwareFault) as info:
            lock.check()
        assert info.value.code == "lock_failure"
    finally:
        lock.close()


async def test_estop_pressed_in_simulator_opens_contactor_in_agent_thread(
    server: GpioPinServer, factory: SimPinFactory
) -> None:
    server.set_input(ESTOP, False)  # NC contact closed to ground: not pressed; remembered for the agent
    contactor = GpioContactor.from_config("contactor", {"pin": COIL})
    estop = GpioEmergencyStop.from_config("estop", {"pin": ESTOP})
    events: list[tuple[bool, str]] = []
    estop.on_change(lambda pressed: events.append((pressed, threading.current_thread().name)))
    try:
        await eventually(lambda: not estop.pressed)
        events.clear()  # the device may have started "pressed" (pull-up) before the level arrived
        estop.bind_contactors([contactor])
        contactor.close()
        await server.wait_output(COIL, True)

        server.set_input(ESTOP, True)
        await eventually(lambda: bool(events))
        assert not contactor.commanded_closed
        assert events == [(True, "evsesim-gpio-rx")]  # gpiozero-style callback thread, not the loop
        await server.wait_output(COIL, False)
    finally:
        estop.close()
        contactor.release()


async def test_reconnects_after_simulator_restart(server: GpioPinServer, factory: SimPinFactory) -> None:
    port = server.port
    contactor = GpioContactor.from_config("contactor", {"pin": COIL})
    estop = GpioEmergencyStop.from_config("estop", {"pin": ESTOP})
    changes: list[bool] = []
    estop.on_change(changes.append)
    try:
        server.set_input(ESTOP, False)
        await eventually(lambda: not estop.pressed)
        server.stop()
        await server.wait_closed()
        await eventually(lambda: not factory.connected.is_set())
        contactor.close()  # the simulator is gone: the write is kept, never blocks

        restarted = GpioPinServer()
        await restarted.start(port=port)
        try:
            await restarted.wait_output(COIL, True, timeout_s=5.0)  # from the hello snapshot
            assert factory.connects >= 2
            restarted.set_input(ESTOP, True)
            await eventually(lambda: estop.pressed)
            assert changes == [False, True]
        finally:
            restarted.stop()
            await restarted.wait_closed()
    finally:
        estop.close()
        contactor.release()


async def test_agent_without_simulator_does_not_block(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sim = SimPinFactory(address=f"127.0.0.1:{port}")
    try:
        contactor = GpioContactor("contactor", COIL, pin_factory=sim)
        contactor.close()
        contactor.open()
        assert not sim.connected.is_set()
        assert sim.output_levels() == {COIL: False}
        contactor.release()
    finally:
        sim.close()
