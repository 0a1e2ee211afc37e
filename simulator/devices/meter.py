"""A simulated Modbus energy meter: physical state encoded into a RegisterBank with the drivers' own codec."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from drivers.meters.codec import TYPES, MeterModel, ValueSpec, encode, load_model
from simulator.devices.modbus_server import RegisterBank

LOGGER = logging.getLogger(__name__)

BACKWARDS_WH = 1000.0  # how much lower a "backwards" meter reports its energy: 1 kWh, clearly a fault


class SimMeter:
    """A meter of a shipped model; set its state, call `update()`, serve `.bank` with ModbusDeviceServer."""

    def __init__(self, model_name: str, device_id: int = 1) -> None:
        self.model: MeterModel = load_model(model_name)
        self.device_id = device_id
        self.bank = RegisterBank()
        self.voltage_v: list[float] = [230.0, 230.0, 230.0]
        self.current_a: list[float] = [0.0, 0.0, 0.0]
        self.power_w: list[float] = [0.0, 0.0, 0.0]
        self.frequency_hz = 50.0
        self.energy_import_wh = 12_345_600.0  # 12345.6 kWh: a meter that has been in service a while
        self.energy_export_wh = 0.0
        self.stuck = False  # the bank stops following the state, as a frozen meter firmware would
        self.backwards = False  # the energy registers report BACKWARDS_WH less than the truth
        self.na_fields: set[str] = set()  # fields answered with the model's not-available marker
        self.corrupt: dict[str, float] = {}  # fields answered with this value, absurd or not (see encode_any)
        # A real meter answers for every register in the span of a block read, gaps included.
        table = self._table()
        for block in self.model.blocks:
            for address in range(block.address, block.address + block.count):
                table.setdefault(address, 0)
        self.update()

    def _table(self) -> dict[int, int]:
        return self.bank.input if self.model.function == 4 else self.bank.holding

    def field_values(self) -> dict[str, float]:
        """The state as model field names, in SI units (energy in Wh)."""
        shift = BACKWARDS_WH if self.backwards else 0.0
        values = {
            "energy_import": self.energy_import_wh - shift,
            "energy_export": self.energy_export_wh,
            "power_total": sum(self.power_w[: self.model.phases]),
            "frequency": self.frequency_hz,
        }
        for n in range(3):
            values[f"voltage_l{n + 1}"] = self.voltage_v[n]
            values[f"current_l{n + 1}"] = self.current_a[n]
            values[f"power_l{n + 1}"] = self.power_w[n]
        return values

    def register_energy_wh(self) -> float | None:
        """The import energy exactly as a Modbus client reads it (register encoding and resolution included)."""
        spec = self.model.value("energy_import")
        if spec is None:
            return None
        table = self._table()
        return spec.decode([table.get(spec.address + i, 0) for i in range(spec.count)])

    def update(self) -> None:
        """Encode the state into the bank (unless the meter is stuck)."""
        if self.stuck:
            return
        values = self.field_values()
        set_regs = self.bank.set_input if self.model.function == 4 else self.bank.set_holding
        for spec in self.model.values:
            if spec.field in self.corrupt:
                set_regs(spec.address, encode_any(spec, self.corrupt[spec.field]))
                continue
            value = None if spec.field in self.na_fields else values[spec.field]
            set_regs(spec.address, spec.encode(value))

    def set_load(self, current_a: Sequence[float], power_factor: float = 1.0) -> None:
        """Set per-phase currents and the matching active power, then update."""
        for n, amps in enumerate(current_a[:3]):
            self.current_a[n] = float(amps)
            self.power_w[n] = self.voltage_v[n] * float(amps) * power_factor
        self.update()

    def add_energy(self, power_w_per_phase: Sequence[float], dt_s: float) -> None:
        """Run at the given per-phase power for dt_s: power, currents and energy stay consistent."""
        for n, watts in enumerate(power_w_per_phase[:3]):
            self.power_w[n] = float(watts)
            volts = self.voltage_v[n]
            self.current_a[n] = abs(watts) / volts if volts else 0.0
        total_w = sum(power_w_per_phase[: self.model.phases])
        if total_w >= 0:
            self.energy_import_wh += total_w * dt_s / 3600.0
        else:
            self.energy_export_wh += -total_w * dt_s / 3600.0
        self.update()


def encode_any(spec: ValueSpec, value: float) -> list[int]:
    """Registers for any value a corrupted frame may carry (integer registers clamp; NaN is all ones)."""
    vtype = TYPES[spec.type]
    if vtype.is_float:
        return encode(spec.type, value / spec.scale, spec.word_order)
    bits = 16 * vtype.registers
    signed = vtype.struct_code[-1].islower()
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if math.isnan(value):
        raw: float = high  # all ones: the usual not-available marker
    else:
        raw = max(low, min(high - 1, value / spec.scale))  # clamped below all ones: a value, not a marker
    if not signed and value < 0:
        raw = (-(1 << (bits - 1))) & ((1 << bits) - 1)  # a negative value's sign bit in an unsigned register
    return encode(spec.type, int(raw), spec.word_order)
