"""Register-map profiles: loading, validation, block planning, encode/decode both ways."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hal.errors import ProfileError
from hal.profile import (
    RegisterSpec,
    decode_block,
    encode_values,
    load_profile,
    plan_blocks,
    shipped_profiles,
)

SHIPPED = sorted({p.stem for p in shipped_profiles().values()})


def spec(
    type_: str, word_order: str = "big", scale: float = 1.0, unit: str = "W", sign: float = 1.0
):
    return RegisterSpec(
        name="power_kw",
        address=10,
        type=type_,  # type: ignore[arg-type]
        function="input",
        word_order=word_order,  # type: ignore[arg-type]
        scale=scale,
        unit=unit,
        sign=sign,
    )


def test_at_least_the_required_meters_are_shipped() -> None:
    assert {"sdm630", "em24", "iem3000", "abb_b2x", "dtsu666"} <= set(SHIPPED)
    assert shipped_profiles()["sdm72d-m"] == shipped_profiles()["sdm630"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load_and_fit_in_few_transactions(name: str) -> None:
    profile = load_profile(name)
    blocks = plan_blocks(profile)
    assert 1 <= len(blocks) <= 3
    assert all(b.count <= profile.max_block_registers for b in blocks)
    covered = {s.name for b in blocks for s in b.specs}
    assert covered == set(profile.fields)


@pytest.mark.parametrize(
    ("type_", "word_order", "value"),
    [
        ("int16", "big", -1234.0),
        ("uint16", "big", 54321.0),
        ("int32", "big", -12_345_678.0),
        ("int32", "little", -12_345_678.0),
        ("uint32", "little", 3_000_000_000.0),
        ("int64", "big", -(2**40) + 3.0),
        ("uint64", "big", 2.0**50),
        ("float32", "big", -12.5),
        ("float32", "little", 7.25),
    ],
)
def test_encode_decode_round_trip(type_: str, word_order: str, value: float) -> None:
    s = spec(type_, word_order, unit="kW")
    block = plan_blocks(_one_field_profile(s))[0]
    registers = encode_values(s, value)
    assert decode_block(block, registers)["power_kw"] == value


def test_word_order_really_swaps_words() -> None:
    big = encode_values(spec("int32", "big", unit="kW"), 0x00010002)
    little = encode_values(spec("int32", "little", unit="kW"), 0x00010002)
    assert big == [0x0001, 0x0002]
    assert little == [0x0002, 0x0001]


def test_scale_unit_and_sign_convert_to_canonical_units() -> None:
    s = spec("int32", scale=0.1, unit="W", sign=-1.0)  # 0.1 W steps, export positive
    registers = encode_values(s, 12.5)  # 12.5 kW import
    assert decode_block(plan_blocks(_one_field_profile(s))[0], registers)["power_kw"] == 12.5
    raw = int.from_bytes(b"".join(r.to_bytes(2, "big") for r in registers), "big", signed=True)
    assert raw == -125000


def test_all_ones_marker_decodes_to_none() -> None:
    s = spec("uint32", unit="kW")
    block = plan_blocks(_one_field_profile(s))[0]
    assert decode_block(block, [0xFFFF, 0xFFFF], ["all_ones"])["power_kw"] is None
    assert decode_block(block, [0xFFFF, 0xFFFF])["power_kw"] == float(0xFFFFFFFF)


def test_nan_is_passed_through_for_the_plausibility_check() -> None:
    s = spec("float32", unit="kW")
    value = decode_block(plan_blocks(_one_field_profile(s))[0], encode_values(s, math.nan))
    assert math.isnan(value["power_kw"] or 0.0)


def test_coalescing_respects_gap_and_block_limit() -> None:
    profile = load_profile("sdm630")
    assert len(plan_blocks(profile)) == 1
    assert len(plan_blocks(profile, max_gap_registers=0)) > 3
    small = plan_blocks(profile, max_block_registers=20)
    assert all(b.count <= 20 for b in small)
    assert len(small) > 1


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "custom.toml"
    path.write_text(text)
    return path


GOOD = """
[meter]
name = "custom"
function = "holding"
[fields.power_kw]
address = 100
type = "int32"
scale = 0.1
unit = "W"
sign = "export_positive"
[fields.current_a_l1]
address = 102
type = "uint16"
scale = 0.01
[fields.current_a_l2]
address = 103
type = "uint16"
scale = 0.01
[fields.current_a_l3]
address = 104
type = "uint16"
scale = 0.01
"""


def test_custom_profile_file(tmp_path: Path) -> None:
    profile = load_profile(path=_write(tmp_path, GOOD))
    assert profile.name == "custom"
    assert profile.fields["power_kw"].sign == -1.0
    assert [(b.function, b.address, b.count) for b in plan_blocks(profile)] == [("holding", 100, 5)]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("[fields.current_a_l3]", "[fields.bogus]"), "unknown field"),
        (('unit = "W"', 'unit = "A"'), "cannot be converted"),
        (("address = 103", "address = 101"), "overlaps"),
        (('type = "int32"', 'type = "int24"'), "type"),
        (("address = 104\ntype", "address = 104\ncolour = 1\ntype"), "unknown keys"),
    ],
)
def test_bad_profiles_are_rejected_with_the_key(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    with pytest.raises(ProfileError, match=message):
        load_profile(path=_write(tmp_path, GOOD.replace(*edit, 1)))


def test_missing_mandatory_field_and_unknown_name(tmp_path: Path) -> None:
    text = GOOD.split("[fields.current_a_l3]", maxsplit=1)[0]
    with pytest.raises(ProfileError, match="current_a_l3"):
        load_profile(path=_write(tmp_path, text))
    with pytest.raises(ProfileError, match="unknown meter profile"):
        load_profile("no-such-meter")


def _one_field_profile(s: RegisterSpec):
    from hal.profile import Profile

    return Profile(
        name="t", description="", fields={s.name: s}, max_block_registers=125, max_gap_registers=0
    )
