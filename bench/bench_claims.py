"""The papers' claims measured on Fashion-MNIST with one full-training recipe for every model.

    python bench/bench_claims.py --baseline runs/laptop/best.yaml \\
        --scaling runs/scale/scaling.yaml --epochs 10 --width 0.5 --seeds 0 --processes 2 \\
        --out runs/claims [--groups baselines,scaling,family] [--more-seeds 1,2] \\
        [--models 'searched baseline,efficientnet-b0'] \\
        [--recipe '{"optimizer": "adamw", "lr": 0.002}']

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
every finished run is kept in ``--out`` and not trained again; one trained under another
protocol is refused, not mixed in). Besides the tables it writes ``claims.json``, ``claims.md``
and ``claims.png`` (validation accuracy against MACs, one panel per comparison) to ``--out``.
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


def select(todo: list[dict[str, Any]], labels: list[str]) -> list[dict[str, Any]]:
    """The models of ``todo`` whose labels are given (every model when none is)."""
    have = list(dict.fromkeys(m["label"] for m in todo))
    unknown = [label for label in labels if label not in have]
    if unknown:
        raise ValueError(f"unknown model {', '.join(unknown)} in these groups; choose from "
                         f"{', '.join(have)}")
    return [m for m in todo if not labels or m["label"] in labels]


# The protocol fields a finished run must share with the job that would reuse it.
PROTOCOL = ("epochs", "width_mult", "resolution", "seed", "train_subset")


def protocol_mismatch(config: dict[str, Any], job: dict[str, Any]) -> str | None:
    """What differs between a finished run's config and the job, or None."""
    want = {"epochs": job["epochs"], "width_mult": job["width"],
            "resolution": job["resolution"], "seed": job["seed"],
            "train_subset": job["recipe"].get("train_subset")}
    want.update({k: v for k, v in job["recipe"].items() if k in config})
    for k, v in want.items():
        if config.get(k) != v:
            return f"{k} {config.get(k)!r}, here {v!r}"
    return None


def train_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (model, seed) with nas.train's recipe unless its metrics.json exists."""
    import torch
    torch.set_num_threads(1)
    from nas.arch.io import save_spec
    from nas.training.fit import TrainSettings, fit, make_spec, resolve

    out = Path(job["out"])
    metrics = out / "metrics.json"
    reused = metrics.is_file()
    if not reused:
        spec_path = out / "spec.yaml"
        out.mkdir(parents=True, exist_ok=True)
        save_spec(job["spec"], spec_path)
        c = resolve(TrainSettings(spec=str(spec_path), resolution=job["resolution"],
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
            "minutes": m["train_seconds"] / 60, "out": job["out"], "reused": reused}


def finished_seeds(folder: Path) -> list[int]:
    """The seeds of a model's finished runs (``seedS/metrics.json``) in its folder."""
    return sorted(int(m.parent.name[4:]) for m in folder.glob("seed*/metrics.json")
                  if m.parent.name[4:].isdigit())


def _slug(label: str) -> str:
    return label.replace(" ", "-")


def comparisons(todo: list[dict[str, Any]], group: str) -> list[tuple[str, str]]:
    """The (ours, theirs) pairs of a group, by label: what the group's claim compares."""
    labels = [m["label"] for m in todo if m["group"] == group]
    if group == "baselines":
        return [("searched baseline", b) for b in labels if b != "searched baseline"]
    if group == "scaling":
        return [(c, other) for c in labels if c.endswith("compound")
                for other in labels if other.startswith(c.split()[0]) and other != c]
    return [(a, "efficientnet " + a.split()[1]) for a in labels
            if a.startswith("searched ") and "efficientnet " + a.split()[1] in labels]


def summary(rs: list[dict[str, Any]], key: str = "val") -> dict[str, Any] | None:
    from nas.pipeline.report import seed_summary

    return seed_summary(rs, key)


def close_pairs(results: list[dict[str, Any]], todo: list[dict[str, Any]],
                groups: list[str], gap: float) -> set[tuple[str, str]]:
    """(group, label) of both models of every comparison whose mean gap is under ``gap``."""
    out: set[tuple[str, str]] = set()
    for group in groups:
        by = _by_label(results, group)
        for a, b in comparisons(todo, group):
            sa, sb = summary(by.get(a, [])), summary(by.get(b, []))
            if sa and sb and abs(sa["mean"] - sb["mean"]) < gap:
                out |= {(group, a), (group, b)}
    return out


def _by_label(results: list[dict[str, Any]], group: str) -> dict[str, list[dict[str, Any]]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if r["group"] == group:
            by.setdefault(r["label"], []).append(r)
    return by


def run_jobs(jobs: list[dict[str, Any]], processes: int,
             done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Train the jobs (each output folder once), reusing results already in ``done``."""
    from nas.arch.cost import count_macs

    fresh = [j for j in {j["out"]: j for j in jobs}.values() if j["out"] not in done]
    fresh.sort(key=lambda j: -count_macs(j["spec"]) * (j["resolution"] / 32) ** 2)  # big first
    if fresh:
        with mp.get_context("spawn").Pool(min(processes, len(fresh))) as pool:
            for r in pool.imap_unordered(train_one, fresh):
                print(f"  {r['group']:<9} {r['label']:<24} seed {r['seed']}: val "
                      f"{r['val']:.4f} ({r['resolution']} px, {r['minutes']:.1f} min"
                      + (", finished earlier)" if r["reused"] else ")"),
                      flush=True)
                done[r["out"]] = r
    return [{**done[j["out"]], "group": j["group"], "label": j["label"]} for j in jobs]


def markdown(results: list[dict[str, Any]], todo: list[dict[str, Any]], groups: list[str],
             protocol: str) -> str:
    from nas.pipeline.report import compare_to

    lines = [(f"Protocol: {protocol}. MACs and parameters are those of the network as trained "
             "(the width multiplier applied, 10 classes, one input channel), MACs at the "
             "spec's own resolution."), ""]
    for group in groups:
        by = _by_label(results, group)
        lines += [f"### {group}", "", ("| model | MACs as trained | params as trained | train px | "
                                       "val (mean, range) | test (mean) | seeds | min/run |"),
                  "|---|---|---|---|---|---|---|---|"]
        for m in todo:
            rs = by.get(m["label"]) if m["group"] == group else None
            if not rs:
                continue
            v, t = summary(rs), summary(rs, "test")
            rng = f" ({v['low']:.4f}-{v['high']:.4f})" if v["n"] > 1 else ""
            lines.append(
                f"| {m['label']} | {rs[0]['macs'] / 1e6:.1f}M | {rs[0]['params']:,} | "
                f"{rs[0]['resolution']} | {v['mean']:.4f}{rng} | "
                f"{t['mean'] if t else math.nan:.4f} | {v['n']} | "
                f"{statistics.mean(r['minutes'] for r in rs):.1f} |")
        pairs = comparisons(todo, group)
        if pairs:
            lines += ["", "| comparison (validation accuracy) | verdict |", "|---|---|"]
            for a, b in pairs:
                lines.append(f"| {a} vs {b} | "
                             f"{compare_to(summary(by.get(a, [])), summary(by.get(b, [])))} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], todo: list[dict[str, Any]], groups: list[str],
         path: Path) -> None:
    """Validation accuracy against MACs, one panel per group; a bar spans the seeds (a model
    of one seed has none)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.6), squeeze=False)
    for ax, group in zip(axes[0], groups):
        by = _by_label(results, group)
        series: dict[str, list[tuple[float, dict[str, Any], str]]] = {}
        for m in todo:
            if m["group"] != group or not by.get(m["label"]):
                continue
            if group == "scaling":
                name = m["label"].split(" ", 1)[1]
            elif group == "family":
                name = "efficientnet" if m["label"].startswith("efficientnet") else "searched"
            else:
                name = m["label"]
            rs = by[m["label"]]
            series.setdefault(name, []).append((rs[0]["macs"] / 1e6, summary(rs), m["label"]))
        if group == "scaling":  # the shared starting point of every scaling
            base = _by_label(results, "baselines").get("searched baseline")
            for pts in series.values():
                if base:
                    pts.append((base[0]["macs"] / 1e6, summary(base), "baseline"))
        for name, pts in series.items():
            pts.sort(key=lambda p: p[0])
            ax.errorbar([p[0] for p in pts], [p[1]["mean"] for p in pts],
                        yerr=[[p[1]["mean"] - p[1]["low"] for p in pts],
                              [p[1]["high"] - p[1]["mean"] for p in pts]],
                        fmt="o-" if len(pts) > 1 else "o", capsize=3, label=name)
            if group == "baselines":
                ax.annotate(name, (pts[0][0], pts[0][1]["mean"]), textcoords="offset points",
                            xytext=(5, 5), fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("MACs in millions (as trained: narrower, 10 classes; spec resolution)")
        ax.set_ylabel("validation accuracy (bar: range over seeds; none: one seed)")
        ax.set_title(group)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True, help="the searched baseline's spec")
    p.add_argument("--scaling", help="a scaling.yaml (default: the paper's coefficients)")
    p.add_argument("--groups", default="baselines,scaling,family")
    p.add_argument("--models", default="",
                   help="train only these models of the groups, by label, comma-separated "
                        "(e.g. 'searched baseline,efficientnet-b0'); default all")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--seeds", default="0")
    p.add_argument("--more-seeds", default="",
                   help="seeds added to both models of a comparison closer than --gap")
    p.add_argument("--gap", type=float, default=0.01,
                   help="validation accuracy gap under which a comparison gets --more-seeds")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--recipe", default="{}", help="JSON of TrainSettings recipe fields to set")
    p.add_argument("--out", default="runs/claims")
    args = p.parse_args()
    groups = args.groups.split(",")
    unknown = sorted(set(groups) - {"baselines", "scaling", "family"})
    if unknown:
        p.error(f"unknown group {', '.join(unknown)}; choose from baselines, scaling, family")
    seeds = [int(s) for s in args.seeds.split(",")]
    more = [int(s) for s in args.more_seeds.split(",") if s]
    recipe = json.loads(args.recipe)
    from nas.core.errors import NasError
    try:
        todo = models(args.baseline, args.scaling, groups)
    except NasError as e:  # a missing or malformed spec or scaling file
        sys.exit(f"error: {e}")
    try:
        todo = select(todo, [s.strip() for s in args.models.split(",") if s.strip()])
    except ValueError as e:
        p.error(str(e))
    out = Path(args.out)

    def jobs_for(wanted: list[tuple[dict[str, Any], int]]) -> list[dict[str, Any]]:
        jobs = []
        for m, s in wanted:
            res = max(8, round(args.resolution * m["spec"].resolution
                               / m["base_resolution"] / 4) * 4)
            job = {**m, "seed": s, "resolution": res, "width": args.width,
                   "epochs": args.epochs, "recipe": recipe,
                   "out": str(out / _slug(m["label"]) / f"seed{s}")}
            metrics = Path(job["out"]) / "metrics.json"
            if metrics.is_file():
                why = protocol_mismatch(json.loads(metrics.read_text())["config"], job)
                if why:
                    sys.exit(f"error: {metrics} was trained under another protocol ({why}); "
                             "pass another --out or the same settings")
            jobs.append(job)
        return jobs

    protocol = (f"nas.train, {args.epochs} epochs, width x{args.width}, {args.resolution} px for "
                f"a baseline's resolution, recipe {json.dumps(recipe) if recipe else 'defaults'}"
                f"; seeds {args.seeds}" + (f", then {args.more_seeds} where a comparison is "
                                           f"closer than {args.gap}" if more else ""))
    first = jobs_for([(m, s) for m in todo for s in seeds])
    kept = jobs_for([(m, s) for m in todo for s in finished_seeds(out / _slug(m["label"]))
                     if s not in seeds])
    if kept:
        protocol += (f"; {len(kept)} finished runs of other seeds under this protocol in "
                     f"{out} are included")
    print(f"{len(first)} runs ({len(todo)} models x seeds {seeds}); {protocol}; "
          f"{args.processes} at a time, one thread each; {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    t0 = time.time()
    done: dict[str, dict[str, Any]] = {}
    results = run_jobs(first + kept, args.processes, done)
    if more:
        close = close_pairs(results, todo, groups, args.gap)
        have = {(r["group"], r["label"], r["seed"]) for r in results}
        extra = jobs_for([(m, s) for m in todo if (m["group"], m["label"]) in close
                          for s in more if (m["group"], m["label"], s) not in have])
        print(f"{len(close)} models in comparisons closer than {args.gap}: seeds {more} for "
              f"each ({len(extra)} runs)", flush=True)
        results += run_jobs(extra, args.processes, done)
    print(f"\n{len(done)} runs in {(time.time() - t0) / 60:.1f} min (finished runs reused)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "claims.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results, todo, groups, protocol)
    (out / "claims.md").write_text(text + "\n")
    plot(results, todo, groups, out / "claims.png")
    print("\n" + text)
    print(f"written: {out / 'claims.md'}, {out / 'claims.json'}, {out / 'claims.png'}")


if __name__ == "__main__":
    main()
