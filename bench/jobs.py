"""A benchmark's independent runs: in this process, or two (or more) at a time in spawned
processes, a line printed for each result as it comes; and their table written as CSV."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any, Callable, Sequence


def run_jobs(fn: Callable[[dict[str, Any]], dict[str, Any]], jobs: Sequence[dict[str, Any]],
             processes: int, line: Callable[[dict[str, Any]], str]) -> list[dict[str, Any]]:
    """``fn(job)`` for every job, printing ``line(result)`` as each comes: in order in this
    process when ``processes`` <= 1, else in a pool of that many spawned processes, as they
    finish (``fn`` must be a module-level function). Returns the results."""
    rows: list[dict[str, Any]] = []

    def done(row: dict[str, Any]) -> None:
        rows.append(row)
        print(line(row), flush=True)

    if processes <= 1:
        for job in jobs:
            done(fn(job))
    else:
        with mp.get_context("spawn").Pool(processes) as pool:
            for row in pool.imap_unordered(fn, jobs):
                done(row)
    return rows


def write_rows(path: str | Path, rows: Sequence[dict[str, Any]],
               key: Callable[[dict[str, Any]], Any]) -> None:
    """The rows (dicts with the same keys) as a CSV file, sorted by ``key``."""
    from nas.core.files import write_csv
    ordered = sorted(rows, key=key)
    header = list(ordered[0])
    write_csv(path, header, ([r[h] for h in header] for r in ordered))
