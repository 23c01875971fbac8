"""One search, start to end: the space, the strategy, the driver, the reference, children on
Ray, and every output of the run folder (docs/search.md has the table of outputs)."""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from nas.core import runs
from nas.core.errors import ConfigError
from nas.search.settings import SearchSettings


@dataclass(frozen=True)
class SearchOutcome:
    """What a search session ended with: ``summary`` is ``summary.json``'s content."""

    out: Path
    finished: bool
    summary: dict[str, Any]


def check_run_folder(out: Path, resume: bool) -> None:
    """A new search needs a folder without one; ``--resume`` needs one to continue."""
    if resume and not (out / "driver.pt").is_file():
        raise ConfigError(f"--resume: {out} holds no search to continue (no driver.pt); check --out")
    if not resume and (out / "driver.pt").exists():
        raise ConfigError(f"{out} already holds a search; continue it with --resume --out {out}, "
                          "or choose another --out")


def search(s: SearchSettings, resume: bool, config_text: str,
           say: Callable[[str], None] = lambda line: print(line, flush=True),
           start: Any = None, evaluator: str | None = None, spent: float = 0.0
           ) -> SearchOutcome:
    """Run (or continue) the search ``s`` in ``s.out``; ``config_text`` is written there as
    ``config.yaml`` once everything is known to be good.

    ``start``: a strategy to begin a new search with instead of a fresh one (a one-shot
    search's handoff); a resumed search continues the strategy saved in ``driver.pt``.
    ``evaluator``: recorded in the specs' provenance when not the proxy's alone.
    ``spent``: seconds a new search has already used of ``s.time_budget`` (a one-shot
    search's supernet phase); a resumed search counts its own saved seconds."""
    check_run_folder(s.out, resume)

    # Everything below is heavy: load it only once the settings are known to be good.
    from controller import make_strategy
    from nas.arch.io import load_spec, save_spec
    from nas.arch.units import format_macs
    from nas.core.files import config_path, json_text, write_text_atomic
    from nas.search import tune_adapter as ta
    from nas.search.driver import ChildDriver
    from nas.search.runlog import pareto_front, plot_front, record_metrics, save_specs
    from nas.search.runner import train_children
    from search_space import SearchSpace

    out = s.out
    ta.check_address(s.trials.address)  # a dead cluster: one line now, not a silent hang later
    ta.check_tune(s.trials.tune)        # callbacks that do not import: one line now
    state = ta.load_state(out / "driver.pt") if resume else None
    space = SearchSpace.from_yaml(s.space if Path(s.space).is_file() else config_path(s.space))
    reference = load_spec(s.reference) if s.reference else None

    def make_driver() -> ChildDriver:
        strategy = (start if start is not None and state is None else
                    make_strategy(s.strategy, space.sizes(), seed=s.seed,
                                  **dict(s.strategy_options)))
        d = ChildDriver(lambda tokens: (space.decode(tokens), {}), strategy, budget=s.budget,
                        reward=s.reward, target=s.target, reference=reference, seed=s.seed,
                        time_budget=s.time_budget, spent=spent)
        if state is not None:
            ta.restore_state(d, state, out / "driver.pt")
            d.budget = s.budget
            d.time_budget = s.time_budget
        return d

    # A saved state that does not fit is found before the data loads; a new search finds a
    # missing data set before the strategy's torch import.
    driver = make_driver() if resume else None
    if driver is not None:
        done = finished_summary(s, driver)
        if done is not None:  # nothing left to do: its summary, without data or Ray
            say(f"search {s.name} in {out} is finished; nothing left to resume")
            return SearchOutcome(out, True, done)
    data = s.data.load()
    driver = driver or make_driver()
    runs.mark(out, "search")  # creates the folder (a one-shot search's keeps its own mark)
    write_text_atomic(out / "config.yaml", config_text)

    provenance = {
        "search": {"run": s.name, "strategy": s.strategy,
                   **({"evaluator": evaluator} if evaluator else {}),
                   "space": space.name, "space_hash": space.hash(),
                   "reward": s.reward.to_dict(),
                   "target": {"resolution": s.target.resolution,
                              "num_classes": s.target.num_classes,
                              "in_channels": s.target.in_channels},
                   "data": data.name, "proxy": s.trials.recipe.to_dict()}}
    until = "" if s.time_budget is None else f" or {format_seconds(s.time_budget)}"
    say(f"search {s.name}: {s.strategy} over {space.name} "
        f"({space.distinct_size():.2e} networks), target {format_macs(s.target_macs)} MACs, "
        f"{s.budget} children{until}, {s.trials.workers} workers, data {data.name} "
        f"({len(data.train)} train / {len(data.val)} val)\nrun folder: {out}")

    def save_best(rec: Any, decision: Any = None) -> None:
        metrics = record_metrics(rec)
        if decision is not None:
            row = next(r for r in decision.table if r.child == rec.child)
            metrics["recheck"] = {"rewards": list(row.rewards), "mean": row.mean,
                                  "separated": decision.separated}
        save_spec(driver.spec_of(rec).replace(name=f"{s.name}-best").with_meta(
            **provenance, metrics=metrics), out / "best.yaml")

    def write_outputs(tb: Any, final: bool) -> None:
        best = driver.best(s.top_k)
        if best:
            top = [(r, driver.spec_of(r)) for r in best]
            save_best(best[0])
            save_specs(top, out / "top", provenance)
            front = pareto_front(driver.trained_records())
            save_specs([(r, driver.spec_of(r)) for r in front], out / "pareto", provenance)
        trained = driver.trained_records()
        if final or (trained and len(trained) % 10 == 0):
            import matplotlib.pyplot as plt
            fig = plot_front(trained, driver.reference_record(), s.target_macs, s.name)
            tb.figure(fig, len(trained))
            if final:
                fig.savefig(out / "accuracy_vs_macs.png")
            plt.close(fig)

    t0 = time.time()
    decision, chosen, interrupted = None, None, False
    try:
        train_children(driver, data, s.trials, out, s.budget, write_outputs)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: what finished is saved; --resume goes on
        interrupted = True
    top = driver.best(s.recheck.top) if s.recheck.on and driver.finished() and \
        not interrupted else []
    if top:
        from nas.search.recheck import recheck
        from nas.search.reward import compute_reward
        try:
            decision = recheck(top, driver.spec_of, s.recheck,
                               lambda acc, macs: compute_reward(acc, macs, s.reward).reward,
                               out, s.trials, data, s.seed,
                               f"python search.py --resume --out {out}", say)
        except KeyboardInterrupt:
            interrupted = True  # best.yaml stays the best single run until a resume decides
        else:
            chosen = next(r for r in top if r.child == decision.chosen)
            save_best(chosen, decision)
    summary = summarize(driver, s.name, time.time() - t0, decision, chosen)
    summary["finished"] = summary["finished"] and not interrupted
    if s.time_budget is not None:
        summary["time_budget"] = {"seconds": s.time_budget, "spent": round(driver.seconds(), 1),
                                  "reached": driver.out_of_time()}
    write_text_atomic(out / "summary.json", json_text(summary, indent=2) + "\n")
    return SearchOutcome(out, summary["finished"], summary)


def finished_summary(s: SearchSettings, driver: Any) -> dict[str, Any] | None:
    """The saved ``summary.json`` of a search that ``--resume`` has nothing left to do for,
    else None: the driver (with the resume's budget and time budget) is finished, the
    summary says so and counts the same children, and the re-check the resume asks for (if
    any) is recorded in it, with as many children and runs. The saved summary is what is
    compared, not the saved config: a one-shot search writes its config before this check."""
    import json

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
                                       "params": best[0].params, "blocks": best[0].blocks},
        "reference": None if ref is None else {"reward": ref.reward, "accuracy": ref.accuracy,
                                               "macs": ref.macs, "params": ref.params},
        **({} if decision is None else {"recheck": decision.to_dict()}),
    }


def summary_lines(s: dict[str, Any], out: Path) -> list[str]:
    """What a finished search prints."""
    from nas.arch.units import format_macs
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
                     f"{b['accuracy']:.4f}, {format_macs(b['macs'])} MACs, "
                     f"{b['params'] / 1e6:.2f}M params\n  {b['blocks']}")
    if s.get("recheck"):
        lines.append(s["recheck"]["explanation"])
    r = s["reference"]
    if r and r["accuracy"] is not None and not math.isnan(r["accuracy"]):
        lines.append(f"EfficientNet-B0 on the same proxy: reward {r['reward']:.4f}, accuracy "
                     f"{r['accuracy']:.4f}, {format_macs(r['macs'])} MACs")
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
