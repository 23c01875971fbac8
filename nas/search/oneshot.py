"""A one-shot search: two stages, one result.

1. The supernet (:mod:`nas.supernet`) trains as a Ray Train job: shared weights on training
   batches of paths the strategy samples, the strategy on validation batches of those paths
   (:mod:`nas.ray.train`). At the end, distinct networks drawn from the
   strategy's final policy are scored on the supernet and ranked.
2. The ``top_k`` of that ranking (and the reference network) are trained standalone by the
   proxy evaluator on Ray Tune workers (:func:`nas.search.runner.train_fixed`), and the best
   of them by its standalone reward is ``best.yaml``. With ``oneshot.handoff: search`` the
   second stage is instead a multi-trial search (:func:`nas.search.run.search`) that starts
   from the strategy the supernet trained, its reward statistics restarted
   (:meth:`~controller.base.Strategy.restart_rewards`), and trains what it proposes, until
   its ``budget`` or its ``time_budget``, which the supernet's training counts toward.

The run folder holds what a multi-trial search's holds (the children table, now with the
supernet's score beside the standalone one, ``top/``, ``pareto/``, TensorBoard,
``summary.json``) and ``supernet/`` (the checkpoint, every sample, the epochs). ``--resume``
continues the supernet from its last epoch and never trains a finished standalone child again.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from controller import make_strategy
from nas.arch.cost import count, count_macs
from nas.arch.io import load_spec, save_spec
from nas.arch.units import format_macs
from nas.core import runs
from nas.core.errors import ConfigError
from nas.core.files import json_text, write_text_atomic
from nas.ray import runtime
from nas.ray import train as ray_train
from nas.search.driver import OK, REFERENCE, STATE_FILE, Target, scored_by_accuracy
from nas.search.reward import RewardConfig, compute_reward
from nas.search.run import SearchOutcome, load_space, search
from nas.search.run import summary_lines as search_lines
from nas.search.runlog import (
    Progress,
    TensorBoardLog,
    pareto_front,
    plot_front,
    record_metrics,
    save_specs,
    write_tables,
)
from nas.search.runner import train_fixed
from nas.search.settings import SearchSettings
from nas.search.stats import kendall_tau
from nas.supernet.plan import check_shareable, sharing_warnings
from nas.supernet.settings import SupernetSettings
from search_space import SearchSpace


def check_oneshot_folder(out: Path, resume: bool) -> None:
    """A new one-shot search needs a folder without a run; resuming needs its supernet."""
    holds = (out / "supernet" / "supernet.pt").is_file() or (out / STATE_FILE).exists()
    if resume and not (out / "supernet").is_dir():
        raise ConfigError(f"resume=True: {out} holds no one-shot search to continue (no "
                          "supernet/); check out=")
    if not resume and holds:
        raise ConfigError(f"{out} already holds a search; continue it with "
                          f"nas.run_search(resume=True, out={str(out)!r}), or choose another out=")


def layout(s: SearchSettings, o: SupernetSettings) -> tuple[int, float, float]:
    """(workers, CPUs per worker, GPUs per worker) of the supernet job."""
    workers = o.workers if o.workers is not None else s.trials.workers
    cpus = o.cpus_per_worker if o.cpus_per_worker is not None else s.trials.cpus_per_trial
    return workers, cpus, o.gpus_per_worker


def path_score(space: SearchSpace, reward: RewardConfig, target: Target
               ) -> Callable[[float, Sequence[int]], tuple[float, int]]:
    """The search's reward of a supernet path, ``score(accuracy, tokens) -> (reward, MACs)``:
    its accuracy and its MACs at the target setting (the supernet's workers call it)."""
    macs_of: dict[tuple[int, ...], int] = {}

    def score(accuracy: float, tokens: Sequence[int]) -> tuple[float, int]:
        key = tuple(tokens)
        if key not in macs_of:
            macs_of[key] = count_macs(space.decode(key), target.resolution, target.num_classes,
                                      target.in_channels)
        return compute_reward(accuracy, macs_of[key], reward).reward, macs_of[key]
    return score


def oneshot_search(s: SearchSettings, o: SupernetSettings, resume: bool, config_text: str,
                   say: Callable[[str], None] = lambda line: print(line, flush=True)
                   ) -> SearchOutcome:
    """Run (or continue) the one-shot search ``s`` with supernet settings ``o`` in ``s.out``."""
    check_oneshot_folder(s.out, resume)
    if s.time_budget is not None and o.handoff != "search":
        raise ConfigError("time_budget: a one-shot search with oneshot.handoff: top_k is sized "
                          "by oneshot.supernet.epochs and top_k; set oneshot.handoff=search "
                          "to stop at a wall time, or drop time_budget")
    if s.recheck.on and o.handoff != "search":
        raise ConfigError("recheck: a one-shot search with oneshot.handoff: top_k chooses "
                          "best.yaml among its top_k standalone networks and does not "
                          "re-check them; set oneshot.handoff=search, or recheck.seeds=0")
    workers, cpus, gpus = layout(s, o)
    if o.supernet.batch_size % workers:
        raise ConfigError(f"oneshot.supernet.batch_size {o.supernet.batch_size} does not split "
                          f"over {workers} workers; use a multiple of {workers}")
    if o.supernet.num_threads is None:
        o = o.replace(supernet=o.supernet.replace(num_threads=max(1, int(cpus))))

    out = s.out
    space = load_space(s.space)
    reference = load_spec(s.reference) if s.reference else None
    make_strategy(s.strategy, space.sizes(), seed=s.seed, **dict(s.strategy_options))  # options
    data = s.data.load()
    _, n_shared = check_shareable(space, o.supernet.width_mult, data.num_classes,
                                  data.in_channels, o.max_params, o.split)
    runtime.init_ray(s.trials.address)
    ray_train.check_train_resources(workers, cpus, gpus)
    runtime.check_resources(s.trials.cpus_per_trial, s.trials.gpus_per_trial)
    runs.mark(out, "oneshot")
    write_text_atomic(out / "config.yaml", config_text)
    for line in sharing_warnings(space):
        say(f"note: {line}")

    r = o.supernet
    then = (f"the top {s.top_k} trained as proxies" if o.handoff == "top_k" else
            f"{s.strategy} goes on for {s.budget} children trained as proxies")
    say(f"search {s.name}: one-shot {s.strategy} over {space.name} "
        f"({space.distinct_size():.2e} networks), target {format_macs(s.target_macs)} MACs; "
        f"supernet {n_shared / 1e6:.2f}M shared parameters"
        f"{', one copy per activation' if o.split else ''} "
        f"(width {r.width_mult:g}, {r.resolution or data.image_size} px), "
        f"{r.epochs} epochs of {r.train_subset or len(data.train)} images on {workers} Ray Train "
        f"worker(s) x {cpus:g} CPU(s), then {then}; data "
        f"{data.name} ({len(data.train)} train / {len(data.val)} val)\nrun folder: {out}")

    t0 = time.time()
    job = ray_train.SupernetJob(space=space.to_dict(), settings=o, strategy=s.strategy,
                                strategy_options=dict(s.strategy_options),
                                score=path_score(space, s.reward, s.target), seed=s.seed,
                                workers=workers, cpus_per_worker=cpus, gpus_per_worker=gpus)
    # The second stage of a handoff has begun only once the supernet finished.
    if not (o.handoff == "search" and (out / STATE_FILE).is_file()):
        status = _supernet_phase(job, data, out, s, r.epochs)
        if status != "ok":
            raise ConfigError(f"the supernet's training loss became non-finite; lower "
                              f"oneshot.supernet.lr (now {r.lr:g}) and start a new run")
    state = ray_train.load_checkpoint(out / "supernet")
    assert state is not None and state["ranking"] is not None
    if o.handoff == "search":
        return _handoff(s, state, space.sizes(), config_text, say, t0, workers)
    ranking = state["ranking"][: s.top_k]
    say(f"supernet done: {len(state['samples'])} samples in {state['seconds']:.0f} s; "
        f"{len(state['ranking'])} candidates ranked, the top {len(ranking)} go to the proxy")

    items = [(f"rank{i}", space.decode(c["tokens"]), {}) for i, c in enumerate(ranking)]
    if reference is not None:
        items.append(("reference", reference, {}))
    trained = train_fixed(items, out / "standalone", s.trials, data, s.seed, resume=resume,
                          resume_hint=f"nas.run_search(resume=True, out={str(out)!r})",
                          table="children")
    records = _records(trained, {label: spec for label, spec, _ in items}, ranking, s)
    summary = _write_outputs(records, ranking, state, s, o, space, data, out,
                             time.time() - t0, workers)
    return SearchOutcome(out, True, summary)


def _handoff(s: SearchSettings, state: dict[str, Any], sizes: Any, config_text: str,
             say: Callable[[str], None], t0: float, workers: int) -> SearchOutcome:
    """The second stage as a multi-trial search from the strategy the supernet trained."""
    resume = (s.out / STATE_FILE).is_file()  # the search continues its own saved strategy
    strategy = None
    if not resume:
        strategy = make_strategy(s.strategy, sizes, seed=s.seed, **dict(s.strategy_options))
        strategy.load_state_dict(state["strategy"])
        strategy.restart_rewards()
    say(f"supernet done: {len(state['samples'])} samples in {state['seconds']:.0f} s; "
        f"{s.strategy} goes on from there with children trained as proxies")
    # The supernet's training counts toward the time budget of the whole search.
    outcome = search(s, resume, config_text, say, start=strategy, evaluator="oneshot",
                     spent=float(state["seconds"]))
    summary = {**outcome.summary, "evaluator": "oneshot",
               "session_seconds": round(time.time() - t0, 1),
               "supernet": {**_supernet_summary(state, workers), "handoff": "search"}}
    write_text_atomic(s.out / "summary.json", json_text(summary, indent=2) + "\n")
    return SearchOutcome(s.out, outcome.finished, summary)


def _supernet_summary(state: dict[str, Any], workers: int) -> dict[str, Any]:
    seconds = float(state["seconds"])
    samples = len(state["samples"])
    return {"epochs": int(state["epoch"]), "steps": int(state["step"]), "workers": workers,
            "samples": samples, "seconds": round(seconds, 1),
            "samples_per_hour": round(samples / seconds * 3600, 1) if seconds > 0 else None}


def _supernet_phase(job: Any, data: Any, out: Path, s: SearchSettings, epochs: int) -> str:
    tb = TensorBoardLog(out / "tensorboard")
    progress = Progress(epochs, 1, noun="supernet epochs", metric="sample reward")

    def on_progress(records: list[dict[str, Any]]) -> None:
        for rec in records:
            step = int(rec["step"])
            w = tb.writer
            w.add_scalar("supernet/train_loss", rec["train_loss"], step)
            w.add_scalar("supernet/lr", rec["lr"], step)
            w.add_scalar("supernet/samples", rec["samples"], step)
            w.add_scalar("supernet/images_per_second", rec["images_per_second"], step)
            if rec["elapsed"] > 0:
                w.add_scalar("supernet/samples_per_hour", rec["samples"] / rec["elapsed"] * 3600,
                             step)
            for key in ("reward_mean", "accuracy_mean", "best_reward"):
                if rec.get(key) is not None:
                    w.add_scalar(f"supernet/{key}", rec[key], step)
            tb.diagnostics(rec.get("diagnostics") or [])
        last = records[-1]
        progress.update(int(last["epoch"]), last.get("best_reward"), last.get("best_macs"), 0,
                        last["elapsed"] / max(1, int(last["epoch"])))

    try:
        return ray_train.run_supernet(job, data, out / "supernet", s.trials.max_failures, on_progress)
    finally:
        progress.close()
        tb.close()


def _records(trained: dict[str, Any], specs: dict[str, Any], ranking: list[dict[str, Any]],
             s: SearchSettings) -> list[tuple[Any, dict[str, Any]]]:
    """Standalone records with the search's reward at the target setting, each with its
    supernet score (none for the reference)."""
    out = []
    for label, rec in trained.items():
        if label == "reference":
            extra: dict[str, Any] = {"supernet_accuracy": None, "supernet_reward": None,
                                     "supernet_rank": None}
            tokens: tuple[int, ...] = ()
            child = -1
        else:
            i = int(label[len("rank"):])
            c = ranking[i]
            extra = {"supernet_accuracy": c["accuracy"], "supernet_reward": c["reward"],
                     "supernet_rank": i + 1}
            tokens, child = tuple(c["tokens"]), i
        cost = count(specs[label], s.target.resolution, s.target.num_classes,
                     s.target.in_channels)
        params, macs = cost.params, cost.macs
        reward = (compute_reward(rec.accuracy, macs, s.reward).reward
                  if scored_by_accuracy(rec.status, s.reward) else s.reward.failure_reward)
        status = REFERENCE if label == "reference" else rec.status
        out.append((replace(rec, child=child, tokens=tokens, params=params, macs=macs,
                            reward=reward, status=status), extra))
    return sorted(out, key=lambda x: (x[0].status == "reference", x[0].child))


def _write_outputs(records: list[tuple[Any, dict[str, Any]]], ranking: list[dict[str, Any]],
                   state: dict[str, Any], s: SearchSettings, o: SupernetSettings, space: Any,
                   data: Any, out: Path, seconds: float, workers: int) -> dict[str, Any]:
    import matplotlib.pyplot as plt

    write_tables([rec for rec, _ in records], out, "children",
                 [extra for _, extra in records])

    children = [rec for rec, _ in records if rec.status != REFERENCE]
    reference = next((rec for rec, _ in records if rec.status == REFERENCE), None)
    ok = sorted((r for r in children if r.status == OK), key=lambda r: (-r.reward, r.macs))
    provenance = {"search": {
        "run": s.name, "strategy": s.strategy, "evaluator": "oneshot", "space": space.name,
        "space_hash": space.hash(), "reward": s.reward.to_dict(),
        "target": {"resolution": s.target.resolution, "num_classes": s.target.num_classes,
                   "in_channels": s.target.in_channels},
        "data": data.name, "proxy": s.trials.recipe.to_dict(), "oneshot": o.to_dict()}}
    if ok:
        save_spec(space.decode(ok[0].tokens).replace(name=f"{s.name}-best").with_meta(
            **provenance, metrics=record_metrics(ok[0])), out / "best.yaml")
        save_specs([(r, space.decode(r.tokens)) for r in ok[: s.top_k]], out / "top", provenance)
    front = pareto_front(children)
    save_specs([(r, space.decode(r.tokens)) for r in front], out / "pareto", provenance)

    tb = TensorBoardLog(out / "tensorboard")
    for rec in children:
        tb.child(rec, rec.child)
    if reference is not None:
        tb.child(reference, 0)
    fig = plot_front(children, reference, s.target_macs, s.name)
    tb.figure(fig, len(children))
    fig.savefig(out / "accuracy_vs_macs.png")
    plt.close(fig)
    tb.close()

    paired = [(extra["supernet_reward"], rec.reward) for rec, extra in records
              if rec.status == OK and extra["supernet_reward"] is not None]
    tau = kendall_tau(*zip(*paired)) if len(paired) >= 2 else math.nan
    summary = {
        "run": s.name, "evaluator": "oneshot", "finished": True, "converged_early": False,
        "children_trained": len(children),
        "children_failed": sum(1 for r in children if r.status not in ("ok", "timeout")),
        "children_timeout": sum(1 for r in children if r.status == "timeout"),
        "cached_samples": 0, "session_seconds": round(seconds, 1),
        "children_seconds": round(sum(r.seconds for r in children), 1),
        "best": None if not ok else {"child": ok[0].child, "reward": ok[0].reward,
                                     "accuracy": ok[0].accuracy, "macs": ok[0].macs,
                                     "params": ok[0].params, "blocks": ok[0].blocks},
        "reference": None if reference is None else {
            "reward": reference.reward, "accuracy": reference.accuracy,
            "macs": reference.macs, "params": reference.params},
        "supernet": {**_supernet_summary(state, workers), "handoff": "top_k",
                     "candidates": len(state["ranking"]), "top_k": len(ranking),
                     "kendall_tau_top_k": None if math.isnan(tau) else tau},
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def summary_lines(summary: dict[str, Any], out: Path) -> list[str]:
    """What a finished one-shot search prints."""
    sn = summary["supernet"]
    rate = f" ({sn['samples_per_hour']:.0f} samples/hour)" if sn["samples_per_hour"] else ""
    head = (f"supernet: {sn['samples']} samples in {sn['seconds']:.0f} s{rate} on "
            f"{sn['workers']} worker(s)")
    if sn.get("handoff") == "search":
        return [f"{head}; then the strategy went on with children trained as proxies"
                ] + search_lines(summary, out)
    tau = ("" if sn["kendall_tau_top_k"] is None
           else f"; Kendall tau supernet vs standalone reward over them {sn['kendall_tau_top_k']:.2f}")
    return [f"{head}; {sn['candidates']} candidates ranked, top "
            f"{sn['top_k']} trained standalone{tau}"] + search_lines(summary, out)
