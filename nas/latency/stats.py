"""Timing statistics, torch-free: the median of repeated runs, its confidence interval,
the spread, and the rule that says when enough runs were taken.

The median's 95 % interval is distribution-free (order statistics: the ranks
``n/2 -+ 1.96 sqrt(n)/2``), so a few slow outliers (an interrupt, another process) neither
move the median nor widen its interval much; the spread (the inter-quartile range and
p10-p90) says how bursty the machine was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

Z95 = 1.959964


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile ``q`` in [0, 1] of ascending ``sorted_values``."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("no values")
    pos = q * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def median_interval(sorted_values: Sequence[float], z: float = Z95) -> tuple[float, float]:
    """Distribution-free interval of the median (about 95 % for ``z`` 1.96): the order
    statistics at ranks ``n/2 -+ z sqrt(n)/2``, clamped to the data."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("no values")
    half = z * math.sqrt(n) / 2
    lo = max(0, int(math.floor(n / 2 - half)) - 1)   # 1-based ranks floor(n/2 - h) and
    hi = min(n - 1, int(math.ceil(n / 2 + half)))    # ceil(n/2 + h) + 1, here 0-based
    return sorted_values[lo], sorted_values[max(lo, hi)]


@dataclass(frozen=True)
class Summary:
    """Median, spread and the median's interval of a set of timings (any unit)."""

    n: int
    median: float
    p10: float
    p25: float
    p75: float
    p90: float
    lo: float   # the median's ~95 % interval
    hi: float

    @property
    def iqr(self) -> float:
        return self.p75 - self.p25

    @property
    def rel_iqr(self) -> float:
        return self.iqr / self.median if self.median > 0 else math.inf

    @property
    def rel_interval(self) -> float:
        """Half the width of the median's interval, relative to the median."""
        return (self.hi - self.lo) / 2 / self.median if self.median > 0 else math.inf


def summarize(values: Sequence[float]) -> Summary:
    v = sorted(values)
    lo, hi = median_interval(v)
    return Summary(len(v), quantile(v, 0.5), quantile(v, 0.1), quantile(v, 0.25),
                   quantile(v, 0.75), quantile(v, 0.9), lo, hi)


def enough(values: Sequence[float], rel: float, min_runs: int) -> bool:
    """True when there are ``min_runs`` values and the median's interval is within
    ``+-rel`` of it (the adaptive rule's stop)."""
    return len(values) >= min_runs and summarize(values).rel_interval <= rel
