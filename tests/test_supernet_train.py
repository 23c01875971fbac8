"""Joint training of a supernet and a strategy through the training engine (one process):
samples and rewards, every strategy, and a run continued from a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from controller import make_strategy
from nas.arch.cost import count_macs
from nas.core.files import config_path
from nas.data import load_splits
from nas.search.reward import RewardConfig, compute_reward
from nas.supernet.model import Supernet
from nas.supernet.settings import SupernetSettings
from nas.supernet.train import JointTraining
from nas.training.recipe import Recipe
from search_space import SearchSpace

RECIPE = Recipe(epochs=3, train_subset=64, batch_size=16, resolution=16, width_mult=0.25,
                lr=0.003, warmup_epochs=0.5, num_threads=1, eval_batch_size=64)


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def data(tiny_fmnist):
    return load_splits("fashion-mnist", path=str(tiny_fmnist), val_size=100, seed=0)


def joint(data, strategy="ppo", options=None, settings=None):
    space = SearchSpace.from_yaml(config_path("mnasnet-space"))
    s = settings or SupernetSettings(supernet=RECIPE, warmup=0.25, val_batch=16, candidates=4,
                                     score_images=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        sn = Supernet(space, RECIPE.width_mult, RECIPE.resolution, data.num_classes,
                      data.in_channels)
    strat = make_strategy(strategy, space.sizes(), seed=0, **({"batch_size": 3} if options is None else options))
    cfg = RewardConfig()

    def reward(acc, tokens):
        macs = count_macs(space.decode(tokens))
        return compute_reward(acc, macs, cfg).reward, macs
    return JointTraining(sn, sn, space, s, data.train, data.val, data.train.channel_stats(),
                         strat, reward, torch.device("cpu"), seed=0)


def test_every_step_after_the_warm_up_is_a_sample_told_to_the_strategy(data):
    jt = joint(data)
    saved = []
    assert jt.run(save=saved.append) == "ok"
    steps = jt.total_steps
    assert steps == 12 and jt.warmup_steps == 3
    assert [s.step for s in jt.samples] == list(range(3, 12))
    assert jt.strategy.n_told == len(jt.samples) and jt.strategy.n_asked >= len(jt.samples)
    for s in jt.samples:
        assert 0 <= s.accuracy <= 1 and s.reward == pytest.approx(
            compute_reward(s.accuracy, s.macs, RewardConfig()).reward)
    # One checkpoint per epoch, then the ranked one; the ranking is distinct and sorted.
    assert [c["epoch"] for c in saved] == [1, 2, 3, 3] and saved[-1]["ranking"] is not None
    ranking = jt.ranking
    assert len({c.identity for c in ranking}) == len(ranking) == 4
    assert [c.reward for c in ranking] == sorted((c.reward for c in ranking), reverse=True)
    assert [h["epoch"] for h in jt.history] == [1, 2, 3]


@pytest.mark.parametrize("strategy,options", [("reinforce", {"batch_size": 2}),
                                              ("evolution", {"population": 3, "sample": 2}),
                                              ("random", {})])
def test_every_strategy_drives_the_supernet(data, strategy, options):
    s = SupernetSettings(supernet=RECIPE.replace(epochs=1), warmup=0.0, val_batch=16,
                         candidates=3, score_images=32)
    jt = joint(data, strategy, options, s)
    assert jt.run() == "ok"
    assert len(jt.samples) == 4 and jt.strategy.n_told == 4 and len(jt.ranking) == 3


def test_a_run_continued_from_a_checkpoint_takes_the_same_steps(data):
    whole = joint(data)
    whole.run()

    first = joint(data)
    saved = []

    def save_then_stop(state):
        saved.append(state)
        raise Interrupted

    with pytest.raises(Interrupted):
        first.run(save=save_then_stop)
    assert saved[0]["epoch"] == 1
    rest = joint(data)
    rest.run(state=saved[0])
    assert [s.to_dict() for s in rest.samples] == [s.to_dict() for s in whole.samples]
    assert [c.to_dict() for c in rest.ranking] == [c.to_dict() for c in whole.ranking]
    a, b = whole.supernet.state_dict(), rest.supernet.state_dict()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0)
    assert rest.strategy.state_dict()["n_told"] == whole.strategy.state_dict()["n_told"]
