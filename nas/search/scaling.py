"""Scaling runs that train on Ray: the coefficient grid (step 1 of compound scaling) and the
single-dimension comparison, both as fixed lists of candidates through the search's driver
and Tune adapter (reward = proxy accuracy)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from nas.arch.cost import count_macs, count_params
from nas.arch.spec import ArchSpec
from nas.core.errors import ConfigError, NoResultError
from nas.data import DataSplits
from nas.search.driver import ChildDriver, ChildRecord, Target
from nas.search.reward import RewardConfig
from nas.search.settings import ScaleSettings


def proxy_base_resolution(s: ScaleSettings, data: DataSplits) -> int:
    """The resolution the baseline itself is trained at on the proxy."""
    assert s.trials is not None
    res = s.trials.recipe.resolution
    return int(res) if res is not None else int(data.image_size)


def train_list(items: list[tuple[str, ArchSpec, dict]], folder: Path, s: ScaleSettings,
               data: DataSplits, resume: bool) -> dict[str, ChildRecord]:
    """Train a fixed list of (label, spec, proxy overrides) on Ray; returns label -> record.

    A KeyboardInterrupt (Ctrl-C, or Tune stopping early) leaves ``folder/driver.pt`` to
    continue from with ``--resume``.
    """
    from controller import FixedList
    from nas.search import tune_adapter as ta
    from nas.search.runner import train_children

    assert s.trials is not None
    driver = ChildDriver(lambda t: (items[t[0]][1], items[t[0]][2]), FixedList(len(items)),
                         budget=len(items), reward=RewardConfig(target_macs=1, w=0.0),
                         target=Target(resolution=None))  # reward = accuracy
    state = folder / "driver.pt"
    if state.is_file():
        if not resume:
            raise ConfigError(f"{folder} already holds trained candidates; continue with "
                              f"--resume --out {s.out}, or choose another --out")
        ta.restore_state(driver, ta.load_state(state), state)
    folder.mkdir(parents=True, exist_ok=True)
    train_children(driver, data, s.trials, folder, len(items), table="candidates")
    if not driver.finished():
        raise KeyboardInterrupt
    return {items[r.tokens[0]][0]: r for r in driver.trained_records()}


def grid_search(base: ArchSpec, base_name: str, s: ScaleSettings, data: DataSplits,
                resume: bool, say: Callable[[str], None]) -> Any:
    """Train every distinct grid candidate; write ``scaling.yaml``; return the coefficients."""
    import scaler
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
    best = scaler.select_best(results)
    scaler.write_scaling(best.coefficients, results, s.out / "scaling.yaml", phi=s.phi,
                         grid=s.grid, baseline_name=base_name, baseline_path=s.baseline,
                         grid_points=len(grid), distinct=len(points), started=started,
                         finished=datetime.now(timezone.utc))
    say(f"grid done in {time.time() - t0:.0f} s: best {best.coefficients} "
        f"(proxy accuracy {best.accuracy:.4f}); written to {s.out / 'scaling.yaml'}")
    return best.coefficients


def compare(base: ArchSpec, c: Any, s: ScaleSettings, data: DataSplits, resume: bool,
            say: Callable[[str], None]) -> str:
    """Train the width-, depth- and resolution-only scalings at the compound model's MACs;
    write ``compare/compare.md`` and ``compare.csv``; return the Markdown table."""
    from nas.arch.io import save_spec
    from nas.arch.units import format_macs
    from nas.core.files import write_csv, write_text_atomic
    from scaler import compare as cmp

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
