"""Choosing the coefficients when the grid's proxy accuracies are noisy.

One proxy run per candidate cannot separate candidates whose accuracies differ by less than
the proxy's seed-to-seed noise (about 1.5 points on the default proxy): two grid runs then
pick different coefficients, and a whole family with them. So the best few candidates are
trained again with more seeds, and the choice is made on their mean and range:

- when the best mean's range lies above every other candidate's range, it is chosen and the
  grid *separated* it (``separated: true``, with its margin over the runner-up);
- otherwise the candidates whose ranges overlap the best one's are *contenders* the seeds
  cannot tell apart, and a stated rule picks among them: ``paper`` (default) takes the
  contender closest to the paper's (1.2, 1.1, 1.15) in log space, a prior that a noisy
  measurement cannot overturn; ``mean`` takes the highest mean anyway.

Pure: the caller trains; this module decides and records why.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from nas.core.errors import ConfigError
from scaler.compound import PAPER_COEFFICIENTS, TIE_RULES, Coefficients


@dataclass(frozen=True)
class Rechecked:
    """A candidate and its proxy accuracies over seeds (the grid's own run first)."""

    coefficients: Coefficients
    accuracies: tuple[float, ...]
    macs: int

    @property
    def mean(self) -> float:
        return statistics.mean(self.accuracies)

    @property
    def low(self) -> float:
        return min(self.accuracies)

    @property
    def high(self) -> float:
        return max(self.accuracies)

    def to_dict(self) -> dict[str, Any]:
        return {**self.coefficients.to_dict(), "accuracies": list(self.accuracies),
                "mean": self.mean, "macs": self.macs}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str) -> "Rechecked":
        try:
            accs = tuple(float(a) for a in d["accuracies"])
            return cls(Coefficients.from_dict({k: d[k] for k in ("alpha", "beta", "gamma")},
                                              source), accs, int(d["macs"]))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{source}: expected alpha, beta, gamma, accuracies and macs") \
                from None


def _paper_distance(c: Coefficients) -> float:
    p = PAPER_COEFFICIENTS
    return sum(math.log(a / b) ** 2 for a, b in ((c.alpha, p.alpha), (c.beta, p.beta),
                                                  (c.gamma, p.gamma)))


@dataclass(frozen=True)
class Decision:
    """The chosen coefficients and why."""

    chosen: Coefficients
    separated: bool
    margin: float              # best mean minus the runner-up's mean (0 with one candidate)
    contenders: tuple[Coefficients, ...]
    rule: str
    table: tuple[Rechecked, ...]

    def explain(self) -> str:
        best = max(self.table, key=lambda r: r.mean)
        if self.separated:
            return (f"{self.chosen}: mean proxy accuracy {best.mean:.4f} over "
                    f"{len(best.accuracies)} seeds ({best.low:.4f}-{best.high:.4f}), "
                    f"{self.margin:+.4f} over the runner-up; separated from every other")
        return (f"not separated: {len(self.contenders)} candidates' ranges overlap the best mean's "
                f"({best.coefficients}, {best.mean:.4f}, margin {self.margin:+.4f}); rule "
                f"'{self.rule}' chose {self.chosen}")

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen.to_dict(), "separated": self.separated,
                "margin": self.margin, "rule": self.rule,
                "contenders": [c.to_dict() for c in self.contenders],
                "candidates": [r.to_dict() for r in self.table], "explanation": self.explain()}

    @classmethod
    def from_dict(cls, d: Any, source: str = "recheck") -> "Decision":
        if not isinstance(d, Mapping):
            raise ConfigError(f"{source}: expected a mapping")
        try:
            table = tuple(Rechecked.from_dict(r, f"{source}.candidates[{i}]")
                          for i, r in enumerate(d["candidates"]))
            return cls(Coefficients.from_dict(d["chosen"], f"{source}.chosen"),
                       bool(d["separated"]), float(d["margin"]),
                       tuple(Coefficients.from_dict(c, f"{source}.contenders")
                             for c in d["contenders"]), str(d["rule"]), table)
        except KeyError as e:
            raise ConfigError(f"{source}.{e.args[0]}: missing") from None


def decide(rows: Sequence[Rechecked], rule: str = "paper") -> Decision:
    """Choose among re-trained candidates (see the module docstring)."""
    if rule not in TIE_RULES:
        raise ConfigError(f"tie rule {rule!r}: use one of {', '.join(TIE_RULES)}")
    rows = [r for r in rows if r.accuracies]
    if not rows:
        raise ConfigError("no grid candidate has a finite accuracy to choose from; check the "
                          "trials' errors and rerun the grid")
    ranked = sorted(rows, key=lambda r: (-r.mean, r.macs))
    best = ranked[0]
    margin = best.mean - ranked[1].mean if len(ranked) > 1 else 0.0
    contenders = [r for r in ranked if r.high >= best.low]
    separated = len(contenders) == 1
    if separated or rule == "mean":
        chosen = best
    else:
        chosen = min(contenders, key=lambda r: (_paper_distance(r.coefficients), -r.mean))
    return Decision(chosen.coefficients, separated, margin,
                    tuple(r.coefficients for r in contenders), rule, tuple(ranked))
