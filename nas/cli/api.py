"""The jobs as Python functions, for notebooks and scripts: ``nas.run_search``,
``nas.run_scale``, ``nas.run_train``, ``nas.run_fidelity``, ``nas.run_pipeline`` and
``nas.load_run``.

Each function takes its job's settings (:class:`~nas.search.settings.SearchSettings`,
:class:`~nas.search.settings.ScaleSettings`, :class:`~nas.training.settings.TrainSettings`,
:class:`~nas.search.settings.FidelitySettings`, :class:`~nas.search.settings.PipelineSettings`),
or keyword overrides of them: the settings' keys (``target_flops="400M"``, ``budget=4``), a
section as a mapping merged into it (``proxy={"epochs": 2}``), or dotted keys
(``**{"proxy.epochs": 2}``). They are layered as every command layers them
(:func:`nas.core.settings.load`): the defaults (or ``settings``), the bundled ``preset``, the
``config`` (a YAML path or a mapping), then the overrides. ``resume=True`` continues the run
in ``out`` with its saved settings (what may change is named in the error when something
else does); ``force=True`` takes a value that looks like a typo (a target under 1M MACs, a
resolution over 4096 px).

The functions run the commands' own code path (:mod:`nas.cli.jobs`; the commands map their
flags to these keys), raise the project's exceptions (one line naming the settings' keys,
``target_flops=40 is 40 MACs``, before anything is written) instead of printing them, and
return a result object (:mod:`nas.cli.results`). Progress still goes to the output. No
argparse on the way.

    import nas
    run = nas.run_search(target_flops="400M", preset="smoke", budget=4)
    run.best                      # the best child's spec (an ArchSpec)
    data = nas.load_run(run.out)  # data.children: a pandas DataFrame

    s = nas.SearchSettings.from_mapping({"target_flops": "400M", "proxy": {"epochs": 2}})
    nas.run_search(s, workers=4)

A local Ray that a call starts is stopped when it returns; a Ray already running (your own
``ray.init()``, or a cluster) is used and left running. Torch-free at import (``import nas``
stays so); each function imports what it runs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Mapping, Union

from nas.cli import jobs
from nas.cli.results import (
    FidelityResult,
    PipelineResult,
    RunData,
    ScaleResult,
    SearchResult,
    TrainResult,
    load_run,
)
from nas.core.errors import ConfigError

if TYPE_CHECKING:  # the settings' modules are imported where a job runs
    from nas.search.settings import (
        FidelitySettings,
        PipelineSettings,
        ScaleSettings,
        SearchSettings,
    )
    from nas.training.settings import TrainSettings

Config = Union[str, "os.PathLike[str]", Mapping[str, Any], None]  # a YAML path or a mapping


def run_search(settings: SearchSettings | None = None, *, preset: str | None = None,
               config: Config = None, resume: bool = False, force: bool = False,
               **overrides: Any) -> SearchResult:
    """Search for a baseline network, as ``effnas search`` does. ``settings``: a
    :class:`~nas.search.settings.SearchSettings` (else the defaults, ``preset`` and
    ``config``); ``overrides``: its keys (``target_flops="400M"``, ``budget=60``,
    ``evaluator="oneshot"``, ``proxy={"epochs": 2}``).

    Returns a :class:`SearchResult` (``finished=False`` after Ctrl-C: continue with
    ``run_search(resume=True, out=...)``). Raises :class:`~nas.core.errors.ConfigError` on
    bad input (before Ray starts or anything is written) and
    :class:`~nas.core.errors.NoResultError` when the search finished without a successful
    child.
    """
    from nas.search.settings import SearchSettings

    _bools(resume=resume, force=force)
    if resume:
        _no_layers(settings, preset, config)
        s = jobs.saved_settings(SearchSettings, overrides.get("out"), ("search", "oneshot"),
                                overrides, jobs.SEARCH_RESUMABLE, "search")
    else:
        s = jobs.settings(SearchSettings, settings, preset=preset, config=config,
                          overrides=overrides)
    with jobs.ray_of_this_call():
        return jobs.search_result(jobs.search(s, resume=resume, force=force))


def run_scale(settings: ScaleSettings | None = None, *, preset: str | None = None,
              config: Config = None,
              resume: bool = False, force: bool = False,
              say: Callable[[str], None] | None = None, **overrides: Any) -> ScaleResult:
    """Fit alpha, beta, gamma (``grid_search=True``) or take them (``coefficients=(1.2,
    1.1, 1.15)``, ``scaling=PATH``), and scale a baseline into a family, as ``effnas scale``
    does. ``settings``: a :class:`~nas.search.settings.ScaleSettings`; ``overrides``: its
    keys (``budgets=["600M", "1.2G"]``, ``rule="paper"``, ``grid={"step": 0.1}``). The
    lines the command prints go to ``say`` (default: print). Returns a
    :class:`ScaleResult`."""
    from nas.search.settings import ScaleSettings

    _bools(resume=resume, force=force)
    if resume:
        _no_layers(settings, preset, config)
        s = jobs.saved_settings(ScaleSettings, overrides.get("out"), "scale", overrides,
                                jobs.SCALE_RESUMABLE, "scale run")
    else:
        s = jobs.settings(ScaleSettings, settings, preset=preset, config=config,
                          overrides=overrides)
        jobs.check_grid_keys(s, overrides)
    with jobs.ray_of_this_call():
        return jobs.scale(s, resume=resume, force=force, say=say or jobs._print)


def run_train(settings: TrainSettings | str | os.PathLike[str] | None = None, /, *,
              preset: str | None = None, config: Config = None,
              resume: bool = False, force: bool = False,
              say: Callable[[str], None] | None = None, command: str | None = None,
              **overrides: Any) -> TrainResult:
    """Train a spec fully, test it and export it, as ``effnas train`` does. ``settings``: a
    :class:`~nas.training.settings.TrainSettings`, or for short the spec (a YAML path or a
    bundled name: ``run_train("efficientnet-b0", epochs=3)``); ``overrides``: its keys
    (``epochs``, ``lr``, ``ema_decay``, ``max_epochs_time`` in seconds or ``"90m"``, ...).
    Epoch lines go to ``say`` (default: print); ``command`` is what ``metrics.json``
    records as the run's command (default: this call). Returns a :class:`TrainResult`
    (``status="interrupted"`` after Ctrl-C: continue with ``run_train(resume=True,
    out=...)``)."""
    from nas.training.settings import TrainSettings

    _bools(resume=resume, force=force)
    if isinstance(settings, (str, os.PathLike)):
        overrides = {"spec": settings, **overrides}
        settings = None
    elif settings is not None and not isinstance(settings, TrainSettings):
        raise ConfigError(f"settings={settings!r}: give TrainSettings, or a spec's path or "
                          "bundled name (e.g. 'efficientnet-b0')")
    if command is None:
        shown = ", ".join([*([repr(os.fspath(overrides["spec"]))] if "spec" in overrides
                             else []),
                           *(f"{k}={os.fspath(v) if isinstance(v, os.PathLike) else v!r}"
                             for k, v in overrides.items() if k != "spec")])
        command = f"nas.run_train({shown})"
    if resume:
        _no_layers(settings, preset, config)
        c, spec, ckpt = jobs.train_resumed(overrides)
    else:
        s = jobs.settings(TrainSettings, settings, preset=preset, config=config,
                          overrides=overrides)
        (c, spec), ckpt = jobs.train_fresh(s, force), None
    return jobs.train(c, spec, ckpt, command, say)


def run_fidelity(settings: FidelitySettings | str | os.PathLike[str] | None = None, /, *,
                 config: Config = None, resume: bool = False,
                 report: bool = False, say: Callable[[str], None] | None = None,
                 **overrides: Any) -> FidelityResult:
    """Measure how well the proxy ranks a search's children, as ``effnas fidelity`` does.
    ``settings``: a :class:`~nas.search.settings.FidelitySettings`, or for short the
    search's run folder (``run_fidelity("runs/NAME", children=12)``); ``overrides``: its
    keys (``config``: a YAML path or a mapping of them, layered first). ``report=True``
    reports what has finished and trains nothing. Returns a :class:`FidelityResult`."""
    from nas.search.settings import FidelitySettings

    _bools(resume=resume, report=report)
    if isinstance(settings, (str, os.PathLike)):
        overrides = {"run": settings, **overrides}
        settings = None
    s = jobs.settings(FidelitySettings, settings, config=config, overrides=overrides)
    with jobs.ray_of_this_call():
        return jobs.fidelity(s, resume=resume, report=report, say=say or jobs._print)


def run_pipeline(settings: PipelineSettings | None = None, *, preset: str | None = None,
                 config: Config = None,
                 resume: bool = False, force: bool = False, command: str = "",
                 say: Callable[[str], None] | None = None,
                 **overrides: Any) -> PipelineResult:
    """Search, scale, train and report in one run folder, as ``effnas pipeline`` does.
    ``settings``: a :class:`~nas.search.settings.PipelineSettings`; ``overrides``: its keys
    (``target_flops``, ``budgets``, ``search={"budget": 4}``, ``train={"epochs": 2}``).
    ``resume=True`` continues the pipeline in ``out``. Returns a :class:`PipelineResult`."""
    from nas.search.settings import PipelineSettings

    _bools(resume=resume, force=force)
    if resume:
        _no_layers(settings, preset, config)
        s = jobs.pipeline_resumed(overrides)
    else:
        s = jobs.settings(PipelineSettings, settings, preset=preset, config=config,
                          overrides=overrides)
    with jobs.ray_of_this_call():
        return jobs.pipeline(s, resume=resume, force=force, command=command,
                             say=say or jobs._print)


def _bools(**flags: Any) -> None:
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r}: expected True or False")


def _no_layers(settings: Any, preset: Any, config: Any) -> None:
    if settings is not None:
        raise ConfigError("resume=True continues with the run's saved settings; leave out "
                          "settings (pass what may change as keywords)")
    jobs.no_layers(preset, config)


__all__ = ["run_search", "run_scale", "run_train", "run_fidelity", "run_pipeline", "load_run",
           "SearchResult", "ScaleResult", "TrainResult", "FidelityResult", "PipelineResult",
           "RunData"]
