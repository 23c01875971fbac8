"""From data to trained models in one run folder: search, fit the coefficients, emit the
family, train the chosen models fully, write a report.

    OUT/config.yaml      the resolved pipeline settings (``--resume`` reads them)
    OUT/pipeline.json    the state: every stage's status, what it produced, its seconds
    OUT/search/          a search run folder (``search.py --resume --out OUT/search`` works)
    OUT/scale/           the grid (``scaling.yaml``), ``compare/``, ``family-budgets/``, ...
    OUT/train/M/seedS/   one ``nas.training.fit`` run per model and seed (last.pt, best.pt,
                         metrics.json, model.pt)
    OUT/report/          report.md, accuracy_vs_macs.png, results.csv, report.json
                         (:mod:`nas.pipeline.report`)

Each stage runs the project's own code (:func:`nas.search.run.search`,
:func:`nas.scaling.grid.grid_search` and ``compare``, :func:`scaler.fit_budgets` /
:func:`scaler.make_family`, :func:`nas.training.fit.fit`) with typed settings built by the
command line (:mod:`nas.cli.pipeline`). The state file (:mod:`nas.pipeline.state`) is
written atomically whenever a stage or a model starts or finishes, so an interruption
anywhere loses at most the work in progress: a finished stage is skipped, the search and
the grid continue from their driver state, and a model whose training was cut off
continues from its ``last.pt``, exactly.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

import scaler
from nas.arch.cost import count
from nas.arch.io import load_spec
from nas.arch.rounding import round_resolution
from nas.arch.spec import spec_from_dict
from nas.arch.units import format_macs
from nas.core import runs
from nas.core.errors import ConfigError, NasError
from nas.core.files import config_path, write_text_atomic
from nas.core.progress import Bar, format_duration
from nas.pipeline.report import write_report
from nas.pipeline.settings import PipelinePlan, TrainPlan
from nas.pipeline.state import (
    DONE,
    FINISHED,
    RUNNING,
    STATE_FILE,
    PipelineState,
    model_key,
)
from nas.ray.runtime import shutdown_ray
from nas.scaling.grid import compare, grid_search
from nas.search.driver import STATE_FILE as SEARCH_STATE_FILE
from nas.search.run import search, summary_lines
from nas.search.settings import ScaleSettings

Say = Callable[[str], None]


@dataclass(frozen=True)
class PipelineOutcome:
    """How a session ended: ``finished``, or stopped in ``stage`` (interrupted)."""

    out: Path
    finished: bool
    stage: str | None
    report: Path | None


# --------------------------------------------------------------------------- the run


def check_run_folder(out: Path, resume: bool) -> None:
    """A new pipeline needs an empty (or new) folder; resuming needs one to continue."""
    if resume:
        PipelineState.load(out)
        return
    if (out / STATE_FILE).exists():
        raise ConfigError(f"{out} already holds a pipeline; continue it with "
                          f"nas.run_pipeline(resume=True, out={str(out)!r}), or choose another "
                          "out=")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; choose another out= (a new pipeline starts "
                          "in an empty folder)")


def _print(line: str) -> None:
    print(line, flush=True)


def run_pipeline(p: PipelinePlan, resume: bool, say: Say = _print) -> PipelineOutcome:
    """Run (or continue) every stage of ``p`` in ``p.out``. Lines go to ``say``; printed
    (the default) to a terminal or a notebook, the training stage draws a progress bar over
    its models with the time left."""
    check_run_folder(p.out, resume)
    runs.mark(p.out, "pipeline")
    state = PipelineState.load(p.out) if resume else PipelineState.new(p.out, p.name)
    write_text_atomic(p.out / "config.yaml", p.configs["pipeline"])
    if p.command:
        state.data.setdefault("commands", []).append(p.command)
    state.save()
    say(f"pipeline {p.name}: run folder {p.out}")
    for stage, run in (("search", _search_stage), ("scale", _scale_stage),
                       ("train", _train_stage), ("report", _report_stage)):
        if state.status(stage) == DONE:
            say(f"{stage}: done, skipped ({_done_note(state, stage)})")
            continue
        state.start(stage)
        t0 = time.time()
        try:
            info = run(p, state, resume, say)
        except KeyboardInterrupt:
            info = None
        except NasError as e:
            state.fail(stage, str(e), time.time() - t0)
            raise
        if info is None:  # interrupted: the stage continues in the next session
            state.pause(stage, time.time() - t0)
            return PipelineOutcome(p.out, False, stage, None)
        state.finish(stage, time.time() - t0, **info)
        say(f"{stage}: done in {time.time() - t0:.0f} s")
    return PipelineOutcome(p.out, True, None, p.out / "report" / "report.md")


def _done_note(state: PipelineState, stage: str) -> str:
    st = state.stage(stage)
    if stage == "search":
        return st.get("baseline", "")
    if stage == "scale":
        return ", ".join(st.get("families", {}).values())
    if stage == "train":
        return f"{len(st.get('models', {}))} trained models under train/"
    return st.get("report", "")


# --------------------------------------------------------------------------- 1. search


def _search_stage(p: PipelinePlan, state: PipelineState, resume: bool, say: Say
                  ) -> dict[str, Any] | None:
    """Each stage returns what it produced (recorded in the state file), or None when it
    was interrupted."""
    if p.search is None:
        assert p.baseline is not None
        given = p.baseline if Path(p.baseline).is_file() else str(config_path(p.baseline))
        say(f"search: not run; the baseline is {given}")
        return {"baseline": given, "searched": False}
    s = p.search
    continuing = (s.out / SEARCH_STATE_FILE).is_file()
    if continuing:
        say(f"search: continuing the search in {s.out}")
    outcome = search(s, continuing, p.configs["search"], say)
    if not outcome.finished:
        return None
    say("\n".join(summary_lines(outcome.summary, s.out)))
    best = s.out / "best.yaml"
    if not best.is_file():
        raise NasError(f"search: no child trained successfully, so there is no baseline (see "
                       f"{s.out / 'children.csv'}); fix the cause and start a new pipeline")
    return {"baseline": str(best), "searched": True, "summary": outcome.summary}


def baseline_path(state: PipelineState) -> str:
    path = state.stage("search").get("baseline")
    if not path:
        raise ConfigError(f"{state.path}: the search stage recorded no baseline; the state "
                          "file is incomplete")
    return str(path)


# --------------------------------------------------------------------------- 2-3. scale


def _scale_stage(p: PipelinePlan, state: PipelineState, resume: bool, say: Say
                 ) -> dict[str, Any] | None:
    base_file = baseline_path(state)
    base = load_spec(base_file)
    base_name = base.name or Path(base_file).stem
    s = replace(p.scale, baseline=base_file)
    cost = count(base)
    say(f"scale: baseline {base_name} ({base_file}): {format_macs(cost.macs)} MACs, "
        f"{cost.params:,} params at {base.resolution}px")
    runs.mark(s.out, "scale")  # a scale run folder of its own inside the pipeline's
    cfg = yaml.safe_load(p.configs["scale"])
    cfg["baseline"] = base_file
    write_text_atomic(s.out / "config.yaml",
                      yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False))

    data = s.data.load() if (p.grid or p.compare) else None
    if p.grid:
        coefficients = grid_search(base, base_name, s, data, resume, say)
        source = str(s.out / "scaling.yaml")
    else:
        assert s.coefficients is not None
        coefficients = scaler.Coefficients(*s.coefficients)
        source = "given (scale.coefficients)"
    say(f"scale: coefficients {coefficients} (product {coefficients.product():.3f}) from "
        f"{source}")
    if p.compare:
        say("\n" + compare(base, coefficients, s, data, resume, say))

    families: dict[str, str] = {}
    emitted: dict[str, list[tuple[str, str]]] = {"budget": [], "family": []}
    if s.budgets:
        members = _budget_members(base, s, coefficients, p.on_miss, say)
        folder = s.out / "family-budgets"
        files = scaler.write_family(members, folder, base_name, base=base)
        families["budgets"] = str(folder)
        emitted["budget"] = [(m.name, str(path)) for m, path in zip(members, files.specs)]
        say(f"\n{files.markdown.read_text()}")
    if p.family:
        members = _rule_family(base, s, coefficients, say)
        folder = s.out / f"family-{s.rule}"
        files = scaler.write_family(members, folder, base_name, base=base)
        families[s.rule] = str(folder)
        emitted["family"] = [(m.name, str(path)) for m, path in zip(members, files.specs)]
        say(f"\n{files.markdown.read_text()}")

    models = _models_to_train(p, base_file, base, emitted)
    say("scale: models to train: " + ", ".join(
        f"{m['id']} ({format_macs(m['macs'])} MACs, {m['train_resolution']}px)" for m in models))
    return {"coefficients": coefficients.to_dict(), "coefficients_from": source,
            "families": families, "models": models,
            "compare": str(s.out / "compare") if p.compare else None}


def _budget_members(base: Any, s: ScaleSettings, coefficients: Any, on_miss: str,
                    say: Say) -> list:
    """One member per budget (as ``scale.py --budgets`` fits them); a budget that no phi
    lands within 3 % of (it falls in a jump of the MACs) is an error with ``on_miss:
    error``, else the closest reachable model, with a warning and its miss in the table."""
    multiple = s.resolution_multiple or 4
    if on_miss == "error":
        return scaler.fit_budgets(base, coefficients, list(s.budgets),
                                  resolution_multiple=multiple)
    members = []
    for budget in s.budgets or ():
        try:
            members.append(scaler.fit_budget(base, coefficients, budget, multiple))
        except ConfigError as e:
            try:
                closest = scaler.fit_budget(base, coefficients, budget, multiple,
                                            tolerance=0.99)
            except ConfigError:
                raise e from None  # out of reach at any phi: no closest model either
            say(f"warning: {e}; writing the closest reachable model instead (scale.on_miss: "
                "closest; see the 'vs target' column)")
            members.append(closest)
    return members


def _rule_family(base: Any, s: ScaleSettings, coefficients: Any, say: Say) -> list:
    """B1-B7 by ``s.rule`` (as ``scale.py`` emits them)."""
    try:
        return scaler.make_family(base, s.rule, coefficients,
                                  resolution_multiple=s.resolution_multiple or 8)
    except ConfigError as e:
        if s.rule != "budget":
            raise
        say(f"warning: {e}; writing the closest reachable model instead (see the 'vs target' "
            "column)")
        return scaler.make_family(base, "budget", coefficients,
                                  resolution_multiple=s.resolution_multiple or 8, tolerance=0.99)


def select_members(wanted: tuple[str, ...] | None, budget_ids: list[str],
                   family_ids: list[str]) -> list[str]:
    """The family members ``wanted`` names, in the family's order (budgets, then B1-B7).

    ``None`` is every budget member; ``budgets`` and ``family`` name groups; anything else is
    a member's name (a budget as ``format_macs`` writes it, or b1..b7)."""
    if wanted is None:
        return list(budget_ids)
    chosen: set[str] = set()
    for item in wanted:
        if item == "budgets":
            chosen.update(budget_ids)
        elif item == "family":
            chosen.update(family_ids)
        elif item in budget_ids or item in family_ids:
            chosen.add(item)
        else:
            raise ConfigError(f"train.members: {item!r} is not a member of the emitted family "
                              f"({', '.join(budget_ids + family_ids)})")
    return [m for m in budget_ids + family_ids if m in chosen]


def train_resolution(plan: TrainPlan, spec_resolution: int, base_resolution: int) -> int:
    return round_resolution(plan.resolution, spec_resolution / base_resolution,
                            plan.resolution_multiple)


def _models_to_train(p: PipelinePlan, base_file: str, base: Any,
                     emitted: Mapping[str, list[tuple[str, str]]]) -> list[dict[str, Any]]:
    entries: list[tuple[str, str, str]] = []
    if p.train.baseline:
        entries.append(("baseline", "baseline", base_file))
    budget_ids = [n for n, _ in emitted["budget"]]
    family_ids = [n for n, _ in emitted["family"]]
    paths = dict(emitted["budget"] + emitted["family"])
    for member in select_members(p.train.members, budget_ids, family_ids):
        entries.append((member, "budget" if member in budget_ids else "family", paths[member]))
    for name, path in p.train.references:
        entries.append((name, "reference", path))
    models = []
    for model_id, group, path in entries:
        spec = load_spec(path)
        cost = count(spec)
        models.append({"id": model_id, "group": group, "spec": path, "name": spec.name,
                       "macs": cost.macs, "params": cost.params,
                       "spec_resolution": spec.resolution,
                       "train_resolution": train_resolution(p.train, spec.resolution,
                                                            base.resolution)})
    return models


# --------------------------------------------------------------------------- 4. train


def _train_stage(p: PipelinePlan, state: PipelineState, resume: bool, say: Say
                 ) -> dict[str, Any] | None:
    if "ray" in sys.modules:  # the proxy stages' local cluster is idle from here on
        shutdown_ray()
    models = state.stage("scale")["models"]
    total = len(models) * len(p.train.seeds)
    bar = Bar(total, "models") if say is _print else None
    if bar is not None and bar.drawn:
        say = bar.write
    done, trained, t0 = 0, 0, time.time()
    try:
        for m in models:
            for seed in p.train.seeds:
                done += 1
                key = model_key(m["id"], seed)
                folder = p.out / "train" / m["id"] / f"seed{seed}"
                rec = state.models.get(key, {})
                if rec.get("status") in FINISHED and (rec.get("status") == "failed"
                                                      or (folder / "metrics.json").is_file()):
                    say(f"train {key} ({done}/{total}): {rec['status']}, skipped")
                    continue
                if not _train_one(p, state, m, seed, key, folder, f"({done}/{total})", say):
                    return None
                trained += 1
                if bar is not None:
                    per = (time.time() - t0) / trained
                    bar.update(done, f"{per:.0f} s per model" + (
                        f", ~{format_duration(per * (total - done))} left" if done < total
                        else ""))
    finally:
        if bar is not None:
            bar.close()
    return {"models_trained": len(state.models)}


def _train_one(p: PipelinePlan, state: PipelineState, m: Mapping[str, Any], seed: int,
               key: str, folder: Path, count_text: str, say: Say) -> bool:
    """Train (or continue) one model; False when interrupted."""
    from nas.training.checkpoint import load_checkpoint  # these import torch
    from nas.training.fit import TrainSettings, check, fit, make_spec, resolve

    t = p.train.template
    last = folder / "last.pt"
    if last.is_file():
        ckpt: Mapping[str, Any] | None = load_checkpoint(last)
        assert ckpt is not None
        saved = TrainSettings.from_mapping(ckpt["config"])
        # What may change on a resumed run (as effnas train --resume allows).
        c = replace(saved, threads=t.threads, device=t.device, export=t.export,
                    data=t.data, out=str(folder))
        spec = spec_from_dict(ckpt["spec"], source=str(last))
        say(f"train {key} {count_text}: continuing from {last} (epoch {ckpt['epoch']})")
    else:
        ckpt = None
        c = resolve(replace(t, spec=m["spec"], seed=seed, resolution=m["train_resolution"],
                            out=str(folder)))
        check(c)
        spec = make_spec(c)
        say(f"train {key} {count_text}: {m['spec']} at {c.resolution}px, seed {seed}")
    state.models[key] = {"status": RUNNING, "model": m["id"], "seed": seed,
                         "folder": str(folder)}
    state.save()
    prefix = f"  [{key}] "
    try:
        result = fit(c, spec, ckpt, p.command, say=lambda line: say(prefix + line))
    except NasError as e:  # no epoch finished: a result, the other models go on
        say(f"train {key}: failed: {e}")
        state.models[key] = {"status": "failed", "model": m["id"], "seed": seed,
                             "folder": str(folder), "error": str(e)}
        state.save()
        return True
    if result.status == "interrupted" or result.metrics is None:
        state.models[key]["status"] = "interrupted"
        state.models[key]["epoch"] = result.epoch
        state.save()
        return False
    mt = result.metrics
    if mt["best_val_accuracy"] is None:  # diverged before any epoch was good: nothing kept
        say(f"train {key}: {result.status}: {mt['reason']}")
        state.models[key] = {"status": result.status, "model": m["id"], "seed": seed,
                             "folder": str(folder), "error": mt["reason"],
                             "metrics": str(folder / "metrics.json")}
        state.save()
        return True
    state.models[key] = {
        "status": result.status, "model": m["id"], "seed": seed, "folder": str(folder),
        "best_val_accuracy": mt["best_val_accuracy"], "best_epoch": mt["best_epoch"],
        "epochs_run": mt["epochs_run"], "test_accuracy": mt["test_accuracy"],
        "seconds": mt["seconds"], "checkpoint": str(folder / "best.pt"),
        "export": (mt["export"] or {}).get("path"), "metrics": str(folder / "metrics.json")}
    state.save()
    test = ("no test split" if mt["test_accuracy"] is None
            else f"test {mt['test_accuracy']:.4f}")
    say(f"train {key}: {result.status}, best val {mt['best_val_accuracy']:.4f} at epoch "
        f"{mt['best_epoch']}, {test}, {mt['seconds']:.0f} s")
    return True


# --------------------------------------------------------------------------- 5. report


def _report_stage(p: PipelinePlan, state: PipelineState, resume: bool, say: Say
                  ) -> dict[str, Any] | None:
    path = write_report(p, state)
    say(f"report: {path}")
    return {"report": str(path)}
