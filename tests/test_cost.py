"""The torch-free cost model equals the built model exactly, and rounding follows the references.

Parameters are compared with the built model's ``numel`` sum; multiply-adds with
``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per MAC). Models are built and run on the
``meta`` device, which computes shapes but no numbers, so even B7 at 600x600 takes well under a
second.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import nas
from nas.arch.builder import build_model
from nas.arch.cost import (
    Cost,
    StageCost,
    conv_out_size,
    count,
    count_macs,
    count_params,
    stage_costs,
)
from nas.arch.rounding import round_filters, round_repeats, round_resolution, scale_spec
from nas.arch.spec import ACTIVATIONS, OPS, SKIPS, ArchSpec, StageSpec
from search_space import SearchSpace

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent

# (width, depth, resolution) of the published table (TF efficientnet_params).
EFFICIENTNET = {
    "efficientnet-b1": (1.0, 1.1, 240), "efficientnet-b2": (1.1, 1.2, 260),
    "efficientnet-b3": (1.2, 1.4, 300), "efficientnet-b4": (1.4, 1.8, 380),
    "efficientnet-b5": (1.6, 2.2, 456), "efficientnet-b6": (1.8, 2.6, 528),
    "efficientnet-b7": (2.0, 3.1, 600),
}

# REFERENCE.md: parameters for 1000 classes, multiply-adds in millions at the model's resolution.
PUBLISHED = {
    "efficientnet-b0": (5_288_548, 385.8), "efficientnet-b1": (7_794_184, 686.8),
    "efficientnet-b2": (9_109_994, 993.6), "efficientnet-b3": (12_233_232, 1_827.1),
    "efficientnet-b4": (19_341_616, 4_393.8), "efficientnet-b5": (30_389_784, 10_266.4),
    "efficientnet-b6": (43_040_704, 19_067.6), "efficientnet-b7": (66_347_960, 37_745.9),
    "mnasnet-a1": (3_887_038, 311.6), "mobilenetv2": (3_504_872, 300.8),
}


def reference_spec(name: str) -> ArchSpec:
    if name in EFFICIENTNET:
        return scale_spec(nas.load_spec("efficientnet-b0"), *EFFICIENTNET[name])
    return nas.load_spec(name)


def _drop_batch_norm(module: nn.Module) -> None:
    # Batch norm has no multiply-adds and FlopCounterMode ignores it, but on the meta device it
    # runs as a Python decomposition that takes 4x as long as everything else together.
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.Identity())
        else:
            _drop_batch_norm(child)


def torch_counts(spec: ArchSpec, resolution: int, num_classes: int = 1000,
                 in_channels: int = 3, keep_bn: bool = True) -> tuple[int, int]:
    """(parameters, forward MACs) of the built model, counted by torch on the meta device."""
    with torch.device("meta"):
        model = build_model(spec, num_classes=num_classes, in_channels=in_channels).eval()
        x = torch.empty(1, in_channels, resolution, resolution)
    params = sum(p.numel() for p in model.parameters())
    if not keep_bn:
        _drop_batch_norm(model)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(x)
    assert out.shape == (1, num_classes)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return params, flops // 2


# ------------------------------------------------------------------------- reference models


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_reference_models_match_torch_and_the_published_table(name: str) -> None:
    spec = reference_spec(name)
    params, macs = PUBLISHED[name]
    assert count_params(spec) == params
    assert round(count_macs(spec) / 1e6, 1) == macs
    torch_params, torch_macs = torch_counts(spec, spec.resolution)
    assert torch_params == count_params(spec)
    assert torch_macs == count_macs(spec)  # exact, not just within 0.5 %
    assert count(spec) == Cost(params, count_macs(spec))


def test_b0_at_other_resolutions_classes_and_channels() -> None:
    b0 = nas.load_spec("efficientnet-b0")
    for resolution, classes, channels in ((28, 10, 1), (32, 10, 3), (64, 100, 3), (97, 7, 1)):
        p, m = torch_counts(b0, resolution, classes, channels, keep_bn=False)
        assert count_params(b0, classes, channels) == p
        assert count_macs(b0, resolution, classes, channels) == m
    # Doubling the side quadruples the convolutions' MACs but not the classifier's or SE's (1x1).
    assert 3.98 < count_macs(b0, 448) / count_macs(b0, 224) < 4.0
    assert count_macs(b0) == count_macs(b0, 224) == count_macs(b0.replace(resolution=32), 224)


# ------------------------------------------------------------------------- random specs


def random_stage(rng: np.random.Generator) -> StageSpec:
    op = str(rng.choice(OPS))
    return StageSpec(
        op=op, kernel=int(rng.choice([1, 3, 5, 7])), stride=int(rng.integers(1, 3)),
        out=int(rng.integers(1, 96)), repeats=int(rng.integers(1, 4)),
        expand=int(rng.integers(2, 7)) if op == "mbconv" else 1,
        se=float(rng.choice([0.0, 0.25, 0.5, float(rng.random())])), skip=str(rng.choice(SKIPS)))


def random_spec(rng: np.random.Generator) -> ArchSpec:
    """Small specs outside the space: conv ops, pool skips with channel change, head 0."""
    return ArchSpec(stages=tuple(random_stage(rng) for _ in range(int(rng.integers(1, 6)))),
                    stem=int(rng.integers(1, 48)), stem_stride=int(rng.integers(1, 3)),
                    head=int(rng.choice([0, int(rng.integers(1, 400))])),
                    activation=str(rng.choice(ACTIVATIONS)))


RESOLUTIONS = (8, 17, 28, 32, 33, 64, 96, 224)
CLASSES = (1, 2, 10, 100, 1000)


def _settings(rng: np.random.Generator) -> tuple[int, int, int]:
    return (int(rng.choice(RESOLUTIONS)), int(rng.choice(CLASSES)), int(rng.choice([1, 3])))


def test_random_space_samples_match_torch() -> None:
    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    rng = np.random.default_rng(0)
    for _ in range(150):
        spec = space.sample(rng)
        resolution, classes, channels = _settings(rng)
        p, m = torch_counts(spec, resolution, classes, channels, keep_bn=False)
        assert count_params(spec, classes, channels) == p, spec
        assert count_macs(spec, resolution, classes, channels) == m, (spec, resolution)


def test_random_non_space_specs_match_torch() -> None:
    rng = np.random.default_rng(1)
    pool_with_projection = 0
    for _ in range(150):
        spec = random_spec(rng)
        pool_with_projection += any(s.skip == "pool" and c != s.out
                                    for s, c in zip(spec.stages, spec.stage_inputs()))
        resolution, classes, channels = _settings(rng)
        p, m = torch_counts(spec, resolution, classes, channels, keep_bn=False)
        assert count_params(spec, classes, channels) == p, spec
        assert count_macs(spec, resolution, classes, channels) == m, (spec, resolution)
    assert pool_with_projection > 30


@pytest.mark.parametrize("op,skip,stride,se", [
    ("conv", "pool", 2, 0.25), ("ds", "pool", 2, 0.0), ("mbconv", "pool", 1, 0.5),
    ("conv", "identity", 1, 1.0), ("mbconv", "none", 2, 0.25),
])
def test_each_op_and_skip_alone(op: str, skip: str, stride: int, se: float) -> None:
    expand = 4 if op == "mbconv" else 1
    spec = ArchSpec(stages=(StageSpec(op=op, kernel=5, stride=stride, out=24, repeats=3,
                                      expand=expand, se=se, skip=skip),), stem=16, head=0)
    for resolution in (15, 16):
        p, m = torch_counts(spec, resolution, 10, 1)
        assert (count_params(spec, 10, 1), count_macs(spec, resolution, 10, 1)) == (p, m)


# ------------------------------------------------------------------------- the model itself


def test_fast_totals_equal_the_per_stage_rows() -> None:
    """count / count_params / count_macs agree with the rows of stage_costs (what inspect prints)."""
    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    rng = np.random.default_rng(2)
    for i in range(3000):
        spec = space.sample(rng) if i % 2 else random_spec(rng)
        resolution, classes, channels = _settings(rng)
        rows = stage_costs(spec, resolution, classes, channels)
        params = sum(r.params for r in rows)
        macs = sum(r.macs for r in rows)
        assert count(spec, resolution, classes, channels) == Cost(params, macs)
        assert count_params(spec, classes, channels) == params
        assert count_macs(spec, resolution, classes, channels) == macs


def test_stage_rows() -> None:
    b0 = nas.load_spec("efficientnet-b0")
    rows = stage_costs(b0)
    assert all(isinstance(r, StageCost) for r in rows)
    assert [r.name for r in rows] == ["stem"] + [f"stage{i}" for i in range(1, 8)] + [
        "head", "classifier"]
    assert [r.index for r in rows] == list(range(10))
    assert [r.out_size for r in rows] == [112, 112, 56, 28, 14, 14, 7, 7, 7, 1]
    assert [(r.in_channels, r.out_channels) for r in rows[1:8]] == list(
        zip(b0.stage_inputs(), [s.out for s in b0.stages]))
    assert rows[0].params == 3 * 32 * 9 + 64 and rows[0].macs == 3 * 32 * 9 * 112 * 112
    assert rows[-1].params == 1280 * 1000 + 1000 and rows[-1].macs == 1280 * 1000
    assert rows[1].stage is b0.stages[0] and rows[0].stage is None
    headless = stage_costs(b0.replace(head=0), 32, 10, 1)
    assert [r.name for r in headless][-2:] == ["stage7", "classifier"]
    assert headless[-1].in_channels == 320


def test_conv_out_size_matches_padding_rule() -> None:
    for size in range(1, 40):
        for k in (1, 3, 5, 7):
            assert conv_out_size(size, k, 1) == size
            assert conv_out_size(size, k, 2) == (size + 1) // 2


def test_cost_model_does_not_import_torch() -> None:
    code = ("import sys, nas, nas.arch.cost\n"
            "s = nas.load_spec('efficientnet-b0')\n"
            "assert nas.count_params(s) == 5288548 and nas.count_macs(s) > 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ------------------------------------------------------------------------- rounding


@pytest.mark.parametrize("channels,multiplier,expected", [
    (32, 1.0, 32), (16, 1.0, 16), (1280, 1.0, 1280),
    (32, 1.1, 32), (16, 1.1, 16), (1280, 1.1, 1408), (320, 1.1, 352),   # B2
    (32, 1.2, 40), (1280, 1.2, 1536), (112, 1.2, 136),                 # B3
    (32, 1.4, 48), (1280, 1.4, 1792), (24, 1.4, 32),                   # B4
    (32, 1.6, 48), (1280, 1.6, 2048),                                  # B5
    (32, 1.8, 56), (1280, 1.8, 2304),                                  # B6
    (32, 2.0, 64), (1280, 2.0, 2560), (16, 2.0, 32),                   # B7
    # The 10 % rule: rounding to a multiple of 8 may not lose more than 10 %.
    (24, 0.75, 24),   # 18 -> 16 is under 16.2, so 24
    (27, 1.0, 32),    # 27 -> 24 is under 24.3, so 32
    (28, 1.0, 32),    # 28 + 4 rounds up
    (26, 1.0, 24),    # 24 is over 23.4: kept
    (19, 1.0, 24),    # 16 is under 17.1
    (20, 1.0, 24),
    (96, 0.75, 72), (160, 1.25, 200), (16, 0.75, 16),
    (4, 1.0, 8), (1, 0.5, 8), (0.1, 1.0, 8),  # never under the divisor
])
def test_round_filters(channels: float, multiplier: float, expected: int) -> None:
    got = round_filters(channels, multiplier)
    assert got == expected and type(got) is int
    assert got % 8 == 0 and got >= 0.9 * channels * multiplier


def test_round_filters_divisor_and_minimum() -> None:
    assert round_filters(10, 1.0, divisor=4) == 12
    assert round_filters(3, 1.0, divisor=1) == 3
    assert round_filters(3, 1.0, divisor=16) == 16
    assert round_filters(30, 1.0, divisor=16) == 32
    assert round_filters(4, 1.0, min_value=2) == 8    # 4 + 4 rounds up to 8
    assert round_filters(2, 1.0, min_value=2) == 2    # 2 + 4 rounds down to 0: the minimum
    rng = np.random.default_rng(3)
    for _ in range(2000):  # the rule's two promises, for any input
        c, m = float(rng.uniform(1, 2000)), float(rng.uniform(0.1, 3.0))
        r = round_filters(c, m)
        assert r % 8 == 0 and r >= 8 and r >= 0.9 * c * m and r <= c * m + 8


@pytest.mark.parametrize("bad", [(0, 1.0), (-8, 1.0), (32, 0.0), (32, -1.0)])
def test_round_filters_rejects_non_positive(bad: tuple[float, float]) -> None:
    with pytest.raises(nas.SpecError, match="must be positive"):
        round_filters(*bad)


@pytest.mark.parametrize("repeats,multiplier,expected", [
    (1, 1.0, 1), (3, 1.0, 3), (1, 1.1, 2), (2, 1.1, 3), (4, 1.1, 5),
    (10, 1.1, 11),   # 11.000000000000002 in floats: must not become 12
    (3, 1.2, 4), (5, 1.2, 6), (4, 1.4, 6), (3, 1.8, 6), (4, 2.2, 9), (1, 3.1, 4), (4, 3.1, 13),
    (3, 0.5, 2), (1, 0.1, 1),
])
def test_round_repeats(repeats: int, multiplier: float, expected: int) -> None:
    assert round_repeats(repeats, multiplier) == expected


@pytest.mark.parametrize("repeats,multiplier,expected", [
    (1, 1.0, 1), (1, 1.1, 1), (1, 1.49, 1), (1, 1.5, 2), (2, 1.25, 3), (2, 1.2, 2),
    (10, 1.15, 12),  # 11.5 rounds half up
    (4, 1.125, 5),   # 4.5, exactly half in floats
    (3, 0.1, 1),
])
def test_round_repeats_to_nearest(repeats: int, multiplier: float, expected: int) -> None:
    assert round_repeats(repeats, multiplier, "nearest") == expected
    with pytest.raises(nas.SpecError, match="rounding 'up'"):
        round_repeats(repeats, multiplier, "up")


@pytest.mark.parametrize("resolution,multiplier,multiple,expected", [
    (224, 1.0, 8, 224), (224, 1.15, 8, 256), (224, 1.15 ** 2, 8, 296), (224, 1.15, 32, 256),
    (224, 0.5, 8, 112), (28, 1.1, 8, 32), (10, 0.1, 8, 8), (225, 1.0, 1, 225), (300, 1.0, 32, 288),
])
def test_round_resolution(resolution: int, multiplier: float, multiple: int, expected: int) -> None:
    assert round_resolution(resolution, multiplier, multiple) == expected


def test_rounding_rejects_bad_multipliers() -> None:
    with pytest.raises(nas.SpecError):
        round_repeats(3, 0.0)
    with pytest.raises(nas.SpecError):
        round_resolution(224, -1.0)
    with pytest.raises(nas.SpecError):
        round_resolution(0, 1.0)


def test_scale_spec_resolves_b4() -> None:
    b4 = reference_spec("efficientnet-b4")
    assert (b4.stem, b4.head, b4.resolution) == (48, 1792, 380)
    assert [s.out for s in b4.stages] == [24, 32, 56, 112, 160, 272, 448]
    assert [s.repeats for s in b4.stages] == [2, 4, 4, 6, 6, 8, 2]
    assert b4.meta["scaling"]["width"] == 1.4 and b4.meta["scaling"]["base"] == "efficientnet-b0"
    # Scaling by 1 changes nothing but the record; head 0 stays 0.
    b0 = nas.load_spec("efficientnet-b0")
    assert scale_spec(b0) == b0
    assert scale_spec(b0.replace(head=0), 2.0).head == 0
