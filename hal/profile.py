"""Register-map profiles: which Modbus registers hold which measurement, as data.

A profile is a TOML file (shipped ones live in ``hal/profiles/``; an installer may point the
config at their own file). This module loads and validates it, plans the fewest read
transactions that cover it (coalescing neighbouring registers), and converts between raw
16-bit registers and engineering values in both directions (the simulator encodes with the
same code the driver decodes with, so a profile is tested from both ends).

It must never do I/O other than reading the profile file, and never import a Modbus library.
"""

from __future__ import annotations

import math
import struct
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal, cast

from hal.errors import ProfileError

__all__ = [
    "FIELD_UNITS",
    "MANDATORY_FIELDS",
    "Block",
    "Profile",
    "RegisterSpec",
    "decode_block",
    "encode_values",
    "load_profile",
    "plan_blocks",
    "shipped_profiles",
]

RegisterType = Literal["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32"]
Function = Literal["input", "holding"]
WordOrder = Literal["big", "little"]

#: struct format (big-endian bytes within each word) and width in registers, per type
_TYPES: dict[str, tuple[str, int]] = {
    "int16": (">h", 1),
    "uint16": (">H", 1),
    "int32": (">i", 2),
    "uint32": (">I", 2),
    "int64": (">q", 4),
    "uint64": (">Q", 4),
    "float32": (">f", 2),
}

#: canonical fields of a measurement and the unit each is reported in
FIELD_UNITS: dict[str, str] = {
    "power_kw": "kW",
    "phase_power_kw_l1": "kW",
    "phase_power_kw_l2": "kW",
    "phase_power_kw_l3": "kW",
    "current_a_l1": "A",
    "current_a_l2": "A",
    "current_a_l3": "A",
    "voltage_v_l1": "V",
    "voltage_v_l2": "V",
    "voltage_v_l3": "V",
    "frequency_hz": "Hz",
    "import_kwh": "kWh",
    "apparent_kva": "kVA",
    "power_factor": "",
}

#: without these a reading is useless to the control law: a profile must map them
MANDATORY_FIELDS: tuple[str, ...] = ("power_kw", "current_a_l1", "current_a_l2", "current_a_l3")

#: fields whose sign follows the metering convention (import positive in a Reading)
_SIGNED_FIELDS = frozenset(
    {"power_kw", "phase_power_kw_l1", "phase_power_kw_l2", "phase_power_kw_l3"}
)

#: register unit -> (canonical unit, factor): lets a profile quote the datasheet's unit
_UNIT_CONVERSIONS: dict[str, tuple[str, float]] = {
    "W": ("kW", 1e-3),
    "kW": ("kW", 1.0),
    "Wh": ("kWh", 1e-3),
    "kWh": ("kWh", 1.0),
    "MWh": ("kWh", 1e3),
    "VA": ("kVA", 1e-3),
    "kVA": ("kVA", 1.0),
    "mA": ("A", 1e-3),
    "A": ("A", 1.0),
    "V": ("V", 1.0),
    "Hz": ("Hz", 1.0),
    "": ("", 1.0),
}

_INVALID_MARKERS = ("all_ones", "signed_max")

_MODBUS_MAX_READ = 125  # registers per FC03/FC04 request, by the Modbus specification


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    """Where one measurement lives and how to turn its registers into a canonical value."""

    name: str
    address: int
    type: RegisterType
    function: Function
    word_order: WordOrder
    #: raw value x scale = value in ``unit``; then converted to the field's canonical unit
    scale: float
    unit: str
    #: -1.0 when the meter counts export as positive, so a Reading is always import positive
    sign: float

    @property
    def count(self) -> int:
        """Number of 16-bit registers the value occupies."""
        return _TYPES[self.type][1]

    @property
    def factor(self) -> float:
        """Multiplier from the raw integer/float to the canonical value (sign included)."""
        return self.scale * _UNIT_CONVERSIONS[self.unit][1] * self.sign


@dataclass(frozen=True, slots=True)
class Profile:
    """A validated register map of one meter model."""

    name: str
    description: str
    fields: Mapping[str, RegisterSpec]
    #: largest number of registers the meter accepts in one read request
    max_block_registers: int
    #: unmapped registers a read may span to merge two blocks (the meter must answer them)
    max_gap_registers: int
    #: raw patterns the meter uses to say "no valid value" (e.g. ABB: all bits set)
    invalid_markers: tuple[str, ...] = ()
    source: str = ""
    aliases: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Block:
    """One read transaction: ``count`` registers from ``address`` with one function code."""

    function: Function
    address: int
    count: int
    specs: tuple[RegisterSpec, ...]


def shipped_profiles() -> dict[str, Path]:
    """Names (file stems and aliases) of the profiles shipped in ``hal/profiles/``."""
    found: dict[str, Path] = {}
    folder = resources.files("hal") / "profiles"
    for entry in folder.iterdir():
        if entry.name.endswith(".toml"):
            path = Path(str(entry))
            found[path.stem] = path
            meter = _read_toml(path).get("meter")
            aliases = meter.get("aliases", []) if isinstance(meter, dict) else []
            for alias in aliases:
                found[str(alias)] = path
    return dict(sorted(found.items()))


def load_profile(name: str | None = None, path: str | Path | None = None) -> Profile:
    """Load a shipped profile by name, or a custom one from ``path`` (which wins).

    Raises ProfileError naming the file and the key when anything is wrong.
    """
    if path is not None:
        file = Path(path)
    elif name is not None:
        shipped = shipped_profiles()
        if name not in shipped:
            raise ProfileError(f"unknown meter profile {name!r}; shipped: {', '.join(shipped)}")
        file = shipped[name]
    else:
        raise ProfileError("a profile name or a profile file is required")
    return _parse(_read_toml(file), str(file))


def _read_toml(file: Path) -> dict[str, object]:
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ProfileError(f"{file}: cannot read profile: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{file}: not valid TOML: {exc}") from exc


def _parse(doc: Mapping[str, object], source: str) -> Profile:
    meter = doc.get("meter")
    if not isinstance(meter, dict):
        raise ProfileError(f"{source}: missing [meter] table")
    fields_doc = doc.get("fields")
    if not isinstance(fields_doc, dict) or not fields_doc:
        raise ProfileError(f"{source}: missing [fields.*] tables")
    defaults = {
        "function": meter.get("function", "input"),
        "word_order": meter.get("word_order", "big"),
        "sign": meter.get("sign", "import_positive"),
    }
    specs: dict[str, RegisterSpec] = {}
    for fname, raw in fields_doc.items():
        if fname not in FIELD_UNITS:
            raise ProfileError(
                f"{source}: fields.{fname}: unknown field; known: {', '.join(FIELD_UNITS)}"
            )
        if not isinstance(raw, dict):
            raise ProfileError(f"{source}: fields.{fname}: must be a table")
        specs[fname] = _parse_spec(fname, raw, defaults, f"{source}: fields.{fname}")
    missing = [f for f in MANDATORY_FIELDS if f not in specs]
    if missing:
        raise ProfileError(f"{source}: mandatory fields missing: {', '.join(missing)}")
    _check_overlaps(specs.values(), source)
    max_block = meter.get("max_block_registers", _MODBUS_MAX_READ)
    max_gap = meter.get("max_gap_registers", 0)
    if not isinstance(max_block, int) or not 1 <= max_block <= _MODBUS_MAX_READ:
        raise ProfileError(f"{source}: meter.max_block_registers: must be 1..125")
    if not isinstance(max_gap, int) or max_gap < 0:
        raise ProfileError(f"{source}: meter.max_gap_registers: must be >= 0")
    markers = meter.get("invalid_markers", [])
    if not isinstance(markers, list) or any(m not in _INVALID_MARKERS for m in markers):
        raise ProfileError(
            f"{source}: meter.invalid_markers: allowed values are {', '.join(_INVALID_MARKERS)}"
        )
    aliases = meter.get("aliases", [])
    return Profile(
        name=str(meter.get("name", Path(source).stem)),
        description=str(meter.get("description", "")),
        fields=specs,
        max_block_registers=max_block,
        max_gap_registers=max_gap,
        invalid_markers=tuple(str(m) for m in markers),
        source=source,
        aliases=tuple(str(a) for a in aliases) if isinstance(aliases, list) else (),
    )


def _parse_spec(
    fname: str, raw: Mapping[str, object], defaults: Mapping[str, object], where: str
) -> RegisterSpec:
    unknown = set(raw) - {"address", "type", "function", "word_order", "scale", "unit", "sign"}
    if unknown:
        raise ProfileError(f"{where}: unknown keys: {', '.join(sorted(unknown))}")
    address = raw.get("address")
    if not isinstance(address, int) or not 0 <= address <= 0xFFFF:
        raise ProfileError(f"{where}.address: must be an integer 0..65535")
    rtype = raw.get("type")
    if rtype not in _TYPES:
        raise ProfileError(f"{where}.type: must be one of {', '.join(_TYPES)}")
    function = raw.get("function", defaults["function"])
    if function not in ("input", "holding"):
        raise ProfileError(f"{where}.function: must be 'input' or 'holding'")
    word_order = raw.get("word_order", defaults["word_order"])
    if word_order not in ("big", "little"):
        raise ProfileError(f"{where}.word_order: must be 'big' (high word first) or 'little'")
    scale = raw.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or scale == 0:
        raise ProfileError(f"{where}.scale: must be a non-zero number")
    unit = raw.get("unit", FIELD_UNITS[fname])
    if not isinstance(unit, str) or unit not in _UNIT_CONVERSIONS:
        raise ProfileError(f"{where}.unit: unknown unit {unit!r}")
    if _UNIT_CONVERSIONS[unit][0] != FIELD_UNITS[fname]:
        raise ProfileError(f"{where}.unit: {unit!r} cannot be converted to {FIELD_UNITS[fname]!r}")
    sign_name = raw.get("sign", defaults["sign"]) if fname in _SIGNED_FIELDS else "import_positive"
    if sign_name not in ("import_positive", "export_positive"):
        raise ProfileError(f"{where}.sign: must be 'import_positive' or 'export_positive'")
    return RegisterSpec(
        name=fname,
        address=address,
        type=cast(RegisterType, rtype),
        function=function,
        word_order=word_order,
        scale=float(scale),
        unit=unit,
        sign=-1.0 if sign_name == "export_positive" else 1.0,
    )


def _check_overlaps(specs: Iterable[RegisterSpec], source: str) -> None:
    taken: dict[tuple[str, int], str] = {}
    for spec in specs:
        for reg in range(spec.address, spec.address + spec.count):
            other = taken.setdefault((spec.function, reg), spec.name)
            if other != spec.name:
                raise ProfileError(
                    f"{source}: fields.{spec.name} overlaps fields.{other} at register {reg}"
                )


def plan_blocks(
    profile: Profile, max_block_registers: int | None = None, max_gap_registers: int | None = None
) -> list[Block]:
    """Coalesce the profile's registers into as few read transactions as the map allows.

    Neighbours merge when the unmapped gap between them is at most ``max_gap_registers``
    and the merged read stays within ``max_block_registers`` (the tighter of the profile's
    and the caller's limits).
    """
    limit = profile.max_block_registers
    if max_block_registers is not None:
        limit = min(limit, max_block_registers)
    gap = profile.max_gap_registers if max_gap_registers is None else max_gap_registers
    blocks: list[Block] = []
    for function in ("input", "holding"):
        specs = sorted(
            (s for s in profile.fields.values() if s.function == function),
            key=lambda s: s.address,
        )
        current: list[RegisterSpec] = []
        start = end = 0
        for spec in specs:
            spec_end = spec.address + spec.count
            if current and spec.address - end <= gap and spec_end - start <= limit:
                current.append(spec)
                end = max(end, spec_end)
                continue
            if current:
                blocks.append(Block(function, start, end - start, tuple(current)))
            current, start, end = [spec], spec.address, spec_end
        if current:
            blocks.append(Block(function, start, end - start, tuple(current)))
    return blocks


def _words_to_bytes(words: Sequence[int], word_order: WordOrder) -> bytes:
    ordered = list(words) if word_order == "big" else list(reversed(words))
    return b"".join(w.to_bytes(2, "big") for w in ordered)


def _is_invalid(raw: bytes, rtype: str, markers: Sequence[str]) -> bool:
    if "all_ones" in markers and raw == b"\xff" * len(raw):
        return True
    signed_max = b"\x7f" + b"\xff" * (len(raw) - 1)
    return "signed_max" in markers and rtype.startswith("int") and raw == signed_max


def decode_block(
    block: Block, registers: Sequence[int], invalid_markers: Sequence[str] = ()
) -> dict[str, float | None]:
    """Decode one block's registers into canonical values (None where the meter says invalid).

    NaN and inf are returned as they are: judging them is the plausibility check's job.
    """
    if len(registers) < block.count:
        raise ValueError(f"block at {block.address} needs {block.count} registers")
    values: dict[str, float | None] = {}
    for spec in block.specs:
        offset = spec.address - block.address
        raw = _words_to_bytes(registers[offset : offset + spec.count], spec.word_order)
        if _is_invalid(raw, spec.type, invalid_markers):
            values[spec.name] = None
            continue
        (number,) = struct.unpack(_TYPES[spec.type][0], raw)
        values[spec.name] = float(number) * spec.factor
    return values


def encode_values(spec: RegisterSpec, value: float) -> list[int]:
    """Registers (in the meter's word order) that decode to ``value``: the simulator's half.

    Integer types round to the nearest step and saturate at the type's range, as a meter's
    firmware would; NaN/inf are only representable in float32 (integers get all-ones).
    """
    fmt, count = _TYPES[spec.type]
    raw_value = value / spec.factor
    if spec.type == "float32":
        packed = struct.pack(fmt, raw_value)
    elif not math.isfinite(raw_value):
        packed = b"\xff" * (2 * count)
    else:
        bits = 16 * count
        signed = spec.type.startswith("int")
        low = -(1 << (bits - 1)) if signed else 0
        high = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        packed = struct.pack(fmt, min(max(round(raw_value), low), high))
    words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
    return words if spec.word_order == "big" else list(reversed(words))
