"""The exact timm form against the real timm: timm's own decoder and EfficientNet class build
what nas.to_timm writes into this project's network (same parameter count, same state-dict
shapes, the same outputs after the key map, both ways), and timm's own definitions of
EfficientNet-B0, MnasNet-A1 and MobileNetV2 take the bundled specs' weights."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from timm_import import import_timm

import nas
from nas.arch.spec import ArchSpec, StageSpec
from nas.arch.timm_export import timm_state_shapes
from search_space import SearchSpace

pytestmark = pytest.mark.slow

timm, WHY = import_timm()
if timm is None:
    pytest.skip(WHY, allow_module_level=True)

import torch  # noqa: E402
from timm.models._efficientnet_builder import decode_arch_def  # noqa: E402
from timm.models.efficientnet import EfficientNet  # noqa: E402

ATOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Small networks: one thread is many times faster than two on a busy 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def timm_model(spec: ArchSpec, num_classes: int, in_channels: int) -> torch.nn.Module:
    """Built from nas.to_timm's output with timm's own API only (no helper of this project)."""
    arch = nas.to_timm(spec)
    return EfficientNet(decode_arch_def(arch.arch_def_list()), num_classes=num_classes,
                        in_chans=in_channels,
                        norm_layer=partial(torch.nn.BatchNorm2d, eps=arch.bn_eps,
                                           momentum=arch.bn_momentum), **arch.kwargs)


def scramble(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every weight and batch-norm statistic random (so a swapped key cannot hide)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.3)
    return model.eval()


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def outputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def check_same_network(spec: ArchSpec, seed: int, num_classes: int = 10, in_channels: int = 3,
                       size: int = 32) -> None:
    ours = scramble(nas.build_model(spec, num_classes=num_classes, in_channels=in_channels), seed)
    theirs = timm_model(spec, num_classes, in_channels).eval()
    assert n_params(theirs) == n_params(ours) == nas.count_params(spec, num_classes, in_channels)
    shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert shapes == timm_state_shapes(spec, num_classes, in_channels)
    x = torch.randn(2, in_channels, size, size, generator=torch.Generator().manual_seed(seed))
    # Ours -> timm.
    theirs.load_state_dict(nas.timm_state_dict(ours, spec))
    torch.testing.assert_close(outputs(theirs, x), outputs(ours, x), atol=ATOL, rtol=0)
    # timm -> ours, from other random weights.
    scramble(theirs, seed + 1)
    back = nas.build_model(spec, num_classes=num_classes, in_channels=in_channels).eval()
    back.load_state_dict(nas.from_timm_state_dict(theirs, spec))
    torch.testing.assert_close(outputs(back, x), outputs(theirs, x), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["efficientnet-b0", "mnasnet-a1", "mobilenetv2"])
def test_bundled_specs_build_in_timm(name: str) -> None:
    check_same_network(nas.load_spec(name), seed=1, num_classes=1000, size=64)
    # The helper builds the same thing and loads the weights.
    spec = nas.load_spec(name)
    ours = scramble(nas.build_model(spec), 3)
    helper = nas.build_timm_model(spec, weights=ours).eval()
    x = torch.randn(1, 3, 48, 48)
    torch.testing.assert_close(outputs(helper, x), outputs(ours, x), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name,timm_name", [("efficientnet-b0", "efficientnet_b0"),
                                            ("mnasnet-a1", "semnasnet_100"),
                                            ("mobilenetv2", "mobilenetv2_100")])
def test_timms_own_definitions_take_the_bundled_weights(name: str, timm_name: str) -> None:
    spec = nas.load_spec(name)
    ours = scramble(nas.build_model(spec), 5)
    theirs = timm.create_model(timm_name, pretrained=False, bn_eps=spec.bn_eps,
                               bn_momentum=spec.bn_momentum).eval()
    assert n_params(theirs) == n_params(ours)
    theirs.load_state_dict(nas.timm_state_dict(ours, spec))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(outputs(theirs, x), outputs(ours, x), atol=ATOL, rtol=0)


def repaired(spec: ArchSpec) -> ArchSpec:
    """The child with what timm cannot express replaced: pool -> identity, SE off on convs."""
    return spec.replace(stages=tuple(
        s.replace(skip="identity" if s.skip == "pool" else s.skip,
                  se=0.0 if s.op == "conv" else s.se) for s in spec.stages))


def test_random_children_of_the_default_space() -> None:
    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    rng = np.random.default_rng(2024)
    built = refused = 0
    for i in range(24):
        child = space.sample(rng)
        for spec in (child, repaired(child)):
            try:
                nas.to_timm(spec)
            except nas.SpecError as e:
                assert "\n" not in str(e) and str(e).startswith("timm cannot express stage")
                refused += 1
                continue
            check_same_network(spec, seed=i, size=32)
            built += 1
    assert built >= 24 and refused > 0, (built, refused)


def test_random_small_networks_with_odd_widths() -> None:
    """Widths that are not multiples of 8 and any SE ratio: the squeeze widths timm rounds
    differently, ir widths it would round, the cn skip flag, no head; built or refused."""
    rng = np.random.default_rng(11)
    built, reasons = 0, set()
    for i in range(80):
        stages = []
        for _ in range(int(rng.integers(1, 5))):
            op = str(rng.choice(["conv", "ds", "mbconv"]))
            stages.append(StageSpec(
                op=op, kernel=int(rng.choice([1, 3, 5])), stride=int(rng.integers(1, 3)),
                out=int(rng.integers(1, 40)), repeats=int(rng.integers(1, 4)),
                expand=int(rng.integers(2, 7)) if op == "mbconv" else 1,
                se=(0.0, 0.25, float(rng.random()))[int(rng.integers(3))],
                skip=str(rng.choice(["identity", "none", "pool"]))))
        spec = ArchSpec(stages=tuple(stages), stem=int(8 * rng.integers(1, 5)),
                        head=int(rng.choice([0, 16, 40])),
                        activation=str(rng.choice(["relu", "relu6", "silu"])),
                        bn_eps=float(rng.choice([1e-5, 1e-3])))
        try:
            nas.to_timm(spec)
        except nas.SpecError as e:
            assert "\n" not in str(e)
            reasons.add(str(e).split(": ")[1].split(" ")[0])
            continue
        check_same_network(spec, seed=100 + i, num_classes=7, in_channels=2, size=33)
        built += 1
    assert built >= 5, built
    assert reasons >= {"skip", "squeeze-excite", "timm"}, reasons


def test_a_deep_stride_keeps_its_strides_in_timm() -> None:
    stages = tuple(StageSpec(op="ds", kernel=3, stride=2, out=16, repeats=1) for _ in range(6))
    spec = ArchSpec(stages=stages, stem=8, head=0)
    check_same_network(spec, seed=9, size=128)


def test_rewritten_squeeze_ratios_and_cn_skips_build_the_same_network() -> None:
    # 14 * 0.25 = 3.5 (int 3, round 4): written as se0.2; 12 and 20 at 0.3 need one ratio.
    spec = ArchSpec(stages=(
        StageSpec(op="ds", kernel=3, stride=1, out=16, repeats=1, se=0.25),
        StageSpec(op="ds", kernel=3, stride=1, out=20, repeats=2, se=0.3),
        StageSpec(op="conv", kernel=3, stride=1, out=20, repeats=2, skip="identity"),
        StageSpec(op="conv", kernel=3, stride=2, out=24, repeats=2, skip="none"),
        StageSpec(op="mbconv", kernel=5, stride=1, out=24, repeats=2, expand=3, se=0.3),
    ), stem=14, head=32, activation="silu")
    strings = nas.to_timm(spec).block_strings
    assert strings[0] == "ds_r1_k3_s1_c16_se0.2" and strings[1] != "ds_r2_k3_s1_c20_se0.3"
    assert strings[2].endswith("_skip") and not strings[3].endswith("skip")
    check_same_network(spec, seed=4, size=24)
