"""One search, start to end: the space, the strategy, the driver, the reference, children on
Ray, the re-check of the best, and every output of the run folder (docs/search.md has the
table of outputs).

:func:`search` is a sequence of named stages: check what is asked, restore or build the
driver, load the data, open the run folder, train the children, re-check the best, write the
summary. :class:`SearchOutputs` writes ``best.yaml``, ``top/``, ``pareto/`` and the
accuracy-versus-MACs plot as results come in.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from controller import Strategy, make_strategy
from nas.arch.io import load_spec, save_spec
from nas.arch.spec import ArchSpec
from nas.arch.units import format_macs
from nas.core import runs
from nas.core.errors import ConfigError
from nas.core.files import config_path, json_text, write_text_atomic
from nas.data import DataSplits
from nas.ray.runtime import check_address
from nas.ray.tune_options import check_tune
from nas.search.driver import (
    OK,
    STATE_FILE,
    ChildDriver,
    ChildRecord,
    child_key,
    load_state,
    restore_state,
)
from nas.latency.table import LatencyTable
from nas.search import latency_target
from nas.search.recheck import (
    FOLDER,
    RecheckDecision,
    Rechecked,
    RecheckSettings,
    decide,
    done_runs,
    run_label,
)
from nas.search.runlog import pareto_front, plot_front, record_metrics, save_specs
from nas.search.runner import train_children, train_fixed
from nas.search.settings import SearchSettings, TrialSettings
from search_space import SearchSpace


def _print(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True)
class SearchOutcome:
    """What a search session ended with: ``summary`` is ``summary.json``'s content."""

    out: Path
    finished: bool
    summary: dict[str, Any]


def check_run_folder(out: Path, resume: bool) -> None:
    """A new search needs a folder without one; resuming needs one to continue."""
    if resume and not (out / STATE_FILE).is_file():
        raise ConfigError(f"resume=True: {out} holds no search to continue (no driver.pt); "
                          "check out=")
    if not resume and (out / STATE_FILE).exists():
        raise ConfigError(f"{out} already holds a search; continue it with "
                          f"nas.run_search(resume=True, out={str(out)!r}), or choose another out=")


def search(s: SearchSettings, resume: bool, config_text: str,
           say: Callable[[str], None] = _print, start: Strategy | None = None,
           evaluator: str | None = None, spent: float = 0.0) -> SearchOutcome:
    """Run (or continue) the search ``s`` in ``s.out``; ``config_text`` is written there as
    ``config.yaml`` once everything is known to be good.

    ``start``: a strategy to begin a new search with instead of a fresh one (a one-shot
    search's handoff); a resumed search continues the strategy saved in ``driver.pt``.
    ``evaluator``: recorded in the specs' provenance when not the proxy's alone.
    ``spent``: seconds a new search has already used of ``s.time_budget`` (a one-shot
    search's supernet phase); a resumed search counts its own saved seconds."""
    check_run_folder(s.out, resume)
    check_address(s.trials.address)  # a dead cluster: one line now, not a silent hang later
    check_tune(s.trials.tune)        # callbacks that do not import: one line now
    space = load_space(s.space)
    reference = load_spec(s.reference) if s.reference else None
    table = None
    if s.target_ms is not None:  # a bad table file is found before anything else
        table = (latency_target.run_table(s.out, space, reference, s.target) if resume else
                 latency_target.given_table(s.latency_table, space, reference, s.target)
                 if s.latency_table is not None else None)
        if table is not None:
            say(latency_target.table_line(table))
    driver = None
    if resume:  # a saved state that does not fit is found before the data loads
        driver = resumed_driver(s, space, reference, latency_fn(s, table))
        done = finished_summary(s, driver)
        if done is not None:  # nothing left to do: its summary, without data or Ray
            say(f"search {s.name} in {s.out} is finished; nothing left to resume")
            return SearchOutcome(s.out, True, done)
    data = s.data.load()  # a new search finds a missing data set before the strategy's torch
    if s.target_ms is not None and table is None:  # before Ray: this machine's table
        table = latency_target.device_table(space, reference, s.target, s.latency_threads,
                                            say)
    driver = driver or new_driver(s, space, reference, start, spent, latency_fn(s, table))
    open_run_folder(s.out, config_text)
    if table is not None and not resume:
        latency_target.save_copy(table, space, reference, s.target, s.out)
    say(opening_line(s, space, data))
    outputs = SearchOutputs(s, driver, provenance(s, space, data, evaluator, table))
    t0 = time.time()
    interrupted = train(driver, data, s, outputs)
    decision, chosen = None, None
    if not interrupted and s.recheck.on and driver.finished():
        decision, chosen, interrupted = recheck_stage(s, driver, data, outputs, say)
    summary = final_summary(s, driver, time.time() - t0, decision, chosen, interrupted)
    write_text_atomic(s.out / "summary.json", json_text(summary, indent=2) + "\n")
    return SearchOutcome(s.out, summary["finished"], summary)


# --------------------------------------------------------------------------- the stages


def load_space(space: str) -> SearchSpace:
    """The space of ``space``: a YAML file, else a bundled space's name."""
    return SearchSpace.from_yaml(space if Path(space).is_file() else config_path(space))


def latency_fn(s: SearchSettings, table: LatencyTable | None
               ) -> Callable[[ArchSpec], float] | None:
    """spec -> predicted latency (ms) at the target setting, from ``table`` (None: none)."""
    return None if table is None else latency_target.latency_of(table, s.target)


def driver_for(s: SearchSettings, space: SearchSpace, reference: ArchSpec | None,
               strategy: Strategy, spent: float = 0.0,
               latency: Callable[[ArchSpec], float] | None = None) -> ChildDriver:
    """A driver of the search ``s`` over ``space`` that asks ``strategy`` (``latency``: a
    latency search's prediction)."""
    return ChildDriver(lambda tokens: (space.decode(tokens), {}), strategy, budget=s.budget,
                       reward=s.reward, target=s.target, reference=reference, seed=s.seed,
                       time_budget=s.time_budget, spent=spent, latency=latency)


def new_driver(s: SearchSettings, space: SearchSpace, reference: ArchSpec | None,
               start: Strategy | None, spent: float,
               latency: Callable[[ArchSpec], float] | None = None) -> ChildDriver:
    """The driver of a new search: ``start``'s strategy, or a fresh one of ``s.strategy``."""
    strategy = start if start is not None else make_strategy(
        s.strategy, space.sizes(), seed=s.seed, **dict(s.strategy_options))
    return driver_for(s, space, reference, strategy, spent, latency)


def resumed_driver(s: SearchSettings, space: SearchSpace, reference: ArchSpec | None,
                   latency: Callable[[ArchSpec], float] | None = None) -> ChildDriver:
    """The driver saved in ``s.out``, with the budget and time budget of ``s`` (a resume may
    raise either)."""
    path = s.out / STATE_FILE
    state = load_state(path)
    fresh = make_strategy(s.strategy, space.sizes(), seed=s.seed, **dict(s.strategy_options))
    driver = driver_for(s, space, reference, fresh, latency=latency)
    restore_state(driver, state, path)
    driver.budget = s.budget
    driver.time_budget = s.time_budget
    return driver


def open_run_folder(out: Path, config_text: str) -> None:
    """Mark the folder as a search's (a one-shot search's keeps its own mark) and write the
    resolved config."""
    runs.mark(out, "search")  # creates the folder
    write_text_atomic(out / "config.yaml", config_text)


def provenance(s: SearchSettings, space: SearchSpace, data: DataSplits,
               evaluator: str | None, table: LatencyTable | None = None) -> dict[str, Any]:
    """What every spec the search writes records of where it came from (a latency search:
    the device its latency table was measured on)."""
    return {"search": {"run": s.name, "strategy": s.strategy,
                       **({"evaluator": evaluator} if evaluator else {}),
                       "space": space.name, "space_hash": space.hash(),
                       "reward": s.reward.to_dict(),
                       **({} if table is None else {"latency_table": {
                           "file": latency_target.TABLE_FILE,
                           "device": table.describe()}}),
                       "target": {"resolution": s.target.resolution,
                                  "num_classes": s.target.num_classes,
                                  "in_channels": s.target.in_channels},
                       "data": data.name, "proxy": s.trials.recipe.to_dict()}}


def opening_line(s: SearchSettings, space: SearchSpace, data: DataSplits) -> str:
    """What a search prints when it starts: what it searches, for how long, and where."""
    until = "" if s.time_budget is None else f" or {format_seconds(s.time_budget)}"
    return (f"search {s.name}: {s.strategy} over {space.name} "
            f"({space.distinct_size():.2e} networks), target {s.target_text()}, "
            f"{s.budget} children{until}, {s.trials.workers} workers, data {data.name} "
            f"({len(data.train)} train / {len(data.val)} val)\nrun folder: {s.out}")


@dataclass(frozen=True)
class SearchOutputs:
    """The specs and the plot a search keeps up to date in its run folder."""

    s: SearchSettings
    driver: ChildDriver
    provenance: Mapping[str, Any]

    def save_best(self, rec: ChildRecord, decision: RecheckDecision | None = None) -> None:
        """``best.yaml``: ``rec``'s spec with its metrics (and the re-check's, if any)."""
        metrics = record_metrics(rec)
        if decision is not None:
            row = next(r for r in decision.table if r.child == rec.child)
            metrics["recheck"] = {"rewards": list(row.rewards), "mean": row.mean,
                                  "separated": decision.separated}
        spec = self.driver.spec_of(rec).replace(name=f"{self.s.name}-best")
        save_spec(spec.with_meta(**self.provenance, metrics=metrics), self.s.out / "best.yaml")

    def write(self, tb: Any, final: bool) -> None:
        """After results: the best, ``top/`` and ``pareto/``; every tenth child and at the end,
        the plot (to TensorBoard, and at the end to ``accuracy_vs_macs.png``, a latency
        search's to ``accuracy_vs_latency.png``)."""
        driver, out = self.driver, self.s.out
        best = driver.best(self.s.top_k)
        if best:
            self.save_best(best[0])
            save_specs([(r, driver.spec_of(r)) for r in best], out / "top", self.provenance)
            front = pareto_front(driver.trained_records(), self.s.reward.metric)
            save_specs([(r, driver.spec_of(r)) for r in front], out / "pareto", self.provenance)
        trained = driver.trained_records()
        if final or (trained and len(trained) % 10 == 0):
            self.plot(tb, trained, final)

    def plot(self, tb: Any, trained: Sequence[ChildRecord], final: bool) -> None:
        import matplotlib.pyplot as plt
        latency = self.s.target_ms is not None
        fig = plot_front(trained, self.driver.reference_record(),
                         self.s.target_ms if latency else self.s.target_macs, self.s.name,
                         metric="latency" if latency else "macs")
        tb.figure(fig, len(trained))
        if final:
            fig.savefig(self.s.out / ("accuracy_vs_latency.png" if latency
                                      else "accuracy_vs_macs.png"))
        plt.close(fig)


def train(driver: ChildDriver, data: DataSplits, s: SearchSettings,
          outputs: SearchOutputs) -> bool:
    """Train the children on Ray; True when Ctrl-C or SIGTERM stopped it (what finished is
    saved, and ``--resume`` goes on)."""
    try:
        train_children(driver, data, s.trials, s.out, s.budget, outputs.write)
    except KeyboardInterrupt:
        return True
    return False


def recheck_stage(s: SearchSettings, driver: ChildDriver, data: DataSplits,
                  outputs: SearchOutputs, say: Callable[[str], None]
                  ) -> tuple[RecheckDecision | None, ChildRecord | None, bool]:
    """Re-check the best ``s.recheck.top`` children and make the chosen one ``best.yaml``:
    (decision, chosen, interrupted). Interrupted, ``best.yaml`` stays the best single run
    until a resume decides."""
    top = driver.best(s.recheck.top)
    if not top:
        return None, None, False
    try:
        decision = recheck_best(top, driver.spec_of, s.recheck, driver.reward_of,
                                s.out, s.trials, data, s.seed,
                                f"nas.run_search(resume=True, out={str(s.out)!r})", say)
    except KeyboardInterrupt:
        return None, None, True
    chosen = next(r for r in top if r.child == decision.chosen)
    outputs.save_best(chosen, decision)
    return decision, chosen, False


def recheck_best(top: Sequence[ChildRecord], spec_of: Callable[[ChildRecord], ArchSpec],
                 settings: RecheckSettings, reward_of: Callable[[float, ChildRecord], float],
                 out: Path, trials: TrialSettings, data: DataSplits, run_seed: int,
                 resume_hint: str, say: Callable[[str], None]) -> RecheckDecision:
    """Train the missing re-check runs of the ``top`` records (the search's best, best
    first) on Ray and decide (:mod:`nas.search.recheck`). ``reward_of(accuracy, record)`` is
    the search's reward of the record's network at that accuracy. A Ctrl-C raises KeyboardInterrupt with every finished run kept for
    the next call."""
    folder = out / FOLDER
    wanted = [(r, seed, spec_of(r)) for r in top for seed in range(1, settings.seeds + 1)]
    keys = {run_label(r.child, seed): child_key(spec, {"seed": seed})
            for r, seed, spec in wanted}
    done = done_runs(folder)
    items = [(run_label(r.child, seed), spec, {"seed": seed}) for r, seed, spec in wanted
             if keys[run_label(r.child, seed)] not in done]
    say(f"re-checking the best {len(top)} children with {settings.seeds} more seed(s) each "
        f"before choosing best.yaml ({len(items)} runs to train)")
    if items:
        n = len(list(folder.glob("session*"))) if folder.is_dir() else 0
        try:
            train_fixed(items, folder / f"session{n}", trials, data, run_seed, resume=False,
                        resume_hint=resume_hint, table="children")
        finally:
            done = done_runs(folder)
    rows = []
    for r in top:
        runs = [done.get(keys[run_label(r.child, seed)]) for seed in range(1, settings.seeds + 1)]
        ok = [x for x in runs if x is not None and x.status == OK]
        rows.append(Rechecked(r.child, r.macs,
                              (r.reward, *(reward_of(x.accuracy, r) for x in ok)),
                              failed=len(runs) - len(ok)))
    return decide(rows)

def final_summary(s: SearchSettings, driver: ChildDriver, seconds: float,
                  decision: RecheckDecision | None, chosen: ChildRecord | None,
                  interrupted: bool) -> dict[str, Any]:
    """``summary.json`` of this session (:func:`summarize`), not finished when interrupted,
    with the time budget's use when there is one."""
    summary = summarize(driver, s.name, seconds, decision, chosen)
    summary["finished"] = summary["finished"] and not interrupted
    if s.time_budget is not None:
        summary["time_budget"] = {"seconds": s.time_budget, "spent": round(driver.seconds(), 1),
                                  "reached": driver.out_of_time()}
    return summary


def finished_summary(s: SearchSettings, driver: Any) -> dict[str, Any] | None:
    """The saved ``summary.json`` of a search that ``--resume`` has nothing left to do for,
    else None: the driver (with the resume's budget and time budget) is finished, the
    summary says so and counts the same children, and the re-check the resume asks for (if
    any) is recorded in it, with as many children and runs. The saved summary is what is
    compared, not the saved config: a one-shot search writes its config before this check."""
    path = s.out / "summary.json"
    if not driver.finished() or not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    trained = driver.trained_records()
    if (not isinstance(summary, dict) or summary.get("finished") is not True
            or summary.get("children_trained") != len(trained)):
        return None
    if s.recheck.on:
        ok = sum(1 for r in trained if r.status == "ok")
        done = summary.get("recheck")
        candidates = done.get("candidates") if isinstance(done, dict) else None
        if not isinstance(candidates, list) or len(candidates) != min(s.recheck.top, ok):
            return None
        for c in candidates:
            if not isinstance(c, dict) or (len(c.get("rewards") or []) + int(c.get("failed", 0))
                                           != 1 + s.recheck.seeds):
                return None
    return summary


def format_seconds(seconds: float) -> str:
    """A time budget as it is read best: ``90 s``, ``30 min``, ``1.5 h``."""
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def summarize(driver: Any, name: str, seconds: float, decision: Any = None,
              chosen: Any = None) -> dict[str, Any]:
    """``summary.json``: counts, times, the best child (``chosen``, the re-check's choice,
    when there was one, see :mod:`nas.search.recheck`), the reference and the most common
    reason children failed (None when none did). Non-finite numbers are written as null."""
    trained = driver.trained_records()
    best = [chosen] if chosen is not None else driver.best(1)
    ref = driver.reference_record()
    failed = [r for r in trained if r.status not in ("ok", "timeout", "stopped")]
    common = Counter(r.error for r in failed).most_common(1)
    return {
        "run": name, "finished": driver.finished(), "converged_early": driver.converged,
        "children_trained": len(trained),
        "children_failed": len(failed),
        "children_timeout": sum(1 for r in trained if r.status == "timeout"),
        "children_stopped": sum(1 for r in trained if r.status == "stopped"),
        "most_common_error": None if not common else {"error": common[0][0],
                                                      "children": common[0][1]},
        "cached_samples": sum(1 for r in driver.records if r.status == "cached"),
        "session_seconds": round(seconds, 1),
        "children_seconds": round(sum(r.seconds for r in trained), 1),
        "best": None if not best else {"child": best[0].child, "reward": best[0].reward,
                                       "accuracy": best[0].accuracy, "macs": best[0].macs,
                                       **_latency(best[0]),
                                       "params": best[0].params, "blocks": best[0].blocks},
        "reference": None if ref is None else {"reward": ref.reward, "accuracy": ref.accuracy,
                                               "macs": ref.macs, **_latency(ref),
                                               "params": ref.params},
        **({} if decision is None else {"recheck": decision.to_dict()}),
    }


def _latency(r: ChildRecord) -> dict[str, float]:
    """A latency search's record's predicted latency (nothing in a MACs search)."""
    return {} if r.latency_ms is None else {"latency_ms": r.latency_ms}


def _latency_text(d: Mapping[str, Any]) -> str:
    from nas.latency.units import format_latency
    ms = d.get("latency_ms")
    return "" if ms is None else f", {format_latency(ms)} predicted"


def summary_lines(s: dict[str, Any], out: Path) -> list[str]:
    """What a finished search prints."""
    timeouts = f", {s['children_timeout']} timed out" if s.get("children_timeout") else ""
    if s.get("children_stopped"):
        timeouts += f", {s['children_stopped']} stopped early by the scheduler"
    lines = [f"done: {s['children_trained']} children ({s['children_failed']} failed{timeouts}) "
             f"in {s['session_seconds']:.0f} s"]
    tb = s.get("time_budget")
    if tb and tb["reached"]:
        lines[0] += f", stopped by the time budget ({format_seconds(tb['seconds'])})"
    if s["best"]:
        b = s["best"]
        lines.append(f"best child {b['child']}: reward {b['reward']:.4f}, accuracy "
                     f"{b['accuracy']:.4f}, {format_macs(b['macs'])} MACs{_latency_text(b)}, "
                     f"{b['params'] / 1e6:.2f}M params\n  {b['blocks']}")
    if s.get("recheck"):
        lines.append(s["recheck"]["explanation"])
    r = s["reference"]
    if r and r["accuracy"] is not None and not math.isnan(r["accuracy"]):
        lines.append(f"EfficientNet-B0 on the same proxy: reward {r['reward']:.4f}, accuracy "
                     f"{r['accuracy']:.4f}, {format_macs(r['macs'])} MACs{_latency_text(r)}")
    best = f"best spec: {out / 'best.yaml'}   " if s["best"] else ""
    lines.append(f"{best}table: {out / 'children.csv'}\n"
                 f"TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
    return lines


def no_success_line(s: dict[str, Any], out: Path) -> str:
    """The one line a finished search with no successful child ends with."""
    common = s.get("most_common_error")
    why = ""
    if common:
        text = common["error"] if len(common["error"]) <= 160 else common["error"][:157] + "..."
        why = f"; most often ({common['children']}x): {text}"
    return (f"the search finished but no child trained successfully ({s['children_failed']} "
            f"of {s['children_trained']} failed{why}); every child's reason is in the error "
            f"column of {out / 'children.csv'}")
