"""The papers' claims measured on Fashion-MNIST with one full-training recipe for every model.

    python bench/bench_claims.py --baseline runs/laptop/best.yaml \\
        --scaling runs/scale/scaling.yaml --epochs 10 --width 0.5 --seeds 0 --processes 2 \\
        --out runs/claims [--groups baselines,scaling,family] [--more-seeds 1,2]

Three comparisons (EfficientNet's and MnasNet's papers):

- ``baselines``: the searched baseline against EfficientNet-B0, MnasNet-A1 and MobileNetV2;
- ``scaling``: compound scaling against width-only, depth-only and resolution-only scaling of
  the searched baseline at about 2x and 4x its MACs (EfficientNet's Figure 8 / Table 7);
- ``family``: the searched family's first members (the budget rule's B1 and B2 with the fitted
  coefficients) against EfficientNet-B0 scaled the same way (same coefficients, same rule).

Protocol (the same for every model, stated in the output): ``nas.train``'s recipe at
``--epochs`` epochs, every model's widths times ``--width``, and a training resolution of
``--resolution`` x (the model's resolution / its baseline's), rounded to a multiple of 4 (the
proxy's rule), so resolution scaling is real scaling of the 28x28 images' upsampling.
Validation accuracy (5,000 training images held out) is what comparisons use; each final
model's test accuracy is scored once, at the end of its run. ``--more-seeds`` adds seeds to
the models of a comparison whose gap is under a point (the runs of the first seed are reused:
every finished run is kept in ``--out`` and not trained again).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def models(baseline: str, scaling: str | None, groups: list[str]) -> list[dict[str, Any]]:
    """(group, label, spec, baseline resolution) of every model to train."""
    import nas
    import scaler
    from nas.arch.cost import count_macs
    from scaler.compare import single_dimension

    base = nas.load_spec(baseline).replace(name="searched")
    c = scaler.load_scaling(scaling).coefficients if scaling else scaler.PAPER_COEFFICIENTS
    b0 = nas.load_spec("efficientnet-b0")
    out: list[dict[str, Any]] = []

    def add(group: str, label: str, spec: Any, of: Any) -> None:
        out.append({"group": group, "label": label, "spec": spec, "base_resolution": of.resolution})

    if "baselines" in groups:
        add("baselines", "searched baseline", base, base)
        for name in ("efficientnet-b0", "mnasnet-a1", "mobilenetv2"):
            add("baselines", name, nas.load_spec(name), nas.load_spec(name))
    if "scaling" in groups:
        macs = count_macs(base)
        for k in (2, 4):
            member = scaler.fit_budget(base, c, k * macs, resolution_multiple=8)
            add("scaling", f"{k}x compound", member.spec, base)
            for kind in ("width", "depth", "resolution"):
                _, spec = single_dimension(base, k * macs, kind)
                add("scaling", f"{k}x {kind} only", spec, base)
    if "family" in groups:
        ours = scaler.make_family(base, "budget", c)[:2]
        theirs = scaler.make_family(b0, "budget", c)[:2]
        for m in ours:
            add("family", f"searched {m.name}", m.spec, base)
        add("family", "efficientnet-b0", b0, b0)
        for m in theirs:
            add("family", f"efficientnet {m.name}", m.spec, b0)
    return out


def train_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (model, seed) with nas.train's recipe unless its metrics.json exists."""
    import torch
    torch.set_num_threads(1)
    from nas.arch.io import save_spec
    from nas.training.fit import TrainConfig, fit, make_spec, resolve

    out = Path(job["out"])
    metrics = out / "metrics.json"
    if not metrics.is_file():
        spec_path = out / "spec.yaml"
        out.mkdir(parents=True, exist_ok=True)
        save_spec(job["spec"], spec_path)
        c = resolve(TrainConfig(spec=str(spec_path), resolution=job["resolution"],
                                width_mult=job["width"], epochs=job["epochs"], seed=job["seed"],
                                threads=1, export="none", out=str(out), **job["recipe"]))
        if (out / "last.pt").exists():  # an interrupted run: start it again from scratch
            for p in out.glob("*.pt"):
                p.unlink()
        fit(c, make_spec(c), None, command="bench/bench_claims.py", say=lambda line: None)
    m = json.loads(metrics.read_text())
    return {**{k: job[k] for k in ("group", "label", "seed", "resolution")},
            "val": m["best_val_accuracy"], "test": m["test_accuracy"],
            "macs": m["macs"]["at_spec_resolution"], "params": m["params"],
            "minutes": m["train_seconds"] / 60}


def _slug(label: str) -> str:
    return label.replace(" ", "-")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True, help="the searched baseline's spec")
    p.add_argument("--scaling", help="a scaling.yaml (default: the paper's coefficients)")
    p.add_argument("--groups", default="baselines,scaling,family")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--seeds", default="0")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--recipe", default="{}", help="JSON of TrainConfig recipe fields to set")
    p.add_argument("--out", default="runs/claims")
    args = p.parse_args()
    groups = args.groups.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    recipe = json.loads(args.recipe)
    todo = models(args.baseline, args.scaling, groups)
    from nas.arch.cost import count_macs
    jobs = []
    for m in todo:
        res = max(8, int(round(args.resolution * m["spec"].resolution / m["base_resolution"] / 4))
                  * 4)
        for s in seeds:
            jobs.append({**m, "seed": s, "resolution": res, "width": args.width,
                         "epochs": args.epochs, "recipe": recipe,
                         "out": str(Path(args.out) / _slug(m["label"]) / f"seed{s}")})
    jobs.sort(key=lambda j: -count_macs(j["spec"]) * (j["resolution"] / 32) ** 2)  # big first
    print(f"{len(jobs)} runs ({len(todo)} models x seeds {seeds}), {args.epochs} epochs, width "
          f"x{args.width}, {args.resolution} px for a baseline's resolution, recipe "
          f"nas.train defaults {recipe or ''}; {args.processes} at a time, one thread each; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}", flush=True)
    t0 = time.time()
    results = []
    with mp.get_context("spawn").Pool(args.processes) as pool:
        for r in pool.imap_unordered(train_one, jobs):
            print(f"  {r['group']:<9} {r['label']:<24} seed {r['seed']}: val {r['val']:.4f} "
                  f"test {r['test']:.4f} ({r['resolution']} px, {r['minutes']:.1f} min)",
                  flush=True)
            results.append(r)
    print(f"\n{len(jobs)} runs in {(time.time() - t0) / 60:.1f} min")
    (Path(args.out) / "claims.json").write_text(json.dumps(results, indent=2) + "\n")
    for group in groups:
        print(f"\n### {group}\n")
        print("| model | MACs (own resolution) | params | train px | val (mean, range) | "
              "test (mean) | seeds | min/run |")
        print("|---|---|---|---|---|---|---|---|")
        seen: dict[str, list[dict[str, Any]]] = {}
        for r in results:
            if r["group"] == group:
                seen.setdefault(r["label"], []).append(r)
        for m in todo:
            rs = seen.get(m["label"]) if m["group"] == group else None
            if not rs:
                continue
            v = [r["val"] for r in rs]
            t = [r["test"] for r in rs if r["test"] is not None]
            rng = f" ({min(v):.4f}-{max(v):.4f})" if len(v) > 1 else ""
            print(f"| {m['label']} | {rs[0]['macs'] / 1e6:.1f}M | {rs[0]['params']:,} | "
                  f"{rs[0]['resolution']} | {statistics.mean(v):.4f}{rng} | "
                  f"{statistics.mean(t) if t else math.nan:.4f} | {len(v)} | "
                  f"{statistics.mean(r['minutes'] for r in rs):.1f} |")


if __name__ == "__main__":
    main()
