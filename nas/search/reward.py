"""The multi-objective reward of MnasNet/EfficientNet: ``ACC(m) * (COST(m) / T) ** w``.

Soft constraint (EfficientNet, the default): ``w = -0.07`` on both sides of ``T``.
Hard constraint (MnasNet): ``w = 0`` when ``COST <= T`` and ``-1`` above it.
Absolute (TuNAS): ``ACC(m) + beta * |COST(m) / T - 1|`` with ``beta < 0`` (TuNAS's default
-0.10): it pulls towards ``T`` from both sides, so a search lands near its target in one try.

The cost is the multiply-adds (``target_macs``, EfficientNet's choice) or, with
``target_ms``, the latency in milliseconds (MnasNet's: measured on the device, here
predicted from its latency table). Either is counted at the *target* setting (224x224,
1000 classes by default), whatever the proxy data set is, so that "400M" and "15ms" mean
what they mean in the papers. With a latency target, ``macs_cap`` makes ``target_macs`` a
hard cap besides it: over the cap the accuracy counts ``(MACs / cap) ** -1`` of itself (the
hard form's penalty), under it in full.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from nas.core.errors import ConfigError

FORMS = ("soft", "hard", "absolute")
METRICS = ("macs", "latency")
ON_TIMEOUT = ("partial", "failure")
ON_STOPPED = ON_TIMEOUT


@dataclass(frozen=True)
class RewardConfig:
    target_macs: int = 400_000_000
    form: str = "soft"
    w: float = -0.07            # exponent of the soft form
    failure_reward: float = 0.0  # what a child that failed, diverged or ran out of memory scores
    # A child cut off by the recipe's time cap: "partial" scores its partly trained accuracy,
    # "failure" scores failure_reward. Either way it is marked "timeout", never "ok".
    on_timeout: str = "partial"
    # A child stopped early by the trial scheduler (ASHA, ``tune.scheduler``) after an epoch
    # whose validation accuracy trailed the others': "partial" scores the accuracy it had
    # then, "failure" scores failure_reward. Either way it is marked "stopped", never "ok".
    on_stopped: str = "partial"
    beta: float = -0.10          # the absolute form's cost weight (TuNAS)
    # A latency target (milliseconds): the cost is the latency, not the MACs; with
    # macs_cap, target_macs is a hard cap besides it.
    target_ms: float | None = None
    macs_cap: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.target_macs, int) or self.target_macs <= 0:
            raise ConfigError(f"reward.target_macs: got {self.target_macs!r}; use a positive "
                              "number of multiply-adds such as 400M")
        if self.target_ms is not None and (
                isinstance(self.target_ms, bool) or not isinstance(self.target_ms, (int, float))
                or not math.isfinite(self.target_ms) or self.target_ms <= 0):
            raise ConfigError(f"reward.target_ms: got {self.target_ms!r}; use a positive "
                              "latency in milliseconds such as 15.0")
        if not isinstance(self.macs_cap, bool) or (self.macs_cap and self.target_ms is None):
            raise ConfigError(f"reward.macs_cap: got {self.macs_cap!r}; a MACs cap goes with "
                              "a latency target (target_ms), true or false")
        if self.form not in FORMS:
            raise ConfigError(f"reward.form: got {self.form!r}; use soft, hard or absolute")
        if not math.isfinite(self.w) or self.w > 0:
            raise ConfigError(f"reward.w: got {self.w!r}; use a negative exponent such as -0.07")
        if not math.isfinite(self.beta) or self.beta >= 0:
            raise ConfigError(f"reward.beta: got {self.beta!r}; use a negative cost weight such "
                              "as -0.1 (the absolute form: ACC + beta * |MACs/T - 1|)")
        if not math.isfinite(self.failure_reward):
            raise ConfigError("reward.failure_reward: must be a finite number such as 0")
        if self.on_timeout not in ON_TIMEOUT:
            raise ConfigError(f"reward.on_timeout: got {self.on_timeout!r}; use partial (score the "
                              "partly trained accuracy) or failure (score failure_reward)")
        if self.on_stopped not in ON_STOPPED:
            raise ConfigError(f"reward.on_stopped: got {self.on_stopped!r}; use partial (score "
                              "the accuracy it had when it was stopped) or failure (score "
                              "failure_reward)")

    @property
    def metric(self) -> str:
        """What the reward's cost is: ``macs`` or ``latency``."""
        return "macs" if self.target_ms is None else "latency"

    @property
    def exponents(self) -> tuple[float, float]:
        """(exponent at or under the target, exponent above it)."""
        return (self.w, self.w) if self.form == "soft" else (0.0, -1.0)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RewardResult:
    reward: float
    accuracy: float
    macs: int
    cost_ratio: float        # COST / T (MACs, or the latency with a latency target)
    cost_adjustment: float   # (COST / T) ** exponent; the absolute form: beta * |COST/T - 1|
    latency_ms: float | None = None
    cap_adjustment: float = 1.0  # min(1, cap / MACs) with a MACs cap, else 1

    def to_dict(self) -> dict:
        return asdict(self)


def compute_reward(accuracy: float, macs: int, cfg: RewardConfig,
                   latency_ms: float | None = None) -> RewardResult:
    """Reward of a child with proxy ``accuracy`` in [0, 1], ``macs`` and (needed with a
    latency target) ``latency_ms`` at the target setting."""
    if not math.isfinite(accuracy) or not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be in [0, 1], got {accuracy!r}")
    if macs <= 0:
        raise ValueError(f"macs must be positive, got {macs!r}")
    if cfg.target_ms is not None:
        if latency_ms is None or not math.isfinite(latency_ms) or latency_ms <= 0:
            raise ValueError(f"a latency target needs a positive latency_ms, got {latency_ms!r}")
        cost, target = float(latency_ms), float(cfg.target_ms)
    else:
        cost, target = float(macs), float(cfg.target_macs)
    cap = min(1.0, cfg.target_macs / macs) if cfg.macs_cap else 1.0
    acc = accuracy * cap
    ratio = cost / target
    if cfg.form == "absolute":
        penalty = cfg.beta * abs(ratio - 1.0)
        return RewardResult(acc + penalty, accuracy, int(macs), ratio, penalty, latency_ms, cap)
    under, over = cfg.exponents
    adjustment = ratio ** (under if cost <= target else over)
    return RewardResult(acc * adjustment, accuracy, int(macs), ratio, adjustment, latency_ms,
                        cap)
