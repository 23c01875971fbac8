"""Build a device's latency table for a search space: measure every part the space can
produce at a resolution (:func:`fill`), then the whole networks the correction is fitted on
(:func:`measure_networks`, :func:`nas.latency.predict.fit_correction`). Everything measured
is saved as it goes, so an interrupted build continues where it stopped.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from nas.core.checks import check_int
from nas.latency.keys import PartKey, network_keys, space_keys
from nas.latency.predict import fit_correction
from nas.latency.settings import (
    Timing,
    check_batch,
    check_resolution,
    check_runtime,
    check_threads,
)
from nas.latency.table import LatencyTable, network_record_key

SAVE_EVERY_S = 15.0
FIT_SEED = 20_300_001   # the children a correction is fitted on (a bench uses other seeds)
FIT_NETWORKS = 30


# --------------------------------------------------------------------------- filling


Progress = Callable[[int, int, float], None]  # (done, total, seconds so far)


def fill(table: LatencyTable, keys: Sequence[PartKey], *, timing: Timing | None = None,
         progress: Progress | None = None, seed: int = 0,
         save_every: float = SAVE_EVERY_S) -> int:
    """Measure the parts of ``keys`` that ``table`` lacks, in a seeded random order (so a
    slow drift of the machine spreads over all kinds of part instead of biasing one), saving
    every ``save_every`` seconds when the table has a file. Returns how many were measured."""
    from nas.latency.measure import measure_part  # torch: only when something is measured
    todo = table.missing(dict.fromkeys(keys))
    random.Random(seed).shuffle(todo)
    start = last = time.perf_counter()
    done = 0
    try:
        for key in todo:
            table.put(key, measure_part(key, threads=table.threads, runtime=table.runtime,
                                        channels_last=table.channels_last, timing=timing,
                                        clock=table.clock))
            done += 1
            now = time.perf_counter()
            if progress is not None:
                progress(done, len(todo), now - start)
            if table.path is not None and now - last >= save_every:
                table.save()
                last = now
    finally:
        if table.path is not None and done:
            table.save()
    return done


@dataclass(frozen=True)
class BuildReport:
    table: LatencyTable
    path: Path | None
    parts: int          # distinct parts of the space at the resolution
    measured: int       # measured by this build (the rest came from the cache)
    seconds: float      # this build's measuring time
    networks: int       # whole networks measured for the correction by this build
    correction: dict[str, Any] | None


def build_table(space: Any, *, resolution: int | None = None, batch: int = 1,
                threads: int = 1, runtime: str = "torch", channels_last: bool = True,
                cache: str | os.PathLike[str] | None = None,
                fit_networks: int = FIT_NETWORKS, fit_seed: int = FIT_SEED,
                progress: Progress | None = None, say: Callable[[str], None] | None = None,
                timing: Timing | None = None, refit: bool = False,
                clock: str = "wall", only_for: Sequence[Any] | None = None) -> BuildReport:
    """Measure every part ``space`` (a :class:`search_space.space.SearchSpace`) can produce
    at ``resolution`` (None: its own) that this device's cached table lacks, then fit the
    correction on ``fit_networks`` random children (seed ``fit_seed``) measured whole,
    unless the table has one for this batch already (or ``refit``). Resumable: everything
    measured is saved as it goes. With ``only_for`` (specs), only their parts (and those of
    the fit's children) are measured, not the whole space's: a quick look at a few networks.
    """
    resolution = check_resolution(resolution)
    batch = check_batch(batch)
    threads = check_threads(threads)
    runtime = check_runtime(runtime)
    check_int(fit_networks, "fit_networks", 0, 10_000)
    table = LatencyTable.for_device(runtime, threads, channels_last, cache, clock)
    tag = f"b{batch}"
    refit = bool(fit_networks) and (refit or tag not in table.corrections)
    children = distinct_children(space, fit_networks, fit_seed) if refit else []
    if only_for is None:
        keys = space_keys(space, resolution, batch)
    else:
        keys = list(dict.fromkeys(k for spec in [*only_for, *children]
                                  for k in network_keys(spec, resolution, batch)))
    start = time.perf_counter()
    measured = fill(table, keys, timing=timing, progress=progress)
    seconds = time.perf_counter() - start
    n_nets = 0
    if refit:
        n_nets = measure_networks(table, children, resolution=resolution, batch=batch,
                                  say=say, runs=timing.runs if timing else None,
                                  warmup=timing.warmup if timing else None)
        table.corrections[tag] = fit_correction(table, children, resolution=resolution,
                                                batch=batch, space=space)
        if table.path is not None:
            table.save()
    return BuildReport(table, table.path, len(keys), measured, seconds, n_nets,
                       table.corrections.get(tag))


def distinct_children(space: Any, n: int, seed: int) -> list[Any]:
    """``n`` random children of ``space`` drawn with ``seed``, no network twice (fewer if
    the space holds fewer)."""
    import numpy as np

    from nas.arch.spec import identity
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for _ in range(20 * n + 1000):
        if len(out) == n:
            break
        spec = space.sample(rng)
        out.setdefault(identity(spec), spec)
    return list(out.values())


def measure_networks(table: LatencyTable, specs: Sequence[Any], *, resolution: int | None,
                     batch: int, say: Callable[[str], None] | None = None,
                     max_seconds: float = 5.0, runs: int | None = None,
                     warmup: int | None = None) -> int:
    """Measure whole networks the table has no record of (kept in ``table.networks``, by
    identity, resolution and batch) with the table's settings; returns how many were
    measured."""
    from nas.latency.measure import measure_latency
    done = 0
    for i, spec in enumerate(specs):
        rec = network_record_key(spec, resolution, batch)
        if rec in table.networks:
            continue
        lat = measure_latency(spec, resolution=resolution, batch=batch, threads=table.threads,
                              runtime=table.runtime, channels_last=table.channels_last,
                              max_seconds=max_seconds, clock=table.clock, runs=runs,
                              warmup=warmup)
        table.networks[rec] = {"ms": round(lat.median_ms, 6), "runs": lat.runs,
                               **({"noisy": True} if lat.noisy else {})}
        done += 1
        if say is not None:
            say(f"network {i + 1}/{len(specs)}: {lat.median_ms:.2f} ms")
        if table.path is not None:
            table.save()
    return done


