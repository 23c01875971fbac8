"""Typed settings of the runs that train children on Ray: the search and the scaling grid.

The command line (:mod:`nas.cli`) reads the layered config and builds these; the Tune
adapter, the driver and the trainer receive them, never a dict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from nas.arch.spec import ArchSpec
from nas.core.checks import check_int, check_number
from nas.core.errors import ConfigError, NasError
from nas.data import DataSettings
from nas.search.driver import Target
from nas.search.recheck import RecheckSettings
from nas.search.reward import RewardConfig
from nas.training.recipe import Recipe


SCHEDULERS = ("asha",)
_IMPORT_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


@dataclass(frozen=True)
class AshaSettings:
    """ASHA (asynchronous successive halving) on the proxy's per-epoch validation accuracy.

    Rungs sit at ``grace_period * reduction_factor ** k`` epochs below the recipe's last
    epoch; at a rung, a child whose accuracy is below the ``1 - 1/reduction_factor``
    quantile of the children recorded there so far is stopped (status ``stopped``).
    """

    grace_period: int = 1
    reduction_factor: float = 2.0

    def rungs(self, epochs: int) -> tuple[int, ...]:
        """The epochs after which a child may be stopped (those below ``epochs``)."""
        out, t = [], float(self.grace_period)
        while t < epochs:
            out.append(int(t))
            t *= self.reduction_factor
        return tuple(sorted(set(out)))


@dataclass(frozen=True)
class TuneSettings:
    """What a user adds to Ray Tune: callbacks (import path, keyword arguments) and a trial
    scheduler (None, or ASHA on per-epoch validation accuracy)."""

    callbacks: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    scheduler: AshaSettings | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None, epochs: int) -> "TuneSettings":
        """From a run config's ``tune`` section (None: Tune as it was: no callbacks, no
        scheduler). ``epochs`` is the proxy recipe's: ASHA needs a rung below it."""
        if cfg is None:
            return cls()
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"tune: got {cfg!r}; expected a mapping with callbacks and "
                              "scheduler")
        return cls(callbacks=_callbacks(cfg.get("callbacks")),
                   scheduler=_scheduler(cfg.get("scheduler"), cfg.get("asha") or {}, epochs))


def _callbacks(items: Any) -> tuple[tuple[str, Mapping[str, Any]], ...]:
    example = ("e.g. [ray.tune.logger.CSVLoggerCallback] or "
               "[{ray.air.integrations.wandb.WandbLoggerCallback: {project: NAME}}]")
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ConfigError(f"tune.callbacks: got {items!r}; give a list of import paths, "
                          f"{example}")
    out = []
    for i, item in enumerate(items):
        kwargs: Any = {}
        if isinstance(item, Mapping):
            if len(item) != 1:
                raise ConfigError(f"tune.callbacks[{i}]: a mapping names one callback, "
                                  f"{{PATH: {{KEY: VALUE}}}}; got {dict(item)!r}")
            item, kwargs = next(iter(item.items()))
            kwargs = {} if kwargs is None else kwargs
        if not isinstance(item, str) or not _IMPORT_PATH.fullmatch(item):
            raise ConfigError(f"tune.callbacks[{i}]: got {item!r}; give the import path of a "
                              f"Ray Tune Callback class, {example}")
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise ConfigError(f"tune.callbacks[{i}] {item}: its arguments must be a mapping "
                              f"of names to values, got {kwargs!r}")
        out.append((item, dict(kwargs)))
    return tuple(out)


def _scheduler(name: Any, options: Any, epochs: int) -> AshaSettings | None:
    if name is None:
        return None
    if name not in SCHEDULERS:
        raise ConfigError(f"tune.scheduler: got {name!r}; use null (every child trains its "
                          "whole proxy schedule) or asha")
    if not isinstance(options, Mapping):
        raise ConfigError(f"tune.asha: got {options!r}; expected a mapping such as "
                          "{grace_period: 1, reduction_factor: 2}")
    unknown = sorted(set(options) - {"grace_period", "reduction_factor"})
    if unknown:
        raise ConfigError(f"tune.asha: unknown key {unknown[0]!r}; allowed here: grace_period, "
                          "reduction_factor")
    asha = AshaSettings(
        grace_period=check_int(options.get("grace_period", 1), "tune.asha.grace_period", 1),
        reduction_factor=check_number(options.get("reduction_factor", 2.0),
                                      "tune.asha.reduction_factor", 1.0, strict=True))
    if asha.grace_period >= epochs:
        raise ConfigError(f"tune.asha.grace_period {asha.grace_period}: ASHA stops a child only "
                          f"after an epoch before its last, and proxy.epochs is {epochs}; use a "
                          f"grace period below {epochs} (and proxy.epochs >= 2), or "
                          "tune.scheduler: null")
    return asha


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
    tune: TuneSettings = field(default_factory=TuneSettings)

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
        ``max_failures``, ``address`` and ``tune`` (absent: no callbacks, no scheduler). A
        recipe without ``num_threads`` gets one thread per CPU of its trial."""
        recipe = Recipe.from_dict(cfg["proxy"], source="proxy settings")
        cpus = check_number(cfg["cpus_per_trial"], "cpus_per_trial", 0.0, strict=True)
        if recipe.num_threads is None:
            recipe = recipe.replace(num_threads=max(1, int(cpus)))
        return cls(recipe=recipe, workers=cfg["workers"], cpus_per_trial=cpus,
                   gpus_per_trial=cfg["gpus_per_trial"], max_failures=cfg["max_failures"],
                   address=cfg.get("address") or None,
                   tune=TuneSettings.from_config(cfg.get("tune"), recipe.epochs))


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
    time_budget: float | None = None  # seconds after which no new child starts
    recheck: RecheckSettings = field(default_factory=RecheckSettings)  # before best.yaml


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
