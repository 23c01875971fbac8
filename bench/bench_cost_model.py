"""How many specs a second the torch-free cost model counts, on one core.

The search calls the cost model for every child (the MACs term of the reward), so it must stay
far cheaper than anything else per child. Goal: at least 10,000 specs/s on one core.

Measured, separately:

* ``count``          params and MACs of already-decoded specs (decode excluded);
* ``decode+count``   token sequence -> spec (``SearchSpace.decode``, with validation) -> count;
* ``stage_costs``    the per-stage rows that ``effnas inspect`` prints (for comparison).

Random children of the default space (``configs/mnasnet-space.yaml``), drawn with a seeded
generator before timing. Each measurement is repeated; the median and the best are printed.

Run from the repository root::

    .venv/bin/python bench/bench_cost_model.py            # 20,000 specs, 5 repeats
    .venv/bin/python bench/bench_cost_model.py --n 5000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import nas  # noqa: E402
from nas.arch.cost import count, stage_costs  # noqa: E402
from search_space import SearchSpace  # noqa: E402

GOAL_PER_S = 10_000


def _pin_to_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    return "not pinned (no sched_setaffinity)"


def _rate(fn: Callable[[], None], n: int, repeats: int) -> tuple[float, float]:
    """(median, best) items per second over ``repeats`` timed runs, after one warm-up run."""
    fn()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates), max(rates)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000, help="specs per timed run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    pinned = _pin_to_one_core()
    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    rng = np.random.default_rng(args.seed)
    tokens = [space.sample_tokens(rng) for _ in range(args.n)]
    specs = [space.decode(t) for t in tokens]

    def run_count() -> None:
        for s in specs:
            count(s)

    def run_decode_count() -> None:
        for t in tokens:
            count(space.decode(t))

    def run_rows() -> None:
        for s in specs:
            stage_costs(s)

    print(f"cost model, {args.n:,} random children of space {space.name!r} "
          f"(mean {np.mean([s.num_layers for s in specs]):.1f} layers), "
          f"median/best of {args.repeats}, {pinned}, Python {sys.version.split()[0]}")
    results = {}
    for name, fn in (("count", run_count), ("decode+count", run_decode_count),
                     ("stage_costs", run_rows)):
        median, best = _rate(fn, args.n, args.repeats)
        results[name] = median
        print(f"  {name:<13} {median:>10,.0f} specs/s (best {best:,.0f})")
    ok = results["count"] >= GOAL_PER_S
    print(f"goal >= {GOAL_PER_S:,} specs/s for count: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
