"""Config names to driver classes, imported lazily so a vendor library is needed only when chosen."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from drivers.errors import UnsupportedDriver

MODBUS_METER = "drivers.meters.modbus_meter:ModbusMeter"
MODELS_DIR = Path(__file__).parent / "meters" / "models"

# name -> "module:Class". Modbus meter models are data files (meters/models/NAME.toml): each file's
# name is a driver name mapped to ModbusMeter, so a new model needs no line here.
DRIVERS: dict[str, str] = {
    "lem_dcbm400600": "drivers.meters.lem_dcbm:LemDcbm",  # signing DC meter, HTTP/JSON (not a Modbus model)
    "modbus_dc": "drivers.dc.modbus_dc:ModbusDcController",
    "bender_isocha425hv": "drivers.imd.bender_isocha:BenderIsoCha",  # insulation monitor, Modbus RTU/TCP
    "gpio_contactor": "drivers.gpio:GpioContactor",
    "gpio_estop": "drivers.gpio:GpioEmergencyStop",
    "gpio_indicator": "drivers.gpio:GpioIndicator",
    "gpio_lock": "drivers.gpio:GpioConnectorLock",
    "serial_rfid": "drivers.rfid:SerialIdReader",
    "pn532": "drivers.pn532:Pn532Reader",  # ISO 14443A over the PN532's UART (HSU)
}


def meter_models() -> list[str]:
    """Names of the Modbus meter model files."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.toml"))


def _table() -> dict[str, str]:
    return {**{name: MODBUS_METER for name in meter_models()}, **DRIVERS}


def known_names() -> list[str]:
    """Every driver name a config may use, sorted."""
    return sorted(_table())


def resolve(name: str) -> type[Any]:
    """Return the class for a config name; an unknown name is refused with the known ones."""
    try:
        target = _table()[name]
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
