"""The search driver without Ray: dedup, failures, the reference, save/restore mid-run."""

from __future__ import annotations

import math

import pytest
import torch

import nas
from controller import Proposal, make_strategy
from nas.search.driver import (
    CACHED,
    DIVERGED,
    FAILED,
    OK,
    OOM,
    REFERENCE,
    ChildDriver,
    Target,
)
from nas.search.reward import RewardConfig, compute_reward
from search_space import SearchSpace


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace.from_yaml(nas.config_path("mnasnet-space"))


def make_driver(space, strategy="random", budget=6, reference=None, **options):
    strat = make_strategy(strategy, space.sizes(), seed=3, **options)
    return ChildDriver(lambda t: (space.decode(t), {}), strat, budget=budget,
                       reward=RewardConfig(target_macs=400_000_000, failure_reward=-0.5),
                       target=Target(), reference=reference)


def ok_result(acc=0.8):
    return {"status": "ok", "accuracy": acc, "train_seconds": 1.5, "seconds": 2.0}


def test_reward_matches_formula():
    cfg = RewardConfig(target_macs=400_000_000)
    r = compute_reward(0.9, 800_000_000, cfg)
    assert r.reward == pytest.approx(0.9 * 2 ** -0.07)
    assert r.cost_ratio == pytest.approx(2.0)
    hard = RewardConfig(target_macs=400_000_000, form="hard")
    assert compute_reward(0.9, 300_000_000, hard).reward == pytest.approx(0.9)
    assert compute_reward(0.9, 800_000_000, hard).reward == pytest.approx(0.45)
    with pytest.raises(ValueError):
        compute_reward(float("nan"), 1, cfg)


def test_budget_and_records(space):
    d = make_driver(space, budget=3)
    configs = [d.suggest(f"t{i}") for i in range(3)]
    assert [c["child"] for c in configs] == [0, 1, 2]
    assert d.suggest("t3") is None  # budget issued, children in flight
    for i in range(3):
        recs = d.complete(f"t{i}", ok_result(0.5 + i / 10))
        assert recs[0].status == OK and recs[0].macs == nas.count_macs(space.decode(recs[0].tokens))
        assert recs[0].reward == pytest.approx(compute_reward(0.5 + i / 10, recs[0].macs,
                                                              d.reward_cfg).reward)
    assert d.suggest("t4") == "FINISHED" and d.finished()
    assert d.best(1)[0].accuracy == pytest.approx(0.7)


@pytest.mark.parametrize("result,error,status", [
    ({"status": "diverged", "error": "loss is nan"}, None, DIVERGED),
    ({"status": "oom", "error": "CUDA out of memory"}, None, OOM),
    ({"status": "failed", "error": "bad spec"}, None, FAILED),
    ({"status": "ok", "accuracy": float("nan")}, None, DIVERGED),
    ({"status": "ok", "accuracy": float("inf")}, None, DIVERGED),
    (None, "worker died", FAILED),
    ({"epoch": 1}, None, FAILED),  # ended without a final result
])
def test_failures_get_the_defined_reward_and_the_search_goes_on(space, result, error, status):
    d = make_driver(space, budget=2)
    d.suggest("a")
    rec = d.complete("a", result, error)[0]
    assert rec.status == status and rec.reward == -0.5 and rec.error
    assert math.isnan(rec.accuracy)
    assert d.suggest("b")["child"] == 1


def test_reference_is_trained_first_and_not_told(space):
    b0 = nas.load_spec("efficientnet-b0")
    d = make_driver(space, budget=1, reference=b0)
    first = d.suggest("r")
    assert first["child"] == -2 and nas.spec_from_dict(first["spec"]) == b0
    d.suggest("c")
    rec = d.complete("r", ok_result(0.9))[0]
    assert rec.status == REFERENCE and rec.macs == 385_814_752
    assert d.best(1) == []  # the reference is not a child
    d.complete("c", ok_result(0.4))
    assert d.finished() and len(d.trained_records()) == 1


class Repeating:
    """A strategy that proposes the same few architectures over and over."""

    def __init__(self, tokens_list):
        self.tokens_list = tokens_list
        self.i = 0
        self.told = []

    def ask(self):
        t = self.tokens_list[self.i % len(self.tokens_list)]
        self.i += 1
        return Proposal(tokens=t)

    def tell(self, proposal, reward):
        self.told.append((proposal.tokens, reward))
        return None

    def state_dict(self):
        return {"i": self.i}

    def load_state_dict(self, s):
        self.i = s["i"]


def test_evaluated_architectures_are_not_trained_again(space):
    import numpy as np
    rng = np.random.default_rng(0)
    a, b = space.sample_tokens(rng), space.sample_tokens(rng)
    strat = Repeating([a, a, b])
    d = ChildDriver(lambda t: (space.decode(t), {}), strat, budget=5,
                    reward=RewardConfig(), max_duplicate_asks=10)
    assert d.suggest("1")["child"] == 0           # a
    assert d.suggest("2")["child"] == 1           # a again waits; b is issued
    assert len(d.waiting[d.key(a)]) == 1
    recs = d.complete("1", ok_result(0.6))
    assert [r.status for r in recs] == [OK, CACHED]   # the waiting twin is told the same reward
    assert strat.told[0][1] == strat.told[1][1]
    d.complete("2", ok_result(0.7))
    # Now every proposal is a known architecture: the controller has converged.
    assert d.suggest("3") == "FINISHED" and d.converged and d.finished()
    assert len(d.trained_records()) == 2
    assert all(r.status == CACHED for r in d.records[3:])


def test_state_round_trip_reissues_in_flight_children(space, tmp_path):
    d = make_driver(space, strategy="ppo", budget=8, batch_size=2,
                    reference=nas.load_spec("efficientnet-b0"))
    for i in range(4):
        d.suggest(f"t{i}")
    d.complete("t1", ok_result(0.6))
    d.complete("t2", ok_result(0.7))
    path = tmp_path / "driver.pt"
    torch.save(d.state_dict(), path)
    in_flight = sorted((j.child, j.tokens) for j in d.in_flight.values())

    fresh = make_driver(space, strategy="ppo", budget=8, batch_size=2,
                        reference=nas.load_spec("efficientnet-b0"))
    fresh.load_state_dict(torch.load(path, weights_only=False), Proposal)
    reissued = [fresh.suggest(f"n{i}") for i in range(len(in_flight))]
    assert sorted((c["child"], fresh.in_flight[f"n{i}"].tokens)
                  for i, c in enumerate(reissued)) == in_flight
    # Completed children are kept and not trained again; numbering continues.
    assert len(fresh.trained_records()) == 2
    nxt = fresh.suggest("n9")
    assert nxt["child"] == 3  # t0 was the reference; children 0-2 were issued
    # The original and the restored driver go on identically.
    assert d.suggest("t9")["spec"] == nxt["spec"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def timed_driver(space, clock, time_budget, spent=0.0, budget=50):
    strat = make_strategy("random", space.sizes(), seed=3)
    return ChildDriver(lambda t: (space.decode(t), {}), strat, budget=budget,
                       reward=RewardConfig(target_macs=400_000_000), target=Target(),
                       clock=clock, time_budget=time_budget, spent=spent)


def test_time_budget_stops_new_children_and_lets_running_ones_finish(space):
    clock = FakeClock()
    d = timed_driver(space, clock, time_budget=60.0)
    assert d.suggest("a")["child"] == 0 and d.suggest("b")["child"] == 1
    clock.now += 59.0
    d.complete("a", ok_result())
    assert d.suggest("c")["child"] == 2 and not d.out_of_time()
    clock.now += 1.0
    assert d.out_of_time() and d.suggest("d") is None  # b and c still train
    assert not d.finished()
    d.complete("b", ok_result())
    d.complete("c", ok_result())
    assert d.suggest("e") == "FINISHED" and d.finished()
    assert len(d.trained_records()) == 3 and d.issued < d.budget


def test_time_budget_counts_time_spent_before_and_starts_the_first_child(space):
    clock = FakeClock()
    # A supernet phase already used more than the budget: one child still trains.
    d = timed_driver(space, clock, time_budget=60.0, spent=90.0)
    assert d.seconds() == 90.0
    assert d.suggest("a")["child"] == 0
    assert d.suggest("b") is None
    d.complete("a", ok_result())
    assert d.suggest("c") == "FINISHED" and len(d.trained_records()) == 1
    with pytest.raises(ValueError, match="time_budget"):
        timed_driver(space, clock, time_budget=0.0)


def test_time_budget_carries_over_a_resume(space):
    clock = FakeClock()
    d = timed_driver(space, clock, time_budget=100.0)
    d.suggest("a")
    clock.now += 40.0
    d.complete("a", ok_result())
    state = d.state_dict()
    assert state["seconds"] == pytest.approx(40.0)

    clock.now += 3600.0  # the machine was off: time between sessions does not count
    fresh = timed_driver(space, clock, time_budget=100.0)
    fresh.load_state_dict(state, Proposal)
    assert fresh.seconds() == pytest.approx(40.0)
    assert fresh.suggest("b")["child"] == 1
    clock.now += 60.0
    fresh.complete("b", ok_result())
    assert fresh.out_of_time() and fresh.suggest("c") == "FINISHED"
    # A state saved before the time was counted resumes at zero.
    del state["seconds"]
    old = timed_driver(space, clock, time_budget=100.0)
    old.load_state_dict(state, Proposal)
    assert old.seconds() == 0.0 and not old.out_of_time()
