"""Driver for CCS/CHAdeMO controllers implementing the evse-agent DC Modbus map (docs/dc-controller.md).

The driver owns the setpoints (allow, current and power limit, watchdog timeout): it keeps the last ones the
caller gave and writes them in one function 16 request on the first successful exchange with the device, and
again on the first successful exchange after any communication fault (the device may have rebooted to its
power-up defaults, or a command may have been lost). A pending emergency shutdown is re-sent the same way.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from drivers.base import DcStatus, now_stamps
from drivers.dc import registers as reg
from drivers.errors import CommunicationFault, ConfigError, FrameError, HardwareFault, UnsupportedDriver
from drivers.transport import DEFAULT_TIMEOUT_S, BusPool, ModbusBus

LOGGER = logging.getLogger(__name__)

DRIVER_NAME = "modbus_dc"
ALLOWED_OPTIONS = (
    "driver", "url", "device_id", "baudrate", "parity", "stopbits", "timeout_s", "heartbeat_timeout_s",
)
MIN_HEARTBEAT_TIMEOUT_S = 0.1  # one register step
MAX_HEARTBEAT_TIMEOUT_S = 0xFFFF * 0.1
MAX_LIMIT_A = 0xFFFF * 0.1  # register range; a larger request means "no tighter than the hardware"
MAX_LIMIT_W = float(0xFFFFFFFF)
HEARTBEAT_MAX = 0xFFFF  # the counter runs 1..65535 and never writes 0, a controller's power-up value
ILLEGAL_DATA_ADDRESS = 2  # Modbus exception: what a controller answers for registers its map does not have


@dataclass(frozen=True, slots=True)
class DcSetpoints:
    """What the host last asked of the controller; re-applied after a communication fault."""

    allowed: bool = False
    limit_a: float = 0.0
    limit_w: float = 0.0


def fault_details(status: DcStatus) -> list[tuple[str, str]]:
    """(stable code, what it is) of each fault a status reports: the error bits in bit order, where the
    generic `ev_error` bit gives way to the vehicle faults a version 2 controller names (CHAdeMO flags, the
    CCS EV error code); a vehicle fault shows even if the controller did not set `ev_error`."""
    vehicle = reg.vehicle_faults(status.detail)
    found: list[tuple[str, str]] = []
    for code in reg.error_codes(status.errors):
        if code == "ev_error" and vehicle:
            found += vehicle
            vehicle = []
        else:
            found.append((code, code))
    return found + vehicle


def fault_codes(status: DcStatus) -> list[str]:
    """Stable codes ("isolation_fault", "over_voltage", "chademo_battery_over_voltage", ...) of a status."""
    return [code for code, _ in fault_details(status)]


class ModbusDcController:
    """A CCS or CHAdeMO controller speaking the evse-agent DC register map over Modbus TCP or RTU."""

    def __init__(self, name: str, bus: ModbusBus, device_id: int, heartbeat_timeout_s: float = 5.0) -> None:
        if not MIN_HEARTBEAT_TIMEOUT_S <= heartbeat_timeout_s <= MAX_HEARTBEAT_TIMEOUT_S:
            raise ConfigError(
                name,
                f"heartbeat_timeout_s must be {MIN_HEARTBEAT_TIMEOUT_S} to {MAX_HEARTBEAT_TIMEOUT_S:.1f} s",
            )
        self.name = name
        self.bus = bus
        self.device_id = device_id
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self._setpoints = DcSetpoints()
        # True until the device holds our setpoints: the first exchange writes them (a restarted host must
        # not inherit a previous host's "allowed"), and every communication fault sets it again.
        self._apply_pending = True
        self._emergency_pending = False
        self._identified = False
        self._map_version: int | None = None  # learnt from register 0x0001 at each identification
        self._heartbeat = 0
        self._last: DcStatus | None = None
        self._stale = False
        self._closed = False
        self._implausible = 0

    @classmethod
    def from_config(cls, name: str, options: dict[str, Any], pool: BusPool) -> ModbusDcController:
        """Build the driver from its config table; unknown or malformed options raise ConfigError."""
        unknown = sorted(set(options) - set(ALLOWED_OPTIONS))
        if unknown:
            raise ConfigError(
                name, f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(ALLOWED_OPTIONS)}"
            )
        driver = options.get("driver", DRIVER_NAME)
        if driver != DRIVER_NAME:
            raise ConfigError(name, f"driver must be {DRIVER_NAME!r}, not {driver!r}")
        url = options.get("url")
        if not isinstance(url, str) or not url:
            raise ConfigError(name, "option url is required (tcp://host:port or a serial device path)")
        device_id = _int_option(name, options, "device_id", None, 1, 247)
        baudrate = _int_option(name, options, "baudrate", 9600, 300, 1_000_000)
        stopbits = _int_option(name, options, "stopbits", 1, 1, 2)
        parity = options.get("parity", "N")
        if parity not in ("N", "E", "O"):
            raise ConfigError(name, f"parity must be N, E or O, not {parity!r}")
        timeout_s = _float_option(name, options, "timeout_s", DEFAULT_TIMEOUT_S, 0.01, 60.0)
        heartbeat_timeout_s = _float_option(
            name, options, "heartbeat_timeout_s", reg.DEFAULT_HEARTBEAT_TIMEOUT_S,
            MIN_HEARTBEAT_TIMEOUT_S, MAX_HEARTBEAT_TIMEOUT_S,
        )
        try:
            bus = pool.get(url, baudrate=baudrate, parity=parity, stopbits=stopbits, timeout_s=timeout_s)
        except ConfigError as err:
            raise ConfigError(name, err.message) from err
        return cls(name, bus, device_id, heartbeat_timeout_s=heartbeat_timeout_s)

    # ------------------------------------------------------------------ state the agent may inspect
    @property
    def setpoints(self) -> DcSetpoints:
        """The setpoints the driver holds (and re-applies after a fault)."""
        return self._setpoints

    @property
    def resync_pending(self) -> bool:
        """True while the device may not hold the driver's setpoints (before the first or after a fault)."""
        return self._apply_pending or self._emergency_pending

    @property
    def map_version(self) -> int | None:
        """The register map version the device declared (None before the first exchange)."""
        return self._map_version

    def error_counts(self) -> dict[str, int]:
        """Failed exchanges by kind for this device id, plus "implausible" (status out of its range)."""
        return {**self.bus.error_counts(self.device_id), "implausible": self._implausible}

    def communication_errors(self) -> int:
        """Failed exchanges with this device id (timeouts, refused frames, exception answers, I/O errors)."""
        return self.bus.errors_of(self.device_id)

    def last_reading(self) -> DcStatus | None:
        """The last status read; marked stale (with its original read time) after a failed read."""
        if self._last is None or not self._stale:
            return self._last
        return replace(self._last, stale=True)

    # ------------------------------------------------------------------ DcController
    async def read(self) -> DcStatus:
        """Read the status block (one request), re-applying setpoints first if the device just came back."""
        with self._comms():
            block = await self._read_block()
            if self.resync_pending:
                await self._resync()
                block = await self._read_block()  # the status must show the setpoints just applied
        mono, wall = now_stamps()
        try:
            status = reg.decode_status(block, mono, wall)
        except reg.DecodeError as err:
            self._implausible += 1
            raise HardwareFault(self.name, "invalid_register", f"impossible status value: {err}") from err
        self._last = status
        if self._stale:
            LOGGER.info("%s: communication restored", self.name)
        self._stale = False
        return status

    async def allow_charging(self, allowed: bool) -> None:
        """Allow or stop charging; returns once written (the controller ramps down by itself)."""
        self._setpoints = replace(self._setpoints, allowed=allowed)
        await self._apply_setpoints()

    async def set_limits(self, current_a: float, power_w: float) -> None:
        """Set the current (A) and power (W) limits; ValueError for negative or NaN values."""
        for label, value in (("current_a", current_a), ("power_w", power_w)):
            if math.isnan(value) or value < 0:
                raise ValueError(f"{label} must be a non-negative number, not {value}")
        self._setpoints = replace(
            self._setpoints, limit_a=min(current_a, MAX_LIMIT_A), limit_w=min(power_w, MAX_LIMIT_W)
        )
        await self._apply_setpoints()

    async def emergency_shutdown(self) -> None:
        """Command an immediate stop, latched in the controller until `reset_faults()`."""
        self._setpoints = replace(self._setpoints, allowed=False)
        self._emergency_pending = True
        self._apply_pending = True
        with self._comms():
            # No identification round trip first: an emergency stop is never delayed.
            await self._write(reg.COMMANDS["emergency_shutdown"].address, [1])
            self._emergency_pending = False
            await self._resync()

    async def reset_faults(self) -> None:
        """Clear the controller's latched faults (host emergency, host timeout); set causes stay."""
        self._emergency_pending = False
        with self._comms():
            await self._ensure_identified()
            await self._resync()
            await self._write(reg.COMMANDS["fault_reset"].address, [1])

    async def heartbeat(self) -> None:
        """Write the next heartbeat value; call at least every heartbeat_timeout_s / 2."""
        self._heartbeat = self._heartbeat % HEARTBEAT_MAX + 1
        with self._comms():
            await self._ensure_identified()
            await self._resync()
            await self._write(reg.COMMANDS["heartbeat"].address, [self._heartbeat])

    async def close(self) -> None:
        """Stop using the device; the bus belongs to its pool (other devices may share the line)."""
        self._closed = True

    # ------------------------------------------------------------------ internals
    @contextlib.contextmanager
    def _comms(self) -> Iterator[None]:
        """Mark the device out of sync (and readings stale) on any communication fault, then re-raise."""
        if self._closed:
            raise CommunicationFault(self.name, "driver closed")
        try:
            yield
        except CommunicationFault as err:
            if not self._stale:
                LOGGER.warning("%s: %s; keeping setpoints %s until the device is back",
                               self.name, err.message, self._setpoints)
            self._stale = True
            self._apply_pending = True
            raise

    async def _apply_setpoints(self) -> None:
        self._apply_pending = True
        with self._comms():
            await self._ensure_identified()
            await self._resync()

    async def _resync(self) -> None:
        """Send what the device may have missed: a pending emergency first, then the setpoint block."""
        if self._emergency_pending:
            await self._write(reg.COMMANDS["emergency_shutdown"].address, [1])
            self._emergency_pending = False
        if self._apply_pending:
            sp = self._setpoints
            await self._write(
                reg.SETPOINT_BASE,
                reg.encode_setpoints(sp.allowed, sp.limit_a, sp.limit_w, self.heartbeat_timeout_s),
            )
            self._apply_pending = False
            LOGGER.debug("%s: applied %s", self.name, sp)

    async def _ensure_identified(self) -> None:
        if not self._identified:
            await self._read_block()

    async def _read_block(self) -> list[int]:
        """One status read of as many registers as the device's map version has; a device not identified yet
        is read with the version 1 block (every version answers it), then once more if it declares more."""
        count = reg.status_count(self._map_version) if self._map_version else reg.STATUS_COUNT_V1
        try:
            block = await self.bus.read(self.name, self.device_id, 4, reg.STATUS_BASE, count)
        except FrameError as err:
            if err.exception_code == ILLEGAL_DATA_ADDRESS and count > reg.STATUS_COUNT_V1:
                # a controller whose firmware went back to a shorter map: identify it again next time
                self._map_version = None
            raise
        self._check_identity(block)
        if len(block) != reg.status_count(block[1]):
            block = await self.bus.read(self.name, self.device_id, 4, reg.STATUS_BASE,
                                        reg.status_count(block[1]))
            self._check_identity(block)
        return block

    def _check_identity(self, block: Sequence[int]) -> None:
        where = f"device {self.device_id} on {self.bus.endpoint.url}"
        if block[0] != reg.MAGIC:
            self._identified = False
            raise ConfigError(
                self.name,
                f"{where} is not an evse-agent DC controller: input register 0x0000 holds 0x{block[0]:04X}, "
                f"expected 0x{reg.MAGIC:04X}; check url and device_id",
            )
        if block[1] not in reg.SUPPORTED_MAP_VERSIONS:
            self._identified = False
            raise UnsupportedDriver(
                self.name,
                f"{where} implements DC register map version {block[1]}; this driver supports "
                f"{', '.join(str(v) for v in sorted(reg.SUPPORTED_MAP_VERSIONS))}",
            )
        if self._map_version != block[1]:
            LOGGER.info("%s: %s implements DC register map version %d", self.name, where, block[1])
            self._map_version = block[1]
        self._identified = True

    async def _write(self, address: int, values: list[int]) -> None:
        await self.bus.write(self.name, self.device_id, address, values)


def _int_option(name: str, options: dict[str, Any], key: str, default: int | None, lo: int, hi: int) -> int:
    value = options.get(key, default)
    if value is None:
        raise ConfigError(name, f"option {key} is required")
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(name, f"option {key} must be an integer from {lo} to {hi}, not {value!r}")
    return value


def _float_option(
    name: str, options: dict[str, Any], key: str, default: float, lo: float, hi: float
) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ConfigError(name, f"option {key} must be a number from {lo} to {hi:g}, not {value!r}")
    return float(value)
