"""A strategy that proposes the items of a fixed list once each, in order.

Scaling candidates and single-dimension baselines run through the same driver and Ray
machinery as a search with it: item ``i`` is the token sequence ``(i,)``; rewards are
recorded, not learned from.
"""

from __future__ import annotations

from typing import Any, Mapping

from controller.base import Proposal


class FixedList:
    """Propose ``(0,), (1,), ..., (n-1,)``, then start over (the driver stops at its budget)."""

    def __init__(self, n: int):
        self.n = int(n)
        self.next = 0

    def ask(self) -> Proposal:
        i = self.next % self.n
        self.next += 1
        return Proposal(tokens=(i,))

    def tell(self, proposal: Any, reward: float, metrics: Any = None) -> None:
        return None

    def state_dict(self) -> dict[str, int]:
        return {"n": self.n, "next": self.next}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.n, self.next = int(state["n"]), int(state["next"])
