"""Specs round-trip through their dict and YAML forms, and bad specs fail with one-line errors."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from dictpath import DELETE, replaced

import nas
from nas.arch.spec import (
    ACTIVATIONS,
    OPS,
    SKIPS,
    ArchSpec,
    StageSpec,
    spec_from_dict,
    spec_to_dict,
)
from nas.core.files import dump_yaml_text  # quotes strings that read as numbers
from search_space import SearchSpace

BUNDLED_SPECS = ("efficientnet-b0", "mnasnet-a1", "mobilenetv2")

# Names YAML would read as something else if they were not quoted on the way out.
_AWKWARD_NAMES = ("", "b0", "yes", "null", "3e8", "1.0", "a: b", "# not a comment", "ünïcode",
                  "- dash", "'quoted'", "multi word name", "~")


def _random_meta(rng: np.random.Generator, depth: int = 0) -> Any:
    kind = int(rng.integers(8 if depth < 3 else 6))
    if kind == 0:
        return int(rng.integers(-10**12, 10**12))
    if kind == 1:
        return float(rng.normal() * 10.0 ** int(rng.integers(-8, 9)))
    if kind == 2:
        return str(rng.choice(_AWKWARD_NAMES))
    if kind == 3:
        return bool(rng.integers(2))
    if kind == 4:
        return None
    if kind == 5:
        return float(rng.choice([0.0, 1e-300, 3e8, -2.5]))
    if kind == 6:
        return [_random_meta(rng, depth + 1) for _ in range(int(rng.integers(4)))]
    return {f"k{i}": _random_meta(rng, depth + 1) for i in range(int(rng.integers(4)))}


def random_stage(rng: np.random.Generator) -> StageSpec:
    """Any valid stage, well outside what the search space offers."""
    op = str(rng.choice(OPS))
    se_kind = int(rng.integers(4))
    se = (0.0, 0.25, 1.0, float(rng.random()))[se_kind]
    return StageSpec(
        op=op, kernel=int(rng.choice([1, 3, 5, 7, 9, 11])), stride=int(rng.integers(1, 3)),
        out=int(rng.integers(1, 600)), repeats=int(rng.integers(1, 9)),
        expand=int(rng.integers(2, 10)) if op == "mbconv" else 1, se=se,
        skip=str(rng.choice(SKIPS)))


def random_spec(rng: np.random.Generator, meta: bool = True) -> ArchSpec:
    """Any valid spec: any number of stages, every op and skip, head 0, odd kernels, meta."""
    spec = ArchSpec(
        stages=tuple(random_stage(rng) for _ in range(int(rng.integers(1, 10)))),
        stem=int(rng.integers(1, 129)),
        head=int(rng.choice([0, int(rng.integers(1, 2049))])),
        activation=str(rng.choice(ACTIVATIONS)),
        resolution=int(rng.integers(8, 700)),
        dropout=float(rng.choice([0.0, 0.2, float(rng.random()) * 0.999])),
        drop_path_rate=float(rng.choice([0.0, float(rng.random()) * 0.999])),
        bn_momentum=float(rng.choice([0.01, 0.1, 1.0, float(rng.uniform(1e-6, 1.0))])),
        bn_eps=float(10.0 ** rng.uniform(-8, -1)),
        stem_stride=int(rng.integers(1, 3)),
        name=str(rng.choice(_AWKWARD_NAMES)),
    )
    if meta and rng.random() < 0.7:
        spec = spec.with_meta(**{f"m{i}": _random_meta(rng) for i in range(int(rng.integers(1, 4)))})
    return spec


def _space_sample(seed: int) -> ArchSpec:
    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    return space.sample(np.random.default_rng(seed))


def _assert_same(a: ArchSpec, b: ArchSpec) -> None:
    assert b == a
    assert hash(b) == hash(a)
    assert dict(b.meta) == dict(a.meta)  # meta is not part of equality; check it separately


# ------------------------------------------------------------------------- round trips


def test_dict_round_trip_of_random_specs() -> None:
    rng = np.random.default_rng(1)
    for _ in range(3000):
        spec = random_spec(rng)
        _assert_same(spec, spec_from_dict(spec_to_dict(spec)))


def test_dict_round_trip_of_space_samples() -> None:
    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    rng = np.random.default_rng(2)
    for _ in range(2000):
        spec = space.sample(rng)
        _assert_same(spec, spec_from_dict(spec_to_dict(spec)))


def test_yaml_file_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    path = tmp_path / "spec.yaml"
    for i in range(300):
        spec = random_spec(rng) if i % 2 else space.sample(rng).with_meta(trial=i, score=0.1 * i)
        assert nas.save_spec(spec, path) == path
        _assert_same(spec, nas.load_spec(path))
    # The atomic writer leaves no temporary files behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_meta_survives_and_is_not_identity(tmp_path: Path) -> None:
    base = nas.load_spec("efficientnet-b0")
    meta = {"parent": "efficientnet-b0", "scores": [0.5, 0.25], "nested": {"a": None, "b": True},
            "big": 3e8, "tiny": 1e-300, "text": "yes"}
    spec = base.with_meta(**meta)
    assert spec == base and hash(spec) == hash(base)
    loaded = nas.load_spec(nas.save_spec(spec, tmp_path / "m.yaml"))
    assert dict(loaded.meta) == meta
    # Tuples and numpy scalars are written as plain YAML lists and numbers.
    odd = base.with_meta(shape=(1, 2), value=np.float64(0.5), count=np.int64(7))
    again = nas.load_spec(nas.save_spec(odd, tmp_path / "odd.yaml"))
    assert dict(again.meta) == {"shape": [1, 2], "value": 0.5, "count": 7}
    assert type(again.meta["count"]) is int


def test_scaled_spec_round_trips_with_its_scaling_record(tmp_path: Path) -> None:
    b3 = nas.scale_spec(nas.load_spec("efficientnet-b0"), 1.2, 1.4, 300)
    loaded = nas.load_spec(nas.save_spec(b3, tmp_path / "b3.yaml"))
    _assert_same(b3, loaded)
    assert loaded.meta["scaling"] == {"width": 1.2, "depth": 1.4, "resolution": 300,
                                      "base_resolution": 224, "divisor": 8,
                                      "base": "efficientnet-b0"}


def test_saved_yaml_is_plain_and_ordered(tmp_path: Path) -> None:
    spec = nas.load_spec("mnasnet-a1")
    text = nas.save_spec(spec, tmp_path / "a1.yaml").read_text()
    assert text.startswith("format_version: 1\nname: mnasnet-a1\n")
    assert "!!" not in text  # no Python-specific tags
    assert yaml.safe_load(text) == spec_to_dict(spec)


# ------------------------------------------------------------------------- bundled configs


@pytest.mark.parametrize("name", BUNDLED_SPECS)
def test_bundled_specs_load_by_path_and_by_name(name: str) -> None:
    path = nas.config_path(name)
    assert path.is_file() and path.name == f"{name}.yaml"
    assert nas.config_path(f"{name}.yaml") == path
    by_path, by_name = nas.load_spec(path), nas.load_spec(name)
    assert by_path == by_name and by_path.name == name
    assert spec_from_dict(yaml.safe_load(path.read_text())) == by_name


def test_bundled_values() -> None:
    b0 = nas.load_spec("efficientnet-b0")
    assert [(s.op, s.kernel, s.stride, s.expand, s.out, s.repeats) for s in b0.stages] == [
        ("ds", 3, 1, 1, 16, 1), ("mbconv", 3, 2, 6, 24, 2), ("mbconv", 5, 2, 6, 40, 2),
        ("mbconv", 3, 2, 6, 80, 3), ("mbconv", 5, 1, 6, 112, 3), ("mbconv", 5, 2, 6, 192, 4),
        ("mbconv", 3, 1, 6, 320, 1)]
    assert all(s.se == 0.25 and s.skip == "identity" for s in b0.stages)
    assert (b0.stem, b0.head, b0.activation, b0.bn_momentum, b0.bn_eps) == (
        32, 1280, "silu", 0.01, 1e-3)
    assert nas.load_spec("mobilenetv2").activation == "relu6"
    a1 = nas.load_spec("mnasnet-a1")
    assert a1.activation == "relu" and a1.stages[0].skip == "none"


def test_unknown_bundled_name() -> None:
    with pytest.raises(nas.ConfigError, match="no bundled config named 'nope'; known: .*"
                       "efficientnet-b0"):
        nas.config_path("nope")
    with pytest.raises(nas.SpecError, match="nope: no such file and no bundled spec of that name; bundled specs: efficientnet-b0"):
        nas.load_spec("nope")


# ------------------------------------------------------------------------- strict errors


def _good() -> dict[str, Any]:
    return spec_to_dict(nas.load_spec("efficientnet-b0"))


def _bad(key_path: str, value: Any) -> dict[str, Any]:
    """The B0 dict with one value replaced (``stages.2.kernel``) or, for ``DELETE``, removed."""
    return replaced(_good(), key_path, value)

# (change, the key the message must name, a fragment of the explanation)
BAD_SPECS = [
    ("colour", "blue", "colour", "unknown key"),
    ("stages.1.colour", "blue", "stages[1].colour", "unknown key"),
    ("stages.2.kernel", 4, "stages[2].kernel", "odd integer"),
    ("stages.2.kernel", 0, "stages[2].kernel", "odd integer"),
    ("stages.2.kernel", "3", "stages[2].kernel", "expected an integer"),
    ("stages.2.kernel", 3.0, "stages[2].kernel", "expected an integer"),
    ("stages.0.stride", 3, "stages[0].stride", "use 1 or 2"),
    ("stages.0.stride", True, "stages[0].stride", "expected an integer"),
    ("stages.1.expand", 1, "stages[1].expand", "expand >= 2"),
    ("stages.0.expand", 6, "stages[0].expand", "takes no expansion"),
    ("stages.0.se", 1.5, "stages[0].se", "[0, 1]"),
    ("stages.0.se", -0.25, "stages[0].se", "[0, 1]"),
    ("stages.0.se", ".25", "stages[0].se", "expected a number"),
    ("stages.0.op", "sep", "stages[0].op", "unknown op"),
    ("stages.0.skip", "residual", "stages[0].skip", "unknown skip"),
    ("stages.3.out", 0, "stages[3].out", "positive integer"),
    ("stages.3.repeats", 0, "stages[3].repeats", "integer >= 1"),
    ("stages.3.repeats", DELETE, "stages[3].repeats", "missing required key"),
    ("stages.3", [1, 2], "stages[3]", "expected a mapping"),
    ("dropout", "3e8", "dropout", "expected a number (YAML reads 3e8 as a string"),
    ("dropout", 1.0, "dropout", "[0, 1)"),
    ("drop_path_rate", -0.1, "drop_path_rate", "[0, 1)"),
    ("bn_eps", 0.0, "bn_eps", "positive"),
    ("bn_momentum", 0, "bn_momentum", "(0, 1]"),
    ("resolution", 4, "resolution", ">= 8"),
    ("resolution", "224", "resolution", "expected an integer"),
    ("stem", 0, "stem", "positive integer"),
    ("stem_stride", 4, "stem_stride", "use 1 or 2"),
    ("head", -1, "head", "0 for no head"),
    ("activation", "gelu", "activation", "unknown activation"),
    ("name", 7, "name", "expected a string"),
    ("meta", [1], "meta", "expected a mapping"),
    ("format_version", 2, "format_version", "reads format_version 1"),
    ("format_version", "1", "format_version", "reads format_version 1"),
    ("format_version", True, "format_version", "reads format_version 1"),
    ("stages", DELETE, "stages", "missing required key"),
    ("stages", [], "stages", "at least one stage"),
    ("stages", "ds_r1_k3_s1_c16", "stages", "list of stage mappings"),
]


@pytest.mark.parametrize("change,value,key,fragment", BAD_SPECS,
                         ids=[f"{c}={v!r}" for c, v, _, _ in BAD_SPECS])
def test_bad_spec_files_fail_on_one_line_naming_file_and_key(
        tmp_path: Path, change: str, value: Any, key: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(dump_yaml_text(_bad(change, value), sort_keys=False))
    with pytest.raises(nas.SpecError) as info:
        nas.load_spec(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: {key}: "), msg
    assert fragment in msg, msg
    # The dict form (no file) names the key the same way.
    with pytest.raises(nas.SpecError) as info:
        spec_from_dict(_bad(change, value))
    assert str(info.value).startswith(f"{key}: ")


def test_string_number_from_yaml_text(tmp_path: Path) -> None:
    # Written by hand, as a user would. Spec files read numbers as YAML 1.2 does: 3e8 (no
    # dot) is a number (PyYAML alone would read a string); a quoted '3e8' is a string.
    text = nas.config_path("efficientnet-b0").read_text()
    path = tmp_path / "typo.yaml"
    path.write_text(text.replace("dropout: 0.2", "dropout: 3e8"))
    with pytest.raises(nas.SpecError, match=r"typo\.yaml: dropout: got 300000000\.0; .*\[0, 1\)"):
        nas.load_spec(path)
    path.write_text(text.replace("dropout: 0.2", "dropout: '3e8'"))
    with pytest.raises(nas.SpecError, match=r"typo\.yaml: dropout: got '3e8'; expected a number"):
        nas.load_spec(path)
    path.write_text(text.replace("dropout: 0.2", "dropout: 2e-1"))
    assert nas.load_spec(path).dropout == 0.2


def test_invalid_yaml_and_missing_and_empty_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("stages: [\n  {op: ds, kernel: 3\n")
    with pytest.raises(nas.SpecError) as info:
        nas.load_spec(broken)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{broken}: invalid YAML at line ")

    missing = tmp_path / "missing.yaml"
    with pytest.raises(nas.SpecError) as info:
        nas.load_spec(missing)
    assert str(info.value) == f"{missing}: file not found; check the path"

    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(nas.SpecError, match=r"empty\.yaml: top level: the spec is empty"):
        nas.load_spec(empty)

    binary = tmp_path / "weights.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\x00")
    with pytest.raises(nas.SpecError) as info:
        nas.load_spec(binary)
    assert str(info.value) == (f"{binary}: not UTF-8 text (bad byte at offset 0); "
                               "is this the right file?")

    a_list = tmp_path / "list.yaml"
    a_list.write_text("- 1\n- 2\n")
    with pytest.raises(nas.SpecError, match="top level: expected a mapping, got list"):
        nas.load_spec(a_list)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(nas.SpecError, match=r"^stage\.kernel: "):
        StageSpec(op="mbconv", kernel=4, stride=1, out=16, repeats=1, expand=6)
    with pytest.raises(nas.SpecError, match=r"^stage\.expand: "):
        StageSpec(op="mbconv", kernel=3, stride=1, out=16, repeats=1)
    with pytest.raises(nas.SpecError, match=r"^stages: "):
        ArchSpec(stages=())
    with pytest.raises(nas.SpecError, match=r"^stages\[0\]: expected a StageSpec"):
        ArchSpec(stages=({"op": "ds"},))  # type: ignore[arg-type]
    stage = StageSpec(op="ds", kernel=3, stride=1, out=16, repeats=1)
    with pytest.raises(nas.SpecError, match=r"^dropout: "):
        ArchSpec(stages=(stage,), dropout=math.nan)
    with pytest.raises(nas.SpecError, match=r"^stage\.se: "):
        stage.replace(se=math.inf)
    # Specs are immutable: a change is a new spec.
    with pytest.raises(AttributeError):
        stage.out = 8  # type: ignore[misc]


def test_spec_helpers() -> None:
    b0 = nas.load_spec("efficientnet-b0")
    assert b0.num_layers == 16
    assert b0.stage_inputs() == (32, 16, 24, 40, 80, 112, 192)
    a1 = nas.load_spec("mnasnet-a1")
    assert a1.same_architecture(a1.replace(name="x", resolution=96, dropout=0.0))
    assert not a1.same_architecture(a1.replace(activation="silu"))
    assert _space_sample(0) == _space_sample(0)
