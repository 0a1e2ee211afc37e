"""Writes the agent-side config for the devices a running simulator serves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simulator.hardware import RFID_MODELS, SimHardware


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _table(lines: list[str], header: str, values: dict[str, Any]) -> None:
    lines.append(f"\n{header}")
    lines.extend(f"{key} = {_value(value)}" for key, value in values.items() if value is not None)


def agent_config_text(hw: SimHardware, backoffice_url: str, state_directory: str,
                      ocpp: dict[str, Any] | None = None, diag_socket: str | None = None,
                      ocpp_version: str = "1.6") -> str:
    """Return a TOML agent config pointing at the simulator's devices, speaking this OCPP version."""
    cfg = hw.config
    lines = ["# Written by evse-sim for the devices it serves; regenerated at every simulator start."]
    _table(lines, "[charge_point]", {"id": cfg.charge_point_id, "vendor": "EvseSim", "model": "SimCharger",
                                     "serial_number": "SIM-0001"})
    _table(lines, "[backoffice]", {"url": backoffice_url, "ocpp_version": ocpp_version, "security_profile": 0,
                                   "reconnect_min_s": 0.5, "reconnect_max_s": 5.0})
    _table(lines, "[state]", {"directory": state_directory})
    _table(lines, "[diag]", {"socket": diag_socket or str(Path(state_directory) / "evsectl.sock"), "group": ""})
    _table(lines, "[gpio]", {"pin_factory": "evsesim", "sim_address": f"127.0.0.1:{hw.gpio_port}"})
    _table(lines, "[hardware]", {"poll_interval_s": 0.5})
    if ocpp:
        _table(lines, "[ocpp]", ocpp)
    if cfg.estop_pin is not None:
        _table(lines, "[estop]", {"driver": "gpio_estop", "pin": cfg.estop_pin})
    if hw.rfid_path:
        _table(lines, "[rfid]", {"driver": RFID_MODELS[cfg.rfid_model], "port": hw.rfid_path})
    for cid, conn in sorted(hw.connectors.items()):
        cc = conn.config
        _table(lines, "[[connectors]]", {"id": cid, "kind": cc.kind, "max_current_a": float(cc.max_current_a),
                                         "phases": cc.phases, "voltage_v": 230.0 if cc.kind == "ac" else 400.0,
                                         "cable_check": cc.cable_check if conn.imd is not None else None})
        meter_options: dict[str, object] = {"driver": cc.meter.model, "url": conn.meter_url}
        if conn.meter_server is not None:  # a Modbus meter; the HTTP one (LEM DCBM) has no unit id
            meter_options["device_id"] = cc.meter.device_id
        _table(lines, "[connectors.meter]", meter_options)
        if conn.dc is not None and cc.dc is not None:
            _table(lines, "[connectors.dc_controller]", {"driver": "modbus_dc", "url": conn.dc_url,
                                                         "device_id": cc.dc.device_id})
        if conn.imd is not None and cc.imd is not None:
            thresholds = {k: v for k, v in cc.imd_options.items() if k in ("warning_kohm", "fault_kohm")}
            _table(lines, "[connectors.insulation_monitor]", {"driver": "bender_isocha425hv", "url": conn.imd_url,
                                                              "device_id": cc.imd.device_id, **thresholds})
        _table(lines, "[connectors.contactor]", {"driver": "gpio_contactor", "pin": cc.contactor_pin,
                                                 "feedback_pin": cc.contactor_feedback_pin})
        if cc.lock_pin is not None:
            _table(lines, "[connectors.lock]", {"driver": "gpio_lock", "pin": cc.lock_pin,
                                                "feedback_pin": cc.lock_feedback_pin})
        if cc.indicator_pins is not None:
            red, green, blue = cc.indicator_pins
            _table(lines, "[connectors.indicator]", {"driver": "gpio_indicator", "red_pin": red,
                                                     "green_pin": green, "blue_pin": blue})
    return "\n".join(lines) + "\n"
