"""Re-checking the search's best children before one of them becomes ``best.yaml``.

A search keeps the child with the highest reward of one proxy run. When many children's
rewards lie within the proxy's seed-to-seed noise (about 1.5 points on the default proxy),
the highest of them is partly the luckiest: trained again, it loses more than its
runners-up do (measured in docs/results/recheck.md). So, with ``recheck.seeds > 0``, the best
``recheck.top`` children are trained ``seeds`` more times each, with seeds of their own, on
the same proxy and validation split, and ``best.yaml`` is the child with the highest mean
reward over its runs (ties to fewer MACs). The table says whether that child's range lies
above every other's (``separated``) or whether the seeds could not tell them apart.

The runs are kept by identity in ``recheck/session*/``, so a search resumed
after Ctrl-C, or with another ``top`` or ``seeds``, or after more children, trains only the
runs it does not have yet. Nothing here trains: the search trains the runs this module
plans and reads (:func:`nas.search.run.recheck_best`) and this module decides.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from nas.core.checks import check_int
from nas.core.errors import ConfigError
from nas.search.driver import STATE_FILE, ChildRecord, load_state

FOLDER = "recheck"


@dataclass(frozen=True)
class RecheckSettings:
    """``seeds`` more proxy runs for each of the best ``top`` children (``seeds: 0``: off)."""

    top: int = 3
    seeds: int = 0

    @property
    def on(self) -> bool:
        return self.seeds > 0

    @classmethod
    def from_config(cls, cfg: Any) -> "RecheckSettings":
        if cfg is None:
            return cls()
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"recheck: got {cfg!r}; expected a mapping such as "
                              "{top: 3, seeds: 2}")
        unknown = sorted(set(cfg) - {"top", "seeds"})
        if unknown:
            raise ConfigError(f"recheck: unknown key {unknown[0]!r}; allowed here: top, seeds")
        return cls(top=check_int(cfg.get("top", 3), "recheck.top", 1),
                   seeds=check_int(cfg.get("seeds", 0), "recheck.seeds", 0))

    def to_dict(self) -> dict[str, int]:
        return {"top": self.top, "seeds": self.seeds}


@dataclass(frozen=True)
class Rechecked:
    """A child and its rewards over proxy runs (the search's own run first)."""

    child: int
    macs: int
    rewards: tuple[float, ...]
    failed: int = 0            # extra runs that did not finish successfully

    @property
    def mean(self) -> float:
        return statistics.mean(self.rewards)

    @property
    def low(self) -> float:
        return min(self.rewards)

    @property
    def high(self) -> float:
        return max(self.rewards)

    def to_dict(self) -> dict[str, Any]:
        return {"child": self.child, "macs": self.macs, "rewards": list(self.rewards),
                "mean": self.mean, "failed": self.failed}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Rechecked":
        return cls(int(d["child"]), int(d["macs"]), tuple(float(r) for r in d["rewards"]),
                   int(d.get("failed", 0)))


@dataclass(frozen=True)
class RecheckDecision:
    """The child chosen for ``best.yaml`` and why."""

    chosen: int
    separated: bool
    margin: float                  # the chosen mean minus the runner-up's (0 with one child)
    table: tuple[Rechecked, ...]   # best mean first

    @property
    def first(self) -> int:
        """The child with the best single run (the choice without a re-check)."""
        return max(self.table, key=lambda r: (r.rewards[0], -r.macs, -r.child)).child

    def explain(self) -> str:
        best = self.table[0]
        runs = len(best.rewards)
        kept = ("kept the best single run" if self.chosen == self.first
                else f"replaced child {self.first}, the best single run")
        how = ("separated from the others" if self.separated
               else "not separated: its range overlaps another's")
        return (f"re-check: child {self.chosen} has the best mean reward {best.mean:.4f} over "
                f"{runs} runs ({best.low:.4f}-{best.high:.4f}), {self.margin:+.4f} over the "
                f"runner-up, {how}; {kept}")

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "first": self.first, "separated": self.separated,
                "margin": self.margin, "candidates": [r.to_dict() for r in self.table],
                "explanation": self.explain()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RecheckDecision":
        return cls(int(d["chosen"]), bool(d["separated"]), float(d["margin"]),
                   tuple(Rechecked.from_dict(r) for r in d["candidates"]))


def decide(rows: Sequence[Rechecked]) -> RecheckDecision:
    """The highest mean reward wins (ties to fewer MACs, then the earlier child)."""
    if not rows:
        raise ValueError("decide: no child to choose from")
    ranked = sorted(rows, key=lambda r: (-r.mean, r.macs, r.child))
    best = ranked[0]
    margin = best.mean - ranked[1].mean if len(ranked) > 1 else 0.0
    separated = all(r.high < best.low for r in ranked[1:])
    return RecheckDecision(best.child, separated, margin, tuple(ranked))


def run_label(child: int, seed: int) -> str:
    return f"child{child}/seed{seed}"


def done_runs(folder: Path) -> dict[str, ChildRecord]:
    """The re-check runs saved in ``folder/session*/driver.pt`` (each session's driver
    state, saved after every result), by identity; a later session's record of the same
    run wins."""
    found: dict[str, ChildRecord] = {}
    sessions = [p for p in folder.glob("session*") if p.name[len("session"):].isdigit()]
    for session in sorted(sessions, key=lambda p: int(p.name[len("session"):])):
        if (session / STATE_FILE).is_file():
            for d in load_state(session / STATE_FILE)["records"]:
                rec = ChildRecord.from_dict(d)
                if rec.identity:
                    found[rec.identity] = rec
    return found
