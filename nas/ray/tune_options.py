"""What a user adds to Ray Tune (``tune:`` in a run config): callbacks, built from their
import paths, and ASHA as the trial scheduler.

ASHA reads the validation accuracy each trial reports after every epoch but its last (the
last one comes with the child's final result, so a child that trained its whole schedule is
never cut off before it reports); a trial ASHA stops reaches the searcher without a final
result (see :func:`nas.ray.searcher.stopped_result`).

The settings are read as they are typed in :class:`nas.search.settings.TuneSettings`
(:class:`TuneOptions` names what is read here).
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

from nas.core.errors import ConfigError


class Asha(Protocol):
    """ASHA's settings: the first rung and the factor between rungs."""

    @property
    def grace_period(self) -> int: ...

    @property
    def reduction_factor(self) -> float: ...


class TuneOptions(Protocol):
    """Callbacks as (import path, keyword arguments) pairs, and ASHA or no scheduler."""

    @property
    def callbacks(self) -> Sequence[tuple[str, Mapping[str, Any]]]: ...

    @property
    def scheduler(self) -> Asha | None: ...


def _callback_class(path: str, kwargs: Mapping[str, Any], where: str) -> type:
    """The class at ``path``: a Ray Tune ``Callback`` that takes ``kwargs``; else a one-line
    :class:`ConfigError` naming ``where``."""
    import importlib
    import inspect

    from ray.tune import Callback

    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"{where}: cannot import {module_name} ({e}); check the path or "
                          "install its package") from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Callback)):
        what = "nothing" if cls is None else f"a {type(cls).__name__}, not a Callback class"
        raise ConfigError(f"{where}: {path} is {what}; give a ray.tune.Callback subclass such "
                          "as ray.tune.logger.CSVLoggerCallback")
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {path}({', '.join(kwargs)}): {e}; fix its arguments") \
            from None
    return cls


def check_tune(tune_settings: TuneOptions) -> None:
    """Every callback imports, is a Tune ``Callback`` and takes its arguments (one-line
    errors before Ray starts or anything is written)."""
    for i, (path, kwargs) in enumerate(tune_settings.callbacks):
        _callback_class(path, kwargs, f"tune.callbacks[{i}]")


def make_callbacks(tune_settings: TuneOptions) -> list[Any]:
    return [_callback_class(path, kwargs, f"tune.callbacks[{i}]")(**kwargs)
            for i, (path, kwargs) in enumerate(tune_settings.callbacks)]


def make_scheduler(tune_settings: TuneOptions, epochs: int, stopped: set[str]) -> Any:
    """ASHA on per-epoch validation accuracy (None without a scheduler); the ids of the
    trials it stops are added to ``stopped``."""
    asha = tune_settings.scheduler
    if asha is None:
        return None
    from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

    class RecordingASHA(AsyncHyperBandScheduler):
        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            decision = super().on_trial_result(tune_controller, trial, result)
            if decision == TrialScheduler.STOP and not result.get("final"):
                stopped.add(trial.trial_id)
            return decision

    return RecordingASHA(time_attr="epoch", metric="epoch_val_accuracy", mode="max",
                         max_t=epochs, grace_period=asha.grace_period,
                         reduction_factor=asha.reduction_factor)
