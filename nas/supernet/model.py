"""The supernet: every path of a search space in one module, interpreted like the builder.

A path is a token sequence of the space. :meth:`Supernet.set_path` decodes it into the spec
as trained (:func:`nas.arch.rounding.as_trained`: the proxy width and resolution) and into
the builder's own :class:`~nas.arch.plan.LayerPlan` records, and the forward pass walks
those plans as :class:`nas.arch.builder.Model` does, with each layer slicing its slot's
shared weights (see :mod:`nas.supernet.plan` for what is shared and how). The modules mirror
the builder's names: a slot holds ``ops.<kind>`` where the builder has ``body``, and
``shortcut.proj`` where it has ``shortcut.proj``; so :meth:`Supernet.subnet` builds the
path with :func:`~nas.arch.builder.build_model` and copies each of its tensors from the
supernet tensor of the same name, cut to size by :func:`shrink` (prefix channels, the
centre of a kernel). ``tests/test_supernet.py`` holds the two forwards equal.

Batch norm. A slot's batch norm is shared by every path through it (its channels sliced
like the weights); running statistics of one path cannot be kept apart from another's.
While training, every path normalises with its batch's statistics (the running averages
follow whatever paths were trained last). For scoring there are three modes
(:mod:`nas.supernet.score`): ``batch`` normalises each evaluation batch with its own
statistics (TuNAS), ``recalibrate`` exports the path and re-estimates its statistics on
training batches first (SPOS), ``running`` uses the shared running averages as they are.

:class:`SplitSupernet` holds one :class:`Supernet` per activation of the space
(``oneshot.split: activation``); :func:`make_supernet` builds what the settings ask for.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch.builder import Model, build_model, init_weights, make_activation
from nas.arch.plan import LayerPlan, plan_layers
from nas.arch.rounding import as_trained
from nas.arch.spec import ACTIVATIONS, ArchSpec
from nas.supernet.plan import Slot, SupernetPlan, plan_supernet


def shrink(t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The part of a shared tensor a smaller one takes: the first entries of every dimension,
    except the two spatial dimensions of a conv weight, where it is the centre (a view)."""
    index = []
    for d, (have, want) in enumerate(zip(t.shape, shape)):
        if want > have:
            raise ValueError(f"cannot cut a {tuple(shape)} tensor from a {tuple(t.shape)} one")
        if t.dim() == 4 and d >= 2:
            start = (have - want) // 2
            index.append(slice(start, start + want))
        else:
            index.append(slice(0, want))
    return t[tuple(index)]


class SuperBN(nn.BatchNorm2d):
    """Batch norm over the widest channels; an input of ``c`` channels uses the first ``c``.

    ``batch_stats`` (set through :meth:`Supernet.batch_statistics`) makes an evaluation
    pass normalise with the batch's own statistics and leave the running averages alone.
    """

    batch_stats = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # a cumulative average, as nn.BatchNorm2d
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch = self.training or self.batch_stats or not self.track_running_stats
        keep = self.track_running_stats and (self.training or not use_batch)
        return F.batch_norm(x, self.running_mean[:c] if keep else None,
                            self.running_var[:c] if keep else None,
                            self.weight[:c], self.bias[:c], use_batch, momentum, self.eps)


class SuperConvBN(nn.Module):
    """The builder's ``ConvBN`` at its widest: ``conv`` (the largest kernel, the widest input and
    output; a depthwise conv when ``depthwise``) and ``bn``; a call slices them."""

    def __init__(self, max_in: int, max_out: int, kernel: int, eps: float, momentum: float,
                 depthwise: bool = False, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(max_in, max_out, kernel, padding=kernel // 2, bias=False,
                              groups=max_in if depthwise else 1)
        self.bn = SuperBN(max_out, eps=eps, momentum=momentum)
        self.depthwise, self.act = depthwise, act

    def forward(self, x: torch.Tensor, out: int, kernel: int, stride: int,
                act: nn.Module) -> torch.Tensor:
        c_in = x.shape[1]
        w = self.conv.weight
        w = shrink(w, (out, 1 if self.depthwise else c_in, kernel, kernel))
        y = F.conv2d(x, w, None, stride, kernel // 2, 1, c_in if self.depthwise else 1)
        y = self.bn(y)
        return act(y) if self.act else y


class SuperSE(nn.Module):
    """The builder's ``SqueezeExcite`` at its widest (gated channels and squeeze width)."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1, bias=True)
        self.expand = nn.Conv2d(squeeze, channels, 1, bias=True)

    def forward(self, x: torch.Tensor, squeeze: int, act: nn.Module) -> torch.Tensor:
        c = x.shape[1]
        s = x.mean(dim=(2, 3), keepdim=True)
        s = F.conv2d(s, shrink(self.reduce.weight, (squeeze, c, 1, 1)), self.reduce.bias[:squeeze])
        s = F.conv2d(act(s), shrink(self.expand.weight, (c, squeeze, 1, 1)), self.expand.bias[:c])
        return x * torch.sigmoid(s)


class SuperBody(nn.Module):
    """One op kind of a slot: the builder's ``_body`` at its widest, the same parts by name."""

    def __init__(self, kind: str, slot: Slot, eps: float, momentum: float) -> None:
        super().__init__()
        k, c_in, c_out = slot.kernel, slot.max_in, slot.max_out
        self.kind = kind
        if kind == "conv":
            self.conv = SuperConvBN(c_in, c_out, k, eps, momentum)
        elif kind == "ds":
            self.depthwise = SuperConvBN(c_in, c_in, k, eps, momentum, depthwise=True)
        else:  # mbconv
            mid = slot.max_mid
            self.expand = SuperConvBN(c_in, mid, 1, eps, momentum)
            self.depthwise = SuperConvBN(mid, mid, k, eps, momentum, depthwise=True)
        if slot.max_se > 0:
            self.se = SuperSE(slot.gated(kind), slot.max_squeeze)
        if kind == "ds":
            self.pointwise = SuperConvBN(c_in, c_out, 1, eps, momentum, act=False)
        elif kind == "mbconv":
            self.project = SuperConvBN(slot.max_mid, c_out, 1, eps, momentum, act=False)

    def forward(self, x: torch.Tensor, p: LayerPlan, act: nn.Module) -> torch.Tensor:
        k, s, c_in, c_out = p.kernel, p.stride, p.in_channels, p.out_channels
        if p.op == "conv":
            x = self.conv(x, c_out, k, s, act)
        elif p.op == "ds":
            x = self.depthwise(x, c_in, k, s, act)
        else:
            mid = c_in * p.expand
            x = self.expand(x, mid, 1, 1, act)
            x = self.depthwise(x, mid, k, s, act)
        if p.se > 0:
            x = self.se(x, p.se_channels, act)
        if p.op == "ds":
            x = self.pointwise(x, c_out, 1, 1, act)
        elif p.op == "mbconv":
            x = self.project(x, c_out, 1, 1, act)
        return x


class SuperShortcut(nn.Module):
    """A pool shortcut's ``1 x 1`` projection (``proj``), widest input to widest output."""

    def __init__(self, slot: Slot, eps: float, momentum: float) -> None:
        super().__init__()
        self.proj = SuperConvBN(slot.max_in, slot.max_out, 1, eps, momentum, act=False)


class SuperLayer(nn.Module):
    """One slot: every op kind of its block, and the projection a pool shortcut may need."""

    def __init__(self, slot: Slot, eps: float, momentum: float) -> None:
        super().__init__()
        self.slot = slot
        self.ops = nn.ModuleDict({kind: SuperBody(kind, slot, eps, momentum)
                                  for kind in slot.kinds})
        self.shortcut = SuperShortcut(slot, eps, momentum) if slot.projection else None

    def forward(self, x: torch.Tensor, p: LayerPlan, act: nn.Module) -> torch.Tensor:
        out = self.ops[p.op](x, p, act)
        if not p.has_residual:
            return out
        if self.training and p.drop_path > 0.0:  # the builder's DropPath
            keep = 1.0 - p.drop_path
            mask = out.new_empty((out.shape[0],) + (1,) * (out.dim() - 1)).bernoulli_(keep)
            out = out * mask / keep
        return out + self._shortcut(x, p)

    def _shortcut(self, x: torch.Tensor, p: LayerPlan) -> torch.Tensor:
        if p.shapes_match:
            return x
        if p.stride > 1:
            x = F.avg_pool2d(x, p.stride, p.stride, ceil_mode=True, count_include_pad=False)
        if p.in_channels != p.out_channels:
            assert self.shortcut is not None
            x = self.shortcut.proj(x, p.out_channels, 1, 1, nn.Identity())
        return x


@contextmanager
def _batch_statistics(module: nn.Module) -> Iterator[None]:
    norms = [m for m in module.modules() if isinstance(m, SuperBN)]
    for m in norms:
        m.batch_stats = True
    try:
        yield
    finally:
        for m in norms:
            m.batch_stats = False


_BODY = re.compile(r"^stages\.(\d+)\.(\d+)\.body\.")


class Supernet(nn.Module):
    """Every path of ``space`` at proxy width ``width`` and resolution ``resolution``.

    ``set_path(tokens)`` selects the path the forward pass takes; ``subnet(tokens)`` is that
    path as a standalone :class:`~nas.arch.builder.Model`.
    """

    def __init__(self, space: Any, width: float = 1.0, resolution: int | None = None,
                 num_classes: int = 1000, in_channels: int = 3,
                 plan: SupernetPlan | None = None) -> None:
        super().__init__()
        self.space, self.width, self.resolution = space, float(width), resolution
        self.num_classes, self.in_channels = num_classes, in_channels
        self.plan = plan or plan_supernet(space, width)
        eps, momentum = float(space.fixed["bn_eps"]), float(space.fixed["bn_momentum"])
        pl = self.plan
        self.stem = SuperConvBN(in_channels, pl.stem, 3, eps, momentum)
        self.stages = nn.ModuleList(nn.ModuleList(SuperLayer(s, eps, momentum) for s in block)
                                    for block in pl.slots)
        last = pl.slots[-1][0].max_out
        self.head = SuperConvBN(last, pl.head, 1, eps, momentum) if pl.head else None
        self.classifier = nn.Linear(pl.features, num_classes)
        init_weights(self)
        self.activations = {name: make_activation(name) for name in ACTIVATIONS}
        self.tokens: tuple[int, ...] | None = None
        self.spec: ArchSpec | None = None
        self.plans: tuple[LayerPlan, ...] = ()

    # ------------------------------------------------------------------ paths

    def spec_of(self, tokens: Sequence[int]) -> ArchSpec:
        """The path's network as trained: the space's child at the proxy width and resolution."""
        return as_trained(self.space.decode(tokens), width=self.width,
                          resolution=self.resolution)

    def set_path(self, tokens: Sequence[int]) -> None:
        self.tokens = tuple(int(t) for t in tokens)
        self.spec = self.spec_of(self.tokens)
        self.plans = plan_layers(self.spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        if spec is None:
            raise RuntimeError("no path selected; call set_path(tokens) first")
        act = self.activations[spec.activation]
        x = self.stem(x, spec.stem, 3, spec.stem_stride, act)
        for p in self.plans:
            x = self.stages[p.stage][p.index](x, p, act)
        if self.head is not None:
            x = self.head(x, spec.head, 1, 1, act)
        x = F.dropout(x.mean(dim=(2, 3)), spec.dropout, self.training)
        return F.linear(x, self.classifier.weight[:, :x.shape[1]], self.classifier.bias)

    def batch_statistics(self) -> Any:
        """Evaluation passes normalise with each batch's own statistics (TuNAS's scoring)."""
        return _batch_statistics(self)

    # ------------------------------------------------------------------ export

    def shared_name(self, name: str, model: Model) -> str:
        """The supernet tensor a tensor of the builder's ``model`` is cut from."""
        m = _BODY.match(name)
        if not m:
            return name
        stage, index = int(m.group(1)), int(m.group(2))
        op = next(p.op for p in model.plans if p.stage == stage and p.index == index)
        return f"stages.{stage}.{index}.ops.{op}.{name[m.end():]}"

    @torch.no_grad()
    def subnet(self, tokens: Sequence[int]) -> Model:
        """The path ``tokens`` as a standalone network built by the builder, with the path's
        shared weights and batch-norm statistics copied in (on the CPU, in train mode)."""
        model = build_model(self.spec_of(tokens), self.num_classes, self.in_channels)
        shared = self.state_dict()
        for name, t in model.state_dict().items():
            t.copy_(shrink(shared[self.shared_name(name, model)], t.shape))
        return model

    @torch.no_grad()
    def absorb(self, tokens: Sequence[int], model: Model) -> None:
        """Write a subnet's tensors back into the path's slices of the shared ones (the inverse
        of :meth:`subnet`; the rest of the supernet is left as it is)."""
        if not model.spec.same_architecture(self.spec_of(tokens)):
            raise ValueError("absorb: the model is not the network of these tokens")
        shared = self.state_dict()
        for name, t in model.state_dict().items():
            part = shrink(shared[self.shared_name(name, model)], t.shape)
            part.copy_(t)


class SplitSupernet(nn.Module):
    """One :class:`Supernet` per activation of the space: paths share weights only with paths
    of their own activation (few-shot NAS, Zhao et al. 2021, splitting on one decision).

    The activation is a global decision: sharing every weight between a ReLU path and a SiLU
    path asks the same weights to serve two different nonlinearities, and the shared weights
    end up ranking the two alike where standalone training does not (measured in
    ``docs/results/oneshot-fidelity.md``). The interface is :class:`Supernet`'s; ``parts`` holds the
    copies by activation name, so the tensor names are ``parts.<activation>.<supernet name>``.
    """

    def __init__(self, space: Any, width: float = 1.0, resolution: int | None = None,
                 num_classes: int = 1000, in_channels: int = 3,
                 plan: SupernetPlan | None = None) -> None:
        super().__init__()
        plan = plan or plan_supernet(space, width)
        self.parts = nn.ModuleDict({
            a: Supernet(space, width, resolution, num_classes, in_channels, plan)
            for a in space.global_choices["activation"]})
        self.active = next(iter(self.parts))  # a name, not a module: one entry per tensor
        self.space, self.width, self.resolution = space, self.current.width, resolution
        self.num_classes, self.in_channels, self.plan = num_classes, in_channels, plan

    @property
    def current(self) -> Supernet:
        """The copy the selected path runs on."""
        return self.parts[self.active]

    @property
    def tokens(self) -> tuple[int, ...] | None:
        return self.current.tokens

    @property
    def spec(self) -> ArchSpec | None:
        return self.current.spec

    def part(self, tokens: Sequence[int]) -> Supernet:
        """The copy of the weights the path ``tokens`` uses."""
        return self.parts[self.spec_of(tokens).activation]

    def spec_of(self, tokens: Sequence[int]) -> ArchSpec:
        return self.current.spec_of(tokens)

    def set_path(self, tokens: Sequence[int]) -> None:
        self.active = self.spec_of(tokens).activation
        self.current.set_path(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.current(x)

    def batch_statistics(self) -> Any:
        return _batch_statistics(self)

    def subnet(self, tokens: Sequence[int]) -> Model:
        return self.part(tokens).subnet(tokens)

    def absorb(self, tokens: Sequence[int], model: Model) -> None:
        self.part(tokens).absorb(tokens, model)


def make_supernet(space: Any, width: float = 1.0, resolution: int | None = None,
                  num_classes: int = 1000, in_channels: int = 3, split: str | None = None,
                  bn_affine: bool = True) -> Supernet | SplitSupernet:
    """The supernet a run trains: one set of shared weights, or one per activation when
    ``split`` is ``"activation"`` (``oneshot.split``). ``bn_affine=False`` holds every batch
    norm's scale at 1 and shift at 0 (SPOS: a path does not inherit another path's affine
    parameters); the exported subnets carry those values."""
    from nas.supernet.settings import SPLITS
    if split not in SPLITS:
        raise ValueError(f"split {split!r}; only the activation can be split")
    sn: Supernet | SplitSupernet = (
        Supernet(space, width, resolution, num_classes, in_channels) if split is None
        else SplitSupernet(space, width, resolution, num_classes, in_channels))
    if not bn_affine:
        for m in sn.modules():
            if isinstance(m, SuperBN):
                m.weight.requires_grad_(False)
                m.bias.requires_grad_(False)
    return sn
