"""Optuna's TPE and NSGA-II as strategies: learning, two objectives through the driver, the
Pareto front, exact state, and a clear error where Optuna is not installed.

(The save/restore, strict-input and seeding tests of every strategy, these included, are in
tests/test_controller.py.)"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nas
from controller import Proposal, RewardError, check_available, make_strategy
from controller.optuna_search import optuna_available
from nas.core.errors import ConfigError
from search_space import SearchSpace

ROOT = Path(__file__).resolve().parent.parent
SIZES = SearchSpace.from_yaml(nas.config_path("mnasnet-space")).sizes()
needs_optuna = pytest.mark.skipif(not optuna_available(), reason="optuna is not installed "
                                  "(pip install 'effnas[optuna]'; tools/setup.sh installs it)")


def _no_optuna(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "optuna" else real(name, *a))


def test_without_optuna_the_strategies_say_how_to_install_it(monkeypatch, capsys, tmp_path):
    _no_optuna(monkeypatch)
    for name in ("tpe", "nsga2"):
        with pytest.raises(ConfigError, match=r"needs optuna, which is not installed: pip "
                                              r"install 'effnas\[optuna\]'"):
            check_available(name)
    import search
    code = search.main(["--target-flops", "400M", "--strategy", "nsga2", "--out",
                        str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "strategy 'nsga2' needs optuna" in err[0]
    assert not (tmp_path / "run").exists()
    check_available("ppo")  # the built-in ones need nothing


def test_import_controller_does_not_import_optuna():
    code = ("import sys, controller; controller.make_strategy('random', [2, 3]); "
            "sys.exit(1 if 'optuna' in sys.modules else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def onemax(seed: int):
    target = np.random.default_rng(10_000 + seed).integers(0, np.array(SIZES))
    return lambda tokens: float(np.mean(np.asarray(tokens) == target))


@needs_optuna
def test_tpe_learns_where_random_does_not():
    reward = onemax(0)

    def run(name):
        s = make_strategy(name, SIZES, seed=0)
        pending, told = [s.ask(), s.ask()], []
        for _ in range(150):
            p = pending.pop(0)
            told.append(reward(p.tokens))
            s.tell(p, told[-1])
            pending.append(s.ask())
        return told
    tpe, rnd = run("tpe"), run("random")
    assert np.mean(tpe[-50:]) > np.mean(rnd[-50:]) + 0.1 and max(tpe) > max(rnd)


@needs_optuna
def test_nsga2_needs_both_objectives_and_keeps_failures_out():
    s = make_strategy("nsga2", SIZES, seed=0, population_size=4)
    p = s.ask()
    with pytest.raises(RewardError, match="tell it metrics with accuracy, macs"):
        s.tell(p, 0.5)
    with pytest.raises(RewardError, match="metric 'macs' must be a real number"):
        s.tell(p, 0.5, {"accuracy": 0.5, "macs": "1G"})
    assert s.n_told == 0
    s.tell(p, 0.0, {"accuracy": math.nan, "macs": 3e8})  # a failed child
    states = [t.state.name for t in s.study.trials]
    assert states == ["FAIL"] and s.pareto_front() == []


@needs_optuna
def test_nsga2_front_is_the_front_of_what_it_was_told():
    rng = np.random.default_rng(1)
    s = make_strategy("nsga2", SIZES, seed=1, population_size=6)
    told = []
    for _ in range(30):
        p = s.ask()
        acc, macs = float(rng.uniform(0.5, 0.9)), float(rng.integers(1, 8) * 1e8)
        s.tell(p, acc, {"accuracy": acc, "macs": macs})
        told.append((p.tokens, acc, macs))
    front = {(t, a, m) for t, a, m in told
             if not any(a2 >= a and m2 <= m and (a2, m2) != (a, m) for _, a2, m2 in told)}
    got = s.pareto_front()
    assert {(p.tokens, a, m) for p, a, m in got} == front
    assert [m for _, _, m in got] == sorted(m for _, _, m in got)


@needs_optuna
def test_the_driver_tells_nsga2_accuracy_and_macs():
    from nas.search.driver import ChildDriver, Target
    from nas.search.reward import RewardConfig
    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    d = ChildDriver(lambda t: (space.decode(t), {}), make_strategy("nsga2", space.sizes(),
                                                                   population_size=4),
                    budget=3, reward=RewardConfig(target_macs=400_000_000), target=Target())
    for i, res in enumerate([{"status": "ok", "accuracy": 0.7}, {"status": "diverged"},
                             {"status": "timeout", "accuracy": 0.4, "error": "cap"}]):
        assert isinstance(d.suggest(f"t{i}"), dict)
        d.complete(f"t{i}", res)
    trials = d.strategy.study.trials
    recs = d.trained_records()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[0].values == [0.7, float(recs[0].macs)]
    assert trials[2].values == [0.4, float(recs[2].macs)]  # a timeout scored partial


@needs_optuna
@pytest.mark.parametrize("name", ["tpe", "nsga2"])
def test_a_proposal_the_study_never_asked_is_added(name):
    s = make_strategy(name, SIZES, seed=0)
    s.tell(Proposal((1,) * len(SIZES)), 0.6, {"accuracy": 0.6, "macs": 2e8})
    (t,) = s.study.trials
    assert t.state.name == "COMPLETE" and t.params["d0"] == 1
    assert s.state_dict()["state"]["trials"][0][1:3] == ["COMPLETE", [1] * len(SIZES)]


def _tell_and_ask(s, pending, reward, steps, rng):
    """Tell one pending proposal (random order), ask a new one; what was told and asked."""
    trace = []
    for _ in range(steps):
        p = pending.pop(int(rng.integers(len(pending))))
        acc = reward(p.tokens)
        s.tell(p, acc, {"accuracy": acc, "macs": 1e8 * (1 + sum(p.tokens) % 7)})
        q = s.ask()
        pending.append(q)
        trace.append((p.tokens, q.tokens))
    return trace


@needs_optuna
@pytest.mark.parametrize("name,opts", [("tpe", {"n_startup_trials": 4}),
                                       ("nsga2", {"population_size": 4})])
def test_state_round_trips_with_locks_and_continues_exactly_across_generations(
        name, opts, tmp_path):
    # Optuna 5.1's NSGA-II sampler holds a threading.Lock, which pickle refuses; a lock put
    # into the TPE sampler too makes this test check that on any Optuna version. NSGA-II
    # with a population of 4 crosses generations (its parent cache) before and after the save.
    import threading
    import torch
    reward = onemax(1)
    a = make_strategy(name, SIZES, seed=5, **opts)
    a.study.sampler._test_locks = (threading.Lock(), threading.RLock())
    pending = [a.ask() for _ in range(3)]
    rng = np.random.default_rng(0)
    _tell_and_ask(a, pending, reward, 10, rng)
    for held in a.study.sampler._test_locks:
        held.acquire()
    torch.save(a.state_dict(), tmp_path / "s.pt")
    saved_pending, rng_state = list(pending), rng.bit_generator.state
    after_a = _tell_and_ask(a, pending, reward, 12, rng)

    b = make_strategy(name, SIZES, seed=5, **opts)
    b.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    lock, rlock = b.study.sampler._test_locks   # new ones, free though a's were held
    assert lock.acquire(blocking=False) and rlock.acquire(blocking=False)
    rng.bit_generator.state = rng_state
    assert _tell_and_ask(b, saved_pending, reward, 12, rng) == after_a
    assert [(t.number, t.state, t.params, t.values) for t in a.study.trials] == \
        [(t.number, t.state, t.params, t.values) for t in b.study.trials]


@needs_optuna
def test_a_state_of_another_optuna_version_is_refused():
    s = make_strategy("tpe", SIZES, seed=0)
    state = s.state_dict()
    state["state"]["optuna"] = "0.1.0"
    with pytest.raises(ConfigError, match="made with Optuna 0.1.0"):
        make_strategy("tpe", SIZES, seed=0).load_state_dict(state)


@needs_optuna
def test_bad_options_are_clear():
    with pytest.raises(ConfigError, match="'population_size' of strategy 'nsga2' must be >= 2"):
        make_strategy("nsga2", SIZES, population_size=1)
    with pytest.raises(ConfigError, match="'crossover_prob'"):
        make_strategy("nsga2", SIZES, crossover_prob=1.5)
    with pytest.raises(ConfigError, match="'multivariate'"):
        make_strategy("tpe", SIZES, multivariate="yes")
    assert make_strategy("nsga2", SIZES, crossover_prob=1).options["crossover_prob"] == 1.0
