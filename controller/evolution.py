"""Regularized (aging) evolution, after Real et al., "Regularized Evolution for Image Classifier
Architecture Search" (AAAI 2019).

The population is a queue of the last ``population`` results told. Once it is full, each
``ask`` samples ``sample`` members at random (without replacement), takes the one with the best
reward as the parent and returns it with ``mutations`` decisions changed to a different value.
Each ``tell`` appends the child and drops the oldest member, not the worst: good architectures
must keep being re-discovered, which resists a lucky noisy reward (the "regularization").
Until the population is full, ``ask`` returns uniform random proposals.

Asynchronous use is natural: a proposal's parent is chosen from the population as it is at ask
time, and the child joins when its result comes back, whatever order that is.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from controller.base import Proposal, Strategy, positive_int
from controller.random_search import rng_state, set_rng_state, uniform_tokens
from nas.core.errors import ConfigError


class RegularizedEvolution(Strategy):
    """Aging evolution.

    Options: ``population`` (default 50) members kept; ``sample`` (default 10) tournament
    size; ``mutations`` (default 1) decisions changed per child. Until ``population``
    results have come back every proposal is uniform random (the warm-up), so the defaults
    suit budgets of a few hundred to a few thousand children (``bench/bench_controller.py``
    measures them on the planted objective, see docs/results/controller-landscape.md); Real
    et al. used P=100, S=25 for 20,000 children. A small budget needs a smaller population:
    with the defaults, at least 50 of the laptop's 60 children are random (population 8,
    sample 3 suit a 20-child search: ``--set strategy_options="{population: 8, sample: 3}"``).
    """

    name = "evolution"
    OPTIONS = {
        "population": (50, positive_int),
        "sample": (10, positive_int),
        "mutations": (1, positive_int),
    }

    def __init__(self, sizes, seed: int = 0, **options: Any) -> None:
        super().__init__(sizes, seed, **options)
        if self.options["sample"] > self.options["population"]:
            raise ConfigError(
                f"option 'sample' ({self.options['sample']}) must not exceed option 'population' "
                f"({self.options['population']})")
        if self.options["mutations"] > len(self.sizes):
            raise ConfigError(
                f"option 'mutations' ({self.options['mutations']}) exceeds the number of "
                f"decisions ({len(self.sizes)})")
        self._mutable = np.array([i for i, s in enumerate(self.sizes) if s > 1], dtype=np.int64)
        self._rng = np.random.default_rng(self.seed)
        self._population: deque[tuple[tuple[int, ...], float]] = deque()

    def _ask(self) -> Proposal:
        if len(self._population) < self.options["population"]:
            return Proposal(uniform_tokens(self._rng, self.sizes), version=self.n_told)
        members = self._rng.choice(len(self._population), size=self.options["sample"], replace=False)
        # Highest reward wins; on ties the first drawn wins (deterministic given the generator).
        parent = max(members, key=lambda m: self._population[int(m)][1])
        tokens = list(self._population[int(parent)][0])
        k = min(self.options["mutations"], len(self._mutable))
        for i in self._rng.choice(self._mutable, size=k, replace=False) if k else ():
            i = int(i)
            new = int(self._rng.integers(self.sizes[i] - 1))
            tokens[i] = new + 1 if new >= tokens[i] else new
        return Proposal(tuple(tokens), version=self.n_told)

    def _tell(self, proposal: Proposal, reward: float) -> dict[str, float]:
        self._population.append((proposal.tokens, reward))
        while len(self._population) > self.options["population"]:
            self._population.popleft()
        rewards = [r for _, r in self._population]
        return {
            "evolution/population_best": max(rewards),
            "evolution/population_mean": sum(rewards) / len(rewards),
            "evolution/population_size": float(len(rewards)),
        }

    def _state(self) -> dict[str, Any]:
        return {
            "rng": rng_state(self._rng),
            "population": [[list(t), r] for t, r in self._population],
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        set_rng_state(self._rng, state["rng"])
        self._population = deque((tuple(int(x) for x in t), float(r)) for t, r in state["population"])
