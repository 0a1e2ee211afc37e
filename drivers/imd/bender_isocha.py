"""Driver for the Bender ISOMETER isoCHA425HV insulation monitor over Modbus RTU or TCP (docs/dc-safety.md).

The driver owns the thresholds: R1 (pre-alarm, our warning) and R2 (alarm, our fault) are written with the
device enabled on the first exchange and again on the first exchange after any communication fault, so a
device that was power-cycled or re-configured on its display measures against the agent's values again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from drivers.base import ImdSelfTestResult, ImdState, ImdThresholds, InsulationReading, now_stamps
from drivers.errors import CommunicationFault, ConfigError, ImplausibleReading
from drivers.imd import isocha_registers as reg
from drivers.transport import DEFAULT_TIMEOUT_S, BusPool, ModbusBus

LOGGER = logging.getLogger(__name__)

DRIVER_NAME = "bender_isocha425hv"
ALLOWED_OPTIONS = (
    "driver", "url", "device_id", "baudrate", "parity", "stopbits", "timeout_s",
    "warning_kohm", "fault_kohm", "self_test_timeout_s", "chademo",
)
DEFAULT_DEVICE_ID = 3  # the isoCHA's factory address
DEFAULT_BAUDRATE = 19200  # factory setting: 19200 baud, even parity, one stop bit
DEFAULT_PARITY = "E"
# IEC 61851-23 cable check: 100 ohm/V is a fault, 500 ohm/V a warning; at 1000 V that is 100 and 500 kOhm
DEFAULT_WARNING_KOHM = 500
DEFAULT_FAULT_KOHM = 100
DEFAULT_SELF_TEST_TIMEOUT_S = 30.0  # the EVerest module's bound for the long self-test
SELF_TEST_POLL_S = 0.1
SELF_TEST_START_WAIT_S = 2.0  # a self-test that never shows as running within this is over already


class BenderIsoCha:
    """A Bender ISOMETER isoCHA425HV on a Modbus line."""

    def __init__(self, name: str, bus: ModbusBus, device_id: int = DEFAULT_DEVICE_ID,
                 thresholds: ImdThresholds | None = None, self_test_timeout_s: float = DEFAULT_SELF_TEST_TIMEOUT_S,
                 chademo: bool = False) -> None:
        self.name = name
        self.bus = bus
        self.device_id = device_id
        self._thresholds = thresholds or ImdThresholds(DEFAULT_WARNING_KOHM * 1000.0, DEFAULT_FAULT_KOHM * 1000.0)
        _check_thresholds(name, self._thresholds)
        self.self_test_timeout_s = self_test_timeout_s
        self.chademo = chademo
        self.device_name = ""
        self.firmware_version: int | None = None
        self._apply_pending = True  # write the settings on the first exchange and after any fault
        self._last: InsulationReading | None = None
        self._stale = False
        self._closed = False
        self._implausible = 0

    @classmethod
    def from_config(cls, name: str, options: dict[str, Any], pool: BusPool) -> BenderIsoCha:
        """Build the driver from its config table; unknown or malformed options raise ConfigError."""
        unknown = sorted(set(options) - set(ALLOWED_OPTIONS))
        if unknown:
            raise ConfigError(name, f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(ALLOWED_OPTIONS)}")
        if options.get("driver", DRIVER_NAME) != DRIVER_NAME:
            raise ConfigError(name, f"driver must be {DRIVER_NAME!r}")
        url = options.get("url")
        if not isinstance(url, str) or not url:
            raise ConfigError(name, "option url is required (tcp://host:port or a serial device path)")
        device_id = _number(name, options, "device_id", DEFAULT_DEVICE_ID, 1, 247, integer=True)
        baudrate = _number(name, options, "baudrate", DEFAULT_BAUDRATE, 300, 1_000_000, integer=True)
        stopbits = _number(name, options, "stopbits", 1, 1, 2, integer=True)
        parity = options.get("parity", DEFAULT_PARITY)
        if parity not in ("N", "E", "O"):
            raise ConfigError(name, f"parity must be N, E or O, not {parity!r}")
        timeout_s = _number(name, options, "timeout_s", DEFAULT_TIMEOUT_S, 0.01, 60.0)
        warning = _number(name, options, "warning_kohm", DEFAULT_WARNING_KOHM,
                          reg.THRESHOLD_MIN_KOHM, reg.THRESHOLD_MAX_KOHM, integer=True)
        fault = _number(name, options, "fault_kohm", DEFAULT_FAULT_KOHM,
                        reg.THRESHOLD_MIN_KOHM, reg.THRESHOLD_MAX_KOHM, integer=True)
        self_test_timeout_s = _number(name, options, "self_test_timeout_s", DEFAULT_SELF_TEST_TIMEOUT_S, 0.5, 300.0)
        chademo = options.get("chademo", False)
        if not isinstance(chademo, bool):
            raise ConfigError(name, f"option chademo must be true or false, not {chademo!r}")
        try:
            bus = pool.get(url, baudrate=int(baudrate), parity=parity, stopbits=int(stopbits), timeout_s=timeout_s)
        except ConfigError as err:
            raise ConfigError(name, err.message) from err
        return cls(name, bus, int(device_id), ImdThresholds(warning * 1000.0, fault * 1000.0),
                   self_test_timeout_s=self_test_timeout_s, chademo=chademo)

    # ------------------------------------------------------------------ InsulationMonitor
    @property
    def thresholds(self) -> ImdThresholds:
        """The thresholds the driver holds (and re-applies after a fault)."""
        return self._thresholds

    def error_counts(self) -> dict[str, int]:
        """Failed exchanges by kind for this device id, plus "implausible" (a channel the map forbids)."""
        return {**self.bus.error_counts(self.device_id), "implausible": self._implausible}

    def communication_errors(self) -> int:
        """Failed exchanges with this device id (timeouts, refused frames, exception answers, I/O errors)."""
        return self.bus.errors_of(self.device_id)

    def last_reading(self) -> InsulationReading | None:
        """The last reading; marked stale (with its original read time) after a failed read."""
        if self._last is None or not self._stale:
            return self._last
        return replace(self._last, stale=True)

    async def set_thresholds(self, warning_ohm: float, fault_ohm: float) -> None:
        """New warning and fault thresholds in ohms, written to the device at once (kept for a resync)."""
        thresholds = ImdThresholds(float(warning_ohm), float(fault_ohm))
        _check_thresholds(self.name, thresholds)
        self._thresholds = thresholds
        self._apply_pending = True
        with self._comms():
            await self._resync()

    async def read(self) -> InsulationReading:
        """Read the resistance and voltage channels (two requests), re-applying settings after a fault."""
        with self._comms():
            await self._resync()
            rf_regs = await self.bus.read(self.name, self.device_id, 3, reg.RESISTANCE_RF, reg.CHANNEL_COUNT)
            un_regs = await self.bus.read(self.name, self.device_id, 3, reg.VOLTAGE_UN, reg.CHANNEL_COUNT)
        try:
            rf = reg.decode_channel(rf_regs, reg.Unit.OHM)
            un = reg.decode_channel(un_regs, reg.Unit.VOLT)
        except reg.DecodeError as err:
            self._implausible += 1
            self._stale = True
            raise ImplausibleReading(self.name, "channel", f"impossible IMD channel: {err}",
                                     {reg.RESISTANCE_RF: tuple(rf_regs), reg.VOLTAGE_UN: tuple(un_regs)}) from err
        mono, wall = now_stamps()
        resistance = None if rf.validity is reg.Validity.INVALID else rf.value
        voltage = None if un.validity is reg.Validity.INVALID else un.value
        reading = InsulationReading(self._state(rf, resistance), resistance, voltage, self._thresholds, mono, wall)
        if self._stale:
            LOGGER.info("%s: communication restored", self.name)
        self._stale = False
        if self._last is None or self._last.state is not reading.state:
            LOGGER.info("%s: insulation %s (%s ohm)", self.name, reading.state.value,
                        f"{resistance:.0f}" if resistance is not None else "?")
        self._last = reading
        return reading

    async def self_test(self) -> ImdSelfTestResult:
        """Start the device's self-test and wait for its end (bounded by self_test_timeout_s)."""
        with self._comms():
            await self._resync()
            await self.bus.write(self.name, self.device_id, reg.SELF_TEST_COMMAND, [reg.SELF_TEST_START])
        started = time.monotonic()
        deadline = started + self.self_test_timeout_s
        seen_running = False
        while time.monotonic() < deadline:
            await asyncio.sleep(SELF_TEST_POLL_S)
            with self._comms():
                regs = await self.bus.read(self.name, self.device_id, 3, reg.RESISTANCE_RF, reg.CHANNEL_COUNT)
            try:
                channel = reg.decode_channel(regs, reg.Unit.OHM)
            except reg.DecodeError as err:
                self._implausible += 1
                return ImdSelfTestResult(False, f"impossible answer during the self-test: {err}", time.monotonic())
            running = channel.test is not reg.TestType.NONE
            if running:
                seen_running = True
                continue
            if not seen_running and time.monotonic() - started < SELF_TEST_START_WAIT_S:
                continue  # the device shows the test with a short delay
            if channel.alarm is reg.Alarm.DEVICE_ERROR:
                return ImdSelfTestResult(False, "the device reports an error after its self-test", time.monotonic())
            if not seen_running:
                return ImdSelfTestResult(False, "the self-test never started", time.monotonic())
            return ImdSelfTestResult(True, "passed", time.monotonic())
        return ImdSelfTestResult(False, f"no result within {self.self_test_timeout_s:g} s", time.monotonic())

    async def close(self) -> None:
        """Stop using the device; the bus belongs to its pool."""
        self._closed = True

    # ------------------------------------------------------------------ internals
    def _state(self, rf: reg.Channel, resistance: float | None) -> ImdState:
        """The worse of the device's alarm and our own comparison with the thresholds."""
        if rf.alarm is reg.Alarm.DEVICE_ERROR:
            return ImdState.DEVICE_ERROR
        if rf.test is not reg.TestType.NONE:
            return ImdState.SELF_TEST
        if rf.alarm is reg.Alarm.ALARM:
            return ImdState.FAULT
        if resistance is None:
            return ImdState.NO_MEASUREMENT
        # TRUE_IS_BIGGER: the real value is at least this; TRUE_IS_SMALLER: at most this (treated as it)
        if resistance < self._thresholds.fault_ohm and rf.validity is not reg.Validity.TRUE_IS_BIGGER:
            return ImdState.FAULT
        if rf.alarm in (reg.Alarm.PRE_WARNING, reg.Alarm.WARNING):
            return ImdState.WARNING
        if resistance < self._thresholds.warning_ohm and rf.validity is not reg.Validity.TRUE_IS_BIGGER:
            return ImdState.WARNING
        return ImdState.OK

    @contextlib.contextmanager
    def _comms(self) -> Iterator[None]:
        """Mark the device out of sync (and readings stale) on any communication fault, then re-raise."""
        if self._closed:
            raise CommunicationFault(self.name, "driver closed")
        try:
            yield
        except CommunicationFault as err:
            if not self._stale:
                LOGGER.warning("%s: %s; thresholds re-applied when the device is back", self.name, err.message)
            self._stale = True
            self._apply_pending = True
            raise

    async def _resync(self) -> None:
        """Identify the device, then write thresholds, mode and enable (first exchange, after a fault)."""
        if not self._apply_pending:
            return
        name = reg.decode_name(await self.bus.read(self.name, self.device_id, 3, reg.DEVICE_NAME,
                                                   reg.DEVICE_NAME_COUNT))
        if not name.lower().startswith("iso"):
            raise ConfigError(self.name, f"device {self.device_id} on {self.bus.endpoint.url} names itself "
                                         f"{name!r}, not a Bender ISOMETER; check url and device_id")
        if name != self.device_name:
            firmware = await self.bus.read(self.name, self.device_id, 3, reg.FIRMWARE, reg.FIRMWARE_COUNT)
            self.device_name, self.firmware_version = name, firmware[1]
            LOGGER.info("%s: %s firmware %.2f", self.name, name, firmware[1] / 100)
        t = self._thresholds
        writes = (
            (reg.R1_PREALARM_KOHM, round(t.warning_ohm / 1000)),
            (reg.R2_ALARM_KOHM, round(t.fault_ohm / 1000)),
            (reg.CHADEMO_MODE, 1 if self.chademo else 0),
            (reg.AUTO_SELF_TEST, 0),  # self-tests run when the agent asks: never in the middle of a session
            (reg.DEVICE_ENABLE, 1),
        )
        for address, value in writes:  # one register each, as the device's manual and EVerest write them
            await self.bus.write(self.name, self.device_id, address, [value])
        self._apply_pending = False
        LOGGER.debug("%s: thresholds %s applied", self.name, t)


def _check_thresholds(name: str, t: ImdThresholds) -> None:
    lo, hi = reg.THRESHOLD_MIN_KOHM * 1000.0, reg.THRESHOLD_MAX_KOHM * 1000.0
    if not (lo <= t.fault_ohm < t.warning_ohm <= hi):
        raise ConfigError(name, f"thresholds must satisfy {lo:.0f} <= fault < warning <= {hi:.0f} ohm, "
                                f"not warning {t.warning_ohm:.0f}, fault {t.fault_ohm:.0f}")


def _number(name: str, options: dict[str, Any], key: str, default: float, lo: float, hi: float,
            integer: bool = False) -> float:
    value = options.get(key, default)
    wrong_kind = isinstance(value, bool) or not isinstance(value, int | float) or (
        integer and not isinstance(value, int))
    if wrong_kind or not lo <= float(value) <= hi:
        what = "an integer" if integer else "a number"
        raise ConfigError(name, f"option {key} must be {what} from {lo:g} to {hi:g}, not {value!r}")
    return float(value)
