"""Plausibility of meter readings before publication: the one check every meter driver's readings pass.

A reading is refused (ImplausibleReading, a failed read) when a value cannot be true for the connector the
meter measures (`MeterLimits`, from the agent's config, with generous margins):

- energy (import, export): finite, 0 to ENERGY_MAX_WH; never below the last ACCEPTED reading; at most
  ENERGY_POWER_MARGIN x the connector's maximum power x (time since the last accepted reading +
  ENERGY_LAG_S) above it, plus two counts of the register's resolution and ENERGY_SLACK_WH;
- voltage per phase: 0 to VOLTAGE_MARGIN x nominal; current per phase: |I| up to CURRENT_MARGIN x max
  current + 1 A; power, total and per phase: |P| up to POWER_MARGIN x the maximum + 1 kW;
- frequency: 0 (no voltage) or FREQUENCY_RANGE_HZ.

The baseline is the last accepted reading only, so a corrupted frame never becomes a baseline and the
meter recovers by itself when plausible readings return. Without a baseline (start, `accept_baseline()`)
two consecutive readings must agree before the second is accepted: one corrupted first frame cannot set
it either. An energy gain within the connector's maximum but beyond what the meter's own power readings
explain is accepted only once the next reading follows it, so a frame corrupted upward is not billed.
Readings that stay below the baseline, consistent with each other, are tracked (`backwards_for_s`) so that
the agent can tell a replaced or reset meter from noise and re-baseline.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from drivers.base import MeterReading
from drivers.errors import ImplausibleReading

LOGGER = logging.getLogger(__name__)

DEFAULT_NOMINAL_V = 230.0
DEFAULT_MAX_CURRENT_A = 80.0  # the largest AC connector rating (SAE J1772 80 A; IEC 62196 three-phase 63 A)
VOLTAGE_MARGIN = 1.5  # grid tolerance is +-10 %; 1.5 x nominal is a broken frame, not a grid
CURRENT_MARGIN = 2.0  # inrush and a meter that also sees the charger's own consumption
POWER_MARGIN = VOLTAGE_MARGIN * CURRENT_MARGIN
POWER_SLACK_W = 1000.0
ENERGY_POWER_MARGIN = 1.5  # energy may grow this much faster than the connector's maximum power
ENERGY_LAG_S = 5.0  # meters update their energy registers in steps (about every second); allow a few
ENERGY_SLACK_WH = 10.0
ENERGY_MAX_WH = 1e11  # 100 GWh: 22 kW around the clock for 500 years; any real register is below
FREQUENCY_RANGE_HZ = (40.0, 70.0)  # 50 and 60 Hz grids with room to spare
ENERGY_FIELDS = ("energy_import_wh", "energy_export_wh")


@dataclass(frozen=True, slots=True)
class MeterLimits:
    """What the metered connector can physically do; the agent derives it from the connector config."""

    nominal_voltage_v: float = DEFAULT_NOMINAL_V
    phases: int = 3
    max_current_a: float = DEFAULT_MAX_CURRENT_A

    def __post_init__(self) -> None:
        for label, value in (("nominal_voltage_v", self.nominal_voltage_v), ("max_current_a", self.max_current_a)):
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{label} must be a positive number, not {value}")
        if self.phases not in (1, 2, 3):
            raise ValueError(f"phases must be 1, 2 or 3, not {self.phases}")

    @property
    def max_power_w(self) -> float:
        """The connector's maximum power."""
        return self.phases * self.nominal_voltage_v * self.max_current_a

    @property
    def voltage_max_v(self) -> float:
        """Highest plausible phase voltage."""
        return VOLTAGE_MARGIN * self.nominal_voltage_v

    @property
    def current_max_a(self) -> float:
        """Highest plausible phase current (absolute)."""
        return CURRENT_MARGIN * self.max_current_a + 1.0

    @property
    def power_max_w(self) -> float:
        """Highest plausible total power (absolute)."""
        return POWER_MARGIN * self.max_power_w + POWER_SLACK_W

    @property
    def phase_power_max_w(self) -> float:
        """Highest plausible power of one phase (absolute)."""
        return POWER_MARGIN * self.nominal_voltage_v * self.max_current_a + POWER_SLACK_W

    def energy_growth_wh(self, dt_s: float, resolution_wh: float) -> float:
        """Most energy a register may gain in dt_s seconds."""
        return (ENERGY_POWER_MARGIN * self.max_power_w * (max(dt_s, 0.0) + ENERGY_LAG_S) / 3600.0
                + 2.0 * resolution_wh + ENERGY_SLACK_WH)


class Plausibility:
    """Checks readings against the limits and the last accepted reading, which it keeps as the baseline."""

    def __init__(self, device: str, limits: MeterLimits, resolution_wh: float = 1.0,
                 relative_resolution: float = 0.0) -> None:
        self.device = device
        self.limits = limits
        self.resolution_wh = resolution_wh  # one count of the energy register
        self.relative_resolution = relative_resolution  # a float register's step as a fraction of its value
        self.baseline: MeterReading | None = None
        self._below_first: MeterReading | None = None
        self._below_last: MeterReading | None = None
        self._jumped: MeterReading | None = None  # a jump beyond the measured power, waiting to be confirmed

    @property
    def needs_confirmation(self) -> bool:
        """True while there is no baseline: the next reading needs a second one that agrees with it."""
        return self.baseline is None

    def backwards_for_s(self) -> float:
        """How long readings have been below the baseline and consistent with each other (0 when not)."""
        if self._below_first is None or self._below_last is None:
            return 0.0
        return self._below_last.read_monotonic - self._below_first.read_monotonic

    @property
    def backwards_energy_wh(self) -> float | None:
        """Import energy of the latest reading below the baseline (a replaced meter's register), if any."""
        return None if self._below_last is None else self._below_last.energy_import_wh

    def accept_baseline(self) -> None:
        """Forget the baseline: the next two readings that agree become it, whatever their value."""
        self.baseline = None
        self._below_first = self._below_last = None
        self._jumped = None

    def _refuse(self, reason: str, message: str, registers: Mapping[int, tuple[int, ...]] | None) -> None:
        raise ImplausibleReading(self.device, reason, message, dict(registers or {}))

    def check_values(self, reading: MeterReading,
                     registers: Mapping[int, tuple[int, ...]] | None = None) -> None:
        """Refuse values out of bounds on their own (no baseline involved)."""
        lim = self.limits
        for name in ENERGY_FIELDS:
            energy = getattr(reading, name)
            if energy is not None and not 0.0 <= energy <= ENERGY_MAX_WH:
                self._refuse("energy_range", f"{name[:-3]} {energy:g} Wh outside 0..{ENERGY_MAX_WH:g}", registers)
        bounds: tuple[tuple[str, tuple[float | None, ...], float, float], ...] = (
            ("voltage", reading.voltage_v, 0.0, lim.voltage_max_v),
            ("current", reading.current_a, -lim.current_max_a, lim.current_max_a),
            ("power", reading.power_phase_w, -lim.phase_power_max_w, lim.phase_power_max_w),
            ("power", (reading.power_w,), -lim.power_max_w, lim.power_max_w),
        )
        for reason, values, low, high in bounds:
            for value in values:
                if value is not None and not low <= value <= high:
                    self._refuse(reason, f"{reason} {value:g} outside {low:g}..{high:g}", registers)
        freq = reading.frequency_hz
        if freq is not None and freq != 0.0 and not FREQUENCY_RANGE_HZ[0] <= freq <= FREQUENCY_RANGE_HZ[1]:
            self._refuse("frequency", f"frequency {freq:g} Hz outside {FREQUENCY_RANGE_HZ}", registers)

    def _growth_problem(self, before: MeterReading, after: MeterReading) -> tuple[str, str] | None:
        """Why `after` cannot follow `before` (reason, message), or None when it can."""
        dt_s = after.read_monotonic - before.read_monotonic
        for name in ENERGY_FIELDS:
            old, new = getattr(before, name), getattr(after, name)
            if old is None or new is None:
                continue
            resolution = max(self.resolution_wh, abs(new) * self.relative_resolution)
            allowed = self.limits.energy_growth_wh(dt_s, resolution)
            if new < old:
                return "energy_backwards", f"{name[:-3]} {new:.1f} Wh is below {old:.1f} Wh accepted before"
            if new - old > allowed:
                return "energy_jump", (f"{name[:-3]} grew {new - old:.1f} Wh in {dt_s:.1f} s, more than "
                                       f"{allowed:.1f} Wh at {self.limits.max_power_w:.0f} W")
        return None

    def _unexplained_jump(self, before: MeterReading, after: MeterReading) -> float | None:
        """Wh of import energy gained beyond what the meter's own power readings explain (None: explained)."""
        powers = [abs(p) for p in (before.power_w, after.power_w) if p is not None]
        old, new = before.energy_import_wh, after.energy_import_wh
        if not powers or old is None or new is None:
            return None
        dt_s = max(after.read_monotonic - before.read_monotonic, 0.0)
        resolution = max(self.resolution_wh, abs(new) * self.relative_resolution)
        explained = (ENERGY_POWER_MARGIN * max(powers) * (dt_s + ENERGY_LAG_S) / 3600.0
                     + 2.0 * resolution + ENERGY_SLACK_WH)
        return new - old if new - old > explained else None

    def check(self, reading: MeterReading, registers: Mapping[int, tuple[int, ...]] | None = None) -> None:
        """Refuse `reading` unless it is plausible on its own and after the baseline; then it is the baseline."""
        self.check_values(reading, registers)
        if self.baseline is not None:
            problem = self._growth_problem(self.baseline, reading)
            if problem is not None:
                if problem[0] == "energy_backwards":
                    self._track_below(reading)
                self._refuse(*problem, registers)
            jump = self._unexplained_jump(self.baseline, reading)
            # Within the connector's maximum but beyond what its measured power explains: a corrupted frame
            # must not become the baseline (and be billed), so the next reading has to follow it first.
            if jump is not None and (self._jumped is None or self._growth_problem(self._jumped, reading)):
                self._jumped = reading
                self._refuse("energy_unconfirmed", f"import grew {jump:.1f} Wh, more than the measured power "
                             "explains; waiting for the next reading to confirm it", registers)
        self.baseline = reading
        self._below_first = self._below_last = None
        self._jumped = None

    def confirm(self, first: MeterReading, second: MeterReading,
                registers: Mapping[int, tuple[int, ...]] | None = None) -> None:
        """Without a baseline: accept `second` as the baseline if both are plausible and agree."""
        self.check_values(first, registers)
        self.check_values(second, registers)
        problem = self._growth_problem(first, second)
        if problem is not None:
            self._refuse("unconfirmed", f"two readings disagree: {problem[1]}", registers)
        self.baseline = second
        self._below_first = self._below_last = None

    def _track_below(self, reading: MeterReading) -> None:
        """Extend the run of readings below the baseline, or start a new one if this one does not follow."""
        last = self._below_last
        if last is None or self._growth_problem(last, reading) is not None:
            self._below_first = reading
        self._below_last = reading


class PlausibleMeterMixin:
    """What every meter with a `Plausibility` check reports of it (counts, the backwards state, re-baselining)."""

    name: str
    plausibility: Plausibility
    _implausible: dict[str, int]

    def implausible_counts(self) -> dict[str, int]:
        """Readings refused as implausible, by reason ("energy_backwards", "voltage", ...)."""
        return dict(self._implausible)

    def backwards_for_s(self) -> float:
        """Seconds for which readings have been below the last accepted energy, consistently (0 when not)."""
        return self.plausibility.backwards_for_s()

    @property
    def backwards_energy_wh(self) -> float | None:
        """The import energy the meter reports while it is below the baseline (None when it is not)."""
        return self.plausibility.backwards_energy_wh

    def accept_baseline(self) -> None:
        """Re-baseline a replaced or reset meter: the next two agreeing readings become the baseline."""
        baseline = self.plausibility.baseline
        LOGGER.warning("%s: energy baseline dropped (was %s Wh); the next agreeing readings become the new one",
                       self.name, None if baseline is None else baseline.energy_import_wh)
        self.plausibility.accept_baseline()
