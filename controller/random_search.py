"""Random search: every decision uniform and independent. The baseline every strategy must beat."""

from __future__ import annotations

from typing import Any

import numpy as np

from controller.base import Proposal, Strategy


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """A numpy generator's state as plain dicts, strings and ints (safe for torch.load weights_only)."""
    return _plain(rng.bit_generator.state)


def set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, np.integer):
        return int(x)
    return x


def uniform_tokens(rng: np.random.Generator, sizes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(t) for t in rng.integers(0, np.asarray(sizes)))


class RandomSearch(Strategy):
    """Uniform sampling over each decision, from a seeded generator. ``tell`` learns nothing."""

    name = "random"
    OPTIONS: dict = {}

    def __init__(self, sizes, seed: int = 0, **options: Any) -> None:
        super().__init__(sizes, seed, **options)
        self._rng = np.random.default_rng(self.seed)

    def _ask(self) -> Proposal:
        return Proposal(uniform_tokens(self._rng, self.sizes))

    def _tell(self, proposal: Proposal, reward: float) -> None:
        return None

    def _state(self) -> dict[str, Any]:
        return {"rng": rng_state(self._rng)}

    def _load_state(self, state: dict[str, Any]) -> None:
        set_rng_state(self._rng, state["rng"])
