"""The strategy interface: proposals out, rewards in, all state in one dict.

A :class:`Strategy` proposes architectures as token sequences (one choice index per decision of
the search space, in the space's fixed order) and learns from rewards that come back later,
possibly out of order and after other proposals were made: children are trained elsewhere, so
many proposals can be in flight at once. The strategy knows nothing of Ray, Tune or the search
space's meaning; it sees only ``sizes``, the number of choices of each decision.

Every strategy owns its random generators (seeded from ``seed``) and keeps no global state, so
``state_dict()`` is complete: a fresh strategy built with the same arguments that loads it makes
the same future proposals as the original, and proposals asked before the save can still be told
after the load.
"""

from __future__ import annotations

import copy
import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Mapping, Sequence

from nas.core.checks import is_int, is_number
from nas.core.errors import ConfigError, NasError, SpaceError

STATE_FORMAT = 1


class RewardError(NasError, ValueError):
    """A reward told to a strategy is not a finite real number."""


@dataclass(frozen=True)
class Proposal:
    """One proposed architecture and how it was sampled.

    ``tokens[i]`` is the choice index of decision ``i``. ``logp[i]`` is the log-probability of that
    choice under the policy that sampled it, given the earlier choices (empty when no policy
    sampled it: random search, evolution, a hand-picked architecture). ``version`` is the number
    of policy updates the strategy had done when it sampled the proposal (for evolution: the
    number of results told), so a caller can see how stale a proposal is when it comes back.
    """

    tokens: tuple[int, ...]
    logp: tuple[float, ...] = ()
    version: int = 0

    def __post_init__(self) -> None:
        tokens = _int_tuple(self.tokens, "Proposal.tokens")
        if not tokens:
            raise SpaceError("Proposal.tokens is empty; a proposal has one token per decision")
        if any(t < 0 for t in tokens):
            raise SpaceError(f"Proposal.tokens must be >= 0, got {list(tokens)}")
        try:
            logp = tuple(float(v) for v in self.logp)
        except (TypeError, ValueError):
            raise SpaceError(f"Proposal.logp must be a sequence of floats, got {self.logp!r}") from None
        if logp and len(logp) != len(tokens):
            raise SpaceError(
                f"Proposal.logp has {len(logp)} entries for {len(tokens)} tokens; give one per "
                "token or none")
        if not all(math.isfinite(v) for v in logp):
            raise SpaceError(f"Proposal.logp must be finite, got {list(logp)}")
        if not is_int(self.version) \
                or self.version < 0:
            raise SpaceError(f"Proposal.version must be an integer >= 0, got {self.version!r}")
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "logp", logp)
        object.__setattr__(self, "version", int(self.version))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (lists, floats, ints) that :meth:`from_dict` turns back into ``self``."""
        return {"tokens": list(self.tokens), "logp": list(self.logp), "version": self.version}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Proposal":
        if not isinstance(d, Mapping):
            raise SpaceError(f"a proposal dict must be a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - {"tokens", "logp", "version"})
        if unknown:
            raise SpaceError(f"unknown proposal key(s) {unknown}; known: tokens, logp, version")
        if "tokens" not in d:
            raise SpaceError("a proposal dict needs 'tokens'")
        return cls(tokens=d["tokens"], logp=d.get("logp", ()), version=d.get("version", 0))


def _int_tuple(values: Any, what: str) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        try:
            values = list(values)
        except TypeError:
            raise SpaceError(f"{what} must be a sequence of integers, got {values!r}") from None
    out = []
    for v in values:
        if not is_int(v):
            raise SpaceError(f"{what} must hold integers, got {v!r} in {list(values)!r}")
        out.append(int(v))
    return tuple(out)


def check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    """Validate the number of choices per decision: a non-empty list of integers >= 1."""
    try:
        out = _int_tuple(sizes, "sizes")
    except SpaceError as e:
        raise SpaceError(f"{e}; sizes lists the number of choices of each decision") from None
    if not out:
        raise SpaceError("sizes is empty; a search space needs at least one decision")
    bad = [i for i, s in enumerate(out) if s < 1]
    if bad:
        raise SpaceError(
            f"sizes[{bad[0]}] = {out[bad[0]]}; every decision needs at least one choice "
            f"(sizes = {list(out)})")
    return out


def check_reward(reward: Any) -> float:
    """A reward as a float; anything but a finite real number raises :class:`RewardError`.

    Failed or invalid children must be mapped to a defined reward by the caller, never NaN.
    """
    if isinstance(reward, bool) or not isinstance(reward, numbers.Real):
        raise RewardError(f"reward must be a finite real number, got {reward!r}")
    r = float(reward)
    if not math.isfinite(r):
        raise RewardError(
            f"reward must be finite, got {r}; map failed or invalid children to a defined reward "
            "before telling")
    return r


def check_metrics(metrics: Any, needed: Sequence[str], strategy: str) -> dict[str, float]:
    """The metrics a tell carries, as floats; those in ``needed`` must be there (NaN allowed:
    a child without that measurement), and every value must be a real number."""
    if metrics is None:
        metrics = {}
    if not isinstance(metrics, Mapping):
        raise RewardError(f"metrics must be a mapping of names to numbers, got {metrics!r}")
    missing = [k for k in needed if k not in metrics]
    if missing:
        # Not derived from the reward: one number (e.g. ACC * (MACs/T)^w) does not give
        # back the two it was made of, and a strategy knows nothing of the space's costs.
        example = ", ".join(f"{k!r}: ..." for k in needed)
        raise RewardError(f"strategy {strategy!r} searches {', '.join(needed)} besides the "
                          f"reward and cannot derive them from it; tell it metrics with "
                          f"{', '.join(missing)}: tell(proposal, reward, {{{example}}}) (the "
                          "search's driver does)")
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise RewardError(f"metric {k!r} must be a real number (NaN when unknown), got {v!r}")
        out[str(k)] = float(v)
    return out


# Option checkers: each takes (name, value) and returns the normalised value or raises.
Check = Callable[[str, Any], Any]


def positive_int(name: str, v: Any) -> int:
    if not is_int(v) or v < 1:
        raise ConfigError(f"option {name!r} must be an integer >= 1, got {v!r}")
    return int(v)


def _real(name: str, v: Any) -> float:
    if not is_number(v):
        raise ConfigError(f"option {name!r} must be a finite number, got {v!r}")
    return float(v)


def positive_float(name: str, v: Any) -> float:
    x = _real(name, v)
    if x <= 0:
        raise ConfigError(f"option {name!r} must be > 0, got {v!r}")
    return x


def nonnegative_float(name: str, v: Any) -> float:
    x = _real(name, v)
    if x < 0:
        raise ConfigError(f"option {name!r} must be >= 0, got {v!r}")
    return x


def unit_interval(name: str, v: Any) -> float:
    """A number in [0, 1)."""
    x = _real(name, v)
    if not 0 <= x < 1:
        raise ConfigError(f"option {name!r} must be in [0, 1), got {v!r}")
    return x


def boolean(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"option {name!r} must be true or false, got {v!r}")
    return v


def optional(check: Check) -> Check:
    """``None`` (meaning off) or a value accepted by ``check``."""
    def run(name: str, v: Any) -> Any:
        return None if v is None else check(name, v)
    return run


class Strategy(ABC):
    """Base class of the search strategies.

    Subclasses set ``name`` and ``OPTIONS`` (option name -> (default, checker)) and implement
    ``_ask``, ``_tell``, ``_state`` and ``_load_state``; this class validates arguments, rewards
    and proposals, counts asks and tells, and wraps the subclass state with enough metadata to
    refuse a state from a different strategy or space.
    """

    name: ClassVar[str] = "base"
    OPTIONS: ClassVar[Mapping[str, tuple[Any, Check]]] = {}
    # Metrics besides the reward that every tell() must carry (a multi-objective strategy's
    # objectives, e.g. ("accuracy", "macs")); empty: the reward alone.
    METRICS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, sizes: Sequence[int], seed: int = 0, **options: Any) -> None:
        self.sizes = check_sizes(sizes)
        if not is_int(seed) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            known = ", ".join(sorted(self.OPTIONS)) or "none"
            raise ConfigError(
                f"unknown option {unknown[0]!r} for strategy {self.name!r}; known options: {known}")
        resolved = {k: check(k, options.get(k, default)) for k, (default, check) in self.OPTIONS.items()}
        self.options: Mapping[str, Any] = MappingProxyType(resolved)
        self.n_asked = 0
        self.n_told = 0

    # -- the interface ---------------------------------------------------------------------

    def ask(self) -> Proposal:
        """Propose the next architecture. May be called many times before any :meth:`tell`."""
        proposal = self._ask()
        self.n_asked += 1
        return proposal

    def tell(self, proposal: Proposal, reward: float,
             metrics: Mapping[str, float] | None = None) -> dict[str, float] | None:
        """Report the reward of a proposal (asked earlier, possibly before a save/load, or
        constructed by hand). Returns diagnostics when this result triggered an update (a policy
        update or an evolution step), else ``None``.

        ``metrics`` carries what a strategy with :attr:`METRICS` searches besides the reward
        (each a float; NaN for a child that has none, e.g. the accuracy of a failed one);
        other strategies ignore it."""
        r = check_reward(reward)
        self.check_proposal(proposal)
        m = check_metrics(metrics, self.METRICS, self.name)
        self.n_told += 1
        if self.METRICS:
            return self._tell_metrics(proposal, r, m)
        return self._tell(proposal, r)

    def check_proposal(self, proposal: Proposal) -> None:
        if not isinstance(proposal, Proposal):
            raise SpaceError(f"expected a Proposal, got {type(proposal).__name__}")
        if len(proposal.tokens) != len(self.sizes):
            raise SpaceError(
                f"proposal has {len(proposal.tokens)} tokens but the space has {len(self.sizes)} "
                "decisions")
        for i, (t, s) in enumerate(zip(proposal.tokens, self.sizes)):
            if t >= s:
                raise SpaceError(f"proposal token {i} is {t}, but decision {i} has {s} choices")

    def restart_rewards(self) -> None:
        """From now on rewards come from another evaluator, on another scale (a one-shot
        search handing its strategy from the supernet to standalone training): forget what
        summarizes the rewards told so far, keep what was learned about where to sample.
        The base class keeps everything: random search reads no reward, an evolution's
        population keeps its members (they age out as new results arrive), and Optuna's
        samplers keep their trials."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: a deep copy, safe to keep or ``torch.save``."""
        return {
            "format": STATE_FORMAT,
            "strategy": self.name,
            "sizes": list(self.sizes),
            "options": dict(self.options),
            "n_asked": self.n_asked,
            "n_told": self.n_told,
            "state": self._state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (made by a strategy of the same kind, space and options)."""
        if not isinstance(state, Mapping):
            raise ConfigError(f"a strategy state must be a mapping, got {type(state).__name__}")
        missing = sorted({"format", "strategy", "sizes", "options", "n_asked", "n_told", "state"}
                         - set(state))
        if missing:
            raise ConfigError(f"strategy state lacks {missing}; it was not made by state_dict()")
        if state["format"] != STATE_FORMAT:
            raise ConfigError(f"strategy state format {state['format']!r} is not {STATE_FORMAT}")
        if state["strategy"] != self.name:
            raise ConfigError(
                f"state is from strategy {state['strategy']!r}, cannot load it into {self.name!r}")
        if tuple(state["sizes"]) != self.sizes:
            raise ConfigError(
                f"state is for sizes {list(state['sizes'])}, this strategy has {list(self.sizes)}")
        if dict(state["options"]) != dict(self.options):
            diff = sorted(k for k in set(state["options"]) | set(self.options)
                          if state["options"].get(k) != self.options.get(k))
            raise ConfigError(
                f"state was saved with different options ({', '.join(diff)}); build the strategy "
                f"with options {dict(state['options'])}")
        self._load_state(copy.deepcopy(state["state"]))
        self.n_asked = int(state["n_asked"])
        self.n_told = int(state["n_told"])

    # -- for subclasses --------------------------------------------------------------------

    @abstractmethod
    def _ask(self) -> Proposal: ...

    @abstractmethod
    def _tell(self, proposal: Proposal, reward: float) -> dict[str, float] | None: ...

    def _tell_metrics(self, proposal: Proposal, reward: float,
                      metrics: Mapping[str, float]) -> dict[str, float] | None:
        """What a strategy with :attr:`METRICS` does with a result (instead of ``_tell``)."""
        return self._tell(proposal, reward)

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """The subclass state as a fresh structure of tensors, lists, dicts and numbers."""

    @abstractmethod
    def _load_state(self, state: dict[str, Any]) -> None:
        """Restore from a private copy of what :meth:`_state` returned."""

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}(sizes=<{len(self.sizes)} decisions>, seed={self.seed}, {opts})"
