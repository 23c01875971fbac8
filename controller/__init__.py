"""Search strategies that propose architectures as token sequences and learn from rewards.

``make_strategy(name, sizes, seed, **options)`` builds one of :data:`STRATEGIES`:

``ppo``        MnasNet's controller: LSTM policy trained with PPO (asynchronous-safe).
``reinforce``  Zoph & Le's controller: same policy, plain policy gradient with a baseline.
``random``     uniform random search.
``evolution``  regularized (aging) evolution.
``tpe``        Optuna's TPE on the reward (needs Optuna: ``pip install 'effnas[optuna]'``).
``nsga2``      Optuna's NSGA-II on accuracy and MACs, two objectives (needs Optuna).

Nothing here imports Ray or Tune; an adapter elsewhere meets them. ``import controller`` does not
import torch or Optuna; the policy-gradient strategies import torch, the Optuna ones Optuna,
when first used.
"""

from __future__ import annotations

from typing import Any, Sequence

from controller.base import Proposal, RewardError, Strategy, check_reward, check_sizes
from controller.evolution import RegularizedEvolution
from controller.fixed import FixedList
from controller.random_search import RandomSearch
from nas.core.errors import ConfigError

STRATEGIES: tuple[str, ...] = ("ppo", "reinforce", "random", "evolution", "tpe", "nsga2")
# Strategies that need an optional package: name -> (module to import, the install hint).
OPTIONAL: dict[str, tuple[str, str]] = {
    "tpe": ("optuna", "pip install 'effnas[optuna]'"),
    "nsga2": ("optuna", "pip install 'effnas[optuna]'"),
}


def check_available(name: str) -> None:
    """A strategy whose optional package is missing is a one-line :class:`ConfigError`
    naming the install command (checked before a search starts)."""
    if name in OPTIONAL:
        import importlib.util
        module, hint = OPTIONAL[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"strategy {name!r} needs {module}, which is not installed: "
                              f"{hint}")


def strategy_class(name: str) -> type[Strategy]:
    if name == "ppo":
        from controller.ppo import PPO
        return PPO
    if name == "reinforce":
        from controller.ppo import Reinforce
        return Reinforce
    if name == "random":
        return RandomSearch
    if name == "evolution":
        return RegularizedEvolution
    if name in ("tpe", "nsga2"):
        check_available(name)
        from controller.optuna_search import OptunaNSGA2, OptunaTPE
        return OptunaTPE if name == "tpe" else OptunaNSGA2
    raise ConfigError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")


def make_strategy(name: str, sizes: Sequence[int], seed: int = 0, **options: Any) -> Strategy:
    """Build the strategy ``name`` over decisions with ``sizes`` choices each."""
    return strategy_class(name)(sizes, seed, **options)


def __getattr__(name: str) -> Any:
    if name in ("PPO", "Reinforce"):
        from controller import ppo
        return getattr(ppo, name)
    if name == "LSTMPolicy":
        from controller.policy import LSTMPolicy
        return LSTMPolicy
    raise AttributeError(f"module 'controller' has no attribute {name!r}")


__all__ = [
    "Proposal", "Strategy", "RewardError", "STRATEGIES", "OPTIONAL", "make_strategy",
    "strategy_class", "check_available",
    "check_reward", "check_sizes", "FixedList", "PPO", "Reinforce", "RandomSearch", "RegularizedEvolution",
    "LSTMPolicy",
]
