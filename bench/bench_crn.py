"""Common random numbers in the proxy: does giving every child the same data make the
proxy's ranking of children repeat better from run to run?

In a search each child is trained with its own seed (drawn from the run seed and the
child's identity), which draws its initial weights and also its training subset, batch
order and dropout. With common random numbers every child of a run would see the same
subset and batch order (one data seed per run), so two children differ by architecture and
initial weights, not by which images they happened to get.

``--networks`` random children of the default space are each trained ``--replicates``
times by the search's proxy (``proxy-default``, one thread per run), under two conditions
that differ only in the data seed:

    independent  each (network, replicate) its own data seed (as a search does today)
    common       one data seed per replicate, shared by every network

The initial weights are the same in both (seeded by network and replicate). Prints, per
condition, Kendall's tau between every two replicates' rankings of the networks (the mean,
with a bootstrap 95 % interval over networks), one network's seed-to-seed standard
deviation (pooled) and that of the difference between two networks. Validation accuracy on
5,000 held-out training images; the test split is not looked at. Run from the repository
root::

    .venv/bin/python bench/bench_crn.py --networks 12 --replicates 4 --out crn.csv
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.jobs import run_jobs, write_rows  # noqa: E402

CONDITIONS = ("independent", "common")


def data_seed(condition: str, network: int, replicate: int) -> int:
    return 5000 + replicate if condition == "common" else 7000 + 100 * replicate + network


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from nas.arch.spec import spec_from_dict
    from nas.data import load_splits
    from nas.training.child import proxy_spec
    from nas.training.proxy import build_seeded, train_proxy
    from nas.training.recipe import load_recipe

    torch.set_num_threads(1)
    data = load_splits(job["dataset"], path=job["data"], val_size=job["val_size"], seed=0)
    cfg = load_recipe("proxy-default").replace(seed=job["data_seed"], **job["proxy"])
    spec = proxy_spec(spec_from_dict(job["spec"]), cfg)
    model = build_seeded(spec, data.num_classes, data.in_channels, job["init_seed"])
    result = train_proxy(model, (data.train, data.val), cfg)
    return {k: job[k] for k in ("condition", "network", "replicate", "init_seed", "data_seed")} \
        | {"status": result.status, "accuracy": result.accuracy,
           "seconds": round(result.train_seconds, 1)}


def taus(acc: dict[tuple[int, int], float], networks: list[int], replicates: int) -> float:
    """The mean Kendall tau over every two replicates' accuracies of ``networks``."""
    from nas.search.stats import kendall_tau
    vals = [kendall_tau([acc[n, a] for n in networks], [acc[n, b] for n in networks])
            for a, b in itertools.combinations(range(replicates), 2)]
    vals = [v for v in vals if not math.isnan(v)]
    return statistics.fmean(vals) if vals else float("nan")


def bootstrap_tau(acc: dict[tuple[int, int], float], n_networks: int, replicates: int,
                  reps: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of :func:`taus` over networks drawn with replacement."""
    import numpy as np
    rng = np.random.default_rng(seed)
    vals = [taus(acc, list(rng.choice(n_networks, size=n_networks)), replicates)
            for _ in range(reps)]
    vals = [v for v in vals if not math.isnan(v)]
    if not vals:  # every ranking tied (e.g. all at chance)
        return float("nan"), float("nan")
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


def spreads(acc: dict[tuple[int, int], float], n_networks: int, replicates: int
            ) -> tuple[float, float]:
    """(pooled sd of one network over replicates, pooled sd over replicates of the
    difference between two networks)."""
    def pooled(groups: list[list[float]]) -> float:
        num = sum(sum((x - statistics.fmean(g)) ** 2 for x in g) for g in groups)
        dof = sum(len(g) - 1 for g in groups)
        return math.sqrt(num / dof) if dof > 0 else float("nan")
    one = [[acc[n, r] for r in range(replicates)] for n in range(n_networks)]
    diff = [[acc[a, r] - acc[b, r] for r in range(replicates)]
            for a, b in itertools.combinations(range(n_networks), 2)]
    return pooled(one), pooled(diff)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", type=int, default=12)
    ap.add_argument("--replicates", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0, help="draws the networks")
    ap.add_argument("--space", default="mnasnet-space")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--data", default=None, help="data folder (default: the installed one)")
    ap.add_argument("--val-size", type=int, default=5000)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a proxy-default setting changed for every run (repeatable)")
    ap.add_argument("--processes", type=int, default=2,
                    help="runs at a time, one thread each (1: in this process)")
    ap.add_argument("--out", default=None, help="a CSV of every run")
    args = ap.parse_args(argv)
    if args.networks < 3 or args.replicates < 2:
        ap.error("use at least 3 networks and 2 replicates")

    import numpy as np

    from nas.arch.spec import spec_to_dict
    from nas.core.files import config_path
    from nas.core.settings import parse_overrides
    from search_space import SearchSpace

    space = SearchSpace.from_yaml(config_path(args.space))
    rng = np.random.default_rng(args.seed)
    specs = [spec_to_dict(space.sample(rng)) for _ in range(args.networks)]
    proxy = parse_overrides(args.set, "--set")
    jobs = [{"condition": c, "network": n, "replicate": r, "init_seed": 1000 * r + n,
             "data_seed": data_seed(c, n, r), "spec": specs[n], "proxy": proxy,
             "dataset": args.dataset, "data": args.data, "val_size": args.val_size}
            for r in range(args.replicates) for n in range(args.networks) for c in CONDITIONS]
    rows = run_jobs(run_one, jobs, args.processes, line=lambda row: (
        f"  {row['condition']:<11} network {row['network']:>2} replicate {row['replicate']}: "
        f"{row['status']} {row['accuracy']:.4f} ({row['seconds']} s)"))
    if args.out:
        write_rows(args.out, rows,
                   key=lambda r: (r["condition"], r["network"], r["replicate"]))
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"\n{args.networks} networks of {args.space} (seed {args.seed}), {args.replicates} "
          f"replicates each, proxy-default{' ' + ' '.join(args.set) if args.set else ''}; "
          f"{len(failed)} runs not ok\n")
    print("| condition | Kendall tau between replicates [95 %] | sd of one network | "
          "sd of a difference of two |")
    print("|---|---|---|---|")
    for c in CONDITIONS:
        acc = {(r["network"], r["replicate"]): r["accuracy"] for r in rows
               if r["condition"] == c}
        lo, hi = bootstrap_tau(acc, args.networks, args.replicates)
        one, diff = spreads(acc, args.networks, args.replicates)
        print(f"| {c} | {taus(acc, list(range(args.networks)), args.replicates):.3f} "
              f"[{lo:.3f}, {hi:.3f}] | {one:.4f} | {diff:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
