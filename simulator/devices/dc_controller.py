"""A simulated CCS/CHAdeMO charge controller serving the evse-agent DC register map (drivers/dc/registers.py).

The EV model writes the EV-side public state (plug, targets, SoC, ...); the host's commands arrive through
`bank.on_write`; `step()` runs the heartbeat watchdog and the safety logic and refreshes the input registers.
The physics are minimal on purpose: power flows only when every condition of the fall-safe rules holds, the
outlet voltage follows the EV's target, and the current is the smallest of what the EV asks and what the
host allows.
"""

from __future__ import annotations

import logging

from drivers.base import (
    ChargeProtocol,
    DcError,
    DcStatus,
    DcVehicleDetail,
    EstopReason,
    EvState,
    Isolation,
    PlugState,
)
from drivers.dc import registers as reg
from simulator.devices.modbus_server import RegisterBank

LOGGER = logging.getLogger(__name__)

RAMP_DOWN_A_PER_S = 100.0  # IEC 61851-23 asks the EVSE to follow a stop within about 1 s at typical currents

_ALLOW = reg.COMMANDS["allow_charging"]
_LIMIT_A = reg.COMMANDS["limit_a"]
_LIMIT_W = reg.COMMANDS["limit_w"]
_TIMEOUT = reg.COMMANDS["heartbeat_timeout_s"]
_HEARTBEAT = reg.COMMANDS["heartbeat"]
_EMERGENCY = reg.COMMANDS["emergency_shutdown"]
_RESET = reg.COMMANDS["fault_reset"]


class SimDcController:
    """One DC charge controller on a simulated Modbus line."""

    def __init__(self, device_id: int = 1, protocol: ChargeProtocol = ChargeProtocol.CCS,
                 map_version: int = reg.MAP_VERSION) -> None:
        if map_version not in reg.SUPPORTED_MAP_VERSIONS:
            raise ValueError(f"map version {map_version} is not one of {sorted(reg.SUPPORTED_MAP_VERSIONS)}")
        self.device_id = device_id
        self.protocol = protocol
        self.map_version = map_version  # a version 1 controller has no detail registers (exception 2 there)
        # EV-side state, written by the EV model
        self.plug = PlugState.UNPLUGGED
        self.ev_state = EvState.A
        self.chademo_step = 0
        self.ev_ready = False
        self.soc_pct: float | None = None
        self.ev_target_v = 0.0
        self.ev_target_a = 0.0
        self.ev_max_v = 0.0
        self.ev_max_a = 0.0
        self.detail = DcVehicleDetail()  # CHAdeMO / CCS detail (map version 2 only)
        # power path and board state; present V/A are driven by step() while charging or ramping down
        self.present_v = 0.0
        self.present_a = 0.0
        self.isolation = Isolation.INVALID
        self.errors = DcError.NONE  # conditions: set and cleared by their cause (set_error)
        self.estop = EstopReason.NONE  # hardware e-stop reason (button, ...); host emergency is separate
        self.temperature_c: float | None = 25.0
        self.bank = RegisterBank()
        self.bank.on_write = self._on_write
        self._power_up()

    def _power_up(self) -> None:
        self.bank.set_holding(reg.COMMAND_BASE, reg.default_commands())
        self._latched = DcError.NONE
        self._emergency = False
        self._hb_last: int | None = None  # None: no heartbeat since power-up, so the first write is a change
        self._hb_changed = False  # set by a write, consumed by step() so the watchdog uses step()'s clock
        self._hb_changed_at: float | None = None  # None: watchdog not armed (no heartbeat, or tripped)
        self._last_step: float | None = None
        self.refresh()

    def reboot(self) -> None:
        """Simulate a power cycle: commands back to their power-up defaults, latches cleared, no power."""
        self.present_a = 0.0
        self.present_v = 0.0
        self._power_up()

    # ------------------------------------------------------------------ host's commands (read-only view)
    def _command(self, field: reg.Field) -> float:
        value = reg.decode_value(field, self.bank.get_holding(field.address, field.width))
        return 0.0 if value is None else value

    @property
    def charging_allowed(self) -> bool:
        """The host's allow-charging command."""
        return self._command(_ALLOW) == 1

    @property
    def limit_a(self) -> float:
        """The host's current limit in A."""
        return self._command(_LIMIT_A)

    @property
    def limit_w(self) -> float:
        """The host's power limit in W."""
        return self._command(_LIMIT_W)

    @property
    def heartbeat_timeout_s(self) -> float:
        """The host watchdog timeout in s (a written 0 counts as one step, 0.1 s)."""
        return max(self._command(_TIMEOUT), _TIMEOUT.scale)

    @property
    def emergency(self) -> bool:
        """True while a host emergency shutdown is latched."""
        return self._emergency

    @property
    def heartbeat_armed(self) -> bool:
        """True while the watchdog runs (a heartbeat arrived since power-up or since the last trip)."""
        return self._hb_changed_at is not None or self._hb_changed

    @property
    def reported_errors(self) -> DcError:
        """The error bits the controller reports: conditions plus latched faults."""
        return self.errors | self._latched

    @property
    def reported_estop(self) -> EstopReason:
        """The e-stop reason the controller reports."""
        if self.estop is not EstopReason.NONE:
            return self.estop
        return EstopReason.HOST_COMMAND if self._emergency else EstopReason.NONE

    # ------------------------------------------------------------------ fault injection
    def inject_isolation_fault(self, fault: bool) -> None:
        """Make the IMD report a fault (error bit and e-stop reason ISOLATION), or a valid result again."""
        self.isolation = Isolation.FAULT if fault else Isolation.VALID
        self.set_error(DcError.ISOLATION, fault)
        if fault:
            self.estop = EstopReason.ISOLATION
            self.present_a = 0.0  # an isolation fault opens the contactors at once
        elif self.estop is EstopReason.ISOLATION:
            self.estop = EstopReason.NONE
        self.refresh()

    def set_map_version(self, version: int) -> None:
        """Simulate a firmware change: the status block shrinks or grows to the version's registers."""
        if version not in reg.SUPPORTED_MAP_VERSIONS:
            raise ValueError(f"map version {version} is not one of {sorted(reg.SUPPORTED_MAP_VERSIONS)}")
        self.map_version = version
        self.bank.input.clear()  # registers of the old map that the new one lacks must answer exception 2
        self.refresh()

    def set_error(self, error: DcError, active: bool) -> None:
        """Set or clear an error condition."""
        self.errors = self.errors | error if active else self.errors & ~error
        self.refresh()

    # ------------------------------------------------------------------ safety logic
    def can_charge(self) -> bool:
        """Every fall-safe condition of docs/dc-controller.md holds."""
        return (
            self.charging_allowed
            and self.plug is PlugState.PLUGGED
            and self.ev_ready
            and self.isolation is Isolation.VALID
            and not self.reported_errors
            and self.reported_estop is EstopReason.NONE
            and self.heartbeat_armed
            and self.limit_a > 0
            and self.limit_w > 0
        )

    def _hard_stop(self) -> bool:
        """Conditions that cut the current at once instead of ramping it down."""
        return (
            self._emergency
            or self.reported_estop is not EstopReason.NONE
            or bool(self.reported_errors & ~DcError.HOST_TIMEOUT)
            or self.isolation is Isolation.FAULT
            or self.plug is PlugState.UNPLUGGED
        )

    def delivered_current_a(self) -> float:
        """The current the controller delivers: min(EV target, current limit, power limit / voltage)."""
        if not self.can_charge():
            return 0.0
        current = min(self.ev_target_a, self.limit_a)
        volts = self.present_v or self.ev_target_v
        if volts > 0:
            current = min(current, self.limit_w / volts)
        return max(0.0, current)

    def step(self, now_monotonic: float) -> None:
        """Advance to `now_monotonic`: run the watchdog and the power path, then refresh the registers."""
        dt = 0.0 if self._last_step is None else max(0.0, now_monotonic - self._last_step)
        self._last_step = now_monotonic
        if self._hb_changed:
            self._hb_changed = False
            self._hb_changed_at = now_monotonic
        if self._hb_changed_at is not None and now_monotonic - self._hb_changed_at > self.heartbeat_timeout_s:
            LOGGER.warning("DC controller %d: no host heartbeat for %.1f s, stopping",
                           self.device_id, self.heartbeat_timeout_s)
            self._latched |= DcError.HOST_TIMEOUT
            self._hb_changed_at = None  # re-armed by the next changed heartbeat
            self.bank.set_holding(_ALLOW.address, [0])
        if self.can_charge():
            self.present_v = self.ev_target_v
            self.present_a = self.delivered_current_a()
        elif self._hard_stop():
            self.present_a = 0.0
        else:
            self.present_a = max(0.0, self.present_a - RAMP_DOWN_A_PER_S * dt)
        if self.present_a == 0.0 and not self.can_charge():
            self.present_v = 0.0  # contactors open once the current is gone; the outlet is discharged
        self.refresh()

    # ------------------------------------------------------------------ registers
    def status(self) -> DcStatus:
        """The controller's state as the driver will decode it."""
        return DcStatus(
            protocol=self.protocol,
            plug=self.plug,
            ev_state=self.ev_state,
            chademo_step=self.chademo_step,
            ev_ready=self.ev_ready,
            soc_pct=self.soc_pct,
            ev_target_v=self.ev_target_v,
            ev_target_a=self.ev_target_a,
            ev_max_v=self.ev_max_v,
            ev_max_a=self.ev_max_a,
            present_v=self.present_v,
            present_a=self.present_a,
            isolation=self.isolation,
            errors=self.reported_errors,
            estop=self.reported_estop,
            charging_allowed=self.charging_allowed,
            limit_a=self.limit_a,
            limit_w=self.limit_w,
            temperature_c=self.temperature_c,
            map_version=self.map_version,
            detail=self.detail if self.map_version >= 2 else None,
        )

    def refresh(self) -> None:
        """Write the current state into the input registers."""
        heartbeat = self._hb_last if self._hb_last is not None else 0
        self.bank.set_input(reg.STATUS_BASE, reg.encode_status(self.status(), heartbeat, self._emergency))

    def _on_write(self, address: int, values: list[int]) -> None:
        written = {address + i: v for i, v in enumerate(values)}
        if _HEARTBEAT.address in written:
            value = written[_HEARTBEAT.address]
            if value != self._hb_last:
                self._hb_changed = True
            self._hb_last = value
        if _EMERGENCY.address in written:
            if written[_EMERGENCY.address] == 1:
                LOGGER.warning("DC controller %d: emergency shutdown by the host", self.device_id)
                self._emergency = True
                self.present_a = 0.0
                self.bank.set_holding(_ALLOW.address, [0])
            # writing anything else has no effect: only a fault reset clears the latch
            self.bank.set_holding(_EMERGENCY.address, [int(self._emergency)])
        if written.get(_RESET.address) == 1:
            LOGGER.info("DC controller %d: fault reset by the host", self.device_id)
            self._emergency = False
            self._latched = DcError.NONE
            self.bank.set_holding(_EMERGENCY.address, [0])
        if _RESET.address in written:
            self.bank.set_holding(_RESET.address, [0])
        self.refresh()
