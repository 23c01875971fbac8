"""The fidelity report: rank correlations with bootstrap intervals, the top-k overlap, the
minutes per child, and the files (``fidelity.json``, ``.md``, ``.csv``, ``.png``)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nas.core.files import write_csv, write_text_atomic
from nas.fidelity.settings import RUN_PROXY, FidelityPlan, Picked
from nas.search.driver import OK, ChildRecord
from nas.search.stats import (
    Estimate,
    bootstrap,
    kendall_tau,
    spearman_rho,
    top_k_overlap,
)


def _mean(values: Sequence[float]) -> float:
    return statistics.mean(values) if values else math.nan


def _accuracies(records: dict[str, ChildRecord], prefix: str, label: str, seeds: int
                ) -> list[float]:
    out = []
    for seed in range(seeds):
        r = records.get(f"{prefix}/{label}/{seed}")
        if r is not None and r.status == OK:
            out.append(r.accuracy)
    return out


def _minutes(records: dict[str, ChildRecord], prefix: str) -> float:
    secs = [r.seconds for k, r in records.items() if k.startswith(prefix + "/")]
    return _mean(secs) / 60 if secs else math.nan


def _seed_tau(per_seed: list[list[float]]) -> float:
    """Mean Kendall tau between the rankings of every pair of seeds (NaN with one seed)."""
    taus = [kendall_tau(per_seed[i], per_seed[j])
            for i in range(len(per_seed)) for j in range(i + 1, len(per_seed))]
    taus = [t for t in taus if not math.isnan(t)]
    return _mean(taus)


def make_report(s: FidelityPlan, picked: Sequence[Picked], records: dict[str, ChildRecord],
                seconds: float) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    long_runs = {p.label: _accuracies(records, "long", p.label, s.seeds) for p in picked}
    usable = [p for p in picked if long_runs[p.label]]
    long_mean = np.array([_mean(long_runs[p.label]) for p in usable])
    k = max(1, len(usable) // 4)
    long_per_seed = [[long_runs[p.label][i] for p in usable] for i in range(s.seeds)
                     if all(len(long_runs[p.label]) > i for p in usable)]
    long_tau = _seed_tau(long_per_seed)
    if len(long_per_seed) >= 2:
        long_ci = bootstrap(kendall_tau, long_per_seed[0], long_per_seed[1], rng)
    else:
        long_ci = Estimate(math.nan, math.nan, math.nan)
    proxies: list[dict[str, Any]] = []
    names = [RUN_PROXY] + [name for name, _ in s.proxies]
    for name in names:
        if name == RUN_PROXY:
            per_child = {p.label: [p.run_accuracy] for p in usable}
            minutes = math.nan
            seeds = 1
        else:
            per_child = {p.label: _accuracies(records, f"proxy/{name}", p.label, s.proxy_seeds)
                         for p in usable}
            minutes = _minutes(records, f"proxy/{name}")
            seeds = s.proxy_seeds
        if any(not v for v in per_child.values()):
            proxies.append({"proxy": name, "missing": sorted(k for k, v in per_child.items()
                                                             if not v)})
            continue
        acc = np.array([_mean(per_child[p.label]) for p in usable])
        per_seed = [[per_child[p.label][i] for p in usable] for i in range(seeds)
                    if all(len(per_child[p.label]) > i for p in usable)]
        proxies.append({
            "proxy": name, "kendall": bootstrap(kendall_tau, acc, long_mean, rng).to_dict(),
            "spearman": bootstrap(spearman_rho, acc, long_mean, rng).to_dict(),
            "top_k": k, "top_k_overlap": top_k_overlap(acc, long_mean, k),
            "seed_tau": None if len(per_seed) < 2 else _seed_tau(per_seed),
            "minutes_per_child": None if math.isnan(minutes) else minutes,
            "accuracy": {p.label: per_child[p.label] for p in usable},
        })
    return {
        "run": str(s.run), "networks": len(usable), "seconds": None if math.isnan(seconds) else round(seconds, 1),
        "long": {"recipe": s.long.to_dict(), "seeds": s.seeds,
                 "seed_tau": None if math.isnan(long_tau) else long_tau,
                 "seed_tau_interval": long_ci.to_dict(),
                 "minutes_per_child": _minutes(records, "long"),
                 "accuracy": {p.label: long_runs[p.label] for p in usable}},
        "proxies": proxies,
        "recipes": {name: r.to_dict() for name, r in s.proxies},
        "picked": [{"label": p.label, "macs": p.macs, "run_accuracy": p.run_accuracy,
                    "blocks": p.blocks} for p in usable],
    }


def _fmt(e: dict[str, float | None]) -> str:
    if e["value"] is None:
        return "n/a"
    lo, hi = e["low"], e["high"]
    interval = "" if lo is None else f" [{lo:.2f}, {hi:.2f}]"
    return f"{e['value']:.2f}{interval}"


def markdown(report: dict[str, Any]) -> str:
    """The report's tables."""
    lg = report["long"]
    own = {"value": lg["seed_tau"], "low": lg["seed_tau_interval"]["low"],
           "high": lg["seed_tau_interval"]["high"]}
    part = report.get("partial")
    note = (f" (partial: {part['finished']} of the {part['planned']} planned networks had "
            "finished)" if part else "")
    lines = [f"Proxy fidelity on {report['networks']} networks of {report['run']}{note}: long "
             f"schedule {lg['recipe']['epochs']} epochs x {lg['seeds']} seeds "
             f"({lg['minutes_per_child']:.1f} min per child); its own seed-to-seed Kendall tau "
             f"{_fmt(own)}.",
             "",
             "| proxy | Kendall tau [95 % CI] | Spearman rho [95 % CI] | top-k overlap | "
             "proxy seed-to-seed tau | min per child |",
             "|---|---|---|---|---|---|"]
    for p in report["proxies"]:
        if "missing" in p:
            lines.append(f"| {p['proxy']} | missing results for {', '.join(p['missing'])} "
                         "| | | | |")
            continue
        seed_tau = "" if p["seed_tau"] is None else f"{p['seed_tau']:.2f}"
        minutes = "" if p["minutes_per_child"] is None else f"{p['minutes_per_child']:.2f}"
        lines.append(f"| {p['proxy']} | {_fmt(p['kendall'])} | {_fmt(p['spearman'])} | "
                     f"{p['top_k_overlap']:.2f} (k={p['top_k']}) | {seed_tau} | {minutes} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path) -> None:
    """``fidelity.json``, ``fidelity.md``, ``fidelity.csv`` (one row per network and
    training) and ``fidelity.png`` (each proxy's accuracy against the long schedule's)."""
    write_text_atomic(out / "fidelity.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(out / "fidelity.md", markdown(report))
    rows = []
    for p in report["picked"]:
        for seed, acc in enumerate(report["long"]["accuracy"][p["label"]]):
            rows.append([p["label"], p["macs"], "long", seed, f"{acc:.6f}"])
        for proxy in report["proxies"]:
            for seed, acc in enumerate(proxy.get("accuracy", {}).get(p["label"], [])):
                rows.append([p["label"], p["macs"], proxy["proxy"], seed, f"{acc:.6f}"])
    write_csv(out / "fidelity.csv", ("network", "macs", "training", "seed", "val_accuracy"),
              rows)
    _plot(report, out / "fidelity.png")


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [p for p in report["proxies"] if "missing" not in p]
    if not shown:
        return
    cols = min(3, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), dpi=100,
                             squeeze=False)
    long_acc = report["long"]["accuracy"]
    for ax, p in zip(axes.flat, shown):
        labels = list(p["accuracy"])
        x = [_mean(long_acc[lb]) for lb in labels]
        xerr = [np.ptp(long_acc[lb]) / 2 if len(long_acc[lb]) > 1 else 0 for lb in labels]
        y = [_mean(p["accuracy"][lb]) for lb in labels]
        yerr = [np.ptp(p["accuracy"][lb]) / 2 if len(p["accuracy"][lb]) > 1 else 0
                for lb in labels]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", ms=4, capsize=2)
        ax.set_title(f"{p['proxy']}: tau {_fmt(p['kendall'])}", fontsize=8)
        ax.set_xlabel("long schedule, validation accuracy", fontsize=8)
        ax.set_ylabel("proxy validation accuracy", fontsize=8)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
