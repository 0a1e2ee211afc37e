"""An electric vehicle model: plug, become ready, draw what is offered, SoC rises, taper near full.

On DC it plays its protocol's sequence with the detail a version 2 controller reports: CHAdeMO steps with the
vehicle's status and fault flags, protocol number, charging times and battery capacity; CCS (DIN 70121 /
ISO 15118-2) phases from session setup through cable check, pre-charge and current demand to welding
detection, with the EV error code, full and bulk SoC and maximum power. A vehicle fault (named by its stable
code, `drivers.dc.registers`) is injected with `inject_fault`: the EV stops asking for energy and ends its
session, as a real one does, until it is unplugged.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from drivers.base import (
    CcsPhase,
    ChademoFault,
    ChademoStatus,
    ChargeProtocol,
    DcVehicleDetail,
    EvErrorCode,
    EvState,
)
from drivers.dc import registers as reg

TAPER_START_PCT = 80.0  # CC/CV knee: above it the EV asks for less current, linearly to 10 % at full
CHADEMO_STEPS = 9  # sequence steps 0..8 as reported by the controller's chademo_step register
CHADEMO_PROTOCOL = 2  # H'102.0 of a CHAdeMO 1.0 vehicle
MAX_CHARGING_TIME_S = 5400  # H'101: 90 minutes, what common vehicles send
BULK_SOC_PCT = 80.0  # ISO 15118 BulkSOC: the CC/CV knee
CCS_SETUP_PHASES = (CcsPhase.SESSION_SETUP, CcsPhase.CHARGE_PARAMETER_DISCOVERY, CcsPhase.CABLE_CHECK,
                    CcsPhase.PRE_CHARGE)  # each a quarter of the handshake, in this order
# vehicle faults by their stable code: CHAdeMO fault flags, the CHAdeMO charging-system status flag, and the
# CCS EV error codes (a reserved code plays Reserved_A)
CHADEMO_FAULTS = {code: bit for bit, code, _ in reg.CHADEMO_FAULT_CODES}
CCS_ERRORS = {code: err for err, (code, _) in reversed(list(reg.EV_ERROR_CODES.items()))}
VEHICLE_FAULTS = (*CHADEMO_FAULTS, reg.CHADEMO_SYSTEM_FAULT_CODE[0], *CCS_ERRORS)


class EvPhase(enum.Enum):
    """Where the EV is in its charging conversation."""

    UNPLUGGED = "unplugged"
    CONNECTED = "connected"  # plugged, handshake running (state B)
    READY = "ready"  # asks for energy (state C)
    FULL = "full"  # battery full, stops asking (back to B)
    FAULTED = "faulted"  # reported a vehicle fault and ended its session; plugged until someone unplugs


@dataclass
class EvModel:
    """A simple EV: battery, maximum current, CC/CV taper, CCS or CHAdeMO sequence for DC."""

    kind: str = "dc"  # "ac" or "dc"
    protocol: ChargeProtocol = ChargeProtocol.CCS
    battery_kwh: float = 60.0
    soc_pct: float = 20.0
    target_soc_pct: float = 100.0
    max_current_a: float = 200.0  # DC: pack current; AC: per phase on-board charger limit
    max_voltage_v: float = 450.0
    pack_voltage_v: float = 400.0
    ac_phases: int = 3
    handshake_s: float = 1.0  # time from plug-in to ready (SLAC / CHAdeMO sequence, pilot B->C)
    max_power_w: float = 150_000.0  # DC: ISO 15118 EVMaximumPowerLimit
    phase: EvPhase = EvPhase.UNPLUGGED
    energy_in_wh: float = 0.0
    faults: set[str] = field(default_factory=set)  # injected vehicle faults, by stable code
    _since_plug_s: float = 0.0
    _ending: str = ""  # after energy flowed: "stopping" (ramp down), "welding" (contactor check), "ended"
    _ending_s: float = 0.0
    _flowed: bool = False

    def plug(self) -> None:
        """Plug the EV in; it becomes ready after the handshake."""
        if self.phase is EvPhase.UNPLUGGED:
            self.phase = EvPhase.CONNECTED
            self._since_plug_s = 0.0
            self._ending, self._ending_s, self._flowed = "", 0.0, False

    def unplug(self) -> None:
        """Pull the plug; the vehicle's fault flags belong to its session and go with it."""
        self.phase = EvPhase.UNPLUGGED
        self.faults.clear()

    def inject_fault(self, code: str, on: bool = True) -> None:
        """Report (or withdraw) a vehicle fault by its stable code; ValueError for a code of another protocol."""
        known: tuple[str, ...] = ()
        if self.kind == "dc" and self.protocol is ChargeProtocol.CHADEMO:
            known = (*CHADEMO_FAULTS, reg.CHADEMO_SYSTEM_FAULT_CODE[0])
        elif self.kind == "dc" and self.protocol is ChargeProtocol.CCS:
            known = tuple(CCS_ERRORS)
        if code not in known:
            raise ValueError(f"unknown vehicle fault {code!r} for {self.protocol.name}; known: {', '.join(known)}")
        if not on:
            self.faults.discard(code)
            return
        if self.protocol is ChargeProtocol.CCS:
            self.faults.clear()  # one EVErrorCode at a time
        self.faults.add(code)
        if self.phase in (EvPhase.CONNECTED, EvPhase.READY, EvPhase.FULL):
            self.phase = EvPhase.FAULTED

    @property
    def plugged(self) -> bool:
        """True while the cable is in the EV."""
        return self.phase is not EvPhase.UNPLUGGED

    @property
    def ready(self) -> bool:
        """True while the EV asks for energy."""
        return self.phase is EvPhase.READY

    @property
    def pilot_state(self) -> EvState:
        """IEC 61851 state as the controller would see it."""
        if self.phase is EvPhase.UNPLUGGED:
            return EvState.A
        return EvState.C if self.phase is EvPhase.READY else EvState.B

    def _setup_index(self) -> int:
        """Which quarter of the handshake the EV is in (0..3)."""
        return min(3, int(4 * self._since_plug_s / self.handshake_s)) if self.handshake_s > 0 else 3

    @property
    def chademo_step(self) -> int:
        """CHAdeMO sequence step: 0 idle, 1 plugged (CAN starts), 2 parameters exchanged, 3 insulation test,
        4 EV contactors closing, 5 charging, 6 stopping (current ramps down), 7 welding detection, 8 ended."""
        if self.protocol is not ChargeProtocol.CHADEMO or self.phase is EvPhase.UNPLUGGED:
            return 0
        if self.phase is EvPhase.CONNECTED:
            return 1 + self._setup_index()
        if self._ending:
            return {"stopping": 6, "welding": 7}.get(self._ending, 8)
        if self.phase is EvPhase.READY:
            return 5
        return 8 if self.phase is EvPhase.FAULTED and not self._flowed else 6

    @property
    def ccs_phase(self) -> CcsPhase:
        """The DIN 70121 / ISO 15118-2 phase the EV is in."""
        if self.protocol is not ChargeProtocol.CCS or self.phase is EvPhase.UNPLUGGED:
            return CcsPhase.IDLE
        if self.phase is EvPhase.CONNECTED:
            return CCS_SETUP_PHASES[self._setup_index()]
        if self._ending:
            return {"stopping": CcsPhase.POWER_DELIVERY_STOP,
                    "welding": CcsPhase.WELDING_DETECTION}.get(self._ending, CcsPhase.SESSION_STOP)
        if self.phase is EvPhase.READY:
            return CcsPhase.CURRENT_DEMAND if self._flowed else CcsPhase.POWER_DELIVERY
        return CcsPhase.SESSION_STOP if self.phase is EvPhase.FAULTED and not self._flowed \
            else CcsPhase.POWER_DELIVERY_STOP

    def detail(self) -> DcVehicleDetail:
        """What the vehicle tells a version 2 controller now (nothing when unplugged or on AC)."""
        if self.phase is EvPhase.UNPLUGGED or self.kind != "dc":
            return DcVehicleDetail()
        if self.protocol is ChargeProtocol.CHADEMO:
            status = ChademoStatus.NONE
            if self.phase is EvPhase.READY or (self.phase is EvPhase.CONNECTED and self._setup_index() >= 1):
                status |= ChademoStatus.CHARGING_ENABLED
            if not 4 <= self.chademo_step <= 6:
                status |= ChademoStatus.EV_CONTACTOR_OPEN  # open before step 4 and after welding detection
            if self.phase is EvPhase.FULL:
                status |= ChademoStatus.STOP_REQUEST
            if reg.CHADEMO_SYSTEM_FAULT_CODE[0] in self.faults:
                status |= ChademoStatus.CHARGING_SYSTEM_FAULT
            faults = ChademoFault.NONE
            for code in self.faults:
                faults |= CHADEMO_FAULTS.get(code, ChademoFault.NONE)
            power_w = self.pack_voltage_v * self.max_current_a
            remaining_wh = max(0.0, self.target_soc_pct - self.soc_pct) / 100.0 * self.battery_kwh * 1000.0
            estimate_s = 60 * round(remaining_wh / power_w * 60.0) if power_w > 0 else MAX_CHARGING_TIME_S
            return DcVehicleDetail(
                chademo_protocol=CHADEMO_PROTOCOL, chademo_status=status, chademo_faults=faults,
                max_charging_time_s=MAX_CHARGING_TIME_S,
                estimated_charging_time_s=min(MAX_CHARGING_TIME_S, estimate_s),
                battery_capacity_kwh=self.battery_kwh)
        if self.protocol is ChargeProtocol.CCS:
            error = next((CCS_ERRORS[code] for code in self.faults if code in CCS_ERRORS), EvErrorCode.NO_ERROR)
            return DcVehicleDetail(ccs_phase=self.ccs_phase, ev_error_code=error,
                                   full_soc_pct=self.target_soc_pct, bulk_soc_pct=BULK_SOC_PCT,
                                   ev_max_power_w=self.max_power_w)
        return DcVehicleDetail()

    def requested_current_a(self) -> float:
        """What the EV asks for now: its maximum, tapering above the knee, zero when full."""
        if self.phase is not EvPhase.READY:
            return 0.0
        if self.soc_pct <= TAPER_START_PCT:
            return self.max_current_a
        span = 100.0 - TAPER_START_PCT
        fraction = max(0.1, (100.0 - self.soc_pct) / span)
        return self.max_current_a * fraction

    def step(self, dt_s: float, power_w: float) -> None:
        """Advance by dt_s while receiving power_w."""
        if self.phase is EvPhase.UNPLUGGED:
            return
        self._since_plug_s += dt_s
        if self.phase is EvPhase.CONNECTED and self._since_plug_s >= self.handshake_s:
            self.phase = EvPhase.READY
        if power_w > 0:
            self._flowed = True
        self._advance_ending(dt_s, power_w)
        energy_wh = max(0.0, power_w) * dt_s / 3600.0
        self.energy_in_wh += energy_wh
        self.soc_pct = min(100.0, self.soc_pct + 100.0 * energy_wh / (self.battery_kwh * 1000.0))
        if self.phase is EvPhase.READY and self.soc_pct >= self.target_soc_pct:
            self.phase = EvPhase.FULL

    def _advance_ending(self, dt_s: float, power_w: float) -> None:
        """After energy flowed and the EV stopped asking: ramp down, then welding detection, then the end."""
        if not self._flowed or self.phase in (EvPhase.READY, EvPhase.CONNECTED):
            return
        if not self._ending:
            self._ending, self._ending_s = "stopping", 0.0
        self._ending_s += dt_s
        if self._ending == "stopping" and power_w <= 0:
            self._ending, self._ending_s = "welding", 0.0
        elif self._ending == "welding" and self._ending_s >= self.handshake_s / 4:
            self._ending = "ended"
