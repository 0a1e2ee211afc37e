"""Config names to driver classes, imported lazily so a vendor library is needed only when chosen."""

from __future__ import annotations

import importlib
from typing import Any

from drivers.errors import UnsupportedDriver

# name -> "module:Class"; Modbus meter models are data files, so they all map to one class.
DRIVERS: dict[str, str] = {
    "eastron_sdm630": "drivers.meters.modbus_meter:ModbusMeter",
    "eastron_sdm72d_m_v2": "drivers.meters.modbus_meter:ModbusMeter",
    "eastron_sdm120": "drivers.meters.modbus_meter:ModbusMeter",
    "abb_b23": "drivers.meters.modbus_meter:ModbusMeter",
    "carlo_gavazzi_em340": "drivers.meters.modbus_meter:ModbusMeter",
    "modbus_dc": "drivers.dc.modbus_dc:ModbusDcController",
    "gpio_contactor": "drivers.gpio:GpioContactor",
    "gpio_estop": "drivers.gpio:GpioEmergencyStop",
    "gpio_indicator": "drivers.gpio:GpioIndicator",
    "gpio_lock": "drivers.gpio:GpioConnectorLock",
    "serial_rfid": "drivers.rfid:SerialIdReader",
}


def known_names() -> list[str]:
    """Every driver name a config may use, sorted."""
    return sorted(DRIVERS)


def resolve(name: str) -> type[Any]:
    """Return the class for a config name; an unknown name is refused with the known ones."""
    try:
        target = DRIVERS[name]
    except KeyError:
        raise UnsupportedDriver(
            name, f"unknown driver {name!r}; known drivers: {', '.join(known_names())}"
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UnsupportedDriver(name, f"cannot import {module_name}: {err}") from err
    cls: type[Any] = getattr(module, class_name)
    return cls
