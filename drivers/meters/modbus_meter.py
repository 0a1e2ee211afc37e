"""One driver for every Modbus energy meter: the model file says where the values are.

Every reading passes `Plausibility` (drivers/meters/plausibility.py) before `read()` returns it: values
out of the connector's bounds, energy below the last accepted reading ("energy_backwards") or growing
faster than the connector's power allows raise ImplausibleReading, a CommunicationFault: the reading is
not published and not used as the baseline, so the next plausible reading is accepted again. A meter
that was really replaced or reset stays refused until `accept_baseline()`; `backwards_for_s()` tells the
agent how long readings have consistently been below the baseline, so it can decide when (never inside
a running transaction, whose meterStop a silent re-baseline would corrupt).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

from drivers.base import MeterCapabilities, MeterReading, now_stamps
from drivers.errors import CommunicationFault, ConfigError, ImplausibleReading
from drivers.meters.codec import TYPES, MeterModel, ValueSpec, decode, load_model
from drivers.meters.plausibility import (
    DEFAULT_MAX_CURRENT_A,
    DEFAULT_NOMINAL_V,
    MeterLimits,
    Plausibility,
    PlausibleMeterMixin,
)
from drivers.transport import DEFAULT_TIMEOUT_S, BusPool, ModbusBus

LOGGER = logging.getLogger(__name__)

FLOAT32_RELATIVE_STEP = 2.0 ** -23  # a float32 register moves in steps of up to this fraction of its value
OPTIONS = ("driver", "url", "device_id", "baudrate", "parity", "stopbits", "timeout_s")


class ModbusMeter(PlausibleMeterMixin):
    """An EnergyMeter read over Modbus TCP or RTU according to a `MeterModel`."""

    def __init__(self, name: str, model: MeterModel, bus: ModbusBus, device_id: int) -> None:
        self.name = name
        self.model = model
        self.bus = bus
        self.device_id = device_id
        self.capabilities: MeterCapabilities = model.capabilities
        self._last: MeterReading | None = None
        self._failed = False
        self._closed = False
        energy = model.value("energy_import")
        assert energy is not None  # the codec refuses a model without it
        float_register = TYPES[energy.type].is_float
        self.plausibility = Plausibility(
            name, MeterLimits(phases=model.phases), resolution_wh=abs(energy.scale),
            relative_resolution=FLOAT32_RELATIVE_STEP if float_register else 0.0,
        )
        self._implausible: dict[str, int] = {}
        self._refusing = False  # the previous read was refused as implausible: log the next one quieter

    @classmethod
    def from_config(cls, name: str, options: dict[str, Any], pool: BusPool) -> ModbusMeter:
        """Build a meter from its config section; the model is the `driver` name."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ConfigError(name, f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(OPTIONS)}")

        def option(key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
            value = options.get(key, default)
            if value is None:
                raise ConfigError(name, f"option {key!r} is required")
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                raise ConfigError(name, f"option {key!r} has the wrong type ({type(value).__name__})")
            return value

        model = load_model(option("driver", str))
        url = option("url", str)
        device_id = option("device_id", int, 1)
        if not 1 <= device_id <= 247:
            raise ConfigError(name, f"device_id must be 1..247, not {device_id}")
        timeout_s = float(option("timeout_s", (int, float), DEFAULT_TIMEOUT_S))
        if timeout_s <= 0:
            raise ConfigError(name, "timeout_s must be positive")
        bus = pool.get(
            url,
            baudrate=option("baudrate", int, 9600),
            parity=option("parity", str, "N"),
            stopbits=option("stopbits", int, 1),
            timeout_s=timeout_s,
        )
        return cls(name, model, bus, device_id)

    def configure_limits(self, nominal_voltage_v: float = DEFAULT_NOMINAL_V, phases: int | None = None,
                         max_current_a: float = DEFAULT_MAX_CURRENT_A) -> None:
        """Set the metered connector's limits, from which the plausibility bounds derive (baseline kept)."""
        self.plausibility.limits = MeterLimits(
            nominal_voltage_v=float(nominal_voltage_v),
            phases=self.model.phases if phases is None else phases,
            max_current_a=float(max_current_a),
        )

    def error_counts(self) -> dict[str, int]:
        """Failed reads by kind: the bus's frame checks for this device id, plus "implausible"."""
        return {**self.bus.error_counts(self.device_id), "implausible": sum(self._implausible.values())}

    def communication_errors(self) -> int:
        """Failed exchanges with this device id (timeouts, refused frames, exception answers, I/O errors)."""
        return self.bus.errors_of(self.device_id)

    async def read(self) -> MeterReading:
        """Read every block and check plausibility; raise FrameError, DeviceTimeout or ImplausibleReading."""
        if self._closed:
            raise CommunicationFault(self.name, "meter is closed")
        try:
            reading, raw = await self._read_once()
            if self.plausibility.needs_confirmation:
                first = reading
                reading, raw = await self._read_once()
                self.plausibility.confirm(first, reading, raw)
            else:
                self.plausibility.check(reading, raw)
        except ImplausibleReading as err:
            self._failed = True
            self._implausible[err.reason] = self._implausible.get(err.reason, 0) + 1
            log = LOGGER.info if self._refusing else LOGGER.warning
            log("%s: reading refused: %s; raw registers %s", self.name, err.message, _hex(err.registers))
            self._refusing = True
            raise
        except Exception:
            self._failed = True
            raise
        self._failed = False
        self._refusing = False
        self._last = reading
        return reading

    async def _read_once(self) -> tuple[MeterReading, dict[int, tuple[int, ...]]]:
        """One poll: the decoded reading and the raw registers of each block (for the log)."""
        values: dict[str, float | None] = {}
        raw: dict[int, tuple[int, ...]] = {}
        for block in self.model.blocks:
            registers = await self.bus.read(self.name, self.device_id, self.model.function, block.address, block.count)
            raw[block.address] = tuple(registers)
            for spec in block.values:
                start = spec.address - block.address
                regs = registers[start:start + spec.count]
                if _infinite(spec, regs):
                    raise ImplausibleReading(self.name, "not_finite", f"{spec.field} is infinite", raw)
                values[spec.field] = spec.decode(regs)
        return self._build(values, raw), raw

    def _build(self, values: dict[str, float | None], raw: dict[int, tuple[int, ...]]) -> MeterReading:
        read_monotonic, read_wall = now_stamps()
        energy = values.get("energy_import")
        if energy is None:
            raise ImplausibleReading(self.name, "not_available",
                                     "import energy register reports not-available (or NaN)", raw)
        phases = range(1, self.model.phases + 1)
        phase_power = tuple(values.get(f"power_l{n}") for n in phases)
        power = values.get("power_total")
        if self.model.value("power_total") is None and phase_power and None not in phase_power:
            # a meter without a total register (single-phase SDM120): the sum of its phases is the total
            power = sum(p for p in phase_power if p is not None)
        return MeterReading(
            energy_import_wh=energy,
            energy_export_wh=values.get("energy_export"),
            power_w=power,
            voltage_v=tuple(values.get(f"voltage_l{n}") for n in phases),
            current_a=tuple(values.get(f"current_l{n}") for n in phases),
            power_phase_w=phase_power if self.capabilities.per_phase_power else (),
            frequency_hz=values.get("frequency"),
            read_monotonic=read_monotonic,
            read_wall=read_wall,
        )

    def last_reading(self) -> MeterReading | None:
        """The last good reading; marked stale when the latest read failed (its time stays the original)."""
        if self._last is None:
            return None
        return dataclasses.replace(self._last, stale=True) if self._failed else self._last

    async def close(self) -> None:
        """Stop using the meter; the bus belongs to the BusPool, which closes it."""
        self._closed = True


def _infinite(spec: ValueSpec, registers: list[int]) -> bool:
    """True for a float register holding +-infinity (NaN means not available, as the codec says)."""
    return TYPES[spec.type].is_float and math.isinf(decode(spec.type, registers, spec.word_order))


def _hex(blocks: dict[int, tuple[int, ...]]) -> str:
    """Raw blocks as `@0x0000: 4366 0000 ...` for the log."""
    return "; ".join(f"@0x{address:04X}: " + " ".join(f"{r:04X}" for r in regs) for address, regs in blocks.items())
