"""Train every child a driver hands out on Ray, keeping the run folder's tables, TensorBoard
and the progress line up to date after each result (and once more at the end)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from nas.data import DataSplits
from nas.search.driver import SCORED, STOPPED, TIMEOUT, ChildDriver
from nas.search.settings import TrialSettings


def train_children(driver: ChildDriver, data: DataSplits, trials: TrialSettings, out: Path,
                   total: int, after_records: Callable[[Any, bool], None] | None = None,
                   table: str = "children", metric: str = "reward") -> None:
    """Run the driver to the end (or to Ctrl-C) on Ray.

    ``after_records(tb, final)`` writes the caller's own outputs at the same moments as the
    tables; ``table`` names the table files and the progress line's noun, ``metric`` what the
    driver's rewards are.
    """
    from nas.search import tune_adapter as ta
    from nas.search.runlog import Progress, TensorBoardLog, write_tables

    tb = TensorBoardLog(out / "tensorboard")
    progress = Progress(total, trials.workers, noun=table, metric=metric,
                        time_left=lambda: None if driver.time_budget is None
                        else driver.time_budget - driver.seconds())

    def on_records(records: list) -> None:
        for r in records:
            tb.child(r, max(r.child, 0))
        tb.diagnostics(driver.pop_diagnostics())
        write_tables(driver.records, out, table)
        if after_records is not None:
            after_records(tb, False)
        trained = driver.trained_records()
        best = driver.best(1)
        walls = [r.wall_seconds for r in trained if r.wall_seconds > 0]
        progress.update(len(trained), best[0].reward if best else None,
                        best[0].macs if best else None,
                        sum(1 for r in trained if r.status not in SCORED),
                        sum(walls) / len(walls) if walls else None,
                        sum(1 for r in trained if r.status == TIMEOUT),
                        sum(1 for r in trained if r.status == STOPPED))

    if not driver.finished():  # a resumed run with nothing left to train starts no Ray
        ta.init_ray(trials.address, run_dir=out)
        ta.check_resources(trials.cpus_per_trial, trials.gpus_per_trial)
    tune_dir = out / "tune"
    session = f"session{len(list(tune_dir.glob('session*'))) if tune_dir.exists() else 0}"
    try:
        if not driver.finished():
            ta.run_trials(driver, data, trials, out, session, on_records)
    finally:
        progress.close()
        write_tables(driver.records, out, table)
        if after_records is not None:
            after_records(tb, True)
        tb.close()


def train_fixed(items: list[tuple[str, Any, dict]], folder: Path, trials: TrialSettings,
                data: DataSplits, seed: int, resume: bool, resume_hint: str,
                table: str = "candidates") -> dict[str, Any]:
    """Train a fixed list of ``(label, spec, recipe overrides)`` on Ray through the driver
    (each once, seeded from ``seed`` and its identity); returns label -> record.

    The driver's state is ``folder/driver.pt``: a folder that holds one is only continued
    with ``resume`` (else a one-line error points at ``resume_hint``). A KeyboardInterrupt
    (Ctrl-C, or Tune stopping early) leaves it to continue from.
    """
    from controller import FixedList
    from nas.core.errors import ConfigError
    from nas.search import tune_adapter as ta
    from nas.search.driver import Target
    from nas.search.reward import RewardConfig

    driver = ChildDriver(lambda t: (items[t[0]][1], items[t[0]][2]), FixedList(len(items)),
                         budget=len(items), reward=RewardConfig(target_macs=1, w=0.0),
                         target=Target(resolution=None), seed=seed)  # reward = accuracy
    state = folder / "driver.pt"
    if state.is_file():
        if not resume:
            raise ConfigError(f"{folder} already holds trained {table}; continue with "
                              f"{resume_hint}, or choose another --out")
        ta.restore_state(driver, ta.load_state(state), state)
    folder.mkdir(parents=True, exist_ok=True)
    train_children(driver, data, trials, folder, len(items), table=table, metric="accuracy")
    if not driver.finished():
        raise KeyboardInterrupt
    return {items[r.tokens[0]][0]: r for r in driver.trained_records()}
