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
    ``gamma^phi``), then tries finer multiples (4, 2, 1) and coarser ones (16, 32). Where
    that is not enough either (a depth step: just above phi = 0 ``ceil`` adds a layer to
    every stage of B0 at once, +48 %), it rounds the repeats to nearest instead of up, then
    holds the depth (then the width) of a neighbouring compound model and lets the other two
    follow phi; see :func:`solve_budget`. Every member's ``meta['scaling']`` and
    ``meta['family']`` name the ``method`` that made it (``compound``: ``alpha^phi,
    beta^phi, gamma^phi``; ``compound, depth rounded to nearest``; ``compound, depth kept``
    or ``compound, width kept``: that multiplier held at the recorded ``depth`` /
    ``width``), with the resolution multiple and rounding used. The same solver makes custom budgets
    (:func:`fit_budget`): on EfficientNet-B0 and on searched baselines every budget from
    the baseline's MACs to 100 times it lands within 3 % with the paper's coefficients.
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

Latency budgets: :func:`solve_budget` solves phi on any :class:`Cost` that grows with phi,
the counted MACs by default; :func:`fit_latency_budgets` gives it a latency predicted on a
device (made by :mod:`nas.scaling.latency`, which measures what it predicts from), within
:data:`LATENCY_TOLERANCE` (5 %) or the closest reachable, reported.

Pure: no torch, no Ray (a latency cost is passed in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

from nas.arch.cost import count
from nas.arch.rounding import round_resolution, scale_spec, scaled_layers
from nas.arch.spec import ArchSpec
from nas.arch.units import format_macs, parse_macs
from nas.core.errors import ConfigError
from scaler.compound import (
    METHOD_COMPOUND,
    METHOD_DEPTH_KEPT,
    METHOD_DEPTH_NEAREST,
    METHOD_WIDTH_KEPT,
    PAPER_COEFFICIENTS,
    Coefficients,
    candidate_multipliers,
    scale_candidate,
    scaled_resolution,
)

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
    for ``budget`` members at MACs budgets, ``target_ms`` and ``predicted_ms`` for those at
    latency budgets (:func:`fit_latency_budgets`); ``published`` is the EfficientNet row of
    the same name (for custom budgets: the nearest in MACs)."""

    name: str
    spec: ArchSpec
    params: int
    macs: int
    phi: float | None
    rule: str
    target_macs: int | None = None
    published: Published | None = None
    target_ms: float | None = None
    predicted_ms: float | None = None

    @property
    def target_error(self) -> float | None:
        """``macs / target_macs - 1`` (signed; at a latency budget ``predicted_ms /
        target_ms - 1``), or None without a target."""
        if self.target_ms is not None and self.predicted_ms is not None:
            return self.predicted_ms / self.target_ms - 1.0
        return None if self.target_macs is None else self.macs / self.target_macs - 1.0


# --------------------------------------------------------------------------- helpers


def _coefficients(coefficients: Coefficients | None) -> Coefficients:
    c = PAPER_COEFFICIENTS if coefficients is None else coefficients
    if not isinstance(c, Coefficients):
        raise ConfigError(f"coefficients: expected Coefficients, got {type(c).__name__}")
    if min(c.alpha, c.beta, c.gamma) < 1.0:
        raise ConfigError(f"coefficients={c}: compound scaling needs alpha, beta, gamma >= 1")
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
        # how the multipliers were made: "compound" (alpha^phi, beta^phi, gamma^phi) or
        # "compound, depth kept" (see solve_budget); None for the published table
        "method": scaling.get("method"),
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
class Cost:
    """What a budget is in: ``of(spec)`` is a spec's value (its counted MACs, or a latency
    predicted on a device), ``show`` writes a value as the user wrote the budget, ``name``
    says what it is in messages. The solver only needs the value to grow with phi; where it
    does so only roughly (a prediction from measured parts), bisection still finds a phi at
    which it crosses the budget. ``of`` is called once per distinct scaled spec."""

    name: str
    of: Callable[[ArchSpec], float]
    show: Callable[[float], str]


MACS = Cost("MACs", lambda spec: count(spec, num_classes=NUM_CLASSES).macs, format_macs)


@dataclass(frozen=True)
class Solution:
    """What :func:`solve_phi` found: the phi, its spec (rounded), its counted MACs and its
    ``cost`` (the value the budget was compared with: the MACs again, or a predicted
    latency).

    ``method`` is how the multipliers were made: ``compound`` (depth, width and resolution
    all from phi), ``compound, depth kept`` or ``compound, width kept`` (``hold`` names the
    multiplier held and its value; the other two from phi)."""

    phi: float
    spec: ArchSpec
    macs: int
    resolution_multiple: int
    resolution_rounding: str
    key: tuple = ()
    method: str = METHOD_COMPOUND
    hold: tuple[str, float] | None = None
    cost: float = 0.0


class _Evaluator:
    """Scaled specs and their counted MACs (and cost) along phi, for one multiple, rounding
    and hold.

    A phi is mapped to its layers and resolution cheaply (:func:`scaled_layers`); a spec is
    built and counted once per distinct result, so bisection inside one step costs little.
    ``at(phi)`` answers with that first spec (its ``meta`` may name another phi of the same
    step); :meth:`exact` builds the spec at ``phi`` itself, for the answer."""

    def __init__(self, base: ArchSpec, c: Coefficients, multiple: int, rounding: str,
                 rule: str, dropout: float | None, hold: tuple[str, float] | None = None,
                 depth_rounding: str = "ceil", cost: Cost = MACS):
        self.base, self.c, self.multiple, self.rounding = base, c, multiple, rounding
        self.cost = cost
        self.rule, self.dropout, self.hold = rule, dropout, hold
        self.depth_rounding = depth_rounding
        self.held = {} if hold is None else {hold[0]: hold[1]}
        self.by_phi: dict[float, Solution] = {}
        self.by_key: dict[tuple, Solution] = {}

    def key(self, phi: float) -> tuple:
        depth, width, res_mult, _ = candidate_multipliers(self.c, phi, **self.held)
        layers = scaled_layers(self.base, width, depth, depth_rounding=self.depth_rounding)
        return layers + (scaled_resolution(self.base.resolution, res_mult, self.multiple,
                                           self.rounding),)

    def exact(self, phi: float) -> Solution:
        spec = scale_candidate(self.base, self.c, phi, self.multiple, rule=self.rule,
                               dropout=self.dropout, resolution_rounding=self.rounding,
                               depth_rounding=self.depth_rounding, **self.held)
        key = self.key(phi)
        known = self.by_key.get(key)
        if known is not None:
            macs, value = known.macs, known.cost
        else:
            macs = count(spec, num_classes=NUM_CLASSES).macs
            value = macs if self.cost is MACS else self.cost.of(spec)
        return Solution(phi, spec, macs, self.multiple, self.rounding, key,
                        spec.meta["scaling"]["method"], self.hold, value)

    def __call__(self, phi: float) -> Solution:
        if phi not in self.by_phi:
            key = self.key(phi)
            if key not in self.by_key:
                self.by_key[key] = self.exact(phi)
            self.by_phi[phi] = self.by_key[key]
        return self.by_phi[phi]


def _evaluator(base: ArchSpec, c: Coefficients, multiple: int, rounding: str, rule: str,
               dropout: float | None, hold: tuple[str, float] | None = None,
               depth_rounding: str = "ceil", cost: Cost = MACS) -> _Evaluator:
    return _Evaluator(base, c, multiple, rounding, rule, dropout, hold, depth_rounding, cost)


def _step_edge(at: _Evaluator, inside: float, outside: float) -> float:
    """Bisect between a phi ``inside`` a step and one ``outside`` it; returns the last
    phi known to be inside (the step's edge on the ``outside`` side)."""
    key = at.key(inside)
    while abs(outside - inside) > _PHI_RESOLUTION:
        mid = (inside + outside) / 2
        if at.key(mid) == key:
            inside = mid
        else:
            outside = mid
    return inside


def _short_phi(at: _Evaluator, e: Solution, lo: float, hi: float) -> float:
    """The phi with the fewest decimals giving the same spec as ``e`` (a whole step of phi
    gives one spec; 1.84 reads better than 1.8437261)."""
    left = _step_edge(at, e.phi, max(lo, e.phi - 4.0))
    right = _step_edge(at, e.phi, min(hi, e.phi + 4.0))
    for digits in range(0, 8):
        scale = 10 ** digits
        candidate = math.ceil(left * scale) / scale
        if candidate <= right and at.key(candidate) == e.key:
            return candidate
    return e.phi


def _guess(at: _Evaluator, target: float) -> float:
    """Where phi should land if the cost grew smoothly: ``log(target / base) /
    log(factor)``, the factor being what one step of phi multiplies the MACs by (``alpha *
    beta^2 * gamma^2`` without the held multiplier's part; latency grows about as fast)."""
    c = at.c
    factor = {None: c.alpha * c.beta ** 2 * c.gamma ** 2, "depth": c.beta ** 2 * c.gamma ** 2,
              "width": c.alpha * c.gamma ** 2}[None if at.hold is None else at.hold[0]]
    base_cost = at(0.0).cost
    if factor <= 1.0 + 1e-9 or base_cost <= 0:
        return 0.0
    return math.log(target / base_cost) / math.log(factor)


def _bracket(at: _Evaluator, target: float, lo: float, hi: float) -> tuple[float, float]:
    """Bisect phi until ``at(lo).cost <= target < at(hi).cost`` and the bracket is narrower
    than the resolution. Where ``[lo, hi]`` does not reach the target, a single point: ``(lo,
    lo)`` with ``at(lo).cost > target`` (the budget is below what ``lo`` reaches), or ``(hi,
    hi)`` with ``at(hi).cost <= target`` (at or above what ``hi`` reaches).

    The bracket first closes in around :func:`_guess` (a window that doubles until it holds
    the target), so few distinct specs are built, and the ends of ``[lo, hi]`` are only
    built when the window reaches them (a latency cost measures what it builds); the answer
    is the same as bisecting from ``[lo, hi]`` when the cost never falls as phi grows (MACs
    never do)."""
    step = 0.125
    guess = min(hi, max(lo, _guess(at, target)))
    a, b = max(lo, guess - step), min(hi, guess + step)
    while a > lo and at(a).cost > target:
        b, step = a, step * 2
        a = max(lo, a - step)
    while b < hi and at(b).cost <= target:
        a, step = b, step * 2
        b = min(hi, b + step)
    if at(a).cost > target:
        return a, a
    if at(b).cost <= target:
        return b, b
    lo, hi = a, b
    while hi - lo > _PHI_RESOLUTION:
        mid = (lo + hi) / 2
        if at(mid).cost <= target:
            lo = mid
        else:
            hi = mid
    return lo, hi


def solve_phi(base: ArchSpec, c: Coefficients, target: float, resolution_multiple: int = 8,
              *, resolution_rounding: str = "nearest", rule: str = "budget",
              dropout: float | None = None, phi_min: float = PHI_MIN, phi_max: float = PHI_MAX,
              option: str = "budgets", hold: tuple[str, float] | None = None,
              depth_rounding: str = "ceil", cost: Cost = MACS) -> Solution:
    """The phi whose scaled spec's cost (``cost``: counted MACs by default) is closest to
    ``target``.

    MACs never fall as phi grows (every rounding is monotone), so bisection brackets the
    target between two neighbouring steps and the closer one wins (the smaller on a tie).
    The returned phi is the shortest decimal inside its step. ``hold`` (``("depth", d)`` or
    ``("width", w)``) holds that multiplier, ``depth_rounding="nearest"`` rounds repeats to
    the nearest integer (the fallbacks of :func:`solve_budget`). Raises
    :class:`ConfigError` when the target lies outside ``[cost(phi_min), cost(phi_max)]``.
    Does not apply the 3 % tolerance (see :func:`fit_budget`).
    """
    if min(c.alpha, c.beta, c.gamma) < 1.0 or max(c.alpha, c.beta, c.gamma) == 1.0:
        raise ConfigError(f"coefficients={c}: need alpha, beta, gamma >= 1 and at least one "
                          "> 1, or phi cannot change the MACs")
    at = _evaluator(base, c, resolution_multiple, resolution_rounding, rule, dropout, hold,
                    depth_rounding, cost)
    lo, hi = _bracket(at, target, phi_min, phi_max)
    if lo == hi and at(lo).cost != target:
        show = cost.show
        unit = " MACs" if cost is MACS else ""
        base_cost = cost.of(base)
        if at(lo).cost > target:
            reach = at(phi_min).cost
            raise ConfigError(
                f"{option}={show(target)} is below the baseline's "
                f"{show(base_cost)}{unit} by more than compound down-scaling reaches "
                f"(phi >= {phi_min:g}: {show(reach)}); give a budget of at least "
                f"{show(reach)} or search a smaller baseline")
        raise ConfigError(
            f"{option}={show(target)} is above what phi <= {phi_max:g} reaches "
            f"from the baseline's {show(base_cost)}{unit} ({show(at(phi_max).cost)}); "
            "give a smaller budget")
    below, above = at(lo), at(hi)
    best = below if target - below.cost <= above.cost - target else above
    return at.exact(_short_phi(at, best, phi_min, phi_max))


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


def _first_within(attempts: Callable[[int, str], Solution | None], multiples: list[int],
                  target: float, tolerance: float,
                  tried: list[Solution]) -> Solution | None:
    """Try each multiple: nearest rounding first, then whichever of down/up lands closer;
    returns the first solution within ``tolerance`` (every attempt goes into ``tried``)."""
    def miss(t: Solution) -> float:
        return abs(t.cost / target - 1)
    for m in multiples:
        here: list[Solution] = []
        for rounding in ("nearest", "down", "up"):
            s = attempts(m, rounding)
            if s is None:
                continue
            here.append(s)
            tried.append(s)
            if rounding == "nearest" and miss(s) <= tolerance:
                return s
        if here:
            best = min(here, key=miss)
            if miss(best) <= tolerance:
                return best
    return None


HELD_DEPTHS = 3  # depth steps tried on each side of the compound model's (see solve_budget)


def _held_depths(base: ArchSpec, below: ArchSpec) -> list[float]:
    """The depth multipliers the fallback holds, in order: that of ``below`` (the compound
    model just under the budget), then the next depth steps above and below it, alternating,
    :data:`HELD_DEPTHS` on each side.

    Each is the largest multiplier giving its repeats (``ceil(repeats * d)`` changes at
    ``d = k / repeats``), so ``below``'s is 1.0 when it has the baseline's layers."""
    bases = [s.repeats for s in base.stages]
    own = min(s.repeats / r for s, r in zip(below.stages, bases))
    most = max(1, max(math.ceil(r * own) for r in bases) + HELD_DEPTHS + 1)
    tops = sorted({k / r for r in bases for k in range(1, most * r + 1)})
    i = min(range(len(tops)), key=lambda j: abs(tops[j] - own))
    order = [own]
    for step in range(1, HELD_DEPTHS + 1):
        order += [tops[j] for j in (i + step, i - step) if 0 <= j < len(tops)]
    return order


def _holds(base: ArchSpec, c: Coefficients, target: float, multiple: int,
           dropout: float | None, cost: Cost = MACS) -> list[tuple[str, float]]:
    """What the fallbacks of :func:`solve_budget` hold, in order: the depths of
    :func:`_held_depths`, then the width of the compound model just under the budget and of
    the one just over it (``beta`` to the shortest phi of each one's step)."""
    at = _evaluator(base, c, multiple, "nearest", "budget", dropout, cost=cost)
    lo, hi = _bracket(at, target, PHI_MIN, PHI_MAX)
    holds: list[tuple[str, float]] = [("depth", d) for d in _held_depths(base, at(lo).spec)]
    for phi in dict.fromkeys((lo, hi)):
        holds.append(("width", c.beta ** _short_phi(at, at(phi), PHI_MIN, PHI_MAX)))
    return holds


def solve_budget(base: ArchSpec, c: Coefficients, target: float,
                 resolution_multiple: int = 8, *, tolerance: float = TOLERANCE,
                 refine: bool = True, dropout: float | None = None,
                 option: str = "budgets", label: str = "",
                 advice: str = "", cost: Cost = MACS, closest: bool = False) -> Solution:
    """Solve phi for a budget ``target`` in ``cost`` (counted MACs by default; a
    :class:`Cost` such as a predicted latency otherwise), within ``tolerance``, in this
    order of preference:

    1. ``compound``: resolution rounded to the nearest ``resolution_multiple`` (the pure
       rule), then the same multiple rounded down or up, whichever lands closer;
    2. with ``refine``, the same with each finer multiple (4, 2, 1), then each coarser one
       (16, 32);
    3. with ``refine``, ``compound, depth rounded to nearest``: the same multipliers, each
       stage's repeats rounded to the nearest integer instead of up (the stages then gain
       layers at different phi, not all at once), with the multiples and roundings of 1, 2;
    4. with ``refine``, ``compound, depth kept``: the depth of the compound model just below
       the budget is held, and width and resolution follow ``beta^phi`` and ``gamma^phi``
       to the budget (phi solved again), with the multiples and roundings of 1 and 2; then
       the same holding the next depth steps above and below (:func:`_held_depths`);
    5. with ``refine``, ``compound, width kept``: the width of the compound model just below
       (then just above) the budget is held while depth and resolution follow phi.

    Why: counted MACs are a step function of phi with large steps. They jump by ~15-20 %
    where the resolution crosses a multiple of 32 (every stride-2 feature map grows by a
    padded row: 224 -> 228 px is +17 % on B0), by ~25 % where the 10 % channel rule bumps
    several narrow layers at once (width 1/0.9), and by ~48 % on B0 just above phi = 0
    (``ceil`` adds a layer to every stage at once). Rounding the resolution the other way
    (less than one multiple from ``gamma^phi``), finer multiples (smaller resolution steps)
    and coarser ones (resolution held while width and depth grow) reach into the smaller
    gaps; no rounding of the resolution reaches into a depth step, where only holding the
    depth does (e.g. B0 at 420M or 500M: the compound models nearest are 385.8M and 569.7M).
    Where two jumps coincide (a resolution step and the channel rule's, say), holding one
    multiplier lets the others move past it. Steps 1 and 2 keep depth, width and resolution
    at ``alpha^phi``, ``beta^phi``, ``gamma^phi`` (only the resolution's rounding varies);
    steps 3 to 5 say so in ``meta['scaling']['method']``, with the multiplier they held in
    ``meta['scaling']['depth']`` / ``['width']``, or ``depth_rounding: nearest``.
    Measured (``tests/test_scaler.py``): with the paper's coefficients, 60 budgets
    log-spaced from 1x to 100x of EfficientNet-B0 and of a sampled MnasNet-space child all
    land within 3 %.

    Raises :class:`ConfigError` (one line, ending with ``advice`` when given) when nothing
    lands within ``tolerance``; with ``closest``, returns the closest solution tried
    instead (the caller reports its miss). A budget out of reach at any phi is an error
    either way.
    """
    if not _is_rate(tolerance):
        raise ConfigError(f"tolerance={tolerance!r}: expected a fraction such as 0.03")
    multiples = _multiples(resolution_multiple) if refine else [resolution_multiple]
    tried: list[Solution] = []

    def compound(m: int, rounding: str) -> Solution | None:
        try:
            return solve_phi(base, c, target, m, resolution_rounding=rounding,
                             dropout=dropout, option=option, cost=cost)
        except ConfigError:
            if not tried:  # out of range for the pure rule: report that
                raise
            return None

    found = _first_within(compound, multiples, target, tolerance, tried)
    if found is None and refine:

        def nearest_depth(m: int, rounding: str) -> Solution | None:
            try:
                return solve_phi(base, c, target, m, resolution_rounding=rounding,
                                 dropout=dropout, option=option, depth_rounding="nearest",
                                 cost=cost)
            except ConfigError:
                return None

        found = _first_within(nearest_depth, multiples, target, tolerance, tried)
    if found is None and refine:
        for hold in _holds(base, c, target, resolution_multiple, dropout, cost):

            def held(m: int, rounding: str, hold: tuple[str, float] = hold) -> Solution | None:
                try:
                    return solve_phi(base, c, target, m, resolution_rounding=rounding,
                                     dropout=dropout, option=option, hold=hold, cost=cost)
                except ConfigError:
                    return None

            found = _first_within(held, multiples, target, tolerance, tried)
            if found is not None:
                break
    if found is not None:
        return found
    best = min(tried, key=lambda t: abs(t.cost / target - 1))
    if closest:
        return best
    error = best.cost / target - 1
    show = cost.show
    what = f"{option}={show(target)}{f' ({label})' if label else ''}"
    advice = advice or "choose a budget a few percent away or other coefficients"
    if refine:
        raise ConfigError(
            f"{what}: the closest compound scaling gets is {show(best.cost)} "
            f"({error:+.1%}, phi {best.phi:g}) with any resolution multiple from 1 to "
            f"{MAX_MULTIPLE}, with the depth rounded up or to nearest, or holding the depth or "
            f"the width, outside "
            f"{tolerance:.0%}; {advice}")
    raise ConfigError(
        f"{what}: the closest this baseline reaches is {show(best.cost)} "
        f"({error:+.1%}, phi {best.phi:g}), outside {tolerance:.0%}; use a finer "
        f"resolution_multiple than {resolution_multiple} (e.g. "
        f"resolution_multiple={max(1, resolution_multiple // 2)}) or let the solver try other multiples (refine)")


def _is_rate(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and 0 <= v < 1)


def _budget_member(base: ArchSpec, c: Coefficients, short: str, target: int, multiple: int,
                   dropout: float | None, published: Published | None, nearest: bool,
                   option: str, tolerance: float, refine: bool, label: str = "",
                   advice: str = "") -> FamilyMember:
    s = solve_budget(base, c, target, multiple, tolerance=tolerance, refine=refine,
                     dropout=dropout, option=option, label=label, advice=advice)
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
        raise ConfigError(f"rule={rule!r}: unknown; use one of {', '.join(RULES)}")
    names = tuple(names)
    if not names or len(set(names)) != len(names) or not all(isinstance(n, str) and n
                                                              for n in names):
        raise ConfigError(f"names={list(names)!r}: give distinct, non-empty member names")
    if not isinstance(resolution_multiple, int) or resolution_multiple < 1:
        raise ConfigError(f"resolution_multiple={resolution_multiple!r}: expected a positive "
                          "integer number of pixels, e.g. 8")
    if rule in ("budget", "official"):
        unknown = [n for n in names if n not in EFFICIENTNET or n == "b0"]
        if unknown:
            raise ConfigError(f"names={unknown[0]!r}: rule {rule!r} takes its targets from "
                              "the published table; use names among b1..b7 (or use "
                              "fit_budgets for custom budgets)")
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
                       "rule='budget', the target", tolerance, refine, short,
                       f"member {short} cannot be made; use other coefficients (coefficients= "
                       "or scaling=) or another rule (rule='paper' or rule='official')")
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
               refine: bool = True, option: str = "budgets") -> FamilyMember:
    """One member whose counted MACs land within ``tolerance`` of ``target_macs``
    (``option``: the setting that gave it, for messages).

    ``target_macs`` may be a string (``"600M"``, see :func:`nas.arch.units.parse_macs`). The
    member's name defaults to the budget (``600.0M``); ``published`` is the nearest
    EfficientNet in MACs. Raises :class:`ConfigError` when the closest reachable MACs are
    farther than ``tolerance`` after the fallbacks of :func:`solve_budget` (with
    ``refine=False``, only ``resolution_multiple`` is tried and the error suggests a finer
    one), or when the budget is outside what phi in [PHI_MIN, PHI_MAX] reaches.
    """
    target = parse_macs(target_macs, option)
    c = _coefficients(coefficients)
    short = name or format_macs(target)
    return _budget_member(base, c, short, target, resolution_multiple, dropout,
                          nearest_published(target), True, option, tolerance, refine)


LATENCY_TOLERANCE = 0.05  # a latency budget member's prediction lands within 5 %


def fit_latency_budgets(base: ArchSpec, coefficients: Coefficients | None,
                        targets_ms: Sequence[float], cost: Cost,
                        resolution_multiple: int = 4, *,
                        tolerance: float = LATENCY_TOLERANCE, refine: bool = True,
                        option: str = "budgets",
                        on_miss: Callable[[str], None] | None = None) -> list[FamilyMember]:
    """One member per latency budget (milliseconds, in the given order): phi solved by
    :func:`solve_budget` on ``cost``, the latency a device's table predicts for a spec
    (``cost.of(spec)`` in ms; :mod:`nas.scaling.latency` makes it, measuring the parts a
    candidate needs). Pure: the prediction is passed in.

    A member lands within ``tolerance`` (5 %) of its budget by prediction where any of
    :func:`solve_budget`'s fallbacks gets there; where none does (a rounding step of the
    depth, width or resolution jumps over it), the closest solution tried is taken and
    ``on_miss`` is told, in one line; its miss is in ``meta['family']['target_error']``.
    A budget beyond what phi in [PHI_MIN, PHI_MAX] reaches is a :class:`ConfigError`.
    """
    if not targets_ms:
        raise ConfigError(f"{option}: give at least one budget, e.g. ['5ms', '10ms']")
    if len(set(targets_ms)) != len(targets_ms):
        twice = next(t for i, t in enumerate(targets_ms) if t in targets_ms[:i])
        raise ConfigError(f"{option}={cost.show(twice)}: given twice; list each budget once")
    if not _is_rate(tolerance) or tolerance == 0:
        raise ConfigError(f"tolerance={tolerance!r}: expected a fraction such as 0.05")
    c = _coefficients(coefficients)
    members = []
    for target in targets_ms:
        s = solve_budget(base, c, target, resolution_multiple, tolerance=tolerance,
                         refine=refine, option=option, cost=cost, closest=True)
        error = s.cost / target - 1
        if abs(error) > tolerance and on_miss is not None:
            on_miss(f"{option}={cost.show(target)}: no scaling of this baseline is predicted "
                    f"within {tolerance:.0%} (rounding steps of depth, width and resolution "
                    f"jump over it); took the closest, {cost.show(s.cost)} ({error:+.1%}, "
                    f"phi {s.phi:g})")
        short = cost.show(target)
        spec = s.spec.replace(name=member_spec_name(base.name, short))
        m = _finish(base, spec, short, "budget", s.phi, c, None, nearest_published(s.macs),
                    True)
        fam = dict(m.spec.meta["family"])
        fam.update({"budget": "latency", "cost": cost.name, "target_ms": target,
                    "predicted_ms": s.cost, "target_error": error, "tolerance": tolerance,
                    "within_tolerance": abs(error) <= tolerance})
        members.append(replace(m, spec=m.spec.with_meta(family=fam), target_ms=target,
                               predicted_ms=s.cost))
    return members


def fit_budgets(base: ArchSpec, coefficients: Coefficients | None,
                targets: Sequence[int | str], resolution_multiple: int = 4,
                tolerance: float = TOLERANCE, refine: bool = True,
                option: str = "budgets") -> list[FamilyMember]:
    """:func:`fit_budget` for each target, in the given order (duplicates are an error;
    ``option`` names the setting that gave the targets in messages)."""
    parsed = [parse_macs(t, option) for t in targets]
    if not parsed:
        raise ConfigError(f"{option}: give at least one budget, e.g. ['600M']")
    seen = set()
    for t in parsed:
        if t in seen:
            raise ConfigError(f"{option}={format_macs(t)}: given twice; list each budget once")
        seen.add(t)
    return [fit_budget(base, coefficients, t, resolution_multiple, tolerance=tolerance,
                       refine=refine, option=option) for t in parsed]


__all__ = ["METHOD_COMPOUND", "METHOD_DEPTH_KEPT", "METHOD_WIDTH_KEPT", "METHOD_DEPTH_NEAREST",
           "RULES", "DEFAULT_NAMES", "TOLERANCE", "PHI_MIN", "PHI_MAX", "Published",
           "EFFICIENTNET", "FamilyMember", "budget_ratio", "nearest_published", "make_family",
           "fit_budget", "fit_budgets", "solve_phi", "solve_budget", "Solution", "linear_dropout", "member_spec_name",
           "Cost", "MACS", "LATENCY_TOLERANCE", "fit_latency_budgets"]
