"""What a connector measured, in protocol-neutral terms: samples, billed energy, measurand availability.

Measurand names ("Energy.Active.Import.Register", "Voltage.L1-N"...) are the same in OCPP 1.6 and 2.0.1;
how a sample becomes a message is the protocol adapter's job (`agent/ocpp/v16/metering.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from drivers.base import MeterReading

PHASES = ("L1", "L2", "L3")
VOLTAGE_PHASES = ("L1-N", "L2-N", "L3-N")
# longest first, so "L1-N" is not read as "L1"
PHASE_SUFFIXES = ("L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1", "L1", "L2", "L3", "N")


@dataclass(frozen=True, slots=True)
class SignedValue:
    """A data set a signing meter produced for a transaction, kept and sent byte for byte (protocol-neutral).

    `data` is the meter's text exactly (e.g. "OCMF|{...}|{...}"): a verifier checks the signature over those
    bytes, so nothing re-encodes it; `public_key` is the hex DER key it verifies with. The readings are what
    the data set says, for meterStart/meterStop and display; the bill is the signed data.
    """

    data: str
    encoding: str  # "OCMF"
    signing_method: str  # e.g. "ECDSA-secp256r1-SHA256"
    public_key: str  # hex of the DER SubjectPublicKeyInfo
    begin_wh: float | None = None
    end_wh: float | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """What a connector measured at one moment (meter plus controller values; `signed`: the meter's signed data
    set taken with it, on a signing meter's Begin sample)."""

    reading: MeterReading
    offered_a: float | None = None
    soc_pct: float | None = None
    signed: SignedValue | None = None


def billed_wh(value: float) -> int:
    """Energy as the integer Wh a bill uses: rounded down, one rule for meterStart, meterStop and every
    sampled register, so a register never looks as if it went backwards between them."""
    return math.floor(value + 1e-9)  # a float32 register of 1234.0 may decode as 1233.9999999


def split_phase(entry: str) -> tuple[str, str | None]:
    """"Voltage.L1-N" -> ("Voltage", "L1-N"); an entry without a phase suffix -> (entry, None)."""
    for phase in PHASE_SUFFIXES:
        if entry.endswith("." + phase):
            return entry[: -len(phase) - 1], phase
    return entry, None


@dataclass(frozen=True, slots=True)
class MeasurandSource:
    """What one connector's devices can report (the meter's capabilities, and SoC from a DC controller)."""

    phases: int = 3
    export_energy: bool = False
    per_phase_power: bool = False
    soc: bool = False


def can_provide(entry: str, source: MeasurandSource) -> bool:
    """Whether a configured measurand (with an optional phase suffix) can be sent for this connector."""
    measurand, phase = split_phase(entry)
    own_phases = PHASES[: source.phases]
    if measurand in ("Energy.Active.Import.Register", "Current.Offered", "Frequency"):
        return phase is None
    if measurand == "Energy.Active.Export.Register":
        return phase is None and source.export_energy
    if measurand == "SoC":
        return phase is None and source.soc
    if measurand == "Current.Import":
        return phase is None or phase in own_phases
    if measurand == "Voltage":
        return phase is None or phase in own_phases or phase in VOLTAGE_PHASES[: source.phases]
    if measurand == "Power.Active.Import":
        return phase is None or (phase in own_phases and source.per_phase_power)
    return False


def next_aligned(now: float, interval_s: int) -> float:
    """The next clock-aligned instant: multiples of the interval since midnight UTC."""
    if interval_s <= 0:
        raise ValueError("interval must be positive")
    midnight = now - (now % 86400)
    offset = now - midnight
    return midnight + (int(offset // interval_s) + 1) * interval_s
