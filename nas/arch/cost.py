"""Pure, torch-free cost model: parameters and multiply-adds (MACs) of a spec.

Counting rules (those of the papers, see REFERENCE.md): convolutions and linear layers count
``out_elements * in_channels_per_group * k * k`` multiply-adds; squeeze-excite convolutions
count; batch norm, activations, pooling, the SE multiply and biases do not. Parameters count
everything the builder creates (conv weights, SE biases, batch-norm affine weights, the
classifier). ``torch.utils.flop_counter`` reports 2 FLOPs per MAC.
"""

from __future__ import annotations

from dataclasses import dataclass

from nas.arch.spec import ArchSpec, StageSpec


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.params + other.params, self.macs + other.macs)

    def __mul__(self, n: int) -> "Cost":
        return Cost(self.params * n, self.macs * n)


@dataclass(frozen=True)
class StageCost:
    """One row of the per-stage table (``nas.inspect`` prints these)."""

    index: int
    name: str
    stage: StageSpec | None
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    params: int
    macs: int


def conv_out_size(size: int, kernel: int, stride: int) -> int:
    """Output size of a conv with symmetric padding ``kernel // 2`` (what the builder uses)."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def _conv(c_in: int, c_out: int, k: int, out_size: int, groups: int = 1, bn: bool = True) -> Cost:
    weights = c_out * (c_in // groups) * k * k
    return Cost(weights + (2 * c_out if bn else 0), weights * out_size * out_size)


def _se(width: int, layer_in: int, ratio: float) -> Cost:
    if ratio <= 0:
        return Cost(0, 0)
    squeeze = max(1, int(layer_in * ratio))
    macs = 2 * width * squeeze
    return Cost(macs + squeeze + width, macs)  # both SE convs carry a bias


def layer_cost(stage: StageSpec, c_in: int, stride: int, in_size: int) -> tuple[Cost, int]:
    """Cost of one layer of ``stage`` with ``c_in`` input channels; returns (cost, out size)."""
    k, c_out = stage.kernel, stage.out
    out_size = conv_out_size(in_size, k, stride)
    if stage.op == "conv":
        cost = _conv(c_in, c_out, k, out_size) + _se(c_out, c_in, stage.se)
    elif stage.op == "ds":
        cost = (_conv(c_in, c_in, k, out_size, groups=c_in) + _se(c_in, c_in, stage.se)
                + _conv(c_in, c_out, 1, out_size))
    else:  # mbconv
        mid = c_in * stage.expand
        cost = (_conv(c_in, mid, 1, in_size) + _conv(mid, mid, k, out_size, groups=mid)
                + _se(mid, c_in, stage.se) + _conv(mid, c_out, 1, out_size))
    if stage.skip == "pool" and c_in != c_out:
        cost = cost + _conv(c_in, c_out, 1, out_size)  # projection shortcut
    return cost, out_size


def stage_costs(spec: ArchSpec, resolution: int | None = None, num_classes: int = 1000,
                in_channels: int = 3) -> list[StageCost]:
    """Per-part costs: stem, each stage, head, classifier (in that order)."""
    size = spec.resolution if resolution is None else int(resolution)
    rows: list[StageCost] = []
    out = conv_out_size(size, 3, spec.stem_stride)
    stem = _conv(in_channels, spec.stem, 3, out)
    rows.append(StageCost(0, "stem", None, in_channels, spec.stem, size, out, stem.params, stem.macs))
    c, size = spec.stem, out
    for i, stage in enumerate(spec.stages, start=1):
        first, out = layer_cost(stage, c, stage.stride, size)
        total = first
        if stage.repeats > 1:
            rest, _ = layer_cost(stage, stage.out, 1, out)
            total = total + rest * (stage.repeats - 1)
        rows.append(StageCost(i, f"stage{i}", stage, c, stage.out, size, out, total.params, total.macs))
        c, size = stage.out, out
    if spec.head:
        head = _conv(c, spec.head, 1, size)
        rows.append(StageCost(len(rows), "head", None, c, spec.head, size, size, head.params, head.macs))
        c = spec.head
    fc = Cost(c * num_classes + num_classes, c * num_classes)
    rows.append(StageCost(len(rows), "classifier", None, c, num_classes, size, 1, fc.params, fc.macs))
    return rows


def _totals(spec: ArchSpec, size: int, num_classes: int, in_channels: int) -> tuple[int, int]:
    """(params, MACs) of the whole model: the rules of :func:`layer_cost` on plain integers.

    The search calls this for every child, so it builds no :class:`Cost` or :class:`StageCost`
    objects and counts a stage's repeated layers once. ``tests/test_cost.py`` checks that it
    equals the sum of :func:`stage_costs` rows.
    """
    # Kernels are odd (the spec enforces it), so a conv's output is ceil(size / stride).
    c, stride = spec.stem, spec.stem_stride
    out = (size - 1) // stride + 1
    w = in_channels * c * 9
    params, macs = w + 2 * c, w * out * out
    size = out
    for st in spec.stages:
        op, kk, c_out, se, pool = st.op, st.kernel * st.kernel, st.out, st.se, st.skip == "pool"
        repeats, stride = st.repeats, st.stride
        c_in = c
        while repeats:
            out = (size - 1) // stride + 1
            area = out * out
            if op == "mbconv":
                mid = c_in * st.expand
                w_dw_proj = mid * kk + mid * c_out
                p = c_in * mid + w_dw_proj + 4 * mid + 2 * c_out
                m = c_in * mid * size * size + w_dw_proj * area
                gated = mid
            elif op == "ds":
                w = c_in * kk + c_in * c_out
                p, m, gated = w + 2 * c_in + 2 * c_out, w * area, c_in
            else:  # conv
                w = c_in * c_out * kk
                p, m, gated = w + 2 * c_out, w * area, c_out
            if se > 0:
                squeeze = max(1, int(c_in * se))
                w = 2 * gated * squeeze
                p += w + squeeze + gated
                m += w
            if pool and c_in != c_out:
                w = c_in * c_out
                p += w + 2 * c_out
                m += w * area
            if c_in == c_out and stride == 1:  # every remaining layer is this one again
                params += p * repeats
                macs += m * repeats
                break
            params += p
            macs += m
            repeats -= 1
            c_in, stride, size = c_out, 1, out
        size = out
        c = c_out
    if spec.head:
        w = c * spec.head
        params += w + 2 * spec.head
        macs += w * size * size
        c = spec.head
    return params + c * num_classes + num_classes, macs + c * num_classes


def count_params(spec: ArchSpec, num_classes: int = 1000, in_channels: int = 3) -> int:
    """Number of parameters of the built model (exact)."""
    return _totals(spec, spec.resolution, num_classes, in_channels)[0]


def count_macs(spec: ArchSpec, resolution: int | None = None, num_classes: int = 1000,
               in_channels: int = 3) -> int:
    """Multiply-adds of one forward pass at ``resolution`` (None: the spec's own)."""
    size = spec.resolution if resolution is None else int(resolution)
    return _totals(spec, size, num_classes, in_channels)[1]


def count(spec: ArchSpec, resolution: int | None = None, num_classes: int = 1000,
          in_channels: int = 3) -> Cost:
    """Parameters and MACs in one pass."""
    size = spec.resolution if resolution is None else int(resolution)
    return Cost(*_totals(spec, size, num_classes, in_channels))
