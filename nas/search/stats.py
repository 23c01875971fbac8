"""Rank statistics for proxy fidelity: Kendall's tau-b, Spearman's rho, bootstrap intervals
and top-k overlap. Pure Python and numpy (no scipy); ties are handled as scipy does
(tau-b; average ranks for rho)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of paired samples (NaN when either side has no variation)."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) != len(b):
        raise ValueError("kendall_tau: x and y differ in length")
    i, j = np.triu_indices(len(a), k=1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    concordant_minus_discordant = float((da * db).sum())
    pairs_a, pairs_b = float((da != 0).sum()), float((db != 0).sum())
    if pairs_a == 0 or pairs_b == 0:
        return math.nan
    return concordant_minus_discordant / math.sqrt(pairs_a * pairs_b)


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v), dtype=float)
    ranks[order] = np.arange(1, len(v) + 1)
    for value in np.unique(v):  # average ranks over ties
        tied = v == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (Pearson correlation of average ranks; NaN without variation)."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) != len(b):
        raise ValueError("spearman_rho: x and y differ in length")
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def top_k_overlap(x: Sequence[float], y: Sequence[float], k: int) -> float:
    """The fraction of the top ``k`` by ``x`` that is also in the top ``k`` by ``y``."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    k = min(k, len(a))
    top_a = set(np.argsort(-a, kind="mergesort")[:k].tolist())
    top_b = set(np.argsort(-b, kind="mergesort")[:k].tolist())
    return len(top_a & top_b) / k if k else math.nan


@dataclass(frozen=True)
class Estimate:
    """A statistic with a percentile bootstrap interval (resampling the paired items)."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.2f} [{self.low:.2f}, {self.high:.2f}]"

    def to_dict(self) -> dict[str, float | None]:
        return {k: (None if math.isnan(v) else v)
                for k, v in (("value", self.value), ("low", self.low), ("high", self.high))}


def bootstrap(stat: Callable[[np.ndarray, np.ndarray], float], x: Sequence[float],
              y: Sequence[float], rng: np.random.Generator, reps: int = 2000,
              level: float = 0.95) -> Estimate:
    """``stat(x, y)`` with a percentile interval over ``reps`` resamples of the pairs."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    value = stat(a, b)
    draws = []
    for _ in range(reps):
        idx = rng.integers(0, len(a), len(a))
        v = stat(a[idx], b[idx])
        if not math.isnan(v):
            draws.append(v)
    if not draws:
        return Estimate(value, math.nan, math.nan)
    lo, hi = np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Estimate(value, float(lo), float(hi))
