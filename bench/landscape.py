"""A synthetic, rugged and noisy NAS landscape over the real MnasNet search space.

The planted objective of ``bench/bench_controller.py`` (one-max) is separable and noiseless: it
shows that a strategy learns, not that it ranks right where real searches run. This landscape
keeps the real space and the real reward and replaces only the proxy training:

* **Space**: ``configs/mnasnet-space.yaml`` (43 decisions, 1.97e18 architectures).
* **Cost**: ``nas.arch.cost.count_macs`` of ``space.decode(tokens)`` at the target setting
  (224x224, 1000 classes), cached per architecture.
* **True accuracy**: ``acc = lo + (hi - lo) * sigmoid(offset + scale * z)`` with
  ``z = w_capacity * c + w_main * m + w_pair * p``, three parts that each have mean 0 and
  variance 1 over uniformly random architectures (so ``z`` has variance about 1 there):

  - ``c``: capacity, ``log MACs`` standardised over random architectures (bigger networks are
    more accurate, with the diminishing returns of the sigmoid);
  - ``m``: main effects, one seeded Gaussian value per (decision, choice), centred per decision;
  - ``p``: pairwise interactions, one seeded Gaussian table per pair of decisions, double-centred
    (every row and column of a table averages 0, so it is pure interaction, orthogonal to the
    main effects). Pairs: all decisions within a block, all decisions of neighbouring blocks,
    and the global activation with every block's op and squeeze-excite choice.

  Default shares of ``z``'s variance: capacity 0.5, main effects 0.2, interactions 0.3.
  By construction the interactions are the share ``w_pair ** 2`` that no separable function
  explains: the best choice of a decision depends on its neighbours. Measured on landscapes
  0-4 (``bench/bench_landscape.py --describe``): random architectures' accuracy 0.75 +- 0.035,
  correlation of log MACs with accuracy 0.65-0.73, 41-51 % of the accuracy's variance left by
  the best additive model; the best architectures found by coordinate ascent reach a reward of
  0.90-0.92 (accuracy 0.84-0.86 at 115-222M MACs) against 0.81 for the top 1 % of random ones.
* **Observation**: ``acc + N(0, noise**2)`` (noise 0.015: the 1.5 points a proxy moves from seed
  to seed), clipped to [0, 1], drawn from a generator the caller passes in.
* **Reward**: ``nas.search.reward.compute_reward`` (soft form, ``w = -0.07``, ``T = 400M``):
  ``acc * (MACs / T) ** -0.07``; the true reward uses the true accuracy, a search sees only the
  observed one.

Everything that defines the landscape comes from ``seed``; the same seed gives the same
landscape. Torch-free and Ray-free (numpy, the search space, the cost model, the reward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

import nas
from nas.arch.cost import count_macs
from nas.core.checks import check_int, check_number
from nas.core.errors import ConfigError
from nas.search.reward import RewardConfig, compute_reward
from search_space import SearchSpace


@dataclass(frozen=True)
class LandscapeConfig:
    """The constants of the landscape (not its seed)."""

    lo: float = 0.6                  # accuracy of an infinitely bad architecture
    hi: float = 0.9                  # ... of an infinitely good one
    offset: float = 0.0              # random architectures' median sits at the middle
    scale: float = 0.5               # spread of z inside the sigmoid
    w_capacity: float = math.sqrt(0.5)
    w_main: float = math.sqrt(0.2)
    w_pair: float = math.sqrt(0.3)
    noise: float = 0.015             # std of one observation of the accuracy
    target_macs: int = 400_000_000
    resolution: int = 224
    num_classes: int = 1000
    capacity_sample: int = 500       # random architectures that standardise log MACs

    def __post_init__(self) -> None:
        check_number(self.lo, "landscape lo", lo=0.0, hi=1.0)
        check_number(self.hi, "landscape hi", lo=0.0, hi=1.0)
        if not self.lo < self.hi:
            raise ConfigError(f"landscape: lo ({self.lo}) must be below hi ({self.hi})")
        check_number(self.offset, "landscape offset")
        check_number(self.scale, "landscape scale", lo=0.0)
        for name in ("w_capacity", "w_main", "w_pair"):
            check_number(getattr(self, name), f"landscape {name}", lo=0.0)
        check_number(self.noise, "landscape noise", lo=0.0)
        check_int(self.target_macs, "landscape target_macs", lo=1)
        check_int(self.resolution, "landscape resolution", lo=1)
        check_int(self.num_classes, "landscape num_classes", lo=1)
        check_int(self.capacity_sample, "landscape capacity_sample", lo=2)


def interaction_pairs(space: SearchSpace) -> tuple[tuple[int, int], ...]:
    """Pairs ``(i, j)``, ``i < j``, of decision indices that interact: within a block, between
    neighbouring blocks, and each global decision with every block's op and se."""
    blocks: dict[int, list[int]] = {}
    globals_: list[int] = []
    for i, d in enumerate(space.decisions()):
        if d.block is None:
            globals_.append(i)
        else:
            blocks.setdefault(d.block, []).append(i)
    pairs: set[tuple[int, int]] = set()
    order = sorted(blocks)
    for k, b in enumerate(order):
        members = blocks[b]
        pairs.update((i, j) for i in members for j in members if i < j)
        if k + 1 < len(order):
            pairs.update((min(i, j), max(i, j)) for i in members for j in blocks[order[k + 1]])
        for g in globals_:
            pairs.update((min(g, i), max(g, i)) for i in members
                         if space.decisions()[i].key in ("op", "se"))
    return tuple(sorted(pairs))


class Landscape:
    """The landscape of seed ``seed`` over ``space`` (default: the MnasNet space)."""

    def __init__(self, seed: int, space: SearchSpace | None = None,
                 config: LandscapeConfig = LandscapeConfig()) -> None:
        self.seed = check_int(seed, "landscape seed", lo=0)
        self.space = space if space is not None else SearchSpace.from_yaml(
            nas.config_path("mnasnet-space"))
        self.config = config
        self.reward_config = RewardConfig(target_macs=config.target_macs)
        self.sizes = np.array(self.space.sizes(), dtype=np.int64)
        n, width = len(self.sizes), int(self.sizes.max())
        valid = np.arange(width)[None, :] < self.sizes[:, None]            # [n, width]
        rng = np.random.default_rng([self.seed, 0x1A4D5CA9E])

        # Main effects: centred over each decision's choices; sum of their variances = 1.
        main = rng.standard_normal((n, width)) * valid
        main -= valid * (main.sum(1, keepdims=True) / self.sizes[:, None])
        self._main = main / math.sqrt(float(((main ** 2).sum(1) / self.sizes).sum()))

        # Pairwise interactions, double-centred over the valid block of each table.
        self.pairs = np.array(interaction_pairs(self.space), dtype=np.int64).reshape(-1, 2)
        a, b = self.pairs[:, 0], self.pairs[:, 1]
        mask = valid[a][:, :, None] & valid[b][:, None, :]                 # [E, width, width]
        table = rng.standard_normal((len(a), width, width)) * mask
        na, nb = self.sizes[a][:, None, None], self.sizes[b][:, None, None]
        row = table.sum(2, keepdims=True) / nb
        col = table.sum(1, keepdims=True) / na
        total = table.sum((1, 2), keepdims=True) / (na * nb)
        table = (table - row - col + total) * mask
        variance = float(((table ** 2).sum((1, 2)) / (na * nb)[:, 0, 0]).sum())
        self._pair = table / math.sqrt(variance) if variance > 0 else table

        # Capacity: log MACs standardised over random architectures (their own generator, so
        # the constants do not depend on anything but the seed).
        self._macs: dict[tuple[int, ...], int] = {}
        sample = np.random.default_rng([self.seed, 0xC0575]).integers(
            0, self.sizes, size=(config.capacity_sample, n))
        logm = np.log(self.macs_of(sample))
        self._logm_mean = float(logm.mean())
        self._logm_std = float(logm.std())

    # ------------------------------------------------------------------ parts

    def _tokens(self, tokens: Sequence[int] | Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
        t = np.asarray(tokens, dtype=np.int64)
        if t.ndim == 1:
            t = t[None, :]
        if t.ndim != 2 or t.shape[1] != len(self.sizes):
            raise ConfigError(f"landscape: tokens of shape {t.shape}; give {len(self.sizes)} "
                              "tokens per architecture")
        if (t < 0).any() or (t >= self.sizes).any():
            raise ConfigError("landscape: a token is out of range; each token must be below its "
                              "decision's number of choices (space.sizes())")
        return t

    def macs_of(self, tokens) -> np.ndarray:
        """MACs at the target setting of each architecture (cached per architecture)."""
        t = self._tokens(tokens)
        out = np.empty(len(t), dtype=np.int64)
        for k, row in enumerate(map(tuple, t.tolist())):
            m = self._macs.get(row)
            if m is None:
                m = self._macs[row] = count_macs(self.space.decode(row), self.config.resolution,
                                                 self.config.num_classes)
            out[k] = m
        return out

    def parts_free_of_macs(self, tokens) -> dict[str, np.ndarray]:
        """The standardised ``main`` and ``pair`` parts of ``z``, each ``[n]``."""
        t = self._tokens(tokens)
        main = self._main[np.arange(t.shape[1]), t].sum(1)
        a, b = self.pairs[:, 0], self.pairs[:, 1]
        pair = self._pair[np.arange(len(a)), t[:, a], t[:, b]].sum(1)
        return {"main": main, "pair": pair}

    def parts(self, tokens) -> dict[str, np.ndarray]:
        """The standardised parts of ``z``: ``capacity``, ``main`` and ``pair``, each ``[n]``."""
        t = self._tokens(tokens)
        capacity = (np.log(self.macs_of(t)) - self._logm_mean) / self._logm_std
        return {"capacity": capacity, **self.parts_free_of_macs(t)}

    def z(self, tokens) -> np.ndarray:
        c = self.config
        t = self._tokens(tokens)
        if c.w_capacity == 0:  # no MACs needed (a separable control, for instance)
            p = self.parts_free_of_macs(t)
            return c.w_main * p["main"] + c.w_pair * p["pair"]
        p = self.parts(t)
        return c.w_capacity * p["capacity"] + c.w_main * p["main"] + c.w_pair * p["pair"]

    # ------------------------------------------------------------------ what a search sees

    def accuracy(self, tokens) -> np.ndarray:
        """The true (noise-free) accuracy of each architecture, ``[n]``."""
        c = self.config
        return c.lo + (c.hi - c.lo) / (1.0 + np.exp(-(c.offset + c.scale * self.z(tokens))))

    def observe(self, tokens, rng: np.random.Generator) -> np.ndarray:
        """One noisy proxy measurement of each architecture's accuracy, ``[n]``, in [0, 1]."""
        acc = self.accuracy(tokens)
        return np.clip(acc + self.config.noise * rng.standard_normal(acc.shape), 0.0, 1.0)

    def reward(self, tokens, accuracy: np.ndarray | None = None) -> np.ndarray:
        """The reward of each architecture from ``accuracy`` (default: the true accuracy)."""
        t = self._tokens(tokens)
        acc = self.accuracy(t) if accuracy is None else np.asarray(accuracy, dtype=float)
        return np.array([compute_reward(float(a), int(m), self.reward_config).reward
                         for a, m in zip(acc, self.macs_of(t))])

    def additive_residual(self, rng: np.random.Generator, n: int = 3000) -> float:
        """Share of the true accuracy's variance over random architectures that the best
        additive (separable) model leaves unexplained: 0 for a separable landscape. Under
        uniform, independent decisions that model is the mean plus, per decision, the mean
        accuracy given its choice minus the mean (the first-order ANOVA terms); they are
        estimated on ``n`` random architectures and scored on ``n`` others."""
        fit, test = (rng.integers(0, self.sizes, size=(n, len(self.sizes))) for _ in range(2))
        y_fit, y = self.accuracy(fit), self.accuracy(test)
        mean = y_fit.mean()
        pred = np.full(n, mean)
        for i, size in enumerate(self.sizes.tolist()):
            count = np.bincount(fit[:, i], minlength=size)
            given = np.bincount(fit[:, i], y_fit, size) / np.maximum(count, 1)
            pred += np.where(count > 0, given, mean)[test[:, i]] - mean
        return float(np.var(y - pred) / np.var(y))

    def climb(self, rng: np.random.Generator, restarts: int = 10, objective: str = "reward"
              ) -> tuple[tuple[int, ...], float]:
        """The best architecture found by first-improvement coordinate ascent on the noise-free
        ``objective`` ("reward" or "accuracy") from ``restarts`` random starts: a reference for
        how good an architecture can be (a lower bound on the optimum)."""
        if objective not in ("reward", "accuracy"):
            raise ConfigError(f"landscape climb: objective {objective!r}; use reward or accuracy")
        score = self.reward if objective == "reward" else self.accuracy
        best_t, best_v = None, -math.inf
        for _ in range(restarts):
            t = rng.integers(0, self.sizes)
            v = float(score(t)[0])
            improved = True
            while improved:
                improved = False
                for i in rng.permutation(len(self.sizes)):
                    cand = np.repeat(t[None, :], self.sizes[i], axis=0)
                    cand[:, i] = np.arange(self.sizes[i])
                    vals = score(cand)
                    j = int(vals.argmax())
                    if vals[j] > v + 1e-12:
                        t, v, improved = cand[j], float(vals[j]), True
            if v > best_v:
                best_t, best_v = tuple(int(x) for x in t), v
        return best_t, best_v
