"""Polls the drivers of each connector and turns readings and errors into observations for the core.

A driver error never escapes this module: it becomes a fault observation (with a stable code) that
clears itself when the device answers again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from drivers.base import (
    ChademoFault,
    ChademoStatus,
    ChargeProtocol,
    ConnectorLock,
    Contactor,
    DcController,
    DcStatus,
    DeviceHealth,
    EmergencyStop,
    EnergyMeter,
    IdReader,
    ImdSelfTestResult,
    ImdState,
    Indicator,
    IndicatorState,
    InsulationMonitor,
    InsulationReading,
    Isolation,
    MeterReading,
    PlugState,
)
from drivers.dc.modbus_dc import fault_details
from drivers.errors import DriverError, HardwareFault, ImplausibleReading

LOGGER = logging.getLogger(__name__)

def _log_shutdown(name: str, future: concurrent.futures.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        LOGGER.error("%s: emergency shutdown not delivered: %s", name, future.exception())


WELDED_CODE = "contactor_welded"  # agent.core's code for a contactor that may leave the cable live


def dc_view(connector_id: int, status: DcStatus) -> dict[str, Any]:
    """A DC controller's last status as a technician reads it (evsectl status, the diagnostics bundle)."""
    view: dict[str, Any] = {
        "connector": connector_id, "protocol": status.protocol.name, "map_version": status.map_version,
        "plugged": status.plug is PlugState.PLUGGED, "ev_state": status.ev_state.name, "ev_ready": status.ev_ready,
        "soc_pct": status.soc_pct, "ev_target_v": status.ev_target_v, "ev_target_a": status.ev_target_a,
        "ev_max_v": status.ev_max_v, "ev_max_a": status.ev_max_a, "present_v": status.present_v,
        "present_a": status.present_a, "isolation": status.isolation.name.lower(),
        "temperature_c": status.temperature_c, "stale": status.stale,
        "age_s": round(time.monotonic() - status.read_monotonic, 1) if status.read_monotonic else None,
        "faults": [{"code": code, "name": name} for code, name in fault_details(status)],
    }
    detail = status.detail
    if status.protocol is ChargeProtocol.CHADEMO:
        view["chademo_step"] = status.chademo_step
    if detail is not None and status.protocol is ChargeProtocol.CHADEMO:
        view["chademo"] = {
            "protocol_number": detail.chademo_protocol, "charging_enabled": detail.charging_enabled,
            "status_flags": [str(f.name).lower() for f in ChademoStatus if f and f in detail.chademo_status],
            "fault_flags": [str(f.name).lower() for f in ChademoFault if f and f in detail.chademo_faults],
            "max_charging_time_s": detail.max_charging_time_s,
            "estimated_charging_time_s": detail.estimated_charging_time_s,
            "battery_capacity_kwh": detail.battery_capacity_kwh,
        }
    if detail is not None and status.protocol is ChargeProtocol.CCS:
        view["ccs"] = {
            "phase": detail.ccs_phase.name.lower(), "ev_error_code": detail.ev_error_code.name,
            "full_soc_pct": detail.full_soc_pct, "bulk_soc_pct": detail.bulk_soc_pct,
            "ev_max_power_w": detail.ev_max_power_w,
        }
    return view


# Driver fault codes that would read like another device's on the connector get a "dc_" prefix.
DC_CODE_RENAMES = {"contactor": "dc_contactor", "internal": "dc_internal"}


@dataclass(frozen=True, slots=True)
class Fault:
    """An active fault: which device, a stable code, and whether charging must stop."""

    source: str
    code: str
    message: str
    stops_charging: bool = True
    suspends_charging: bool = False  # charging pauses, the transaction goes on (a device silent for a while)
    role: str = "other"  # the device's job on the connector: meter, dc, contactor, lock (or other)


@dataclass
class ConnectorDevices:
    """The drivers wired to one connector."""

    connector_id: int
    kind: str
    meter: EnergyMeter
    contactor: Contactor
    dc: DcController | None = None
    lock: ConnectorLock | None = None
    indicator: Indicator | None = None
    imd: InsulationMonitor | None = None  # DC: the insulation monitor on the output
    cable_check: str = "controller"  # whose isolation result gates the contactor: "controller" or "imd"


@dataclass
class ConnectorObservation:
    """What one poll saw on a connector."""

    connector_id: int
    meter: MeterReading | None
    dc: DcStatus | None
    faults: dict[tuple[str, str], Fault]
    plugged: bool | None = None  # None: unknown (AC without a pilot board reports nothing)
    ev_ready: bool | None = None
    isolation_valid: bool | None = None
    soc_pct: float | None = None
    imd: InsulationReading | None = None


# An IMD state that lets energy flow (the cable check passes): a warning is reported but charging goes on.
IMD_PASSES = (ImdState.OK, ImdState.WARNING)


@dataclass
class Hardware:
    """All devices of the charge point and their polling."""

    connectors: dict[int, ConnectorDevices]
    estop: EmergencyStop | None = None
    reader: IdReader | None = None
    health: dict[str, DeviceHealth] = field(default_factory=dict)
    polls: int = 0
    first_poll_ok: bool = False
    silent_suspend_s: float = 5.0  # a meter or controller silent this long suspends charging ...
    silent_stop_s: float = 60.0  # ... and this long stops the transaction
    meter_replaced_after_s: float = 300.0  # a register consistently below the last accepted one this long
    welded_at_start: set[int] = field(default_factory=set)  # connectors locked at start: contactor welded
    imd_self_tests: dict[int, ImdSelfTestResult] = field(default_factory=dict)  # the last one per connector

    def __post_init__(self) -> None:
        if self.estop is not None:
            # The press opens the contactors in gpiozero's thread, not after an event-loop round trip.
            bind = getattr(self.estop, "bind_contactors", None)
            contactors = [c.contactor for c in self.connectors.values()]
            if bind is not None:
                bind(contactors)
            else:
                def open_all(pressed: bool) -> None:
                    if pressed:
                        for contactor in contactors:
                            contactor.open()

                self.estop.on_change(open_all)

    def bind_dc_shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        """On an e-stop press, from the GPIO thread: every controller gets its emergency shutdown.

        The e-stop driver has opened the contactors before this runs (issue 14: on e-stop the contactor opens
        at once, no ramp-down): the shutdown is handed to the loop and not waited for, so a slow bus or a busy
        loop never holds the GPIO thread or the contactor."""
        controllers = [d.dc for d in self.connectors.values() if d.dc is not None]
        if self.estop is None or not controllers:
            return

        def shutdown(pressed: bool) -> None:
            if not pressed:
                return
            for dc in controllers:
                future = asyncio.run_coroutine_threadsafe(dc.emergency_shutdown(), loop)
                future.add_done_callback(functools.partial(_log_shutdown, dc.name))

        self.estop.on_change(shutdown)

    async def reset_controllers(self, pressed_again: Callable[[], bool] = lambda: False) -> None:
        """After the e-stop is released: clear the controllers' latched emergency so charging may resume."""
        for devices in self.connectors.values():
            if pressed_again():
                return  # pressed again meanwhile: its emergency shutdown must stay latched
            if devices.dc is not None:
                try:
                    await devices.dc.reset_faults()
                except DriverError as err:
                    LOGGER.warning("%s: reset after the e-stop failed: %s", devices.dc.name, err)

    def _mark(self, name: str, error: DriverError | None) -> None:
        health = self.health.get(name) or DeviceHealth(name, True)
        now = time.monotonic()
        if error is None:
            if not health.ok:
                LOGGER.info("%s recovered", name)
            self.health[name] = replace(health, ok=True, error=None, last_ok_monotonic=now, failing_since=None,
                                        since_monotonic=now if not health.ok else health.since_monotonic)
        else:
            if health.ok:
                LOGGER.warning("%s faulted: %s", name, error)
            self.health[name] = replace(
                health, ok=False, error=str(error), failures=health.failures + 1,
                failing_since=health.failing_since if health.failing_since is not None else now,
                since_monotonic=now if health.ok else health.since_monotonic)

    def _meter_replaced(self, devices: ConnectorDevices, err: DriverError) -> Fault | None:
        """A register that stays below the last accepted one (agreeing with itself) for meter_replaced_after_s
        is a replaced meter or a reset register: fault once (recorded), then accept the new register as the
        baseline, so the connector recovers instead of staying faulted for good."""
        if not isinstance(err, ImplausibleReading) or err.reason != "energy_backwards":
            return None
        meter = devices.meter
        backwards_for_s = meter.backwards_for_s()
        if backwards_for_s < self.meter_replaced_after_s:
            return None
        new_wh = meter.backwards_energy_wh
        message = f"meter replaced or reset: register now {new_wh if new_wh is not None else '?'} Wh"
        LOGGER.warning("connector %d: %s (below the last accepted reading for %.0f s); new baseline",
                       devices.connector_id, message, backwards_for_s)
        meter.accept_baseline()
        return Fault(meter.name, "meter_replaced", message, role="meter")

    def _silence_fault(self, name: str, code: str, error: DriverError, role: str) -> Fault | None:
        """A device that does not answer (timeout, CRC, garbage, implausible value): retried quietly at first,
        then charging is suspended, and only a long silence ends the transaction."""
        health = self.health[name]
        silent = time.monotonic() - (health.failing_since or time.monotonic())
        if silent < self.silent_suspend_s:
            return None
        if silent < self.silent_stop_s:
            return Fault(name, code, f"silent {silent:.0f} s: {error}", stops_charging=False,
                         suspends_charging=True, role=role)
        return Fault(name, code, f"silent {silent:.0f} s: {error}", role=role)

    async def poll_connector(self, devices: ConnectorDevices) -> ConnectorObservation:
        """Read the meter and the DC controller and check the contactor and lock."""
        faults: dict[tuple[str, str], Fault] = {}
        meter_reading: MeterReading | None = None
        try:
            meter_reading = await devices.meter.read()
            self._mark(devices.meter.name, None)
        except HardwareFault as err:
            self._mark(devices.meter.name, err)
            faults[(devices.meter.name, err.code)] = Fault(devices.meter.name, err.code, str(err), role="meter")
        except DriverError as err:
            self._mark(devices.meter.name, err)
            replaced = self._meter_replaced(devices, err)
            if replaced is not None:
                faults[(devices.meter.name, replaced.code)] = replaced
            else:
                fault = self._silence_fault(devices.meter.name, "communication", err, "meter")
                if fault is not None:
                    faults[(devices.meter.name, "communication")] = fault
        obs = ConnectorObservation(devices.connector_id, meter_reading, None, faults)
        if devices.dc is not None:
            dc = devices.dc
            try:
                await dc.heartbeat()
                status = await dc.read()
                self._mark(dc.name, None)
                obs.dc = status
                obs.plugged = status.plug is PlugState.PLUGGED
                obs.ev_ready = status.ev_ready
                obs.isolation_valid = status.isolation in (Isolation.VALID, Isolation.WARNING)
                obs.soc_pct = status.soc_pct
                details = fault_details(status)
                codes = [code for code, _ in details]
                if "host_timeout" in codes:
                    # The controller latched our silence (a restart or a hung loop); we are alive again.
                    LOGGER.warning("%s reports a host timeout; resetting it", dc.name)
                    await dc.reset_faults()
                for code, name in details:
                    mapped = DC_CODE_RENAMES.get(code, code)
                    if code == "contactor" and not status.charging_allowed:
                        # the controller's contactor fault with charging stopped: its contactors failed to
                        # open (a weld; "did not close" needs a closing), so the cable stays locked
                        mapped = WELDED_CODE
                    # a vehicle fault says what the vehicle reported, in its standard's words
                    message = f"{dc.name}: {code}" if name == code else name
                    faults[(dc.name, mapped)] = Fault(dc.name, mapped, message, role="dc")
                if status.isolation is Isolation.FAULT:
                    faults[(dc.name, "isolation_fault")] = Fault(dc.name, "isolation_fault", "isolation fault",
                                                                 role="dc")
                elif status.isolation is Isolation.WARNING:
                    # its own source: a warning must never hide a stopping fault of the controller
                    source = f"{dc.name}.isolation"
                    faults[(source, "isolation_warning")] = Fault(source, "isolation_warning",
                                                                  "isolation warning", stops_charging=False, role="dc")
            except DriverError as err:
                self._mark(dc.name, err)
                fault = self._silence_fault(dc.name, "controller_communication", err, "dc")
                if fault is not None:
                    faults[(dc.name, "controller_communication")] = fault
        if devices.imd is not None:
            await self._read_imd(devices, obs)
        for role, device in (("contactor", devices.contactor), ("lock", devices.lock)):
            if device is None:
                continue
            try:
                device.check()
                self._mark(device.name, None)
            except HardwareFault as err:
                self._mark(device.name, err)
                faults[(device.name, err.code)] = Fault(device.name, err.code, str(err), role=role)
        return obs

    async def _read_imd(self, devices: ConnectorDevices, obs: ConnectorObservation) -> None:
        """The IMD's measurement as faults (warning: reported, charging goes on; fault, device error: stop)
        and, when the config names the IMD for the cable check, as the connector's isolation result."""
        imd = devices.imd
        assert imd is not None
        faults = obs.faults
        use_for_check = devices.cable_check == "imd"
        if use_for_check:
            obs.isolation_valid = None  # the controller's result does not count; unknown until the IMD answers
        test = self.imd_self_tests.get(devices.connector_id)
        if test is not None and not test.ok:
            source = f"{imd.name}.selftest"
            faults[(source, "imd_self_test_failed")] = Fault(source, "imd_self_test_failed",
                                                             f"self-test: {test.detail}", role="imd")
        try:
            reading = await imd.read()
        except DriverError as err:
            self._mark(imd.name, err)
            fault = self._silence_fault(imd.name, "imd_communication", err, "imd")
            if fault is not None:
                faults[(imd.name, "imd_communication")] = fault
                if use_for_check:
                    obs.isolation_valid = False  # unmonitored this long: no cable check passes
            return
        self._mark(imd.name, None)
        obs.imd = reading
        if use_for_check:
            # the cable check covers cable and vehicle: a measurement taken with no EV plugged in passes nothing
            obs.isolation_valid = reading.state in IMD_PASSES and obs.plugged is True
        kohm = f"{reading.resistance_ohm / 1000:.0f} kOhm" if reading.resistance_ohm is not None else "?"
        t = reading.thresholds
        if reading.state is ImdState.WARNING:
            faults[(imd.name, "isolation_warning")] = Fault(
                imd.name, "isolation_warning", f"insulation {kohm} < warning {t.warning_ohm / 1000:.0f} kOhm",
                stops_charging=False, role="imd")
        elif reading.state is ImdState.FAULT:
            faults[(imd.name, "isolation_fault")] = Fault(
                imd.name, "isolation_fault", f"insulation {kohm} < fault {t.fault_ohm / 1000:.0f} kOhm", role="imd")
        elif reading.state is ImdState.DEVICE_ERROR:
            faults[(imd.name, "imd_device_error")] = Fault(imd.name, "imd_device_error",
                                                           "insulation monitor reports a device error", role="imd")

    async def imd_self_test(self, connector_id: int) -> ImdSelfTestResult | None:
        """Run a connector's IMD self-test and keep its result (a failed one faults the connector until a
        later test passes); None without an IMD."""
        devices = self.connectors.get(connector_id)
        if devices is None or devices.imd is None:
            return None
        try:
            result = await devices.imd.self_test()
        except DriverError as err:
            result = ImdSelfTestResult(False, f"not reachable: {err}", time.monotonic())
        (LOGGER.info if result.ok else LOGGER.error)("connector %d: insulation monitor self-test %s: %s",
                                                     connector_id, "passed" if result.ok else "FAILED",
                                                     result.detail)
        self.imd_self_tests[connector_id] = result
        return result

    async def imd_self_tests_at_start(self) -> None:
        """The IMD self-test of every connector at start (the agent runs it beside the first polls)."""
        for connector_id, devices in self.connectors.items():
            if devices.imd is not None:
                await self.imd_self_test(connector_id)

    async def lock_released(self, connector_id: int) -> bool:
        """After an unlock command: wait for the lock to move, then check its feedback (True without a lock)."""
        devices = self.connectors.get(connector_id)
        lock = devices.lock if devices else None
        if lock is None:
            return True
        await asyncio.sleep(float(getattr(lock, "settle_s", 0.2)) + 0.05)
        try:
            lock.check()
        except Exception as err:
            LOGGER.warning("connector %d did not unlock: %s", connector_id, err)
            return False
        return True

    async def read_meter_now(self, connector_id: int) -> MeterReading:
        """Read a connector's meter at once (a start, a stop, a triggered value, the boot recovery); raises
        DriverError. The one way the runtime reads a meter outside the poll."""
        return await self.connectors[connector_id].meter.read()

    async def poll(self) -> dict[int, ConnectorObservation]:
        """Poll every connector concurrently (devices on one bus serialise on its lock)."""
        results = await asyncio.gather(*(self.poll_connector(d) for d in self.connectors.values()))
        self.polls += 1
        if not self.first_poll_ok and any(r.meter is not None for r in results):
            self.first_poll_ok = True
        return {r.connector_id: r for r in results}

    def show(self, connector_id: int, state: IndicatorState) -> None:
        """Set a connector's indicator, if it has one."""
        indicator = self.connectors[connector_id].indicator
        if indicator is not None:
            indicator.show(state)

    def status(self) -> dict[str, Any]:
        """Device health for evsectl, with each device's refused reads by kind (frames, plausibility)."""
        result: dict[str, Any] = {
            name: {"ok": h.ok, "error": h.error, "failures": h.failures,
                   "age_s": round(time.monotonic() - h.last_ok_monotonic, 1) if h.last_ok_monotonic else None}
            for name, h in sorted(self.health.items())
        }
        devices: list[Any] = [d for c in self.connectors.values() for d in (c.meter, c.dc, c.imd) if d is not None]
        if self.reader is not None:
            devices.append(self.reader)
        for cid, devs in self.connectors.items():
            # the DC controller keeps its last status (not part of the DcController contract: read it if present)
            last = getattr(devs.dc, "last_reading", None)
            status = last() if callable(last) else None
            if devs.dc is not None and isinstance(status, DcStatus):
                result.setdefault(devs.dc.name, {"ok": True, "error": None, "failures": 0, "age_s": None})[
                    "dc"] = dc_view(cid, status)
        for device in devices:
            own = getattr(device, "health", None)
            if isinstance(own, DeviceHealth) and own.name not in result:  # a device that reports its own (reader)
                result[own.name] = {"ok": own.ok, "error": own.error, "failures": own.failures, "age_s": None}
            counts = getattr(device, "error_counts", None)
            if counts is None:
                continue
            entry = result.setdefault(getattr(device, "name", type(device).__name__),
                                      {"ok": True, "error": None, "failures": 0, "age_s": None})
            entry["refused"] = counts()
            implausible = getattr(device, "implausible_counts", None)
            if implausible is not None:
                entry["implausible"] = implausible()
        return result
