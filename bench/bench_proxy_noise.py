"""How much the proxy's score of one network moves from seed to seed, and what lowers it.

Each (network, lever, seed) trains the network as a search trains a child
(:func:`nas.training.child.run_child` with the bundled ``proxy-default`` recipe and the
child's seed), on Fashion-MNIST with the lever's validation size. Levers:

    default    the search's proxy: 2 epochs of 10,000 images, 5,000 validation images
    val10k     twice the validation images, 10,000 (the evaluation's own sampling noise
               halves in variance; the training pool shrinks from 55,000 to 50,000)
    subset20k  2 epochs of 20,000 images (twice the steps and the time)
    epochs4    4 epochs of 10,000 images (twice the steps and the time)

Prints, per lever, each network's mean, standard deviation and range over the seeds, the
pooled standard deviation with a bootstrap 95 % interval, and the seconds per child. The
test split is not looked at. Run from the repository root::

    .venv/bin/python bench/bench_proxy_noise.py --specs efficientnet-b0,mnasnet-a1 --seeds 5
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.jobs import run_jobs, write_rows  # noqa: E402

# Each lever: proxy-default overrides, and a factor on the validation size (--val-size).
LEVERS: dict[str, tuple[dict[str, Any], int]] = {
    "default": ({}, 1),
    "val10k": ({}, 2),
    "subset20k": ({"train_subset": 20000}, 1),
    "epochs4": ({"epochs": 4}, 1),
}


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_one(job)
    finally:
        torch.set_num_threads(before)


def _run_one(job: dict[str, Any]) -> dict[str, Any]:
    from nas.arch.io import load_spec
    from nas.arch.spec import spec_to_dict
    from nas.data import load_splits
    from nas.training.child import run_child
    from nas.training.recipe import load_recipe

    proxy = load_recipe("proxy-default")
    overrides, factor = LEVERS[job["lever"]]
    data = load_splits(job["dataset"], path=job["data"], val_size=factor * job["val_size"],
                       seed=0)
    spec = load_spec(job["spec"])
    out = run_child({"spec": spec_to_dict(spec), "seed": job["seed"], "proxy": overrides},
                    data, proxy)
    return {**job, "status": out["status"], "accuracy": out.get("accuracy"),
            "seconds": round(out["seconds"], 1)}


def pooled_sd(groups: list[list[float]]) -> float:
    num = sum(sum((x - statistics.fmean(g)) ** 2 for x in g) for g in groups)
    dof = sum(len(g) - 1 for g in groups)
    return math.sqrt(num / dof) if dof > 0 else float("nan")


def bootstrap_sd(groups: list[list[float]], reps: int = 2000, seed: int = 0
                 ) -> tuple[float, float]:
    import numpy as np
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(reps):
        vals.append(pooled_sd([list(rng.choice(g, size=len(g))) for g in groups]))
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--specs", default="efficientnet-b0,mnasnet-a1",
                    help="bundled spec names or spec files, comma-separated")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--levers", default=",".join(LEVERS), help=f"of {', '.join(LEVERS)}")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--data", default=None, help="data folder (default: the installed one)")
    ap.add_argument("--val-size", type=int, default=5000,
                    help="validation images of the default lever (val10k: twice this)")
    ap.add_argument("--processes", type=int, default=2, help="runs at a time, one thread "
                    "each (1: in this process)")
    ap.add_argument("--out", default=None, help="a CSV of every run")
    args = ap.parse_args(argv)
    specs = [s.strip() for s in args.specs.split(",") if s.strip()]
    levers = [s.strip() for s in args.levers.split(",") if s.strip()]
    unknown = [lv for lv in levers if lv not in LEVERS]
    if unknown or args.seeds < 2 or not specs:
        ap.error(f"use levers of {', '.join(LEVERS)}, at least 2 seeds and one spec")
    jobs = [{"spec": s, "lever": lv, "seed": seed, "dataset": args.dataset, "data": args.data,
             "val_size": args.val_size}
            for seed in range(args.seeds) for lv in levers for s in specs]
    rows = run_jobs(run_one, jobs, args.processes, line=lambda r: (
        f"  {r['spec']} {r['lever']} seed {r['seed']}: {r['status']} "
        f"{r['accuracy'] if r['accuracy'] is None else round(r['accuracy'], 4)} "
        f"({r['seconds']} s)"))
    if args.out:
        write_rows(args.out, rows, key=lambda r: (r["lever"], r["spec"], r["seed"]))
    print(f"\nproxy-default, {args.seeds} seeds per network and lever; validation accuracy\n")
    print("| lever | " + " | ".join(f"{s}: mean, sd (range)" for s in specs)
          + " | pooled sd [95 %] | s per child |")
    print("|---|" + "---|" * len(specs) + "---|---|")
    for lv in levers:
        groups, cells, secs = [], [], []
        for s in specs:
            accs = [r["accuracy"] for r in rows if r["spec"] == s and r["lever"] == lv
                    and r["status"] == "ok"]
            secs += [r["seconds"] for r in rows if r["spec"] == s and r["lever"] == lv]
            groups.append(accs)
            cells.append(f"{statistics.fmean(accs):.3f}, {statistics.stdev(accs):.3f} "
                         f"({min(accs):.3f}-{max(accs):.3f})" if len(accs) >= 2 else "n/a")
        ok = [g for g in groups if len(g) >= 2]
        lo, hi = bootstrap_sd(ok) if ok else (float("nan"), float("nan"))
        print(f"| {lv} | " + " | ".join(cells)
              + f" | {pooled_sd(ok):.4f} [{lo:.4f}, {hi:.4f}] | {statistics.fmean(secs):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
