"""GPIO drivers against gpiozero's MockFactory (the one place where hardware cannot exist in tests)."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockConnectedPin, MockFactory

from drivers import gpio
from drivers.base import IndicatorState
from drivers.errors import ConfigError, HardwareFault, UnsupportedDriver
from drivers.gpio import (
    PATTERNS,
    GpioConnectorLock,
    GpioContactor,
    GpioEmergencyStop,
    GpioIndicator,
    select_pin_factory,
)
from drivers.registry import resolve

COIL, MIRROR, ESTOP, RED, GREEN, BLUE, LOCK, LOCK_FB = 17, 27, 4, 5, 6, 13, 22, 23


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    """A fresh mock pin factory as gpiozero's global one."""
    previous = Device.pin_factory
    mock = MockFactory()
    Device.pin_factory = mock
    yield mock
    mock.reset()
    Device.pin_factory = previous


def wait_until(predicate: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    """Poll a condition that a gpiozero thread makes true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def wired_contactor(factory: MockFactory, settle_s: float = 0.0) -> GpioContactor:
    """A contactor whose mirror contact follows the coil, as the real part does."""
    mirror = factory.pin(MIRROR)
    factory.pin(COIL, pin_class=MockConnectedPin, input_pin=mirror)
    return GpioContactor.from_config(
        "contactor", {"driver": "gpio_contactor", "pin": COIL, "feedback_pin": MIRROR, "settle_s": settle_s}
    )


def test_registry_names_resolve_to_these_classes() -> None:
    assert resolve("gpio_contactor") is GpioContactor
    assert resolve("gpio_estop") is GpioEmergencyStop
    assert resolve("gpio_indicator") is GpioIndicator
    assert resolve("gpio_lock") is GpioConnectorLock


def test_contactor_close_open_follows_mirror_contact(factory: MockFactory) -> None:
    contactor = wired_contactor(factory)
    try:
        assert factory.pin(COIL).state is False
        assert contactor.feedback_closed is False
        contactor.check()
        contactor.close()
        assert factory.pin(COIL).state is True
        assert contactor.commanded_closed and contactor.feedback_closed
        contactor.check()
        contactor.open()
        assert factory.pin(COIL).state is False
        assert not contactor.commanded_closed and contactor.feedback_closed is False
        contactor.check()
    finally:
        contactor.release()
    assert factory.pin(COIL).function == "input"  # pins are global state: released for the next user


def test_contactor_active_low_coil(factory: MockFactory) -> None:
    contactor = GpioContactor.from_config("contactor", {"pin": COIL, "active_high": False})
    try:
        assert factory.pin(COIL).state is True  # relay boards with an inverting driver: high = off
        contactor.close()
        assert factory.pin(COIL).state is False
    finally:
        contactor.release()


def test_contactor_welded(factory: MockFactory) -> None:
    feedback = factory.pin(MIRROR)
    contactor = GpioContactor.from_config("contactor", {"pin": COIL, "feedback_pin": MIRROR, "settle_s": 0})
    try:
        contactor.close()
        feedback.drive_high()
        contactor.check()
        contactor.open()  # the mirror contact stays closed: the main contacts are welded
        with pytest.raises(HardwareFault) as info:
            contactor.check()
        assert info.value.code == "contactor_welded"
        assert info.value.device == "contactor"
    finally:
        contactor.release()


def test_contactor_not_closed(factory: MockFactory) -> None:
    factory.pin(MIRROR)
    contactor = GpioContactor.from_config("contactor", {"pin": COIL, "feedback_pin": MIRROR, "settle_s": 0})
    try:
        contactor.close()  # nothing drives the mirror contact: the coil did not pull in
        with pytest.raises(HardwareFault) as info:
            contactor.check()
        assert info.value.code == "contactor_not_closed"
    finally:
        contactor.release()


def test_contactor_mismatch_within_settle_time_is_not_a_fault(factory: MockFactory) -> None:
    factory.pin(MIRROR)
    contactor = GpioContactor.from_config("contactor", {"pin": COIL, "feedback_pin": MIRROR, "settle_s": 60})
    try:
        contactor.close()
        contactor.check()  # still moving: not judged before the settle time
    finally:
        contactor.release()


def test_contactor_without_feedback_trusts_the_command(factory: MockFactory) -> None:
    contactor = GpioContactor.from_config("contactor", {"pin": COIL, "settle_s": 0})
    try:
        contactor.close()
        assert contactor.feedback_closed is None
        contactor.check()
    finally:
        contactor.release()


def test_estop_press_opens_contactor_in_callback_thread_without_event_loop(factory: MockFactory) -> None:
    contactor = wired_contactor(factory)
    estop = GpioEmergencyStop.from_config("estop", {"driver": "gpio_estop", "pin": ESTOP})
    seen: list[tuple[bool, str, bool, bool]] = []

    def listener(pressed: bool) -> None:
        try:
            asyncio.get_running_loop()
            has_loop = True
        except RuntimeError:
            has_loop = False
        # The contactor must already be open when the listener (which would go to the loop) runs.
        seen.append((pressed, threading.current_thread().name, has_loop, factory.pin(COIL).state))

    try:
        # Pulled up and normally closed: an unwired input reads as pressed (a cut wire is fail-safe).
        assert estop.pressed
        factory.pin(ESTOP).drive_low()  # the NC contact is closed: released
        assert not estop.pressed
        estop.bind_contactors([contactor])
        estop.on_change(listener)
        contactor.close()
        assert factory.pin(COIL).state is True

        gpio_thread = threading.Thread(target=factory.pin(ESTOP).drive_high, name="gpio-callback")
        gpio_thread.start()
        gpio_thread.join(timeout=5)
        assert factory.pin(COIL).state is False  # opened before drive_high returned in that thread
        assert estop.pressed and not contactor.commanded_closed
        assert seen == [(True, "gpio-callback", False, False)]

        with pytest.raises(HardwareFault) as info:
            contactor.close()  # held open while the button is pressed
        assert info.value.code == "interlock"
        assert factory.pin(COIL).state is False

        factory.pin(ESTOP).drive_low()
        assert seen[-1][0] is False
        contactor.close()
        assert factory.pin(COIL).state is True
    finally:
        estop.close()
        contactor.release()


def test_estop_bound_while_pressed_holds_contactor_open(factory: MockFactory) -> None:
    contactor = GpioContactor.from_config("contactor", {"pin": COIL})
    estop = GpioEmergencyStop.from_config("estop", {"pin": ESTOP})
    try:
        assert estop.pressed
        estop.bind_contactors([contactor])
        with pytest.raises(HardwareFault):
            contactor.close()
        assert contactor.inhibited == frozenset({"e-stop estop"})
    finally:
        estop.close()
        contactor.release()


class _GatedContactor(GpioContactor):
    """A contactor whose release of the interlock waits for the test: one edge held in the middle."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.entered = threading.Event()
        self.proceed = threading.Event()

    def _interlock(self, reason: str, active: bool) -> None:
        if not active and not self.entered.is_set():
            self.entered.set()
            self.proceed.wait(5)
        super()._interlock(reason, active)


def test_estop_edges_from_two_threads_never_leave_pressed_with_the_contactor_free(factory: MockFactory) -> None:
    contactor = _GatedContactor("contactor", COIL)
    estop = GpioEmergencyStop.from_config("estop", {"pin": ESTOP})
    try:
        assert estop.pressed  # unwired NC input: pressed
        estop.bind_contactors([contactor])
        release = threading.Thread(target=factory.pin(ESTOP).drive_low, name="gpio-a")
        release.start()
        assert contactor.entered.wait(5)  # the release edge is between its state change and the coil
        press = threading.Thread(target=factory.pin(ESTOP).drive_high, name="gpio-b")
        press.start()
        press.join(0.2)  # unserialised edges finish here and the held release then undoes the press
        contactor.proceed.set()
        release.join(5)
        press.join(5)
        assert estop.pressed
        assert contactor.inhibited == frozenset({"e-stop estop"})
        with pytest.raises(HardwareFault):
            contactor.close()
    finally:
        contactor.proceed.set()
        estop.close()
        contactor.release()


def test_estop_normally_open_with_external_resistor(factory: MockFactory) -> None:
    estop = GpioEmergencyStop.from_config(
        "estop", {"pin": ESTOP, "active_state": True, "normally_closed": False}
    )
    changes: list[bool] = []
    estop.on_change(changes.append)
    try:
        assert not estop.pressed
        factory.pin(ESTOP).drive_high()
        assert estop.pressed
        factory.pin(ESTOP).drive_low()
        assert changes == [True, False]
    finally:
        estop.close()


def test_estop_callback_error_does_not_stop_the_others(factory: MockFactory) -> None:
    contactor = GpioContactor.from_config("contactor", {"pin": COIL})
    estop = GpioEmergencyStop.from_config("estop", {"pin": ESTOP})
    factory.pin(ESTOP).drive_low()
    estop.bind_contactors([contactor])
    changes: list[bool] = []

    def broken(pressed: bool) -> None:
        raise RuntimeError("listener bug")

    estop.on_change(broken)
    estop.on_change(changes.append)
    try:
        contactor.close()
        factory.pin(ESTOP).drive_high()
        assert changes == [True]
        assert factory.pin(COIL).state is False
    finally:
        estop.close()
        contactor.release()


def rgb(factory: MockFactory) -> tuple[bool, bool, bool]:
    """The three LED pins' levels."""
    return (factory.pin(RED).state, factory.pin(GREEN).state, factory.pin(BLUE).state)


@pytest.fixture
def indicator(factory: MockFactory) -> Iterator[GpioIndicator]:
    """An RGB indicator on mock pins."""
    led = GpioIndicator.from_config(
        "led", {"driver": "gpio_indicator", "red_pin": RED, "green_pin": GREEN, "blue_pin": BLUE}
    )
    yield led
    led.close()


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (IndicatorState.AVAILABLE, (False, True, False)),
        (IndicatorState.UNAVAILABLE, (True, False, False)),
        (IndicatorState.RESERVED, (True, True, False)),
        (IndicatorState.CHARGING, (False, False, True)),  # pulse needs PWM pins: steady blue here
        (IndicatorState.OFF, (False, False, False)),
    ],
)
def test_indicator_steady_states(
    factory: MockFactory, indicator: GpioIndicator, state: IndicatorState, expected: tuple[bool, ...]
) -> None:
    indicator.show(IndicatorState.FAULTED)  # start from a blinking state: the blink must stop
    indicator.show(state)
    assert indicator.state is state
    assert rgb(factory) == expected
    time.sleep(0.3)  # a leftover blink thread would have toggled a pin by now
    assert rgb(factory) == expected


def test_indicator_faulted_blinks_red(factory: MockFactory, indicator: GpioIndicator) -> None:
    indicator.show(IndicatorState.FAULTED)
    red = factory.pin(RED)
    red.clear_states()
    # Wait for on -> off -> on: the LED blinks, it is not just red.
    assert wait_until(lambda: [s.state for s in red.states].count(True) >= 2)
    assert not factory.pin(GREEN).state and not factory.pin(BLUE).state
    assert indicator.pattern == PATTERNS[IndicatorState.FAULTED]


def test_indicator_patterns_cover_every_state() -> None:
    assert set(PATTERNS) == set(IndicatorState)
    assert PATTERNS[IndicatorState.PREPARING].color == gpio.BLUE
    assert PATTERNS[IndicatorState.PREPARING].on_s is not None
    assert PATTERNS[IndicatorState.SUSPENDED].on_s is not None
    assert PATTERNS[IndicatorState.FAULTED].color == gpio.RED
    assert PATTERNS[IndicatorState.AVAILABLE].on_s is None


def test_indicator_preparing_blinks_blue(factory: MockFactory, indicator: GpioIndicator) -> None:
    indicator.show(IndicatorState.PREPARING)
    assert wait_until(lambda: factory.pin(BLUE).state)
    assert not factory.pin(RED).state and not factory.pin(GREEN).state


def test_lock_follows_feedback_and_reports_failure(factory: MockFactory) -> None:
    feedback = factory.pin(LOCK_FB)
    lock = GpioConnectorLock.from_config(
        "lock", {"driver": "gpio_lock", "pin": LOCK, "feedback_pin": LOCK_FB, "settle_s": 0}
    )
    try:
        lock.lock()
        assert factory.pin(LOCK).state is True
        with pytest.raises(HardwareFault) as info:
            lock.check()  # the bolt did not reach locked (plug not fully inserted)
        assert info.value.code == "lock_failure"
        feedback.drive_high()
        assert lock.locked is True
        lock.check()
        lock.unlock()
        with pytest.raises(HardwareFault):
            lock.check()  # still reports locked after unlock: stuck
        feedback.drive_low()
        lock.check()
        assert lock.locked is False
    finally:
        lock.close()


def test_lock_without_feedback(factory: MockFactory) -> None:
    lock = GpioConnectorLock.from_config("lock", {"pin": LOCK, "settle_s": 0})
    try:
        lock.lock()
        assert lock.locked is None and lock.commanded_locked
        lock.check()
    finally:
        lock.close()


@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (GpioContactor, {"pin": 17, "feedbak_pin": 27}),
        (GpioEmergencyStop, {"pin": 4, "pullup": True}),
        (GpioIndicator, {"red_pin": 5, "green_pin": 6, "blue_pin": 13, "colour": "x"}),
        (GpioConnectorLock, {"pin": 22, "timeout": 1}),
    ],
)
def test_unknown_option_lists_allowed_keys(cls: type, options: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as info:
        cls.from_config("dev", options)
    assert "allowed:" in str(info.value) and "pin" in str(info.value)


def test_bad_option_values_are_refused() -> None:
    with pytest.raises(ConfigError):
        GpioContactor.from_config("c", {})
    with pytest.raises(ConfigError):
        GpioContactor.from_config("c", {"pin": 17, "settle_s": -1})
    with pytest.raises(ConfigError):
        GpioContactor.from_config("c", {"pin": 17.5})
    with pytest.raises(ConfigError):
        GpioEmergencyStop.from_config("e", {"pin": 4, "pull_up": True, "active_state": True})


def test_pin_used_twice_is_a_driver_error(factory: MockFactory) -> None:
    contactor = GpioContactor.from_config("contactor", {"pin": COIL})
    try:
        with pytest.raises(UnsupportedDriver):
            GpioConnectorLock.from_config("lock", {"pin": COIL})
    finally:
        contactor.release()


def test_select_pin_factory_mock() -> None:
    previous = Device.pin_factory
    try:
        Device.pin_factory = None
        select_pin_factory("mock")
        assert isinstance(Device.pin_factory, MockFactory)
        first = Device.pin_factory
        select_pin_factory("mock")
        assert Device.pin_factory is first  # devices already created on it stay valid
    finally:
        Device.pin_factory = previous


def test_select_pin_factory_unknown_name() -> None:
    with pytest.raises(UnsupportedDriver) as info:
        select_pin_factory("gpiod")
    assert "lgpio" in str(info.value)


@pytest.mark.skipif(importlib.util.find_spec("lgpio") is not None, reason="lgpio is installed here")
def test_select_pin_factory_real_pins_on_a_non_pi_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    previous = Device.pin_factory
    try:
        with pytest.raises(UnsupportedDriver) as info:
            select_pin_factory("lgpio")
        message = str(info.value)
        assert "pip install lgpio" in message and "python3-lgpio" in message
        assert 'pin_factory = "mock"' in message and "GPIOZERO_PIN_FACTORY=mock" in message
        assert Device.pin_factory is previous  # a failed selection changes nothing

        monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
        with pytest.raises(UnsupportedDriver) as info:
            select_pin_factory(None)  # gpiozero's default chain: lgpio, RPi.GPIO, pigpio, native
        assert "pip install lgpio" in str(info.value) and "mock" in str(info.value)
    finally:
        Device.pin_factory = previous


def test_select_pin_factory_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    previous = Device.pin_factory
    try:
        Device.pin_factory = None
        monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
        select_pin_factory(None)
        assert isinstance(Device.pin_factory, MockFactory)
    finally:
        Device.pin_factory = previous

