"""Joint training: shared weights on training batches, the strategy on validation batches.

The shared weights train through the project's one training engine
(:class:`nas.training.engine.Engine`); the engine's ``before_step`` hook is the
:class:`JointTraining` here. Before each step it

1. scores the path the previous step trained, on a fresh batch of held-out validation images
   (batch-norm batch statistics, as TuNAS), and tells the strategy its reward; then
2. picks this step's path: uniformly at random during the warm-up (the first ``warmup`` of
   the steps, as TuNAS and SPOS), afterwards the strategy's next proposal (``ask``).

So every sample after the warm-up is one training step of its path and one validation batch,
TuNAS's step. In a data-parallel job each worker (rank) trains and scores its own path: rank
0 owns the strategy, asks one proposal per worker, sends each its tokens, and gathers the
accuracies back; the gradients of the shared weights are averaged over the workers (the
caller wraps the model in DDP with ``find_unused_parameters``, since a path leaves most
weights unused). Without ``torch.distributed`` it is one process.

An epoch of the engine (``supernet.train_subset`` images) ends with a checkpoint: the shared
weights, the optimizer, every rank's random generators, the strategy and the samples, so a
run continued after a kill takes the steps it would have taken. After the last epoch the
candidates are drawn from the strategy's final policy, scored on the same validation images
(``bn`` mode) and ranked.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from nas.arch.spec import identity
from nas.data import ImageData
from nas.supernet.model import Supernet
from nas.supernet.score import Scorer
from nas.supernet.settings import SupernetSettings
from nas.training.device import amp_settings, bn_momentum_override, torch_threads
from nas.training.engine import Engine
from nas.training.feeder import Stats

STATE_FORMAT = 1
#: (accuracy, tokens) -> (reward, MACs at the target setting): the search's reward.
RewardFn = Callable[[float, Sequence[int]], tuple[float, int]]


class Comm:
    """The workers of a data-parallel job (``torch.distributed``), or one process."""

    def __init__(self) -> None:
        import torch.distributed as dist
        self.dist = dist
        self.on = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.on else 0
        self.world = dist.get_world_size() if self.on else 1

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.on:
            return obj
        box = [obj]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.on:
            return [obj]
        out: list[Any] = [None] * self.world
        self.dist.all_gather_object(out, obj)
        return out


@dataclass(frozen=True)
class Sample:
    """One sampled path after the warm-up: its step, worker, tokens and validation score."""

    step: int
    rank: int
    tokens: tuple[int, ...]
    accuracy: float
    reward: float
    macs: int
    policy_version: int

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "rank": self.rank, "tokens": list(self.tokens),
                "accuracy": self.accuracy, "reward": self.reward, "macs": self.macs,
                "policy_version": self.policy_version}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Sample":
        return cls(int(d["step"]), int(d["rank"]), tuple(d["tokens"]), float(d["accuracy"]),
                   float(d["reward"]), int(d["macs"]), int(d["policy_version"]))


@dataclass(frozen=True)
class Candidate:
    """A network of the final ranking, scored on the supernet."""

    tokens: tuple[int, ...]
    identity: str
    accuracy: float
    reward: float
    macs: int

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": list(self.tokens), "identity": self.identity,
                "accuracy": self.accuracy, "reward": self.reward, "macs": self.macs}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Candidate":
        return cls(tuple(d["tokens"]), str(d["identity"]), float(d["accuracy"]),
                   float(d["reward"]), int(d["macs"]))


def shard(data: ImageData, rank: int, world: int) -> ImageData:
    """Worker ``rank``'s share of the training images (every ``world``-th one)."""
    return data if world == 1 else data.subset(np.arange(rank, len(data), world),
                                               name=f"{data.name}[{rank}/{world}]")


class JointTraining:
    """One worker's part of a supernet run (see the module docstring).

    Args:
        supernet: the shared weights; ``model`` is what the engine trains (the supernet or a
            DDP wrapper of it), already on ``device``.
        space: the search space; ``settings``: what to train and how to score.
        train, val: this worker's training images (a shard) and all validation images.
        stats: the whole training set's per-channel statistics.
        strategy: rank 0's strategy (``ask``/``tell``/``state_dict``); None on other ranks.
        reward: the search's reward of an accuracy and a path.
        seed: the run's seed; every rank's generators derive from it and the rank.
    """

    def __init__(self, supernet: Supernet, model: nn.Module, space: Any,
                 settings: SupernetSettings, train: ImageData, val: ImageData, stats: Stats,
                 strategy: Any, reward: RewardFn, device: torch.device, seed: int,
                 comm: Comm | None = None) -> None:
        self.supernet, self.space, self.s = supernet, space, settings
        self.comm = comm or Comm()
        rank, world = self.comm.rank, self.comm.world
        if rank == 0 and strategy is None:
            raise ValueError("rank 0 needs the strategy")
        self.strategy = strategy if rank == 0 else None
        self.reward = reward
        self.seed = int(seed)
        r = settings.supernet
        if r.batch_size % world:
            raise ValueError(f"batch size {r.batch_size} does not split over {world} workers")
        per_rank = None if r.train_subset is None else r.train_subset // world
        if world > 1:  # every rank takes the same number of steps (the collectives pair up)
            smallest = len(train) if per_rank is None else min(per_rank, len(train))
            per_rank = min(smallest, (len(train) * world - (world - 1)) // world)
        self.recipe = r.replace(batch_size=r.batch_size // world, train_subset=per_rank,
                                seed=_rank_seed(seed, rank))
        self.engine = Engine(model, train, val, self.recipe, device, stats=stats,
                             resample_subset=True, before_step=self.before_step)
        self.rng = np.random.default_rng(_rank_seed(seed, rank) + 1)
        amp_dtype, _ = amp_settings(self.recipe, device)
        self.scorer = Scorer(supernet, self.engine.val_feed, self.engine.train_feed,
                             settings.bn, settings.recal_batches, r.eval_batch_size,
                             np.random.default_rng(_rank_seed(seed, rank) + 2), amp_dtype,
                             r.channels_last)
        self.total_steps = r.epochs * self.engine.steps_per_epoch
        self.warmup_steps = int(math.floor(settings.warmup * self.total_steps))
        self.pending: tuple[tuple[int, ...], Any, int] | None = None  # tokens, proposal, step
        self.samples: list[Sample] = []       # rank 0
        self.history: list[dict[str, Any]] = []
        self.diagnostics: list[dict[str, float]] = []
        self.ranking: list[Candidate] | None = None
        self.seconds = 0.0

    # ------------------------------------------------------------------ one step

    def before_step(self, step: int) -> None:
        """The engine's hook: score and tell the last path, then choose this step's."""
        self.finish()
        rank, world = self.comm.rank, self.comm.world
        choice = None
        if rank == 0:
            if step < self.warmup_steps:
                choice = [(self.space.sample_tokens(self.rng), None) for _ in range(world)]
            else:
                proposals = [self.strategy.ask() for _ in range(world)]
                choice = [(tuple(p.tokens), p) for p in proposals]
        tokens = self.comm.broadcast(None if choice is None else [t for t, _ in choice])[rank]
        self.supernet.set_path(tokens)
        self.pending = (tuple(tokens), choice, step)

    def finish(self) -> None:
        """Score the path of the last step and tell the strategy (after the warm-up)."""
        if self.pending is None:
            return
        tokens, choice, step = self.pending
        self.pending = None
        if step < self.warmup_steps:
            return
        rows = self.rng.choice(self.engine.val_feed.n, size=min(self.s.val_batch,
                                                                self.engine.val_feed.n),
                               replace=False)
        accuracy = self.scorer.accuracy(tokens, rows, bn="batch")
        accuracies = self.comm.gather(accuracy)
        if self.comm.rank != 0:
            return
        for rank, ((toks, proposal), acc) in enumerate(zip(choice, accuracies)):
            reward, macs = self.reward(acc, toks)
            self.samples.append(Sample(step, rank, toks, acc, reward, macs,
                                       getattr(proposal, "version", 0)))
            diag = self.strategy.tell(proposal, reward)
            if diag:
                self.diagnostics.append(dict(diag))

    # ------------------------------------------------------------------ the run

    def run(self, save: Callable[[dict[str, Any]], None] | None = None,
            on_epoch: Callable[[dict[str, Any]], None] | None = None,
            state: dict[str, Any] | None = None) -> str:
        """Train (from ``state`` when given) to the last epoch, rank the candidates; returns
        ``"ok"`` or ``"diverged"``. ``save(state)`` gets rank 0's checkpoint after every
        epoch and once ranked; ``on_epoch(record)`` rank 0's epoch summary."""
        r = self.recipe
        with (torch_threads(r.num_threads),
              bn_momentum_override(self.supernet, r.bn_momentum)):
            if state is not None:
                self.load_state_dict(state)
            else:
                torch.manual_seed(self.recipe.seed)  # dropout and drop path of this rank
            while self.engine.epoch < r.epochs:
                t0 = time.perf_counter()
                told = len(self.samples)
                e = self.engine.train_epoch(validate=False)
                self.finish()
                if e.status != "ok":
                    return "diverged"
                self.seconds += time.perf_counter() - t0
                record = self._epoch_record(e, told, time.perf_counter() - t0)
                checkpoint = self.state_dict()
                if self.comm.rank == 0:
                    self.history.append(record)
                    checkpoint["history"] = list(self.history)
                    if save is not None:
                        save(checkpoint)
                    if on_epoch is not None:
                        on_epoch(record)
            if self.ranking is None:
                self.ranking = self.rank_candidates()
                checkpoint = self.state_dict()
                if self.comm.rank == 0 and save is not None:
                    save(checkpoint)
        return "ok"

    def _epoch_record(self, e: Any, told: int, seconds: float) -> dict[str, Any]:
        new = self.samples[told:]
        best = max(self.samples, key=lambda s: s.reward, default=None)
        diags, self.diagnostics = self.diagnostics, []
        return {"epoch": e.epoch, "step": e.step, "steps": self.total_steps,
                "samples": len(self.samples), "train_loss": e.train_loss, "lr": e.lr,
                "seconds": seconds, "elapsed": self.seconds,
                "images_per_second": e.images_per_second * self.comm.world,
                "reward_mean": float(np.mean([s.reward for s in new])) if new else None,
                "accuracy_mean": float(np.mean([s.accuracy for s in new])) if new else None,
                "best_reward": None if best is None else best.reward,
                "best_tokens": None if best is None else list(best.tokens),
                "best_macs": None if best is None else best.macs,
                "warmup": e.step <= self.warmup_steps, "diagnostics": diags}

    # ------------------------------------------------------------------ ranking

    def score_rows(self) -> np.ndarray:
        """The validation images every candidate is scored on (the same on every rank)."""
        n = self.engine.val_feed.n
        return np.random.default_rng(self.seed).permutation(n)[: min(self.s.score_images, n)]

    def draw_candidates(self) -> list[tuple[int, ...]]:
        """Up to ``candidates`` distinct networks from the strategy's final policy (rank 0)."""
        seen: dict[str, tuple[int, ...]] = {}
        for _ in range(20 * self.s.candidates):
            tokens = tuple(self.strategy.ask().tokens)
            key = identity(self.space.decode(tokens))
            seen.setdefault(key, tokens)
            if len(seen) == self.s.candidates:
                break
        return list(seen.values())

    def rank_candidates(self, candidates: list[tuple[int, ...]] | None = None,
                        bn: str | None = None) -> list[Candidate]:
        """Score candidates on the supernet, split over the workers; best first (rank 0's
        list is the answer; other ranks return theirs unsorted)."""
        rank, world = self.comm.rank, self.comm.world
        if candidates is None:
            candidates = self.draw_candidates() if rank == 0 else None
        candidates = self.comm.broadcast(candidates)
        rows = self.score_rows()
        mine = {i: self.scorer.accuracy(candidates[i], rows, bn=bn)
                for i in range(rank, len(candidates), world)}
        scores: dict[int, float] = {}
        for part in self.comm.gather(mine):
            scores.update(part)
        out = []
        for i, tokens in enumerate(candidates):
            reward, macs = self.reward(scores[i], tokens)
            out.append(Candidate(tuple(tokens), identity(self.space.decode(tokens)), scores[i],
                                 reward, macs))
        return sorted(out, key=lambda c: (-c.reward, c.macs))

    # ------------------------------------------------------------------ state

    def _rank_state(self) -> dict[str, Any]:
        engine_rng = self.engine.state_dict()["rng"]
        return {"engine": engine_rng, "sampler": self.rng.bit_generator.state,
                "scorer": self.scorer.rng.bit_generator.state}

    def state_dict(self) -> dict[str, Any]:
        """Rank 0's checkpoint (every rank must call it: the generators are gathered)."""
        ranks = self.comm.gather(self._rank_state())
        if self.comm.rank != 0:
            return {}
        engine = self.engine.state_dict()
        engine["model"] = None  # the shared weights are saved unwrapped, below
        return {"format": STATE_FORMAT, "world": self.comm.world,
                "epoch": self.engine.epoch, "step": self.engine.step,
                "supernet": {k: v.detach().to("cpu", copy=True)
                             for k, v in self.supernet.state_dict().items()},
                "engine": engine, "ranks": ranks,
                "strategy": self.strategy.state_dict(),
                "samples": [s.to_dict() for s in self.samples],
                "history": list(self.history), "seconds": self.seconds,
                "ranking": None if self.ranking is None else [c.to_dict() for c in self.ranking]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint (every rank loads the same one). With another number of
        workers than it was saved with, the weights, optimizer and strategy continue and each
        rank's generators start afresh from the run's seed, the rank and the epoch."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown supernet checkpoint format {state.get('format')!r}")
        self.supernet.load_state_dict(state["supernet"])
        engine = dict(state["engine"])
        engine["model"] = self.engine.model.state_dict()
        same_world = state["world"] == self.comm.world
        if same_world:
            mine = state["ranks"][self.comm.rank]
            engine["rng"] = mine["engine"]
            self.rng.bit_generator.state = mine["sampler"]
            self.scorer.rng.bit_generator.state = mine["scorer"]
        else:
            fresh = _rank_seed(self.seed, self.comm.rank) + 1000 * int(state["epoch"])
            torch.manual_seed(fresh)
            self.rng = np.random.default_rng(fresh + 1)
            self.scorer.rng = np.random.default_rng(fresh + 2)
            self.engine.rng = np.random.default_rng(fresh)
            engine["rng"] = {**self.engine.state_dict()["rng"]}
        self.engine.load_state_dict(engine)
        if self.strategy is not None:
            self.strategy.load_state_dict(state["strategy"])
        self.samples = [Sample.from_dict(d) for d in state["samples"]]
        self.history = list(state["history"])
        self.seconds = float(state.get("seconds", 0.0))
        self.ranking = (None if state.get("ranking") is None
                        else [Candidate.from_dict(d) for d in state["ranking"]])


def _rank_seed(seed: int, rank: int) -> int:
    return (int(seed) * 7919 + 104729 * int(rank)) % (2 ** 31)
