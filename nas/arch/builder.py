"""Interpret an :class:`~nas.arch.spec.ArchSpec` as a ``torch.nn.Module``.

The builder decides nothing: every channel count, stride, kernel, op, skip and rate comes
from the spec (see :mod:`nas.arch.spec` for the exact semantics). It first turns the spec into a
flat tuple of :class:`~nas.arch.plan.LayerPlan` records, one per layer
(:func:`nas.arch.plan.plan_layers`, torch-free), and then makes one module per plan.

Layout: ``stem`` (conv + BN + act) -> ``stages[i][j]`` (:class:`Layer`) -> ``head`` (1x1 conv
+ BN + act, or nothing when ``spec.head == 0``) -> global average pool -> ``dropout`` ->
``classifier``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
import torch
from torch import nn

from nas.arch.plan import LayerPlan, plan_layers
from nas.arch.spec import ArchSpec

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU}


class ConvBN(nn.Sequential):
    """``k x k`` convolution without bias, batch norm, and an activation unless ``act`` is None."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, spec: ArchSpec,
                 groups: int = 1, act: bool = True) -> None:
        parts: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, groups=groups,
                           bias=False),
            bn=nn.BatchNorm2d(out_ch, eps=spec.bn_eps, momentum=spec.bn_momentum),
        )
        if act:
            parts["act"] = _ACTIVATIONS[spec.activation](inplace=True)
        super().__init__(parts)


class SqueezeExcite(nn.Module):
    """Channel gating: pool, reduce (with bias), activation, expand (with bias), sigmoid."""

    def __init__(self, channels: int, squeeze: int, activation: str) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1, bias=True)
        self.act = _ACTIVATIONS[activation](inplace=True)
        self.expand = nn.Conv2d(squeeze, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


class DropPath(nn.Module):
    """Stochastic depth: zero the whole branch per sample while training, rescale the rest."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4f}"


def _body(plan: LayerPlan, spec: ArchSpec) -> nn.Sequential:
    k, s, c_in, c_out = plan.kernel, plan.stride, plan.in_channels, plan.out_channels
    parts: OrderedDict[str, nn.Module] = OrderedDict()
    if plan.op == "conv":
        parts["conv"] = ConvBN(c_in, c_out, k, s, spec)
        gated = c_out
    elif plan.op == "ds":
        parts["depthwise"] = ConvBN(c_in, c_in, k, s, spec, groups=c_in)
        gated = c_in
    else:  # mbconv (the spec rejects any other op)
        mid = c_in * plan.expand
        parts["expand"] = ConvBN(c_in, mid, 1, 1, spec)
        parts["depthwise"] = ConvBN(mid, mid, k, s, spec, groups=mid)
        gated = mid
    if plan.se > 0:
        parts["se"] = SqueezeExcite(gated, plan.se_channels, spec.activation)
    if plan.op == "ds":
        parts["pointwise"] = ConvBN(c_in, c_out, 1, 1, spec, act=False)
    elif plan.op == "mbconv":
        parts["project"] = ConvBN(gated, c_out, 1, 1, spec, act=False)
    return nn.Sequential(parts)


def _shortcut(plan: LayerPlan, spec: ArchSpec) -> nn.Module | None:
    if not plan.has_residual:
        return None
    if plan.shapes_match:
        return nn.Identity()
    parts: OrderedDict[str, nn.Module] = OrderedDict()
    if plan.stride > 1:
        # ceil_mode matches the conv's ceil(H / stride) output under k // 2 padding.
        parts["pool"] = nn.AvgPool2d(plan.stride, plan.stride, ceil_mode=True,
                                     count_include_pad=False)
    if plan.in_channels != plan.out_channels:
        parts["proj"] = ConvBN(plan.in_channels, plan.out_channels, 1, 1, spec, act=False)
    return nn.Sequential(parts)


class Layer(nn.Module):
    """One layer: the op's branch, plus a shortcut (with drop path on the branch) if it has one."""

    def __init__(self, plan: LayerPlan, spec: ArchSpec) -> None:
        super().__init__()
        self.plan = plan
        self.body = _body(plan, spec)
        self.shortcut = _shortcut(plan, spec)
        self.drop_path = DropPath(plan.drop_path) if self.shortcut is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.shortcut is None:
            return out
        return self.drop_path(out) + self.shortcut(x)


class Model(nn.Module):
    """The network a spec describes."""

    def __init__(self, spec: ArchSpec, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        self.spec = spec
        self.plans = plan_layers(spec)
        self.stem = ConvBN(in_channels, spec.stem, 3, spec.stem_stride, spec)
        self.stages = nn.ModuleList(
            nn.Sequential(*(Layer(p, spec) for p in self.plans if p.stage == i))
            for i in range(len(spec.stages)))
        features = spec.stages[-1].out
        if spec.head:
            self.head: nn.Module = ConvBN(features, spec.head, 1, 1, spec)
            features = spec.head
        else:
            self.head = nn.Identity()
        self.num_features = features
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(features, num_classes)
        _init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature map before global pooling (``num_features`` channels)."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean(dim=(2, 3))
        return self.classifier(self.dropout(x))


def _init_weights(model: nn.Module) -> None:
    # Convolutions as the reference initialises them: fan-out counts one group's outputs (so
    # a depthwise kernel's fan-out is k*k). The classifier starts at zero, where the reference
    # draws it uniform in +-1/sqrt(num_classes): that range suits 1,000 classes, but at 10 it
    # puts the first logits several units apart (a first loss near 5.8 against ln 10 = 2.3),
    # and a short run spends its steps undoing it. From zero every class starts at 1/C and
    # the first step moves the classifier alone.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)


def build_model(spec: ArchSpec, num_classes: int = 1000, in_channels: int = 3) -> Model:
    """Build ``spec`` for ``num_classes`` outputs from ``in_channels``-channel images."""
    return Model(spec, num_classes=num_classes, in_channels=in_channels)


def make_activation(name: str, inplace: bool = False) -> nn.Module:
    """The activation module a spec names (``relu``, ``relu6`` or ``silu``)."""
    return _ACTIVATIONS[name](inplace=inplace)


def init_weights(model: nn.Module) -> None:
    """Initialise ``model``'s convolutions, batch norms and linear layers as the builder
    initialises a built model (a model built of the same parts, such as a supernet)."""
    _init_weights(model)


def count_model_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; batch-norm running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())
