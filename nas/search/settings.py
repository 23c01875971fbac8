"""The settings of the jobs that train children on Ray: the search (with the one-shot
evaluator, the ``oneshot`` section), the scaling run, the fidelity measurement and the
pipeline. Each is one tree of frozen dataclasses (:class:`~nas.core.settings.Settings`):
``from_mapping`` reads it strictly from plain data (a run's ``config.yaml``, a YAML file, a
mapping), ``to_mapping`` writes it back, and :func:`nas.core.settings.load` layers the
defaults, a preset, a config file and overrides into one.

The mapping's keys are the settings' names everywhere: in YAML files, in overrides
(``proxy.epochs=2``), in the Python API's keyword arguments and in every message
(``target_flops=40 is 40 MACs``). The command line maps its flags to them
(:mod:`nas.cli`).

The Tune adapter, the driver and the trainer receive these objects (and what their
properties derive: :attr:`SearchSettings.trials`, :attr:`SearchSettings.target_macs`),
never a dict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from nas.arch.spec import ArchSpec
from nas.arch.units import check_plausible_macs, format_macs, parse_macs
from nas.core.checks import (
    MAX_SEED,
    check_int,
    check_number,
    check_resolution,
    is_number,
)
from nas.core.errors import ConfigError, NasError
from nas.core.settings import Settings, join, read_duration, read_path, setting, shown
from nas.data import DataSettings
from nas.latency.budgets import LatencyBudgetSettings
from nas.search.driver import Target
from nas.search.recheck import RecheckSettings
from nas.search.reward import RewardConfig
from nas.supernet.settings import SupernetSettings
from nas.training.recipe import Recipe, load_recipe
from scaler import GridConfig

SCHEDULERS = ("asha",)
EVALUATORS = ("proxy", "oneshot")
_IMPORT_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
COEFFICIENT_MAX = 4.0  # alpha, beta or gamma above it: a typo (the paper's are 1.1-1.2)
GRID_PHI_MAX = 3.0  # the grid trains ~(alpha*beta^2*gamma^2)^phi times the baseline's MACs
# A search's latency target above it is a typo (15s for 15ms): the default space's largest
# child takes well under a second per image on a laptop's core.
MAX_TARGET_LATENCY_MS = 10_000.0


# --------------------------------------------------------------------------- readers


def read_macs(value: Any, key: str) -> Any:
    """A number of multiply-adds as given (``400M``, ``0.4G``, ``4e8``): checked, kept as
    written (so the settings write it back as they were given)."""
    if value is None:
        return None
    if isinstance(value, str) and not value.strip():
        raise ConfigError(f"{key}={value!r}: empty; give a number of multiply-adds such as "
                          f"400M, or leave {key} out")
    parse_macs(value, key)
    return value.strip() if isinstance(value, str) else value


def read_latency(value: Any, key: str) -> str | None:
    """A latency with its unit (``15ms``, ``800us``, ``0.2s``): checked, kept as written."""
    if value is None:
        return None
    from nas.latency.units import parse_latency
    parse_latency(value, key)
    return value.strip()


def read_budgets(value: Any, key: str) -> tuple[Any, ...] | None:
    """Budgets (``[600M, 1.2G]``), each once, kept as given (see :func:`budget_macs`);
    None: the rule's family."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{key}: got {value!r}; give a list of budgets such as "
                          "['600M', '1.2G'], or None for the rule's family")
    budgets = tuple(parse_macs(b, key) for b in value)
    twice = next((b for i, b in enumerate(budgets) if b in budgets[:i]), None)
    if twice is not None:
        raise ConfigError(f"{key}={shown(value)}: {format_macs(twice)} is given twice; list "
                          "each budget once")
    return tuple(b.strip() if isinstance(b, str) else b for b in value)


def read_scale_budgets(value: Any, key: str) -> tuple[Any, ...] | None:
    """A scaling run's budgets: all in MACs (:func:`read_budgets`) or all in latency
    (``[5ms, 10ms]``, :func:`nas.latency.budgets.read_latency_budgets`), kept as given."""
    from nas.latency.budgets import read_latency_budgets
    if read_latency_budgets(value, key) is not None:
        return tuple(v.strip() for v in value)
    try:
        return read_budgets(value, key)
    except ConfigError as e:
        if "expected a number of multiply-adds" not in str(e):
            raise
        raise ConfigError(f"{e}, or a latency such as 5ms") from None


def read_pipeline_budgets(value: Any, key: str) -> tuple[Any, ...] | None:
    """The pipeline's budgets: MACs only (its members are trained at those budgets); latency
    budgets are a scaling run's."""
    from nas.latency.budgets import read_latency_budgets
    if read_latency_budgets(value, key) is not None:
        raise ConfigError(f"{key}={shown(value)}: the pipeline scales to budgets in MACs "
                          "(600M, 1.2G); latency budgets are for scaling its best.yaml "
                          "afterwards (effnas scale, nas.run_scale)")
    return read_budgets(value, key)


def budget_macs(budgets: Sequence[Any] | None) -> tuple[int, ...] | None:
    """Budgets as given (``600M``) as counts of multiply-adds."""
    return None if budgets is None else tuple(parse_macs(b, "budgets") for b in budgets)


def read_coefficients(value: Any, key: str) -> tuple[float, float, float] | None:
    """``[alpha, beta, gamma]``, each >= 1 (one above), at most :data:`COEFFICIENT_MAX`."""
    if value is None:
        return None
    if (isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple))
            or len(value) != 3):
        raise ConfigError(f"{key}={shown(value) if isinstance(value, (list, tuple)) else repr(value)}"
                          ": give three numbers alpha, beta, gamma, e.g. 1.2,1.1,1.15")
    import scaler
    c = scaler.Coefficients(*value)
    check_coefficients(c, f"{key}={shown(value)}")
    return (c.alpha, c.beta, c.gamma)


def check_coefficients(c: Any, source: str) -> None:
    """Coefficients that cannot scale up are errors naming ``source``."""
    if min(c.alpha, c.beta, c.gamma) < 1.0:
        raise ConfigError(f"{source}: compound scaling needs alpha, beta, gamma >= 1 (it never "
                          "shrinks a dimension); e.g. 1.2,1.1,1.15")
    if max(c.alpha, c.beta, c.gamma) > COEFFICIENT_MAX:
        raise ConfigError(f"{source}: each must be at most {COEFFICIENT_MAX:g} (one step of phi "
                          "multiplies the MACs by alpha*beta^2*gamma^2, about 2 in the paper); "
                          "e.g. 1.2,1.1,1.15")
    if max(c.alpha, c.beta, c.gamma) == 1.0:
        raise ConfigError(f"{source}: at least one must be above 1, or phi cannot change the "
                          "model; e.g. 1.2,1.1,1.15")


def _choice(value: Any, key: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: use one of {', '.join(choices)}")


def _stamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


# --------------------------------------------------------------------------- Ray Tune


@dataclass(frozen=True)
class AshaSettings(Settings):
    """ASHA (asynchronous successive halving) on the proxy's per-epoch validation accuracy.

    Rungs sit at ``grace_period * reduction_factor ** k`` epochs below the recipe's last
    epoch; at a rung, a child whose accuracy is below the ``1 - 1/reduction_factor``
    quantile of the children recorded there so far is stopped (status ``stopped``).
    """

    grace_period: int = 1
    reduction_factor: float = 2.0

    def __post_init__(self) -> None:
        check_int(self.grace_period, "tune.asha.grace_period", 1)
        object.__setattr__(self, "reduction_factor", check_number(
            self.reduction_factor, "tune.asha.reduction_factor", 1.0, strict=True))

    def rungs(self, epochs: int) -> tuple[int, ...]:
        """The epochs after which a child may be stopped (those below ``epochs``)."""
        out, t = [], float(self.grace_period)
        while t < epochs:
            out.append(int(t))
            t *= self.reduction_factor
        return tuple(sorted(set(out)))


@dataclass(frozen=True)
class TuneSettings(Settings):
    """What a user adds to Ray Tune: callbacks (import path, keyword arguments) and a trial
    scheduler (None, or ASHA on per-epoch validation accuracy).

    As a mapping (the ``tune`` section): ``callbacks`` (import paths, or ``{PATH: {KEY:
    VALUE}}``), ``scheduler`` (null or asha) and ``asha`` (its options)."""

    callbacks: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    scheduler: AshaSettings | None = None

    @classmethod
    def from_mapping(cls, mapping: Any, key: str = "tune") -> "TuneSettings":
        if mapping is None:
            return cls()
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"{key}: got {mapping!r}; expected a mapping with callbacks and "
                              "scheduler")
        unknown = sorted(set(mapping) - {"callbacks", "scheduler", "asha"})
        if unknown:
            from nas.core.settings import unknown_key
            raise unknown_key(join(key, unknown[0]), ("callbacks", "scheduler", "asha"))
        return cls(callbacks=_callbacks(mapping.get("callbacks"), key),
                   scheduler=_scheduler(mapping.get("scheduler"), mapping.get("asha") or {},
                                        key))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None, epochs: int) -> "TuneSettings":
        """From a ``tune`` section, checked against the proxy's ``epochs`` (ASHA needs a rung
        below them)."""
        tune = cls.from_mapping(cfg)
        tune.check_epochs(epochs)
        return tune

    def to_mapping(self) -> dict[str, Any]:
        asha = self.scheduler or AshaSettings()
        return {"callbacks": [path if not kwargs else {path: dict(kwargs)}
                              for path, kwargs in self.callbacks],
                "scheduler": None if self.scheduler is None else "asha",
                "asha": asha.to_mapping()}

    def check_epochs(self, epochs: int) -> None:
        """ASHA stops a child only after an epoch before its last."""
        a = self.scheduler
        if a is not None and a.grace_period >= epochs:
            raise ConfigError(f"tune.asha.grace_period {a.grace_period}: ASHA stops a child "
                              f"only after an epoch before its last, and proxy.epochs is "
                              f"{epochs}; use a grace period below {epochs} (and proxy.epochs "
                              ">= 2), or tune.scheduler: null")


def _callbacks(items: Any, key: str) -> tuple[tuple[str, Mapping[str, Any]], ...]:
    example = ("e.g. [ray.tune.logger.CSVLoggerCallback] or "
               "[{ray.air.integrations.wandb.WandbLoggerCallback: {project: NAME}}]")
    if items is None:
        return ()
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"{key}.callbacks: got {items!r}; give a list of import paths, "
                          f"{example}")
    out = []
    for i, item in enumerate(items):
        kwargs: Any = {}
        if isinstance(item, Mapping):
            if len(item) != 1:
                raise ConfigError(f"{key}.callbacks[{i}]: a mapping names one callback, "
                                  f"{{PATH: {{KEY: VALUE}}}}; got {dict(item)!r}")
            item, kwargs = next(iter(item.items()))
            kwargs = {} if kwargs is None else kwargs
        if not isinstance(item, str) or not _IMPORT_PATH.fullmatch(item):
            raise ConfigError(f"{key}.callbacks[{i}]: got {item!r}; give the import path of a "
                              f"Ray Tune Callback class, {example}")
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise ConfigError(f"{key}.callbacks[{i}] {item}: its arguments must be a mapping "
                              f"of names to values, got {kwargs!r}")
        out.append((item, dict(kwargs)))
    return tuple(out)


def _scheduler(name: Any, options: Any, key: str) -> AshaSettings | None:
    if name is not None and name not in SCHEDULERS:
        raise ConfigError(f"{key}.scheduler: got {name!r}; use null (every child trains its "
                          "whole proxy schedule) or asha")
    if not isinstance(options, Mapping):
        raise ConfigError(f"{key}.asha: got {options!r}; expected a mapping such as "
                          "{grace_period: 1, reduction_factor: 2}")
    asha = AshaSettings.from_mapping(options, join(key, "asha"))
    return None if name is None else asha


@dataclass(frozen=True)
class TrialSettings:
    """How children are trained on Ray: the proxy recipe and the resources of each trial
    (what a job's settings derive for the Tune adapter: :attr:`SearchSettings.trials`).

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


class _OnRay:
    """The settings every job that trains children on Ray has (fields of its dataclass):
    ``workers``, ``cpus_per_trial``, ``gpus_per_trial``, ``address``, ``max_failures``,
    ``data``, ``proxy`` and ``tune``."""

    workers: int
    cpus_per_trial: float
    gpus_per_trial: float
    address: str | None
    max_failures: int
    seed: int
    data: DataSettings
    proxy: Recipe
    tune: TuneSettings

    def _check_ray(self) -> None:
        check_int(self.seed, "seed", 0, MAX_SEED)
        check_int(self.workers, "workers", 1)
        check_number(self.cpus_per_trial, "cpus_per_trial", 0.0, strict=True)
        check_number(self.gpus_per_trial, "gpus_per_trial", 0.0)
        check_int(self.max_failures, "max_failures", 0)
        self.tune.check_epochs(self.proxy.epochs)

    def _trials(self) -> TrialSettings:
        recipe = self.proxy
        if recipe.num_threads is None:  # one thread per CPU of a trial
            recipe = recipe.replace(num_threads=max(1, int(self.cpus_per_trial)))
        return TrialSettings(recipe=recipe, workers=self.workers,
                             cpus_per_trial=self.cpus_per_trial,
                             gpus_per_trial=self.gpus_per_trial,
                             max_failures=self.max_failures, address=self.address or None,
                             tune=self.tune)

    def data_settings(self) -> DataSettings:
        """The data settings, a ``data.seed`` of None being the run's seed (as the run
        resolves it)."""
        return self.data if self.data.seed is not None else replace(self.data, seed=self.seed)

    def check_image_size(self, force: bool) -> None:
        if self.data.image_size is not None:
            check_resolution(self.data.image_size, "data.image_size", force, minimum=1)


def _proxy_default() -> Recipe:
    return load_recipe("proxy-default")


def _no_seed_data() -> DataSettings:
    return DataSettings(seed=None)


# --------------------------------------------------------------------------- the search


@dataclass(frozen=True)
class SearchSettings(Settings, _OnRay):
    """Everything a search needs (``configs/search.yaml`` documents each key).

    ``target_flops`` is kept as given (``400M``); :attr:`target_macs` is its count.
    ``target_latency`` (``15ms``) searches at a latency target instead: the reward's cost is
    each child's latency on this machine, predicted from the device's latency table for the
    space at the target resolution (``latency_table``: a table file built elsewhere;
    ``latency_threads``: the threads it is measured with); ``target_flops`` given too is a
    hard cap on the MACs besides it. ``name`` and ``out`` None are derived when the search
    starts (:meth:`resolved`), as is ``data.seed`` None (the run's seed). ``evaluator``
    ``oneshot`` trains the weight-sharing supernet of the ``oneshot`` section first.
    """

    PRESETS: ClassVar[str] = "search"

    name: str | None = None
    out: Path | None = None
    seed: int = 0
    target_flops: str | int | float | None = setting(None, read=read_macs)
    target_latency: str | None = setting(None, read=read_latency)
    latency_table: str | None = setting(None, read=read_path)
    latency_threads: int = 1
    space: str = "mnasnet-space"
    strategy: str = "ppo"
    strategy_options: Mapping[str, Any] = setting(factory=dict)
    budget: int = 60
    time_budget: float | None = setting(None, read=read_duration)
    workers: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    address: str | None = None
    max_failures: int = 2
    reference: str | None = "efficientnet-b0"
    top_k: int = 5
    recheck: RecheckSettings = setting(factory=RecheckSettings)
    reward: RewardConfig = setting(factory=RewardConfig,
                                   exclude=("target_macs", "target_ms", "macs_cap"))
    target: Target = setting(factory=Target)
    data: DataSettings = setting(factory=_no_seed_data)
    proxy: Recipe = setting(factory=_proxy_default)
    tune: TuneSettings = setting(factory=TuneSettings)
    evaluator: str = "proxy"
    oneshot: SupernetSettings = setting(factory=SupernetSettings)

    def __post_init__(self) -> None:
        from controller import STRATEGIES

        if self.target_flops is not None:
            read_macs(self.target_flops, "target_flops")
            macs = parse_macs(self.target_flops, "target_flops")
            if self.reward.target_macs != macs:  # derived: the reward counts against it
                object.__setattr__(self, "reward", replace(self.reward, target_macs=macs))
        self._derive_latency()
        if self.out is not None and not isinstance(self.out, Path):
            object.__setattr__(self, "out", Path(self.out))
        _choice(self.strategy, "strategy", STRATEGIES)
        if not isinstance(self.strategy_options, Mapping):
            raise ConfigError(f"strategy_options={self.strategy_options!r}: expected a mapping")
        if not isinstance(self.space, str) or not self.space.strip():
            raise ConfigError(f"space={self.space!r}: give a search-space YAML or a bundled "
                              "name such as mnasnet-space")
        check_int(self.budget, "budget", 1)
        check_int(self.top_k, "top_k", 1)
        check_int(self.recheck.top, "recheck.top", 1)
        check_int(self.recheck.seeds, "recheck.seeds", 0)
        check_int(self.target.resolution, "target.resolution", 8)
        check_int(self.target.num_classes, "target.num_classes", 1)
        check_int(self.target.in_channels, "target.in_channels", 1)
        _choice(self.evaluator, "evaluator", EVALUATORS)
        check_int(self.latency_threads, "latency_threads", 1)
        if self.target_latency is not None:
            if self.evaluator == "oneshot":
                raise ConfigError(f"target_latency={self.target_latency} with evaluator=oneshot: "
                                  "the one-shot evaluator scores MACs only; use "
                                  "evaluator=proxy, or target_flops")
            if self.strategy == "nsga2":
                raise ConfigError(f"target_latency={self.target_latency} with strategy=nsga2: "
                                  "NSGA-II searches accuracy against MACs, not the reward; "
                                  "use another strategy (ppo), or target_flops")
        elif self.latency_table is not None:
            raise ConfigError(f"latency_table={self.latency_table!r} without target_latency: "
                              "the table is for a latency target; add target_latency=15ms, "
                              "or leave the table out")
        self._check_ray()

    def _derive_latency(self) -> None:
        """The reward's latency target (and MACs cap) from ``target_latency`` (and
        ``target_flops``), as ``target_macs`` is derived from ``target_flops``."""
        ms, cap = None, False
        if self.target_latency is not None:
            from nas.latency.units import parse_latency
            ms = parse_latency(read_latency(self.target_latency, "target_latency"),
                               "target_latency")
            cap = self.target_flops is not None
        if (self.reward.target_ms, self.reward.macs_cap) != (ms, cap):
            object.__setattr__(self, "reward", replace(self.reward, target_ms=ms,
                                                       macs_cap=cap))

    @property
    def target_macs(self) -> int:
        """``target_flops`` as a count of multiply-adds."""
        if self.target_flops is None:
            raise ConfigError("target_flops is required, e.g. target_flops=400M (or "
                              "target_latency=15ms)")
        return parse_macs(self.target_flops, "target_flops")

    @property
    def target_ms(self) -> float | None:
        """``target_latency`` in milliseconds (None: a MACs target)."""
        return self.reward.target_ms

    def target_text(self) -> str:
        """The target as a person reads it: ``400M MACs``, ``15ms``, ``15ms, at most 400M
        MACs``."""
        if self.target_ms is None:
            return f"{format_macs(self.target_macs)} MACs"
        from nas.latency.units import format_latency
        cap = f", at most {format_macs(self.target_macs)} MACs" if self.reward.macs_cap else ""
        return f"{format_latency(self.target_ms)} latency{cap}"

    @property
    def trials(self) -> TrialSettings:
        """How children are trained on Ray (a recipe without ``num_threads`` gets one thread
        per CPU of its trial)."""
        return self._trials()

    def check(self, force: bool = False) -> None:
        """What is legal but almost surely a typo: a target under 1M or over 1P MACs, or
        under 10us or over 10s, a resolution over 4096 px (``force``: take them)."""
        if self.target_ms is not None:
            from nas.latency.units import check_plausible_latency
            check_plausible_latency(self.target_ms, self.target_latency, "target_latency", force,
                                    most_ms=MAX_TARGET_LATENCY_MS)
        if self.target_flops is not None or self.target_ms is None:
            check_plausible_macs(self.target_macs, self.target_flops, "target_flops", force)
        check_resolution(self.target.resolution, "target.resolution", force)
        if self.proxy.resolution is not None:
            check_resolution(self.proxy.resolution, "proxy.resolution", force)
        self.check_image_size(force)

    def resolved(self) -> "SearchSettings":
        """The settings a search runs with: ``name`` (``STRATEGY-TARGET-TIME``), ``out``
        (``runs/NAME``) and ``data.seed`` (the run's) filled in."""
        if self.target_ms is not None:
            from nas.latency.units import format_latency
            target = format_latency(self.target_ms)
        else:
            target = format_macs(self.target_macs)
        name = self.name or f"{self.strategy}-{target}-{_stamp()}"
        return replace(self, name=name, out=Path(self.out or Path("runs") / name),
                       data=self.data_settings())


# --------------------------------------------------------------------------- scaling


@dataclass(frozen=True)
class ScaleSettings(Settings, _OnRay):
    """Everything a scaling run needs (``configs/scale.yaml`` documents each key).

    ``grid_search`` fits alpha, beta, gamma on the grid (training every candidate on Ray);
    else the coefficients come from ``coefficients``, ``scaling`` (a ``scaling.yaml``), the
    run folder's ``scaling.yaml``, or the paper's. ``budgets`` make a family at those
    budgets, all in multiply-adds (``600M``) or all in latency on this machine (``5ms``:
    each member predicted within 5 % from the device's latency table, then measured; the
    ``latency`` section says how); without them ``rule`` makes B1-B7. ``compare`` also trains the width-,
    depth- and resolution-only scalings. ``baseline`` None is the newest search's
    ``best.yaml`` under ``runs/``, else EfficientNet-B0 (:meth:`resolved`).
    """

    PRESETS: ClassVar[str] = "scale"

    name: str | None = None
    out: Path | None = None
    seed: int = 0
    baseline: str | None = setting(None, read=read_path)
    grid_search: bool = False
    phi: float = 1.0
    grid: GridConfig = setting(factory=GridConfig)
    coefficients: tuple[float, float, float] | None = setting(None, read=read_coefficients)
    scaling: str | None = setting(None, read=read_path)
    rule: str = "budget"
    budgets: tuple[str | int | float, ...] | None = setting(None, read=read_scale_budgets)
    latency: LatencyBudgetSettings = setting(factory=LatencyBudgetSettings)
    resolution_multiple: int | None = None
    compare: bool = False
    workers: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    address: str | None = None
    max_failures: int = 2
    data: DataSettings = setting(factory=_no_seed_data)
    proxy: Recipe = setting(factory=_proxy_default)
    tune: TuneSettings = setting(factory=TuneSettings)

    def __post_init__(self) -> None:
        import scaler
        if self.out is not None and not isinstance(self.out, Path):
            object.__setattr__(self, "out", Path(self.out))
        if not isinstance(self.grid, GridConfig):
            raise ConfigError(f"grid={self.grid!r}: expected the grid's settings")
        if not is_number(self.phi):
            raise ConfigError(f"phi={self.phi!r}: expected a number")
        if self.grid_search and not 0.0 < self.phi <= GRID_PHI_MAX:
            raise ConfigError(f"phi={self.phi:g}: the grid trains every candidate at alpha^phi, "
                              f"beta^phi, gamma^phi, about 2^phi times the baseline's MACs; use "
                              f"0 < phi <= {GRID_PHI_MAX:g} (the paper fits at phi = 1)")
        _choice(self.rule, "rule", scaler.RULES)
        if self.resolution_multiple is not None:
            check_int(self.resolution_multiple, "resolution_multiple", 1)
        self._check_ray()

    @property
    def budget_macs(self) -> tuple[int, ...] | None:
        """``budgets`` as counts of multiply-adds (None: no budgets, or latency budgets)."""
        return None if self.budget_ms is not None else budget_macs(self.budgets)

    @property
    def budget_ms(self) -> tuple[float, ...] | None:
        """``budgets`` in milliseconds when they are latencies (else None)."""
        from nas.latency.budgets import read_latency_budgets
        return read_latency_budgets(self.budgets, "budgets")

    @property
    def trains(self) -> bool:
        """The grid or the compare table trains candidates on Ray."""
        return self.grid_search or self.compare

    @property
    def trials(self) -> TrialSettings | None:
        """How candidates are trained on Ray (None when nothing is trained)."""
        return self._trials() if self.trains else None

    def check(self, force: bool = False) -> None:
        """Budgets under 1M or over 1P MACs (under 10us or over 60s), an image size over
        4096 px: refused unless ``force``."""
        if self.budget_ms is not None:
            from nas.latency.budgets import check_plausible_budgets
            check_plausible_budgets(self.budget_ms, self.budgets, "budgets", force)
        for b, macs in zip(self.budgets or (), self.budget_macs or ()):
            try:
                check_plausible_macs(macs, b, "budgets", force)
            except ConfigError as e:
                bare = str(b).strip()
                if macs >= 1_000_000 or not re.fullmatch(r"[\d.eE+]+", bare):
                    raise
                raise ConfigError(f"{e}; a latency budget needs its unit: {bare}ms") from None
        self.check_image_size(force)

    def resolved(self) -> "ScaleSettings":
        """The settings a scaling run runs with: ``baseline`` (see the class), ``name``
        (``scale-BASELINE-TIME``), ``out`` and ``data.seed`` filled in."""
        from nas.arch.io import load_spec

        baseline = self.baseline or default_baseline()
        spec = load_spec(baseline)
        base_name = spec.name or Path(baseline).stem
        name = self.name or f"scale-{base_name}-{_stamp()}"
        return replace(self, baseline=baseline, name=name,
                       out=Path(self.out or Path("runs") / name), data=self.data_settings())


def default_baseline() -> str:
    """The newest search's best.yaml under runs/, else EfficientNet-B0."""
    found = sorted(Path("runs").glob("*/best.yaml"), key=lambda p: p.stat().st_mtime)
    return str(found[-1]) if found else "efficientnet-b0"


# --------------------------------------------------------------------------- dry runs


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
    from nas.training.child import proxy_spec

    for label, spec, resolution in plan:
        try:
            cfg = recipe if resolution is None else recipe.replace(resolution=resolution)
            trained = proxy_spec(spec, cfg)
            count(trained, num_classes=10)
        except NasError as e:
            raise ConfigError(f"{setting}: {label} would fail to build on every worker "
                              f"({e}); change {setting}") from None


# --------------------------------------------------------------------------- fidelity


def read_recipe_text(value: Any, key: str) -> str:
    """A recipe as text: a bundled config's name or a YAML path, optionally followed by
    ``+KEY=VALUE`` changes (``proxy-default+epochs=1``); checked."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}={value!r}: give a recipe's name or path, e.g. "
                          "proxy-default+epochs=4")
    recipe_of(value, key)
    return value


def recipe_of(text: str, key: str) -> Recipe:
    """``name[+KEY=VALUE...]`` as a checked :class:`~nas.training.recipe.Recipe`."""
    from nas.core.settings import named_file, parse_overrides

    name, *changes = text.split("+")
    if not name:
        raise ConfigError(f"{key}={text!r}: start with a recipe's name or path, e.g. "
                          "proxy-default+epochs=4")
    base = named_file(name, key)
    for change in changes:
        if "=" not in change:
            raise ConfigError(f"{key}={text!r}: {change!r} is not KEY=VALUE")
        base.update(parse_overrides([change]))
    try:
        return Recipe.from_dict(base)
    except ConfigError as e:
        raise ConfigError(f"{key}={text!r}: {e}") from None


def read_proxies(value: Any, key: str) -> tuple[str, ...]:
    """The recipes compared with the long schedule: ``run`` (the search's own accuracies)
    and recipes as text (:func:`read_recipe_text`), each once."""
    if isinstance(value, str):
        value = [t.strip() for t in value.split(",") if t.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{key}={value!r}: give a list such as ['run', "
                          "'proxy-default+epochs=4']")
    out = tuple(v if v == RUN_PROXY else read_recipe_text(v, key) for v in value)
    if len(set(out)) != len(out):
        raise ConfigError(f"{key}={shown(value)}: a recipe is listed twice; list each once")
    return out


RUN_PROXY = "run"  # the accuracies the search itself measured


@dataclass(frozen=True)
class FidelitySettings(Settings):
    """How well a proxy ranks a search's children (``effnas fidelity``): ``children`` of
    the search in ``run``, spread over its ranking (and its reference, unless ``reference``
    is False), trained with the ``long`` recipe for ``seeds`` seeds, and with every recipe
    of ``proxies`` for ``proxy_seeds`` (``run``: the search's own accuracies). ``epochs``
    sets the long recipe's. The trial resources None are the search's. Results go to
    ``out`` (None: ``RUN/fidelity``)."""

    run: str | None = setting(None, read=read_path)
    children: int = 12
    seeds: int = 2
    long: str = setting("train-default+width_mult=0.5", read=read_recipe_text)
    epochs: int | None = None
    proxies: tuple[str, ...] = setting((RUN_PROXY,), read=read_proxies)
    proxy_seeds: int = 1
    reference: bool = True
    workers: int | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    address: str | None = None
    out: Path | None = None

    def __post_init__(self) -> None:
        if self.out is not None and not isinstance(self.out, Path):
            object.__setattr__(self, "out", Path(self.out))
        for key in ("children", "seeds", "proxy_seeds"):
            check_int(getattr(self, key), key, 1)
        if self.epochs is not None:
            check_int(self.epochs, "epochs", 1)
        if self.workers is not None:
            check_int(self.workers, "workers", 1)
        if self.cpus_per_trial is not None:
            check_number(self.cpus_per_trial, "cpus_per_trial", 0.0, strict=True)
        if self.gpus_per_trial is not None:
            check_number(self.gpus_per_trial, "gpus_per_trial", 0.0)

    def long_recipe(self) -> Recipe:
        """The long schedule (``epochs`` replacing its own, with at most a tenth of them
        of warm-up)."""
        long = recipe_of(self.long, "long")
        if self.epochs is not None:
            long = long.replace(epochs=self.epochs,
                                warmup_epochs=min(long.warmup_epochs, self.epochs / 10))
        return long

    def proxy_recipes(self) -> tuple[tuple[str, Recipe], ...]:
        """The proxies trained here (``run`` is not: its accuracies are the search's)."""
        return tuple((t, recipe_of(t, "proxies")) for t in self.proxies if t != RUN_PROXY)


# --------------------------------------------------------------------------- the pipeline

# Keys set once for the whole pipeline: the search and scale sections do not take them.
PIPELINE_SHARED = ("seed", "workers", "cpus_per_trial", "gpus_per_trial", "address",
                   "max_failures", "data")
PIPELINE_OWN = {"search": ("name", "out", "target_flops", *PIPELINE_SHARED),
                "scale": ("name", "out", "baseline", "budgets", "grid_search", "scaling",
                          *PIPELINE_SHARED)}
# The train section's keys that TrainSettings holds for the stage as a whole (a model's own
# are its spec, seed, resolution and folder; the data is the pipeline's).
TRAIN_PLAN_KEYS = ("members", "baseline", "references", "seeds", "resolution")
TRAIN_OWN = ("spec", "dataset", "data", "val_size", "seed", "resolution", "out",
             "max_epochs_time")
ON_MISS = ("closest", "error")


def section_error(sec: str, e: ConfigError, keys: Sequence[str]) -> ConfigError:
    """A pipeline section's message names its keys from the pipeline's top
    (``budget: got 0`` of the search section is ``search.budget: got 0``)."""
    msg = str(e)
    for key in sorted(keys, key=len, reverse=True):
        if re.match(re.escape(key) + r"(?=[:=.\[ ])", msg):
            return ConfigError(f"{sec}.{msg}")
    return ConfigError(f"{sec} settings: {msg}")


def _section(cls: type, mapping: Any, sec: str, exclude: Sequence[str]) -> Any:
    from dataclasses import fields as dc_fields

    from nas.core.settings import fields_from
    if isinstance(mapping, Mapping):
        shared = next((k for k in mapping if k in exclude), None)
        if shared is not None:
            raise ConfigError(f"{sec}.{shared}: set once for the whole pipeline; use {shared}")
    names = [f.name for f in dc_fields(cls)]
    try:
        return cls(**fields_from(cls, mapping, sec, exclude))
    except ConfigError as e:
        if str(e).startswith(f"{sec}.") or str(e).startswith("unknown key"):
            raise
        raise section_error(sec, e, names) from None


def _train_template() -> Any:
    from nas.training.settings import TrainSettings, default_lr, default_weight_decay
    d = TrainSettings()
    return TrainSettings(width_mult=1.0, lr=default_lr(d.optimizer, d.batch_size),
                         weight_decay=default_weight_decay(d.optimizer),
                         warmup_epochs=load_recipe("train-default").warmup_epochs)


def _names(value: Any, key: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [t.strip() for t in value.split(",") if t.strip()]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: got {value!r}; give a list such as ['600M', 'b1']")
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class PipelineTrain:
    """The pipeline's ``train`` section: which models the training stage trains
    (``members`` of the family, None: every budget member; the ``baseline``; the
    ``references``), with which ``seeds``, at ``resolution`` px for the baseline's spec
    resolution; and how: ``template``, the training settings of every model (as a mapping,
    its keys sit in the section beside those)."""

    members: tuple[str, ...] | None = None
    baseline: bool = True
    references: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    resolution: int = 32
    template: Any = field(default_factory=_train_template)

    def __post_init__(self) -> None:
        if not isinstance(self.baseline, bool):
            raise ConfigError(f"train.baseline: got {self.baseline!r}; use true or false")
        if not self.seeds:
            raise ConfigError(f"train.seeds: got {list(self.seeds)!r}; give a list of seeds such "
                              "as [0, 1, 2]")
        for s in self.seeds:
            check_int(s, "train.seeds", 0, MAX_SEED)
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"train.seeds: {list(self.seeds)} lists a seed twice; list each "
                              "once")
        check_int(self.resolution, "train.resolution", 8)

    @classmethod
    def from_mapping(cls, mapping: Any, key: str = "train") -> "PipelineTrain":
        from nas.training.settings import TrainSettings
        if mapping is None:
            mapping = {}
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"{key}: expected a mapping of settings")
        plan = {k: v for k, v in mapping.items() if k in TRAIN_PLAN_KEYS}
        rest = {k: v for k, v in mapping.items() if k not in TRAIN_PLAN_KEYS}
        own = next((k for k in rest if k in TRAIN_OWN), None)
        if own is not None:
            from nas.core.settings import unknown_key
            raise unknown_key(join(key, own), [*TRAIN_PLAN_KEYS, *cls().template_keys()])
        base = cls()
        template = _section(TrainSettings, {**{k: v for k, v in base.template_mapping().items()},
                                            **rest}, key, TRAIN_OWN)
        kwargs: dict[str, Any] = {"template": template}
        if "members" in plan:
            kwargs["members"] = _names(plan["members"], f"{key}.members")
        if "references" in plan:
            kwargs["references"] = _names(plan["references"], f"{key}.references") or ()
        if "seeds" in plan:
            seeds = plan["seeds"]
            if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (list, tuple)):
                raise ConfigError(f"{key}.seeds: got {seeds!r}; give a list of seeds such as "
                                  "[0, 1, 2]")
            kwargs["seeds"] = tuple(check_int(s, f"{key}.seeds", 0, MAX_SEED) for s in seeds)
        if "baseline" in plan:
            kwargs["baseline"] = plan["baseline"]
        if "resolution" in plan:
            kwargs["resolution"] = check_int(plan["resolution"], f"{key}.resolution", 8)
        return cls(**kwargs)

    def template_keys(self) -> list[str]:
        return list(self.template_mapping())

    def template_mapping(self) -> dict[str, Any]:
        m = self.template.to_mapping()
        return {k: v for k, v in m.items() if k not in TRAIN_OWN}

    def to_mapping(self) -> dict[str, Any]:
        return {"members": None if self.members is None else list(self.members),
                "baseline": self.baseline, "references": list(self.references),
                "seeds": list(self.seeds), "resolution": self.resolution,
                **self.template_mapping()}


@dataclass(frozen=True)
class PipelineSettings(Settings):
    """Everything a pipeline needs (``configs/pipeline.yaml`` documents each key): search a
    baseline (the ``search`` section: a search's settings but those set once here), fit the
    coefficients and emit the family (``scale``: a scaling run's; ``compare``; ``family``
    also emits B1-B7 by ``scale.rule``; ``on_miss``: a budget no phi lands within 3 % of is
    made as close as it can be, or is an error), train the chosen models (``train``) and
    report. A given ``baseline`` is scaled instead of searching. ``name`` and ``out`` None
    are derived when it starts."""

    PRESETS: ClassVar[str] = "pipeline"

    name: str | None = None
    out: Path | None = None
    seed: int = 0
    target_flops: str | int | float | None = setting(None, read=read_macs)
    budgets: tuple[str | int | float, ...] | None = setting(None, read=read_pipeline_budgets)
    baseline: str | None = setting(None, read=read_path)
    workers: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    address: str | None = None
    max_failures: int = 2
    data: DataSettings = setting(factory=_no_seed_data)
    search: SearchSettings = setting(factory=SearchSettings)
    scale: ScaleSettings = setting(factory=ScaleSettings)
    family: bool = False
    on_miss: str = "closest"
    train: PipelineTrain = setting(factory=PipelineTrain)

    @staticmethod
    def key_hint(dotted: str) -> str | None:
        """A stage section's key that the pipeline sets once: where to set it."""
        sec, _, key = dotted.partition(".")
        if key in PIPELINE_OWN.get(sec, ()) or (sec == "train" and key in TRAIN_OWN):
            top = key
            if sec == "train":
                top = {"spec": "train.members or train.references", "seed": "train.seeds",
                       "dataset": "data.source", "data": "data.path",
                       "val_size": "data.val_size", "out": "out",
                       "max_epochs_time": "nothing (each model trains to its end)"}[key]
            return f"{dotted} is set once for the whole pipeline; use {top}"
        return None

    @classmethod
    def from_mapping(cls, mapping: Any, key: str = "") -> "PipelineSettings":
        from nas.core.settings import fields_from
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"{key or 'settings'}: expected a mapping of settings, got "
                              f"{type(mapping).__name__}")
        m = dict(mapping)
        sections: dict[str, Any] = {}
        if "search" in m:
            sections["search"] = _section(SearchSettings, m.pop("search"), "search",
                                          PIPELINE_OWN["search"])
        if "scale" in m:
            scale = dict(m.pop("scale") or {}) if isinstance(m.get("scale"), Mapping) \
                else m.pop("scale")
            if isinstance(scale, Mapping):
                for extra in ("family", "on_miss"):
                    if extra in scale:
                        m[extra] = scale.pop(extra)
            sections["scale"] = _section(ScaleSettings, scale, "scale", PIPELINE_OWN["scale"])
        if "train" in m:
            sections["train"] = PipelineTrain.from_mapping(m.pop("train"), "train")
        for extra in ("family", "on_miss"):
            if extra in mapping:
                from nas.core.settings import unknown_key
                raise unknown_key(extra, [k for k in cls().to_mapping()])
        return cls(**fields_from(cls, m, key, ("search", "scale", "train")), **sections)

    def to_mapping(self) -> dict[str, Any]:
        from nas.core.settings import fields_to
        out = fields_to(self, ("search", "scale", "family", "on_miss", "train"))
        top = list(out)
        at = top.index("data") + 1
        items = list(out.items())
        search = fields_to(self.search, PIPELINE_OWN["search"])
        scale = {**fields_to(self.scale, PIPELINE_OWN["scale"]), "family": self.family,
                 "on_miss": self.on_miss}
        return dict(items[:at] + [("search", search), ("scale", scale),
                                  ("train", self.train.to_mapping())] + items[at:])

    def __post_init__(self) -> None:
        if self.out is not None and not isinstance(self.out, Path):
            object.__setattr__(self, "out", Path(self.out))
        check_int(self.seed, "seed", 0, MAX_SEED)
        check_int(self.workers, "workers", 1)
        check_number(self.cpus_per_trial, "cpus_per_trial", 0.0, strict=True)
        check_number(self.gpus_per_trial, "gpus_per_trial", 0.0)
        check_int(self.max_failures, "max_failures", 0)
        if not isinstance(self.family, bool):
            raise ConfigError(f"scale.family: got {self.family!r}; use true or false")
        if self.on_miss not in ON_MISS:
            raise ConfigError(f"scale.on_miss: got {self.on_miss!r}; use closest or error")
        if self.search.target_latency is not None:
            raise ConfigError(f"search.target_latency={self.search.target_latency}: the "
                              "pipeline searches and scales at MACs targets (target_flops, "
                              "budgets); search at a latency target with "
                              "nas.run_search(target_latency='15ms')")

    @property
    def budget_macs(self) -> tuple[int, ...] | None:
        """``budgets`` as counts of multiply-adds."""
        return budget_macs(self.budgets)

    @property
    def grid(self) -> bool:
        """The coefficients are fitted on the grid (none given)."""
        return self.scale.coefficients is None

    def stage_search(self, name: str, out: Path) -> SearchSettings:
        """The search stage's settings: the section, with the pipeline's shared keys."""
        return replace(self.search, name=name, out=out, target_flops=self.target_flops,
                       **self._shared())

    def stage_scale(self, name: str, out: Path, baseline: str) -> ScaleSettings:
        """The scale stage's settings: the section, with the pipeline's shared keys and
        budgets, the grid when no coefficients are given."""
        return replace(self.scale, name=name, out=out, baseline=baseline,
                       budgets=self.budgets, grid_search=self.grid, scaling=None,
                       **self._shared())

    def _shared(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in PIPELINE_SHARED}
