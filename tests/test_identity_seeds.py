"""One identity per network, seeded children, and honest timeout statuses.

- token sequences that build the same network are one child (canonical specs), and the
  space counts distinct networks exactly (checked by brute force on a small space);
- every child is trained with a seed drawn from the run's seed and its identity, so the same
  child trained twice (on any worker, after any other child) gives the same accuracy;
- a child cut off by the time cap is "timeout" with its partial accuracy, never "ok".
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import nas
from controller import Proposal
from nas.arch.builder import build_model
from nas.arch.spec import (
    ArchSpec,
    StageSpec,
    canonical,
    canonical_stage,
    identity,
    spec_to_dict,
)
from nas.data import synthetic_splits
from nas.training.child import run_child
from nas.search.driver import OK, TIMEOUT, ChildDriver, Target, child_key, child_seed
from nas.search.reward import RewardConfig
from nas.training.recipe import Recipe
from search_space import SearchSpace

SMALL_SPACE = {
    "format_version": 1, "name": "small",
    "fixed": {"resolution": 32, "stem": 8, "stem_stride": 1, "head": 16, "dropout": 0.0,
              "drop_path_rate": 0.0, "bn_momentum": 0.1, "bn_eps": 1e-3},
    "global": {"activation": ["relu"]},
    "defaults": {"op": ["ds", "mbconv2"], "kernel": [3], "se": [0.0],
                 "skip": ["pool", "identity", "none"], "filter_multipliers": [0.5, 1.0],
                 "layer_offsets": [-1, 0]},
    "blocks": [{"out": 16, "repeats": 1, "stride": 1},
               {"out": 16, "repeats": 2, "stride": 2},
               {"out": 16, "repeats": 2, "stride": 1}],
}


def _stage(**kw) -> StageSpec:
    base = dict(op="ds", kernel=3, stride=1, out=16, repeats=1, skip="identity")
    return StageSpec(**{**base, **kw})


# --------------------------------------------------------------------------- identity


def test_skip_choices_that_build_the_same_layers_are_one_canonical_stage():
    # One layer that changes channels: identity adds nothing, as none.
    assert canonical_stage(_stage(skip="identity"), in_channels=8).skip == "none"
    assert canonical_stage(_stage(skip="none"), in_channels=8).skip == "none"
    assert canonical_stage(_stage(skip="pool"), in_channels=8).skip == "pool"  # projected
    # A layer that keeps its shape: the pooled shortcut is the identity.
    assert canonical_stage(_stage(skip="pool"), in_channels=16).skip == "identity"
    # Two layers: the second layer's identity shortcut exists, so the choices differ.
    assert canonical_stage(_stage(skip="identity", repeats=2), in_channels=8).skip == "identity"


@pytest.mark.parametrize("a,b", [("identity", "none"), ("pool", "identity")])
def test_canonically_equal_specs_build_the_same_network(a, b):
    in_ch = 8 if a == "identity" else 16  # a shape-changing layer, then a shape-keeping one
    specs = [ArchSpec(stages=(_stage(out=16, skip=s),), stem=in_ch, stem_stride=1, head=16,
                      resolution=16, activation="relu") for s in (a, b)]
    assert specs[0] != specs[1] and canonical(specs[0]) == canonical(specs[1])
    assert identity(specs[0]) == identity(specs[1])
    torch.manual_seed(0)
    m0 = build_model(specs[0], num_classes=4, in_channels=1)
    m1 = build_model(specs[1], num_classes=4, in_channels=1)
    s0, s1 = m0.state_dict(), m1.state_dict()
    assert {k: v.shape for k, v in s0.items()} == {k: v.shape for k, v in s1.items()}
    m1.load_state_dict(s0)
    x = torch.randn(2, 1, 16, 16)
    m0.eval(), m1.eval()
    with torch.no_grad():
        assert torch.equal(m0(x), m1(x))


def test_different_networks_have_different_identities():
    b0 = nas.load_spec("efficientnet-b0")
    assert identity(b0) != identity(b0.replace(stages=(b0.stages[0].replace(kernel=5),)
                                                + b0.stages[1:]))
    assert identity(b0) == identity(b0.replace(name="renamed").with_meta(note="x"))


def test_the_space_counts_distinct_networks_exactly():
    space = SearchSpace.from_dict(SMALL_SPACE)
    seen = {canonical(space.decode(t))
            for t in itertools.product(*(range(n) for n in space.sizes()))}
    assert space.size() == math.prod(space.sizes())
    assert space.distinct_size() == len(seen) < space.size()


def test_the_default_space_has_fewer_networks_than_token_sequences():
    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    assert 0 < space.distinct_size() < space.size()
    assert "distinct networks" in space.describe()


class Scripted:
    """A strategy that proposes a fixed list of token sequences."""

    def __init__(self, items):
        self.items, self.told = list(items), []

    def ask(self):
        return Proposal(tokens=self.items.pop(0))

    def tell(self, proposal, reward):
        self.told.append((tuple(proposal.tokens), reward))

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _twins(space: SearchSpace) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two token sequences that differ only in a skip choice that changes nothing."""
    rng = np.random.default_rng(0)
    names = [d.name for d in space.decisions()]
    skip = names.index("block1.skip")
    choices = space.decisions()[skip].choices
    while True:
        a, b = list(space.sample_tokens(rng)), None
        for other in range(len(choices)):
            t = list(a)
            t[skip] = other
            if t != a and canonical(space.decode(t)) == canonical(space.decode(a)):
                b = t
        if b is not None:
            return tuple(a), tuple(b)


def test_the_driver_trains_a_network_once_whatever_its_tokens():
    space = SearchSpace.from_dict(SMALL_SPACE)
    a, b = _twins(space)
    c = next(t for t in itertools.product(*(range(n) for n in space.sizes()))
             if canonical(space.decode(t)) != canonical(space.decode(a)))
    assert a != b
    strategy = Scripted([a, b, c])
    d = ChildDriver(lambda t: (space.decode(t), {}), strategy, budget=2, reward=RewardConfig(),
                    target=Target(resolution=None))
    cfg = d.suggest("t1")
    d.complete("t1", {"status": "ok", "accuracy": 0.5, "seconds": 1.0})
    assert d.suggest("t2")["child"] == 1  # b was told a's result; c is the next child
    assert [r.status for r in d.records] == ["ok", "cached"]
    assert strategy.told[-1] == (b, strategy.told[0][1])
    assert d.records[1].identity == d.records[0].identity == d.key(a) == d.key(b)
    assert cfg["seed"] == child_seed(0, d.key(a))


# --------------------------------------------------------------------------- seeds


def test_child_seeds_depend_on_the_run_seed_and_the_identity_only():
    b0 = nas.load_spec("efficientnet-b0")
    key = child_key(b0, {})
    assert child_seed(0, key) == child_seed(0, child_key(b0.replace(name="x"), {}))
    assert child_seed(0, key) != child_seed(1, key)
    assert child_seed(0, key) != child_seed(0, child_key(b0, {"resolution": 36}))
    assert 0 <= child_seed(123, key) < 2 ** 32


TINY = ArchSpec(stages=(_stage(out=8, skip="none"), _stage(op="mbconv", expand=2, out=16,
                                                          stride=2, repeats=2)),
                stem=8, stem_stride=1, head=32, resolution=16, dropout=0.1, drop_path_rate=0.1,
                activation="relu")
RECIPE = Recipe(epochs=1, batch_size=32, train_subset=128, lr=0.01, augment=True,
                num_threads=1)


def test_the_same_child_trained_twice_gives_the_same_accuracy():
    data = synthetic_splits(n_train=256, n_val=128, num_classes=4, image_size=16)
    config = {"child": 0, "spec": spec_to_dict(TINY), "proxy": {}, "seed": 1234}
    first = run_child(config, data, RECIPE)
    torch.manual_seed(99)  # the worker's own RNG state must not matter
    build_model(TINY, num_classes=4, in_channels=1)  # ... nor what it built before
    torch.randn(1000)
    second = run_child(config, data, RECIPE)
    assert first["status"] == second["status"] == OK
    assert first["accuracy"] == second["accuracy"] and first["val_loss"] == second["val_loss"]
    assert first["seed"] == 1234
    other = run_child({**config, "seed": 4321}, data, RECIPE)
    assert other["val_loss"] != first["val_loss"]


# --------------------------------------------------------------------------- statuses


@pytest.mark.parametrize("rule", ["partial", "failure"])
def test_a_timed_out_child_is_not_ok_and_scores_by_the_rule(rule):
    data = synthetic_splits(n_train=256, n_val=64, num_classes=4, image_size=16)
    recipe = RECIPE.replace(epochs=50, train_subset=None, max_seconds=0.05)
    result = run_child({"child": 0, "spec": spec_to_dict(TINY), "proxy": {}, "seed": 1},
                       data, recipe)
    assert result["status"] == TIMEOUT and 0.0 <= result["accuracy"] <= 1.0
    assert "time cap" in result["error"]

    strategy = Scripted([])
    d = ChildDriver(lambda t: (TINY, {}), strategy, budget=1,
                    reward=RewardConfig(target_macs=10**6, failure_reward=-1.0, on_timeout=rule),
                    target=Target(resolution=None))
    strategy.items = [(0,)]
    d.suggest("t")
    (rec,) = d.complete("t", result)
    assert rec.status == TIMEOUT and rec.accuracy == result["accuracy"]
    assert (rec.reward == -1.0) == (rule == "failure")
    assert d.best(1) == []  # a partly trained child is never the best


def test_on_timeout_is_checked():
    with pytest.raises(nas.ConfigError, match="on_timeout"):
        RewardConfig(on_timeout="ok")
