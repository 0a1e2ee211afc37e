"""OCMF data sets (SAFE e.V. Open Charge Metering Format 1.0): build and sign for the simulator, parse and
check for the drivers, so both sides share one codec.

A data set is `OCMF|{payload JSON}|{signature JSON}`. The signature covers the payload section's exact UTF-8
bytes, so a parsed data set is kept as the original text and never re-serialised. The pipe separates the
sections and is not allowed inside them (the specification's rule); the builder escapes it in strings.
Parsing is bounded (MAX_OCMF_BYTES), uses `json` only, and refuses anything a verifier would refuse.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from drivers.errors import ImplausibleReading

HEADER = "OCMF"
SEPARATOR = "|"
FORMAT_VERSION = "1.0"  # FV: the OCMF version whose fields we produce (major.minor, no revision)
SIGNING_METHOD = "ECDSA-secp256r1-SHA256"  # SA; the only method our signer produces and the driver accepts
SIGNATURE_ENCODING = "hex"  # SE
MAX_OCMF_BYTES = 16 * 1024  # a data set with a handful of readings is under 2 KiB; anything near this is garbage
OBIS_IMPORT = "1-b:1.8.0"  # RI: active energy import, total register (the OCMF examples' code)
TIME_STATUSES = ("U", "I", "S", "R")  # unknown/unsynchronised, informative, synchronised, relative
READING_REASONS = ("B", "C", "X", "E", "L", "R", "A", "P", "S", "T")  # TX
END_REASONS = ("E", "L", "R", "A", "P")
METER_STATUSES = ("N", "G", "T", "D", "R", "M", "X", "I", "O", "S", "E", "F")  # ST
UNITS_TO_WH = {"kWh": 1000.0, "Wh": 1.0}  # RU for energy registers
CURRENT_TYPES = ("AC", "DC")  # RT
INHERITED = ("TM", "TX", "RI", "RU", "RT", "EF", "ST")  # a reading may leave these out to repeat the previous one


@dataclass(frozen=True, slots=True)
class OcmfReading:
    """One entry of RD: an energy register reading with its time and reason."""

    wall: float  # seconds since the epoch (UTC)
    time_status: str  # one of TIME_STATUSES
    reason: str  # TX, one of READING_REASONS
    energy_wh: float
    status: str = "G"  # ST: G = meter OK
    current_type: str = "DC"

    def to_json(self) -> str:
        """The reading as OCMF JSON: RV in kWh with three decimals (1 Wh), the meter's register resolution."""
        return (f'{{"TM":{_string(format_time(self.wall, self.time_status))},"TX":{_string(self.reason)},'
                f'"RV":{self.energy_wh / 1000.0:.3f},"RI":{_string(OBIS_IMPORT)},"RU":"kWh",'
                f'"RT":{_string(self.current_type)},"ST":{_string(self.status)}}}')


def format_time(wall: float, status: str) -> str:
    """TM: `2018-07-24T13:22:04,000+0000 S`: milliseconds after a comma, a four-digit offset, the time status."""
    if status not in TIME_STATUSES:
        raise ValueError(f"time status must be one of {TIME_STATUSES}, not {status!r}")
    moment = datetime.fromtimestamp(wall, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S},{moment.microsecond // 1000:03d}+0000 {status}"


def _string(value: str) -> str:
    """A JSON string without the section separator (escaped as \\u007c, which every JSON parser reads back)."""
    return json.dumps(value).replace(SEPARATOR, "\\u007c")


def _value(value: Any) -> str:
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    return json.dumps(value)


def build_payload(fields: Mapping[str, Any], readings: Sequence[OcmfReading]) -> str:
    """The payload section: `fields` in their order (FV, GI, ... TT), then RD."""
    parts = [f"{_string(key)}:{_value(value)}" for key, value in fields.items()]
    parts.append('"RD":[' + ",".join(r.to_json() for r in readings) + "]")
    return "{" + ",".join(parts) + "}"


def sign(payload: str, key: ec.EllipticCurvePrivateKey) -> str:
    """The whole data set: the payload signed with ECDSA over SHA-256, the signature DER in hex."""
    signature = key.sign(payload.encode("utf-8"), ec.ECDSA(hashes.SHA256()))
    section = json.dumps({"SA": SIGNING_METHOD, "SE": SIGNATURE_ENCODING, "SD": signature.hex().upper()},
                         separators=(",", ":"))
    return SEPARATOR.join((HEADER, payload, section))


def public_key_hex(key: ec.EllipticCurvePublicKey) -> str:
    """The public key as OCMF verifiers take it: the DER SubjectPublicKeyInfo in hex."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der.hex().upper()


@dataclass(frozen=True, slots=True)
class ParsedOcmf:
    """A checked data set: the original text, its sections, and its readings with inherited fields filled in."""

    text: str
    payload_text: str
    payload: dict[str, Any]
    signature: dict[str, Any]
    readings: tuple[dict[str, Any], ...]
    energies_wh: tuple[float, ...]

    @property
    def meter_serial(self) -> str:
        """MS, the serial of the meter that signed it."""
        return str(self.payload.get("MS", ""))

    @property
    def begin_wh(self) -> float | None:
        """The energy of the transaction's begin reading (TX=B), if the data set holds one."""
        for reading, energy in zip(self.readings, self.energies_wh, strict=True):
            if reading.get("TX") == "B":
                return energy
        return None

    @property
    def end_wh(self) -> float | None:
        """The energy of the transaction's end reading (TX in E, L, R, A, P), if the data set holds one."""
        for reading, energy in zip(self.readings, self.energies_wh, strict=True):
            if reading.get("TX") in END_REASONS:
                return energy
        return None


def parse(device: str, text: str) -> ParsedOcmf:
    """Split and check a data set (sizes, sections, fields, units, energy order); raise ImplausibleReading."""

    def refuse(message: str) -> ImplausibleReading:
        return ImplausibleReading(device, "ocmf", f"OCMF data set refused: {message}")

    if len(text.encode("utf-8")) > MAX_OCMF_BYTES:
        raise refuse(f"longer than {MAX_OCMF_BYTES} bytes")
    sections = text.split(SEPARATOR)
    if len(sections) != 3 or sections[0] != HEADER:
        raise refuse(f"expected {HEADER}|payload|signature, got {len(sections)} section(s)")
    payload_text, signature_text = sections[1], sections[2]
    try:
        payload = json.loads(payload_text)
        signature = json.loads(signature_text)
    except ValueError as err:
        raise refuse(f"a section is not JSON: {err}") from None
    except RecursionError:  # thousands of nested brackets fit in the size bound; json recurses on them
        raise refuse("a section nests too deeply") from None
    if not isinstance(payload, dict) or not isinstance(signature, dict):
        raise refuse("a section is not a JSON object")
    for key in ("PG", "MS"):
        if not isinstance(payload.get(key), str) or not payload[key]:
            raise refuse(f"{key} missing or not a string")
    pagination = payload["PG"]
    if pagination[0] not in "TF" or not pagination[1:].isdigit() or not pagination[1:].isascii():
        raise refuse(f"PG {pagination!r} is not T<n> or F<n>")
    raw_readings = payload.get("RD")
    if not isinstance(raw_readings, list) or not raw_readings:
        raise refuse("RD missing or empty")
    readings: list[dict[str, Any]] = []
    energies: list[float] = []
    previous: dict[str, Any] = {}
    for index, raw in enumerate(raw_readings):
        if not isinstance(raw, dict):
            raise refuse(f"RD[{index}] is not an object")
        reading = {**{k: previous[k] for k in INHERITED if k in previous}, **raw}
        previous = reading
        tm = reading.get("TM")
        if not isinstance(tm, str) or len(tm) < 2 or tm[-2] != " " or tm[-1] not in TIME_STATUSES:
            raise refuse(f"RD[{index}].TM {tm!r} lacks a time status")
        if reading.get("TX") is not None and reading["TX"] not in READING_REASONS:
            raise refuse(f"RD[{index}].TX {reading['TX']!r} unknown")
        if reading.get("ST") not in METER_STATUSES:
            raise refuse(f"RD[{index}].ST {reading.get('ST')!r} unknown")
        if reading.get("RT") is not None and reading["RT"] not in CURRENT_TYPES:
            raise refuse(f"RD[{index}].RT {reading['RT']!r} unknown")
        unit = reading.get("RU")
        if unit not in UNITS_TO_WH:
            raise refuse(f"RD[{index}].RU {unit!r} is not an energy unit ({', '.join(UNITS_TO_WH)})")
        value = reading.get("RV")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise refuse(f"RD[{index}].RV {value!r} is not a non-negative number")
        energy = float(value) * UNITS_TO_WH[unit]
        if energies and energy < energies[-1]:
            raise refuse(f"RD[{index}] energy {energy:.0f} Wh is below the reading before it ({energies[-1]:.0f} Wh)")
        readings.append(reading)
        energies.append(energy)
    if signature.get("SA", SIGNING_METHOD) != SIGNING_METHOD:
        raise refuse(f"signature algorithm {signature.get('SA')!r}; only {SIGNING_METHOD} is supported")
    if signature.get("SE", SIGNATURE_ENCODING) != SIGNATURE_ENCODING:
        raise refuse(f"signature encoding {signature.get('SE')!r}; only hex is supported")
    if not isinstance(signature.get("SD"), str) or not _is_hex(signature["SD"]):
        raise refuse("SD missing or not hex")
    return ParsedOcmf(text, payload_text, payload, signature, tuple(readings), tuple(energies))


def verify(parsed: ParsedOcmf, public_key: str) -> bool:
    """True if the signature holds for the payload bytes under the public key (hex DER)."""
    try:
        key = serialization.load_der_public_key(bytes.fromhex(public_key))
    except ValueError:
        return False
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        return False
    try:
        key.verify(bytes.fromhex(parsed.signature["SD"]), parsed.payload_text.encode("utf-8"),
                   ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def load_public_key(device: str, public_key: str) -> str:
    """Check a hex DER public key names a secp256r1 key and return it upper-case; raise ImplausibleReading."""
    if not _is_hex(public_key) or len(public_key) > 1024:
        raise ImplausibleReading(device, "public_key", "public key is not hex DER")
    try:
        key = serialization.load_der_public_key(bytes.fromhex(public_key))
    except ValueError as err:
        raise ImplausibleReading(device, "public_key", f"public key does not parse: {err}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ImplausibleReading(device, "public_key", "public key is not an ECDSA secp256r1 key")
    return public_key.upper()


def _is_hex(text: str) -> bool:
    return bool(text) and len(text) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in text)
