"""Meter readings to OCPP 1.6 sampledValue lists: measurand, unit, phase, context and location."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from drivers.base import MeterReading

PHASES = ("L1", "L2", "L3")
VOLTAGE_PHASES = ("L1-N", "L2-N", "L3-N")
SUPPORTED_MEASURANDS = (
    "Energy.Active.Import.Register",
    "Energy.Active.Export.Register",
    "Power.Active.Import",
    "Current.Import",
    "Current.Offered",
    "Voltage",
    "Frequency",
    "SoC",
)


def iso(ts: float) -> str:
    """OCPP date-time: UTC, millisecond precision, Z suffix."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def parse_csl(value: str) -> list[str]:
    """Split a comma-separated list of measurands, dropping empty items."""
    return [item.strip() for item in value.split(",") if item.strip()]


@dataclass(frozen=True, slots=True)
class Sample:
    """What a connector measured at one moment (meter plus controller values)."""

    reading: MeterReading
    offered_a: float | None = None
    soc_pct: float | None = None


def billed_wh(value: float) -> int:
    """Energy as the integer Wh a bill uses: rounded down, one rule for meterStart, meterStop and every
    sampled register, so a register never looks as if it went backwards between them."""
    return math.floor(value + 1e-9)  # a float32 register of 1234.0 may decode as 1233.9999999


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def sampled_values(sample: Sample, measurands: Iterable[str], context: str) -> list[dict[str, str]]:
    """Build the sampledValue list for the configured measurands; values a device lacks are left out."""
    r = sample.reading
    out: list[dict[str, str]] = []

    def add(value: float | None, measurand: str, unit: str, digits: int, phase: str | None = None,
            location: str = "Outlet") -> None:
        if value is None:
            return
        text = str(billed_wh(value)) if unit == "Wh" else _fmt(value, digits)
        item = {"value": text, "context": context, "format": "Raw", "measurand": measurand,
                "location": location, "unit": unit}
        if phase:
            item["phase"] = phase
        out.append(item)

    for entry in measurands:
        base, _, phase_filter = entry.partition(".L")
        measurand = entry if entry in SUPPORTED_MEASURANDS else base
        wanted = (f"L{phase_filter}",) if phase_filter and measurand in ("Current.Import", "Voltage") else None
        if measurand == "Energy.Active.Import.Register":
            add(r.energy_import_wh, measurand, "Wh", 1)
        elif measurand == "Energy.Active.Export.Register":
            add(r.energy_export_wh, measurand, "Wh", 1)
        elif measurand == "Power.Active.Import":
            add(r.power_w, measurand, "W", 1)
        elif measurand == "Current.Import":
            for phase, value in zip(PHASES, r.current_a, strict=False):
                if wanted is None or phase in wanted:
                    add(value, measurand, "A", 2, phase)
        elif measurand == "Voltage":
            for phase, vphase, value in zip(PHASES, VOLTAGE_PHASES, r.voltage_v, strict=False):
                if wanted is None or phase in wanted:
                    add(value, measurand, "V", 1, vphase)
        elif measurand == "Current.Offered":
            add(sample.offered_a, measurand, "A", 1)
        elif measurand == "Frequency":
            if r.frequency_hz is not None:
                # Frequency has no unit in the 1.6 UnitOfMeasure enum: leave unit out
                out.append({"value": _fmt(r.frequency_hz, 2), "context": context, "format": "Raw",
                            "measurand": measurand, "location": "Outlet"})
        elif measurand == "SoC":
            add(sample.soc_pct, measurand, "Percent", 0, location="EV")
    return out


def meter_value(sample: Sample, measurands: Iterable[str], context: str, timestamp: float) -> dict[str, object]:
    """One MeterValue element (timestamp + sampledValue)."""
    return {"timestamp": iso(timestamp), "sampledValue": sampled_values(sample, measurands, context)}


def validate_measurands(value: str) -> list[str]:
    """Check a measurand CSL; raise ValueError naming the first unsupported one."""
    items = parse_csl(value)
    for item in items:
        base = item
        for suffix in (".L1", ".L2", ".L3"):
            if item.endswith(suffix):
                base = item[: -len(suffix)]
        if base not in SUPPORTED_MEASURANDS:
            raise ValueError(f"unsupported measurand {item!r}; supported: {', '.join(SUPPORTED_MEASURANDS)}")
    return items


def next_aligned(now: float, interval_s: int) -> float:
    """The next clock-aligned instant: multiples of the interval since midnight UTC."""
    if interval_s <= 0:
        raise ValueError("interval must be positive")
    midnight = now - (now % 86400)
    offset = now - midnight
    return midnight + (int(offset // interval_s) + 1) * interval_s
