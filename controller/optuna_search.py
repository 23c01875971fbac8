"""Optuna's samplers as strategies: TPE (``tpe``) on the reward and NSGA-II (``nsga2``) on
accuracy and MACs, through Optuna's ask-and-tell interface.

Needs Optuna (``pip install 'effnas[optuna]'``); ``import controller`` does not import it,
:func:`controller.make_strategy` does when one of these is built.

Each decision of the space is one categorical parameter (``d0``, ``d1``, ...) whose choices
are its choice indices, so Optuna sees the same unordered choices the other strategies do.
Every ``ask`` is one Optuna trial; the trial stays open (running) until its proposal is
told, so several children can be in flight. TPE uses Optuna's constant liar for them by
default: a running trial counts as a bad one, so parallel asks spread out.

NSGA-II searches two objectives: the proxy accuracy (maximised) and the MACs at the target
setting (minimised), which the search's driver tells beside the reward
(:attr:`Strategy.METRICS`); a child without an accuracy (failed, diverged, or scored as a
failure) is told as a failed trial, which NSGA-II leaves out of its populations.
:meth:`OptunaNSGA2.pareto_front` returns the front of what it was told.

State. The study lives in memory; :meth:`state_dict` holds it pickled (its trials, the
sampler and its random generator) with the map from open proposals to their trials, so a
strategy that loads it continues exactly: the same future proposals, and proposals asked
before the save can be told after it. A proposal the study never asked (made by hand, or
re-issued by a driver whose state is older than the strategy's) is added as a finished
trial. The pickle needs the same Optuna version to load; another one is refused in one
line at ``--resume``.

Optuna's objects are pickled with :func:`_pickle_study`, which writes any thread lock in
them as a new, unlocked one: Optuna 5.1's genetic-algorithm samplers (NSGA-II) hold a
``threading.Lock`` that plain ``pickle`` refuses ("cannot pickle '_thread.lock' object").
A state of trials and random-generator states, rebuilt into a new study, would not need
the pickle, but it would read the samplers' private generators and caches, which change
between Optuna releases just as well; the pickle keeps every bit of the sampler, so the
continuation is exact by construction.
"""

from __future__ import annotations

import _thread
import copyreg
import io
import math
import pickle
import threading
import warnings
from collections import deque
from typing import Any, Mapping

from controller.base import Proposal, Strategy, boolean, positive_int, unit_interval
from nas.core.checks import is_number
from nas.core.errors import ConfigError


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("the tpe and nsga2 strategies need Optuna: pip install "
                          "'effnas[optuna]' (or pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def optuna_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("optuna") is not None


class _LockTolerantPickler(pickle.Pickler):
    """A pickler that writes a thread lock as a new, unlocked lock of its kind (a lock
    guards a process's threads, and has nothing to carry into another process)."""

    dispatch_table = copyreg.dispatch_table.copy()
    dispatch_table[_thread.LockType] = lambda lock: (threading.Lock, ())
    dispatch_table[type(threading.RLock())] = lambda lock: (threading.RLock, ())


def _pickle_study(study: Any) -> bytes:
    buf = io.BytesIO()
    _LockTolerantPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(study)
    return buf.getvalue()


def _probability(name: str, v: Any) -> float:
    """A number in [0, 1]."""
    if is_number(v) and float(v) == 1.0:
        return 1.0
    return unit_interval(name, v)


def _optional_probability(name: str, v: Any) -> float | None:
    return None if v is None else _probability(name, v)


def _population(name: str, v: Any) -> int:
    n = positive_int(name, v)
    if n < 2:
        raise ConfigError(f"option {name!r} of strategy 'nsga2' must be >= 2 (crossover needs "
                          f"two parents), got {v!r}")
    return n


def _optional_bool(name: str, v: Any) -> bool | None:
    return None if v is None else boolean(name, v)


class _OptunaStrategy(Strategy):
    """The ask/tell bookkeeping shared by the Optuna strategies."""

    DIRECTIONS: tuple[str, ...] = ("maximize",)

    def __init__(self, sizes, seed: int = 0, **options: Any) -> None:
        super().__init__(sizes, seed, **options)
        optuna = _import_optuna()
        self._optuna = optuna
        self._distributions = {f"d{i}": optuna.distributions.CategoricalDistribution(
            list(range(n))) for i, n in enumerate(self.sizes)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._study = optuna.create_study(sampler=self._sampler(optuna),
                                              directions=list(self.DIRECTIONS))
        self._open: dict[tuple[int, ...], deque[int]] = {}   # tokens -> open trial numbers

    def _sampler(self, optuna: Any) -> Any:
        raise NotImplementedError

    def _ask(self) -> Proposal:
        trial = self._study.ask(self._distributions)
        tokens = tuple(int(trial.params[f"d{i}"]) for i in range(len(self.sizes)))
        self._open.setdefault(tokens, deque()).append(trial.number)
        return Proposal(tokens, version=self.n_told)

    def _finish(self, proposal: Proposal, values: list[float] | None) -> None:
        """Tell the proposal's open trial ``values`` (None: the trial failed)."""
        from optuna.trial import TrialState, create_trial
        state = TrialState.COMPLETE if values is not None else TrialState.FAIL
        open_trials = self._open.get(proposal.tokens)
        if open_trials:
            number = open_trials.popleft()
            if not open_trials:
                del self._open[proposal.tokens]
            self._study.tell(number, values, state=state)
            return
        params = {f"d{i}": t for i, t in enumerate(proposal.tokens)}
        self._study.add_trial(create_trial(
            params=params, distributions=self._distributions, state=state,
            values=values))

    def _state(self) -> dict[str, Any]:
        # "study" is what loads (the trials, the sampler, its random generator; it holds the
        # trials' wall-clock times too); "trials" lists what was asked and told, readably.
        trials = [[t.number, t.state.name, [int(t.params[f"d{i}"]) for i in range(len(self.sizes))],
                   None if t.values is None else [float(v) for v in t.values]]
                  for t in self._study.get_trials(deepcopy=False)]
        return {"optuna": self._optuna.__version__, "study": _pickle_study(self._study),
                "trials": trials, "open": [[list(t), list(ns)] for t, ns in self._open.items()]}

    def _load_state(self, state: dict[str, Any]) -> None:
        if state.get("optuna") != self._optuna.__version__:
            raise ConfigError(f"the saved {self.name} study was made with Optuna "
                              f"{state.get('optuna')}, this is Optuna "
                              f"{self._optuna.__version__}; install that version to continue")
        self._study = pickle.loads(state["study"])
        self._open = {tuple(int(x) for x in t): deque(int(n) for n in ns)
                      for t, ns in state["open"]}

    @property
    def study(self) -> Any:
        """The Optuna study (for plots and analysis; do not ask or tell it directly)."""
        return self._study


class OptunaTPE(_OptunaStrategy):
    """Optuna's tree-structured Parzen estimator on the reward.

    Options: ``n_startup_trials`` (default 10) random proposals before TPE models the
    results; ``n_ei_candidates`` (24) candidates scored per proposal; ``multivariate`` (null:
    Optuna's default, on for one objective) models the decisions jointly;
    ``constant_liar`` (true) counts proposals in flight as bad results, so parallel asks
    spread out.
    """

    name = "tpe"
    OPTIONS = {
        "n_startup_trials": (10, positive_int),
        "n_ei_candidates": (24, positive_int),
        "multivariate": (None, _optional_bool),
        "constant_liar": (True, boolean),
    }

    def _sampler(self, optuna: Any) -> Any:
        o = self.options
        kwargs = {"n_startup_trials": o["n_startup_trials"],
                  "n_ei_candidates": o["n_ei_candidates"],
                  "constant_liar": o["constant_liar"], "seed": self.seed}
        if o["multivariate"] is not None:
            kwargs["multivariate"] = o["multivariate"]
        return optuna.samplers.TPESampler(**kwargs)

    def _tell(self, proposal: Proposal, reward: float) -> None:
        self._finish(proposal, [reward])
        return None


class OptunaNSGA2(_OptunaStrategy):
    """Optuna's NSGA-II on two objectives: accuracy (up) and MACs (down).

    Options: ``population_size`` (default 50) trials per generation (the first generation
    is random); ``crossover_prob`` (0.9); ``swapping_prob`` (0.5, uniform crossover's
    per-decision swap); ``mutation_prob`` (null: 1 / number of decisions).
    """

    name = "nsga2"
    METRICS = ("accuracy", "macs")
    DIRECTIONS = ("maximize", "minimize")
    OPTIONS = {
        "population_size": (50, _population),
        "crossover_prob": (0.9, _probability),
        "swapping_prob": (0.5, _probability),
        "mutation_prob": (None, _optional_probability),
    }

    def _sampler(self, optuna: Any) -> Any:
        o = self.options
        return optuna.samplers.NSGAIISampler(
            population_size=o["population_size"], crossover_prob=o["crossover_prob"],
            swapping_prob=o["swapping_prob"], mutation_prob=o["mutation_prob"],
            seed=self.seed)

    def _tell(self, proposal: Proposal, reward: float) -> None:  # pragma: no cover
        raise AssertionError("nsga2 is told through _tell_metrics")

    def _tell_metrics(self, proposal: Proposal, reward: float,
                      metrics: Mapping[str, float]) -> None:
        acc, macs = metrics["accuracy"], metrics["macs"]
        ok = math.isfinite(acc) and math.isfinite(macs)
        self._finish(proposal, [acc, macs] if ok else None)
        return None

    def pareto_front(self) -> list[tuple[Proposal, float, float]]:
        """(proposal, accuracy, MACs) of every told trial no other beats in both, by MACs."""
        front = [(Proposal(tuple(int(t.params[f"d{i}"]) for i in range(len(self.sizes)))),
                  float(t.values[0]), float(t.values[1])) for t in self._study.best_trials]
        return sorted(front, key=lambda x: (x[2], -x[1], x[0].tokens))
