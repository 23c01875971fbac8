"""A driver's children as Ray Tune trials: the ``Searcher`` bridge and the trainable.

Tune asks the searcher for a trial; the searcher asks the driver (:class:`Driver`, in this
project :class:`nas.search.driver.ChildDriver`) and hands every result back to it. The
trainable trains one child on a worker (:func:`nas.training.child.run_child`) and reports
every epoch, so a trial scheduler can stop it (:mod:`nas.ray.tune_options`).

Resuming does not use ``Tuner.restore``. The driver saves its state file after every
suggestion and every result (``driver.pt`` in the run folder, see
:mod:`nas.search.driver`); a resumed run starts a new Tune experiment whose driver was
loaded from that file, re-issues the children that were in flight and goes on.
So a kill -9 loses at most the training in progress, never a finished child.

Tune's own per-trial loggers (``result.json``, ``progress.csv``, ``params.json``,
``params.pkl`` and an event file per child) are switched off: ``children.jsonl`` holds each
child's result and validation curve, and resuming reads ``driver.pt``. Tune still needs its
storage folder (``tune/session*``: its experiment state and one folder per trial).
``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=0`` in the environment turns them back on. Tune's
SIGINT handler is off (``TUNE_DISABLE_SIGINT_HANDLER``): Ctrl-C is the command's.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from nas.data import DataSplits
from nas.ray.tune_options import TuneOptions, make_callbacks, make_scheduler
from nas.training.child import run_child
from nas.training.recipe import Recipe


class Driver(Protocol):
    """What the searcher needs of a driver: children to train, a place for their results, and
    its state file."""

    def suggest(self, trial_id: str) -> dict | str | None:
        """A child's config, ``"FINISHED"``, or None (nothing to hand out right now)."""

    def complete(self, trial_id: str, result: Mapping[str, Any] | None,
                 reason: str | None = None) -> list[Any]:
        """Record a trial's result (None: it produced none, ``reason`` says why); returns the
        records it made."""

    def save(self, path: Path) -> None:
        """Write the state file."""

    def restore(self, path: Path) -> None:
        """Continue from the state file."""


class Trials(Protocol):
    """How children train (:class:`nas.search.settings.TrialSettings`): the proxy recipe,
    ``workers`` at a time, each with its CPUs and GPUs, retried ``max_failures`` times."""

    @property
    def recipe(self) -> Recipe: ...

    @property
    def workers(self) -> int: ...

    @property
    def cpus_per_trial(self) -> float: ...

    @property
    def gpus_per_trial(self) -> float: ...

    @property
    def max_failures(self) -> int: ...

    @property
    def tune(self) -> TuneOptions: ...


def _searcher_class() -> type:
    from ray.tune.search import Searcher

    class DriverSearcher(Searcher):
        """Thin adapter: Tune asks, the driver answers; results go back to the driver."""

        def __init__(self, driver: Driver, state_path: Path,
                     on_records: Callable[[list[Any]], None] | None,
                     stopped: set[str] | None = None):
            super().__init__()  # the reward is computed here, not reported by trials
            self.driver = driver
            self.state_path = state_path
            self.on_records = on_records
            self.stopped = stopped  # trial ids the scheduler stopped (shared with it)

        def suggest(self, trial_id: str) -> dict | str | None:
            out = self.driver.suggest(trial_id)
            if out == "FINISHED":
                return Searcher.FINISHED
            self.driver.save(self.state_path)
            return out

        def on_trial_complete(self, trial_id: str, result: dict | None = None,
                              error: bool = False) -> None:
            reason = ("the trial's worker died or the trial crashed, and retries were used up"
                      if error else None)
            if not error and self.stopped is not None and trial_id in self.stopped:
                result = stopped_result(result)
            records = self.driver.complete(trial_id, result, reason)
            self.driver.save(self.state_path)
            if records and self.on_records is not None:
                self.on_records(records)

        def __getstate__(self) -> dict:
            # Tune pickles the searcher with the experiment; the output callback (TensorBoard
            # writer, open files) stays in this process.
            state = self.__dict__.copy()
            state["on_records"] = None
            return state

        # Tune snapshots the searcher too; the driver file above is what --resume reads.
        def save(self, checkpoint_path: str) -> None:
            self.driver.save(Path(checkpoint_path))

        def restore(self, checkpoint_path: str) -> None:
            self.driver.restore(Path(checkpoint_path))

    return DriverSearcher


def stopped_result(last: Mapping[str, Any] | None) -> dict[str, Any]:
    """The driver's result for a trial the scheduler stopped, from the last epoch it
    reported: status ``stopped`` and that epoch's validation accuracy."""
    last = dict(last or {})
    if last.get("final"):  # it finished before the stop took effect
        return last
    epoch = last.get("epoch")
    if "epoch_val_accuracy" not in last:
        return {"status": "failed", "error": "stopped by the trial scheduler before it "
                                             "reported an epoch"}
    return {"status": "stopped", "accuracy": last["epoch_val_accuracy"], "epochs": epoch,
            "seconds": float(last.get("epoch_seconds", 0.0)),
            "val_loss": last.get("epoch_val_loss"), "train_loss": last.get("epoch_train_loss"),
            "val_curve": list(last.get("val_curve") or []),
            "error": f"stopped by the trial scheduler (ASHA) after epoch {epoch}: its "
                     "validation accuracy trailed the other children's there"}


def train_child(config: dict, data: DataSplits | None = None,
                proxy: Mapping[str, Any] | None = None, use_gpu: bool = False) -> None:
    """Tune function trainable: trains the child and reports every epoch but the last, then
    the outcome (with the last epoch's numbers, so a scheduler sees that epoch too)."""
    from ray import tune

    from nas.training.device import pick_device

    recipe = Recipe.from_dict(dict(proxy or {}))
    epochs = int(dict(config.get("proxy") or {}).get("epochs", recipe.epochs))

    curve: list[float] = []

    def on_epoch(epoch: int, metrics: dict[str, Any]) -> None:
        curve.append(float(metrics["val_accuracy"]))
        if epoch < epochs:
            tune.report({"epoch": epoch, "val_curve": list(curve),
                         **{f"epoch_{k}": v for k, v in metrics.items()
                            if isinstance(v, (int, float))}})

    assert data is not None
    result = run_child(config, data, recipe, device=pick_device("auto" if use_gpu else "cpu"),
                       on_epoch=on_epoch)
    last = {}
    if result.get("val_curve") and result.get("status") == "ok":
        last = {"epoch": len(result["val_curve"]), "epoch_val_accuracy": result["val_curve"][-1]}
    tune.report({**result, **last, "final": True})


def _trial_name(trial: Any) -> str:
    return f"child{trial.config.get('child', '')}_{trial.trial_id}"


def _quiet_tune() -> None:
    # Tune's console tables would interleave with the search's own progress line.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ctrl-C is the command's: a KeyboardInterrupt that keeps what finished and prints how
    # to go on (--resume). Tune's own handler would end the experiment its way instead and
    # suggest Tuner.restore, which this project does not use (see the module docstring).
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    # A child that failed or diverged reports no validation accuracy for the epoch it
    # stopped in; Tune's strict check would end the whole experiment with a ValueError when a
    # scheduler (ASHA) expects that metric. ASHA skips results without it.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    # Tune's per-trial logs repeat children.jsonl (see the module docstring); without them,
    # the result table Tune builds at the end warns once per trial that it found no
    # metrics, which is expected here.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] == "1":
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


def run_trials(driver: Driver, data: DataSplits, trials: Trials, run_dir: Path,
               session: str, on_records: Callable[[list[Any]], None],
               state_file: Path) -> None:
    """Run every child the driver hands out as a Tune trial, ``trials.workers`` at a time;
    ``on_records`` gets the records each result made, and the driver saves ``state_file``
    after every suggestion and result. Tune's experiment is ``run_dir/tune/SESSION``."""
    _quiet_tune()
    from ray import tune

    stopped: set[str] = set()
    scheduler = make_scheduler(trials.tune, trials.recipe.epochs, stopped)
    searcher = _searcher_class()(driver, state_file, on_records, stopped)
    trainable = tune.with_parameters(train_child, data=data, proxy=trials.recipe.to_dict(),
                                     use_gpu=trials.gpus_per_trial > 0)
    trainable = tune.with_resources(trainable, {"cpu": trials.cpus_per_trial,
                                                "gpu": trials.gpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1,
                                    max_concurrent_trials=trials.workers, reuse_actors=True,
                                    scheduler=scheduler,
                                    trial_name_creator=_trial_name,
                                    trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(
            name=session, storage_path=str((run_dir / "tune").resolve()), verbose=0,
            failure_config=tune.FailureConfig(max_failures=trials.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=make_callbacks(trials.tune) or None),
    )
    tuner.fit()
