"""Train every child a driver hands out on Ray, keeping the run folder's tables, TensorBoard
and the progress line up to date after each result (and once more at the end).

A run that trains children (the search, its re-check, the one-shot search's standalone
stage, the scaling grid, the fidelity measurement) goes through :func:`train_children`, or
:func:`train_fixed` for a fixed list of networks. Ray itself is :mod:`nas.ray`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from controller import FixedList
from nas.core.errors import ConfigError
from nas.data import DataSplits
from nas.ray import runtime
from nas.ray.searcher import run_trials
from nas.search.driver import (
    SCORED,
    STATE_FILE,
    STOPPED,
    TIMEOUT,
    ChildDriver,
    ChildRecord,
    Target,
)
from nas.search.reward import RewardConfig
from nas.search.runlog import Progress, TensorBoardLog, write_tables
from nas.search.settings import TrialSettings


def train_children(driver: ChildDriver, data: DataSplits, trials: TrialSettings, out: Path,
                   total: int, after_records: Callable[[Any, bool], None] | None = None,
                   table: str = "children", metric: str = "reward") -> None:
    """Run the driver to the end (or to Ctrl-C) on Ray.

    ``after_records(tb, final)`` writes the caller's own outputs at the same moments as the
    tables; ``table`` names the table files and the progress line's noun, ``metric`` what the
    driver's rewards are.
    """
    tb = TensorBoardLog(out / "tensorboard")
    progress = Progress(total, trials.workers, noun=table, metric=metric,
                        time_left=lambda: None if driver.time_budget is None
                        else driver.time_budget - driver.seconds())

    def on_records(records: list[ChildRecord]) -> None:
        for r in records:
            tb.child(r, max(r.child, 0))
        tb.diagnostics(driver.pop_diagnostics())
        write_tables(driver.records, out, table)
        if after_records is not None:
            after_records(tb, False)
        show_progress(progress, driver)

    if not driver.finished():  # a resumed run with nothing left to train starts no Ray
        runtime.init_ray(trials.address, run_dir=out)
        runtime.check_resources(trials.cpus_per_trial, trials.gpus_per_trial)
    try:
        if not driver.finished():
            run_trials(driver, data, trials, out, next_session(out / "tune"), on_records,
                       state_file=out / STATE_FILE)
    finally:
        progress.close()
        write_tables(driver.records, out, table)
        if after_records is not None:
            after_records(tb, True)
        tb.close()


def next_session(folder: Path) -> str:
    """The name of the next Tune experiment under ``folder``: ``session0``, ``session1``..."""
    return f"session{len(list(folder.glob('session*'))) if folder.exists() else 0}"


def show_progress(progress: Progress, driver: ChildDriver) -> None:
    """The progress line after a result: children trained, the best so far, failures."""
    trained = driver.trained_records()
    best = driver.best(1)
    walls = [r.wall_seconds for r in trained if r.wall_seconds > 0]
    progress.update(len(trained), best[0].reward if best else None,
                    best[0].macs if best else None,
                    sum(1 for r in trained if r.status not in SCORED),
                    sum(walls) / len(walls) if walls else None,
                    sum(1 for r in trained if r.status == TIMEOUT),
                    sum(1 for r in trained if r.status == STOPPED),
                    best[0].latency_ms if best else None)


def train_fixed(items: list[tuple[str, Any, dict]], folder: Path, trials: TrialSettings,
                data: DataSplits, seed: int, resume: bool, resume_hint: str,
                table: str = "candidates") -> dict[str, ChildRecord]:
    """Train a fixed list of ``(label, spec, recipe overrides)`` on Ray through the driver
    (each once, seeded from ``seed`` and its identity); returns label -> record.

    The driver's state is ``folder/driver.pt``: a folder that holds one is only continued
    with ``resume`` (else a one-line error points at ``resume_hint``). A KeyboardInterrupt
    (Ctrl-C, or Tune stopping early) leaves it to continue from.
    """
    driver = ChildDriver(lambda t: (items[t[0]][1], items[t[0]][2]), FixedList(len(items)),
                         budget=len(items), reward=RewardConfig(target_macs=1, w=0.0),
                         target=Target(resolution=None), seed=seed)  # reward = accuracy
    state = folder / STATE_FILE
    if state.is_file():
        if not resume:
            raise ConfigError(f"{folder} already holds trained {table}; continue with "
                              f"{resume_hint}, or choose another out=")
        driver.restore(state)
    folder.mkdir(parents=True, exist_ok=True)
    train_children(driver, data, trials, folder, len(items), table=table, metric="accuracy")
    if not driver.finished():
        raise KeyboardInterrupt
    return {items[r.tokens[0]][0]: r for r in driver.trained_records()}
