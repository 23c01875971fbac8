"""bench/bench_tabular.py on tiny synthetic tables in the format of the shared benchmarks: the
table's space and costs, what a query returns, the outputs, and that a strategy sees only the
drawn trainings, never the table's mean."""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import bench_tabular as bt  # noqa: E402
from controller import make_strategy  # noqa: E402
from nas.core.errors import ConfigError  # noqa: E402
from nas.search.driver import OK, ChildDriver, Target  # noqa: E402
from nas.search.reward import RewardConfig  # noqa: E402

HAS_OPTUNA = importlib.util.find_spec("optuna") is not None
HAS_MPL = importlib.util.find_spec("matplotlib") is not None


def write_table(path: Path, sizes=(3, 2, 3), seed=0, adversarial_mean=False) -> Path:
    """Networks keyed by digits 1..size per decision, three trainings each, flops growing
    with the digits. ``adversarial_mean``: every network's trainings are equal and its
    ``mean`` ranks the networks in the reverse order of those trainings (and all flops
    equal), so a strategy that could read the mean would hand over another network."""
    rng = np.random.default_rng(seed)
    keys = ["".join(str(d + 1) for d in t) for t in itertools.product(*map(range, sizes))]
    data = {}
    for i, k in enumerate(keys):
        digits = [int(c) for c in k]
        if adversarial_mean:
            a = 80.0 + i * 0.5
            data[k] = {"acc": [a, a, a], "mean": 80.0 + (len(keys) - 1 - i) * 0.5, "std": 0.0,
                       "params": 1000, "flops": 1_000_000}
        else:
            base = 85 + sum(digits) + rng.normal(0, 1)
            acc = [float(base + rng.normal(0, 0.3)) for _ in range(3)]
            data[k] = {"acc": acc, "mean": float(np.mean(acc)), "std": float(np.std(acc)),
                       "params": 1000 * sum(digits), "flops": 1_000_000 * sum(d * d for d in digits)}
    path.write_text(json.dumps(data))
    return path


def test_the_table_space_decodes_costs_and_observes(tmp_path):
    t = bt.Table(write_table(tmp_path / "tiny.json"))
    assert t.sizes == (3, 2, 3) and len(t) == 18
    data = json.loads((tmp_path / "tiny.json").read_text())
    for r, key in enumerate(t.keys):
        tokens = [int(c) - 1 for c in key]
        assert t.row(tokens) == r
        spec, proxy = t.decode(tokens)
        assert proxy == {}
        cost = t.cost(spec)
        assert (cost.params, cost.macs) == (data[key]["params"], data[key]["flops"])
    rng = np.random.default_rng(0)
    seen = {t.observe(5, rng, 0.0) * 100 for _ in range(200)}
    assert seen <= {float(a) for a in t.acc[5]} and len(seen) == 3   # one of the trainings
    noisy = np.array([t.observe(5, rng, 1.5) * 100 for _ in range(4000)])
    assert abs(noisy.mean() - t.acc[5].mean()) < 0.1 and 1.4 < noisy.std() < 1.6
    with pytest.raises(ConfigError, match="no network"):
        t.row([2, 2, 0])


def test_the_driver_scores_a_child_with_the_tables_flops(tmp_path):
    t = bt.Table(write_table(tmp_path / "tiny.json"))
    cfg = RewardConfig(target_macs=5_000_000)
    d = ChildDriver(t.decode, make_strategy("random", t.sizes, seed=1), budget=3, reward=cfg,
                    target=Target(resolution=None), cost=t.cost)
    for i in range(3):
        assert isinstance(d.suggest(f"t{i}"), dict)
        d.complete(f"t{i}", {"status": OK, "accuracy": 0.9})
    for rec in d.trained_records():
        r = t.row(rec.tokens)
        assert rec.macs == t.flops[r]
        assert rec.reward == pytest.approx(0.9 * (t.flops[r] / 5e6) ** -0.07)


def test_a_strategy_sees_the_drawn_trainings_never_the_mean(tmp_path):
    path = write_table(tmp_path / "adversarial.json", adversarial_mean=True)
    t = bt.Table(path)
    task = bt.Task(str(path), 1_000_000, 0.0, "random", "random", (), 0, (18,), 2, "soft", -0.07)
    res = bt.run_search(task)
    pick = res["picks"][18]
    # The trainings rank the last key first; the mean ranks it last.
    assert t.keys[pick] == t.keys[-1]
    true = t.true_rewards(RewardConfig(target_macs=1_000_000))
    assert true[pick] == true.min()


def test_bootstrap_and_verdicts():
    mean, lo, hi = bt.bootstrap_mean([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and 1.0 <= lo < mean < hi <= 4.0
    assert bt.bootstrap_mean([2.0] * 5) == (2.0, 2.0, 2.0)
    assert bt.verdict((0.9, 0.88, 0.92), (0.8, 0.78, 0.82)).startswith("above, shown")
    assert bt.verdict((0.8, 0.78, 0.82), (0.9, 0.88, 0.92)).startswith("below, shown")
    assert "not shown: intervals overlap" in bt.verdict((0.85, 0.8, 0.9), (0.84, 0.8, 0.9))
    assert "one seed" in bt.verdict((0.9, 0.9, 0.9), (0.8, 0.8, 0.8), seeds=1)


def test_the_bench_writes_its_table_json_csv_and_plot(tmp_path, capsys):
    path = write_table(tmp_path / "tiny.json")
    strategies = ["random", "evolution", "ppo", "reinforce"] + (["tpe", "nsga2"] if HAS_OPTUNA
                                                               else [])
    out = tmp_path / "res" / "tab"
    report = bt.main(["--tables", str(path), "--seeds", "3", "--noise", "0", "1.5",
                      "--budgets", "4", "8", "--strategies", *strategies,
                      "--variant", "ppo-b2=ppo:{batch_size: 2}",
                      "--variant", "evo-small=evolution:{population: 4, sample: 2}",
                      "--budgets-for", "evo-small=4", "--out", str(out)])
    text = capsys.readouterr().out
    labels = strategies + ["ppo-b2", "evo-small"]
    rows = list(csv.DictReader(open(f"{out}.csv")))
    # Every row at every budget for 3 seeds and 2 noise levels; evo-small only at 4.
    assert len(rows) == 3 * 2 * (2 * (len(labels) - 1) + 1)
    for r in rows:
        assert 0 < float(r["percentile"]) <= 1 and float(r["regret"]) >= 0
        assert r["network"] in bt.Table(path).keys
    summary = report["summary"]
    assert {s["strategy"] for s in summary} == set(labels)
    for s in summary:
        assert s["seeds"] == 3
        assert s["percentile_lo"] <= s["percentile"] <= s["percentile_hi"]
        assert s["regret_lo"] <= s["regret"] <= s["regret_hi"]
    saved = json.loads(Path(f"{out}.json").read_text())
    assert saved["summary"] == summary and saved["protocol"]["tables"][0]["sizes"] == [3, 2, 3]
    assert saved["protocol"]["tables"][0]["target_flops"] == int(
        np.median(bt.Table(path).flops))
    assert any(c["a"] == "ppo" and c["b"] == "random" for c in report["comparisons"])
    assert "| ppo-b2 |" in text or "| ppo-b2 (" in text
    if HAS_MPL:
        assert Path(f"{out}.png").stat().st_size > 1000
    else:
        assert "no plot" in text


def test_bad_arguments_are_one_line(tmp_path):
    path = write_table(tmp_path / "tiny.json")
    with pytest.raises(ConfigError, match="LABEL=STRATEGY"):
        bt.main(["--tables", str(path), "--variant", "oops", "--out", str(tmp_path / "x")])
    with pytest.raises(ConfigError, match="unknown option"):
        bt.main(["--tables", str(path), "--variant", "p=ppo:{nope: 1}",
                 "--out", str(tmp_path / "x")])
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(ConfigError, match="non-empty JSON object"):
        bt.main(["--tables", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x")])


# ------------------------------------------------------------------ the controller's levers
# (controller/ppo.py options the bench measures: per-update advantages, the MACs prior)

def test_per_update_advantages_are_standardised_and_rank_ignores_the_scale():
    s = make_strategy("ppo", [3, 3], seed=0, advantage="zscore")
    r = __import__("torch").tensor([0.1, 0.5, 0.2, 0.9])
    adv = s._advantages(r)
    assert abs(float(adv.mean())) < 1e-6 and abs(float(adv.std()) - 1) < 1e-5
    rank = make_strategy("ppo", [3, 3], seed=0, advantage="rank")
    a1, a2 = rank._advantages(r), rank._advantages(r ** 3 * 100)
    assert __import__("torch").allclose(a1, a2)
    with pytest.raises(ConfigError, match="'advantage' must be one of baseline, zscore, rank"):
        make_strategy("ppo", [3, 3], advantage="minmax")


def test_the_prior_tilts_and_filters_the_proposals_and_does_nothing_unset():
    sizes = [4, 4, 4, 4]
    prior = lambda t: math.exp(-float(sum(t)))  # noqa: E731  (small: higher known reward)
    plain = [make_strategy("ppo", sizes, seed=3).ask().tokens for _ in range(1)]
    unset = make_strategy("ppo", sizes, seed=3, prior_weight=2.0, prior_reject=0.5)
    assert unset.ask().tokens == plain[0]  # no prior told: the default's stream
    warm = make_strategy("ppo", sizes, seed=3, prior_weight=2.0)
    warm.set_prior(prior)
    base = make_strategy("ppo", sizes, seed=3)
    mean_sum = lambda s: np.mean([sum(s.ask().tokens) for _ in range(200)])  # noqa: E731
    assert mean_sum(warm) < mean_sum(base) - 1.5
    rej = make_strategy("ppo", sizes, seed=3, prior_reject=0.5)
    rej.set_prior(prior)
    threshold = rej._reject_threshold()
    assert all(math.log(prior(rej.ask().tokens)) >= threshold for _ in range(50))
    state = warm.state_dict()
    again = make_strategy("ppo", sizes, seed=3, prior_weight=2.0)
    again.load_state_dict(state)
    again.set_prior(prior)
    assert again._warmed and again.ask() == warm.ask()


def test_ppo_warm_starts_by_default_through_the_driver_and_never_after_it_sampled(tmp_path):
    t = bt.Table(write_table(tmp_path / "tiny.json"))
    ppo = make_strategy("ppo", t.sizes, seed=0)
    assert ppo.options["prior_weight"] == 10.0
    assert make_strategy("reinforce", t.sizes).options["prior_weight"] == 0.0
    d = ChildDriver(t.decode, ppo, budget=2, reward=RewardConfig(target_macs=5_000_000),
                    target=Target(resolution=None), cost=t.cost)
    assert ppo._uses_prior() and not ppo._warmed
    d.suggest("t0")
    assert ppo._warmed
    # A policy that has sampled already (a one-shot search handing its strategy over) is
    # not tilted when a driver tells it the prior later.
    handed = make_strategy("ppo", t.sizes, seed=0)
    handed.ask()
    before = {k: v.clone() for k, v in handed.policy.state_dict().items()}
    ChildDriver(t.decode, handed, budget=2, reward=RewardConfig(target_macs=5_000_000),
                target=Target(resolution=None), cost=t.cost).suggest("t0")
    assert handed._warmed
    assert all((before[k] == v).all() for k, v in handed.policy.state_dict().items())


def test_the_landscape_check_runs_the_rows_on_synthetic_landscapes(tmp_path, capsys):
    out = tmp_path / "land"
    report = bt.main(["--landscape", "--strategies", "random", "ppo", "--seeds", "1",
                      "--budgets", "3", "6", "--out", str(out)])
    assert {(s["strategy"], s["budget"]) for s in report["summary"]} == {
        (a, n) for a in ("random", "ppo") for n in (3, 6)}
    assert json.loads(Path(f"{out}.json").read_text())["summary"] == report["summary"]
    assert "ppo against random" in capsys.readouterr().out
