"""Compound scaling, step 2: from a baseline and coefficients to a family of models.

Three rules, and every member records which one made it (the published EfficientNet table
is *not* ``alpha^phi, beta^phi, gamma^phi``; see REFERENCE.md and tensorflow/tpu#390):

``budget`` (default)
    Member ``Bk`` gets the phi whose counted MACs (after all rounding, at the member's own
    resolution, 1000 classes) are closest to the base's counted MACs times the published
    ``Bk``'s MACs ratio to B0 (paper "FLOPS": 0.70/0.39, 1.0/0.39, ... 37/0.39). MACs are
    a non-decreasing step function of phi (channel rounding, ceil of repeats, resolution
    rounding), so phi is found by bisection on the real counts; the member must land within
    3 % of its target. The resolution is ``gamma^phi`` rounded to the nearest multiple of 8
    by default; where no phi lands within 3 % that way (MACs jump where the resolution
    crosses a multiple of 32, or where the 10 % channel rule bumps several layers at once),
    the solver rounds the resolution the other way (still less than one multiple from
    ``gamma^phi``), then tries finer multiples (4, 2, 1) and coarser ones (16, 32); see
    :func:`solve_budget`. ``meta['scaling']`` records the multiple and rounding used.
``paper``
    ``phi = 1, 2, ..., 7`` literally.
``official``
    The published (width, depth, resolution, dropout) rows for B1-B7. On EfficientNet-B0 it
    reproduces the published parameter counts to the unit. The resolution is the published
    multiplier (e.g. 260/224) applied to the base's resolution, rounded to the nearest pixel
    (the published 260, 300 and 380 are not multiples of 8); coefficients are not used.

Dropout: ``official`` uses the published 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5. The other rules
rise linearly from the base's dropout (0.2 for B0) at the first member to
``max(0.5, base dropout)`` at the last: for seven members, 0.20, 0.25, ..., 0.50 (the paper's
"0.2 for B0 rising linearly to 0.5 for B7", spread over B1..B7). A single custom budget
(:func:`fit_budget`) keeps the base's dropout unless given one.

Negative phi: custom budgets below the baseline's MACs are met by compound *down*-scaling,
phi down to :data:`PHI_MIN` (-2: width 0.83, depth 0.69, resolution 168 from B0's 224, about
45 % of its MACs, since repeats never drop below one and channels below eight). Shrinking
further would leave the regime the coefficients were searched in; a budget below what
``PHI_MIN`` reaches is an error that says so. Budgets above what :data:`PHI_MAX` (12) reaches are errors.

Pure: no torch, no Ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from nas.arch.cost import count
from nas.arch.rounding import round_resolution, scale_spec
from nas.arch.spec import ArchSpec
from nas.arch.units import format_macs, parse_macs
from nas.core.errors import ConfigError
from scaler.compound import PAPER_COEFFICIENTS, Coefficients, scale_candidate

RULES = ("budget", "paper", "official")
DEFAULT_NAMES = ("b1", "b2", "b3", "b4", "b5", "b6", "b7")
TOLERANCE = 0.03          # a budget member must land within 3 % of its target MACs
PHI_MIN = -2.0
PHI_MAX = 12.0
NUM_CLASSES = 1000        # the published counts are for ImageNet's 1000 classes
_PHI_RESOLUTION = 1e-7    # bisection stops when the bracket is this narrow


@dataclass(frozen=True)
class Published:
    """One row of the published EfficientNet table (TF ``efficientnet_params``).

    ``params`` and ``macs`` are the reference counts at the model's own resolution with 1000
    classes (conv + linear multiply-adds); ``paper_macs`` is the paper's rounded "FLOPS".
    """

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    params: int
    macs: int
    paper_macs: int

    @property
    def short(self) -> str:
        return self.name.rsplit("-", 1)[-1]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "width": self.width, "depth": self.depth,
                "resolution": self.resolution, "dropout": self.dropout, "params": self.params,
                "macs": self.macs, "paper_macs": self.paper_macs}


EFFICIENTNET: dict[str, Published] = {p.short: p for p in (
    Published("efficientnet-b0", 1.0, 1.0, 224, 0.2, 5_288_548, 385_814_752, 390_000_000),
    Published("efficientnet-b1", 1.0, 1.1, 240, 0.2, 7_794_184, 686_802_832, 700_000_000),
    Published("efficientnet-b2", 1.1, 1.2, 260, 0.3, 9_109_994, 993_561_872, 1_000_000_000),
    Published("efficientnet-b3", 1.2, 1.4, 300, 0.3, 12_233_232, 1_827_141_392, 1_800_000_000),
    Published("efficientnet-b4", 1.4, 1.8, 380, 0.4, 19_341_616, 4_393_771_024, 4_200_000_000),
    Published("efficientnet-b5", 1.6, 2.2, 456, 0.4, 30_389_784, 10_266_384_752, 9_900_000_000),
    Published("efficientnet-b6", 1.8, 2.6, 528, 0.5, 43_040_704, 19_067_593_536, 19_000_000_000),
    Published("efficientnet-b7", 2.0, 3.1, 600, 0.5, 66_347_960, 37_745_884_192, 37_000_000_000),
)}


def budget_ratio(name: str) -> float:
    """The published model's paper MACs relative to B0's (B1: 0.70 / 0.39 = 1.79)."""
    return EFFICIENTNET[name].paper_macs / EFFICIENTNET["b0"].paper_macs


def nearest_published(macs: int) -> Published:
    """The published EfficientNet closest in MACs (on a log scale)."""
    return min(EFFICIENTNET.values(), key=lambda p: abs(math.log(p.macs / macs)))


@dataclass(frozen=True)
class FamilyMember:
    """One scaled model. ``phi`` is None for ``official`` members; ``target_macs`` is set
    for ``budget`` members only; ``published`` is the EfficientNet row of the same name (for
    custom budgets: the nearest in MACs)."""

    name: str
    spec: ArchSpec
    params: int
    macs: int
    phi: float | None
    rule: str
    target_macs: int | None = None
    published: Published | None = None

    @property
    def target_error(self) -> float | None:
        """``macs / target_macs - 1`` (signed), or None without a target."""
        return None if self.target_macs is None else self.macs / self.target_macs - 1.0


# --------------------------------------------------------------------------- helpers


def _coefficients(coefficients: Coefficients | None) -> Coefficients:
    c = PAPER_COEFFICIENTS if coefficients is None else coefficients
    if not isinstance(c, Coefficients):
        raise ConfigError(f"--coefficients: expected Coefficients, got {type(c).__name__}")
    if min(c.alpha, c.beta, c.gamma) < 1.0:
        raise ConfigError(f"--coefficients {c}: compound scaling needs alpha, beta, gamma >= 1")
    return c


def member_spec_name(base_name: str, short: str) -> str:
    """``efficientnet-b0`` + ``b3`` -> ``efficientnet-b3``; ``mysearch`` + ``b3`` ->
    ``mysearch-b3``."""
    if not base_name:
        return short
    if base_name.endswith("-b0") and short in EFFICIENTNET:
        return base_name[:-3] + "-" + short
    return f"{base_name}-{short}"


def linear_dropout(base_dropout: float, n: int) -> list[float]:
    """Dropout of ``n`` members: linear from ``base_dropout`` to ``max(0.5, base_dropout)``."""
    end = max(0.5, float(base_dropout))
    if n == 1:
        return [round(float(base_dropout), 6)]
    return [round(base_dropout + (end - base_dropout) * i / (n - 1), 6) for i in range(n)]


def _finish(base: ArchSpec, spec: ArchSpec, short: str, rule: str, phi: float | None,
            c: Coefficients | None, target: int | None, published: Published | None,
            nearest: bool = False) -> FamilyMember:
    """Count the member and record its provenance in ``meta['family']``."""
    cost = count(spec, num_classes=NUM_CLASSES)
    base_cost = count(base, num_classes=NUM_CLASSES)
    scaling = spec.meta.get("scaling", {})
    fam: dict[str, Any] = {
        "rule": rule, "member": short, "phi": phi,
        "alpha": None if c is None else c.alpha,
        "beta": None if c is None else c.beta,
        "gamma": None if c is None else c.gamma,
        "width": scaling.get("width"), "depth": scaling.get("depth"),
        # gamma^phi (official: the published ratio to 224) and what rounding made of it
        "resolution_multiplier": scaling.get("resolution_multiplier"),
        "resolution_ratio": spec.resolution / base.resolution,
        "resolution": spec.resolution, "resolution_multiple": scaling.get("resolution_multiple"),
        "resolution_rounding": scaling.get("resolution_rounding", "nearest"),
        "dropout": float(spec.dropout),
        "num_classes": NUM_CLASSES, "params": cost.params, "macs": cost.macs,
        "base": {"name": base.name, "params": base_cost.params, "macs": base_cost.macs,
                 "resolution": base.resolution},
        "target_macs": target,
        "target_error": None if target is None else cost.macs / target - 1.0,
        "published": None if published is None else {
            **published.to_dict(), "match": "nearest in MACs" if nearest else "same name"},
    }
    return FamilyMember(short, spec.with_meta(family=fam), cost.params, cost.macs, phi, rule,
                        target, published)


# --------------------------------------------------------------------------- solving phi


@dataclass(frozen=True)
class Solution:
    """What :func:`solve_phi` found: the phi, its spec (rounded) and its counted MACs."""

    phi: float
    spec: ArchSpec
    macs: int
    resolution_multiple: int
    resolution_rounding: str
    key: tuple = ()


def _evaluator(base: ArchSpec, c: Coefficients, multiple: int, rounding: str, rule: str,
               dropout: float | None) -> Callable[[float], Solution]:
    cache: dict[float, Solution] = {}

    def at(phi: float) -> Solution:
        if phi not in cache:
            spec = scale_candidate(base, c, phi, multiple, rule=rule, dropout=dropout,
                                   resolution_rounding=rounding)
            key = (spec.stages, spec.stem, spec.head, spec.resolution)
            cache[phi] = Solution(phi, spec, count(spec, num_classes=NUM_CLASSES).macs,
                                  multiple, rounding, key)
        return cache[phi]
    return at


def _step_edge(at: Callable[[float], Solution], inside: float, outside: float) -> float:
    """Bisect between a phi ``inside`` a step and one ``outside`` it; returns the last
    phi known to be inside (the step's edge on the ``outside`` side)."""
    key = at(inside).key
    while abs(outside - inside) > _PHI_RESOLUTION:
        mid = (inside + outside) / 2
        if at(mid).key == key:
            inside = mid
        else:
            outside = mid
    return inside


def _short_phi(at: Callable[[float], Solution], e: Solution, lo: float, hi: float) -> float:
    """The phi with the fewest decimals giving the same spec as ``e`` (a whole step of phi
    gives one spec; 1.84 reads better than 1.8437261)."""
    left = _step_edge(at, e.phi, max(lo, e.phi - 4.0))
    right = _step_edge(at, e.phi, min(hi, e.phi + 4.0))
    for digits in range(0, 8):
        scale = 10 ** digits
        candidate = math.ceil(left * scale) / scale
        if candidate <= right and at(candidate).key == e.key:
            return candidate
    return e.phi


def solve_phi(base: ArchSpec, c: Coefficients, target_macs: int, resolution_multiple: int = 8,
              *, resolution_rounding: str = "nearest", rule: str = "budget",
              dropout: float | None = None, phi_min: float = PHI_MIN, phi_max: float = PHI_MAX,
              option: str = "--target-flops") -> Solution:
    """The phi whose scaled spec's counted MACs are closest to ``target_macs``.

    MACs never fall as phi grows (every rounding is monotone), so bisection brackets the
    target between two neighbouring steps and the closer one wins (the smaller on a tie).
    The returned phi is the shortest decimal inside its step. Raises :class:`ConfigError`
    when the target lies outside ``[MACs(phi_min), MACs(phi_max)]``. Does not apply the
    3 % tolerance (see :func:`fit_budget`).
    """
    if min(c.alpha, c.beta, c.gamma) < 1.0 or max(c.alpha, c.beta, c.gamma) == 1.0:
        raise ConfigError(f"--coefficients {c}: need alpha, beta, gamma >= 1 and at least one "
                          "> 1, or phi cannot change the MACs")
    at = _evaluator(base, c, resolution_multiple, resolution_rounding, rule, dropout)
    low, high = at(phi_min), at(phi_max)
    base_macs = count(base, num_classes=NUM_CLASSES).macs
    if target_macs < low.macs:
        raise ConfigError(
            f"{option} {format_macs(target_macs)} is below the baseline's "
            f"{format_macs(base_macs)} MACs by more than compound down-scaling reaches "
            f"(phi >= {phi_min:g}: {format_macs(low.macs)}); give a budget of at least "
            f"{format_macs(low.macs)} or search a smaller baseline")
    if target_macs > high.macs:
        raise ConfigError(
            f"{option} {format_macs(target_macs)} is above what phi <= {phi_max:g} reaches "
            f"from the baseline's {format_macs(base_macs)} MACs ({format_macs(high.macs)}); "
            "give a smaller budget")
    # Invariant: at(lo).macs <= target < at(hi).macs.
    lo, hi = phi_min, phi_max
    if high.macs == target_macs:
        lo = hi
    while hi - lo > _PHI_RESOLUTION:
        mid = (lo + hi) / 2
        if at(mid).macs <= target_macs:
            lo = mid
        else:
            hi = mid
    below, above = at(lo), at(hi)
    best = below if target_macs - below.macs <= above.macs - target_macs else above
    return at(_short_phi(at, best, phi_min, phi_max))


MAX_MULTIPLE = 32  # five stride-2 layers: a multiple of 32 keeps every feature map exact


def _multiples(multiple: int) -> list[int]:
    """The resolution multiples tried, in order: the given one, the finer ones, then the
    coarser ones up to 32: 8 -> [8, 4, 2, 1, 16, 32]."""
    out = [multiple]
    while out[-1] > 1:
        out.append(max(1, out[-1] // 2))
    m = multiple
    while m * 2 <= MAX_MULTIPLE:
        m *= 2
        out.append(m)
    return out


def solve_budget(base: ArchSpec, c: Coefficients, target_macs: int,
                 resolution_multiple: int = 8, *, tolerance: float = TOLERANCE,
                 refine: bool = True, dropout: float | None = None,
                 option: str = "--target-flops", label: str = "") -> Solution:
    """Solve phi for a budget, within ``tolerance``, in this order of preference:

    1. resolution rounded to the nearest ``resolution_multiple`` (the pure rule);
    2. the same multiple rounded down or up, whichever lands closer;
    3. with ``refine``, the same with each finer multiple (4, 2, 1), then each coarser one
       (16, 32).

    Why: counted MACs are a step function of phi with large steps. They jump by ~15-20 %
    where the resolution crosses a multiple of 32 (every stride-2 feature map grows by a
    padded row: 224 -> 228 px is +17 % on B0), by ~25 % where the 10 % channel rule bumps
    several narrow layers at once (width 1/0.9), and by ~48 % on B0 just above phi = 0
    (``ceil`` adds a layer to every stage). Rounding the resolution the other way (less
    than one multiple from ``gamma^phi``), finer multiples (smaller resolution steps) and
    coarser ones (resolution held while width and depth grow) reach into different gaps.
    The rule stays compound: depth and width are exactly ``alpha^phi`` and ``beta^phi``;
    only the resolution's rounding varies, and it is recorded in ``meta['scaling']``.

    Raises :class:`ConfigError` (one line) when nothing lands within ``tolerance``.
    """
    if not _is_rate(tolerance):
        raise ConfigError(f"--tolerance {tolerance!r}: expected a fraction such as 0.03")
    tried: list[Solution] = []
    for m in (_multiples(resolution_multiple) if refine else [resolution_multiple]):
        for rounding in ("nearest", "down", "up"):
            try:
                s = solve_phi(base, c, target_macs, m, resolution_rounding=rounding,
                              dropout=dropout, option=option)
            except ConfigError:
                if not tried:  # out of range for the pure rule: report that
                    raise
                continue
            tried.append(s)
            if rounding == "nearest" and abs(s.macs / target_macs - 1) <= tolerance:
                return s
        best = min(tried[-3:], key=lambda t: abs(t.macs / target_macs - 1))
        if abs(best.macs / target_macs - 1) <= tolerance:
            return best
    best = min(tried, key=lambda t: abs(t.macs / target_macs - 1))
    error = best.macs / target_macs - 1
    what = f"{option} {format_macs(target_macs)}{f' ({label})' if label else ''}"
    if refine:
        raise ConfigError(
            f"{what}: the closest compound scaling gets is {format_macs(best.macs)} "
            f"({error:+.1%}, phi {best.phi:g}) with any resolution multiple from 1 to "
            f"{MAX_MULTIPLE}, outside {tolerance:.0%}: the budget falls in a jump of the MACs; "
            "choose a budget a few percent away or other coefficients")
    raise ConfigError(
        f"{what}: the closest this baseline reaches is {format_macs(best.macs)} "
        f"({error:+.1%}, phi {best.phi:g}), outside {tolerance:.0%}; use a finer "
        f"--resolution-multiple than {resolution_multiple} (e.g. "
        f"{max(1, resolution_multiple // 2)}) or let the solver try other multiples (refine)")


def _is_rate(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and 0 <= v < 1)


def _budget_member(base: ArchSpec, c: Coefficients, short: str, target: int, multiple: int,
                   dropout: float | None, published: Published | None, nearest: bool,
                   option: str, tolerance: float, refine: bool, label: str = "") -> FamilyMember:
    s = solve_budget(base, c, target, multiple, tolerance=tolerance, refine=refine,
                     dropout=dropout, option=option, label=label)
    spec = s.spec.replace(name=member_spec_name(base.name, short))
    return _finish(base, spec, short, "budget", s.phi, c, target, published, nearest)


# --------------------------------------------------------------------------- the family


def make_family(base: ArchSpec, rule: str = "budget", coefficients: Coefficients | None = None,
                names: Sequence[str] = DEFAULT_NAMES, resolution_multiple: int = 8,
                tolerance: float = TOLERANCE, refine: bool = True) -> list[FamilyMember]:
    """Scale ``base`` into named members by ``rule`` (``budget``, ``paper`` or ``official``).

    ``coefficients`` default to the paper's (1.2, 1.1, 1.15); ``official`` ignores them.
    ``budget`` and ``official`` need names of the published table (``b1`` ... ``b7``);
    ``paper`` gives the k-th name phi = k.

    ``resolution_multiple`` rounds the ``paper`` and ``budget`` resolutions. A ``budget``
    member that misses its target by more than ``tolerance`` at that multiple is solved
    again (see :func:`solve_budget`): first with the resolution rounded the other way, then
    with finer and coarser multiples (``refine=False`` stops at the given one). The multiple
    and rounding used are in ``meta['scaling']``.
    """
    if rule not in RULES:
        raise ConfigError(f"--rule {rule!r}: unknown; use one of {', '.join(RULES)}")
    names = tuple(names)
    if not names or len(set(names)) != len(names) or not all(isinstance(n, str) and n
                                                              for n in names):
        raise ConfigError(f"--names {list(names)!r}: give distinct, non-empty member names")
    if not isinstance(resolution_multiple, int) or resolution_multiple < 1:
        raise ConfigError(f"--resolution-multiple {resolution_multiple!r}: expected a positive "
                          "integer number of pixels, e.g. 8")
    if rule in ("budget", "official"):
        unknown = [n for n in names if n not in EFFICIENTNET or n == "b0"]
        if unknown:
            raise ConfigError(f"--names {unknown[0]!r}: rule {rule!r} takes its targets from "
                              "the published table; use names among b1..b7 (or use "
                              "fit_budgets / --target-flops for custom budgets)")
    if rule == "official":
        return [_official_member(base, n) for n in names]
    c = _coefficients(coefficients)
    dropouts = linear_dropout(base.dropout, len(names))
    if rule == "paper":
        members = []
        for k, (short, dropout) in enumerate(zip(names, dropouts), start=1):
            spec = scale_candidate(base, c, float(k), resolution_multiple, rule="paper",
                                   dropout=dropout, name=member_spec_name(base.name, short))
            members.append(_finish(base, spec, short, "paper", float(k), c, None,
                                   EFFICIENTNET.get(short)))
        return members
    base_macs = count(base, num_classes=NUM_CLASSES).macs
    return [
        _budget_member(base, c, short, round(base_macs * budget_ratio(short)),
                       resolution_multiple, dropout, EFFICIENTNET[short], False,
                       "--rule budget: target", tolerance, refine, short)
        for short, dropout in zip(names, dropouts)]


def _official_member(base: ArchSpec, short: str) -> FamilyMember:
    p = EFFICIENTNET[short]
    resolution = round_resolution(base.resolution, p.resolution / EFFICIENTNET["b0"].resolution, 1)
    spec = scale_spec(base, width=p.width, depth=p.depth, resolution=resolution, dropout=p.dropout)
    scaling = dict(spec.meta["scaling"])
    scaling.update({"rule": "official", "phi": None, "published": p.name,
                    "resolution_multiplier": p.resolution / EFFICIENTNET["b0"].resolution,
                    "resolution_multiple": 1})
    spec = spec.replace(name=member_spec_name(base.name, short)).with_meta(scaling=scaling)
    return _finish(base, spec, short, "official", None, None, None, p)


# --------------------------------------------------------------------------- custom budgets


def fit_budget(base: ArchSpec, coefficients: Coefficients | None, target_macs: int | str,
               resolution_multiple: int = 4, *, name: str | None = None,
               dropout: float | None = None, tolerance: float = TOLERANCE,
               refine: bool = True) -> FamilyMember:
    """One member whose counted MACs land within ``tolerance`` of ``target_macs``.

    ``target_macs`` may be a string (``"600M"``, see :func:`nas.arch.units.parse_macs`). The
    member's name defaults to the budget (``600.0M``); ``published`` is the nearest
    EfficientNet in MACs. Raises :class:`ConfigError` when the closest reachable MACs are
    farther than ``tolerance`` after the fallbacks of :func:`solve_budget` (with
    ``refine=False``, only ``resolution_multiple`` is tried and the error suggests a finer
    one), or when the budget is outside what phi in [PHI_MIN, PHI_MAX] reaches.
    """
    target = parse_macs(target_macs)
    c = _coefficients(coefficients)
    short = name or format_macs(target)
    return _budget_member(base, c, short, target, resolution_multiple, dropout,
                          nearest_published(target), True, "--target-flops", tolerance, refine)


def fit_budgets(base: ArchSpec, coefficients: Coefficients | None,
                targets: Sequence[int | str], resolution_multiple: int = 4,
                tolerance: float = TOLERANCE, refine: bool = True) -> list[FamilyMember]:
    """:func:`fit_budget` for each target, in the given order (duplicates are an error)."""
    parsed = [parse_macs(t) for t in targets]
    if not parsed:
        raise ConfigError("--target-flops: give at least one budget, e.g. 600M")
    seen = set()
    for t in parsed:
        if t in seen:
            raise ConfigError(f"--target-flops {format_macs(t)}: given twice; list each budget once")
        seen.add(t)
    return [fit_budget(base, coefficients, t, resolution_multiple, tolerance=tolerance,
                       refine=refine) for t in parsed]


__all__ = ["RULES", "DEFAULT_NAMES", "TOLERANCE", "PHI_MIN", "PHI_MAX", "Published",
           "EFFICIENTNET", "FamilyMember", "budget_ratio", "nearest_published", "make_family",
           "fit_budget", "fit_budgets", "solve_phi", "solve_budget", "Solution", "linear_dropout", "member_spec_name"]
