"""Exact export to timm: block strings and constructor arguments that timm's own decoder
(``timm.models._efficientnet_builder.decode_arch_def``) and ``EfficientNet`` class build into
the network a spec describes, and the state-dict key maps both ways.

What timm reads (its ``_efficientnet_builder.py`` and ``_efficientnet_blocks.py``), and so
what :func:`to_timm` writes:

* ``ds_r1_k3_s1_c16_se0.25``: ``DepthwiseSeparableConv`` (this project's ``ds``). It has a
  shortcut where the shapes match unless ``noskip``; squeeze-excite squeezes
  ``round(in * se)`` channels.
* ``ir_r2_k3_s2_e6_c24_se0.25``: ``InvertedResidual`` (``mbconv``). The expanded width is
  ``make_divisible(in * e)`` (a multiple of 8), and squeeze-excite squeezes
  ``round(expanded * se / e)`` channels; the shortcut is as for ``ds``.
* ``cn_r2_k3_s2_c24``: ``ConvBnAct`` (``conv``). It has a shortcut only with the ``skip``
  flag (and matching shapes); without a flag it has none. It has no squeeze-excite: timm
  ignores ``se`` on a ``cn`` block.
* The stem is a 3x3 conv with stride 2, the head a 1x1 conv to ``num_features`` (none when
  0), and a stride past ``output_stride`` (32) turns into dilation.

This project's own rounding is ``max(1, int(in * se))`` squeeze channels, the spec's exact
expanded width, ``identity`` meaning a shortcut wherever the shapes match on every op, and
``pool`` a pooled or projected shortcut. :func:`to_timm` writes only strings that timm reads
as the same layers (choosing the written SE ratio where timm's rounding would differ) and
refuses, in one line naming the stage, what timm cannot express: a pooled shortcut, SE on a
regular conv, an expanded width timm would round, a stem of stride 1.

The project's own extended strings (``pskip``, ``se`` on ``cn``, no flag meaning identity
on ``cn``) are :func:`nas.arch.blockstrings.encode_ext`, not these.

Nothing here imports torch: state dicts are mappings of names to anything with a ``shape``.
:mod:`nas.arch.timm_model` builds the timm model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from nas.arch.spec import ArchSpec, StageSpec
from nas.core.errors import SpecError

# timm's EfficientNet: stem stride, default output stride, the divisor of an ir block's width.
TIMM_STEM_STRIDE = 2
TIMM_OUTPUT_STRIDE = 32
_DIVISOR = 8
_BN_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def keep_channels(channels: Any) -> Any:
    """timm's ``round_chs_fn`` that keeps every channel count as written (no re-rounding)."""
    return channels


def make_divisible(v: float, divisor: int = _DIVISOR, min_value: int | None = None,
                   round_limit: float = 0.9) -> int:
    """The width rounding timm applies to an ``ir`` block's expanded channels
    (``timm.layers.make_divisible``), reproduced to say when it changes a width."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class TimmArch:
    """What timm needs to build a spec's network exactly.

    ``arch_def`` is one tuple of block strings per stage (``decode_arch_def`` takes it as a
    list of lists: :meth:`arch_def_list`); ``kwargs`` are ``EfficientNet``'s keyword arguments
    (stem size, head width, activation, ``round_chs_fn``, drop rates, ...) except
    ``norm_layer``, which is ``functools.partial(torch.nn.BatchNorm2d, eps=bn_eps,
    momentum=bn_momentum)``. :func:`nas.arch.timm_model.build_timm_model` puts them together::

        EfficientNet(decode_arch_def(t.arch_def_list()), num_classes=..., in_chans=...,
                     norm_layer=partial(nn.BatchNorm2d, eps=t.bn_eps, momentum=t.bn_momentum),
                     **t.kwargs)
    """

    arch_def: tuple[tuple[str, ...], ...]
    kwargs: Mapping[str, Any] = field(hash=False)
    bn_eps: float
    bn_momentum: float

    @property
    def block_strings(self) -> list[str]:
        """The block strings, one per stage, in order."""
        return [b for stage in self.arch_def for b in stage]

    def arch_def_list(self) -> list[list[str]]:
        """``arch_def`` as timm's decoder takes it (a list of lists of strings)."""
        return [list(stage) for stage in self.arch_def]

    def plain(self) -> dict[str, Any]:
        """JSON-ready: the block strings and every constructor setting by name."""
        kw = {k: ("identity" if k == "round_chs_fn" else v) for k, v in self.kwargs.items()}
        return {"arch_def": self.arch_def_list(), "kwargs": kw,
                "norm_layer": {"eps": self.bn_eps, "momentum": self.bn_momentum}}


# --------------------------------------------------------------------------- strings


def _stage_name(i: int, stage: StageSpec) -> str:
    return f"stage{i + 1} ({stage.op}, {stage.repeats} layer{'s' if stage.repeats > 1 else ''})"


def _refuse(i: int, stage: StageSpec, why: str) -> SpecError:
    return SpecError(f"timm cannot express {_stage_name(i, stage)}: {why}")


def _fmt(x: float) -> str:
    return repr(float(x))


def _timm_se_width(op: str, in_channels: int, expand: int, ratio_text: str) -> int:
    """The squeeze width timm computes for a block with the written ``se`` ratio (its float
    arithmetic, step by step: ``se_ratio /= exp_ratio``, then ``round(chs * se_ratio)``)."""
    ratio = float(ratio_text)
    if op == "mbconv":
        exp = float(expand)
        ratio /= exp
        return round(make_divisible(in_channels * exp) * ratio)
    ratio /= 1.0
    return round(in_channels * ratio)


def _se_text(i: int, stage: StageSpec, layer_inputs: list[int]) -> str:
    """The ``se`` ratio to write so that timm squeezes every layer of the stage to this
    project's width ``max(1, int(in * se))``: the spec's own ratio when timm's rounding agrees,
    else the shortest ratio that gives every layer's width, else a refusal."""
    targets = [max(1, int(c * stage.se)) for c in layer_inputs]

    def works(text: str) -> bool:
        return float(text) > 0 and all(
            _timm_se_width(stage.op, c, stage.expand, text) == t
            for c, t in zip(layer_inputs, targets))

    own = _fmt(stage.se)
    if works(own):
        return own
    lo = max((t - 0.5) / c for c, t in zip(layer_inputs, targets))
    hi = min((t + 0.5) / c for c, t in zip(layer_inputs, targets))
    if lo < hi:
        mid = (lo + hi) / 2
        for digits in range(1, 18):
            text = _fmt(float(f"{mid:.{digits}g}"))
            if lo <= float(text) <= hi and works(text):
                return text
    widths = ", ".join(f"{c}->{t}" for c, t in zip(layer_inputs, targets))
    raise _refuse(i, stage, f"timm squeezes round(channels * ratio) channels, and no ratio "
                            f"gives this stage's squeeze widths ({widths}; this project uses "
                            f"int(channels * {own})); pick another se ratio")


def _stage_string(i: int, stage: StageSpec, in_channels: int) -> str:
    keeps_shape = stage.stride == 1 and in_channels == stage.out
    skip = stage.skip
    if skip == "pool":
        if not keeps_shape:
            raise _refuse(i, stage, f"skip 'pool' is a pooled/projected shortcut on its first "
                                    f"layer (stride {stage.stride}, {in_channels}->{stage.out} "
                                    "channels) and timm has none; use skip identity or none")
        skip = "identity"  # on a layer whose shapes match, the pooled shortcut is the identity
    layer_inputs = [in_channels] + ([stage.out] if stage.repeats > 1 else [])
    parts = [f"r{stage.repeats}", f"k{stage.kernel}", f"s{stage.stride}"]
    if stage.op == "conv":
        if stage.se > 0:
            raise _refuse(i, stage, "squeeze-excite on a regular conv: timm's cn block "
                                    "(ConvBnAct) has none and ignores se; set se 0 or use "
                                    "op ds or mbconv")
        kind = "cn"
    elif stage.op == "ds":
        kind = "ds"
    else:
        kind = "ir"
        for c in layer_inputs:
            mid = c * stage.expand
            if make_divisible(c * float(stage.expand)) != mid:
                raise _refuse(i, stage, f"timm rounds an ir block's expanded width to a "
                                        f"multiple of {_DIVISOR}: {c}x{stage.expand} = {mid} "
                                        f"would become {make_divisible(c * float(stage.expand))}"
                                        f"; use channels whose expansion is a multiple of "
                                        f"{_DIVISOR}")
        parts.append(f"e{stage.expand}")
    parts.append(f"c{stage.out}")
    if stage.se > 0:
        parts.append(f"se{_se_text(i, stage, layer_inputs)}")
    if kind == "cn":
        if skip == "identity":
            parts.append("skip")  # timm's cn block has a shortcut only when asked
    elif skip == "none":
        parts.append("noskip")
    return "_".join([kind] + parts)


def to_timm(spec: ArchSpec) -> TimmArch:
    """The timm form of ``spec``: block strings and ``EfficientNet`` arguments that build the
    same network (same layers, parameter count and state-dict shapes; with
    :func:`timm_state_dict`, the same outputs). Raises a one-line :class:`SpecError` naming the
    stage for anything timm cannot express."""
    if spec.stem_stride != TIMM_STEM_STRIDE:
        raise SpecError(f"timm cannot express the stem: timm's EfficientNet stem has stride "
                        f"{TIMM_STEM_STRIDE}, this spec's stem_stride is {spec.stem_stride}")
    arch_def = tuple((_stage_string(i, s, c),)
                     for i, (s, c) in enumerate(zip(spec.stages, spec.stage_inputs())))
    kwargs: dict[str, Any] = {
        "stem_size": spec.stem, "fix_stem": True, "num_features": spec.head,
        "act_layer": spec.activation, "round_chs_fn": keep_channels,
        "drop_rate": float(spec.dropout), "drop_path_rate": float(spec.drop_path_rate),
    }
    reduction = TIMM_STEM_STRIDE * math.prod(s.stride for s in spec.stages)
    if reduction > TIMM_OUTPUT_STRIDE:
        # Past output_stride timm swaps strides for dilation; keep the strides as written.
        kwargs["output_stride"] = reduction
    return TimmArch(arch_def=arch_def, kwargs=kwargs, bn_eps=float(spec.bn_eps),
                    bn_momentum=float(spec.bn_momentum))


# --------------------------------------------------------------------------- state dicts

_BODY = {
    "conv": (("conv.conv", "conv"), ("conv.bn", "bn1")),
    "ds": (("depthwise.conv", "conv_dw"), ("depthwise.bn", "bn1"),
           ("pointwise.conv", "conv_pw"), ("pointwise.bn", "bn2")),
    "mbconv": (("expand.conv", "conv_pw"), ("expand.bn", "bn1"), ("depthwise.conv", "conv_dw"),
               ("depthwise.bn", "bn2"), ("project.conv", "conv_pwl"), ("project.bn", "bn3")),
}


def _param_shapes(spec: ArchSpec, num_classes: int, in_channels: int) -> list[tuple[str, str, tuple[int, ...]]]:
    """(this project's key, timm's key, shape) for every state-dict entry, in order."""
    out: list[tuple[str, str, tuple[int, ...]]] = []

    def conv(ours: str, theirs: str, shape: tuple[int, ...], bias: bool = False) -> None:
        out.append((f"{ours}.weight", f"{theirs}.weight", shape))
        if bias:
            out.append((f"{ours}.bias", f"{theirs}.bias", (shape[0],)))

    def bn(ours: str, theirs: str, channels: int) -> None:
        for leaf in _BN_LEAVES:
            out.append((f"{ours}.{leaf}", f"{theirs}.{leaf}",
                        () if leaf == "num_batches_tracked" else (channels,)))

    conv("stem.conv", "conv_stem", (spec.stem, in_channels, 3, 3))
    bn("stem.bn", "bn1", spec.stem)
    for i, (stage, stage_in) in enumerate(zip(spec.stages, spec.stage_inputs())):
        names = dict(_BODY[stage.op])
        for j in range(stage.repeats):
            c_in = stage_in if j == 0 else stage.out
            k, c_out = stage.kernel, stage.out
            o, t = f"stages.{i}.{j}.body.", f"blocks.{i}.{j}."
            pair = {part: (o + part, t + name) for part, name in names.items()}
            if stage.op == "conv":
                conv(*pair["conv.conv"], (c_out, c_in, k, k))
                bn(*pair["conv.bn"], c_out)
                gated = c_out
            elif stage.op == "ds":
                conv(*pair["depthwise.conv"], (c_in, 1, k, k))
                bn(*pair["depthwise.bn"], c_in)
                gated = c_in
            else:
                mid = c_in * stage.expand
                conv(*pair["expand.conv"], (mid, c_in, 1, 1))
                bn(*pair["expand.bn"], mid)
                conv(*pair["depthwise.conv"], (mid, 1, k, k))
                bn(*pair["depthwise.bn"], mid)
                gated = mid
            if stage.se > 0:
                squeeze = max(1, int(c_in * stage.se))
                conv(o + "se.reduce", t + "se.conv_reduce", (squeeze, gated, 1, 1), bias=True)
                conv(o + "se.expand", t + "se.conv_expand", (gated, squeeze, 1, 1), bias=True)
            if stage.op == "ds":
                conv(*pair["pointwise.conv"], (c_out, c_in, 1, 1))
                bn(*pair["pointwise.bn"], c_out)
            elif stage.op == "mbconv":
                conv(*pair["project.conv"], (c_out, gated, 1, 1))
                bn(*pair["project.bn"], c_out)
    features = spec.stages[-1].out
    if spec.head:
        conv("head.conv", "conv_head", (spec.head, features, 1, 1))
        bn("head.bn", "bn2", spec.head)
        features = spec.head
    conv("classifier", "classifier", (num_classes, features), bias=True)
    return out


def _as_state(model_or_state: Any) -> Mapping[str, Any]:
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    if not isinstance(state, Mapping):
        raise SpecError(f"expected a model or a state dict (a mapping of names to tensors), "
                        f"got {type(model_or_state).__name__}")
    return state


def _shape(state: Mapping[str, Any], key: str, side: str) -> tuple[int, ...]:
    if key not in state:
        raise SpecError(f"the {side} state dict has no {key!r}; is it a model of this spec?")
    return tuple(getattr(state[key], "shape", ()))


def _convert(state: Mapping[str, Any], spec: ArchSpec, to_timm_keys: bool) -> dict[str, Any]:
    to_timm(spec)  # refuse what timm cannot express, with the same one-line reason
    side = "effnas" if to_timm_keys else "timm"
    stem, head = ("stem.conv.weight", "classifier.weight") if to_timm_keys else \
        ("conv_stem.weight", "classifier.weight")
    stem_shape, head_shape = _shape(state, stem, side), _shape(state, head, side)
    if len(stem_shape) != 4 or len(head_shape) != 2:
        raise SpecError(f"the {side} state dict's {stem!r} or {head!r} has an unexpected "
                        f"shape ({stem_shape}, {head_shape})")
    entries = _param_shapes(spec, num_classes=head_shape[0], in_channels=stem_shape[1])
    source = {(ours if to_timm_keys else theirs): (theirs if to_timm_keys else ours, shape)
              for ours, theirs, shape in entries}
    unexpected = [k for k in state if k not in source]
    if unexpected:
        raise SpecError(f"the {side} state dict has {len(unexpected)} key(s) this spec's network "
                        f"does not, first {unexpected[0]!r}; is it a model of this spec?")
    missing = [k for k in source if k not in state]
    if missing:
        raise SpecError(f"the {side} state dict lacks {len(missing)} key(s) of this spec's "
                        f"network, first {missing[0]!r}; is it a model of this spec?")
    out: dict[str, Any] = {}
    for key, (target, shape) in source.items():
        got = tuple(getattr(state[key], "shape", shape))
        if got != shape:
            raise SpecError(f"the {side} state dict's {key!r} has shape {list(got)}, this spec's "
                            f"network has {list(shape)}; is it a model of this spec?")
        out[target] = state[key]
    return out


def timm_state_dict(model_or_state: Any, spec: ArchSpec) -> dict[str, Any]:
    """This project's weights (a model built from ``spec``, or its state dict) under timm's
    keys, for ``build_timm_model(spec).load_state_dict(...)``. The values are the same
    objects (no copy). Keys and shapes are checked against ``spec``."""
    return _convert(_as_state(model_or_state), spec, to_timm_keys=True)


def from_timm_state_dict(model_or_state: Any, spec: ArchSpec) -> dict[str, Any]:
    """timm's weights (the model :func:`to_timm` describes, or its state dict) under this
    project's keys, for ``nas.build_model(spec).load_state_dict(...)``."""
    return _convert(_as_state(model_or_state), spec, to_timm_keys=False)


def timm_state_shapes(spec: ArchSpec, num_classes: int = 1000,
                      in_channels: int = 3) -> dict[str, tuple[int, ...]]:
    """timm's state-dict keys and shapes for ``spec``'s network (what the timm model has)."""
    to_timm(spec)
    return {theirs: shape for _, theirs, shape in _param_shapes(spec, num_classes, in_channels)}
