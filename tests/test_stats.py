"""Rank statistics: values checked by hand and against their definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from nas.search.stats import bootstrap, kendall_tau, spearman_rho, top_k_overlap


def _tau_by_pairs(x, y):
    c = d = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        a, b = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        if a * b > 0:
            c += 1
        elif a * b < 0:
            d += 1
        tx += a != 0
        ty += b != 0
    return (c - d) / math.sqrt(tx * ty)


def test_kendall_tau_known_values():
    assert kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))


def test_kendall_tau_b_with_ties_matches_its_definition():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 4, 9), rng.integers(0, 4, 9)
        if len(set(x)) > 1 and len(set(y)) > 1:
            assert kendall_tau(x, y) == pytest.approx(_tau_by_pairs(x, y))


def test_spearman_rho_known_values():
    assert spearman_rho([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.8207826816681233)
    assert spearman_rho([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman_rho([10, 20, 30], [1, 4, 9]) == pytest.approx(1.0)  # ranks, not values


def test_top_k_overlap():
    assert top_k_overlap([5, 4, 3, 2, 1], [5, 4, 3, 2, 1], 2) == 1.0
    assert top_k_overlap([5, 4, 3, 2, 1], [1, 2, 3, 4, 5], 2) == 0.0
    assert top_k_overlap([5, 4, 3, 2, 1], [5, 1, 4, 2, 3], 2) == 0.5


def test_bootstrap_interval_contains_the_value_and_narrows_with_more_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    y = x + rng.normal(scale=0.5, size=40)
    small = bootstrap(kendall_tau, x[:10], y[:10], np.random.default_rng(0), reps=500)
    large = bootstrap(kendall_tau, x, y, np.random.default_rng(0), reps=500)
    for e in (small, large):
        assert e.low <= e.value <= e.high
    assert large.high - large.low < small.high - small.low
