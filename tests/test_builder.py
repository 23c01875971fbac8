"""The builder interprets a spec exactly: golden parameter counts, shapes, gradients, skips."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

import nas
from nas.arch.builder import (
    DropPath,
    Layer,
    Model,
    SqueezeExcite,
    build_model,
    count_model_params,
    plan_layers,
)
from nas.arch.spec import ArchSpec, StageSpec

torch.set_num_threads(1)

# (width, depth, resolution) of the published B1-B7 table.
_EFFICIENTNET = {
    "efficientnet-b1": (1.0, 1.1, 240), "efficientnet-b2": (1.1, 1.2, 260),
    "efficientnet-b3": (1.2, 1.4, 300), "efficientnet-b4": (1.4, 1.8, 380),
    "efficientnet-b5": (1.6, 2.2, 456), "efficientnet-b6": (1.8, 2.6, 528),
    "efficientnet-b7": (2.0, 3.1, 600),
}

# Reference counts for 1000 classes and RGB input (see /work/shared/REFERENCE.md).
GOLDEN_PARAMS = {
    "efficientnet-b0": 5_288_548, "efficientnet-b1": 7_794_184,
    "efficientnet-b2": 9_109_994, "efficientnet-b3": 12_233_232,
    "efficientnet-b4": 19_341_616, "efficientnet-b5": 30_389_784,
    "efficientnet-b6": 43_040_704, "efficientnet-b7": 66_347_960,
    "mnasnet-a1": 3_887_038, "mobilenetv2": 3_504_872,
}


def _reference_spec(name: str) -> ArchSpec:
    if name in _EFFICIENTNET:
        return nas.scale_spec(nas.load_spec("efficientnet-b0"), *_EFFICIENTNET[name])
    return nas.load_spec(name)


def _tiny(op: str = "mbconv", skip: str = "identity", se: float = 0.25, stride: int = 2,
          **arch: object) -> ArchSpec:
    """Two stages: the first changes channels (and maybe resolution), the second keeps both."""
    expand = 2 if op == "mbconv" else 1
    stages = (
        StageSpec(op=op, kernel=3, stride=stride, out=16, repeats=2, expand=expand, se=se,
                  skip=skip),
        StageSpec(op=op, kernel=5, stride=1, out=16, repeats=2, expand=expand, se=se, skip=skip),
    )
    settings: dict[str, object] = {"stem": 8, "head": 32, "resolution": 32,
                                   "drop_path_rate": 0.0, "dropout": 0.0, **arch}
    return ArchSpec(stages=stages, **settings)


@pytest.mark.parametrize("name", list(GOLDEN_PARAMS))
def test_golden_param_counts(name: str) -> None:
    with torch.device("meta"):
        model = build_model(_reference_spec(name))
    assert count_model_params(model) == GOLDEN_PARAMS[name]


def test_classifier_starts_at_zero() -> None:
    # Every class starts at 1/C: the first loss is ln(C) whatever the body computes.
    torch.manual_seed(0)
    model = build_model(nas.load_spec("efficientnet-b0"), num_classes=10).train()
    assert not model.classifier.weight.any() and not model.classifier.bias.any()
    out = model(torch.randn(4, 3, 32, 32))
    loss = nn.functional.cross_entropy(out, torch.tensor([0, 1, 2, 3]))
    assert loss.item() == pytest.approx(math.log(10), rel=1e-6)


def test_b0_forward_shapes_rgb_and_grey() -> None:
    spec = nas.load_spec("efficientnet-b0")
    torch.manual_seed(0)
    rgb = build_model(spec, num_classes=10).eval()
    with torch.no_grad():
        out = rgb(torch.randn(2, 3, 64, 64))
        assert rgb.features(torch.randn(2, 3, 64, 64)).shape == (2, 1280, 2, 2)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()

    grey = build_model(spec, num_classes=10, in_channels=1).eval()
    assert grey.stem.conv.in_channels == 1
    with torch.no_grad():
        for size in (64, 28):  # 28x28 is Fashion-MNIST's native size
            out = grey(torch.randn(2, 1, size, size))
            assert out.shape == (2, 10)
            assert torch.isfinite(out).all()


def test_every_parameter_gets_a_gradient() -> None:
    stages = (
        StageSpec(op="conv", kernel=3, stride=1, out=8, repeats=1, se=0.25, skip="pool"),
        StageSpec(op="ds", kernel=3, stride=2, out=16, repeats=2, se=0.25, skip="pool"),
        StageSpec(op="mbconv", kernel=5, stride=2, out=24, repeats=2, expand=3, se=0.25),
    )
    spec = ArchSpec(stages=stages, stem=8, head=32, resolution=32, drop_path_rate=0.0,
                    dropout=0.0)
    torch.manual_seed(0)
    model = build_model(spec, num_classes=5).train()
    # The classifier starts at zero, so the body's first gradient is zero by design: give
    # the classifier weights first, as one training step would.
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.1)
    out = model(torch.randn(2, 3, 32, 32))
    nn.functional.cross_entropy(out, torch.tensor([1, 3])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("op,skip,se,stride", list(itertools.product(
    ("conv", "ds", "mbconv"), ("identity", "pool", "none"), (0.0, 0.25), (1, 2))))
def test_every_op_skip_se_stride(op: str, skip: str, se: float, stride: int) -> None:
    spec = _tiny(op, skip, se, stride, drop_path_rate=0.3)
    torch.manual_seed(0)
    model = build_model(spec, num_classes=7).train()
    # An odd size checks that pooled shortcuts and strided convs round the same way.
    x = torch.randn(2, 3, 17, 17)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    side = (17 + 1) // 2  # stem stride 2
    side = (side + stride - 1) // stride
    assert model.features(x).shape == (2, 32, side, side)

    layers = [m for m in model.modules() if isinstance(m, Layer)]
    assert len(layers) == 4
    for layer in layers:
        p = layer.plan
        assert ("se" in layer.body._modules) == (se > 0)
        if skip == "none" or (skip == "identity" and not p.shapes_match):
            assert layer.shortcut is None and layer.drop_path is None
        else:
            assert layer.shortcut is not None and layer.drop_path is not None
            assert layer.drop_path.rate == pytest.approx(0.3 * layers.index(layer) / 4)


def test_pool_skip_adds_pooled_projection() -> None:
    model = build_model(_tiny("conv", "pool", 0.0, 2))
    first, second = model.stages[0][0], model.stages[0][1]
    assert isinstance(first.shortcut.pool, nn.AvgPool2d)
    assert (first.shortcut.proj.conv.in_channels, first.shortcut.proj.conv.out_channels) == (8, 16)
    assert isinstance(second.shortcut, nn.Identity)

    # Without the shortcut the output would not depend on it; with it, it must (seen through
    # a classifier with weights: it starts at zero).
    model.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.1)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
        first.shortcut.proj.bn.bias.fill_(1.0)
        assert not torch.allclose(before, model(x))

    same_channels = build_model(_tiny("conv", "pool", 0.0, 1, stem=16))
    assert isinstance(same_channels.stages[0][0].shortcut, nn.Identity)
    no_proj = build_model(_tiny("conv", "pool", 0.0, 2, stem=16)).stages[0][0].shortcut
    assert list(no_proj._modules) == ["pool"]


def test_identity_and_none_skips() -> None:
    ident = build_model(_tiny("mbconv", "identity", 0.25, 2))
    assert ident.stages[0][0].shortcut is None  # 8 -> 16 channels, stride 2
    assert isinstance(ident.stages[0][1].shortcut, nn.Identity)
    none = build_model(_tiny("mbconv", "none", 0.25, 1))
    assert all(layer.shortcut is None for layer in none.modules() if isinstance(layer, Layer))


def test_drop_path_only_in_training_and_eval_is_deterministic() -> None:
    spec = _tiny("mbconv", "identity", 0.25, 1, drop_path_rate=0.9, stem=16, dropout=0.5)
    torch.manual_seed(0)
    model = build_model(spec).eval()
    plain = build_model(spec.replace(drop_path_rate=0.0, dropout=0.0)).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        a, b = model(x), model(x)
        assert torch.equal(a, b)
        assert torch.allclose(a, plain(x))

    drop = DropPath(0.5).train()
    torch.manual_seed(1)
    y = drop(torch.ones(64, 3, 2, 2))
    per_sample = y.flatten(1)
    # Each sample is either dropped whole or scaled by 1 / keep.
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert all(len(row.unique()) == 1 for row in per_sample)
    assert torch.equal(drop.eval()(y), y)


def test_drop_path_rates_follow_linear_rule() -> None:
    spec = nas.load_spec("efficientnet-b0")
    plans = plan_layers(spec)
    assert len(plans) == spec.num_layers == 16
    assert [p.drop_path for p in plans] == pytest.approx([0.2 * i / 16 for i in range(16)])
    with torch.device("meta"):
        model = build_model(spec)
    rates = [m.drop_path.rate for m in model.modules() if isinstance(m, Layer)
             if m.drop_path is not None]
    # Only the layers with a residual (stride 1, equal channels) carry drop path.
    assert rates == pytest.approx([0.2 * i / 16 for i in (2, 4, 6, 7, 9, 10, 12, 13, 14)])


def test_layer_details_follow_the_spec() -> None:
    spec = nas.load_spec("efficientnet-b0")
    with torch.device("meta"):
        model = build_model(spec)
    assert isinstance(model, Model)
    layer = model.stages[1][0]  # 16 -> 24, expand 6
    assert layer.body.expand.conv.out_channels == 96
    assert layer.body.se.reduce.out_channels == 4  # int(16 * 0.25): the layer input, not 96
    assert layer.body.depthwise.conv.stride == (2, 2)
    assert model.stages[1][1].body.depthwise.conv.stride == (1, 1)
    assert model.stages[2][0].body.depthwise.conv.padding == (2, 2)
    assert model.stages[0][0].body.se.reduce.out_channels == 8  # ds: int(32 * 0.25)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bn.momentum == 0.01 and bn.eps == 1e-3 for bn in bns)
    assert isinstance(model.stem.act, nn.SiLU)
    assert model.dropout.p == 0.2
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    se_convs = {id(conv) for se in model.modules() if isinstance(se, SqueezeExcite)
                for conv in (se.reduce, se.expand)}
    assert all((c.bias is not None) == (id(c) in se_convs) for c in convs)


def test_head_zero_has_no_head_conv() -> None:
    spec = _tiny("ds", "identity", 0.0, 2, head=0)
    model = build_model(spec, num_classes=3).eval()
    assert isinstance(model.head, nn.Identity)
    assert model.classifier.in_features == 16
    with torch.no_grad():
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 3)
    with_head = build_model(spec.replace(head=32), num_classes=3)
    head_params = 16 * 32 + 2 * 32 + (32 - 16) * 3  # conv, BN, wider classifier
    assert count_model_params(with_head) - count_model_params(model) == head_params
