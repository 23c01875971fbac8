"""Controller tests: a planted objective over the real MnasNet decision sizes, exact save/restore
with proposals in flight, strict inputs, and the diagnostics.

The planted objective: reward = fraction of decisions that match a hidden target sequence. Its
optimum is unique (only the target scores 1.0) and a uniform sample hits it with probability
about 5e-19, so reaching it shows that a strategy learns; the signal per decision is small
(1/43 of the reward), as in a real search where one choice moves accuracy a little.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nas
from controller import OPTIONAL, STRATEGIES, Proposal, Strategy, make_strategy
from controller.optuna_search import optuna_available
from controller.policy import LSTMPolicy
from search_space import SearchSpace

REPO = Path(__file__).resolve().parent.parent
SIZES = SearchSpace.from_yaml(nas.config_path("mnasnet-space")).sizes()
NEEDS_OPTUNA = pytest.mark.skipif(not optuna_available(), reason="optuna is not installed "
                                  "(pip install 'effnas[optuna]'; tools/setup.sh installs it)")
# Every strategy; those that need Optuna are skipped without it.
ALL = [pytest.param(n, marks=NEEDS_OPTUNA) if n in OPTIONAL else n for n in STRATEGIES]


def tell(s: Strategy, p: Proposal, r):
    """Tell ``r`` with the metrics a multi-objective strategy needs (others ignore them)."""
    return s.tell(p, r, {"accuracy": 0.5, "macs": 1e8} if s.METRICS else None)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def planted(target):
    target = np.asarray(target)

    def reward(tokens) -> float:
        return float(np.mean(np.asarray(tokens) == target))
    return reward


def target_for(seed: int) -> tuple[int, ...]:
    return tuple(int(t) for t in np.random.default_rng(10_000 + seed).integers(0, np.array(SIZES)))


def search(strategy: Strategy, reward, budget: int, in_flight: int, seed: int = 0):
    """Drive ``strategy`` asynchronously: ``in_flight`` children at a time, finishing in random
    order. Returns (results told when the optimum was first told or None, rewards told)."""
    rng = np.random.default_rng(seed)
    pending = [strategy.ask() for _ in range(in_flight)]
    rewards = []
    for n in range(1, budget + 1):
        p = pending.pop(int(rng.integers(len(pending))))
        r = reward(p.tokens)
        rewards.append(r)
        strategy.tell(p, r)
        if r == 1.0:
            return n, rewards
        pending.append(strategy.ask())
    return None, rewards


# -- learning on the planted objective ----------------------------------------------------------

def test_space_is_the_mnasnet_space():
    assert len(SIZES) == 43 and min(SIZES) >= 2 and max(SIZES) <= 4


@pytest.mark.parametrize("name,budget", [("ppo", 2000), ("reinforce", 5000)])
def test_policy_gradient_reaches_the_optimum_where_random_does_not(name, budget):
    reward = planted(target_for(0))
    reached, _ = search(make_strategy(name, SIZES, seed=0), reward, budget, in_flight=4)
    assert reached is not None, f"{name} did not reach the planted optimum in {budget} samples"
    _, random_rewards = search(make_strategy("random", SIZES, seed=0), reward, budget, in_flight=4)
    assert max(random_rewards) < 0.8


def test_ppo_with_eight_in_flight_and_other_seed():
    reward = planted(target_for(1))
    reached, _ = search(make_strategy("ppo", SIZES, seed=1), reward, 2000, in_flight=8, seed=1)
    assert reached is not None


def test_evolution_improves_over_random():
    reward = planted(target_for(2))
    budget = 1500
    _, evo = search(make_strategy("evolution", SIZES, seed=2), reward, budget, in_flight=4)
    _, rnd = search(make_strategy("random", SIZES, seed=2), reward, budget, in_flight=4)
    assert max(evo) > max(rnd) + 0.1
    assert np.mean(evo[-200:]) > np.mean(rnd[-200:]) + 0.2


# -- save and restore ---------------------------------------------------------------------------

def _run_steps(s: Strategy, pending: list[Proposal], reward, steps: int, rng):
    """Tell one pending proposal (random order) and ask a new one, ``steps`` times."""
    trace = []
    for _ in range(steps):
        p = pending.pop(int(rng.integers(len(pending))))
        d = tell(s, p, reward(p.tokens))
        q = s.ask()
        pending.append(q)
        trace.append((p.to_dict(), d, q.to_dict()))
    return trace


def _same_state(a, b) -> bool:
    if isinstance(a, dict) and "study" in a:  # a pickled Optuna study: it holds wall-clock
        a, b = ({k: v for k, v in x.items() if k != "study"} for x in (a, b))  # times
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) \
            and all(_same_state(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("weights_only", [True, False])
def test_save_restore_continues_exactly_with_proposals_in_flight(name, weights_only, tmp_path):
    reward = planted(target_for(3))
    opts = {"population": 8, "sample": 3} if name == "evolution" else {}
    if name in ("ppo", "reinforce"):
        opts = {"batch_size": 6, "minibatches": 2} if name == "ppo" else {"batch_size": 6}

    a = make_strategy(name, SIZES, seed=3, **opts)
    pending = [a.ask() for _ in range(5)]
    rng = np.random.default_rng(0)
    _run_steps(a, pending, reward, 16, rng)      # mid-batch: 16 = 2 * 6 + 4 results buffered
    path = tmp_path / "controller.pt"
    torch.save(a.state_dict(), path)
    saved_pending = list(pending)
    rng_state = rng.bit_generator.state

    after_a = _run_steps(a, pending, reward, 25, rng)

    b = make_strategy(name, SIZES, seed=3, **opts)
    b.load_state_dict(torch.load(path, weights_only=weights_only))
    rng.bit_generator.state = rng_state
    # The children in flight at the save are told to the restored strategy.
    after_b = _run_steps(b, saved_pending, reward, 25, rng)

    assert after_a == after_b
    assert _same_state(a.state_dict(), b.state_dict())
    assert (a.n_asked, a.n_told) == (b.n_asked, b.n_told)


def test_state_dict_is_a_snapshot_not_a_view():
    s = make_strategy("ppo", SIZES, seed=0, batch_size=4)
    reward = planted(target_for(0))
    for _ in range(4):
        p = s.ask()
        s.tell(p, reward(p.tokens))
    sd = s.state_dict()
    kept = {k: v.clone() for k, v in sd["state"]["policy"].items()}
    for _ in range(8):
        p = s.ask()
        s.tell(p, reward(p.tokens))
    assert all(torch.equal(kept[k], sd["state"]["policy"][k]) for k in kept)
    assert not all(torch.equal(kept[k], v) for k, v in s.policy.state_dict().items())


def test_load_refuses_another_strategy_space_or_options():
    sd = make_strategy("ppo", SIZES, seed=0).state_dict()
    with pytest.raises(ValueError, match="strategy 'ppo'"):
        make_strategy("reinforce", SIZES).load_state_dict(sd)
    with pytest.raises(ValueError, match="sizes"):
        make_strategy("ppo", SIZES[:-1]).load_state_dict(sd)
    with pytest.raises(ValueError, match="lr"):
        make_strategy("ppo", SIZES, lr=5e-3).load_state_dict(sd)


# -- strict inputs ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "1.0", None, True])
def test_tell_rejects_a_non_finite_or_non_numeric_reward(name, bad):
    s = make_strategy(name, SIZES, seed=0)
    p = s.ask()
    with pytest.raises(ValueError, match="reward"):
        tell(s, p, bad)
    assert s.n_told == 0
    tell(s, p, 0.5)                                # the proposal can still be told properly


@pytest.mark.parametrize("name", ALL)
def test_bad_sizes_and_unknown_options_are_clear_errors(name):
    with pytest.raises(ValueError, match="sizes is empty"):
        make_strategy(name, [])
    with pytest.raises(ValueError, match=r"sizes\[1\] = 0"):
        make_strategy(name, [2, 0, 3])
    with pytest.raises(ValueError, match="sizes"):
        make_strategy(name, [2, 1.5])
    with pytest.raises(ValueError, match="'learning_rate'"):
        make_strategy(name, SIZES, learning_rate=0.1)
    with pytest.raises(ValueError, match="seed"):
        make_strategy(name, SIZES, seed=-1)


def test_bad_option_values_and_names():
    with pytest.raises(ValueError, match="'lr'"):
        make_strategy("ppo", SIZES, lr=-1.0)
    with pytest.raises(ValueError, match="'baseline_decay'"):
        make_strategy("reinforce", SIZES, baseline_decay=1.0)
    with pytest.raises(ValueError, match="'batch_size'"):
        make_strategy("ppo", SIZES, batch_size=0)
    with pytest.raises(ValueError, match="'clip'"):
        make_strategy("reinforce", SIZES, clip=0.2)      # PPO-only option
    with pytest.raises(ValueError, match="'sample'"):
        make_strategy("evolution", SIZES, population=5, sample=6)
    with pytest.raises(ValueError, match="unknown strategy 'bayes'"):
        make_strategy("bayes", SIZES)


@pytest.mark.parametrize("name", ALL)
def test_tell_rejects_proposals_outside_the_space(name):
    s = make_strategy(name, SIZES)
    with pytest.raises(ValueError, match="43 decisions"):
        tell(s, Proposal((0,) * 42), 0.5)
    with pytest.raises(ValueError, match="token 0 is 2"):
        tell(s, Proposal((2,) + (0,) * 42), 0.5)


def test_proposal_round_trip_and_validation():
    s = make_strategy("ppo", SIZES, seed=0)
    for _ in range(30):
        p = s.ask()
        assert len(p.tokens) == len(p.logp) == len(SIZES)
        assert all(0 <= t < n for t, n in zip(p.tokens, SIZES))
        assert Proposal.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    q = Proposal([1, 2, 3])
    assert q.tokens == (1, 2, 3) and q.logp == () and Proposal.from_dict(q.to_dict()) == q
    with pytest.raises(ValueError, match="unknown proposal key"):
        Proposal.from_dict({"tokens": [1], "reward": 1.0})
    with pytest.raises(ValueError, match="one per token"):
        Proposal((1, 2), (-0.5,))
    with pytest.raises(ValueError, match=">= 0"):
        Proposal((1, -1))


def test_a_hand_picked_proposal_without_logp_can_be_told():
    s = make_strategy("ppo", SIZES, seed=0, batch_size=2)
    s.tell(Proposal((0,) * len(SIZES)), 0.9)
    d = s.tell(s.ask(), 0.1)
    assert d is not None and all(math.isfinite(v) for v in d.values())


# -- determinism and diagnostics ----------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_seeded_and_reproducible(name):
    def asks(seed):
        s = make_strategy(name, SIZES, seed=seed, **({"population": 4, "sample": 2}
                                                     if name == "evolution" else {}))
        out = []
        for i in range(12):
            p = s.ask()
            tell(s, p, float(i % 5))
            out.append(p)
        return out
    assert asks(0) == asks(0)
    assert asks(0) != asks(1)


@pytest.mark.parametrize("name", ["ppo", "reinforce"])
def test_policy_gradient_diagnostics(name):
    s = make_strategy(name, SIZES, seed=0)
    b = s.options["batch_size"]
    reward = planted(target_for(0))
    results = []
    for i in range(2 * b):
        p = s.ask()
        results.append(s.tell(p, reward(p.tokens)))
    assert all(d is None for i, d in enumerate(results) if i not in (b - 1, 2 * b - 1))
    d = results[2 * b - 1]
    keys = {"losses/policy_loss", "losses/entropy", "losses/approx_kl", "reward/mean",
            "reward/baseline", "policy/version"}
    if name == "ppo":
        keys.add("losses/clipfrac")
    assert keys <= d.keys()
    assert all(math.isfinite(v) for v in d.values())
    assert d["policy/version"] == 2.0 == s.version
    # Entropy starts near uniform: mean over decisions of log(size), within a few percent.
    uniform = float(np.mean(np.log(SIZES)))
    assert 0.9 * uniform < d["losses/entropy"] <= uniform + 1e-6


def test_evolution_and_random_diagnostics():
    evo = make_strategy("evolution", SIZES, seed=0, population=4, sample=2)
    for i, r in enumerate([0.1, 0.5, 0.3, 0.2, 0.9, 0.4]):
        d = evo.tell(evo.ask(), r)
        assert d is not None
    # The two oldest (0.1, 0.5) have aged out: the population is [0.3, 0.2, 0.9, 0.4].
    assert d["evolution/population_best"] == 0.9
    assert d["evolution/population_mean"] == pytest.approx(0.45)
    rnd = make_strategy("random", SIZES, seed=0)
    assert rnd.tell(rnd.ask(), 0.5) is None


def test_evolution_mutates_the_tournament_winner():
    sizes = [3] * 10
    evo = make_strategy("evolution", sizes, seed=0, population=3, sample=3, mutations=2)
    best = (2,) * 10
    for tokens, r in [((0,) * 10, 0.1), (best, 0.9), ((1,) * 10, 0.2)]:
        evo.tell(Proposal(tokens), r)
    for _ in range(20):
        child = evo.ask().tokens
        assert sum(a != b for a, b in zip(child, best)) == 2


def test_policy_scores_what_it_samples():
    gen = torch.Generator().manual_seed(0)
    for opts in ({}, {"temperature": 2.0, "tanh_constant": 2.5}):
        policy = LSTMPolicy(SIZES, hidden=16, generator=gen, **opts)
        tokens, logp = policy.sample(64, gen)
        assert all(int(tokens[:, i].max()) < n for i, n in enumerate(SIZES))
        with torch.no_grad():
            logp2, entropy = policy.evaluate(tokens)
        torch.testing.assert_close(logp2, logp, atol=1e-5, rtol=0)
        assert bool((entropy <= torch.log(torch.tensor(SIZES, dtype=torch.float32)) + 1e-6).all())
    assert all(float(p.detach().abs().max()) <= 0.1 for p in LSTMPolicy(SIZES).parameters())


def test_controller_imports_neither_ray_nor_torch_until_needed():
    code = ("import sys, controller; assert 'torch' not in sys.modules, 'torch'; "
            "controller.make_strategy('ppo', [2, 3]); "
            "bad = [m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'tune'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


@pytest.mark.parametrize("name", ["ppo", "reinforce"])
def test_restart_rewards_keeps_the_policy_and_forgets_the_reward_scale(name):
    s = make_strategy(name, SIZES, seed=0, batch_size=4)
    reward = planted(target_for(0))
    for _ in range(6):  # one update, and two results buffered for the next
        p = s.ask()
        s.tell(p, reward(p.tokens))
    policy = {k: v.clone() for k, v in s.policy.state_dict().items()}
    version = s.version
    s.restart_rewards()
    assert all(torch.equal(policy[k], v) for k, v in s.policy.state_dict().items())
    assert s.version == version and s._baseline is None and s._buffer == []
    # The next update's baseline is its own batch's mean, on the new scale (10 + reward);
    # before the restart the two buffered results would have joined that batch.
    batch = [s.ask() for _ in range(4)]
    diag = None
    for p in batch:
        diag = s.tell(p, 10 + reward(p.tokens))
    assert diag is not None and s.version == version + 1
    assert min(10 + reward(p.tokens) for p in batch) - 1e-6 <= s._baseline
    restored = make_strategy(name, SIZES, seed=0, batch_size=4)
    restored.load_state_dict(s.state_dict())
    assert restored._baseline == s._baseline


@pytest.mark.parametrize("name", ["random", "evolution"])
def test_restart_rewards_keeps_a_strategy_without_reward_statistics(name):
    s = make_strategy(name, SIZES, seed=0)
    for i in range(5):
        s.tell(s.ask(), 0.1 * i)
    before = s.state_dict()
    s.restart_rewards()
    assert _same_state(before, s.state_dict())
