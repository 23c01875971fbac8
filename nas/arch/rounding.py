"""The one place where multipliers become channel counts, repeats and resolutions.

Every scaled spec (proxy width, compound scaling, search-space filter multipliers) goes
through these functions, so the builder and the cost model only ever read resolved integers.
"""

from __future__ import annotations

import math

from nas.arch.spec import ArchSpec
from nas.core.errors import SpecError

CHANNEL_DIVISOR = 8


def round_filters(channels: float, multiplier: float = 1.0, divisor: int = CHANNEL_DIVISOR,
                  min_value: int | None = None) -> int:
    """Scale a channel count and round it to a multiple of ``divisor`` (the "10 % rule").

    ``max(min_value, int(c * m + divisor / 2) // divisor * divisor)``, bumped by one
    ``divisor`` if that fell below 90 % of ``c * m``. ``min_value`` defaults to ``divisor``.
    """
    if multiplier <= 0 or channels <= 0:
        raise SpecError(f"round_filters: channels and multiplier must be positive, got "
                        f"{channels!r} x {multiplier!r}")
    target = channels * multiplier
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(target + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * target:
        rounded += divisor
    return int(rounded)


DEPTH_ROUNDING = ("ceil", "nearest")


def round_repeats(repeats: int, multiplier: float = 1.0, rounding: str = "ceil") -> int:
    """Scale a stage's layer count: ``ceil(repeats * multiplier)`` (at least 1), the
    reference implementations' rule; ``rounding="nearest"`` rounds half up instead (the
    budget solver's fallback, where ``ceil`` adds a layer to many stages at once)."""
    if multiplier <= 0:
        raise SpecError(f"round_repeats: multiplier must be positive, got {multiplier!r}")
    if rounding not in DEPTH_ROUNDING:
        raise SpecError(f"round_repeats: rounding {rounding!r}; use one of "
                        f"{', '.join(DEPTH_ROUNDING)}")
    # The small epsilon keeps 1.1 * 10 from becoming 12 through float error.
    if rounding == "nearest":
        return max(1, int(math.floor(repeats * multiplier + 0.5 + 1e-9)))
    return max(1, int(math.ceil(repeats * multiplier - 1e-9)))


RESOLUTION_ROUNDING = ("nearest", "down", "up")
_ON_MULTIPLE = 1e-6  # pixels


def round_resolution(resolution: float, multiplier: float = 1.0, multiple: int = 8,
                     rounding: str = "nearest") -> int:
    """Scale an input resolution and round it to a multiple of ``multiple``.

    ``nearest`` (the default) takes the nearest multiple; ``down`` and ``up`` take the
    multiple on that side of the exact value (the budget solver uses them when the nearest
    one cannot land a model within its MACs tolerance).
    """
    if multiplier <= 0 or resolution <= 0:
        raise SpecError(f"round_resolution: resolution and multiplier must be positive, got "
                        f"{resolution!r} x {multiplier!r}")
    if rounding not in RESOLUTION_ROUNDING:
        raise SpecError(f"round_resolution: rounding {rounding!r}; use one of "
                        f"{', '.join(RESOLUTION_ROUNDING)}")
    exact = resolution * multiplier
    nearest = max(multiple, int(round(exact / multiple)) * multiple)
    # Within a millionth of a pixel the exact value is on the multiple: float noise (224 *
    # 1.15 ** 1e-10) must not move the resolution by a whole multiple.
    if rounding == "down" and nearest > exact + _ON_MULTIPLE and nearest > multiple:
        return nearest - multiple
    if rounding == "up" and nearest < exact - _ON_MULTIPLE:
        return nearest + multiple
    return nearest


def scaled_layers(spec: ArchSpec, width: float = 1.0, depth: float = 1.0,
                  divisor: int = CHANNEL_DIVISOR, depth_rounding: str = "ceil"
                  ) -> tuple[int, tuple[int, ...], tuple[int, ...], int]:
    """What :func:`scale_spec` makes of the layers, without building the spec: the stem's
    channels, each stage's output channels and repeats, and the head's channels (0: none).
    Cheap, for searches over multipliers that only need to tell two scalings apart."""
    outs = tuple(round_filters(s.out, width, divisor) for s in spec.stages)
    repeats = tuple(round_repeats(s.repeats, depth, depth_rounding) for s in spec.stages)
    head = round_filters(spec.head, width, divisor) if spec.head else 0
    return round_filters(spec.stem, width, divisor), outs, repeats, head


def scale_spec(spec: ArchSpec, width: float = 1.0, depth: float = 1.0,
               resolution: int | None = None, dropout: float | None = None,
               divisor: int = CHANNEL_DIVISOR, depth_rounding: str = "ceil") -> ArchSpec:
    """Scale a baseline in width and depth (and set its resolution), resolving all rounding.

    Stem, every stage's output and the head are rounded with :func:`round_filters`; repeats
    with :func:`round_repeats` (``depth_rounding``: ``ceil``, the default, or ``nearest``,
    then recorded). ``resolution`` is the new input size in pixels (use
    :func:`round_resolution` to get one from a multiplier). The multipliers are recorded in
    the new spec's ``meta['scaling']``.
    """
    stem, outs, repeats, head = scaled_layers(spec, width, depth, divisor, depth_rounding)
    stages = tuple(s.replace(out=o, repeats=r) for s, o, r in zip(spec.stages, outs, repeats))
    new = spec.replace(
        stages=stages,
        stem=stem,
        head=head,
        resolution=spec.resolution if resolution is None else int(resolution),
        dropout=spec.dropout if dropout is None else float(dropout),
    )
    scaling = {"width": float(width), "depth": float(depth),
               "resolution": int(new.resolution), "base_resolution": int(spec.resolution),
               "divisor": int(divisor)}
    if depth_rounding != "ceil":
        scaling["depth_rounding"] = depth_rounding
    if spec.name:
        scaling["base"] = spec.name
    return new.with_meta(scaling=scaling)


def as_trained(spec: ArchSpec, width: float | None = None, resolution: int | None = None,
               dropout: float | None = None, drop_path_rate: float | None = None) -> ArchSpec:
    """The spec as a training run builds it: width-scaled (a proxy's or ``--width-mult``), at
    the training resolution, with the run's dropout and drop-path rate. ``None`` (and a
    width of 1) leaves that part of the spec as it is."""
    out = scale_spec(spec, width=width) if width is not None and width != 1.0 else spec
    changes: dict[str, float | int] = {}
    if resolution is not None:
        changes["resolution"] = int(resolution)
    if dropout is not None:
        changes["dropout"] = float(dropout)
    if drop_path_rate is not None:
        changes["drop_path_rate"] = float(drop_path_rate)
    return out.replace(**changes) if changes else out
