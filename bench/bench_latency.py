"""How well the latency table predicts networks it was not fitted on, and how well MACs do.

Builds (or reuses from the cache) this device's latency table for the space at the
resolution, with its correction fitted on the table's own seeded children
(``nas.latency.build.FIT_SEED``); then draws ``--children`` random children of the space
with ``--seed`` (any child the correction was fitted on is drawn again), measures each
whole (``nas.measure_latency``: adaptive, median within +-2 %) and predicts each from the
table (``nas.predict_latency``). Prints the share of children predicted within +-10 % of
their measurement (corrected, and the plain sum of parts), Kendall's tau of predicted vs
measured and of MACs vs measured (bootstrap 95 % intervals), and how many measurements the
machine flagged noisy; writes one CSV row per child.

Latency needs the machine to itself: run it with nothing else on the cores. Run from the
repository root::

    .venv/bin/python bench/bench_latency.py                      # 200 children, 1 thread
    .venv/bin/python bench/bench_latency.py --children 20 --needed-parts-only \
        --out /tmp/lat.csv       # a quick look: only the parts of the 50 children measured
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from nas.arch.blockstrings import encode_ext_stages  # noqa: E402
from nas.arch.cost import count  # noqa: E402
from nas.arch.spec import identity  # noqa: E402
from nas.core.errors import NasError  # noqa: E402
from nas.core.files import config_path, write_csv  # noqa: E402
from nas.core.progress import format_duration  # noqa: E402
from nas.latency.build import FIT_SEED, build_table, distinct_children  # noqa: E402
from nas.latency.measure import measure_latency  # noqa: E402
from nas.latency.predict import predict_latency  # noqa: E402
from nas.latency.settings import PART_TIMING  # noqa: E402
from nas.latency.table import LatencyTable  # noqa: E402
from nas.search.stats import bootstrap, kendall_tau  # noqa: E402
from search_space import SearchSpace  # noqa: E402

HEADER = ("child", "identity", "macs", "params", "measured_ms", "p25_ms", "p75_ms", "runs",
          "noisy", "predicted_ms", "sum_of_parts_ms", "error", "sum_error", "blocks")


def children(space: SearchSpace, n: int, seed: int, exclude: set[str]) -> list:
    rng = np.random.default_rng(seed)
    out, seen = [], set(exclude)
    for _ in range(20 * n + 1000):
        if len(out) == n:
            break
        spec = space.sample(rng)
        ident = identity(spec)
        if ident in seen:
            continue
        seen.add(ident)
        out.append(spec)
    if len(out) < n:
        raise NasError(f"--children {n}: the space gave only {len(out)} distinct children "
                       "besides those the correction was fitted on")
    return out


def within(errors: list[float], tol: float = 0.10) -> float:
    return sum(abs(e) <= tol for e in errors) / len(errors)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--children", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0, help="the children's draw (default 0)")
    ap.add_argument("--space", default="mnasnet-space")
    ap.add_argument("--resolution", type=int, default=None, help="default: the space's")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runtime", default="torch", choices=("torch", "onnxruntime"))
    ap.add_argument("--clock", default="wall", choices=("wall", "thread"))
    ap.add_argument("--fit-networks", type=int, default=30)
    ap.add_argument("--max-seconds", type=float, default=10.0,
                    help="time cap of one child's measurement")
    ap.add_argument("--runs", type=int, default=None,
                    help="time exactly this many runs of each part and network (default: "
                         "adaptively; a few runs are for trying the script out)")
    ap.add_argument("--needed-parts-only", action="store_true",
                    help="measure only the parts of the children evaluated and fitted on, "
                         "not the whole space's (a quick look; the same entries a full "
                         "table would hold for them)")
    ap.add_argument("--cache-dir", default=None, help="latency tables (default: the user's)")
    ap.add_argument("--out", default="bench-latency.csv", help="the CSV written")
    args = ap.parse_args(argv)
    if args.children < 2:
        ap.error("--children: use at least 2")
    try:
        space = SearchSpace.from_yaml(Path(args.space) if Path(args.space).is_file()
                                      else config_path(args.space))
        t0 = time.perf_counter()
        timing = None
        if args.runs is not None:
            timing = dataclasses.replace(PART_TIMING, runs=args.runs, warmup=1)
        # Held out: the children the correction is (or will be) fitted on are not drawn.
        cached = LatencyTable.for_device(args.runtime, args.threads, True, args.cache_dir,
                                         args.clock).corrections.get(f"b{args.batch}")
        fitted = {identity(s) for s in distinct_children(space, args.fit_networks, FIT_SEED)}
        fitted |= set(cached.get("fitted_on", [])) if cached else set()
        specs = children(space, args.children, args.seed, fitted)
        report = build_table(space, resolution=args.resolution, batch=args.batch,
                             threads=args.threads, runtime=args.runtime, cache=args.cache_dir,
                             fit_networks=args.fit_networks, clock=args.clock,
                             say=lambda t: print(f"  {t}", flush=True),
                             progress=_progress(), timing=timing,
                             only_for=specs if args.needed_parts_only else None)
    except NasError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = report.table
    build_s = time.perf_counter() - t0
    print(f"table: {table.describe()}\n  {table.path}: {len(table):,} parts; this run measured "
          f"{report.measured:,} parts and {report.networks} networks in "
          f"{format_duration(build_s)}")
    fit = report.correction
    fitted_on = set(fit.get("fitted_on", [])) if fit else set()
    assert not fitted_on & {identity(s) for s in specs}, "a child the correction was fitted on"
    res = args.resolution or space.fixed["resolution"]
    rows, errors, sum_errors, measured, predicted, macs = [], [], [], [], [], []
    noisy = 0
    t1 = time.perf_counter()
    for i, spec in enumerate(specs):
        lat = measure_latency(spec, resolution=args.resolution, batch=args.batch,
                              threads=args.threads, runtime=args.runtime, clock=args.clock,
                              max_seconds=args.max_seconds, runs=args.runs,
                              warmup=None if args.runs is None else 1)
        pred = predict_latency(spec, table, resolution=args.resolution, batch=args.batch)
        cost = count(spec, res)
        err, sum_err = pred.ms / lat.median_ms - 1, pred.raw_ms / lat.median_ms - 1
        errors.append(err)
        sum_errors.append(sum_err)
        measured.append(lat.median_ms)
        predicted.append(pred.ms)
        macs.append(cost.macs)
        noisy += lat.noisy
        rows.append((i, identity(spec), cost.macs, cost.params, f"{lat.median_ms:.4f}",
                     f"{lat.p25_ms:.4f}", f"{lat.p75_ms:.4f}", lat.runs, int(lat.noisy),
                     f"{pred.ms:.4f}", f"{pred.raw_ms:.4f}", f"{err:.4f}", f"{sum_err:.4f}",
                     " ".join(encode_ext_stages(spec))))
        print(f"  child {i + 1}/{len(specs)}: measured {lat.median_ms:.2f} ms, predicted "
              f"{pred.ms:.2f} ms ({err:+.1%}){'  [noisy]' if lat.noisy else ''}", flush=True)
        if (i + 1) % 10 == 0:
            write_csv(args.out, HEADER, rows)
    write_csv(args.out, HEADER, rows)
    rng = np.random.default_rng(0)
    tau_pred = bootstrap(kendall_tau, predicted, measured, rng)
    tau_macs = bootstrap(kendall_tau, macs, measured, rng)
    ms_per_gmac = [m / (c / 1e9) for m, c in zip(measured, macs)]
    print(f"\n{len(specs)} children of {space.name!r} (seed {args.seed}, none of the "
          f"{len(fitted_on)} the correction was fitted on) at {res} px, batch {args.batch}, "
          f"{table.describe()}; measured in {format_duration(time.perf_counter() - t1)}")
    print(f"  within +-10%: {within(errors):.1%} predicted (corrected), "
          f"{within(sum_errors):.1%} plain sum of parts; median |error| "
          f"{float(np.median(np.abs(errors))):.1%}, worst {max(map(abs, errors)):.1%}")
    print(f"  Kendall tau, predicted vs measured: {_est(tau_pred)}")
    print(f"  Kendall tau, MACs vs measured:      {_est(tau_macs)}")
    print(f"  ms per GMAC: {min(ms_per_gmac):.0f} to {max(ms_per_gmac):.0f}")
    print(f"  noisy measurements: {noisy} of {len(specs)}"
          + ("  (the machine was not quiet: rerun with nothing else running)" if noisy else ""))
    print(f"wrote {args.out}")
    return 0


def _est(e) -> str:
    if math.isnan(e.low):
        return f"{e.value:.3f}"
    return f"{e.value:.3f} [{e.low:.3f}, {e.high:.3f}]"


def _progress():
    last = [0.0]

    def show(done: int, total: int, seconds: float) -> None:
        if done == total or seconds - last[0] >= 30:
            last[0] = seconds
            print(f"  table: measured {done:,}/{total:,} parts in {format_duration(seconds)}",
                  flush=True)
    return show


if __name__ == "__main__":
    sys.exit(main())
