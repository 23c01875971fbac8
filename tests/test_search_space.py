"""The search space: decisions derive from the YAML, encode/decode round-trip, errors are strict."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from dictpath import DELETE, replaced

import nas
from nas.arch.spec import StageSpec
from nas.core.files import dump_yaml_text  # quotes strings that read as numbers
from search_space import SearchSpace, op_choice, op_name
from search_space.space import BLOCK_KEYS

DEFAULT_SIZES_PER_BLOCK = {  # op, kernel, se, skip, filters, layers
    1: (4, 2, 2, 3, 2, 2),     # 16 * (0.75, 1.0, 1.25) -> 16, 16, 24; repeats 1 + (-1, 0, 1) -> 1, 1, 2
    2: (4, 2, 2, 3, 2, 3),     # 24 * 0.75 = 18 rounds to 16, under 90 % of 18, so 24
    3: (4, 2, 2, 3, 3, 3),
    4: (4, 2, 2, 3, 3, 3),
    5: (4, 2, 2, 3, 4, 3),     # 72, 96, 120 + 112
    6: (4, 2, 2, 3, 4, 3),     # 120, 160, 200 + 192
    7: (4, 2, 2, 3, 3, 2),     # repeats 1
}

CUSTOM = """\
format_version: 1
name: tiny
channel_divisor: 8
fixed: {resolution: 32, stem: 16, head: 0, dropout: 0.1, drop_path_rate: 0.0}
global: {activation: [relu, relu6, silu]}
defaults:
  op: [ds, mbconv6]
  kernel: [3, 5, 7]
  se: [0.0, 0.25]
  skip: [identity, none]
  filter_multipliers: [0.5, 1.0]
  layer_offsets: [0, 1]
blocks:
  - {out: 16, repeats: 1, stride: 1, filter_multipliers: [0.75, 1.0, 2.0]}
  - {out: 24, repeats: 2, stride: 2, kernel: [3], filters: [20, 24, 28], layers: [2, 4]}
  - {out: 40, repeats: 2, stride: 2, op: [conv, mbconv3, mbconv6], se: [0.5],
     skip: [pool], layer_offsets: [-5, 0], extra_filters: [48, 40]}
"""


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace.from_yaml(nas.config_path("mnasnet-space"))


@pytest.fixture()
def custom(tmp_path: Path) -> SearchSpace:
    path = tmp_path / "tiny.yaml"
    path.write_text(CUSTOM)
    return SearchSpace.from_yaml(path)


# ------------------------------------------------------------------------- derived from YAML


def test_custom_space_decisions_follow_the_yaml(custom: SearchSpace) -> None:
    names = [d.name for d in custom.decisions()]
    assert names == ["activation"] + [f"block{b}.{k}" for b in (1, 2, 3) for k in BLOCK_KEYS]
    choices = {d.name: d.choices for d in custom.decisions()}
    assert choices["activation"] == ("relu", "relu6", "silu")
    # Block 1: defaults, its own multipliers: 16 * 0.75 = 12 rounds to 16 (deduplicated), 32.
    assert choices["block1.op"] == ("ds", "mbconv6")
    assert choices["block1.kernel"] == (3, 5, 7)
    assert choices["block1.filters"] == (16, 32)
    assert choices["block1.layers"] == (1, 2)
    # Block 2: absolute filters and layers, a kernel override.
    assert choices["block2.kernel"] == (3,)
    assert choices["block2.filters"] == (20, 24, 28)
    assert choices["block2.layers"] == (2, 4)
    # Block 3: op, se and skip overrides; 0.5 * 40 = 20 rounds to 24; extras are merged, sorted.
    assert choices["block3.op"] == ("conv", "mbconv3", "mbconv6")
    assert choices["block3.se"] == (0.5,)
    assert choices["block3.skip"] == ("pool",)
    assert choices["block3.filters"] == (24, 40, 48)
    assert choices["block3.layers"] == (1, 2)  # 2 - 5 is raised to 1
    assert custom.sizes() == (3, 2, 3, 2, 2, 2, 2, 2, 1, 2, 2, 3, 2, 3, 3, 1, 1, 3, 2)
    assert custom.size() == math.prod(custom.sizes()) == 3 * 96 * 48 * 54
    assert [d.block for d in custom.decisions()] == [None] + [b for b in range(3) for _ in range(6)]
    assert all(d.size == len(d.choices) for d in custom.decisions())


def test_custom_space_decodes_to_its_values(custom: SearchSpace) -> None:
    last = tuple(d.size - 1 for d in custom.decisions())
    spec = custom.decode(last)
    assert spec.activation == "silu"
    assert (spec.stem, spec.head, spec.resolution, spec.dropout, spec.drop_path_rate) == (
        16, 0, 32, 0.1, 0.0)
    assert spec.bn_momentum == 0.01 and spec.bn_eps == 1e-3  # unset fixed values: spec defaults
    assert spec.stages == (
        StageSpec(op="mbconv", kernel=7, stride=1, out=32, repeats=2, expand=6, se=0.25,
                  skip="none"),
        StageSpec(op="mbconv", kernel=3, stride=2, out=28, repeats=4, expand=6, se=0.25,
                  skip="none"),
        StageSpec(op="mbconv", kernel=7, stride=2, out=48, repeats=2, expand=6, se=0.5,
                  skip="pool"),
    )
    first = custom.decode((0,) * len(last))
    assert first.activation == "relu"
    assert [(s.op, s.expand, s.kernel, s.out, s.repeats) for s in first.stages] == [
        ("ds", 1, 3, 16, 1), ("ds", 1, 3, 20, 2), ("conv", 1, 3, 24, 1)]
    assert custom.encode(first) == (0,) * len(last)


def test_default_space_shape(space: SearchSpace) -> None:
    assert space.name == "mnasnet"
    assert [d.name for d in space.decisions()][:7] == [
        "activation", "block1.op", "block1.kernel", "block1.se", "block1.skip",
        "block1.filters", "block1.layers"]
    expected = (2,) + tuple(n for b in range(1, 8) for n in DEFAULT_SIZES_PER_BLOCK[b])
    assert space.sizes() == expected
    assert space.size() == math.prod(expected)
    choices = {d.name: d.choices for d in space.decisions()}
    assert choices["block1.op"] == ("conv", "ds", "mbconv3", "mbconv6")
    assert choices["block5.filters"] == (72, 96, 112, 120)
    assert choices["block6.filters"] == (120, 160, 192, 200)
    assert choices["block4.layers"] == (3, 4, 5)
    # 432 choices a block in the paper; here blocks with extra widths have more.
    assert math.prod(DEFAULT_SIZES_PER_BLOCK[4]) == 432
    assert space.fixed["head"] == 1280 and space.fixed["stem"] == 32


# ------------------------------------------------------------------------- reference models


def test_efficientnet_b0_is_in_the_default_space_exactly(space: SearchSpace) -> None:
    b0 = nas.load_spec("efficientnet-b0")
    tokens = space.encode(b0)
    assert space.decode(tokens) == b0.replace(name="")
    assert space.contains(b0)


def test_mnasnet_a1_is_in_the_default_space(space: SearchSpace) -> None:
    a1 = nas.load_spec("mnasnet-a1")
    decoded = space.decode(space.encode(a1))
    assert decoded.same_architecture(a1)
    assert decoded == a1.replace(name="", drop_path_rate=space.fixed["drop_path_rate"])


def test_mobilenetv2_is_not_in_the_default_space(space: SearchSpace) -> None:
    v2 = nas.load_spec("mobilenetv2")
    assert not space.contains(v2)
    with pytest.raises(nas.SpaceError) as info:
        space.encode(v2)
    msg = str(info.value)
    assert "\n" not in msg
    assert "activation = 'relu6' is not one of ['relu', 'silu']" in msg
    # With SiLU it would be in the space (all its other choices are).
    assert space.contains(v2.replace(activation="silu"))


@pytest.mark.parametrize("change,fragment", [
    ({"stem": 24}, "stem is 24, the space fixes it to 32"),
    ({"head": 0}, "head is 0, the space fixes it to 1280"),
    ({"stem_stride": 1}, "stem_stride is 1"),
    ({"stages": "drop-last"}, "it has 6 stages, the space has 7 blocks"),
    ({"stages": "kernel7"}, "block3.kernel = 7 is not one of [3, 5]"),
    ({"stages": "stride1"}, "stage 2 stride is 1, the skeleton fixes 2"),
    ({"stages": "out100"}, "block5.filters = 100 is not one of [72, 96, 112, 120]"),
    ({"stages": "se0.5"}, "block1.se = 0.5 is not one of [0.0, 0.25]"),
    ({"stages": "mbconv4"}, "block4.op = 'mbconv4' is not one of"),
])
def test_encode_names_the_decision(space: SearchSpace, change: dict[str, Any], fragment: str) -> None:
    b0 = nas.load_spec("efficientnet-b0")
    stages = list(b0.stages)
    what = change.get("stages")
    if what == "drop-last":
        stages = stages[:-1]
    elif what == "kernel7":
        stages[2] = stages[2].replace(kernel=7)
    elif what == "stride1":
        stages[1] = stages[1].replace(stride=1)
    elif what == "out100":
        stages[4] = stages[4].replace(out=100)
    elif what == "se0.5":
        stages[0] = stages[0].replace(se=0.5)
    elif what == "mbconv4":
        stages[3] = stages[3].replace(expand=4)
    spec = b0.replace(**{k: v for k, v in change.items() if k != "stages"}, stages=tuple(stages))
    with pytest.raises(nas.SpaceError) as info:
        space.encode(spec)
    assert "\n" not in str(info.value)
    assert fragment in str(info.value)


# ------------------------------------------------------------------------- tokens


def test_encode_decode_round_trip_over_random_tokens(space: SearchSpace) -> None:
    rng = np.random.default_rng(0)
    sizes = space.sizes()
    seen = [set() for _ in sizes]
    for _ in range(3000):
        tokens = tuple(int(rng.integers(n)) for n in sizes)
        spec = space.decode(tokens)
        assert space.encode(spec) == tokens
        assert space.decode(np.array(tokens)) == spec  # numpy integers are accepted
        for i, t in enumerate(tokens):
            seen[i].add(t)
    assert all(len(s) == n for s, n in zip(seen, sizes))


def test_custom_space_round_trip(custom: SearchSpace) -> None:
    rng = np.random.default_rng(1)
    for _ in range(1000):
        tokens = custom.sample_tokens(rng)
        assert custom.encode(custom.decode(tokens)) == tokens


def test_sampling_is_reproducible_and_covers_every_choice(space: SearchSpace) -> None:
    a = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng1, rng2 = np.random.default_rng(11), np.random.default_rng(11)
    seq1 = [space.sample(rng1) for _ in range(50)]
    seq2 = [space.sample(rng2) for _ in range(50)]
    assert seq1 == seq2
    assert len(set(seq1)) == 50
    assert space.sample(np.random.default_rng(12)) != seq1[0]
    rng = np.random.default_rng(13)
    counts = [np.zeros(n, dtype=int) for n in space.sizes()]
    for _ in range(2000):
        for c, t in zip(counts, space.sample_tokens(rng)):
            c[t] += 1
    for c in counts:  # uniform: every choice near 2000 / n
        assert c.min() > 0.7 * 2000 / len(c)


def test_decode_rejects_bad_tokens(space: SearchSpace) -> None:
    n = len(space.decisions())
    good = (0,) * n
    with pytest.raises(nas.SpaceError, match=f"^{n - 1} tokens given; space 'mnasnet' has {n} "
                       "decisions$"):
        space.decode(good[:-1])
    with pytest.raises(nas.SpaceError, match="tokens given"):
        space.decode(good + (0,))
    for pos, bad in ((0, 2), (1, 4), (1, -1), (3, 1.0), (5, True), (6, "0")):
        tokens = list(good)
        tokens[pos] = bad
        name = space.decisions()[pos].name
        with pytest.raises(nas.SpaceError, match=rf"^token {bad!r} for {name} is out of range"):
            space.decode(tokens)


# ------------------------------------------------------------------------- identity


def test_to_dict_from_dict_round_trip_and_hash(space: SearchSpace, custom: SearchSpace) -> None:
    for s in (space, custom):
        again = SearchSpace.from_dict(s.to_dict())
        assert again == s
        assert again.hash() == s.hash() and hash(again) == hash(s)
        assert again.sizes() == s.sizes()
        assert len(s.hash()) == 16 and int(s.hash(), 16) >= 0
    assert space != custom and space.hash() != custom.hash()
    d = space.to_dict()
    d["blocks"][0]["out"] = 999  # a copy: the space is not changed through it
    assert space.to_dict()["blocks"][0]["out"] == 16
    # The hash covers the resolved choices: an equivalent definition hashes the same ...
    same = space.to_dict()
    same["blocks"][0]["filters"] = list(space.blocks[0].filters)  # the widths, given directly
    assert SearchSpace.from_dict(same).hash() == space.hash()
    # A choice listed twice is a typo, not an equivalent definition.
    twice = space.to_dict()
    twice["defaults"]["kernel"] = [3, 5, 3]
    with pytest.raises(nas.SpaceError, match=r"defaults\.kernel: 3 is listed twice in \[3, 5, 3\]"):
        SearchSpace.from_dict(twice)
    # ... and any real change hashes differently.
    other = space.to_dict()
    other["defaults"]["kernel"] = [3, 5, 7]
    assert SearchSpace.from_dict(other).hash() != space.hash()


def test_op_names() -> None:
    assert op_choice("mbconv6") == ("mbconv", 6)
    assert op_choice("mbconv12") == ("mbconv", 12)
    assert op_choice("ds") == ("ds", 1) and op_choice("conv") == ("conv", 1)
    assert op_name(StageSpec(op="mbconv", kernel=3, stride=1, out=8, repeats=1, expand=3)) == \
        "mbconv3"
    for bad in ("mbconv1", "mbconv", "foo", 6, None):
        with pytest.raises(nas.SpaceError):
            op_choice(bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- strict errors


def _default_dict() -> dict[str, Any]:
    return yaml.safe_load(nas.config_path("mnasnet-space").read_text())


def _set(d: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    return replaced(d, path, value)

BAD_SPACES = [
    ("colour", "blue", "colour", "unknown key"),
    ("defaults.kernels", [3], "defaults.kernels", "unknown key"),
    ("blocks.2.kernels", [3], "blocks[2].kernels", "unknown key"),
    ("fixed.colour", 1, "fixed.colour", "unknown key"),
    ("global.width", [1], "global.width", "unknown key"),
    ("defaults.kernel", [3, 4], "defaults.kernel", "kernel 4 is even"),
    ("blocks.2.kernel", [6], "blocks[2].kernel", "kernel 6 is even"),
    ("defaults.kernel", [3, "5"], "defaults.kernel", "'5' is not an integer"),
    ("defaults.op", ["ds", "mbconv1"], "defaults.op", "an mbconv needs expand >= 2"),
    ("defaults.op", ["foo"], "defaults.op", "unknown op choice 'foo'"),
    ("blocks.0.op", ["sepconv"], "blocks[0].op", "unknown op choice 'sepconv'"),
    ("defaults.skip", ["pool", "residual"], "defaults.skip", "unknown skip 'residual'"),
    ("defaults.se", [], "defaults.se", "expected a non-empty list"),
    ("defaults.se", 0.25, "defaults.se", "expected a non-empty list"),
    ("defaults.se", [0.0, 1.5], "defaults.se", "not a number in [0.0, 1.0]"),
    ("defaults.filter_multipliers", ["3e8"], "defaults.filter_multipliers", "YAML reads"),
    ("defaults.filter_multipliers", [0], "defaults.filter_multipliers", "not a number in"),
    ("defaults.layer_offsets", [0, 0.5], "defaults.layer_offsets", "not an integer offset"),
    ("defaults.layer_offsets", [], "defaults.layer_offsets", "expected a non-empty list"),
    ("global.activation", [], "global.activation", "expected a non-empty list"),
    ("global.activation", ["gelu"], "global.activation", "unknown activation 'gelu'"),
    ("blocks", [], "blocks", "expected a non-empty list"),
    ("blocks", DELETE, "blocks", "expected a non-empty list"),
    ("blocks.1", [24, 2, 2], "blocks[1]", "expected a mapping"),
    ("blocks.1.stride", 3, "blocks[1].stride", "use 1 or 2"),
    ("blocks.1.stride", True, "blocks[1].stride", "use 1 or 2"),
    ("blocks.1.out", DELETE, "blocks[1].out", "missing required key"),
    ("blocks.1.out", 0, "blocks[1].out", "not an integer >= 1"),
    ("blocks.1.repeats", 1.5, "blocks[1].repeats", "not an integer >= 1"),
    ("blocks.1.filters", [], "blocks[1].filters", "expected a non-empty list"),
    ("blocks.1.layers", [0], "blocks[1].layers", "not an integer >= 1"),
    ("blocks.4.extra_filters", [112.0], "blocks[4].extra_filters", "not an integer >= 1"),
    ("fixed.dropout", 2, "fixed: dropout", "use a rate in [0, 1)"),
    ("fixed.dropout", "3e8", "fixed: dropout", "got '3e8'"),
    ("fixed.resolution", 4, "fixed: resolution", ">= 8"),
    ("fixed.stem", 0, "fixed: stem", "positive"),
    ("fixed", [1], "fixed", "expected a mapping"),
    ("channel_divisor", 0, "channel_divisor", "positive integer"),
    ("format_version", 2, "format_version", "reads 1"),
    ("format_version", True, "format_version", "reads 1"),
    ("name", 3, "name", "expected a string"),
]


@pytest.mark.parametrize("change,value,key,fragment", BAD_SPACES,
                         ids=[f"{c}={v!r}" for c, v, _, _ in BAD_SPACES])
def test_bad_space_files_fail_on_one_line_naming_the_key(
        tmp_path: Path, change: str, value: Any, key: str, fragment: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(dump_yaml_text(_set(_default_dict(), change, value), sort_keys=False))
    with pytest.raises(nas.SpaceError) as info:
        SearchSpace.from_yaml(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: {key}"), msg
    assert fragment in msg, msg


def test_bad_space_file_syntax_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("blocks: [\n  {out: 16\n")
    with pytest.raises(nas.SpaceError) as info:
        SearchSpace.from_yaml(broken)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"{broken}: invalid YAML at line ")
    missing = tmp_path / "missing.yaml"
    with pytest.raises(nas.SpaceError, match="missing.yaml: file not found"):
        SearchSpace.from_yaml(missing)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(nas.SpaceError, match="empty.yaml: top level: expected a mapping"):
        SearchSpace.from_yaml(empty)


def test_minimal_space_uses_documented_defaults() -> None:
    space = SearchSpace.from_dict({"blocks": [{"out": 16, "repeats": 2, "stride": 1}]})
    assert space.name == "space"
    assert space.sizes() == (1, 1, 1, 1, 1, 1, 1)
    spec = space.decode((0,) * 7)
    assert spec.activation == "silu"
    assert spec.stages == (StageSpec(op="mbconv", kernel=3, stride=1, out=16, repeats=2,
                                     expand=6),)
    assert space.size() == 1
