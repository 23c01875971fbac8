"""The one module that meets Ray: a Tune ``Searcher`` over a :class:`ChildDriver` and the
function trainable that trains a child on a worker.

Resuming does not use ``Tuner.restore``. The driver's state is saved atomically after every
suggestion and every result (``driver.pt`` in the run folder); ``--resume`` starts a new
Tune experiment whose searcher loads that state, re-issues the children that were in flight
and goes on. So a kill -9 loses at most the training in progress, never a finished child.

What a user adds (``tune:`` in the run config, :class:`~nas.search.settings.TuneSettings`):
callbacks, built from their import paths, and ASHA as the trial scheduler. ASHA reads the
validation accuracy each trial reports after every epoch but its last (the last one comes
with the child's final result, so a child that trained its whole schedule is never cut off
before it reports); a trial ASHA stops reaches the searcher without a final result and is
recorded as ``stopped`` with the accuracy of its last reported epoch.

Tune's own per-trial loggers (``result.json``, ``progress.csv``, ``params.json``,
``params.pkl`` and an event file per child) are switched off: ``children.jsonl`` holds each
child's result and validation curve, and resuming reads ``driver.pt``. Tune still needs its
storage folder (``tune/session*``: its experiment state and one folder per trial).
``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=0`` in the environment turns them back on.

Ray does not talk over the command (:func:`quiet_ray`): its Python logging (Ray core and
Tune) reaches the terminal only for errors; its warnings and hints (token authentication,
``Tuner.restore``) go to the run folder's ``ray.log``, and Ray's processes log to their
session folder as always. Ctrl-C and SIGTERM are the command's (a KeyboardInterrupt: what
finished is kept and the command says how to ``--resume``): Tune's SIGINT handler is off
(``TUNE_DISABLE_SIGINT_HANDLER``) and the SIGTERM handler ``ray.init`` installs (a drain of
up to 30 s, then Ray's C++ stack dump on the terminal) is replaced by the command's again.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from nas.core.errors import ConfigError
from nas.core.files import atomic_file
from nas.data import DataSplits
from nas.search.child import run_child
from nas.search.driver import ChildDriver, ChildRecord
from nas.search.settings import TrialSettings, TuneSettings

log = logging.getLogger(__name__)


def save_state(driver: ChildDriver, path: Path) -> None:
    import torch
    with atomic_file(path, "wb") as f:
        torch.save(driver.state_dict(), f)


def load_state(path: Path) -> dict[str, Any]:
    """The driver state saved in ``path``; an empty, truncated or foreign file is a one-line
    :class:`ConfigError` (nothing in the folder is changed)."""
    import torch
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same answer
        first = str(e).splitlines()[0] if str(e) else ""
        why = "it is empty" if path.is_file() and path.stat().st_size == 0 else \
            f"{type(e).__name__}: {first}"[:200]
        raise ConfigError(f"{path}: cannot read the saved state ({why}), so --resume cannot "
                          f"continue this run; its finished results are in the tables of "
                          f"{path.parent}; start afresh with another --out") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: not a saved driver state (a {type(state).__name__}); "
                          "check --out")
    return state


def restore_state(driver: ChildDriver, state: dict[str, Any], path: Path) -> None:
    """Load ``state`` into ``driver``; a state of another format or run is a one-line error."""
    from controller import Proposal
    try:
        driver.load_state_dict(state, Proposal)
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as e:
        raise ConfigError(f"{path}: the saved state does not fit this run ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); check --out") from None


def _searcher_class() -> type:
    from ray.tune.search import Searcher

    class DriverSearcher(Searcher):
        """Thin adapter: Tune asks, the driver answers; results go back to the driver."""

        def __init__(self, driver: ChildDriver, state_path: Path,
                     on_records: Callable[[list[ChildRecord]], None],
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
            save_state(self.driver, self.state_path)
            return out

        def on_trial_complete(self, trial_id: str, result: dict | None = None,
                              error: bool = False) -> None:
            reason = ("the trial's worker died or the trial crashed, and retries were used up"
                      if error else None)
            if not error and self.stopped is not None and trial_id in self.stopped:
                result = stopped_result(result)
            records = self.driver.complete(trial_id, result, reason)
            save_state(self.driver, self.state_path)
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
            save_state(self.driver, Path(checkpoint_path))

        def restore(self, checkpoint_path: str) -> None:
            from controller import Proposal
            self.driver.load_state_dict(load_state(Path(checkpoint_path)), Proposal)

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
    from nas.training.recipe import Recipe

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


def ray_address(address: str | None) -> str | None:
    """The cluster to join: ``address``, else ``RAY_ADDRESS``, else None (a fresh local Ray)."""
    return address or os.environ.get("RAY_ADDRESS") or None


CONNECT_TIMEOUT = 5.0  # seconds to wait for a cluster's head to answer


def check_address(address: str | None, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse a cluster address nothing answers at, within ``timeout`` seconds.

    ``ray.init`` retries a dead address for minutes without a message and ignores Ctrl-C
    while it does, so the head's port (``HOST:PORT`` or ``ray://HOST:PORT``) is tried with a
    plain TCP connection first. ``local``, ``auto`` and no address are left to Ray.
    """
    import socket

    given = address
    address = ray_address(address)
    if not address or address in ("local", "auto"):
        return
    option = "--address" if given else "RAY_ADDRESS"
    target = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = target.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{option} {address!r}: expected HOST:PORT of a Ray cluster's head "
                          "(e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001), or leave it unset "
                          "for a local Ray")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        why = e.strerror or str(e) or type(e).__name__
        raise ConfigError(f"{option} {address}: no Ray cluster answers there ({why}, within "
                          f"{timeout:g} s); start it (ray start --head) or check the address, "
                          "or leave it unset for a local Ray") from None


def init_ray(address: str | None, num_cpus: int | None = None,
             run_dir: Path | None = None) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a fresh local one.

    A fresh local Ray first stops what dead local sessions of this project left running
    (see :mod:`nas.search.leftovers`), then records its own session so the next start can
    do the same for it; both are logged in ``run_dir/ray.log``.
    """
    import ray
    log_file = None if run_dir is None else run_dir / "ray.log"
    quiet_ray(log_file)
    if ray.is_initialized():
        return
    address = ray_address(address)
    check_address(address)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False,
                              "include_dashboard": False}
    try:
        with _keep_sigterm_handler():
            if address:
                ray.init(address=address, **kwargs)
            else:
                from nas.search import leftovers
                leftovers.stop_dead_sessions(leftovers.ray_temp_root(), log_file)
                context = ray.init(address="local", num_cpus=num_cpus, **kwargs)
                session = (context.address_info or {}).get("session_dir")
                if session:
                    leftovers.record_session(Path(session), log_file, run_dir)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or "a local cluster"
        raise ConfigError(f"could not start or join Ray at {where}: {str(e).splitlines()[0]}; "
                          "check --address (or RAY_ADDRESS), or leave it unset for a local run") from None


@contextmanager
def _keep_sigterm_handler() -> Iterator[None]:
    """``ray.init`` replaces the SIGTERM handler with one that drains the node for up to
    30 s (``RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S``) and lets the dying processes log to
    the terminal. A handler of the program's own (the commands': stop as Ctrl-C does, see
    :func:`nas.cli.parser.run_main`) is put back; without one, Ray's stays."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and callable(previous):
            signal.signal(signal.SIGTERM, previous)


class _TerminalFilter(logging.Filter):
    """On the terminal, only Ray's errors: its warnings and hints (token authentication,
    ``Tuner.restore``, ...) go to the run folder's ``ray.log``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


class _RunLog(logging.Handler):
    """Appends each record to ``path`` (opened per record: Ray logs little), once its folder
    exists; before that, and on a write error, the record is dropped."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.path.parent.is_dir():
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - a log line must never stop a run
            pass


_log_handler: logging.Handler | None = None


def quiet_ray(log_file: Path | None) -> None:
    """Keep Ray's Python logging (the ``ray`` logger: Ray core, Tune) off the terminal but
    for errors, and write it, warnings up, to ``log_file`` (the run folder's ``ray.log``,
    beside what :mod:`nas.search.leftovers` logs there) when given. Ray's processes log to
    their session folder as before, and workers' output is not sent here
    (``log_to_driver=False``)."""
    global _log_handler
    import ray  # noqa: F401 - importing Ray sets up the "ray" logger and its stderr handler

    logger = logging.getLogger("ray")
    if _log_handler is not None:
        logger.removeHandler(_log_handler)
        _log_handler = None
    for handler in logger.handlers:
        if not any(isinstance(f, _TerminalFilter) for f in handler.filters):
            handler.addFilter(_TerminalFilter())
    if log_file is not None:
        _log_handler = _RunLog(log_file)
        logger.addHandler(_log_handler)


def ray_running() -> bool:
    """Whether this process has started or joined Ray (without importing Ray if it has not)."""
    import sys
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def shutdown_ray() -> None:
    """Stop this process's local Ray (or leave the cluster it joined), if it started one."""
    import ray
    if ray.is_initialized():
        ray.shutdown()


def check_resources(cpus_per_trial: float, gpus_per_trial: float) -> dict[str, float]:
    """Refuse requests the cluster can never meet (Tune would wait for them forever)."""
    import ray
    res = ray.cluster_resources()
    cpus, gpus = res.get("CPU", 0.0), res.get("GPU", 0.0)
    if gpus_per_trial > 0 and gpus < gpus_per_trial:
        raise ConfigError(f"--gpus-per-trial {gpus_per_trial:g} but the Ray cluster has "
                          f"{gpus:g} GPUs; use --gpus-per-trial 0 or join a cluster with GPUs")
    if cpus_per_trial > cpus:
        raise ConfigError(f"--cpus-per-trial {cpus_per_trial:g} but the Ray cluster has "
                          f"{cpus:g} CPUs; ask for fewer")
    return {"CPU": cpus, "GPU": gpus}


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


def check_tune(tune_settings: TuneSettings) -> None:
    """Every callback imports, is a Tune ``Callback`` and takes its arguments (one-line
    errors before Ray starts or anything is written)."""
    for i, (path, kwargs) in enumerate(tune_settings.callbacks):
        _callback_class(path, kwargs, f"tune.callbacks[{i}]")


def make_callbacks(tune_settings: TuneSettings) -> list[Any]:
    return [_callback_class(path, kwargs, f"tune.callbacks[{i}]")(**kwargs)
            for i, (path, kwargs) in enumerate(tune_settings.callbacks)]


def make_scheduler(tune_settings: TuneSettings, epochs: int, stopped: set[str]) -> Any:
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


def run_trials(driver: ChildDriver, data: DataSplits, trials: TrialSettings, run_dir: Path,
               session: str, on_records: Callable[[list[ChildRecord]], None]) -> None:
    """Run every child the driver hands out as a Tune trial, ``trials.workers`` at a time."""
    _quiet_tune()
    from ray import tune

    state_path = run_dir / "driver.pt"
    stopped: set[str] = set()
    scheduler = make_scheduler(trials.tune, trials.recipe.epochs, stopped)
    searcher = _searcher_class()(driver, state_path, on_records, stopped)
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
