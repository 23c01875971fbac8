"""The paper's Table 7 on your baseline: width-only, depth-only and resolution-only scalings
at the compound model's multiply-adds (pure: the models and their table; training them is
the caller's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from nas.arch.cost import count_macs, count_params
from nas.arch.rounding import round_resolution, scale_spec
from nas.arch.spec import ArchSpec
from nas.arch.units import format_macs
from scaler.compound import Coefficients, proxy_resolution, scale_candidate

# Single-dimension multipliers tried: 1.0, 1.005, ..., 5.0; the one closest in MACs wins.
_STEPS = tuple(1 + i / 200 for i in range(801))


@dataclass(frozen=True)
class CompareModel:
    """One row of the comparison: how the baseline was scaled and at which proxy resolution
    it is trained."""

    label: str
    spec: ArchSpec
    width: float
    depth: float
    resolution_multiplier: float
    proxy_resolution: int

    @property
    def slug(self) -> str:
        return self.label.replace(" ", "-")


def _closest(macs_of: Callable[[float], tuple[ArchSpec, int]], target: int
             ) -> tuple[float, ArchSpec]:
    best = min(_STEPS, key=lambda v: abs(macs_of(v)[1] - target))
    return best, macs_of(best)[0]


def single_dimension(base: ArchSpec, target_macs: int, kind: str) -> tuple[float, ArchSpec]:
    """The ``kind`` (``width``, ``depth`` or ``resolution``) scaling of ``base`` whose MACs
    are closest to ``target_macs``: (its multiplier, its spec)."""
    def by_width(w: float) -> tuple[ArchSpec, int]:
        s = scale_spec(base, width=w)
        return s, count_macs(s)

    def by_depth(d: float) -> tuple[ArchSpec, int]:
        s = scale_spec(base, depth=d)
        return s, count_macs(s)

    def by_res(r: float) -> tuple[ArchSpec, int]:
        s = scale_spec(base, resolution=round_resolution(base.resolution, r, 8))
        return s, count_macs(s)

    fn = {"width": by_width, "depth": by_depth, "resolution": by_res}[kind]
    multiplier, spec = _closest(fn, target_macs)
    if kind == "resolution":
        multiplier = spec.resolution / base.resolution
    return multiplier, spec


def single_dimension_models(base: ArchSpec, c: Coefficients, resolution_multiple: int,
                            base_proxy_resolution: int) -> list[CompareModel]:
    """The baseline, its width-, depth- and resolution-only scalings closest to the compound
    phi=1 model's MACs, and the compound model itself."""
    compound = scale_candidate(base, c, 1.0, resolution_multiple)
    target = count_macs(compound)
    w, sw = single_dimension(base, target, "width")
    d, sd = single_dimension(base, target, "depth")
    r, sr = single_dimension(base, target, "resolution")
    depth_m, width_m, res_m = c.multipliers(1.0)
    return [
        CompareModel("baseline", base, 1.0, 1.0, 1.0, base_proxy_resolution),
        CompareModel("width only", sw, w, 1.0, 1.0, base_proxy_resolution),
        CompareModel("depth only", sd, 1.0, d, 1.0, base_proxy_resolution),
        CompareModel("resolution only", sr, 1.0, 1.0, r,
                     proxy_resolution(base_proxy_resolution, r, 1.0)),
        CompareModel("compound", compound, width_m, depth_m, res_m,
                     proxy_resolution(base_proxy_resolution, c.gamma, 1.0)),
    ]


HEADER = ("model", "width", "depth", "resolution", "MACs", "params", "proxy resolution",
          "proxy accuracy")


def table_rows(models: list[CompareModel], accuracy: dict[str, float | None]) -> list[list[str]]:
    """The table's cells; ``accuracy[label]`` is None for a model whose training failed."""
    rows = []
    for m in models:
        acc = accuracy.get(m.label)
        rows.append([m.label, f"{m.width:.3f}", f"{m.depth:.3f}",
                     f"{m.spec.resolution} ({m.resolution_multiplier:.3f}x)",
                     format_macs(count_macs(m.spec)), f"{count_params(m.spec):,}",
                     str(m.proxy_resolution), "failed" if acc is None else f"{acc:.4f}"])
    return rows


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
