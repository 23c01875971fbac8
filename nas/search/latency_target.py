"""A search at a latency target: the latency table it predicts its children's latency from.

The table is this machine's for the search space at the target resolution (batch 1, the
target's classes and channels, ``latency_threads`` threads, eager torch), built before Ray
starts, or read from the device cache when an earlier search or ``effnas latency`` built it
(:func:`nas.latency.build_table`); or the table file ``latency_table`` names, built on
another device. Either way a copy of the parts the search can meet goes into the run folder
(:data:`TABLE_FILE`), and a resumed search predicts from that copy: it never measures.
Torch-free but for measuring (:mod:`nas.latency.measure`, through :mod:`nas.latency.build`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from nas.arch.spec import ArchSpec
from nas.core.errors import ConfigError
from nas.latency.keys import PartKey, network_keys, space_keys
from nas.latency.predict import predict_latency
from nas.latency.table import LatencyTable
from nas.search.driver import Target

TABLE_FILE = "latency-table.json"
PROGRESS_EVERY_S = 10.0


def needed_keys(space: Any, reference: ArchSpec | None, target: Target) -> list[PartKey]:
    """Every part a child of ``space`` (and the reference) runs at the target setting."""
    keys = space_keys(space, target.resolution, 1, target.num_classes, target.in_channels)
    if reference is not None:
        keys += network_keys(reference, target.resolution, 1, target.num_classes,
                             target.in_channels)
    return list(dict.fromkeys(keys))


def latency_of(table: LatencyTable, target: Target) -> Callable[[ArchSpec], float]:
    """spec -> its predicted latency (ms) at ``target``, batch 1 (memoised by network)."""
    memo: dict[ArchSpec, float] = {}

    def latency(spec: ArchSpec) -> float:
        if spec not in memo:
            memo[spec] = predict_latency(spec, table, resolution=target.resolution, batch=1,
                                         num_classes=target.num_classes,
                                         in_channels=target.in_channels).ms
        return memo[spec]
    return latency


def _size(target: Target) -> str:
    return "each child's own resolution" if target.resolution is None \
        else f"{target.resolution} px"


def _what(space: Any, reference: ArchSpec | None) -> str:
    return f"the space {space.name}" + ("" if reference is None else " and the reference")


def _lacking(table: LatencyTable, space: Any, reference: ArchSpec | None, target: Target,
             source: str, fix: str) -> None:
    keys = needed_keys(space, reference, target)
    missing = table.missing(keys)
    if not missing:
        return
    if reference is not None and not table.missing(needed_keys(space, None, target)):
        fix = f"set reference=null, or {fix}"
    raise ConfigError(f"{source}: the latency table has no entry for {len(missing)} of the "
                      f"{len(keys)} parts of {_what(space, reference)} at {_size(target)}, "
                      f"batch 1 (first: {missing[0].text}); {fix}")


def given_table(path: str, space: Any, reference: ArchSpec | None,
                target: Target) -> LatencyTable:
    """The table file ``latency_table`` names, holding every part the search can meet."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"latency_table={path!r}: no such file; give a table file built "
                          "with nas.latency.build_table (effnas latency's table build), or "
                          "leave it out to build this machine's")
    table = LatencyTable.load(p)
    res = "None" if target.resolution is None else target.resolution
    _lacking(table, space, reference, target, f"latency_table={path!r}",
             f"build the space's table on that device with nas.latency.build_table(space, "
             f"resolution={res}), or leave it out to build this machine's")
    return table


def run_table(out: Path, space: Any, reference: ArchSpec | None,
              target: Target) -> LatencyTable:
    """A resumed search's table: the copy in its run folder, complete (never measured)."""
    path = out / TABLE_FILE
    if not path.is_file():
        raise ConfigError(f"resume=True: {path} is missing, and a search at a latency target "
                          "predicts from the table it started with; restore the file, or "
                          "start afresh with another out=")
    table = LatencyTable.load(path)
    _lacking(table, space, reference, target, str(path),
             "the run folder's copy is damaged; restore it, or start afresh with another out=")
    return table


def device_table(space: Any, reference: ArchSpec | None, target: Target, threads: int,
                 say: Callable[[str], None], timing: Any = None, fit_networks: int | None = None,
                 cache: Any = None) -> LatencyTable:
    """This machine's table for the search (``threads`` threads, eager torch): from the
    device cache, measuring what it lacks (printing progress) and fitting its correction
    once. ``timing``, ``fit_networks``, ``cache``: :func:`nas.latency.build_table`'s."""
    from nas.latency.build import FIT_NETWORKS, build_table, fill
    from nas.latency.settings import check_threads

    check_threads(threads, "latency_threads")
    table = LatencyTable.for_device("torch", threads, True, cache)
    keys = needed_keys(space, reference, target)
    todo = len(table.missing(keys))
    where = f"{table.path}" if table.path is not None else "memory"
    if todo:
        say(f"latency table: measuring {todo} of the {len(keys)} parts of "
            f"{_what(space, reference)} at {_size(target)} on this machine "
            f"({table.describe()}); saved as it goes in {where}, an interrupted build "
            "continues there")
    else:
        say(f"latency table: {where} ({table.describe()})")
    last = [time.perf_counter()]

    def progress(done: int, total: int, seconds: float) -> None:
        now = time.perf_counter()
        if now - last[0] >= PROGRESS_EVERY_S or done == total:
            last[0] = now
            left = seconds / done * (total - done) if done else 0.0
            say(f"latency table: {done}/{total} parts measured, {seconds:.0f} s"
                + (f", ~{left:.0f} s left" if done < total else ""))

    try:
        report = build_table(space, resolution=target.resolution, batch=1, threads=threads,
                             cache=cache, progress=progress, say=say, timing=timing,
                             fit_networks=FIT_NETWORKS if fit_networks is None
                             else fit_networks)
        table = report.table
        rest = table.missing(keys)  # the reference's, and another number of classes'
        if rest:
            fill(table, rest, timing=timing, progress=progress)
    except KeyboardInterrupt:  # no run folder yet: the next start continues the build
        say(f"latency table: stopped; what was measured is saved in {where}, and the same "
            "search started again continues the build from there")
        raise
    if report.networks:
        fit = report.correction or {}
        say(f"latency table: correction fitted on {report.networks} networks (relative error "
            f"{100 * fit.get('fit_rms_rel_error', float('nan')):.1f} % rms)")
    return table


def table_line(table: LatencyTable) -> str:
    """What a search says of a table it reads: its file and device, and whether its
    predictions are corrected."""
    fit = table.corrections.get("b1")
    how = ("no correction for batch 1: each prediction is the plain sum of the parts"
           if fit is None else f"corrected (fitted on {fit.get('networks', '?')} networks)")
    return f"latency table: {table.path} ({table.describe()}); {how}"


def save_copy(table: LatencyTable, space: Any, reference: ArchSpec | None, target: Target,
              out: Path) -> Path:
    """The run folder's copy (:data:`TABLE_FILE`): the parts the search can meet, the
    table's corrections and fitting records, and its device fingerprint."""
    keys = {k.text for k in needed_keys(space, reference, target)}
    copy = LatencyTable(dict(table.fingerprint),
                        {k: v for k, v in table.entries.items() if k in keys},
                        dict(table.corrections), dict(table.networks))
    return copy.save(out / TABLE_FILE)
