"""Compound scaling without torch or Ray: the grid, the family rules, budgets, units, files."""

from __future__ import annotations

import csv
import itertools
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import yaml

import nas
from nas.arch.units import format_macs, parse_macs
from nas.core.errors import ConfigError
from scaler import (
    EFFICIENTNET,
    METHOD_COMPOUND,
    METHOD_DEPTH_KEPT,
    METHOD_DEPTH_NEAREST,
    METHOD_WIDTH_KEPT,
    PAPER_COEFFICIENTS,
    Coefficients,
    GridConfig,
    GridResult,
    distinct_candidates,
    fit_budget,
    fit_budgets,
    grid_candidates,
    load_scaling,
    make_family,
    proxy_resolution,
    save_scaling,
    scale_candidate,
    scaled_resolution,
    select_best,
    solve_phi,
    write_family,
    write_scaling,
)
from search_space import SearchSpace

# Published counts (REFERENCE.md): 1000 classes, each model at its own resolution.
PUBLISHED_PARAMS = {"b1": 7_794_184, "b2": 9_109_994, "b3": 12_233_232, "b4": 19_341_616,
                    "b5": 30_389_784, "b6": 43_040_704, "b7": 66_347_960}
PUBLISHED_MACS_M = {"b1": 686.8, "b2": 993.6, "b3": 1827.1, "b4": 4393.8, "b5": 10266.4,
                    "b6": 19067.6, "b7": 37745.9}
PAPER_FLOPS_B = {"b1": 0.70, "b2": 1.0, "b3": 1.8, "b4": 4.2, "b5": 9.9, "b6": 19, "b7": 37}


@pytest.fixture(scope="module")
def b0():
    return nas.load_spec("efficientnet-b0")


def _bases():
    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    return {"efficientnet-b0": nas.load_spec("efficientnet-b0"),
            "mnasnet-a1": nas.load_spec("mnasnet-a1"),
            "space-sample-0": space.sample(np.random.default_rng(0))}


BASES = _bases()


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


# --------------------------------------------------------------------------- the grid


def _brute_force_grid(step=Fraction(1, 20), ranges=((1, 2), (1, Fraction(3, 2)),
                                                     (1, Fraction(3, 2))),
                      target=2, tol=Fraction(1, 10)):
    axes = []
    for lo, hi in ranges:
        n = int((Fraction(hi) - lo) / step)
        axes.append([lo + k * step for k in range(n + 1)])
    return [(a, b, g) for a, b, g in itertools.product(*axes)
            if abs(a * b * b * g * g - target) <= tol]


def test_default_grid_matches_brute_force_count_and_values():
    got = grid_candidates()
    expected = _brute_force_grid()
    assert len(got) == len(expected) == 109
    assert [(c.alpha, c.beta, c.gamma) for c in got] == [
        (float(a), float(b), float(g)) for a, b, g in expected]
    assert len(set(got)) == len(got)


def test_every_grid_candidate_satisfies_constraint_and_bounds():
    for c in grid_candidates():
        assert 1.0 <= c.alpha <= 2.0 and 1.0 <= c.beta <= 1.5 and 1.0 <= c.gamma <= 1.5
        assert abs(c.product() - 2.0) <= 0.1 + 1e-12
        for v in (c.alpha, c.beta, c.gamma):  # exact decimals, no 1.1500000000000001
            assert v == round(v, 10) and abs(v * 20 - round(v * 20)) < 1e-9


def test_grid_keeps_boundary_points_exactly():
    # 1.0 * 1.0^2 * 1.45^2 = 2.1025 is out, 1.1 * 1.0^2 * 1.35^2 = 2.00475 is in, and
    # 1.9 * 1.05^2 * 1.0^2 = 2.09475 is in; with tol 0.1025, (1, 1, 1.45) sits on the edge.
    pts = {(c.alpha, c.beta, c.gamma) for c in grid_candidates()}
    assert (1.0, 1.0, 1.45) not in pts and (1.1, 1.0, 1.35) in pts and (1.9, 1.05, 1.0) in pts
    edge = {(c.alpha, c.beta, c.gamma) for c in grid_candidates(tol=0.1025)}
    assert (1.0, 1.0, 1.45) in edge
    assert len(grid_candidates(tol=0.1025)) == len(_brute_force_grid(tol=Fraction(1025, 10000)))


def test_other_grids_match_brute_force():
    got = grid_candidates(step=0.1, alpha_range=(1.0, 1.6), beta_range=(1.0, 1.3),
                          gamma_range=(1.1, 1.4), target=1.8, tol=0.15)
    exp = _brute_force_grid(Fraction(1, 10), ((1, Fraction(8, 5)), (1, Fraction(13, 10)),
                                              (Fraction(11, 10), Fraction(7, 5))),
                            Fraction(9, 5), Fraction(15, 100))
    assert [(c.alpha, c.beta, c.gamma) for c in got] == [tuple(map(float, t)) for t in exp]


@pytest.mark.parametrize("kwargs, option", [
    ({"step": 0}, "grid.step="), ({"step": -0.05}, "grid.step="),
    ({"step": float("nan")}, "grid.step="),
    ({"tol": -0.1}, "grid.tol="), ({"alpha_range": (0.9, 2.0)}, "grid.alpha_range="),
    ({"beta_range": (1.5, 1.0)}, "grid.beta_range="),
    ({"gamma_range": (1.0,)}, "grid.gamma_range="),
    ({"target": 0.5}, "grid.target="), ({"tol": 0.0, "target": 2.0123}, "grid.tol="),  # empty
    ({"step": 1e-5}, "grid.step="),  # too many points
])
def test_bad_grid_options_are_one_line_errors_naming_the_option(kwargs, option):
    with pytest.raises(ConfigError) as e:
        grid_candidates(**kwargs)
    assert _one_line(e).startswith(option)


def test_coefficients_round_trip_and_strictness():
    c = Coefficients(1.2, 1.1, 1.15)
    assert c.product() == pytest.approx(1.2 * 1.1 ** 2 * 1.15 ** 2)
    assert Coefficients.from_dict(c.to_dict()) == c
    assert Coefficients.from_dict(yaml.safe_load(yaml.safe_dump(c.to_dict()))) == c
    for bad in ({"alpha": 1.2, "beta": 1.1}, {"alpha": 1.2, "beta": 1.1, "gamma": 1.15, "x": 1},
                {"alpha": "1e0", "beta": 1.1, "gamma": 1.1}, {"alpha": -1, "beta": 1, "gamma": 1},
                [1.2, 1.1, 1.15]):
        with pytest.raises(ConfigError) as e:
            Coefficients.from_dict(bad)
        _one_line(e)
    assert GridConfig.from_dict(GridConfig().to_dict()) == GridConfig()


# --------------------------------------------------------------------------- one candidate


def test_scale_candidate_records_the_rule_and_multipliers(b0):
    s = scale_candidate(b0, PAPER_COEFFICIENTS, 1.0)
    m = s.meta["scaling"]
    assert m["rule"] == "compound" and m["phi"] == 1.0
    assert (m["alpha"], m["beta"], m["gamma"]) == (1.2, 1.1, 1.15)
    assert (m["depth"], m["width"]) == (1.2, 1.1) and m["resolution_multiplier"] == 1.15
    assert s.resolution == m["resolution"] == nas.round_resolution(224, 1.15, 8) == 256
    assert s == nas.scale_spec(b0, 1.1, 1.2, 256)
    assert scale_candidate(b0, PAPER_COEFFICIENTS, 0.0).same_architecture(b0)


def test_scaled_resolution_directions():
    assert scaled_resolution(224, 1.15, 8) == 256          # 257.6 -> 256 nearest
    assert scaled_resolution(224, 1.15, 8, "down") == 256
    assert scaled_resolution(224, 1.15, 8, "up") == 264
    assert scaled_resolution(224, 1.0, 8, "up") == scaled_resolution(224, 1.0, 8, "down") == 224
    with pytest.raises(ConfigError):
        scaled_resolution(224, 1.1, 8, "sideways")


def test_proxy_resolution():
    assert proxy_resolution(32, 1.0) == 32
    assert proxy_resolution(32, 1.15) == 36       # 36.8 -> 36
    assert proxy_resolution(32, 1.5) == 48
    assert proxy_resolution(32, 1.15, phi=2.0) == 44  # 42.3 -> 44
    with pytest.raises(ConfigError):
        proxy_resolution(0, 1.1)


@pytest.mark.parametrize("proxy", [None, 32])
def test_distinct_candidates_dedupes_exactly(b0, proxy):
    grid = grid_candidates()
    points = distinct_candidates(b0, grid, base_proxy_res=proxy, num_classes=10)
    assert sum(len(p.all_coefficients) for p in points) == len(grid)
    assert sorted((c for p in points for c in p.all_coefficients),
                  key=lambda c: (c.alpha, c.beta, c.gamma)) == grid
    # Independent check: what each grid point would train, as a set.
    trained = set()
    for c in grid:
        s = scale_candidate(b0, c, 1.0)
        res = s.resolution if proxy is None else proxy_resolution(proxy, c.gamma, 1.0)
        trained.add((s.stages, s.stem, s.head, res))
    assert len(points) == len(trained) < len(grid)
    for p in points:
        assert p.macs == nas.count_macs(p.spec, p.resolution, num_classes=10)
        for c in p.aliases:
            s = scale_candidate(b0, c, 1.0)
            assert s.same_architecture(p.spec)
    if proxy:
        assert {p.resolution for p in points} <= {32, 36, 40, 44, 48}


def test_select_best_accuracy_then_fewer_macs():
    a, b, c = Coefficients(1.2, 1.1, 1.15), Coefficients(1.4, 1.0, 1.2), Coefficients(1, 1, 1.4)
    assert select_best([(a, 0.90, 500), (b, 0.91, 900), (c, 0.85, 100)]).coefficients == b
    assert select_best([(a, 0.91, 500), (b, 0.91, 900)]).coefficients == a  # tie: fewer MACs
    assert select_best([(b, 0.91, 900), (a, 0.91, 500)]).coefficients == a
    assert select_best([(a, 0.905, 500), (b, 0.91, 900)], tie_tol=0.01).coefficients == a
    failed = [GridResult(a, None, 1), GridResult(b, float("nan"), 1), (c, float("inf"), 1)]
    assert select_best(failed + [(c, 0.5, 10)]).coefficients == c
    with pytest.raises(ConfigError) as e:
        select_best(failed)
    _one_line(e)


# --------------------------------------------------------------------------- the family


def test_official_rule_reproduces_published_b1_to_b7(b0):
    members = make_family(b0, "official")
    assert [m.name for m in members] == list(PUBLISHED_PARAMS)
    for m in members:
        assert m.params == PUBLISHED_PARAMS[m.name], m.name
        assert round(m.macs / 1e6, 1) == PUBLISHED_MACS_M[m.name], m.name
        p = EFFICIENTNET[m.name]
        assert (m.spec.resolution, m.spec.dropout) == (p.resolution, p.dropout)
        assert m.spec.name == p.name and m.phi is None and m.rule == "official"
        assert m.spec.meta["family"]["published"]["params"] == p.params == m.params
    assert [m.spec.dropout for m in members] == [0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5]


def _check_member_meta(m, base):
    f = m.spec.meta["family"]
    assert f["rule"] == m.rule and f["phi"] == m.phi
    assert f["params"] == m.params == nas.count_params(m.spec)
    assert f["macs"] == m.macs == nas.count_macs(m.spec)
    assert f["base"]["macs"] == nas.count_macs(base)
    for key in ("alpha", "beta", "gamma", "width", "depth", "resolution_multiplier",
                "resolution", "published", "target_macs"):
        assert key in f
    assert m.spec.meta["scaling"]["rule"] == m.rule


@pytest.mark.parametrize("name", list(BASES))
def test_budget_members_land_within_3_percent(name):
    base = BASES[name]
    base_macs = nas.count_macs(base)
    members = make_family(base)  # rule budget, resolution multiple 8
    assert [m.name for m in members] == list(PAPER_FLOPS_B)
    for m in members:
        assert m.target_macs == round(base_macs * PAPER_FLOPS_B[m.name] / 0.39)
        assert abs(m.macs / m.target_macs - 1) <= 0.03, (m.name, m.macs, m.target_macs)
        assert m.spec.meta["family"]["target_error"] == pytest.approx(m.target_error)
        assert m.published is EFFICIENTNET[m.name]
        _check_member_meta(m, base)
    macs = [m.macs for m in members]
    assert macs == sorted(macs) and len(set(macs)) == len(macs)
    assert [m.spec.dropout for m in members] == [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]


def test_budget_phi_is_the_closest_step(b0):
    """Scanning phi finely around the answer finds nothing closer to the target."""
    m = make_family(b0, names=("b3",))[0]
    assert m.spec.meta["scaling"]["resolution_multiple"] == 8
    assert m.spec.meta["scaling"]["resolution_rounding"] == "nearest"
    best = min(abs(nas.count_macs(scale_candidate(b0, PAPER_COEFFICIENTS, phi)) - m.target_macs)
               for phi in np.arange(m.phi - 0.4, m.phi + 0.4, 0.0005))
    assert abs(m.macs - m.target_macs) <= best
    # The reported phi is short and reproduces the member.
    assert m.phi == round(m.phi, 4)
    assert scale_candidate(b0, PAPER_COEFFICIENTS, m.phi).same_architecture(m.spec)


def test_paper_rule_is_phi_1_to_7(b0):
    members = make_family(b0, "paper")
    assert [m.phi for m in members] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    for k, m in enumerate(members, start=1):
        assert m.spec.same_architecture(scale_candidate(b0, PAPER_COEFFICIENTS, k))
        assert m.spec.resolution == nas.round_resolution(224, 1.15 ** k, 8)
        assert m.target_macs is None
        _check_member_meta(m, b0)


@pytest.mark.parametrize("kwargs", [{"rule": "magic"}, {"names": ("b1", "b1")},
                                    {"names": ("tiny",)}, {"rule": "official", "names": ("b0",)},
                                    {"resolution_multiple": 0}])
def test_bad_family_options(b0, kwargs):
    with pytest.raises(ConfigError) as e:
        make_family(b0, **kwargs)
    key = next(iter(kwargs)) if len(kwargs) == 1 else "names"
    assert _one_line(e).startswith(f"{key}=")  # the keyword, never a flag


# --------------------------------------------------------------------------- custom budgets


@pytest.mark.parametrize("name", list(BASES))
def test_custom_budgets_within_3_percent(name):
    base = BASES[name]
    members = fit_budgets(base, None, ["600M", "1.2G", "2.5G"])
    for m, target in zip(members, (600e6, 1.2e9, 2.5e9)):
        assert m.target_macs == target
        assert abs(m.macs / target - 1) <= 0.03
        assert m.phi > 0
        _check_member_meta(m, base)
    assert [m.name for m in members] == ["600.0M", "1.20G", "2.50G"]


def _check_method(m, base, c=PAPER_COEFFICIENTS):
    """The member is what its recorded method, phi and held multiplier make of the base."""
    f, sc = m.spec.meta["family"], m.spec.meta["scaling"]
    assert f["method"] == sc["method"]
    assert f["resolution_multiple"] == sc["resolution_multiple"] in (1, 2, 4, 8, 16, 32)
    assert m.spec.resolution % f["resolution_multiple"] == 0
    depth, width, res = c.multipliers(m.phi)
    held = {}
    if sc["method"] == METHOD_COMPOUND:
        assert (sc["depth"], sc["width"]) == pytest.approx((depth, width))
        assert "depth_rounding" not in sc  # repeats rounded up, as the reference does
    elif sc["method"] == METHOD_DEPTH_NEAREST:
        assert (sc["depth"], sc["width"]) == pytest.approx((depth, width))
        assert sc["depth_rounding"] == "nearest"
        assert [s.repeats for s in m.spec.stages] == [
            max(1, math.floor(b.repeats * depth + 0.5)) for b in base.stages]
        held = {"depth_rounding": "nearest"}
    elif sc["method"] == METHOD_DEPTH_KEPT:
        assert sc["width"] == pytest.approx(width)
        held = {"depth": sc["depth"]}
    else:
        assert sc["method"] == METHOD_WIDTH_KEPT and sc["depth"] == pytest.approx(depth)
        held = {"width": sc["width"]}
    # The resolution is gamma^phi rounded, less than one multiple away.
    assert abs(m.spec.resolution - base.resolution * res) < f["resolution_multiple"]
    again = scale_candidate(base, c, m.phi, f["resolution_multiple"],
                            resolution_rounding=f["resolution_rounding"], **held)
    assert again.same_architecture(m.spec) and again.resolution == m.spec.resolution


@pytest.mark.parametrize("name", ["efficientnet-b0", "space-sample-0"])
def test_every_budget_from_1x_to_100x_lands_within_3_percent(name):
    """60 budgets log-spaced from the baseline's MACs to 100 times them, gaps included."""
    base = BASES[name]
    base_macs = nas.count_macs(base)
    methods = []
    for ratio in np.geomspace(1.0, 100.0, 60):
        target = round(base_macs * ratio)
        m = fit_budget(base, PAPER_COEFFICIENTS, target)
        assert abs(m.macs / target - 1) <= 0.03, (ratio, m.macs, target)
        assert m.macs == nas.count_macs(m.spec) == m.spec.meta["family"]["macs"]
        _check_method(m, base)
        methods.append(m.spec.meta["family"]["method"])
    # Most are plain compound scaling; the depth step above phi = 0 needs a fallback.
    assert methods.count(METHOD_COMPOUND) > 40 and METHOD_DEPTH_NEAREST in methods[:10]


def test_budgets_in_the_gap_before_the_first_depth_step(b0):
    """Just above phi = 0 every stage of B0 gains a layer (385.8M -> 569.7M compound): the
    budgets between are met with the repeats rounded to nearest (B0's own layers here) while
    width and resolution grow."""
    for target in (420_000_000, 500_000_000):
        m = fit_budget(b0, PAPER_COEFFICIENTS, target)
        assert abs(m.macs / target - 1) <= 0.03
        assert m.spec.meta["family"]["method"] == METHOD_DEPTH_NEAREST
        assert [s.repeats for s in m.spec.stages] == [s.repeats for s in b0.stages]
        _check_method(m, b0)
    # Where compound scaling lands, it is what is used.
    m = fit_budget(b0, PAPER_COEFFICIENTS, "2G")
    assert m.spec.meta["family"]["method"] == METHOD_COMPOUND


@pytest.mark.parametrize("seed,coefficients,target,method", [
    (1, (1.2, 1.1, 1.15), 655_348_716, METHOD_DEPTH_KEPT),
    (2, (1.8, 1.05, 1.0), 869_310_191, METHOD_WIDTH_KEPT),
])
def test_budgets_that_need_a_multiplier_held(seed, coefficients, target, method):
    """Where neither rounding of the depth lands, holding the depth (or the width) of a
    neighbouring compound model does (found by sweeping sampled children)."""
    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    base = space.sample(np.random.default_rng(seed))
    c = Coefficients(*coefficients)
    m = fit_budget(base, c, target)
    assert abs(m.macs / target - 1) <= 0.03
    assert m.spec.meta["family"]["method"] == method
    _check_method(m, base, c)


def test_budget_below_the_baseline_downscales_to_a_floor(b0):
    m = fit_budget(b0, PAPER_COEFFICIENTS, "300M")
    assert m.phi < 0 and abs(m.macs / 300e6 - 1) <= 0.03
    with pytest.raises(ConfigError) as e:
        fit_budget(b0, PAPER_COEFFICIENTS, "10M")
    msg = _one_line(e)
    assert msg.startswith("budgets=10.0M is below the baseline's 385.8M MACs")


def test_impossible_budgets_are_one_line_errors(b0):
    with pytest.raises(ConfigError) as e:
        fit_budget(b0, None, "50T")
    assert "above" in _one_line(e)
    with pytest.raises(ConfigError) as e:  # no rounding gets within 0.01 % of 600M at multiple 8
        fit_budget(b0, None, "600M", resolution_multiple=8, tolerance=0.0001, refine=False)
    assert "finer resolution_multiple than 8" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        fit_budget(b0, None, "600M", tolerance=0.0001)
    assert "any resolution multiple from 1 to 32" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        fit_budgets(b0, None, ["600M", "0.6G"])
    assert "twice" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        fit_budget(b0, Coefficients(1, 1, 1), "600M")
    _one_line(e)
    with pytest.raises(ConfigError) as e:
        fit_budget(b0, None, "abc")
    assert _one_line(e) == ("budgets='abc': expected a number of multiply-adds such as "
                            "400M, 0.4G or 4e8")


def test_solve_phi_brackets_the_target(b0):
    s = solve_phi(b0, PAPER_COEFFICIENTS, 1_000_000_000)
    assert abs(s.macs / 1e9 - 1) < 0.03 and s.resolution_rounding == "nearest"


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize("text, macs", [
    ("400M", 400_000_000), ("0.4G", 400_000_000), ("4e8", 400_000_000),
    ("400e6", 400_000_000), ("1.2B", 1_200_000_000), ("1.2G", 1_200_000_000),
    ("2T", 2_000_000_000_000), ("385.8M", 385_800_000), ("12k", 12_000), ("5K", 5_000),
    ("0.7G", 700_000_000), (" 600M ", 600_000_000), ("1E9", 1_000_000_000), (".5G", 500_000_000),
    (400_000_000, 400_000_000), (4e8, 400_000_000), ("1", 1),
])
def test_parse_macs(text, macs):
    assert parse_macs(text) == macs


@pytest.mark.parametrize("text", ["abc", "-5M", "0", "0M", "", "M", "400 M", "400m", "4e8M5",
                                  "inf", "nan", "1e400", "400MACs", "1,000", True, None, -3,
                                  float("inf"), "0.0000001", "1e-10G", "+5M"])
def test_parse_macs_rejects_nonsense_in_one_line(text):
    with pytest.raises(ConfigError) as e:
        parse_macs(text)
    msg = _one_line(e)
    assert msg.startswith(f"target_flops={text!r}: ") and "400M, 0.4G or 4e8" in msg


def test_parse_macs_names_the_option():
    with pytest.raises(ConfigError, match=r"^max_macs='x'"):
        parse_macs("x", option="max_macs")


@pytest.mark.parametrize("n, text", [
    (385_814_752, "385.8M"), (1_827_141_392, "1.83G"), (37_745_884_192, "37.75G"),
    (999_960_000, "1.00G"), (950, "950"), (12_500, "12.5K"), (2_000_000_000_000, "2.00T"),
    (0, "0"), (999_999, "1.0M"),
])
def test_format_macs(n, text):
    assert format_macs(n) == text
    if n:
        assert parse_macs(text) == pytest.approx(n, rel=0.05)


# --------------------------------------------------------------------------- files


def test_write_family_specs_reload_and_recount(tmp_path, b0):
    members = make_family(b0)
    files = write_family(members, tmp_path, "myfam", base=b0)
    assert [p.name for p in files.specs] == [f"myfam-b{k}.yaml" for k in range(1, 8)]
    for m, path in zip(members, files.specs):
        spec = nas.load_spec(path)
        assert spec.name == path.stem and spec.same_architecture(m.spec)
        f = spec.meta["family"]
        assert nas.count_params(spec) == f["params"] == m.params
        assert nas.count_macs(spec) == f["macs"] == m.macs
        assert f["published"]["name"] == EFFICIENTNET[m.name].name
    rows = list(csv.DictReader(files.csv.read_text().splitlines()))
    assert [r["model"] for r in rows] == ["efficientnet-b0"] + [p.stem for p in files.specs]
    assert [r["published"] for r in rows] == [f"efficientnet-b{k}" for k in range(8)]
    assert int(rows[3]["macs"]) == members[2].macs
    assert int(rows[3]["published_params"]) == PUBLISHED_PARAMS["b3"]
    md = files.markdown.read_text()
    assert md.count("\n| ") == 1 + 8 and "efficientnet-b7" in md and "budget" in md
    assert not list(tmp_path.glob(".*.tmp"))


def test_write_family_official_and_custom(tmp_path, b0):
    members = make_family(b0, "official") + fit_budgets(b0, None, ["600M"])
    files = write_family(members, tmp_path)
    assert files.specs[0].name == "efficientnet-b1.yaml"
    assert files.specs[-1].name == "efficientnet-b0-600.0M.yaml"
    for path in files.specs:
        spec = nas.load_spec(path)
        assert nas.count_params(spec) == spec.meta["family"]["params"]
        assert nas.count_macs(spec) == spec.meta["family"]["macs"]
    assert nas.load_spec(files.specs[0]).meta["family"]["params"] == 7_794_184
    with pytest.raises(ConfigError):
        write_family(members + members[:1], tmp_path / "dup")


def _results():
    grid = grid_candidates()
    return [GridResult(c, None if i == 3 else 0.8 + 0.001 * (i % 7), 700_000_000 + i,
                       params=5_000_000 + i, resolution=32, trial_id=f"t{i}")
            for i, c in enumerate(grid[:12])]


def test_scaling_yaml_round_trip(tmp_path):
    results = _results()
    best = select_best(results)
    path = write_scaling(best.coefficients, results, tmp_path / "scaling.yaml", phi=1.0,
                         grid=GridConfig(), baseline_name="efficientnet-b0",
                         baseline_path="configs/efficientnet-b0.yaml", distinct=65,
                         started="2025-01-01T00:00:00+00:00",
                         finished="2025-01-01T01:00:00+00:00")
    rec = load_scaling(path)
    assert rec.coefficients == best.coefficients and rec.best == best
    assert rec.results == tuple(results) and rec.grid == GridConfig()
    assert (rec.grid_points, rec.distinct, rec.evaluated, rec.failed) == (109, 65, 12, 1)
    assert rec.baseline_name == "efficientnet-b0" and rec.started.startswith("2025-01-01T00")
    again = save_scaling(rec, tmp_path / "again.yaml")
    assert load_scaling(again) == rec
    assert again.read_text() == path.read_text()


@pytest.mark.parametrize("edit", [
    lambda d: d.update(extra=1),
    lambda d: d.pop("phi"),
    lambda d: d.update(product=2.5),
    lambda d: d["coefficients"].update(alpha="1.2"),
    lambda d: d["results"][0].update(accuracy=0.99),   # the summary's best no longer is
    lambda d: d["summary"].update(failed=0),
    lambda d: d["grid"].update(step=0),
    lambda d: d.update(format_version=2),
    lambda d: d["results"][1].update(color="red"),
])
def test_load_scaling_is_strict(tmp_path, edit):
    path = write_scaling(PAPER_COEFFICIENTS, _results(), tmp_path / "s.yaml", grid=GridConfig())
    d = yaml.safe_load(path.read_text())
    edit(d)
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError) as e:
        load_scaling(path)
    _one_line(e)


def test_scaler_is_torch_and_ray_free():
    code = ("import sys, scaler, nas.arch.units; "
            "bad = [m for m in ('torch', 'ray') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_published_ratios():
    assert [round(EFFICIENTNET[k].paper_macs / EFFICIENTNET["b0"].paper_macs, 1)
            for k in PAPER_FLOPS_B] == [1.8, 2.6, 4.6, 10.8, 25.4, 48.7, 94.9]
    assert all(math.isclose(EFFICIENTNET[k].paper_macs, v * 1e9) for k, v in PAPER_FLOPS_B.items())


# --------------------------------------------------------------------------- recheck

from scaler.recheck import Decision, Rechecked, decide  # noqa: E402


def _row(a, b, g, accs, macs=100):
    return Rechecked(Coefficients(a, b, g), tuple(accs), macs)


def test_recheck_separates_a_clear_winner():
    rows = [_row(1.4, 1.1, 1.1, [0.80, 0.81, 0.79]), _row(1.2, 1.1, 1.15, [0.70, 0.72, 0.71]),
            _row(1.0, 1.2, 1.15, [0.75, 0.74, 0.76])]
    d = decide(rows, "paper")
    assert d.separated and d.chosen == Coefficients(1.4, 1.1, 1.1)
    assert d.margin == pytest.approx(0.80 - 0.75)
    assert "separated from every other" in d.explain()


def test_recheck_cannot_separate_and_the_stated_rule_picks():
    rows = [_row(1.4, 1.1, 1.1, [0.80, 0.78, 0.79]), _row(1.2, 1.1, 1.15, [0.79, 0.77, 0.785]),
            _row(1.0, 1.2, 1.15, [0.70, 0.71, 0.70])]
    paper = decide(rows, "paper")
    assert not paper.separated and paper.chosen == Coefficients(1.2, 1.1, 1.15)
    assert set(paper.contenders) == {Coefficients(1.4, 1.1, 1.1), Coefficients(1.2, 1.1, 1.15)}
    assert "not separated" in paper.explain() and "'paper'" in paper.explain()
    assert decide(rows, "mean").chosen == Coefficients(1.4, 1.1, 1.1)


def test_recheck_round_trips_through_scaling_yaml(tmp_path):
    rows = [_row(1.4, 1.1, 1.1, [0.80, 0.78]), _row(1.2, 1.1, 1.15, [0.79, 0.77])]
    d = decide(rows, "paper")
    assert Decision.from_dict(d.to_dict()) == d
    results = [GridResult(r.coefficients, r.accuracies[0], r.macs) for r in rows]
    path = write_scaling(d.chosen, results, tmp_path / "scaling.yaml", recheck=d)
    record = load_scaling(path)
    assert record.recheck == d and record.coefficients == d.chosen
    with pytest.raises(ConfigError, match="tie_rule"):
        GridConfig(tie_rule="coin")
