"""Register codec for Modbus meters: value types, model files (TOML) and block-read planning.

The driver decodes with it and the simulator encodes with it, so the two cannot drift apart.
Every value is decoded on its own with `struct`: pymodbus's `convert_from_registers(word_order="little")`
reverses the whole register list, which is wrong for a block of several values.
"""

from __future__ import annotations

import itertools
import math
import struct
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.base import MeterCapabilities
from drivers.errors import ConfigError

MODELS_DIR = Path(__file__).parent / "models"
MAX_BLOCK_REGS = 100  # Modbus allows 125 per read; some meters refuse more than about 100
MAX_GAP_REGS = 40  # reading a 40-register gap costs less line time than a second request


@dataclass(frozen=True, slots=True)
class ValueType:
    """A register type: its width in registers, struct code and default word order."""

    name: str
    registers: int
    struct_code: str  # big-endian struct code of the whole value, e.g. ">f"
    word_order: str = "big"
    fixed_order: bool = False  # the type name implies its word order (int32_lsw)

    @property
    def is_float(self) -> bool:
        """True for IEEE-754 types."""
        return self.struct_code[-1] in "fd"


TYPES: dict[str, ValueType] = {
    "u16": ValueType("u16", 1, ">H"),
    "s16": ValueType("s16", 1, ">h"),
    "u32": ValueType("u32", 2, ">I"),
    "s32": ValueType("s32", 2, ">i"),
    "u64": ValueType("u64", 4, ">Q"),
    "s64": ValueType("s64", 4, ">q"),
    "float32": ValueType("float32", 2, ">f"),
    "int32_lsw": ValueType("int32_lsw", 2, ">i", word_order="little", fixed_order=True),
}
WORD_ORDERS = ("big", "little")

PHASE_FIELDS = ("voltage", "current", "power")
FIELDS = (
    "energy_import", "energy_export", "power_total", "frequency",
    *(f"{kind}_l{n}" for kind in PHASE_FIELDS for n in (1, 2, 3)),
)


def _ordered_words(registers: Sequence[int], word_order: str) -> list[int]:
    """Registers of ONE value in most-significant-word-first order."""
    words = list(registers)
    return words[::-1] if word_order == "little" else words


def to_raw(registers: Sequence[int], word_order: str = "big") -> int:
    """The unsigned integer the registers of one value form, most significant word first."""
    raw = 0
    for word in _ordered_words(registers, word_order):
        raw = (raw << 16) | (word & 0xFFFF)
    return raw


def decode(type_name: str, registers: Sequence[int], word_order: str | None = None) -> int | float:
    """Decode one value of `type_name` from exactly its registers."""
    vtype = TYPES[type_name]
    if len(registers) != vtype.registers:
        raise ValueError(f"{type_name} needs {vtype.registers} registers, got {len(registers)}")
    words = _ordered_words(registers, word_order or vtype.word_order)
    data = struct.pack(f">{len(words)}H", *words)
    value: int | float = struct.unpack(vtype.struct_code, data)[0]
    return value


def encode(type_name: str, value: int | float, word_order: str | None = None) -> list[int]:
    """Encode one value of `type_name` into its registers (the inverse of `decode`)."""
    vtype = TYPES[type_name]
    packed = struct.pack(vtype.struct_code, value if vtype.is_float else int(value))
    words = list(struct.unpack(f">{vtype.registers}H", packed))
    return _ordered_words(words, word_order or vtype.word_order)


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """One value in a register map: where it is, how it is encoded and how it scales to SI units."""

    field: str
    address: int
    type: str
    word_order: str
    scale: float  # SI value = raw * scale (energy in Wh, so a kWh register has scale 1000)
    na: tuple[int, ...] = ()  # raw unsigned values that mean "not available"

    @property
    def count(self) -> int:
        """Registers this value occupies."""
        return TYPES[self.type].registers

    @property
    def end(self) -> int:
        """First address after this value."""
        return self.address + self.count

    def decode(self, registers: Sequence[int]) -> float | None:
        """Scaled value, or None for a not-available marker or a non-finite float."""
        if self.na and to_raw(registers, self.word_order) in self.na:
            return None
        value = float(decode(self.type, registers, self.word_order)) * self.scale
        return value if math.isfinite(value) else None

    def encode(self, value: float | None) -> list[int]:
        """Registers for a scaled value; None encodes the first not-available marker (or NaN)."""
        vtype = TYPES[self.type]
        if value is None:
            if self.na:
                raw = self.na[0]
                words = [(raw >> (16 * i)) & 0xFFFF for i in reversed(range(vtype.registers))]
                return _ordered_words(words, self.word_order)
            if vtype.is_float:
                return encode(self.type, math.nan, self.word_order)
            raise ValueError(f"{self.field}: {self.type} has no not-available marker")
        raw_value = value / self.scale
        return encode(self.type, raw_value if vtype.is_float else round(raw_value), self.word_order)


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: `count` registers from `address`, holding these values."""

    address: int
    count: int
    values: tuple[ValueSpec, ...]

    def decode(self, registers: Sequence[int]) -> dict[str, float | None]:
        """Decode every value of the block from the registers read."""
        out: dict[str, float | None] = {}
        for spec in self.values:
            start = spec.address - self.address
            out[spec.field] = spec.decode(registers[start:start + spec.count])
        return out


def plan_blocks(values: Iterable[ValueSpec], max_block: int = MAX_BLOCK_REGS,
                max_gap: int = MAX_GAP_REGS) -> tuple[Block, ...]:
    """Group values into as few reads as possible: a block grows while it stays within max_block
    registers and the gap to the next value is at most max_gap."""
    blocks: list[Block] = []
    current: list[ValueSpec] = []
    for spec in sorted(values, key=lambda v: v.address):
        if current:
            start, end = current[0].address, max(v.end for v in current)
            if spec.address - end <= max_gap and spec.end - start <= max_block:
                current.append(spec)
                continue
            blocks.append(Block(start, end - start, tuple(current)))
        current = [spec]
    if current:
        start, end = current[0].address, max(v.end for v in current)
        blocks.append(Block(start, end - start, tuple(current)))
    return tuple(blocks)


@dataclass(frozen=True, slots=True)
class MeterModel:
    """A meter model loaded from its register-map file."""

    name: str
    description: str
    function: int  # 3 = holding registers, 4 = input registers
    phases: int
    capabilities: MeterCapabilities
    values: tuple[ValueSpec, ...]
    blocks: tuple[Block, ...]
    source: str

    def value(self, field: str) -> ValueSpec | None:
        """The spec of `field`, or None when the model lacks it."""
        return next((v for v in self.values if v.field == field), None)


_TOP_KEYS = {"model", "description", "function", "phases", "capabilities", "max_block", "max_gap",
             "values"}
_VALUE_KEYS = {"field", "address", "type", "word_order", "scale", "na"}
_CAP_KEYS = {"export_energy", "per_phase_power"}


def _need(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str, src: str) -> Any:
    if key not in data:
        raise ConfigError(src, f"{where}: missing key {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(src, f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def _parse_value(raw: Any, index: int, phases: int, src: str) -> ValueSpec:
    where = f"values[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(src, f"{where}: expected a table")
    unknown = set(raw) - _VALUE_KEYS
    if unknown:
        raise ConfigError(src, f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_VALUE_KEYS)}")
    field = _need(raw, "field", str, where, src)
    where = f"{where} ({field})"
    if field not in FIELDS:
        raise ConfigError(src, f"{where}: unknown field; known: {', '.join(FIELDS)}")
    if field[-3:-1] == "_l" and int(field[-1]) > phases:
        raise ConfigError(src, f"{where}: phase beyond the model's {phases} phase(s)")
    address = _need(raw, "address", int, where, src)
    if not 0 <= address <= 0xFFFF:
        raise ConfigError(src, f"{where}: address {address} outside 0..65535")
    type_name = _need(raw, "type", str, where, src)
    vtype = TYPES.get(type_name)
    if vtype is None:
        raise ConfigError(src, f"{where}: unknown type {type_name!r}; known: {', '.join(TYPES)}")
    word_order = raw.get("word_order", vtype.word_order)
    if word_order not in WORD_ORDERS:
        raise ConfigError(src, f"{where}: word_order must be 'big' or 'little', not {word_order!r}")
    if vtype.fixed_order and word_order != vtype.word_order:
        raise ConfigError(src, f"{where}: {type_name} is always word_order {vtype.word_order!r}")
    if address + vtype.registers > 0x10000:
        raise ConfigError(src, f"{where}: runs past address 65535")
    scale = raw.get("scale", 1.0)
    bad_scale = not isinstance(scale, int | float) or isinstance(scale, bool)
    if bad_scale or scale == 0 or not math.isfinite(scale):
        raise ConfigError(src, f"{where}: scale must be a non-zero number")
    na = raw.get("na", [])
    limit = 1 << (16 * vtype.registers)
    if not isinstance(na, list) or not all(isinstance(m, int) and 0 <= m < limit for m in na):
        raise ConfigError(src, f"{where}: na must be a list of raw values that fit in {type_name}")
    return ValueSpec(field, address, type_name, word_order, float(scale), tuple(na))


def parse_model(data: Mapping[str, Any], source: str) -> MeterModel:
    """Validate a parsed model file; every problem raises ConfigError naming the file."""
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(source, f"unknown keys {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    name = _need(data, "model", str, "model", source)
    description = data.get("description", "")
    function = _need(data, "function", int, "model", source)
    if function not in (3, 4):
        raise ConfigError(source, f"function must be 3 (holding) or 4 (input), not {function}")
    phases = _need(data, "phases", int, "model", source)
    if phases not in (1, 3):
        raise ConfigError(source, f"phases must be 1 or 3, not {phases}")
    max_block = data.get("max_block", MAX_BLOCK_REGS)
    max_gap = data.get("max_gap", MAX_GAP_REGS)
    if not isinstance(max_block, int) or not 4 <= max_block <= 125:
        raise ConfigError(source, "max_block must be an integer from 4 to 125")
    if not isinstance(max_gap, int) or not 0 <= max_gap < max_block:
        raise ConfigError(source, "max_gap must be an integer from 0 to max_block - 1")
    raw_values = _need(data, "values", list, "model", source)
    values = [_parse_value(raw, i, phases, source) for i, raw in enumerate(raw_values)]
    seen: dict[str, ValueSpec] = {}
    for spec in values:
        if spec.field in seen:
            raise ConfigError(source, f"field {spec.field!r} appears twice")
        seen[spec.field] = spec
    ordered = sorted(values, key=lambda v: v.address)
    for prev, nxt in itertools.pairwise(ordered):
        if nxt.address < prev.end:
            raise ConfigError(source, f"{prev.field} and {nxt.field} overlap at 0x{nxt.address:04X}")
    if "energy_import" not in seen:
        raise ConfigError(source, "a meter model needs an energy_import value")
    caps_raw = _need(data, "capabilities", dict, "model", source)
    unknown = set(caps_raw) - _CAP_KEYS
    if unknown:
        raise ConfigError(
            source, f"capabilities: unknown keys {sorted(unknown)}; allowed: {sorted(_CAP_KEYS)}"
        )
    export = _need(caps_raw, "export_energy", bool, "capabilities", source)
    per_phase = _need(caps_raw, "per_phase_power", bool, "capabilities", source)
    if export != ("energy_export" in seen):
        raise ConfigError(source, "capabilities.export_energy disagrees with the energy_export value")
    if per_phase != all(f"power_l{n}" in seen for n in range(1, phases + 1)):
        raise ConfigError(source, "capabilities.per_phase_power disagrees with the power_lN values")
    for spec in values:
        if spec.count > max_block:
            raise ConfigError(source, f"{spec.field} is wider than max_block")
    return MeterModel(
        name=name,
        description=str(description),
        function=function,
        phases=phases,
        capabilities=MeterCapabilities(phases=phases, export_energy=export, per_phase_power=per_phase),
        values=tuple(values),
        blocks=plan_blocks(values, max_block, max_gap),
        source=source,
    )


def load_model_file(path: str | Path) -> MeterModel:
    """Load and validate one model file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as err:
        raise ConfigError(str(path), f"cannot read model file: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(path), f"not valid TOML: {err}") from err
    model = parse_model(data, str(path))
    if model.name != path.stem:
        raise ConfigError(str(path), f"model name {model.name!r} must match the file name {path.stem!r}")
    return model


def model_names() -> list[str]:
    """Names of the model files shipped in drivers/meters/models, sorted."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.toml"))


def load_model(name: str) -> MeterModel:
    """Load a shipped model by name (e.g. "eastron_sdm630")."""
    path = MODELS_DIR / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(name, f"no meter model {name!r}; known: {', '.join(model_names())}")
    return load_model_file(path)
