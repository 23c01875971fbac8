"""The jobs: search, scale, train, fidelity and the pipeline, each from its settings to its
result, on the one code path of the Python API (:mod:`nas.cli.api`) and of the commands.

Each job takes its settings (:class:`~nas.search.settings.SearchSettings`, ...), checks
everything before anything is written (one-line :class:`~nas.core.errors.ConfigError`\\ s
naming the settings' keys), claims its run folder, runs, and returns its result object
(:mod:`nas.cli.results`). :func:`settings` layers a job's settings as every caller does
(:func:`nas.core.settings.load`), and reads a saved run's settings to resume it. No
argparse: the commands map their flags to these settings' keys.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping, TypeVar

from nas.cli.results import (
    FidelityResult,
    PipelineResult,
    ScaleResult,
    SearchResult,
    TrainResult,
)
from nas.core import runs
from nas.core.errors import ConfigError, NoResultError
from nas.core.files import dump_yaml_text, read_yaml
from nas.core.settings import flat_keys, layers, load, parse_overrides

S = TypeVar("S")
Say = Callable[[str], None]
Folder = Callable[[Path], None]


def _print(line: str) -> None:
    print(line, flush=True)


def _nothing(folder: Path) -> None:
    pass


def dump(settings: Any) -> str:
    """A job's settings as the YAML its run folder keeps (``config.yaml``)."""
    return dump_yaml_text(settings.to_mapping(), sort_keys=False, default_flow_style=False)


# --------------------------------------------------------------------------- settings


def settings(cls: type[S], given: S | None = None, *, preset: str | None = None,
             config: Any = None, overrides: Any = None) -> S:
    """A job's settings: ``given`` (a settings object) or ``cls``'s defaults, the bundled
    ``preset``, the ``config`` (a YAML path or a mapping), then the ``overrides``."""
    if given is None:
        return load(cls, preset=preset, config=config, overrides=overrides)
    if not isinstance(given, cls):
        raise ConfigError(f"settings={given!r}: give {cls.__name__} (or leave it out and pass "
                          "the settings as keywords)")
    if preset is not None or config is not None:
        raise ConfigError("settings= are complete settings: leave out preset= and config= (or "
                          "leave out settings=)")
    return load(cls, overrides=overrides, base=given.to_mapping()) if overrides else given


def no_layers(preset: Any, config: Any) -> None:
    """Resuming takes the run's saved settings, not a preset's or a file's."""
    if preset is not None or config is not None:
        raise ConfigError("resume=True continues with the run's saved settings; leave out "
                          "preset= and config= (override only what may change)")


def saved_settings(cls: type[S], out: Any, kinds: str | tuple[str, ...], overrides: Any,
                   may_change: Collection[str], job: str) -> S:
    """The settings of the run in ``out`` (its ``config.yaml``), with the ``overrides`` of
    what may change on resuming (``may_change``: keys, or sections whose keys all may);
    anything else given differently is an error."""
    if out is None:
        raise ConfigError("resume=True needs out=DIR, the folder of the run to continue")
    out = Path(out)
    runs.claim(out, kinds, resume=True)
    path = out / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"resume=True: {out} holds no {job} to continue (no config.yaml); "
                          "check out=")
    saved = read_yaml(path)
    if not isinstance(saved, Mapping):
        raise ConfigError(f"resume=True: {path} is not a run's settings (expected a mapping); "
                          "check out=")
    try:
        base = cls.from_mapping(saved).to_mapping()  # type: ignore[attr-defined]
    except ConfigError as e:
        raise ConfigError(f"resume=True: {path} is not the settings of a {job} of this version "
                          f"({e}); a run written by an earlier version cannot be continued: "
                          "start it again in a new out=") from None
    merged = layers(cls, overrides=overrides, base=base)
    before, after = flat_keys(base), flat_keys(merged)
    for key in sorted(after):
        if after[key] != before.get(key) and key != "out" and not any(
                key == m or key.startswith(m + ".") for m in may_change):
            raise ConfigError(f"resume=True keeps the run's settings; {key!r} cannot change "
                              f"(only {', '.join(sorted(may_change))} can)")
    merged["out"] = str(out)
    return cls.from_mapping(merged)  # type: ignore[attr-defined]


@contextlib.contextmanager
def ray_of_this_call() -> Iterator[None]:
    """A local Ray that the block starts is stopped when it ends, as a command's ends with
    its process; a Ray that was running before (``ray.init`` in a notebook, a cluster) is
    left as it was."""
    from nas.ray import runtime
    before = runtime.ray_running()
    try:
        yield
    finally:
        if not before and runtime.ray_running():
            runtime.shutdown_ray()


# --------------------------------------------------------------------------- search

# What a resumed search may change (the rest is the run's).
SEARCH_RESUMABLE = ("workers", "address", "budget", "time_budget", "cpus_per_trial",
                    "gpus_per_trial", "recheck")


def _plan(s: Any) -> list[tuple[str, Any, None]]:
    """What the workers will build, for a dry run: the reference and the space's extremes
    (every decision at its first and at its last choice), at the proxy's resolution."""
    from nas.arch.io import load_spec
    from nas.core.files import config_path
    from search_space import SearchSpace

    space = SearchSpace.from_yaml(s.space if Path(s.space).is_file() else config_path(s.space))
    sizes = space.sizes()
    plan = [("the space's first choices", space.decode(tuple(0 for _ in sizes)), None),
            ("the space's last choices", space.decode(tuple(n - 1 for n in sizes)), None)]
    if s.reference:
        plan.append((f"the reference {s.reference}", load_spec(s.reference), None))
    return plan


def search(s: Any, *, resume: bool = False, force: bool = False,
           on_folder: Folder = _nothing) -> Any:
    """The search ``s`` asks for (a :class:`~nas.search.settings.SearchSettings`), run to its
    end or to Ctrl-C (or continued, ``resume``). Returns the search's outcome; bad input
    raises a :class:`ConfigError` before anything is written, a finished search with no
    successful child a :class:`NoResultError`. ``force`` takes a target or a resolution
    that looks like a typo (a resumed run's were taken when it started)."""
    from controller import check_available
    from nas.search.oneshot import oneshot_search
    from nas.search.run import no_success_line, search as multi_trial
    from nas.search.settings import check_proxy_plan

    s.check(force or resume)
    check_available(s.strategy)
    check_proxy_plan(s.trials.recipe, _plan(s), "the proxy settings (proxy.resolution, "
                     "proxy.width_mult)")
    s = s.resolved()
    runs.check_path(s.out)
    on_folder(s.out)
    oneshot = s.evaluator == "oneshot"
    runs.claim(s.out, "oneshot" if oneshot else "search", resume)
    if oneshot:
        outcome = oneshot_search(s, s.oneshot, resume, dump(s))
    else:
        outcome = multi_trial(s, resume, dump(s))
    if outcome.finished and outcome.summary["best"] is None:
        raise NoResultError(no_success_line(outcome.summary, s.out))
    return outcome


def search_result(outcome: Any) -> SearchResult:
    from nas.arch.io import load_spec

    best_path = outcome.out / "best.yaml"
    best_path = best_path if best_path.is_file() else None
    return SearchResult(out=outcome.out, name=outcome.summary.get("run", ""),
                        finished=outcome.finished,
                        best=None if best_path is None else load_spec(best_path),
                        best_path=best_path, summary=outcome.summary)


# --------------------------------------------------------------------------- scale

# grid_search and compare: what a resumed scaling run still does (the grid and the compare
# table continue from their saved state, or start).
SCALE_RESUMABLE = ("workers", "address", "cpus_per_trial", "gpus_per_trial", "grid_search",
                   "compare")
# Settings of the grid search: given without grid_search, they would be silently ignored.
GRID_KEYS = ("phi", "grid.step", "grid.alpha_range", "grid.beta_range", "grid.gamma_range")


def check_grid_keys(s: Any, given: Mapping[str, Any]) -> None:
    """Grid settings given (``given``: the overrides) without ``grid_search``."""
    if s.grid_search:
        return
    keys = flat_keys(parse_overrides(given))
    found = next((k for k in GRID_KEYS if k in keys or any(g.startswith(k + ".") for g in keys)),
                 None)
    if found is not None:
        raise ConfigError(f"{found} sets the grid search, which runs only with grid_search=True; "
                          f"add grid_search=True, or drop {found} (a family's phi comes from "
                          "rule or the budgets)")


def _warn_product(c: Any, source: str, grid: Any) -> None:
    """A product far from the grid's target: the rules still apply; each step of phi just
    multiplies the MACs by that product instead (a warning on stderr)."""
    product = c.product()
    if abs(product - grid.target) > grid.tol:
        print(f"warning: coefficients {c} (from {source}): alpha*beta^2*gamma^2 = "
              f"{product:.4g}, more than the grid's tol {grid.tol:g} from {grid.target:g}, so "
              f"each step of phi multiplies the MACs by about {product:.3g}, not "
              f"{grid.target:g}", file=sys.stderr)


def _coefficients(s: Any) -> tuple[Any, str]:
    """The coefficients and where they come from, when no grid runs (``coefficients``,
    ``scaling``, the run folder's scaling.yaml, else the paper's); checked."""
    import scaler
    from nas.search.settings import check_coefficients

    if s.coefficients:
        c = scaler.Coefficients(*s.coefficients)
        _warn_product(c, "the given coefficients", s.grid)
        return c, "the given coefficients"
    if s.scaling or (s.out / "scaling.yaml").is_file():
        path = Path(s.scaling) if s.scaling else s.out / "scaling.yaml"
        c = scaler.load_scaling(path).coefficients
        check_coefficients(c, f"coefficients {c} (from {path})")
        _warn_product(c, str(path), s.grid)
        return c, str(path)
    return (scaler.PAPER_COEFFICIENTS,
            "the paper's coefficients (no grid search run; use grid_search=True to fit them)")


def _family(base: Any, s: Any, coefficients: Any,
            say: Say = _print) -> tuple[list, Path, Any]:
    """The members, their folder and (latency budgets) the
    :class:`~nas.scaling.latency.LatencyFamily`. Every MACs budget member lands within 3 %
    (see scaler.family.solve_budget) or this is a one-line error naming the member; a
    latency budget member lands within 5 % by prediction or is the closest, with a warning
    (nas.scaling.latency)."""
    import scaler
    if s.budget_ms is not None:
        from nas.scaling.latency import latency_family
        fam = latency_family(base, coefficients, s.budget_ms, s.latency,
                             resolution_multiple=s.resolution_multiple or 4, measure=False,
                             say=say)
        return list(fam.members), s.out / "family-latency", fam
    if s.budgets:
        return (scaler.fit_budgets(base, coefficients, list(s.budgets),
                                   resolution_multiple=s.resolution_multiple or 4,
                                   option="budgets"),
                s.out / "family-budgets", None)
    return (scaler.make_family(base, s.rule, coefficients,
                               resolution_multiple=s.resolution_multiple or 8),
            s.out / f"family-{s.rule}", None)


def _check_before_training(base: Any, s: Any, data: Any) -> None:
    """What the grid and the compare runs will build, dry (torch-free), and the cluster."""
    import scaler
    from nas.ray.runtime import check_address
    from nas.ray.tune_options import check_tune
    from nas.scaling.grid import proxy_base_resolution
    from nas.search.settings import check_proxy_plan

    res = proxy_base_resolution(s, data)
    plan = [("the baseline", base, res)]
    if s.grid_search:
        points = scaler.distinct_candidates(base, s.grid.candidates(), s.phi,
                                            s.resolution_multiple or 8, base_proxy_res=res,
                                            proxy_multiple=4, num_classes=data.num_classes)
        plan += [(f"grid candidate {p.coefficients} at {p.resolution} px", p.spec,
                  p.resolution) for p in points]
    check_proxy_plan(s.trials.recipe, plan, "proxy.resolution (or data.image_size when it is "
                                            "null)")
    check_address(s.trials.address)
    check_tune(s.trials.tune)


def scale(s: Any, *, resume: bool = False, force: bool = False, say: Say = _print,
          on_folder: Folder = _nothing) -> ScaleResult:
    """The scaling run ``s`` asks for (a :class:`~nas.search.settings.ScaleSettings`).
    What it prints goes to ``say``; bad input raises a :class:`ConfigError` before anything
    is written."""
    s.check(force or resume)
    s = s.resolved()
    runs.check_path(s.out)
    on_folder(s.out)
    runs.claim(s.out, "scale", resume)

    # Everything is checked before anything is written: the baseline, the coefficients,
    # the family (when the coefficients are known now), saved states to resume, the data,
    # what the workers will build and the cluster.
    import scaler
    from nas.arch.cost import count
    from nas.arch.io import load_spec
    from nas.arch.units import format_macs
    from nas.core.files import write_text_atomic
    from nas.scaling.grid import compare, grid_search

    base = load_spec(s.baseline)
    base_name = base.name or Path(s.baseline).stem
    coefficients, source = (None, "") if s.grid_search else _coefficients(s)
    if s.budget_ms is not None:  # the device's table and threads, before anything is written
        from nas.scaling.latency import device_table
        device_table(s.latency)
    family = None if coefficients is None else _family(base, s, coefficients, say)
    if resume:
        for part in ("grid", "compare"):
            if (s.out / part / "driver.pt").is_file():
                _readable_state(s.out / part / "driver.pt")
    data = s.data.load() if s.trains else None
    if s.trains:
        _check_before_training(base, s, data)

    cost = count(base)
    say(f"baseline {base_name} ({s.baseline}): {format_macs(cost.macs)} MACs, "
        f"{cost.params:,} params at {base.resolution}px\nrun folder: {s.out}")
    runs.mark(s.out, "scale")
    write_text_atomic(s.out / "config.yaml", dump(s))

    # 1. The coefficients.
    if s.grid_search:
        coefficients = grid_search(base, base_name, s, data, resume, say)
        source = f"grid search ({s.out / 'scaling.yaml'})"
    if s.rule != "official" or s.budgets:
        say(f"coefficients {coefficients} (product {coefficients.product():.3f}) from {source}")

    # 2. Single-dimension baselines at equal MACs.
    table = None
    if s.compare:
        table = compare(base, coefficients, s, data, resume, say)
        say("\n" + table)

    # 3. The family.
    members, folder, fam = family if family is not None else _family(base, s, coefficients,
                                                                     say)
    if fam is not None:  # latency budgets: each member measured whole
        from nas.scaling.latency import measure_members
        say("measuring each member whole:")
        fam = measure_members(fam, say)
        members, base = list(fam.members), fam.base
    files = scaler.write_family(members, folder, base_name, base=base)
    if fam is not None:
        from nas.core.files import dump_yaml
        write_text_atomic(folder / "latency.yaml", dump_yaml(fam.summary()))
    markdown = files.markdown.read_text()
    say(f"\n{markdown}")
    say(f"family specs: {folder}/*.yaml  tables: {files.markdown}, {files.csv}")
    return ScaleResult(out=s.out, name=s.name, baseline=s.baseline,
                       coefficients=tuple(coefficients.to_dict().values()), source=source,
                       family=files.specs, family_table=markdown, family_csv=files.csv,
                       scaling=s.out / "scaling.yaml" if s.grid_search else None,
                       compare=table)


def _readable_state(path: Path) -> None:
    """A saved driver state to continue from is readable (one line now, not after Ray
    started)."""
    from nas.search.driver import load_state
    load_state(path)


# --------------------------------------------------------------------------- train

# What a resumed training run may change (the rest is the run's, in last.pt).
TRAIN_RESUMABLE = ("epochs", "patience", "max_epochs_time", "threads", "device", "export",
                   "data")


def train_resumed(overrides: Mapping[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """The settings, spec and checkpoint of the training run in ``overrides['out']``, with
    what may change on resuming changed."""
    from dataclasses import replace

    from nas.arch.spec import spec_from_dict
    from nas.training.checkpoint import load_checkpoint
    from nas.training.fit import make_spec
    from nas.training.settings import TrainSettings

    given = dict(parse_overrides(overrides))
    out = given.pop("out", None)
    if out is None:
        raise ConfigError("resume=True needs out=DIR, the folder of the run to continue")
    runs.claim(out, "train", resume=True)
    path = Path(out) / "last.pt"
    ckpt = load_checkpoint(path)
    try:
        saved = TrainSettings.from_mapping(ckpt["config"])
    except ConfigError as e:
        raise ConfigError(f"{path}: its settings are not this version's ({e}); a run written "
                          "by an earlier version cannot be continued: train it again in a new "
                          "out=") from None
    spec_given = given.pop("spec", None)
    changes = TrainSettings.from_mapping({k: v for k, v in given.items()})  # checked
    for key in given:
        value = getattr(changes, key)
        if key not in TRAIN_RESUMABLE and value != getattr(saved, key):
            raise ConfigError(f"{key}: a resumed run keeps its settings "
                              f"({getattr(saved, key)!r} in {path}); only "
                              f"{', '.join(TRAIN_RESUMABLE)} may change")
    spec = spec_from_dict(ckpt["spec"], source=str(path))
    if spec_given is not None:
        other = make_spec(replace(saved, spec=str(spec_given)))
        if other != spec:
            raise ConfigError(f"spec={spec_given!r} is not the spec of the run in {out}; leave "
                              "spec out with resume=True")
    c = replace(saved, **{k: getattr(changes, k) for k in given if k in TRAIN_RESUMABLE},
                out=os.fspath(out))
    return c, spec, ckpt


def train_fresh(s: Any, force: bool = False) -> tuple[Any, Any]:
    """The resolved settings and spec of a new training run; its folder claimed."""
    from dataclasses import replace

    from nas.training.fit import default_out, make_spec

    if s.spec is None:
        raise ConfigError("spec is required: a spec YAML or a bundled name such as "
                          "efficientnet-b0 (or resume=True with out=DIR)")
    s.check(force)
    c = s.resolved()
    spec = make_spec(c)
    if c.out is None:
        c = replace(c, out=default_out(spec.name))
    runs.claim(c.out, "train", resume=False)
    if (Path(c.out) / "last.pt").exists():
        raise ConfigError(f"{c.out} already holds a training run (last.pt); continue it with "
                          f"{runs.continue_call('train', Path(c.out))}, or choose another out=")
    return c, spec


def train(c: Any, spec: Any, ckpt: Any, command: str, say: Say | None = None,
          on_folder: Folder = _nothing) -> TrainResult:
    """Train ``spec`` as ``c`` (resolved settings) says, continuing ``ckpt`` (a last.pt)
    if given; ``command`` is recorded in the checkpoint and ``metrics.json``."""
    from nas.training.fit import fit

    on_folder(Path(c.out))
    result = fit(c, spec, ckpt, command, say=say)
    out = Path(result.metrics["config"]["out"]) if result.metrics else Path(c.out)
    return TrainResult(out=out, status=result.status, epoch=result.epoch,
                       metrics=result.metrics)


# --------------------------------------------------------------------------- fidelity


def _search_of(run: Path) -> tuple[Any, dict[str, Any]]:
    """The settings and the driver state of the search in ``run``."""
    from nas.search.driver import load_state
    from nas.search.settings import SearchSettings

    if not (run / "config.yaml").is_file() or not (run / "driver.pt").is_file():
        raise ConfigError(f"run={str(run)!r}: not a search's run folder (config.yaml and "
                          "driver.pt expected); give the out= folder of a search")
    saved = read_yaml(run / "config.yaml")
    if not isinstance(saved, Mapping) or "target_flops" not in saved:
        raise ConfigError(f"run={str(run)!r}: its config.yaml is not a search's; give a "
                          "search's run folder")
    try:
        search_settings = SearchSettings.from_mapping(saved).resolved()
    except ConfigError as e:
        raise ConfigError(f"{run / 'config.yaml'}: not the settings of a search of this "
                          f"version ({e})") from None
    try:
        state = load_state(run / "driver.pt")
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file
        raise ConfigError(f"{run / 'driver.pt'}: cannot be read ({type(e).__name__}); is the "
                          "run folder complete?") from None
    return search_settings, state


def fidelity(f: Any, *, resume: bool = False, report: bool = False, say: Say = _print,
             on_folder: Folder = _nothing) -> FidelityResult:
    """The fidelity measurement ``f`` asks for (a
    :class:`~nas.search.settings.FidelitySettings`): train, or with ``report`` write the
    report over what has finished and train nothing."""
    from dataclasses import replace

    from nas.arch.cost import count_macs
    from nas.arch.io import load_spec
    from nas.arch.spec import spec_from_dict
    from nas.core.files import config_path
    from nas.fidelity.report import markdown
    from nas.fidelity.run import partial_report, pick_children, run_fidelity
    from nas.fidelity.settings import FidelityPlan, Picked
    from nas.search.driver import REFERENCE, ChildRecord
    from search_space import SearchSpace

    if f.run is None:
        raise ConfigError("run is required: a search's run folder, e.g. run='runs/NAME'")
    run_dir = Path(f.run)
    on_folder(run_dir)  # Ctrl-C's hint names it
    out = Path(f.out) if f.out else run_dir / "fidelity"
    # Its own folder (by default a sub-folder of the search's): never the search's files.
    runs.claim(out, "fidelity", resume or (report and out.exists()))
    long = f.long_recipe()
    proxies = f.proxy_recipes()
    search_settings, state = _search_of(run_dir)
    trials = search_settings.trials
    for key in ("workers", "cpus_per_trial", "gpus_per_trial", "address"):
        if getattr(f, key) is not None:
            trials = replace(trials, **{key: getattr(f, key)})
    space = SearchSpace.from_yaml(search_settings.space if Path(search_settings.space).is_file()
                                  else config_path(search_settings.space))
    records = [ChildRecord.from_dict(r) for r in state["records"]]
    chosen = pick_children(records, f.children)
    if len(chosen) < 3:
        raise ConfigError(f"{run_dir}: only {len(chosen)} children trained successfully; "
                          "fidelity needs at least 3 (run the search longer)")
    picked = [Picked(f"child{r.child}", space.decode(r.tokens), r.accuracy, r.macs, r.blocks)
              for r in chosen]
    ref = next((r for r in records if r.status == REFERENCE), None)
    if f.reference and ref is not None and ref.accuracy == ref.accuracy:
        spec = (spec_from_dict(state["reference"]) if state.get("reference")
                else load_spec(search_settings.reference))
        picked.append(Picked("reference", spec, ref.accuracy, count_macs(spec), ref.blocks))
    plan = FidelityPlan(run=run_dir, out=out, children=f.children, seeds=f.seeds, long=long,
                        proxies=proxies, proxy_seeds=f.proxy_seeds,
                        run_seed=search_settings.seed, trials=trials,
                        data=search_settings.data, include_reference=f.reference)
    if report:
        if not (out / "driver.pt").is_file():
            raise ConfigError(f"{out}: no trainings saved yet; run without report=True first "
                              "(with the same settings)")
        result = partial_report(plan, picked, say)
    else:
        result = run_fidelity(plan, picked, resume, say)
    return FidelityResult(out=out, report=result,
                          markdown=None if result is None else markdown(result))


# --------------------------------------------------------------------------- pipeline

# What may change on a resumed pipeline whatever has run.
PIPELINE_RESUMABLE = ("workers", "cpus_per_trial", "gpus_per_trial", "address", "max_failures",
                      "out", "data.path", "train.device", "train.threads", "train.export")
# The stage whose settings a key is: it may change on resuming only before that stage starts.
PIPELINE_OWNER = {"seed": "search", "data": "search", "target_flops": "search",
                  "baseline": "search", "search": "search", "budgets": "scale",
                  "scale": "scale", "train": "train", "name": "search"}
# Settings of what the scale stage emits, not of its grid: they may change until it is done.
PIPELINE_EMISSION = ("budgets", "scale.family", "scale.rule", "scale.resolution_multiple",
                     "scale.on_miss")


def pipeline_resumed(overrides: Any) -> Any:
    """The settings of the pipeline in ``overrides['out']`` (its ``config.yaml``), with what
    may still change changed: the trial resources always, a stage's settings until it has
    started, what the scale stage emits until it is done."""
    from nas.pipeline.state import PipelineState, started
    from nas.search.settings import PipelineSettings

    over = parse_overrides(overrides)
    out = over.get("out")
    if out is None:
        raise ConfigError("resume=True needs out=DIR, the folder of the pipeline to continue")
    out = Path(out)
    runs.claim(out, "pipeline", resume=True)
    path = out / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"resume=True: {out} holds no pipeline to continue (no config.yaml); "
                          "check out=")
    saved = read_yaml(path)
    if not isinstance(saved, Mapping) or "train" not in saved:
        raise ConfigError(f"{path}: not a pipeline's settings; check out=")
    try:
        base = PipelineSettings.from_mapping(saved).to_mapping()
    except ConfigError as e:
        raise ConfigError(f"resume=True: {path} is not the settings of a pipeline of this "
                          f"version ({e}); a run written by an earlier version cannot be "
                          "continued: start it again in a new out=") from None
    merged = layers(PipelineSettings, overrides=over, base=base)
    state = PipelineState.load(out)
    before, after = flat_keys(base), flat_keys(merged)
    for key in sorted(k for k in after if after[k] != before.get(k)):
        if key in PIPELINE_RESUMABLE:
            continue
        stage = PIPELINE_OWNER.get(key.split(".")[0], "search")
        if key in PIPELINE_EMISSION and state.status("scale") != "done":
            continue
        if started(state, stage):
            raise ConfigError(f"resume=True keeps the run's settings; {key!r} cannot change "
                              f"once the {stage} stage has started (only "
                              f"{', '.join(PIPELINE_RESUMABLE)} can)")
    merged["out"] = str(out)
    return PipelineSettings.from_mapping(merged)


def _references(refs: tuple[str, ...], taken: set[str]) -> tuple[tuple[str, str], ...]:
    from nas.arch.io import load_spec
    from nas.core.files import config_path

    references = []
    for ref in refs:
        spec = load_spec(str(ref))
        path = str(ref) if Path(str(ref)).is_file() else str(config_path(str(ref)))
        name = Path(str(ref)).stem if Path(str(ref)).is_file() else str(ref)
        references.append((name or spec.name, path))
    seen: set[str] = set()
    for name, _ in references:
        if name in taken or name in seen:
            raise ConfigError(f"train.references: {name!r} is listed twice or is the name of "
                              "a family member; give each model a distinct name")
        seen.add(name)
    return tuple(references)


def _members(p: Any, budget_names: list[str]) -> tuple[str, ...] | None:
    from nas.arch.units import format_macs, parse_macs

    if p.train.members is None:
        return None
    names = []
    for item in p.train.members:
        if item in ("budgets", "family") or item in budget_names:
            names.append(item)
            continue
        if item in ("b1", "b2", "b3", "b4", "b5", "b6", "b7"):
            if not p.family:
                raise ConfigError(f"train.members: {item!r} is a B1-B7 member, but no rule "
                                  "family is emitted; add scale.family=True")
            names.append(item)
            continue
        try:
            macs = parse_macs(item, "train.members")
        except ConfigError:
            raise ConfigError(f"train.members: {item!r} is not a member; use a budget "
                              f"({', '.join(budget_names) or 'none given'}), b1..b7, "
                              "budgets or family") from None
        if format_macs(macs) not in budget_names:
            raise ConfigError(f"train.members: {item!r} is not one of the budgets "
                              f"({', '.join(budget_names) or 'none given'})")
        names.append(format_macs(macs))
    if "family" in names and not p.family:
        raise ConfigError("train.members: 'family' needs a rule family; add scale.family=True")
    return tuple(names)


def _in_section(sec: str, fn: Callable[..., Any], *a: Any) -> Any:
    """A stage's check, its message naming the stage's keys from the pipeline's top."""
    from nas.search.settings import section_error

    try:
        return fn(*a)
    except ConfigError as e:
        text = str(e)
        if text.startswith(sec + "."):
            raise
        fields = {"search": ("target_flops", "target", "proxy", "data", "space", "reference",
                             "strategy"),
                  "scale": ("budgets", "proxy", "data", "grid", "coefficients", "baseline")}
        if text.startswith(("target_flops", "budgets", "data.", "seed")):
            raise
        raise section_error(sec, e, fields.get(sec, ())) from None


def pipeline_plan(p: Any, command: str = "", force: bool = False) -> Any:
    """Check every setting of a pipeline and build what its stages run (the name and run
    folder filled in). Nothing is written. ``force`` takes targets, budgets and resolutions
    that look like typos."""
    from dataclasses import replace
    from datetime import datetime

    from nas.arch.io import load_spec
    from nas.arch.units import format_macs
    from nas.core.checks import check_resolution
    from nas.pipeline.settings import PipelinePlan, TrainPlan
    from nas.search.settings import check_proxy_plan
    from nas.training.device import pick_device

    name = p.name or f"pipeline-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out = Path(p.out or Path("runs") / name)
    runs.check_path(out)  # before the stages' folders inside it are checked
    p = replace(p, name=name, out=out)
    if not p.budgets and not p.family:
        raise ConfigError("nothing to scale: give the family's budgets "
                          "(budgets=['600M', '1.2G']) or a rule family (scale.family=True)")
    search = None
    if p.baseline is not None:
        load_spec(p.baseline)  # the given baseline must load
    else:
        search = p.stage_search(name, out / "search").resolved()
        _in_section("search", search.check, force)
        from controller import check_available
        check_available(search.strategy)
        _in_section("search", check_proxy_plan, search.trials.recipe, _plan(search),
                    "search.proxy settings (search.proxy.resolution, search.proxy.width_mult)")
    scale = p.stage_scale(f"{name}-scale", out / "scale", p.baseline or "efficientnet-b0")
    _in_section("scale", scale.check, force)
    scale = replace(scale.resolved(), baseline="")  # the search's best child, once there is one
    t = p.train
    check_resolution(t.resolution, "train.resolution", force)
    budget_names = [format_macs(b) for b in (p.budget_macs or ())]
    members = _members(p, budget_names)
    references = _references(t.references, {"baseline", *budget_names, "b1", "b2", "b3", "b4",
                                            "b5", "b6", "b7"})
    template = replace(t.template, spec="efficientnet-b0", dataset=p.data.source,
                       data=p.data.path, val_size=p.data.val_size, seed=t.seeds[0],
                       resolution=t.resolution)
    try:
        pick_device(template.device)
    except ConfigError as e:
        raise ConfigError(f"train.device: {e}") from None
    plan = TrainPlan(template=template, resolution=t.resolution, seeds=t.seeds, members=members,
                     baseline=t.baseline, references=references)
    configs = {"pipeline": dump(p), "scale": dump(replace(scale, baseline=None)),
               "search": dump(search) if search is not None else ""}
    return PipelinePlan(name=name, out=out, search=search, baseline=p.baseline, scale=scale,
                        grid=p.grid, compare=p.scale.compare, family=p.family, train=plan,
                        configs=configs, command=command, on_miss=p.on_miss)


def pipeline(p: Any, *, resume: bool = False, force: bool = False, command: str = "",
             say: Say = _print, on_folder: Folder = _nothing) -> PipelineResult:
    """The pipeline ``p`` asks for (a :class:`~nas.search.settings.PipelineSettings`), run
    (or continued, ``resume``) to its end or to Ctrl-C."""
    from nas.core.errors import NasError
    from nas.pipeline.run import check_run_folder, run_pipeline
    from nas.ray.tune_options import check_tune

    plan = pipeline_plan(p, command, force or resume)
    on_folder(plan.out)
    runs.claim(plan.out, "pipeline", resume)
    check_run_folder(plan.out, resume)
    for stage in (plan.search, plan.scale):  # callbacks that do not import: one line now
        if stage is not None and stage.trials is not None:
            check_tune(stage.trials.tune)
    try:
        outcome = run_pipeline(plan, resume, say)
    except NasError as e:  # a stage failed: what finished is kept, and says how to go on
        raise NasError(f"{e} [completed stages are kept; continue with "
                       f"{runs.continue_call('pipeline', plan.out)}]") from None
    return PipelineResult(out=plan.out, finished=outcome.finished, stage=outcome.stage,
                          report=outcome.report)
