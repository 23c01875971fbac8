"""Block strings: the published strings decode to the bundled specs, and both codecs round-trip."""

from __future__ import annotations

import numpy as np
import pytest

import nas
from nas.arch.blockstrings import (
    block_string,
    decode_ext,
    decode_ext_stages,
    decode_tf,
    decode_tf_stages,
    encode_ext,
    encode_ext_stages,
    encode_tf,
    encode_tf_stages,
)
from nas.arch.spec import OPS, SKIPS, ArchSpec, StageSpec
from search_space import SearchSpace

# The reference strings, verbatim from REFERENCE.md.
B0_TF = ("r1_k3_s11_e1_i32_o16_se0.25 r2_k3_s22_e6_i16_o24_se0.25 r2_k5_s22_e6_i24_o40_se0.25 "
         "r3_k3_s22_e6_i40_o80_se0.25 r3_k5_s11_e6_i80_o112_se0.25 r4_k5_s22_e6_i112_o192_se0.25 "
         "r1_k3_s11_e6_i192_o320_se0.25").split()
A1_TF = ("r1_k3_s11_e1_i32_o16_noskip r2_k3_s22_e6_i16_o24 r3_k5_s22_e3_i24_o40_se0.25 "
         "r4_k3_s22_e6_i40_o80 r2_k3_s11_e6_i80_o112_se0.25 r3_k5_s22_e6_i112_o160_se0.25 "
         "r1_k3_s11_e6_i160_o320").split()
MOBILENETV2_EXT = ("ds_r1_k3_s1_c16 ir_r2_k3_s2_e6_c24 ir_r3_k3_s2_e6_c32 ir_r4_k3_s2_e6_c64 "
                    "ir_r3_k3_s1_e6_c96 ir_r3_k3_s2_e6_c160 ir_r1_k3_s1_e6_c320").split()


def random_stage(rng: np.random.Generator, tf: bool = False) -> StageSpec:
    """Any valid stage; with ``tf`` only what TF strings can express (no conv op, no pool skip)."""
    op = str(rng.choice(("ds", "mbconv") if tf else OPS))
    skip = str(rng.choice(("identity", "none") if tf else SKIPS))
    se = (0.0, 0.25, 1.0, float(rng.random()), 1e-5)[int(rng.integers(5))]
    return StageSpec(
        op=op, kernel=int(rng.choice([1, 3, 5, 7, 9, 11, 31])), stride=int(rng.integers(1, 3)),
        out=int(rng.integers(1, 4000)), repeats=int(rng.integers(1, 20)),
        expand=int(rng.integers(2, 13)) if op == "mbconv" else 1, se=se, skip=skip)


def random_spec(rng: np.random.Generator, tf: bool = False) -> ArchSpec:
    return ArchSpec(stages=tuple(random_stage(rng, tf) for _ in range(int(rng.integers(1, 12)))),
                    stem=int(rng.integers(1, 200)))


# ------------------------------------------------------------------------- reference strings


@pytest.mark.parametrize("name,strings", [("efficientnet-b0", B0_TF), ("mnasnet-a1", A1_TF)])
def test_tf_reference_strings_are_the_bundled_specs(name: str, strings: list[str]) -> None:
    spec = nas.load_spec(name)
    stages, stem = decode_tf_stages(strings)
    assert stages == spec.stages
    assert stem == spec.stem == 32
    assert encode_tf_stages(spec) == strings
    assert decode_tf_stages(" ".join(strings), stem=32) == (spec.stages, 32)


def test_ext_mobilenetv2_strings_are_the_bundled_spec() -> None:
    spec = nas.load_spec("mobilenetv2")
    assert decode_ext_stages(MOBILENETV2_EXT) == spec.stages
    assert decode_ext_stages(" ".join(MOBILENETV2_EXT)) == spec.stages
    assert encode_ext_stages(spec) == MOBILENETV2_EXT
    assert block_string(spec) == " ".join(MOBILENETV2_EXT)


def test_b0_in_ext_form() -> None:
    spec = nas.load_spec("efficientnet-b0")
    assert encode_ext_stages(spec)[:2] == ["ds_r1_k3_s1_c16_se0.25", "ir_r2_k3_s2_e6_c24_se0.25"]
    assert decode_ext_stages(block_string(spec)) == spec.stages


def test_tf_e1_is_ds_and_noskip_is_none() -> None:
    stage, c_in = decode_tf("r1_k3_s11_e1_i32_o16_noskip")
    assert stage == StageSpec(op="ds", kernel=3, stride=1, out=16, repeats=1, skip="none")
    assert c_in == 32


def test_ext_block_types_and_skip_flags() -> None:
    assert decode_ext("cn_r2_k5_s2_c48_se0.5_pskip") == StageSpec(
        op="conv", kernel=5, stride=2, out=48, repeats=2, se=0.5, skip="pool")
    assert decode_ext("ir_r1_k7_s1_e3_c40_noskip") == StageSpec(
        op="mbconv", kernel=7, stride=1, out=40, repeats=1, expand=3, skip="none")
    assert encode_ext(StageSpec(op="conv", kernel=3, stride=1, out=8, repeats=1)) == \
        "cn_r1_k3_s1_c8"
    # Flags and keys may come in any order; the encoder writes one canonical order.
    assert encode_ext(decode_ext("ir_noskip_c40_e3_s1_k7_r1")) == "ir_r1_k7_s1_e3_c40_noskip"


# ------------------------------------------------------------------------- round trips


def test_ext_round_trip_of_random_stages() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5000):
        stage = random_stage(rng)
        text = encode_ext(stage)
        assert decode_ext(text) == stage
        assert encode_ext(decode_ext(text)) == text  # canonical strings are fixed points


def test_tf_round_trip_of_random_stages() -> None:
    rng = np.random.default_rng(1)
    for _ in range(5000):
        stage, c_in = random_stage(rng, tf=True), int(rng.integers(1, 4000))
        text = encode_tf(stage, c_in)
        assert decode_tf(text) == (stage, c_in)
        assert encode_tf(*decode_tf(text)) == text


def test_round_trip_of_random_specs() -> None:
    rng = np.random.default_rng(2)
    for _ in range(1000):
        spec = random_spec(rng)
        assert decode_ext_stages(encode_ext_stages(spec)) == spec.stages
        tf_spec = random_spec(rng, tf=True)
        strings = encode_tf_stages(tf_spec)
        assert decode_tf_stages(strings) == (tf_spec.stages, tf_spec.stem)
        assert decode_tf_stages(strings, stem=tf_spec.stem)[0] == tf_spec.stages


def test_round_trip_of_space_samples() -> None:
    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    rng = np.random.default_rng(3)
    expressible = 0
    for _ in range(1000):
        spec = space.sample(rng)
        assert decode_ext_stages(block_string(spec)) == spec.stages
        if all(s.op != "conv" and s.skip != "pool" for s in spec.stages):
            expressible += 1
            assert decode_tf_stages(encode_tf_stages(spec)) == (spec.stages, spec.stem)
        else:
            with pytest.raises(nas.SpecError, match="TF block strings cannot express"):
                encode_tf_stages(spec)
    assert expressible > 0


@pytest.mark.parametrize("text", [
    "r1_k3_s11_e1_i32_o16", "r12_k31_s22_e12_i1024_o2048_se0.0625_noskip",
    "r1_k3_s11_e1_i32_o16_se1e-05", "r2_k5_s22_e6_i16_o24_se0.3333333333333333",
])
def test_canonical_tf_strings_are_fixed_points(text: str) -> None:
    assert encode_tf(*decode_tf(text)) == text


@pytest.mark.parametrize("text", [
    "ds_r1_k3_s1_c16", "cn_r3_k1_s2_c7_se1.0_pskip", "ir_r4_k9_s1_e12_c4000_se0.75_noskip",
    "ds_r1_k3_s2_c8_se1e-05_pskip",
])
def test_canonical_ext_strings_are_fixed_points(text: str) -> None:
    assert encode_ext(decode_ext(text)) == text


# ------------------------------------------------------------------------- strict errors

BAD_TF = [
    ("r1_k3_s11_e1_i32_o16_x5", "unknown part 'x5'"),
    ("r1_k3_s11_e1_i32_o16_se0.25_foo", "unknown part 'foo'"),
    ("r1_r2_k3_s11_e1_i32_o16", "key 'r' given twice"),
    ("r1_k3_s11_e1_i32_o16_se0.25_se0.5", "key 'se' given twice"),
    ("r1_k3_s11_e1_i32_o16_noskip_noskip", "flag 'noskip' given twice"),
    ("r1_k3_s11_e1_o16", "missing key 'i'"),
    ("k3_s11_e1_i32_o16", "missing key 'r'"),
    ("r1_k3_e1_i32_o16", "missing key 's'"),
    ("r1_k3_s12_e1_i32_o16", "stride s12 must be two equal digits"),
    ("r1_k3_s2_e1_i32_o16", "stride s2 must be two equal digits"),
    ("r1_k3_s33_e1_i32_o16", "stride"),
    ("r1_k4_s11_e1_i32_o16", "kernel"),
    ("r0_k3_s11_e1_i32_o16", "repeats"),
    ("r1_k3_s11_e1_i32_o16_se1.5", "se"),
    ("r1_k3_s11_e1_i32_o16_se0.2.5", "se0.2.5 is not a number"),
    ("r1_k3_s11_e1_i32_o16_pskip", "unknown part 'pskip'"),
    ("r1_k3³_s11_e1_i32_o16", "k3³ is not a whole number"),
    ("r1_k٣_s11_e1_i32_o16", "unknown part"),
    ("r1_k3_s11_e1_i32_o16_", "unknown part ''"),
    ("", "expected a non-empty string"),
]


@pytest.mark.parametrize("text,fragment", BAD_TF)
def test_bad_tf_strings(text: str, fragment: str) -> None:
    with pytest.raises(nas.SpecError) as info:
        decode_tf(text)
    msg = str(info.value)
    assert "\n" not in msg and fragment in msg, msg
    if text:
        assert repr(text) in msg  # names the offending block


BAD_TIMM = [
    ("xx_r1_k3_s1_c16", "unknown block type 'xx'"),
    ("mb_r1_k3_s1_e6_c16", "unknown block type 'mb'"),
    ("ds_r1_k3_s1_c16_i32", "unknown part 'i32'"),
    ("ds_r1_k3_s1_c16_r2", "key 'r' given twice"),
    ("ds_r1_k3_s1", "missing key 'c'"),
    ("ds_k3_s1_c16", "missing key 'r'"),
    ("ir_r1_k3_s1_c16", "needs an expansion"),
    ("ir_r1_k3_s1_e1_c16", "'ir' with e1 is not supported"),
    ("ds_r1_k3_s1_e6_c16", "expand"),
    ("cn_r1_k3_s1_e2_c16", "expand"),
    ("ds_r1_k3_s3_c16", "stride"),
    ("ds_r1_k3_s11_c16", "stride"),
    ("ds_r1_k2_s1_c16", "kernel"),
    ("ds_r1_k3_s1_c0", "out"),
    ("ds_r1_k3_s1_c16_noskip_pskip", "noskip and pskip exclude each other"),
    ("ds_r1_k3_s1_c16.5", "c16.5 is not a whole number"),
    ("ds_r1_k3_s1_c16³", "c16³ is not a whole number"),
    ("ds_r1_k3_s1_c16_se0.2٥", "is not a number"),
    ("ds", "expected '<type>_r.._k.._s.._c..'"),
]


@pytest.mark.parametrize("text,fragment", BAD_TIMM)
def test_bad_ext_strings(text: str, fragment: str) -> None:
    with pytest.raises(nas.SpecError) as info:
        decode_ext(text)
    msg = str(info.value)
    assert "\n" not in msg and fragment in msg, msg
    assert repr(text) in msg


def test_tf_chain_must_match() -> None:
    with pytest.raises(nas.SpecError, match=r"'r2_k3_s22_e6_i24_o24': input channels i24 do not "
                       r"match the previous output \(16\)"):
        decode_tf_stages(["r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i24_o24"])
    with pytest.raises(nas.SpecError, match=r"input channels i32 do not match the previous "
                       r"output \(48\)"):
        decode_tf_stages(B0_TF, stem=48)
    with pytest.raises(nas.SpecError, match="the list is empty"):
        decode_tf_stages([])
    with pytest.raises(nas.SpecError, match="the list is empty"):
        decode_ext_stages("   ")


def test_encoding_what_tf_cannot_express() -> None:
    conv = StageSpec(op="conv", kernel=3, stride=1, out=16, repeats=1)
    with pytest.raises(nas.SpecError, match="cannot express op 'conv'"):
        encode_tf(conv, 32)
    pool = StageSpec(op="ds", kernel=3, stride=1, out=16, repeats=1, skip="pool")
    with pytest.raises(nas.SpecError, match="cannot express skip 'pool'"):
        encode_tf(pool, 32)
    spec = nas.load_spec("efficientnet-b0")
    with pytest.raises(nas.SpecError):
        encode_tf_stages(spec.replace(stages=spec.stages[:3] + (pool,)))


def test_garbage_never_escapes_as_another_exception() -> None:
    """Mutated strings either decode to a valid stage or raise SpecError, never anything else."""
    rng = np.random.default_rng(4)
    alphabet = list("rksceio_0123456789.-+npqdsx") + ["³", "٣", "ｋ", " ", "\n", "e-", "1e5"]
    seeds = B0_TF + A1_TF + MOBILENETV2_EXT + ["cn_r2_k5_s2_c48_se0.5_pskip"]
    for _ in range(3000):
        chars = list(str(rng.choice(seeds)))
        for _ in range(int(rng.integers(1, 4))):
            pos = int(rng.integers(len(chars) + 1))
            kind = int(rng.integers(3))
            if kind == 0 and chars:
                del chars[min(pos, len(chars) - 1)]
            elif kind == 1:
                chars.insert(pos, str(rng.choice(alphabet)))
            elif chars:
                chars[min(pos, len(chars) - 1)] = str(rng.choice(alphabet))
        text = "".join(chars)
        for decode in (decode_tf, decode_ext):
            try:
                decoded = decode(text)
            except nas.SpecError as e:
                assert "\n" not in str(e).replace(repr(text), "")
                continue
            stage = decoded[0] if isinstance(decoded, tuple) else decoded
            assert isinstance(stage, StageSpec)
