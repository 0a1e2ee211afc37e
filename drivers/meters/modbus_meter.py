"""One driver for every Modbus energy meter: the model file says where the values are.

Energy-backwards rule: the driver remembers the highest import energy it has accepted. A reading below it
raises HardwareFault("energy_backwards") and is not published; the fault persists while the register
stays below that value and clears by itself once it reaches it again. A meter that was really replaced or
reset is accepted only after an explicit `reset_baseline()` (an operator decision, never automatic,
because a silently accepted reset would corrupt the meterStop of a running transaction).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from drivers.base import MeterCapabilities, MeterReading, now_stamps
from drivers.errors import CommunicationFault, ConfigError, HardwareFault
from drivers.meters.codec import MeterModel, load_model
from drivers.transport import DEFAULT_TIMEOUT_S, BusPool, ModbusBus

LOGGER = logging.getLogger(__name__)

OPTIONS = ("driver", "url", "device_id", "baudrate", "parity", "stopbits", "timeout_s")


class ModbusMeter:
    """An EnergyMeter read over Modbus TCP or RTU according to a `MeterModel`."""

    def __init__(self, name: str, model: MeterModel, bus: ModbusBus, device_id: int) -> None:
        self.name = name
        self.model = model
        self.bus = bus
        self.device_id = device_id
        self.capabilities: MeterCapabilities = model.capabilities
        self._last: MeterReading | None = None
        self._failed = False
        self._max_import_wh: float | None = None
        self._closed = False

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

    async def read(self) -> MeterReading:
        """Read every block of the model; raise CommunicationFault, DeviceTimeout or HardwareFault."""
        if self._closed:
            raise CommunicationFault(self.name, "meter is closed")
        try:
            values: dict[str, float | None] = {}
            for block in self.model.blocks:
                registers = await self.bus.read(
                    self.name, self.device_id, self.model.function, block.address, block.count
                )
                values.update(block.decode(registers))
            reading = self._build(values)
        except Exception:
            self._failed = True
            raise
        self._failed = False
        self._last = reading
        return reading

    def _build(self, values: dict[str, float | None]) -> MeterReading:
        read_monotonic, read_wall = now_stamps()
        energy = values.get("energy_import")
        if energy is None:
            raise CommunicationFault(self.name, "import energy register reports not-available")
        if self._max_import_wh is not None and energy < self._max_import_wh:
            raise HardwareFault(
                self.name,
                "energy_backwards",
                f"import energy {energy:.1f} Wh is below {self._max_import_wh:.1f} Wh read before; "
                "check the meter (replaced or reset?) and reset its baseline",
            )
        self._max_import_wh = energy
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

    def reset_baseline(self) -> None:
        """Accept the next import energy as the new baseline (after a meter was replaced or reset)."""
        LOGGER.warning("%s: energy baseline reset (was %s Wh)", self.name, self._max_import_wh)
        self._max_import_wh = None

    async def close(self) -> None:
        """Stop using the meter; the bus belongs to the BusPool, which closes it."""
        self._closed = True
