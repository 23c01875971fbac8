"""Measure inference latency on this machine, and predict it from a per-device table.

    effnas latency efficientnet-b0                       # median and spread, 1 thread, batch 1
    effnas latency efficientnet-b0 mnasnet-a1 --threads 2 --batch 8
    effnas latency runs/NAME/best.yaml --runtime onnxruntime
    effnas latency --build-table                         # the default space's table, cached
    effnas latency efficientnet-b0 --predict             # predicted beside measured
    effnas latency --build-table --node-resource phone   # built on the Ray node 'phone'

A SPEC is a spec YAML file or a bundled spec's name (as in effnas inspect). Each is built,
put in eval mode and channels-last memory format as it is trained, warmed up and timed
under torch.inference_mode() with the given thread count (ONNX Runtime: exported in memory
and run by a CPU session), until the median's 95% interval is within 2% of it or
--max-seconds pass; the median, its interval, the inter-quartile range and p10-p90 are
printed, and "noisy" with the reason when the machine was too busy to trust them. Batch-1
latency needs the cores to itself: stop other work first.

--build-table measures every part (stem, layer configuration at its input size, head,
classifier) the search space can produce at the resolution, each once, then times
--fit-networks random children whole and fits the correction that turns a sum of parts
into a network's latency. The table is cached per device fingerprint (CPU model and
architecture, CPUs, threads, runtime and version, torch version, memory format, clock) in
$NAS_LATENCY_CACHE, else
$XDG_CACHE_HOME/effnas/latency or ~/.cache/effnas/latency (--cache-dir overrides), saved as
it goes (an interrupted build continues where it stopped) and reused by the next run.
--predict fills in any part of a SPEC the table lacks.

--node-resource NAME builds the table on another device instead: a node of the Ray cluster
at --address (else $RAY_ADDRESS) that has the custom resource NAME (on the device: ray start
--address=HEAD:6379 --resources='{"phone": 1}'). The build runs there as a Ray task, under
the device's fingerprint, saved in the device's cache as it goes; the finished table is
saved here too, under the device's fingerprint, with the node's host name and address.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

from nas.arch.io import load_spec
from nas.arch.spec import MIN_RESOLUTION, ArchSpec
from nas.cli.parser import OneLineParser, positive_int, run_main
from nas.core.errors import ConfigError
from nas.core.files import config_path

PROG = "effnas latency"
# The library's keywords that its messages name, said here as the flags that set them.
KEYS = {"node_resource": "node_resource", "address": "address", "threads": "threads"}
DEFAULT_SPACE = "mnasnet-space"


def _at_least(lo: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"{value} must be at least {lo}{what}")
        return value
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a number of seconds above 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("specs", nargs="*", metavar="SPEC",
                   help="spec YAML files or bundled spec names (e.g. efficientnet-b0)")
    p.add_argument("--resolution", type=_at_least(MIN_RESOLUTION, " pixels"),
                   help="input side in pixels (default: each spec's own; --build-table: the "
                        "space's)")
    p.add_argument("--batch", type=positive_int, default=1, help="images per forward pass "
                   "(default 1: latency; larger: throughput is batch / median)")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="intra-op threads (default 1)")
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch",
                   help="torch: eager PyTorch (default); onnxruntime: needs "
                        "pip install 'effnas[onnx]'")
    p.add_argument("--runs", type=positive_int,
                   help="time exactly this many runs of each spec, and of each part of a "
                        "table (default: adaptively, until the median is pinned down within "
                        "2%% for a spec, 3%% for a part)")
    p.add_argument("--warmup", type=_at_least(0, ""),
                   help="warm-up runs (default: at least 3 and 0.25 s)")
    p.add_argument("--max-seconds", type=_seconds, default=10.0,
                   help="time cap of one spec's adaptive runs (default 10)")
    p.add_argument("--clock", choices=("wall", "thread"), default="wall",
                   help="wall: latency as a user sees it (default); thread: the thread's CPU "
                        "time, leaving out time other work took the core (1 thread; a table "
                        "of its own)")
    p.add_argument("--predict", action="store_true",
                   help="also predict each SPEC from the device's table (filling in parts it "
                        "lacks) and print the error")
    p.add_argument("--build-table", action="store_true",
                   help="measure every part of --space at --resolution (cached, resumable) "
                        "and fit the correction")
    p.add_argument("--space", metavar="SPACE",
                   help=f"search-space YAML or bundled name for --build-table (default "
                        f"{DEFAULT_SPACE})")
    p.add_argument("--fit-networks", type=_at_least(0, ""), default=30,
                   help="random children timed whole to fit the correction (default 30; 0: "
                        "none)")
    p.add_argument("--refit", action="store_true",
                   help="fit the correction again (measuring networks not yet measured)")
    p.add_argument("--node-resource", metavar="NAME",
                   help="with --build-table: build it on the Ray node that has this custom "
                        "resource (e.g. phone, from ray start --resources='{\"phone\": 1}' "
                        "on the device) and keep a copy here")
    p.add_argument("--address", metavar="HOST:PORT",
                   help="the Ray cluster's head for --node-resource (default $RAY_ADDRESS; "
                        "auto: a cluster started on this machine)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="where tables are kept (default $NAS_LATENCY_CACHE, else "
                        "$XDG_CACHE_HOME/effnas/latency, else ~/.cache/effnas/latency)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return p


def _space(text: str | None) -> Any:
    from search_space.space import SearchSpace
    name = text or DEFAULT_SPACE
    return SearchSpace.from_yaml(Path(name) if Path(name).is_file() else config_path(name))


def _check(args: argparse.Namespace) -> None:
    if args.predict and not args.specs:
        raise ConfigError("--predict needs a SPEC to predict")
    if not args.specs and not args.build_table:
        raise ConfigError("name a SPEC to measure (e.g. efficientnet-b0), or --build-table")
    if args.space and not args.build_table:
        raise ConfigError("--space is for --build-table; add it or leave --space out")
    if args.node_resource is not None and not args.build_table:
        raise ConfigError("--node-resource is for --build-table; add it or leave "
                          "--node-resource out")
    if args.node_resource is not None and args.specs:
        raise ConfigError("--node-resource builds a table on another node, but a SPEC is "
                          "timed here; leave the SPECs out, or --node-resource")
    if args.address is not None and args.node_resource is None:
        raise ConfigError("--address is for --node-resource; add it or leave --address out")
    from nas.latency.settings import check_clock, check_runtime, check_threads
    if args.node_resource is None:  # else it is the other node's installation that counts
        check_runtime(args.runtime)
    threads = args.threads
    try:
        if args.node_resource is None:  # the other node's CPUs are checked there
            check_threads(threads)
    except ConfigError as e:
        raise ConfigError(f"--{e}") from None
    try:
        check_clock(args.clock, threads)
    except ConfigError as e:
        raise ConfigError(f"--{e}") from None


def run(args: argparse.Namespace) -> int:
    _check(args)
    specs = [load_spec(s) for s in args.specs]  # every name is checked before anything runs
    names = [spec.name or Path(text).stem for spec, text in zip(specs, args.specs)]
    space = _space(args.space) if args.build_table else None
    out: dict[str, Any] = {}
    table = None
    if args.build_table:
        table, out["table"] = _build(args, space)
    if specs:
        out["specs"] = _measure(args, specs, names, table)
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(text, flush=True)


def _part_timing(args: argparse.Namespace) -> Any:
    """How a table's parts are timed: adaptively, unless --runs or --warmup say otherwise."""
    if args.runs is None and args.warmup is None:
        return None
    import dataclasses

    from nas.latency.settings import PART_TIMING
    return dataclasses.replace(PART_TIMING, runs=args.runs, warmup=args.warmup)


def _build(args: argparse.Namespace, space: Any) -> tuple[Any, dict[str, Any]]:
    from nas.core.progress import format_duration
    if args.node_resource is not None:
        from nas.ray.latency import build_table_on
        report = build_table_on(space, args.node_resource, address=args.address,
                                resolution=args.resolution, batch=args.batch,
                                threads=args.threads, runtime=args.runtime,
                                cache=args.cache_dir, fit_networks=args.fit_networks,
                                refit=args.refit, clock=args.clock,
                                timing=_part_timing(args), say=lambda t: _say(args, t))
        return _summary(args, report)
    from nas.latency.build import build_table
    from nas.latency.keys import space_keys
    from nas.latency.table import LatencyTable

    table = LatencyTable.for_device(args.runtime, args.threads, True, args.cache_dir,
                                    args.clock)
    parts = space_keys(space, args.resolution, args.batch)
    n_keys, todo = len(parts), len(table.missing(parts))
    res = args.resolution or space.fixed["resolution"]
    _say(args, f"latency table: {table.describe()}\n  file: {table.path}")
    _say(args, f"  space {space.name!r} at {res} px, batch {args.batch}: {n_keys:,} distinct "
               f"parts, {n_keys - todo:,} in the table, {todo:,} to measure")
    last = [time.perf_counter()]

    def progress(done: int, total: int, seconds: float) -> None:
        now = time.perf_counter()
        if done == total or now - last[0] >= 30:
            last[0] = now
            left = seconds / done * (total - done)
            print(f"  measured {done:,}/{total:,} parts in {format_duration(seconds)}"
                  f" (about {format_duration(left)} left)", file=sys.stderr, flush=True)

    report = build_table(space, resolution=args.resolution, batch=args.batch,
                         threads=args.threads, runtime=args.runtime, cache=args.cache_dir,
                         fit_networks=args.fit_networks, refit=args.refit, clock=args.clock,
                         progress=progress, timing=_part_timing(args),
                         say=None if args.json else (lambda t: print(f"  {t}", file=sys.stderr,
                                                                      flush=True)))
    _say(args, f"  measured {report.measured:,} parts in {format_duration(report.seconds)}; "
               f"the table holds {len(report.table):,}")
    return _summary(args, report)


def _summary(args: argparse.Namespace, report: Any) -> tuple[Any, dict[str, Any]]:
    fit = report.correction
    if fit:
        a, b, c = fit["coef"]
        left = fit.get("noisy_left_out", 0)
        terms = f" {b:+.4f} ms x parts {c:+.3f} ms" if b or c else ""
        _say(args, f"  correction: latency = {a:.3f} x sum of parts{terms}, fitted on "
                   f"{fit['networks']} networks measured whole"
                   f"{f' ({left} noisy ones left out)' if left else ''} (rms "
                   f"error {fit['fit_rms_rel_error']:.1%}, max {fit['fit_max_rel_error']:.1%}; "
                   f"the plain sum was off by {fit['raw_mean_rel_error']:+.1%} on average)")
    else:
        _say(args, "  correction: none (--fit-networks 0): predictions are the plain sum")
    return report.table, {"path": str(report.path), "fingerprint": report.table.fingerprint,
                          "parts": report.parts, "measured": report.measured,
                          "seconds": report.seconds, "networks": report.networks,
                          "correction": fit,
                          **({"node": report.table.measured_on}
                             if report.table.measured_on else {})}


def _measure(args: argparse.Namespace, specs: list[ArchSpec], names: list[str],
             table: Any) -> list[dict[str, Any]]:
    from nas.latency.measure import fmt_ms, measure_latency
    if args.predict and table is None:
        from nas.latency.table import LatencyTable
        table = LatencyTable.for_device(args.runtime, args.threads, True, args.cache_dir,
                                        args.clock)
    width = max(len(n) for n in names)
    threads = f"{args.threads} thread{'s' if args.threads != 1 else ''}"
    _say(args, f"{args.runtime}, {threads}, batch {args.batch}"
               f"{', thread CPU time' if args.clock == 'thread' else ''}:")
    rows = []
    for spec, name in zip(specs, names):
        lat = measure_latency(spec, resolution=args.resolution, batch=args.batch,
                              threads=args.threads, runtime=args.runtime, warmup=args.warmup,
                              runs=args.runs, max_seconds=args.max_seconds, clock=args.clock)
        row: dict[str, Any] = {"spec": name, **lat.to_dict()}
        _say(args, f"  {name.ljust(width)}  {lat.resolution} px: {lat.describe()}")
        if args.predict:
            pred = _predict(args, spec, table)
            err = pred.ms / lat.median_ms - 1
            row.update(predicted_ms=pred.ms, predicted_raw_ms=pred.raw_ms,
                       corrected=pred.corrected, error=err)
            how = "corrected sum of parts" if pred.corrected else \
                "plain sum of parts: the table has no correction for this batch yet"
            _say(args, f"  {''.ljust(width)}  predicted {fmt_ms(pred.ms)} ({err:+.1%}; {how})")
        rows.append(row)
    return rows


def _predict(args: argparse.Namespace, spec: ArchSpec, table: Any) -> Any:
    from nas.latency.build import fill
    from nas.latency.keys import network_keys
    from nas.latency.predict import predict_latency
    missing = table.missing(network_keys(spec, args.resolution, args.batch))
    if missing:
        _say(args, f"  (measuring {len(missing)} parts the table lacks)")
        fill(table, missing, timing=_part_timing(args))
    return predict_latency(spec, table, resolution=args.resolution, batch=args.batch)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    hint = "the same command (the table keeps every part measured so far)" \
        if "--build-table" in args else None
    return run_main(run, build_parser(), argv, hint, keys=KEYS)


if __name__ == "__main__":
    sys.exit(main())
