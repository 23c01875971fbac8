"""Compound scaling, step 1 (EfficientNet section 3.3): the (alpha, beta, gamma) grid.

Depth ``d = alpha^phi``, width ``w = beta^phi``, resolution ``r = gamma^phi`` with
``alpha * beta^2 * gamma^2 ~= 2`` and all three ``>= 1``, so the multiply-adds grow about
``2^phi``. Step 1 fixes ``phi = 1`` and trains every grid point on the baseline; the best
point's coefficients then scale the family (:mod:`scaler.family`).

Everything here is pure: no torch, no Ray. The Ray Tune side (``scale.py``) takes
:func:`distinct_candidates` as its trial list, reports one :class:`GridResult` per trial and
hands them to :func:`select_best`. All rounding goes through :mod:`nas.arch.rounding`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence

from nas.arch.cost import count
from nas.arch.rounding import RESOLUTION_ROUNDING, round_resolution, scale_spec
from nas.arch.spec import ArchSpec
from nas.arch.units import format_macs
from nas.core.checks import is_int, is_number
from nas.core.errors import ConfigError

#: How a scaled spec's multipliers were made (``meta['scaling']['method']``): all three from
#: phi, or depth (width) held while the other two follow phi (the budget solver's fallbacks).
METHOD_COMPOUND = "compound"
METHOD_DEPTH_KEPT = "compound, depth kept"
METHOD_WIDTH_KEPT = "compound, width kept"
METHOD_DEPTH_NEAREST = "compound, depth rounded to nearest"

#: How the re-check chooses among candidates its seeds cannot separate (``grid.tie_rule``,
#: :func:`scaler.recheck.decide`): the one closest to the paper's coefficients, or the best mean.
TIE_RULES = ("paper", "mean")

_DECIMALS = 10          # grid values are exact decimals, rounded to this many places
MAX_GRID_POINTS = 1_000_000


def _dec(x: float) -> Decimal:
    """The exact decimal a grid value stands for (0.05 * 3 is 0.15, not 0.15000000000000002)."""
    return Decimal(repr(round(float(x), _DECIMALS)))


@dataclass(frozen=True)
class Coefficients:
    """Compound-scaling coefficients: ``alpha`` (depth), ``beta`` (width), ``gamma`` (resolution)."""

    alpha: float
    beta: float
    gamma: float

    def __post_init__(self) -> None:
        for key in ("alpha", "beta", "gamma"):
            v = getattr(self, key)
            if not is_number(v) or float(v) <= 0:
                raise ConfigError(f"coefficient {key} = {v!r}: expected a positive number "
                                  "(the paper's are alpha 1.2, beta 1.1, gamma 1.15)")
            object.__setattr__(self, key, float(v))

    def product(self) -> float:
        """``alpha * beta^2 * gamma^2``: the factor by which one step of phi multiplies MACs."""
        return float(_dec(self.alpha) * _dec(self.beta) ** 2 * _dec(self.gamma) ** 2)

    def multipliers(self, phi: float) -> tuple[float, float, float]:
        """``(depth, width, resolution)`` multipliers at ``phi``: alpha^phi, beta^phi, gamma^phi."""
        return self.alpha ** phi, self.beta ** phi, self.gamma ** phi

    def to_dict(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}

    @classmethod
    def from_dict(cls, d: Any, source: str = "coefficients") -> "Coefficients":
        if not isinstance(d, Mapping):
            raise ConfigError(f"{source}: expected a mapping with alpha, beta and gamma")
        keys = {"alpha", "beta", "gamma"}
        extra = sorted(set(d) - keys)
        if extra:
            raise ConfigError(f"{source}.{extra[0]}: unknown key; allowed keys: alpha, beta, gamma")
        missing = sorted(keys - set(d))
        if missing:
            raise ConfigError(f"{source}.{missing[0]}: missing; give alpha, beta and gamma")
        for k in ("alpha", "beta", "gamma"):
            if not is_number(d[k]):
                hint = " (YAML reads 1e0 as a string: write 1.0)" if isinstance(d[k], str) else ""
                raise ConfigError(f"{source}.{k}: got {d[k]!r}; expected a positive number{hint}")
        return cls(d["alpha"], d["beta"], d["gamma"])

    def __str__(self) -> str:
        return f"alpha={self.alpha:g} beta={self.beta:g} gamma={self.gamma:g}"


#: What the paper's grid search found for EfficientNet-B0.
PAPER_COEFFICIENTS = Coefficients(1.2, 1.1, 1.15)


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class GridConfig:
    """The grid of step 1: every ``(alpha, beta, gamma)`` on a ``step`` lattice inside the
    ranges (both ends included) with ``|alpha * beta^2 * gamma^2 - target| <= tol``.

    Defaults are the public NNI example's grid (alpha in [1, 2], beta and gamma in
    [1, 1.5], step 0.05, target 2, tolerance 0.1).
    """

    step: float = 0.05
    alpha_range: tuple[float, float] = (1.0, 2.0)
    beta_range: tuple[float, float] = (1.0, 1.5)
    gamma_range: tuple[float, float] = (1.0, 1.5)
    target: float = 2.0
    tol: float = 0.1
    # Before choosing, the best ``recheck_top`` candidates are trained ``recheck_seeds`` more
    # times; ``tie_rule`` picks among those the seeds cannot separate (scaler.recheck).
    recheck_top: int = 5
    recheck_seeds: int = 2
    tie_rule: str = "paper"

    def __post_init__(self) -> None:
        if not is_number(self.step) or self.step <= 0:
            raise ConfigError(f"grid.step={self.step!r}: must be a positive grid step; use e.g. 0.05")
        if self.step < 1e-6:  # grid values are decimals of _DECIMALS places
            raise ConfigError(f"grid.step={self.step!r}: finer than 1e-06, the finest grid step; "
                              "use e.g. 0.05")
        object.__setattr__(self, "step", float(self.step))
        for key in ("alpha_range", "beta_range", "gamma_range"):
            option = f"grid.{key}"
            r = getattr(self, key)
            if (not isinstance(r, (tuple, list)) or len(r) != 2 or not all(is_number(v) for v in r)):
                raise ConfigError(f"{option}={r!r}: expected two numbers LOW,HIGH, e.g. [1.0, 1.5]")
            lo, hi = float(r[0]), float(r[1])
            if lo < 1.0:
                raise ConfigError(f"{option}={lo:g},{hi:g}: compound-scaling coefficients are "
                                  ">= 1 (scaling never shrinks a dimension); start the range at 1 "
                                  "or above")
            if lo > hi:
                raise ConfigError(f"{option}={lo:g},{hi:g}: LOW is above HIGH; give the range "
                                  "as LOW,HIGH")
            object.__setattr__(self, key, (lo, hi))
        if not is_number(self.target) or self.target < 1:
            raise ConfigError(f"grid.target={self.target!r}: the MACs factor per step of phi must "
                              "be a number >= 1; the paper uses 2")
        object.__setattr__(self, "target", float(self.target))
        if not is_number(self.tol) or self.tol < 0:
            raise ConfigError(f"grid.tol={self.tol!r}: must be a number >= 0; use e.g. 0.1")
        object.__setattr__(self, "tol", float(self.tol))
        if not is_int(self.recheck_top) or self.recheck_top < 1:
            raise ConfigError(f"grid.recheck_top: got {self.recheck_top!r}; use an integer >= 1 "
                              "(1 re-trains only the grid's best)")
        if not is_int(self.recheck_seeds) or self.recheck_seeds < 0:
            raise ConfigError(f"grid.recheck_seeds: got {self.recheck_seeds!r}; use an integer "
                              ">= 0 (0: choose on the grid's single run)")
        if self.tie_rule not in TIE_RULES:
            raise ConfigError(f"grid.tie_rule: got {self.tie_rule!r}; use one of "
                              f"{', '.join(TIE_RULES)}")
        n = 1
        for key in ("alpha_range", "beta_range", "gamma_range"):  # counted, not listed: a
            lo, hi = (_dec(v) for v in getattr(self, key))      # step of 1e-9 makes 10^9
            n *= int((hi - lo) / _dec(self.step)) + 1
        if n > MAX_GRID_POINTS:
            raise ConfigError(f"grid.step={self.step:g}: makes {n:,} grid points over the ranges "
                              f"(limit {MAX_GRID_POINTS:,}); use a coarser step or narrower "
                              "ranges")

    def axis(self, key: str) -> tuple[float, ...]:
        """The lattice values of one range: ``LOW + k * step`` up to HIGH, as exact decimals."""
        lo, hi = (_dec(v) for v in getattr(self, key))
        step = _dec(self.step)
        n = int((hi - lo) / step)  # floor: the decimals are exact, so HIGH itself is kept
        return tuple(float(lo + k * step) for k in range(n + 1))

    def candidates(self) -> list[Coefficients]:
        """Every lattice point satisfying the constraint, in (alpha, beta, gamma) order."""
        target, tol = _dec(self.target), _dec(self.tol)
        out = []
        for a in self.axis("alpha_range"):
            for b in self.axis("beta_range"):
                for g in self.axis("gamma_range"):
                    product = _dec(a) * _dec(b) ** 2 * _dec(g) ** 2
                    if abs(product - target) <= tol:
                        out.append(Coefficients(a, b, g))
        if not out:
            raise ConfigError(
                f"grid.tol={self.tol:g}: no grid point has |alpha*beta^2*gamma^2 - "
                f"{self.target:g}| <= {self.tol:g} (step {self.step:g}); raise grid.tol, use a "
                "finer grid.step or widen the ranges")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "alpha_range": list(self.alpha_range),
                "beta_range": list(self.beta_range), "gamma_range": list(self.gamma_range),
                "target": self.target, "tol": self.tol, "recheck_top": self.recheck_top,
                "recheck_seeds": self.recheck_seeds, "tie_rule": self.tie_rule}

    @classmethod
    def from_dict(cls, d: Any, source: str = "grid") -> "GridConfig":
        if not isinstance(d, Mapping):
            raise ConfigError(f"{source}: expected a mapping of step, ranges, target and tol")
        allowed = ("step", "alpha_range", "beta_range", "gamma_range", "target", "tol",
                   "recheck_top", "recheck_seeds", "tie_rule")
        extra = sorted(set(d) - set(allowed))
        if extra:
            raise ConfigError(f"{source}.{extra[0]}: unknown key; allowed keys: {', '.join(allowed)}")
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**kwargs)


def grid_candidates(step: float = 0.05, alpha_range: tuple[float, float] = (1.0, 2.0),
                    beta_range: tuple[float, float] = (1.0, 1.5),
                    gamma_range: tuple[float, float] = (1.0, 1.5), target: float = 2.0,
                    tol: float = 0.1) -> list[Coefficients]:
    """All grid points with ``|alpha*beta^2*gamma^2 - target| <= tol`` (see :class:`GridConfig`)."""
    return GridConfig(step, alpha_range, beta_range, gamma_range, target, tol).candidates()


# --------------------------------------------------------------------------- scaling one point


# The one list lives with the rounding itself.


def scaled_resolution(resolution: int, multiplier: float, multiple: int = 8,
                      rounding: str = "nearest") -> int:
    """``resolution * multiplier`` as a multiple of ``multiple``.

    ``nearest`` is :func:`nas.round_resolution`. ``down`` and ``up`` take the multiple on
    that side of the exact value instead: the neighbour of the nearest one when the nearest
    lies on the other side. Only the budget solver uses them, when the nearest rounding
    cannot land a member within tolerance (see :mod:`scaler.family`).
    """
    if rounding not in RESOLUTION_ROUNDING:
        raise ConfigError(f"resolution_rounding={rounding!r}: use one of "
                          f"{', '.join(RESOLUTION_ROUNDING)}")
    return round_resolution(resolution, multiplier, multiple, rounding)


def candidate_multipliers(c: Coefficients, phi: float, depth: float | None = None,
                          width: float | None = None) -> tuple[float, float, float, str]:
    """``(depth, width, resolution multiplier, method)`` at ``phi``: ``alpha^phi``,
    ``beta^phi``, ``gamma^phi`` and ``compound``, or with ``depth`` or ``width`` held at the
    given value (method ``compound, depth kept`` / ``compound, width kept``)."""
    if depth is not None and width is not None:
        raise ConfigError("scale_candidate: hold depth or width, not both (phi would only "
                          "scale the resolution)")
    method = METHOD_COMPOUND
    for key, held in (("depth", depth), ("width", width)):
        if held is not None:
            if not is_number(held) or held <= 0:
                raise ConfigError(f"{key} {held!r}: expected a positive {key} multiplier")
            method = METHOD_DEPTH_KEPT if key == "depth" else METHOD_WIDTH_KEPT
    compound_depth, compound_width, res_mult = c.multipliers(phi)
    return (compound_depth if depth is None else float(depth),
            compound_width if width is None else float(width), res_mult, method)


def scale_candidate(base: ArchSpec, c: Coefficients, phi: float = 1.0,
                    resolution_multiple: int = 8, *, rule: str = "compound",
                    dropout: float | None = None, name: str | None = None,
                    resolution_rounding: str = "nearest", depth: float | None = None,
                    width: float | None = None, depth_rounding: str = "ceil") -> ArchSpec:
    """Scale ``base`` by ``c`` at ``phi``: depth ``alpha^phi``, width ``beta^phi``, resolution
    ``round_resolution(base.resolution, gamma^phi, resolution_multiple)``.

    ``depth`` or ``width`` (None: from phi) holds that multiplier at a given value while the
    other two follow phi: the budget solver's fallbacks "compound, depth kept" and
    "compound, width kept" (see :mod:`scaler.family`). ``depth_rounding="nearest"`` rounds
    each stage's repeats to the nearest integer instead of up: the fallback "compound, depth
    rounded to nearest".

    The result's ``meta['scaling']`` holds what :func:`nas.scale_spec` records (width, depth,
    resolution in pixels, base resolution, divisor, base name) plus ``rule``, ``method``
    (``compound``, ``compound, depth kept``, ``compound, width kept`` or ``compound, depth
    rounded to nearest``), ``phi``, ``alpha``,
    ``beta``, ``gamma``, ``resolution_multiplier`` (gamma^phi), ``resolution_multiple`` and
    ``resolution_rounding`` (see :func:`scaled_resolution`).
    """
    if not is_number(phi):
        raise ConfigError(f"phi={phi!r}: expected a number")
    _check_multiple(resolution_multiple)
    depth, width, res_mult, method = candidate_multipliers(c, phi, depth, width)
    if depth_rounding != "ceil":
        if method != METHOD_COMPOUND:
            raise ConfigError("scale_candidate: round the depth to nearest or hold a "
                              "multiplier, not both")
        method = METHOD_DEPTH_NEAREST
    resolution = scaled_resolution(base.resolution, res_mult, resolution_multiple,
                                   resolution_rounding)
    spec = scale_spec(base, width=width, depth=depth, resolution=resolution, dropout=dropout,
                      depth_rounding=depth_rounding)
    if name is not None:
        spec = spec.replace(name=name)
    scaling = dict(spec.meta["scaling"])
    scaling.update({"rule": rule, "method": method, "phi": float(phi), **c.to_dict(),
                    "resolution_multiplier": float(res_mult),
                    "resolution_multiple": int(resolution_multiple),
                    "resolution_rounding": resolution_rounding})
    return spec.with_meta(scaling=scaling)


def proxy_resolution(base_proxy_res: int, gamma: float, phi: float = 1.0, multiple: int = 4) -> int:
    """The proxy training resolution of a candidate: the proxy baseline's (e.g. 32 px) scaled
    by the same ``gamma^phi`` as the full one, rounded to ``multiple`` (finer than the full
    size's 8, so small proxies still see most gammas apart)."""
    _check_multiple(multiple, "multiple")
    if not isinstance(base_proxy_res, int) or isinstance(base_proxy_res, bool) or base_proxy_res < 1:
        raise ConfigError(f"base_proxy_res={base_proxy_res!r}: expected a positive integer "
                          "(pixels), e.g. 32")
    return round_resolution(base_proxy_res, gamma ** phi, multiple)


def _check_multiple(multiple: Any, option: str = "resolution_multiple") -> None:
    if not isinstance(multiple, int) or isinstance(multiple, bool) or multiple < 1:
        raise ConfigError(f"{option}={multiple!r}: expected a positive integer number of "
                          "pixels, e.g. 8")


@dataclass(frozen=True)
class GridPoint:
    """One distinct thing to train: a scaled spec and the resolution it is trained at.

    ``coefficients`` is the first grid point (in grid order) that produced it; ``aliases``
    are the later grid points whose rounding gave the same architecture and training
    resolution (they would train the same network, so they are not trained again).
    ``macs`` and ``params`` are counted at ``resolution`` with ``num_classes`` outputs.
    """

    coefficients: Coefficients
    spec: ArchSpec
    resolution: int
    params: int
    macs: int
    aliases: tuple[Coefficients, ...] = ()

    @property
    def all_coefficients(self) -> tuple[Coefficients, ...]:
        return (self.coefficients,) + self.aliases


def _arch_key(spec: ArchSpec, resolution: int) -> tuple:
    return (spec.stages, spec.stem, spec.stem_stride, spec.head, spec.activation, resolution)


def distinct_candidates(base: ArchSpec, candidates: Iterable[Coefficients], phi: float = 1.0,
                        resolution_multiple: int = 8, base_proxy_res: int | None = None,
                        proxy_multiple: int = 4, num_classes: int = 1000) -> list[GridPoint]:
    """Scale every candidate and merge those that resolve to the same network.

    Each spec is scaled with :func:`scale_candidate` (full resolution in ``spec.resolution``).
    The training resolution is that full one, or, with ``base_proxy_res``, the proxy
    resolution :func:`proxy_resolution` gives. Two candidates are the same when their layers
    (stages, stem, head, activation) and training resolution are equal; ``len(result)`` is
    the number of distinct trials. Order: first appearance in ``candidates``.
    """
    points: dict[tuple, GridPoint] = {}
    for c in candidates:
        spec = scale_candidate(base, c, phi, resolution_multiple)
        res = (spec.resolution if base_proxy_res is None
               else proxy_resolution(base_proxy_res, c.gamma, phi, proxy_multiple))
        key = _arch_key(spec, res)
        if key in points:
            p = points[key]
            points[key] = GridPoint(p.coefficients, p.spec, p.resolution, p.params, p.macs,
                                    p.aliases + (c,))
        else:
            cost = count(spec, resolution=res, num_classes=num_classes)
            points[key] = GridPoint(c, spec, res, cost.params, cost.macs)
    return list(points.values())


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class GridResult:
    """What one trained grid candidate scored. ``accuracy`` is None when the trial failed."""

    coefficients: Coefficients
    accuracy: float | None
    macs: int
    params: int | None = None
    resolution: int | None = None
    trial_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.coefficients, Coefficients):
            raise ConfigError(f"GridResult.coefficients: expected Coefficients, got "
                              f"{type(self.coefficients).__name__}")
        if self.accuracy is not None:
            if not isinstance(self.accuracy, (int, float)) or isinstance(self.accuracy, bool):
                raise ConfigError(f"GridResult.accuracy: got {self.accuracy!r}; expected a "
                                  "number or None (failed)")
            acc = float(self.accuracy)
            object.__setattr__(self, "accuracy", acc if math.isfinite(acc) else None)
        for key in ("macs", "params", "resolution"):
            v = getattr(self, key)
            if v is None and key != "macs":
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"GridResult.{key}: got {v!r}; expected a non-negative integer")

    @property
    def ok(self) -> bool:
        return self.accuracy is not None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {**self.coefficients.to_dict(),
                             "product": round(self.coefficients.product(), _DECIMALS),
                             "accuracy": self.accuracy, "macs": self.macs}
        for key in ("params", "resolution", "trial_id"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d

    @classmethod
    def from_dict(cls, d: Any, source: str = "result") -> "GridResult":
        if not isinstance(d, Mapping):
            raise ConfigError(f"{source}: expected a mapping")
        allowed = ("alpha", "beta", "gamma", "product", "accuracy", "macs", "params",
                   "resolution", "trial_id")
        extra = sorted(set(d) - set(allowed))
        if extra:
            raise ConfigError(f"{source}.{extra[0]}: unknown key; allowed keys: {', '.join(allowed)}")
        for req in ("accuracy", "macs"):
            if req not in d:
                raise ConfigError(f"{source}.{req}: missing")
        c = Coefficients.from_dict({k: d.get(k) for k in ("alpha", "beta", "gamma")}, source)
        if "product" in d and (not is_number(d["product"])
                               or abs(float(d["product"]) - c.product()) > 1e-6):
            raise ConfigError(f"{source}.product: {d['product']!r} is not alpha*beta^2*gamma^2 "
                              f"= {c.product():.6g}; fix or drop it")
        trial = d.get("trial_id")
        if trial is not None and not isinstance(trial, str):
            raise ConfigError(f"{source}.trial_id: got {trial!r}; expected a string")
        return cls(c, d["accuracy"], d["macs"], d.get("params"), d.get("resolution"), trial)


def _as_result(r: Any) -> GridResult:
    if isinstance(r, GridResult):
        return r
    if isinstance(r, (tuple, list)) and len(r) == 3:
        return GridResult(r[0], r[1], r[2])
    raise ConfigError(f"select_best: expected GridResult or (Coefficients, accuracy, macs), "
                      f"got {r!r}")


def select_best(results: Iterable[GridResult | tuple[Coefficients, float, int]],
                tie_tol: float = 0.0) -> GridResult:
    """The best grid candidate: highest accuracy; among those within ``tie_tol`` of it (0:
    exact ties), the fewest MACs; then the earliest in ``results`` (grid order).

    Failed trials (accuracy None, NaN or inf) are skipped; if none succeeded, raises
    :class:`ConfigError`.
    """
    rs = [_as_result(r) for r in results]
    ok = [r for r in rs if r.ok]
    if not ok:
        raise ConfigError(f"no grid candidate finished with a finite accuracy ({len(rs)} "
                          "results); check the trials' logs and rerun the grid")
    if not is_number(tie_tol) or tie_tol < 0:
        raise ConfigError(f"tie_tol={tie_tol!r}: expected a number >= 0")
    top = max(r.accuracy for r in ok)  # type: ignore[type-var]
    tied = [r for r in ok if r.accuracy >= top - tie_tol]  # type: ignore[operator]
    return min(tied, key=lambda r: r.macs)


def summarize(points: Sequence[GridPoint], grid_points: int | None = None) -> str:
    """One line for logs: ``grid: 59 points -> 41 distinct networks, 21.6M..48.3M MACs``."""
    n = len(points) if grid_points is None else grid_points
    if not points:
        return f"grid: {n} points -> 0 distinct networks"
    lo = min(p.macs for p in points)
    hi = max(p.macs for p in points)
    return (f"grid: {n} points -> {len(points)} distinct networks, "
            f"{format_macs(lo)}..{format_macs(hi)} MACs")


__all__ = ["METHOD_COMPOUND", "METHOD_DEPTH_KEPT", "METHOD_WIDTH_KEPT", "METHOD_DEPTH_NEAREST",
           "candidate_multipliers",
           "Coefficients", "PAPER_COEFFICIENTS", "GridConfig", "grid_candidates",
           "scale_candidate", "scaled_resolution", "RESOLUTION_ROUNDING", "proxy_resolution", "GridPoint", "distinct_candidates",
           "GridResult", "select_best", "summarize", "MAX_GRID_POINTS"]
