"""The search loop's bookkeeping, free of Ray: what to train next and what came back.

:class:`ChildDriver` turns a strategy's proposals into child jobs and results into rewards
and records. It owns every piece of state that must survive an interruption: the strategy's
state, the results of every child, the proposals still in flight (which are re-issued first
after a restart) and the child counter, and it writes them to its state file (``driver.pt``
in the run folder, :func:`save_state`) whenever the Ray Tune searcher (:mod:`nas.ray.searcher`)
has asked for a child or handed back a result; a resumed run reads it (:func:`load_state`).

A proposal whose network was already evaluated in this run is not trained again: its
recorded result is told to the strategy at once (status ``cached``). One whose network is
being trained right now waits for that result. "The same network" is the canonical spec's
identity (:func:`nas.arch.spec.identity`) with the child's proxy overrides, not the token
sequence: two token sequences that build the same network are one child.

Seeds. Every child is trained with a seed drawn from the run's seed and the child's identity
(:func:`child_seed`): its initial weights, data order and augmentation do not depend on which
worker trains it or on what that worker trained before, and a child trained again after a
resume is the same child.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from nas.arch.blockstrings import block_string
from nas.arch.cost import count
from nas.arch.spec import ArchSpec, identity, spec_from_dict, spec_to_dict
from nas.core.errors import ConfigError
from nas.core.files import atomic_file
from nas.search.reward import RewardConfig, compute_reward

STATE_FORMAT = 1
STATE_FILE = "driver.pt"  # the driver's state file in a run folder

# Statuses of a record. "ok" children have a real accuracy; "timeout" children a partial one
# (training was cut off by the recipe's max_seconds); "stopped" children a partial one too
# (the trial scheduler, e.g. ASHA, stopped them after an epoch); the others none.
OK, TIMEOUT, FAILED, DIVERGED, OOM = "ok", "timeout", "failed", "diverged", "oom"
STOPPED = "stopped"
CACHED, REFERENCE = "cached", "reference"
# Trained children that are not failures: they have an accuracy (partial unless "ok").
SCORED = (OK, TIMEOUT, STOPPED)


def child_seed(run_seed: int, key: str) -> int:
    """The seed a child is trained with: a function of the run's seed and its identity only."""
    digest = hashlib.sha256(f"{int(run_seed)}/{key}".encode()).hexdigest()
    return int(digest[:8], 16)


def child_key(spec: ArchSpec, overrides: Mapping[str, Any]) -> str:
    """What makes two children the same: the canonical network and the proxy overrides."""
    if not overrides:
        return identity(spec)
    return f"{identity(spec)}+{json.dumps(dict(overrides), sort_keys=True)}"


def scored_by_accuracy(status: str, reward: RewardConfig) -> bool:
    """Whether a child of this status is scored by its accuracy (else ``failure_reward``):
    a success, and a child cut off by the time cap or stopped by the scheduler when the
    reward settings say ``partial``."""
    return (status == OK or (status == TIMEOUT and reward.on_timeout == "partial")
            or (status == STOPPED and reward.on_stopped == "partial"))


@dataclass(frozen=True)
class Target:
    """The setting at which MACs and params are counted for the reward (the papers' setting).

    ``resolution=None`` counts each child at its own spec resolution (scaling candidates).
    """

    resolution: int | None = 224
    num_classes: int = 1000
    in_channels: int = 3


@dataclass(frozen=True)
class ChildRecord:
    """One row of the table of children."""

    child: int                 # 0-based order of issue; -1 for cached rows
    trial: str
    status: str
    tokens: tuple[int, ...]
    blocks: str
    params: int
    macs: int
    accuracy: float            # NaN when there is none
    reward: float
    seconds: float             # the child's own time on its worker: build, training, evaluation
    wall_seconds: float        # from suggestion to result, queueing included
    error: str = ""
    policy_version: int = 0
    proxy: Mapping[str, Any] = field(default_factory=dict)
    identity: str = ""         # child_key: the canonical network (and proxy overrides)
    seed: int | None = None    # the seed it was trained with
    latency_ms: float | None = None  # predicted at the target setting (latency searches)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tokens"] = list(self.tokens)
        d["proxy"] = dict(self.proxy)
        if self.latency_ms is None:  # a MACs search's rows stay as they were
            del d["latency_ms"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ChildRecord":
        kwargs = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        kwargs["tokens"] = tuple(kwargs.get("tokens", ()))
        return cls(**kwargs)


@dataclass
class _Job:
    child: int
    tokens: tuple[int, ...]
    proposal: Any             # the strategy's Proposal (None for reference/list jobs)
    started: float


class ChildDriver:
    """Bookkeeping of one search (or one grid of scaling candidates).

    Args:
        decode: tokens -> (spec, proxy overrides); the search space's ``decode`` for a search.
        strategy: the controller (``ask``/``tell``/``state_dict``), see :mod:`controller`.
        budget: number of children to train (cached rows and the reference do not count).
        reward: the reward settings.
        target: the setting MACs are counted at.
        reference: an extra child trained first and only recorded (e.g. EfficientNet-B0).
        max_duplicate_asks: consecutive proposals that were all evaluated already after which
            the controller is considered converged and the search ends early.
        seed: the run's seed, from which every child's seed is drawn (:func:`child_seed`).
        time_budget: seconds of wall time after which no new child starts (None: no limit);
            children in training finish, and the first child always starts, so a run
            ends with a result. Counted by ``clock`` from this driver's creation, plus
            ``spent`` (time the run spent before, e.g. a one-shot search's supernet) and
            the seconds of earlier sessions restored from a saved state.
        cost: spec -> an object with ``params`` and ``macs``, the cost the reward and the
            records use (None: :func:`nas.arch.cost.count` at ``target``). A bench over a
            table of measured networks (``bench/bench_tabular.py``) gives the table's own.
        latency: spec -> its latency in milliseconds at ``target`` (a latency search's
            prediction from the device's table), recorded with every child and, when the
            reward has a latency target, its cost. None: no latency.
    """

    def __init__(self, decode: Callable[[Sequence[int]], tuple[ArchSpec, dict]], strategy: Any,
                 budget: int, reward: RewardConfig, target: Target = Target(),
                 reference: ArchSpec | None = None, max_duplicate_asks: int = 200,
                 clock: Callable[[], float] = time.time, seed: int = 0,
                 time_budget: float | None = None, spent: float = 0.0,
                 cost: Callable[[ArchSpec], Any] | None = None,
                 latency: Callable[[ArchSpec], float] | None = None):
        if budget < 1:
            raise ValueError(f"budget must be >= 1, got {budget}")
        if time_budget is not None and not time_budget > 0:
            raise ValueError(f"time_budget must be > 0 seconds, got {time_budget}")
        self.decode = decode
        self.strategy = strategy
        self.budget = int(budget)
        self.reward_cfg = reward
        self.target = target
        self.cost = cost
        if reward.target_ms is not None and latency is None:
            raise ValueError("a reward with a latency target needs the driver's latency=")
        self.latency = latency
        self.reference = reference
        self.max_duplicate_asks = int(max_duplicate_asks)
        self.clock = clock
        self.seed = int(seed)
        self.records: list[ChildRecord] = []
        self.results: dict[str, ChildRecord] = {}   # trained networks by child_key
        self.in_flight: dict[str, _Job] = {}
        self.reissue: list[_Job] = []               # in flight at the last save
        self.waiting: dict[str, list[Any]] = {}     # duplicates of in-flight children, by key
        self._keys: dict[tuple[int, ...], str] = {}
        self.issued = 0
        self.reference_done = reference is None
        self.converged = False
        self.time_budget = time_budget
        self.spent_before = float(spent)
        self._since = clock()
        self._diagnostics: list[dict[str, float]] = []
        if hasattr(strategy, "set_prior"):
            # The reward's part known before training (a policy may warm-start from it).
            strategy.set_prior(self.known_reward)

    def known_reward(self, tokens: Sequence[int]) -> float:
        """The reward a network of these tokens would get at accuracy 1: the reward's cost
        term (MACs or latency), known before any training (a strategy's prior, see
        ``set_prior``)."""
        spec, _ = self.decode(tuple(tokens))
        macs = self.cost_of(spec).macs
        latency = self.latency(spec) if self.reward_cfg.target_ms is not None else None
        return compute_reward(1.0, macs, self.reward_cfg, latency).reward

    def cost_of(self, spec: ArchSpec) -> Any:
        """``spec``'s params and MACs at the target setting."""
        if self.cost is not None:
            return self.cost(spec)
        return count(spec, self.target.resolution, self.target.num_classes,
                     self.target.in_channels)

    def reward_of(self, accuracy: float, record: ChildRecord) -> float:
        """The reward of ``record``'s network at ``accuracy`` (a re-check's run)."""
        return compute_reward(accuracy, record.macs, self.reward_cfg, record.latency_ms).reward

    # ------------------------------------------------------------------ counts

    @property
    def trained(self) -> int:
        return sum(1 for r in self.records if r.status not in (CACHED, REFERENCE))

    def seconds(self) -> float:
        """Wall time the run has spent: earlier sessions' and this one's so far."""
        return self.spent_before + self.clock() - self._since

    def out_of_time(self) -> bool:
        """The time budget is spent (never before the first child has started)."""
        return self.time_budget is not None and self.issued >= 1 \
            and self.seconds() >= self.time_budget

    def _done_issuing(self) -> bool:
        return self.issued >= self.budget or self.converged or self.out_of_time()

    def finished(self) -> bool:
        return self._done_issuing() and not self.in_flight and not self.reissue \
            and self.reference_done

    # ------------------------------------------------------------------ suggest

    def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
        """The next child's Tune config, ``None`` (nothing to start now) or ``"FINISHED"``."""
        if self.reissue:
            job = self.reissue.pop(0)
            job.started = self.clock()
            return self._start(trial_id, job)
        if not self.reference_done and not any(j.child == -2 for j in self.in_flight.values()):
            job = _Job(child=-2, tokens=(), proposal=None, started=self.clock())
            return self._start(trial_id, job)
        if self._done_issuing():
            return "FINISHED" if not self.in_flight else None
        for _ in range(self.max_duplicate_asks):
            proposal = self.strategy.ask()
            tokens = tuple(proposal.tokens)
            key = self.key(tokens)
            if key in self.results:
                self._tell_cached(proposal, self.results[key])
                continue
            if any(self.job_key(j) == key for j in self.in_flight.values()):
                self.waiting.setdefault(key, []).append(proposal)
                continue
            job = _Job(child=self.issued, tokens=tokens, proposal=proposal, started=self.clock())
            self.issued += 1
            return self._start(trial_id, job)
        if not self.in_flight:
            self.converged = True
            return "FINISHED"
        return None

    def _start(self, trial_id: str, job: _Job) -> dict[str, Any]:
        self.in_flight[trial_id] = job
        spec, proxy = self.job_spec(job)
        return {"child": job.child, "spec": spec_to_dict(spec), "proxy": dict(proxy),
                "seed": child_seed(self.seed, self.job_key(job))}

    def job_spec(self, job: _Job) -> tuple[ArchSpec, dict]:
        if job.child == -2:
            assert self.reference is not None
            return self.reference, {}
        return self.decode(job.tokens)

    def key(self, tokens: tuple[int, ...]) -> str:
        """The child key of a token sequence (cached: decoding and hashing cost ~0.1 ms)."""
        if tokens not in self._keys:
            spec, proxy = self.decode(tokens)
            self._keys[tokens] = child_key(spec, proxy)
        return self._keys[tokens]

    def job_key(self, job: _Job) -> str:
        if job.child == -2:
            assert self.reference is not None
            return child_key(self.reference, {})
        return self.key(job.tokens)

    # ------------------------------------------------------------------ complete

    def complete(self, trial_id: str, result: Mapping[str, Any] | None,
                 error: str | None = None) -> list[ChildRecord]:
        """Record a finished trial; returns the new records (the child and any waiting twins)."""
        job = self.in_flight.pop(trial_id, None)
        if job is None:
            return []  # a trial this driver did not issue (or already recorded)
        spec, proxy = self.job_spec(job)
        cost = self.cost_of(spec)
        latency = None if self.latency is None else float(self.latency(spec))
        result = dict(result or {})
        status, acc, err = _outcome(result, error)
        if self._scored(status):
            reward = compute_reward(acc, cost.macs, self.reward_cfg, latency).reward
        else:
            reward = self.reward_cfg.failure_reward
        key = self.job_key(job)
        proxy_info = {k: result[k] for k in ("train_seconds", "images_per_second", "epochs",
                                             "val_loss", "train_loss", "proxy_macs",
                                             "proxy_resolution", "val_curve") if k in result}
        proxy_info.update({f"override_{k}": v for k, v in proxy.items()})
        version = getattr(job.proposal, "version", 0) if job.proposal is not None else 0
        record = ChildRecord(
            child=job.child if job.child >= 0 else -1, trial=trial_id,
            status=REFERENCE if job.child == -2 else status,
            tokens=job.tokens, blocks=block_string(spec), params=cost.params, macs=cost.macs,
            accuracy=acc, reward=reward, seconds=float(result.get("seconds", 0.0)),
            wall_seconds=max(0.0, self.clock() - job.started), error=err,
            policy_version=version, proxy=proxy_info, identity=key,
            seed=child_seed(self.seed, key), latency_ms=latency)
        if job.child == -2:
            self.reference_done = True
            self.records.append(record)
            return [record]
        self.records.append(record)
        self.results[key] = record
        new = [record]
        self._tell(job.proposal, reward, record)
        for twin in self.waiting.pop(key, []):
            new.append(self._tell_cached(twin, record))
        return new

    def _tell_cached(self, proposal: Any, original: ChildRecord) -> ChildRecord:
        record = ChildRecord(
            child=-1, trial="", status=CACHED, tokens=tuple(proposal.tokens), blocks=original.blocks,
            params=original.params, macs=original.macs, accuracy=original.accuracy,
            reward=original.reward, seconds=0.0, wall_seconds=0.0,
            error=f"same network as child {original.child}",
            policy_version=getattr(proposal, "version", 0), identity=original.identity,
            seed=original.seed, latency_ms=original.latency_ms)
        self.records.append(record)
        self._tell(proposal, original.reward, original)
        return record

    def _tell(self, proposal: Any, reward: float, record: ChildRecord) -> None:
        # A strategy that searches more than the reward (NSGA-II: accuracy and MACs) names
        # the metrics it needs in METRICS and is told them too.
        if getattr(self.strategy, "METRICS", ()):
            diagnostics = self.strategy.tell(proposal, reward, self.metrics(record))
        else:
            diagnostics = self.strategy.tell(proposal, reward)
        if diagnostics:
            self._diagnostics.append(dict(diagnostics))

    def metrics(self, record: ChildRecord) -> dict[str, float]:
        """What a strategy is told beside the reward (multi-objective strategies use it) about
        a trained child: the accuracy its reward was computed from (NaN when its reward is
        the failure reward) and its MACs at the target setting."""
        return {"accuracy": record.accuracy if self._scored(record.status) else math.nan,
                "macs": float(record.macs)}

    def _scored(self, status: str) -> bool:
        return scored_by_accuracy(status, self.reward_cfg)

    def pop_diagnostics(self) -> list[dict[str, float]]:
        """The strategy's update diagnostics since the last call (CleanRL-style scalars)."""
        out, self._diagnostics = self._diagnostics, []
        return out

    # ------------------------------------------------------------------ views

    def trained_records(self) -> list[ChildRecord]:
        return [r for r in self.records if r.status not in (CACHED, REFERENCE)]

    def best(self, k: int = 1) -> list[ChildRecord]:
        """The ``k`` best trained children by reward (ties to fewer MACs)."""
        ok = [r for r in self.trained_records() if r.status == OK]
        return sorted(ok, key=lambda r: (-r.reward, r.macs, r.child))[:k]

    def reference_record(self) -> ChildRecord | None:
        return next((r for r in self.records if r.status == REFERENCE), None)

    def spec_of(self, record: ChildRecord) -> ArchSpec:
        if record.status == REFERENCE:
            assert self.reference is not None
            return self.reference
        return self.decode(record.tokens)[0]

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        pending = [{"child": j.child, "tokens": list(j.tokens),
                    "proposal": None if j.proposal is None else j.proposal.to_dict()}
                   for j in list(self.reissue) + list(self.in_flight.values())]
        waiting = [{"key": k, "proposals": [p.to_dict() for p in ps]}
                   for k, ps in self.waiting.items()]
        return {
            "format": STATE_FORMAT,
            "strategy": self.strategy.state_dict(),
            "records": [r.to_dict() for r in self.records],
            "pending": pending,
            "waiting": waiting,
            "issued": self.issued,
            "budget": self.budget,
            "seed": self.seed,
            "reference_done": self.reference_done,
            "converged": self.converged,
            "seconds": self.seconds(),
            "reference": None if self.reference is None else spec_to_dict(self.reference),
        }

    def load_state_dict(self, state: Mapping[str, Any], proposal_type: Any) -> None:
        """Restore; in-flight children of the saved run are re-issued before anything new."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown driver state format {state.get('format')!r}")
        self.strategy.load_state_dict(state["strategy"])
        self.records = [ChildRecord.from_dict(r) for r in state["records"]]
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"the saved search used seed {state['seed']}, not {self.seed}")
        self.records = [r if r.identity or r.status == REFERENCE
                        else replace(r, identity=self.key(r.tokens)) for r in self.records]
        self.results = {r.identity: r for r in self.records
                        if r.status not in (CACHED, REFERENCE)}
        self.in_flight = {}
        self.reissue = [
            _Job(child=p["child"], tokens=tuple(p["tokens"]),
                 proposal=None if p["proposal"] is None else proposal_type.from_dict(p["proposal"]),
                 started=self.clock())
            for p in state["pending"]]
        self.waiting = {}
        for w in state["waiting"]:
            key = w["key"] if "key" in w else self.key(tuple(w["tokens"]))
            self.waiting.setdefault(key, []).extend(
                proposal_type.from_dict(p) for p in w["proposals"])
        self.issued = int(state["issued"])
        self.reference_done = bool(state["reference_done"])
        self.converged = bool(state["converged"])
        self.spent_before = float(state.get("seconds", 0.0))  # saved before it was counted: 0
        self._since = self.clock()
        if state.get("reference") is not None:
            self.reference = spec_from_dict(state["reference"])

    def save(self, path: Path) -> None:
        """Write the state file ``path`` (:func:`save_state`)."""
        save_state(self, path)

    def restore(self, path: Path) -> None:
        """Continue from the state file ``path``; one that cannot be read or does not fit
        this run is a one-line :class:`ConfigError` (:func:`load_state`,
        :func:`restore_state`)."""
        restore_state(self, load_state(path), path)


def _outcome(result: Mapping[str, Any], error: str | None) -> tuple[str, float, str]:
    """(status, accuracy, error) from what a trial reported."""
    if error:
        return FAILED, math.nan, error
    status = result.get("status")
    if status is None:
        return FAILED, math.nan, "trial ended without a final result"
    if status not in SCORED:
        return (status if status in (DIVERGED, OOM) else FAILED), math.nan, \
            str(result.get("error", status))
    acc = result.get("accuracy")
    if not isinstance(acc, (int, float)) or not math.isfinite(acc) or not 0.0 <= acc <= 1.0:
        return DIVERGED, math.nan, f"non-finite or out-of-range accuracy {acc!r}"
    return status, float(acc), str(result.get("error", "")) if status != OK else ""


# --------------------------------------------------------------------------- the state file


def save_state(driver: ChildDriver, path: Path) -> None:
    """Write ``driver``'s :meth:`~ChildDriver.state_dict` to ``path`` atomically (torch's
    format: a strategy's state may hold tensors)."""
    import torch
    with atomic_file(path, "wb") as f:
        torch.save(driver.state_dict(), f)


def load_state(path: Path) -> dict[str, Any]:
    """The driver state saved in ``path``; an empty, truncated or foreign file is a one-line
    :class:`ConfigError` (nothing in the folder is changed)."""
    import torch
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same answer
        first = str(e).splitlines()[0] if str(e) else ""
        why = "it is empty" if path.is_file() and path.stat().st_size == 0 else \
            f"{type(e).__name__}: {first}"[:200]
        raise ConfigError(f"{path}: cannot read the saved state ({why}), so resume=True cannot "
                          f"continue this run; its finished results are in the tables of "
                          f"{path.parent}; start afresh with another out=") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: not a saved driver state (a {type(state).__name__}); "
                          "check out=")
    return state


def restore_state(driver: ChildDriver, state: dict[str, Any], path: Path) -> None:
    """Load ``state`` (read from ``path``) into ``driver``; a state of another format or run
    is a one-line error."""
    from controller import Proposal
    try:
        driver.load_state_dict(state, Proposal)
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as e:
        raise ConfigError(f"{path}: the saved state does not fit this run ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); check out=") from None
