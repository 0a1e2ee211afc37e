"""E-stop to contactor open, in one process on gpiozero's MockFactory: GpioEmergencyStop + GpioContactor."""

from __future__ import annotations

import logging
import time

from gpiozero import Device, DigitalInputDevice, DigitalOutputDevice
from gpiozero.pins.mock import MockFactory

from bench.common import Figure, percentile, ratio
from drivers.gpio import GpioContactor, GpioEmergencyStop

REPS = 200
ESTOP_PIN, COIL_PIN, FEEDBACK_PIN = 17, 22, 23
BOUNCE_S = 0.005  # shorter than the driver default (20 ms) so 200 presses fit in seconds; latency is unaffected
TARGET_MS = 2.0
SPIN_TIMEOUT_S = 1.0


def _wait_state(pin: object, state: bool) -> float:
    """Spin (yielding the GIL) until the pin's state is `state`; returns perf_counter() at that moment."""
    deadline = time.perf_counter() + SPIN_TIMEOUT_S
    while bool(pin.state) != state:  # type: ignore[attr-defined]
        if time.perf_counter() > deadline:
            raise RuntimeError(f"pin never went {'high' if state else 'low'}")
        time.sleep(0)
    return time.perf_counter()


async def run() -> list[Figure]:
    """Figure 5: press (NC contact opens: the pulled-up input goes high) until the coil output goes low."""
    previous = Device.pin_factory
    gpio_logger = logging.getLogger("drivers.gpio")
    level = gpio_logger.level
    gpio_logger.setLevel(logging.ERROR)  # 400 warnings on stderr; they are logged after the coil opens anyway
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        button = GpioEmergencyStop("estop", ESTOP_PIN, bounce_s=BOUNCE_S)
        estop_pin = factory.pin(ESTOP_PIN)
        estop_pin.drive_low()  # NC contact closed, pulled up: reads low = not pressed
        _wait_released(button)
        contactor = GpioContactor("contactor1", COIL_PIN, FEEDBACK_PIN, settle_s=0.0)
        button.bind_contactors([contactor])
        coil = factory.pin(COIL_PIN)
        samples: list[float] = []
        try:
            for _ in range(REPS):
                contactor.close()
                _wait_state(coil, True)
                time.sleep(BOUNCE_S * 1.5)
                start = time.perf_counter()
                estop_pin.drive_high()  # pressed
                samples.append((_wait_state(coil, False) - start) * 1000)
                time.sleep(BOUNCE_S * 1.5)
                estop_pin.drive_low()  # released
                _wait_released(button)
        finally:
            button.close()
            contactor.release()
    finally:
        factory.close()
        Device.pin_factory = previous
        gpio_logger.setLevel(level)
    raw = _raw_gpiozero()
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    b50, b99 = percentile(raw, 50), percentile(raw, 99)
    note = (f"{REPS} presses on MockFactory, the edge driven in the measuring thread (no wait for the "
            "interpreter lock: the driver's own cost); baseline: bare gpiozero input whose when_deactivated turns "
            "an output off. The running agent's figures, edge from another thread, are the rows below")
    return [Figure("e-stop -> contactor open p50 (driver alone)", p50, "ms", b50, ratio(p50, b50), "-", None, note),
            Figure("e-stop -> contactor open p99 (driver alone)", p99, "ms", b99, ratio(p99, b99),
                   f"<= {TARGET_MS} ms", p99 <= TARGET_MS, note)]


def _raw_gpiozero() -> list[float]:
    """The same press measured on bare gpiozero devices: the floor the driver adds its interlock to."""
    previous = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        button = DigitalInputDevice(ESTOP_PIN, pull_up=True, bounce_time=BOUNCE_S)
        output = DigitalOutputDevice(COIL_PIN, initial_value=False)
        button.when_deactivated = output.off  # pulled up: contact opening = input high = deactivated
        estop_pin, coil = factory.pin(ESTOP_PIN), factory.pin(COIL_PIN)
        estop_pin.drive_low()
        samples: list[float] = []
        try:
            for _ in range(REPS):
                output.on()
                time.sleep(BOUNCE_S * 1.5)
                start = time.perf_counter()
                estop_pin.drive_high()
                samples.append((_wait_state(coil, False) - start) * 1000)
                time.sleep(BOUNCE_S * 1.5)
                estop_pin.drive_low()
                time.sleep(BOUNCE_S * 1.5)
        finally:
            button.close()
            output.close()
    finally:
        factory.close()
        Device.pin_factory = previous
    return samples


def _wait_released(button: GpioEmergencyStop) -> None:
    deadline = time.perf_counter() + SPIN_TIMEOUT_S
    while button.pressed:
        if time.perf_counter() > deadline:
            raise RuntimeError("e-stop never released")
        time.sleep(0.001)
    time.sleep(BOUNCE_S * 1.5)
