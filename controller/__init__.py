"""Search strategies that propose architectures as token sequences and learn from rewards.

``make_strategy(name, sizes, seed, **options)`` builds one of :data:`STRATEGIES`:

``ppo``        MnasNet's controller: LSTM policy trained with PPO (asynchronous-safe).
``reinforce``  Zoph & Le's controller: same policy, plain policy gradient with a baseline.
``random``     uniform random search.
``evolution``  regularized (aging) evolution.

Nothing here imports Ray or Tune; an adapter elsewhere meets them. ``import controller`` does not
import torch; the policy-gradient strategies import it when first used.
"""

from __future__ import annotations

from typing import Any, Sequence

from controller.base import Proposal, RewardError, Strategy, check_reward, check_sizes
from controller.evolution import RegularizedEvolution
from controller.fixed import FixedList
from controller.random_search import RandomSearch
from nas.core.errors import ConfigError

STRATEGIES: tuple[str, ...] = ("ppo", "reinforce", "random", "evolution")


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
    "Proposal", "Strategy", "RewardError", "STRATEGIES", "make_strategy", "strategy_class",
    "check_reward", "check_sizes", "FixedList", "PPO", "Reinforce", "RandomSearch", "RegularizedEvolution",
    "LSTMPolicy",
]
