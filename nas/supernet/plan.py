"""What the supernet holds, worked out from the search space alone (no torch).

A supernet has one *slot* per layer position a path can reach: for every block of the space,
as many slots as the block's largest layer choice. A slot holds every candidate op kind of
its block at the largest shape any path gives it, and a path slices what it needs:

- kernels: the centre of the largest kernel (one depthwise weight per op kind and slot);
- output filters, input channels, expansion ratios, squeeze-excite widths: the first
  channels (prefix slices of the widest weights);
- fewer layers: the block's last slots are skipped;
- skips are paths: ``identity`` and ``none`` hold no weights, a ``pool`` shortcut that
  changes the channel count has its own ``1 x 1`` projection (``proj``), sliced the same way.

The op kinds do not share weights with each other (a ``conv``'s full kernel, a ``ds``'s
depthwise and an ``mbconv``'s expansion have no shape in common), as in TuNAS, where each
kernel size even keeps its own depthwise weights; here kernels nest, as in Once-for-All.

The channel counts are those of the spec as trained: :func:`trained_space_widths` passes every
choice through the rounding module exactly as :func:`nas.arch.rounding.as_trained` does, so a
path's widths equal those of the network the builder builds for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nas.arch.rounding import round_filters
from nas.core.errors import SpaceError
from search_space import op_choice

KINDS = ("conv", "ds", "mbconv")


@dataclass(frozen=True)
class Slot:
    """One layer position of the supernet, at the largest shape any path gives it."""

    block: int
    index: int             # position within the block (0 has the block's stride)
    stride: int
    kinds: tuple[str, ...]  # op kinds a path may put here (conv, ds, mbconv)
    kernel: int            # the largest kernel
    max_in: int            # the widest input
    max_out: int           # the widest output
    max_expand: int        # the largest mbconv expansion (1 when no mbconv)
    max_se: float          # the largest squeeze-excite ratio (0: no squeeze-excite weights)
    projection: bool       # a pool shortcut may need a 1 x 1 projection here

    @property
    def max_mid(self) -> int:
        return self.max_in * self.max_expand

    @property
    def max_squeeze(self) -> int:
        # The squeeze width follows the layer's input (the builder's rule); int() is monotone.
        return max(1, int(self.max_in * self.max_se)) if self.max_se > 0 else 0

    def gated(self, kind: str) -> int:
        """The widest channel count squeeze-excite gates in op ``kind`` (the builder's rule)."""
        return {"conv": self.max_out, "ds": self.max_in, "mbconv": self.max_mid}[kind]


@dataclass(frozen=True)
class SupernetPlan:
    """Every slot, the stem, the head and the classifier's widest input."""

    stem: int
    stem_stride: int
    head: int              # 0: no head conv
    slots: tuple[tuple[Slot, ...], ...]   # per block
    width: float

    @property
    def features(self) -> int:
        return self.head or self.slots[-1][0].max_out

    @property
    def num_slots(self) -> int:
        return sum(len(b) for b in self.slots)


def trained_width(channels: int, width: float) -> int:
    """A channel count as trained at ``width`` (:func:`nas.arch.rounding.as_trained`'s rule:
    no rounding at width 1)."""
    return channels if width == 1.0 else round_filters(channels, width)


def plan_supernet(space: Any, width: float = 1.0) -> SupernetPlan:
    """The slots of ``space``'s supernet at proxy width ``width`` (a :class:`SearchSpace`)."""
    fixed = space.fixed
    stem = trained_width(int(fixed["stem"]), width)
    head = trained_width(int(fixed["head"]), width) if fixed["head"] else 0
    blocks, c_max = [], stem
    for b_idx, block in enumerate(space.blocks):
        kinds_expand = [op_choice(op) for op in block.op]
        kinds = tuple(k for k in KINDS if any(kind == k for kind, _ in kinds_expand))
        max_expand = max((e for kind, e in kinds_expand if kind == "mbconv"), default=1)
        out = max(trained_width(f, width) for f in block.filters)
        se = max(block.se)
        slots = []
        for j in range(max(block.layers)):
            max_in = c_max if j == 0 else out
            stride = block.stride if j == 0 else 1
            # Only a first layer can change the channel count (later ones map out -> out).
            projection = "pool" in block.skip and j == 0
            slots.append(Slot(block=b_idx, index=j, stride=stride, kinds=kinds,
                              kernel=max(block.kernel), max_in=max_in, max_out=out,
                              max_expand=max_expand, max_se=float(se), projection=projection))
        blocks.append(tuple(slots))
        c_max = out
    return SupernetPlan(stem=stem, stem_stride=int(fixed["stem_stride"]), head=head,
                        slots=tuple(blocks), width=float(width))


def shared_params(plan: SupernetPlan, num_classes: int, in_channels: int) -> int:
    """Number of shared parameters (what the supernet module will hold), without torch."""
    def conv_bn(c_in: int, c_out: int, k: int, groups: int = 1) -> int:
        return c_out * (c_in // groups) * k * k + 2 * c_out

    n = conv_bn(in_channels, plan.stem, 3)
    for block in plan.slots:
        for s in block:
            for kind in s.kinds:
                if kind == "conv":
                    n += conv_bn(s.max_in, s.max_out, s.kernel)
                elif kind == "ds":
                    n += conv_bn(s.max_in, s.max_in, s.kernel, s.max_in)
                    n += conv_bn(s.max_in, s.max_out, 1)
                else:
                    n += conv_bn(s.max_in, s.max_mid, 1)
                    n += conv_bn(s.max_mid, s.max_mid, s.kernel, s.max_mid)
                    n += conv_bn(s.max_mid, s.max_out, 1)
                if s.max_se > 0:
                    g, q = s.gated(kind), s.max_squeeze
                    n += 2 * g * q + q + g
            if s.projection:
                n += conv_bn(s.max_in, s.max_out, 1)
    last = plan.slots[-1][0].max_out
    if plan.head:
        n += conv_bn(last, plan.head, 1)
    return n + plan.features * num_classes + num_classes


def copies(space: Any, split: str | None) -> int:
    """How many copies of the shared weights a supernet holds: one, or one per activation of
    the space with ``split="activation"`` (``oneshot.split``)."""
    return len(space.global_choices["activation"]) if split == "activation" else 1


def check_shareable(space: Any, width: float, num_classes: int, in_channels: int,
                    max_params: int, split: str | None = None) -> tuple[SupernetPlan, int]:
    """The plan of ``space``'s supernet and the parameters the supernet holds (every copy),
    or a one-line :class:`SpaceError` when they would exceed ``max_params`` (every path's
    weights live in memory at once, with their optimizer state)."""
    plan = plan_supernet(space, width)
    n = shared_params(plan, num_classes, in_channels) * copies(space, split)
    if n > max_params:
        raise SpaceError(
            f"space {space.name!r}: its supernet at width {width:g} holds {n / 1e6:.1f}M shared "
            f"parameters, over oneshot.max_params ({max_params / 1e6:.1f}M); lower "
            "oneshot.supernet.width_mult, raise oneshot.max_params, or use evaluator='proxy'")
    return plan, n


def sharing_warnings(space: Any) -> list[str]:
    """The choices of ``space`` that its supernet can hold but that its shared weights train
    badly under, one line each (empty when none). Measured by ``bench/bench_oneshot.py
    ablate`` (docs/benchmarks.md, "The one-shot evaluator"; docs/results/oneshot-fidelity.md
    for the MnasNet space's ranking): sampling a block's op kind (conv, ds and mbconv keep
    separate weights) or its skip (a residual layer or not) at every step left the shared
    weights near chance after 3 epochs; ``configs/shared-space.yaml`` drops both choices."""
    kinds = [b for b, block in enumerate(space.blocks)
             if len({op_choice(op)[0] for op in block.op}) > 1]
    skips = [b for b, block in enumerate(space.blocks) if len(set(block.skip)) > 1]
    out = []
    for what, blocks in (("op kinds (conv, ds, mbconv)", kinds),
                         ("skips (residual or not)", skips)):
        if blocks:
            out.append(f"space {space.name!r} samples {what} in blocks "
                       f"{', '.join(str(b + 1) for b in blocks)}; a supernet trains poorly under "
                       "that choice (docs/results/oneshot-fidelity.md): consider "
                       "space='shared-space'")
    return out

