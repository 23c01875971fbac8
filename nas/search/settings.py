"""Typed settings of the runs that train children on Ray: the search and the scaling grid.

The command line (:mod:`nas.cli`) reads the layered config and builds these; the Tune
adapter, the driver and the trainer receive them, never a dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from nas.arch.spec import ArchSpec
from nas.core.checks import check_int, check_number
from nas.core.errors import ConfigError, NasError
from nas.data import DataSettings
from nas.search.driver import Target
from nas.search.reward import RewardConfig
from nas.training.recipe import Recipe


@dataclass(frozen=True)
class TrialSettings:
    """How children are trained on Ray: the proxy recipe and the resources of each trial.

    ``workers`` children train at once, each on ``cpus_per_trial`` CPUs and
    ``gpus_per_trial`` GPUs (fractions share a GPU); a trial whose worker dies is retried
    ``max_failures`` times. ``address`` joins a running cluster (None: a fresh local Ray).
    """

    recipe: Recipe
    workers: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 2
    address: str | None = None

    def __post_init__(self) -> None:
        check_int(self.workers, "workers", 1)
        object.__setattr__(self, "cpus_per_trial",
                           check_number(self.cpus_per_trial, "cpus_per_trial", 0.0, strict=True))
        object.__setattr__(self, "gpus_per_trial",
                           check_number(self.gpus_per_trial, "gpus_per_trial", 0.0))
        check_int(self.max_failures, "max_failures", 0)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "TrialSettings":
        """From a run config's ``proxy``, ``workers``, ``cpus_per_trial``, ``gpus_per_trial``,
        ``max_failures`` and ``address``. A recipe without ``num_threads`` gets one thread
        per CPU of its trial."""
        recipe = Recipe.from_dict(cfg["proxy"], source="proxy settings")
        cpus = check_number(cfg["cpus_per_trial"], "cpus_per_trial", 0.0, strict=True)
        if recipe.num_threads is None:
            recipe = recipe.replace(num_threads=max(1, int(cpus)))
        return cls(recipe=recipe, workers=cfg["workers"], cpus_per_trial=cpus,
                   gpus_per_trial=cfg["gpus_per_trial"], max_failures=cfg["max_failures"],
                   address=cfg.get("address") or None)


@dataclass(frozen=True)
class SearchSettings:
    """Everything a search run needs, checked."""

    name: str
    out: Path
    seed: int
    target_macs: int
    reward: RewardConfig
    target: Target
    strategy: str
    strategy_options: Mapping[str, Any]
    space: str                   # a bundled space's name or a path
    budget: int
    top_k: int
    reference: str | None        # a spec trained first on the same proxy, for comparison
    trials: TrialSettings
    data: DataSettings


@dataclass(frozen=True)
class ScaleSettings:
    """Everything a scaling run needs, checked (the grid and the compare table train on Ray;
    the families do not)."""

    name: str
    out: Path
    seed: int
    baseline: str
    phi: float
    grid: Any                    # scaler.GridConfig
    coefficients: tuple[float, float, float] | None
    rule: str
    budgets: tuple[int, ...] | None
    resolution_multiple: int | None
    trials: TrialSettings | None  # None when nothing is trained
    data: DataSettings


def check_proxy_plan(recipe: Recipe, plan: Sequence[tuple[str, ArchSpec, int | None]],
                     setting: str) -> None:
    """A dry run of what the workers will build, torch-free, before Ray starts.

    Each ``(label, spec, resolution)`` is made into the network a worker trains (the proxy
    width, at ``resolution``, or the recipe's own when None) and counted by the cost model.
    A spec that would not build there would fail the same way on every worker, so it is a
    one-line :class:`ConfigError` here naming ``setting`` (the settings that decided the
    resolution, e.g. ``proxy.resolution``) and what went wrong.
    """
    from nas.arch.cost import count
    from nas.search.child import proxy_spec

    for label, spec, resolution in plan:
        try:
            cfg = recipe if resolution is None else recipe.replace(resolution=resolution)
            trained = proxy_spec(spec, cfg)
            count(trained, num_classes=10)
        except NasError as e:
            raise ConfigError(f"{setting}: {label} would fail to build on every worker "
                              f"({e}); change {setting}") from None
