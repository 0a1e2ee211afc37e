"""An electric vehicle model: plug, become ready, draw what is offered, SoC rises, taper near full."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from drivers.base import ChargeProtocol, EvState

TAPER_START_PCT = 80.0  # CC/CV knee: above it the EV asks for less current, linearly to 10 % at full
CHADEMO_STEPS = 8  # sequence steps 0..7 as reported by the controller's chademo_step register


class EvPhase(enum.Enum):
    """Where the EV is in its charging conversation."""

    UNPLUGGED = "unplugged"
    CONNECTED = "connected"  # plugged, handshake running (state B)
    READY = "ready"  # asks for energy (state C)
    FULL = "full"  # battery full, stops asking (back to B)


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
    phase: EvPhase = EvPhase.UNPLUGGED
    energy_in_wh: float = 0.0
    _since_plug_s: float = 0.0

    def plug(self) -> None:
        """Plug the EV in; it becomes ready after the handshake."""
        if self.phase is EvPhase.UNPLUGGED:
            self.phase = EvPhase.CONNECTED
            self._since_plug_s = 0.0

    def unplug(self) -> None:
        """Pull the plug."""
        self.phase = EvPhase.UNPLUGGED

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

    @property
    def chademo_step(self) -> int:
        """CHAdeMO sequence step: 0 idle, 1 plugged, 2 parameters exchanged, 3 insulation test, 5 charging."""
        if self.protocol is not ChargeProtocol.CHADEMO or self.phase is EvPhase.UNPLUGGED:
            return 0
        if self.phase is EvPhase.CONNECTED:
            return 1 if self._since_plug_s < self.handshake_s / 2 else 2
        if self.phase is EvPhase.FULL:
            return 6
        return 5

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
        energy_wh = max(0.0, power_w) * dt_s / 3600.0
        self.energy_in_wh += energy_wh
        self.soc_pct = min(100.0, self.soc_pct + 100.0 * energy_wh / (self.battery_kwh * 1000.0))
        if self.phase is EvPhase.READY and self.soc_pct >= self.target_soc_pct:
            self.phase = EvPhase.FULL
