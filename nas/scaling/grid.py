"""Scaling runs that train on Ray: the coefficient grid (step 1 of compound scaling) and the
single-dimension comparison, both as fixed lists of candidates trained like a search's
children (:func:`nas.search.runner.train_fixed`, reward = proxy accuracy). The scaling
itself (the grid's points, the choice, the family) is :mod:`scaler`, pure Python."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import scaler
from nas.arch.cost import count_macs, count_params
from nas.arch.io import save_spec
from nas.arch.spec import ArchSpec
from nas.arch.units import format_macs
from nas.core.errors import NoResultError
from nas.core.files import write_csv, write_text_atomic
from nas.data import DataSplits
from nas.search.driver import ChildRecord
from nas.search.runner import train_fixed
from nas.search.settings import ScaleSettings
from scaler import compare as cmp
from scaler.recheck import Rechecked, decide


def proxy_base_resolution(s: ScaleSettings, data: DataSplits) -> int:
    """The resolution the baseline itself is trained at on the proxy."""
    assert s.trials is not None
    res = s.trials.recipe.resolution
    return int(res) if res is not None else int(data.image_size)


def train_list(items: list[tuple[str, ArchSpec, dict]], folder: Path, s: ScaleSettings,
               data: DataSplits, resume: bool) -> dict[str, ChildRecord]:
    """Train a fixed list of (label, spec, proxy overrides) on Ray; returns label -> record."""
    assert s.trials is not None
    return train_fixed(items, folder, s.trials, data, s.seed, resume,
                       f"nas.run_scale(resume=True, out={str(s.out)!r})")


def grid_search(base: ArchSpec, base_name: str, s: ScaleSettings, data: DataSplits,
                resume: bool, say: Callable[[str], None]) -> Any:
    """Train every distinct grid candidate once, re-train the best few with more seeds,
    choose (``scaler.recheck``), write ``scaling.yaml`` and return the coefficients."""
    started = datetime.now(timezone.utc)
    t0 = time.time()
    grid = s.grid.candidates()
    points = scaler.distinct_candidates(
        base, grid, s.phi, s.resolution_multiple or 8,
        base_proxy_res=proxy_base_resolution(s, data), proxy_multiple=4,
        num_classes=data.num_classes)
    say(scaler.summarize(points, len(grid)))
    items = [(f"{i}", p.spec, {"resolution": p.resolution}) for i, p in enumerate(points)]
    records = train_list(items, s.out / "grid", s, data, resume)
    results = []
    for i, p in enumerate(points):
        r = records.get(f"{i}")
        ok = r is not None and r.status == "ok"
        results.append(scaler.GridResult(p.coefficients, r.accuracy if ok else None,
                                         count_macs(p.spec), count_params(p.spec), p.resolution,
                                         r.trial if r is not None else None))
    if not any(r.ok for r in results):
        raise NoResultError(f"no grid candidate trained successfully ({len(results)} failed); "
                            f"every candidate's reason is in the error column of "
                            f"{s.out / 'grid' / 'candidates.csv'}")
    decision = None
    if s.grid.recheck_seeds > 0:
        ranked = sorted((i for i, r in enumerate(results) if r.ok),
                        key=lambda i: (-results[i].accuracy, results[i].macs))
        top = ranked[: s.grid.recheck_top]
        say(f"re-training the best {len(top)} candidates with {s.grid.recheck_seeds} more "
            f"seeds each before choosing")
        again = [(f"{i}/{seed}", points[i].spec, {"resolution": points[i].resolution,
                                                   "seed": seed})
                 for i in top for seed in range(1, s.grid.recheck_seeds + 1)]
        more = train_list(again, s.out / "recheck", s, data, resume)
        rows = []
        for i in top:
            accs = [results[i].accuracy] + [
                more[f"{i}/{seed}"].accuracy for seed in range(1, s.grid.recheck_seeds + 1)
                if f"{i}/{seed}" in more and more[f"{i}/{seed}"].status == "ok"]
            rows.append(Rechecked(points[i].coefficients, tuple(accs), results[i].macs))
        decision = decide(rows, s.grid.tie_rule)
        chosen = decision.chosen
        say(decision.explain())
    else:
        chosen = scaler.select_best(results).coefficients
    scaler.write_scaling(chosen, results, s.out / "scaling.yaml", phi=s.phi,
                         grid=s.grid, baseline_name=base_name, baseline_path=s.baseline,
                         grid_points=len(grid), distinct=len(points), started=started,
                         finished=datetime.now(timezone.utc), recheck=decision)
    say(f"grid done in {time.time() - t0:.0f} s: chose {chosen}; written to "
        f"{s.out / 'scaling.yaml'}")
    return chosen


def compare(base: ArchSpec, c: Any, s: ScaleSettings, data: DataSplits, resume: bool,
            say: Callable[[str], None]) -> str:
    """Train the width-, depth- and resolution-only scalings at the compound model's MACs;
    write ``compare/compare.md`` and ``compare.csv``; return the Markdown table."""
    assert s.trials is not None
    models = cmp.single_dimension_models(base, c, s.resolution_multiple or 8,
                                         proxy_base_resolution(s, data))
    say(f"compare: {len(models)} models at about {format_macs(count_macs(models[-1].spec))} MACs")
    items = [(m.label, m.spec, {"resolution": m.proxy_resolution}) for m in models]
    folder = s.out / "compare"
    records = train_list(items, folder, s, data, resume)
    accuracy = {label: (r.accuracy if r.status == "ok" else None) for label, r in records.items()}
    rows = cmp.table_rows(models, accuracy)
    for m in models:
        save_spec(m.spec.replace(name=f"compare-{m.slug}"), folder / f"{m.slug}.yaml")
    recipe = s.trials.recipe
    note = (f"\nCoefficients {c}; proxy: {data.name}, {recipe.epochs} epoch(s), "
            f"{recipe.train_subset or len(data.train)} training images, width "
            f"multiplier {recipe.width_mult}.\n")
    md = cmp.markdown(rows)
    write_text_atomic(folder / "compare.md", md + note)
    write_csv(folder / "compare.csv", cmp.HEADER, rows)
    return md + note
