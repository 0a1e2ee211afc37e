"""GPIO drivers over gpiozero: contactor with mirror contact, e-stop, indicator LEDs, connector lock, push button.

gpiozero pins are process-global state: the pin factory is chosen once with `select_pin_factory()`
("mock" and "evsesim" for the simulator, "lgpio" etc. on a Pi) and every device must be `close()`d.
Input callbacks run in the pin factory's thread; the e-stop opens its bound contactors right there,
without an event-loop round trip (DESIGN section 3: "it opens at once on e-stop").
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from gpiozero import RGBLED, Button, Device, DigitalInputDevice, DigitalOutputDevice
from gpiozero.exc import GPIOZeroError

from drivers.base import IndicatorState
from drivers.errors import ConfigError, HardwareFault, UnsupportedDriver

LOGGER = logging.getLogger(__name__)

DEFAULT_SETTLE_S = 0.1  # IEC contactors close in 20-50 ms; the mirror contact needs a little longer
DEFAULT_LOCK_SETTLE_S = 1.0  # a motor lock takes 300-700 ms to travel
DEFAULT_BOUNCE_S = 0.02  # a mushroom button bounces for a few ms

PinId = int | str

# Hints for a pin factory that cannot load; the operator reads these in the daemon's error.
_INSTALL_HINTS: dict[str, str] = {
    "lgpio": "install lgpio (`pip install lgpio`, or the Debian package python3-lgpio)",
    "rpigpio": "install RPi.GPIO (`pip install RPi.GPIO`, or the Debian package python3-rpi.gpio)",
    "pigpio": "install pigpio (`pip install pigpio`, or python3-pigpio) and start the pigpiod daemon",
    "native": "run on a Raspberry Pi (the native factory reads /proc/device-tree)",
    "evsesim": "start the simulator and set EVSE_SIM_GPIO=host:port",
}
_SIM_HINT = 'for the simulator or tests set pin_factory = "mock" (or GPIOZERO_PIN_FACTORY=mock)'
KNOWN_PIN_FACTORIES = ("lgpio", "rpigpio", "pigpio", "native", "mock", "evsesim")  # agent/config checks names too


def _check_options(
    name: str, options: dict[str, Any], allowed: Iterable[str], required: Iterable[str]
) -> None:
    """Refuse unknown or missing option keys, naming the allowed ones."""
    allowed_set = set(allowed) | {"driver"}
    unknown = sorted(set(options) - allowed_set)
    if unknown:
        raise ConfigError(
            name, f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed_set))}"
        )
    missing = [key for key in required if options.get(key) is None]
    if missing:
        raise ConfigError(name, f"missing option(s) {', '.join(missing)}")


def _pin_option(name: str, options: dict[str, Any], key: str) -> PinId | None:
    """Return a pin option as gpiozero accepts it (BCM number or a name such as "GPIO17", "BOARD11")."""
    value = options.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"{key} must be a BCM pin number or a pin name, not {value!r}")
    return value


def _float_option(name: str, options: dict[str, Any], key: str, default: float) -> float:
    """Return a non-negative number option."""
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(name, f"{key} must be a non-negative number of seconds, not {value!r}")
    return float(value)


def _bool_option(name: str, options: dict[str, Any], key: str, default: bool | None) -> bool | None:
    """Return a boolean option (None allowed only when the default is None)."""
    value = options.get(key, default)
    if value is None and default is None:
        return None
    if not isinstance(value, bool):
        raise ConfigError(name, f"{key} must be true or false, not {value!r}")
    return value


def _wrap_gpio(name: str, what: str, err: Exception) -> UnsupportedDriver:
    """Turn a gpiozero error at device creation into a driver error that says what to do."""
    return UnsupportedDriver(name, f"cannot set up {what}: {err}")


def select_pin_factory(name: str | None) -> None:
    """Choose gpiozero's global pin factory from the config (None: GPIOZERO_PIN_FACTORY or the default).

    Raises UnsupportedDriver saying what to install, or to use the mock, when the factory cannot load
    (typically: real pins asked for on a machine that is not a Pi).
    """
    chosen = name or os.environ.get("GPIOZERO_PIN_FACTORY") or None
    if chosen is not None:
        chosen = chosen.lower()
        if chosen not in KNOWN_PIN_FACTORIES:
            raise UnsupportedDriver(
                "gpio", f"unknown pin factory {chosen!r}; known: {', '.join(KNOWN_PIN_FACTORIES)}"
            )
        current = Device.pin_factory
        if current is not None and _factory_name(current) == chosen:
            return  # already active; replacing it would orphan the devices created on it
    try:
        factory = _load_factory(chosen)
    except Exception as err:  # every factory fails differently: ImportError, PinUnknownPi, OSError...
        raise UnsupportedDriver("gpio", _factory_failure_message(chosen, err)) from err
    if Device.pin_factory is not None and Device.pin_factory is not factory:
        Device.pin_factory.close()
    Device.pin_factory = factory
    LOGGER.info("gpio: pin factory %s", type(factory).__name__)


def _factory_name(factory: object) -> str | None:
    """The config name of a pin factory instance, None if it is not one we know."""
    module = type(factory).__module__
    if module == "simulator.devices.gpio":
        return "evsesim"
    names = {
        "gpiozero.pins.mock": "mock",
        "gpiozero.pins.lgpio": "lgpio",
        "gpiozero.pins.rpigpio": "rpigpio",
        "gpiozero.pins.pigpio": "pigpio",
        "gpiozero.pins.native": "native",
    }
    return names.get(module)


def _load_factory(name: str | None) -> Any:
    """Instantiate the named pin factory through gpiozero's entry points, or gpiozero's default."""
    if name is None:
        with warnings.catch_warnings():
            # gpiozero warns at every fallback; the final failure says it all.
            warnings.simplefilter("ignore")
            return Device._default_pin_factory()
    for entry in entry_points(group="gpiozero_pin_factories"):
        if entry.name == name:
            return entry.load()()
    raise UnsupportedDriver("gpio", f"pin factory {name!r} is not installed (no gpiozero entry point)")


def _factory_failure_message(name: str | None, err: Exception) -> str:
    """Explain a failed pin factory: what failed, what to install, how to use the simulator instead."""
    if name is None:
        return (
            f"no GPIO pin factory could load ({err}); on a Raspberry Pi "
            f"{_INSTALL_HINTS['lgpio']}; {_SIM_HINT}"
        )
    hint = _INSTALL_HINTS.get(name, "")
    if name == "evsesim":
        return f"pin factory 'evsesim' failed ({err}); {hint}"
    return f"pin factory {name!r} failed ({err}); {hint}; {_SIM_HINT}"


class _FeedbackSwitch:
    """An output with an optional feedback input, checked against the command after a settle time."""

    def __init__(
        self,
        name: str,
        pin: PinId,
        feedback_pin: PinId | None,
        active_high: bool,
        feedback_active_high: bool,
        settle_s: float,
        pin_factory: Any = None,
    ) -> None:
        self.name = name
        self.settle_s = settle_s
        self._lock = threading.RLock()
        self._output: DigitalOutputDevice | None = None
        self._feedback: DigitalInputDevice | None = None
        try:
            self._output = DigitalOutputDevice(
                pin, active_high=active_high, initial_value=False, pin_factory=pin_factory
            )
            if feedback_pin is not None:
                # Feedback wiring has its own resistors; the level meaning "closed" is configured.
                self._feedback = DigitalInputDevice(
                    feedback_pin, pull_up=None, active_state=feedback_active_high, pin_factory=pin_factory
                )
        except GPIOZeroError as err:
            self._release_pins()
            raise _wrap_gpio(name, "GPIO pins", err) from err
        self._commanded = False
        self._changed_at = time.monotonic() - settle_s  # the boot state (off) counts as settled

    def _set(self, on: bool) -> None:
        """Drive the output and remember when, so `check()` waits for the settle time."""
        with self._lock:
            output = self._output
            if output is None:
                raise HardwareFault(self.name, "released", "the device's pins were released")
            if on:
                output.on()
            else:
                output.off()
            if on != self._commanded:
                self._changed_at = time.monotonic()
            self._commanded = on

    @property
    def _commanded_on(self) -> bool:
        return self._commanded

    @property
    def _feedback_on(self) -> bool | None:
        feedback = self._feedback
        if feedback is None or feedback.closed:
            return None
        return bool(feedback.is_active)

    def _settled(self) -> bool:
        return time.monotonic() - self._changed_at >= self.settle_s

    def _release_pins(self) -> None:
        """Release the pins; the output goes inactive first."""
        with self._lock:
            for device in (self._output, self._feedback):
                if device is not None:
                    device.close()
            self._output = None
            self._feedback = None


class GpioContactor(_FeedbackSwitch):
    """The charging contactor: a coil output and an optional mirror-contact input."""

    OPTIONS = ("pin", "feedback_pin", "active_high", "feedback_active_high", "settle_s")

    def __init__(
        self,
        name: str,
        pin: PinId,
        feedback_pin: PinId | None = None,
        active_high: bool = True,
        feedback_active_high: bool = True,
        settle_s: float = DEFAULT_SETTLE_S,
        pin_factory: Any = None,
    ) -> None:
        super().__init__(name, pin, feedback_pin, active_high, feedback_active_high, settle_s, pin_factory)
        self._inhibits: set[str] = set()

    @classmethod
    def from_config(cls, name: str, options: dict[str, Any], pool: object | None = None) -> GpioContactor:
        """Build from a config table: {pin, feedback_pin, active_high, feedback_active_high, settle_s}."""
        _check_options(name, options, cls.OPTIONS, ("pin",))
        pin = _pin_option(name, options, "pin")
        assert pin is not None
        return cls(
            name,
            pin,
            feedback_pin=_pin_option(name, options, "feedback_pin"),
            active_high=bool(_bool_option(name, options, "active_high", True)),
            feedback_active_high=bool(_bool_option(name, options, "feedback_active_high", True)),
            settle_s=_float_option(name, options, "settle_s", DEFAULT_SETTLE_S),
        )

    def close(self) -> None:
        """Drive the coil.

        Refused with HardwareFault("interlock") while an interlock (e.g. the bound e-stop) is active;
        the check and the switching hold one lock, so an e-stop cannot slip in between.
        """
        with self._lock:
            if self._inhibits:
                raise HardwareFault(
                    self.name, "interlock", f"contactor held open by {', '.join(sorted(self._inhibits))}"
                )
            self._set(True)
            LOGGER.info("%s: closed", self.name)

    def open(self) -> None:
        """Release the coil; safe from any thread, never raises on a closed device."""
        with self._lock:
            if self._output is None:
                return
            self._set(False)
        LOGGER.info("%s: opened", self.name)

    def inhibit(self, reason: str, active: bool) -> None:
        """Set or clear an interlock; setting one opens the contactor at once in the calling thread."""
        self._interlock(reason, active)
        if active:
            LOGGER.warning("%s: opened by interlock %s", self.name, reason)

    def _interlock(self, reason: str, active: bool) -> None:
        """`inhibit()` without its log line: the e-stop opens every contactor before it logs anything."""
        with self._lock:
            if active:
                self._inhibits.add(reason)
                if self._output is not None:
                    self._set(False)
            else:
                self._inhibits.discard(reason)

    @property
    def inhibited(self) -> frozenset[str]:
        """The active interlocks."""
        return frozenset(self._inhibits)

    @property
    def commanded_closed(self) -> bool:
        """What the coil was last told."""
        return self._commanded_on

    @property
    def feedback_closed(self) -> bool | None:
        """The mirror contact's report; None without a feedback pin."""
        return self._feedback_on

    def check(self) -> None:
        """Raise HardwareFault when the mirror contact disagrees with the command after the settle time."""
        with self._lock:
            feedback = self._feedback_on
            if feedback is None or not self._settled():
                return
            commanded = self._commanded
        if feedback and not commanded:
            raise HardwareFault(
                self.name, "contactor_welded",
                "mirror contact still closed after open: contactor welded, isolate the supply",
            )
        if commanded and not feedback:
            raise HardwareFault(
                self.name, "contactor_not_closed",
                "mirror contact open after close: check the coil supply and wiring",
            )

    def release(self) -> None:
        """Open the contactor and release its pins (`close()` is the contactor command here)."""
        self._release_pins()


class GpioEmergencyStop:
    """A latching e-stop button; a press opens the bound contactors in the GPIO callback thread."""

    OPTIONS = ("pin", "pull_up", "active_state", "normally_closed", "bounce_s")

    def __init__(
        self,
        name: str,
        pin: PinId,
        pull_up: bool | None = True,
        active_state: bool | None = None,
        normally_closed: bool = True,
        bounce_s: float = DEFAULT_BOUNCE_S,
        pin_factory: Any = None,
    ) -> None:
        self.name = name
        # An NC contact is fail-safe: a cut wire reads as pressed.
        self.normally_closed = normally_closed
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[bool], None]] = []
        self._contactors: list[GpioContactor] = []
        try:
            # is_active means "contact closed": pulled up -> closed reads low; floating needs active_state.
            self._input: DigitalInputDevice | None = DigitalInputDevice(
                pin, pull_up=pull_up, active_state=active_state if pull_up is None else None,
                bounce_time=bounce_s or None, pin_factory=pin_factory,
            )
        except GPIOZeroError as err:
            raise _wrap_gpio(name, "the e-stop input", err) from err
        self._pressed = self._pressed_from(bool(self._input.is_active))
        self._input.when_activated = self._contact_closed
        self._input.when_deactivated = self._contact_opened

    @classmethod
    def from_config(
        cls, name: str, options: dict[str, Any], pool: object | None = None
    ) -> GpioEmergencyStop:
        """Build from {pin, pull_up (default true) or active_state, normally_closed, bounce_s}."""
        _check_options(name, options, cls.OPTIONS, ("pin",))
        pin = _pin_option(name, options, "pin")
        assert pin is not None
        active_state = _bool_option(name, options, "active_state", None)
        pull_up: bool | None = None
        if active_state is None:
            pull_up = _bool_option(name, options, "pull_up", True)
        elif "pull_up" in options:
            # gpiozero infers the active level from the pull; both at once would contradict.
            raise ConfigError(name, "set either pull_up or active_state (external resistor), not both")
        return cls(
            name,
            pin,
            pull_up=pull_up,
            active_state=active_state,
            normally_closed=bool(_bool_option(name, options, "normally_closed", True)),
            bounce_s=_float_option(name, options, "bounce_s", DEFAULT_BOUNCE_S),
        )

    def _pressed_from(self, contact_closed: bool) -> bool:
        return not contact_closed if self.normally_closed else contact_closed

    def _contact_closed(self) -> None:
        self._edge(self._pressed_from(True))

    def _contact_opened(self) -> None:
        self._edge(self._pressed_from(False))

    def _edge(self, pressed: bool) -> None:
        """Runs in the GPIO thread: open the contactors first, then tell the listeners, then log.

        Nothing runs before the coils drop: no log line, no DC controller shutdown (a listener sends it right
        after), no hop through the event loop. Each step here holds the interpreter lock, which a busy
        event loop gives up only every switch interval; the fewer steps before the coils, the fewer waits.
        """
        reason = f"e-stop {self.name}"
        failed: list[tuple[str, Exception]] = []
        # The state and the coils change under one lock: two threads delivering edges (a pin library's and a
        # simulator's) must not leave the button pressed with a contactor free to close.
        with self._lock:
            if pressed == self._pressed:
                return
            self._pressed = pressed
            contactors = list(self._contactors)
            callbacks = list(self._callbacks)
            for contactor in contactors:
                try:
                    contactor._interlock(reason, pressed)
                except Exception as err:  # one broken contactor must not keep the others closed
                    failed.append((contactor.name, err))
        # the listeners before the log lines: one of them hands the DC controllers' emergency shutdown to the loop
        for callback in callbacks:
            try:
                callback(pressed)
            except Exception:
                LOGGER.exception("%s: e-stop callback failed", self.name)
        for name, error in failed:
            LOGGER.error("%s: could not open %s", self.name, name, exc_info=error)
        LOGGER.warning("%s: %s%s", self.name, "pressed" if pressed else "released",
                       f", opened {', '.join(c.name for c in contactors)}" if pressed and contactors else "")

    @property
    def pressed(self) -> bool:
        """Whether the button is pressed (or its NC wire is cut)."""
        return self._pressed

    def on_change(self, callback: Callable[[bool], None]) -> None:
        """Call `callback(pressed)` on every change, in the GPIO thread, after the bound contactors switched
        (hand work to an event loop with call_soon_threadsafe; never block here)."""
        with self._lock:
            self._callbacks.append(callback)

    def bind_contactors(self, contactors: Iterable[GpioContactor]) -> None:
        """Open these contactors directly in the GPIO thread on a press, and hold them open while pressed."""
        with self._lock:
            new = [c for c in contactors if c not in self._contactors]
            self._contactors.extend(new)
            pressed = self._pressed
            for contactor in new:  # under the lock: an edge meanwhile must not be undone by a stale `pressed`
                contactor._interlock(f"e-stop {self.name}", pressed)
        if pressed:
            for contactor in new:
                LOGGER.warning("%s: opened by interlock e-stop %s", contactor.name, self.name)

    def close(self) -> None:
        """Release the input pin."""
        if self._input is not None:
            self._input.close()
            self._input = None

    def release(self) -> None:
        """Same as close()."""
        self.close()


class GpioPushButton:
    """A momentary push button (a driver's "report a problem"): one callback per debounced press."""

    def __init__(self, name: str, pin: PinId, pull_up: bool = True, bounce_s: float = DEFAULT_BOUNCE_S,
                 pin_factory: Any = None) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self.presses = 0
        try:
            # pulled up, the button shorts the pin to ground; gpiozero drops edges within bounce_time
            self._button: Button | None = Button(pin, pull_up=pull_up, bounce_time=bounce_s or None,
                                                 pin_factory=pin_factory)
        except GPIOZeroError as err:
            raise _wrap_gpio(name, "the push button input", err) from err
        self._button.when_pressed = self._pressed

    def _pressed(self) -> None:
        """Runs in the GPIO thread: tell the listeners (they hand it to their event loop)."""
        with self._lock:
            self.presses += 1
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                LOGGER.exception("%s: press callback failed", self.name)

    def on_press(self, callback: Callable[[], None]) -> None:
        """Call `callback()` on every press, in the GPIO thread (use call_soon_threadsafe)."""
        with self._lock:
            self._callbacks.append(callback)

    def close(self) -> None:
        """Release the input pin."""
        with self._lock:
            button, self._button = self._button, None
        if button is not None:
            button.close()

    def release(self) -> None:
        """Same as close()."""
        self.close()


@dataclass(frozen=True, slots=True)
class LedPattern:
    """A colour (r, g, b in 0/1) and a rhythm: steady when on_s is None, else blink on_s/off_s."""

    color: tuple[int, int, int]
    on_s: float | None = None
    off_s: float | None = None
    pulse: bool = False  # fade in and out; needs PWM pins, shown steady otherwise


RED = (1, 0, 0)
GREEN = (0, 1, 0)
BLUE = (0, 0, 1)
YELLOW = (1, 1, 0)
BLACK = (0, 0, 0)

# One pattern per state; the colours follow the common charger convention (green free, blue busy, red fault).
PATTERNS: dict[IndicatorState, LedPattern] = {
    IndicatorState.OFF: LedPattern(BLACK),
    IndicatorState.AVAILABLE: LedPattern(GREEN),
    IndicatorState.PREPARING: LedPattern(BLUE, on_s=0.5, off_s=0.5),
    IndicatorState.CHARGING: LedPattern(BLUE, on_s=1.0, off_s=1.0, pulse=True),
    IndicatorState.SUSPENDED: LedPattern(BLUE, on_s=0.2, off_s=1.8),
    IndicatorState.FINISHING: LedPattern(GREEN, on_s=0.5, off_s=0.5),
    IndicatorState.RESERVED: LedPattern(YELLOW),
    IndicatorState.UNAVAILABLE: LedPattern(RED),
    IndicatorState.FAULTED: LedPattern(RED, on_s=0.25, off_s=0.25),
}


class GpioIndicator:
    """An RGB LED (three pins) showing a connector state as a colour and blink pattern."""

    OPTIONS = ("red_pin", "green_pin", "blue_pin", "active_high", "pwm")

    def __init__(
        self, name: str, red_pin: PinId, green_pin: PinId, blue_pin: PinId,
        active_high: bool = True, pwm: bool = False, pin_factory: Any = None,
    ) -> None:
        self.name = name
        self.pwm = pwm
        self._lock = threading.Lock()
        try:
            self._led: RGBLED | None = RGBLED(
                red_pin, green_pin, blue_pin, active_high=active_high, pwm=pwm, pin_factory=pin_factory
            )
        except GPIOZeroError as err:
            raise _wrap_gpio(name, "the RGB LED", err) from err
        self._state = IndicatorState.OFF

    @classmethod
    def from_config(cls, name: str, options: dict[str, Any], pool: object | None = None) -> GpioIndicator:
        """Build from a config table: {red_pin, green_pin, blue_pin, active_high, pwm}."""
        _check_options(name, options, cls.OPTIONS, ("red_pin", "green_pin", "blue_pin"))
        pins = [_pin_option(name, options, key) for key in ("red_pin", "green_pin", "blue_pin")]
        red, green, blue = (p for p in pins if p is not None)
        return cls(
            name, red, green, blue,
            active_high=bool(_bool_option(name, options, "active_high", True)),
            pwm=bool(_bool_option(name, options, "pwm", False)),
        )

    def show(self, state: IndicatorState) -> None:
        """Show a state; repeating the current state does not restart its blink."""
        with self._lock:
            led = self._led
            if led is None or (state == self._state and state != IndicatorState.OFF):
                self._state = state
                return
            pattern = PATTERNS[state]
            if pattern.pulse and self.pwm:
                assert pattern.on_s is not None
                led.pulse(fade_in_time=pattern.on_s, fade_out_time=pattern.on_s, on_color=pattern.color)
            elif pattern.on_s is not None and not pattern.pulse:
                led.blink(on_time=pattern.on_s, off_time=pattern.off_s, on_color=pattern.color)
            else:
                led.off()  # stops a running blink thread before the new colour
                led.value = pattern.color
            self._state = state

    @property
    def state(self) -> IndicatorState:
        """The state shown."""
        return self._state

    @property
    def pattern(self) -> LedPattern:
        """The pattern of the state shown."""
        return PATTERNS[self._state]

    def close(self) -> None:
        """Turn the LED off and release its pins."""
        with self._lock:
            if self._led is not None:
                self._led.close()
                self._led = None

    def release(self) -> None:
        """Same as close()."""
        self.close()


class GpioConnectorLock(_FeedbackSwitch):
    """A cable lock actuator driven by one output, with an optional locked-feedback input."""

    OPTIONS = ("pin", "feedback_pin", "active_high", "feedback_active_high", "settle_s")

    @classmethod
    def from_config(
        cls, name: str, options: dict[str, Any], pool: object | None = None
    ) -> GpioConnectorLock:
        """Build from a config table: {pin, feedback_pin, active_high, feedback_active_high, settle_s}."""
        _check_options(name, options, cls.OPTIONS, ("pin",))
        pin = _pin_option(name, options, "pin")
        assert pin is not None
        return cls(
            name,
            pin,
            _pin_option(name, options, "feedback_pin"),
            bool(_bool_option(name, options, "active_high", True)),
            bool(_bool_option(name, options, "feedback_active_high", True)),
            _float_option(name, options, "settle_s", DEFAULT_LOCK_SETTLE_S),
        )

    def lock(self) -> None:
        """Drive the actuator to locked."""
        self._set(True)

    def unlock(self) -> None:
        """Drive the actuator to unlocked."""
        self._set(False)

    @property
    def commanded_locked(self) -> bool:
        """What the actuator was last told."""
        return self._commanded_on

    @property
    def locked(self) -> bool | None:
        """The feedback's report; None without a feedback pin."""
        return self._feedback_on

    def check(self) -> None:
        """Raise HardwareFault("lock_failure") when the feedback disagrees after the settle time."""
        with self._lock:
            feedback = self._feedback_on
            if feedback is None or not self._settled() or feedback == self._commanded:
                return
            commanded = self._commanded
        raise HardwareFault(
            self.name, "lock_failure",
            f"lock feedback says {'locked' if feedback else 'unlocked'} but it was told to "
            f"{'lock' if commanded else 'unlock'}: check the cable is fully inserted and the actuator",
        )

    def close(self) -> None:
        """Unlock and release the pins."""
        self._release_pins()

    def release(self) -> None:
        """Same as close(); every GPIO device has `release()` (the contactor's `close()` switches it)."""
        self._release_pins()
