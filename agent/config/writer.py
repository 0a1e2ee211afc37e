"""The writer: a small TOML emitter for this schema (tomllib cannot write), and an atomic write_config."""

from __future__ import annotations

import datetime as dt
import enum
import math
import os
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from agent.cardid import CardIdFormat
from agent.config.errors import ConfigError
from agent.config.scanner import BARE_KEY_RE
from agent.config.schema import AgentConfig, FirmwareConfig
from agent.config.validate import parse_config


def _toml_key(key: str) -> str:
    """A bare key if possible, else a quoted one."""
    return key if BARE_KEY_RE.fullmatch(key) else _toml_str(key)


def _toml_str(value: str) -> str:
    """A TOML basic string with every control character escaped."""
    out = []
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    """One TOML value: string, bool, int, float, date/time, array or inline table."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # repr round-trips exactly and always has "." or "e"
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _emit_table(lines: list[str], header: str, values: Mapping[str, Any]) -> None:
    """Emit "[header]" and key = value lines; None values are left out."""
    lines.append("")
    lines.append(header)
    for key, value in values.items():
        if value is not None:
            lines.append(f"{_toml_key(key)} = {toml_value(value)}")


def _dataclass_values(obj: Any) -> dict[str, Any]:
    """Field name -> value of a dataclass instance."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def config_to_toml(cfg: AgentConfig) -> str:
    """The config as TOML text that parse_config reads back to an equal AgentConfig."""
    lines = ["# evse-agent configuration (written by config_to_toml); see docs/config.md"]
    _emit_table(lines, "[charge_point]", _dataclass_values(cfg.charge_point))
    _emit_table(lines, "[backoffice]", _dataclass_values(cfg.backoffice))
    _emit_table(lines, "[state]", _dataclass_values(cfg.state))
    _emit_table(lines, "[diag]", _dataclass_values(cfg.diag))
    if cfg.gpio.pin_factory is not None:
        _emit_table(lines, "[gpio]", _dataclass_values(cfg.gpio))
    _emit_table(lines, "[hardware]", _dataclass_values(cfg.hardware))
    if cfg.firmware != FirmwareConfig():
        _emit_table(lines, "[firmware]", _dataclass_values(cfg.firmware))
    if cfg.ocpp:
        _emit_table(lines, "[ocpp]", cfg.ocpp)
    if cfg.estop is not None:
        _emit_table(lines, "[estop]", cfg.estop.options)
    if cfg.rfid is not None:
        _emit_table(lines, "[rfid]", cfg.rfid.options)
    if cfg.card_id != CardIdFormat():
        _emit_table(lines, "[card_id]", _dataclass_values(cfg.card_id))
    roles = ("meter", "dc_controller", "contactor", "lock", "indicator", "insulation_monitor")
    for conn in cfg.connectors:
        scalars = {k: v for k, v in _dataclass_values(conn).items() if k not in roles}
        _emit_table(lines, "[[connectors]]", scalars)
        for role in roles:
            device = getattr(conn, role)
            if device is not None:
                _emit_table(lines, f"[connectors.{role}]", device.options)
    return "\n".join(lines) + "\n"


def write_config(cfg: AgentConfig, path: str | Path) -> None:
    """Write the config to path atomically (temp file + rename), after checking it reads back equal."""
    text = config_to_toml(cfg)
    if parse_config(text, str(path)) != cfg:
        raise ConfigError(f"{path}: config does not survive a write/read round trip")
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
