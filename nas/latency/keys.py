"""What a network is made of, for latency: one :class:`PartKey` per part that runs.

A network built from a spec runs, in order: the stem (3x3 conv, BN, activation), every layer
of every stage, the head (1x1 conv, BN, activation; absent when ``spec.head == 0``), and the
classifier (global average pool, dropout, linear). Each part's time depends only on what
its key says: for a layer, the op, expansion, kernel, stride, squeeze-excite ratio, the
shortcut it really has, channels in and out, the input side, the activation and the batch
(FBNet's and Once-for-All's lookup-table keys). Two specs that share a part share its
table entry.

The layers are the builder's own plan (:func:`nas.arch.plan.plan_layers`, torch-free, so
predicting imports no torch), their input sides the cost model's
:func:`~nas.arch.cost.conv_out_size`; ``tests/test_latency.py`` checks the keys against the
built modules.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from nas.arch.cost import conv_out_size
from nas.arch.plan import plan_layers
from nas.arch.spec import ArchSpec

PART_KINDS = ("stem", "layer", "head", "classifier")
SHORTCUTS = ("none", "identity", "pool")  # pool: average-pooled and/or projected


@dataclass(frozen=True, order=True)
class PartKey:
    """One table entry's key. Fields that do not apply to a part's kind are 0 or ''."""

    kind: str
    c_in: int
    c_out: int
    size: int          # input side in pixels
    batch: int
    activation: str = ""
    op: str = ""       # layers: conv, ds, mbconv
    expand: int = 1
    kernel: int = 1
    stride: int = 1
    se: float = 0.0
    shortcut: str = "none"

    @property
    def text(self) -> str:
        """The key as the table file writes it (stable, readable, parsed by :meth:`parse`)."""
        if self.kind == "layer":
            op = f"mbconv{self.expand}" if self.op == "mbconv" else self.op
            return (f"layer:{op}_k{self.kernel}_s{self.stride}_i{self.c_in}_o{self.c_out}"
                    f"_se{self.se:g}_{self.shortcut}_{self.activation}_r{self.size}_b{self.batch}")
        if self.kind == "classifier":
            return f"classifier:i{self.c_in}_o{self.c_out}_r{self.size}_b{self.batch}"
        return (f"{self.kind}:k{self.kernel}_s{self.stride}_i{self.c_in}_o{self.c_out}"
                f"_{self.activation}_r{self.size}_b{self.batch}")

    @property
    def out_size(self) -> int:
        if self.kind == "classifier":
            return 1
        return conv_out_size(self.size, self.kernel, self.stride)

    @classmethod
    def parse(cls, text: str) -> "PartKey":
        """The key ``text`` names (the inverse of :attr:`text`); ValueError if malformed."""
        kind, _, rest = text.partition(":")
        fields = rest.split("_")
        try:
            if kind == "layer":
                op, k, s, i, o, se, shortcut, act, r, b = fields
                expand = 1
                if op.startswith("mbconv"):
                    op, expand = "mbconv", int(op[len("mbconv"):])
                key = cls("layer", int(i[1:]), int(o[1:]), int(r[1:]), int(b[1:]), act, op,
                          expand, int(k[1:]), int(s[1:]), float(se[2:]), shortcut)
            elif kind == "classifier":
                i, o, r, b = fields
                key = cls("classifier", int(i[1:]), int(o[1:]), int(r[1:]), int(b[1:]))
            elif kind in ("stem", "head"):
                k, s, i, o, act, r, b = fields
                key = cls(kind, int(i[1:]), int(o[1:]), int(r[1:]), int(b[1:]), act,
                          kernel=int(k[1:]), stride=int(s[1:]))
            else:
                raise ValueError(kind)
        except (ValueError, IndexError):
            raise ValueError(f"not a latency table key: {text!r}") from None
        if key.text != text:
            raise ValueError(f"not a latency table key: {text!r}")
        return key


def layer_shortcut(skip: str, stride: int, c_in: int, c_out: int) -> str:
    """The shortcut a layer really has (the builder's ``Layer``): ``identity`` where the
    shapes match and the skip is identity or pool, ``pool`` (average pool where strided,
    1x1 projection where the channels change) for a pool skip that changes the shape,
    ``none`` otherwise."""
    keeps = stride == 1 and c_in == c_out
    if skip == "none" or (skip == "identity" and not keeps):
        return "none"
    return "identity" if keeps else "pool"


def layer_key(op: str, expand: int, kernel: int, stride: int, c_in: int, c_out: int,
              se: float, skip: str, activation: str, size: int, batch: int) -> PartKey:
    return PartKey("layer", c_in, c_out, size, batch, activation, op,
                   expand if op == "mbconv" else 1, kernel, stride, float(se),
                   layer_shortcut(skip, stride, c_in, c_out))


def _parts(spec: ArchSpec, resolution: int | None, batch: int, num_classes: int,
           in_channels: int) -> Iterator[tuple[int, PartKey]]:
    """(stage index, part) in running order; the stem is stage -1, the head and classifier
    ``len(spec.stages)``."""
    size = spec.resolution if resolution is None else int(resolution)
    act = spec.activation
    yield -1, PartKey("stem", in_channels, spec.stem, size, batch, act, kernel=3,
                      stride=spec.stem_stride)
    size = conv_out_size(size, 3, spec.stem_stride)
    for p in plan_layers(spec):
        yield p.stage, layer_key(p.op, p.expand, p.kernel, p.stride, p.in_channels,
                                 p.out_channels, p.se, p.skip, act, size, batch)
        size = conv_out_size(size, p.kernel, p.stride)
    end = len(spec.stages)
    features = spec.stages[-1].out
    if spec.head:
        yield end, PartKey("head", features, spec.head, size, batch, act, kernel=1, stride=1)
        features = spec.head
    yield end, PartKey("classifier", features, num_classes, size, batch)


def network_keys(spec: ArchSpec, resolution: int | None = None, batch: int = 1,
                 num_classes: int = 1000, in_channels: int = 3) -> list[PartKey]:
    """The parts of ``spec``'s network at ``resolution`` (None: the spec's), in the order
    they run: stem, each layer, head (if any), classifier."""
    return [k for _, k in _parts(spec, resolution, batch, num_classes, in_channels)]


def unique(keys: Iterable[PartKey]) -> list[PartKey]:
    """``keys`` without repeats, in first-seen order."""
    seen: dict[PartKey, None] = {}
    for k in keys:
        seen.setdefault(k, None)
    return list(seen)


def space_keys(space: Any, resolution: int | None = None, batch: int = 1,
               num_classes: int = 1000, in_channels: int = 3) -> list[PartKey]:
    """Every distinct part that some child of ``space`` (a
    :class:`search_space.space.SearchSpace`) runs at ``resolution`` (None: the space's own).

    The children are not enumerated (the default space has about 10^13): a block's parts
    depend only on its own choices, the width the previous block hands on, and the global
    choices (the activation), so for each block those decisions are varied over all their
    choices (the others held at their first), each combination is decoded by the space
    itself, and the block's parts are kept. Its deepest choice of layers is enough: a stage
    repeats one shape-keeping layer after its first.
    """
    decisions = list(space.decisions())
    blocks = sorted({d.block for d in decisions if d.block is not None})
    keys: list[PartKey] = []
    for b in blocks:
        varied = [i for i, d in enumerate(decisions)
                  if d.block is None or (d.block == b and d.key != "layers")
                  or (d.block == b - 1 and d.key == "filters")]
        tokens = [0] * len(decisions)
        for i, d in enumerate(decisions):
            if d.block == b and d.key == "layers":
                tokens[i] = max(range(d.size), key=lambda j: d.choices[j])
        for combo in itertools.product(*(range(decisions[i].size) for i in varied)):
            for i, c in zip(varied, combo):
                tokens[i] = c
            spec = space.decode(tokens)
            keys += [k for stage, k in _parts(spec, resolution, batch, num_classes, in_channels)
                     if stage == b or (stage == -1 and b == blocks[0])
                     or (stage == len(spec.stages) and b == blocks[-1])]
    return unique(keys)
