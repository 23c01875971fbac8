"""Proxy fidelity: does the proxy rank a run's children the way longer training does?

A spread of a finished search's children (evenly over its proxy ranking, plus the reference
network) is trained with a long recipe for several seeds, and with each proxy to compare for
one or more seeds, all on the Ray workers through the search's driver and Tune adapter (so
the runs are seeded, cached and resumable like a search's children). The report gives, per
proxy, Kendall's tau and Spearman's rho against the long schedule's mean accuracy with
bootstrap intervals, the top-k overlap, and the minutes per child; and the long schedule's
own seed-to-seed tau, which bounds what any proxy can reach. Only validation accuracy is
used (held out of the training set); the test split is never looked at.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from nas.arch.spec import ArchSpec
from nas.core import runs
from nas.core.files import write_csv, write_text_atomic
from nas.data import DataSettings
from nas.search.driver import OK, ChildRecord
from nas.search.settings import TrialSettings
from nas.search.stats import (
    Estimate,
    bootstrap,
    kendall_tau,
    spearman_rho,
    top_k_overlap,
)
from nas.training.recipe import Recipe

RUN_PROXY = "run"  # the accuracies the search itself measured


@dataclass(frozen=True)
class FidelitySettings:
    """What to train: ``children`` networks of the run at ``run``, the ``long`` recipe for
    ``seeds`` seeds and every recipe of ``proxies`` (label -> recipe) for ``proxy_seeds``."""

    run: Path
    out: Path
    children: int
    seeds: int
    long: Recipe
    proxies: tuple[tuple[str, Recipe], ...]
    proxy_seeds: int
    run_seed: int
    trials: TrialSettings
    data: DataSettings
    include_reference: bool = True


@dataclass(frozen=True)
class Picked:
    """A network picked for the comparison, with what the search measured."""

    label: str                 # "child12" or "reference"
    spec: ArchSpec
    run_accuracy: float
    macs: int
    blocks: str


def pick_children(records: Sequence[ChildRecord], k: int) -> list[ChildRecord]:
    """``k`` trained children spread evenly over the run's proxy ranking (best, worst and
    evenly in between), best first."""
    ok = sorted((r for r in records if r.status == OK), key=lambda r: (-r.accuracy, r.child))
    if k >= len(ok):
        return ok
    positions = sorted({round(i * (len(ok) - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]
    return [ok[i] for i in positions]


def _mean(values: Sequence[float]) -> float:
    return statistics.mean(values) if values else math.nan


def plan(s: FidelitySettings, picked: Sequence[Picked]) -> list[tuple[str, ArchSpec, dict]]:
    """Every training as ``(label, spec, recipe overrides)``, network by network."""
    items: list[tuple[str, ArchSpec, dict]] = []
    for p in picked:
        for seed in range(s.seeds):
            items.append((f"long/{p.label}/{seed}", p.spec, {**s.long.to_dict(), "seed": seed}))
        for name, recipe in s.proxies:
            for seed in range(s.proxy_seeds):
                items.append((f"proxy/{name}/{p.label}/{seed}", p.spec,
                              {**recipe.to_dict(), "seed": seed}))
    return items


def trained_so_far(items: Sequence[tuple[str, ArchSpec, dict]], out: Path
                   ) -> dict[str, ChildRecord]:
    """label -> record of the trainings finished in ``out`` (read from its driver state,
    which is only read); empty when nothing was saved yet. A saved training that is not the
    one ``items`` plans at its place (other options than the run's) is a one-line error."""
    from nas.core.errors import ConfigError
    from nas.search import tune_adapter as ta
    from nas.search.driver import child_key

    state_file = out / "driver.pt"
    if not state_file.is_file():
        return {}
    found = {}
    for d in ta.load_state(state_file)["records"]:
        r = ChildRecord.from_dict(d)
        i = r.tokens[0] if r.tokens else -1
        if not 0 <= i < len(items) or (r.identity and
                                       r.identity != child_key(items[i][1], items[i][2])):
            raise ConfigError(f"{out}: its saved trainings were planned with other options; "
                              "pass the options the run was started with")
        found[items[i][0]] = r
    return found


def finished_networks(s: FidelitySettings, picked: Sequence[Picked],
                      records: dict[str, ChildRecord]) -> list[Picked]:
    """The networks whose every training (long seeds and proxies) has ended."""
    done = []
    for p in picked:
        labels = [label for label, _, _ in plan(s, [p])]
        if all(label in records for label in labels):
            done.append(p)
    return done


def partial_report(s: FidelitySettings, picked: Sequence[Picked], say: Callable[[str], None]
                   ) -> dict[str, Any] | None:
    """The report over the networks finished so far (None below 3 of them), written to
    ``s.out`` with ``partial`` set; nothing is trained."""
    records = trained_so_far(plan(s, picked), s.out)
    done = finished_networks(s, picked, records)
    if len(done) < 3:
        say(f"fidelity: {len(done)} of {len(picked)} networks finished; a report needs 3")
        return None
    report = make_report(s, done, records, math.nan)
    if len(done) < len(picked):
        report["partial"] = {"finished": len(done), "planned": len(picked)}
    write_report(report, s.out)
    say(f"fidelity: wrote a partial report over {len(done)} of {len(picked)} networks")
    return report


def run_fidelity(s: FidelitySettings, picked: Sequence[Picked], resume: bool,
                 say: Callable[[str], None]) -> dict[str, Any]:
    """Train everything (on Ray), write the report files, return the report. Stopped early
    (Ctrl-C), it writes the report over the networks finished so far before it stops."""
    from nas.search.runner import train_fixed

    items = plan(s, picked)
    say(f"fidelity: {len(picked)} networks x ({s.seeds} long seeds + {len(s.proxies)} proxies x "
        f"{s.proxy_seeds} seeds) = {len(items)} trainings; out {s.out}")
    t0 = time.time()
    data = s.data.load()
    runs.mark(s.out, "fidelity", run=str(s.run))
    try:
        records = train_fixed(items, s.out, s.trials, data, s.run_seed, resume,
                              f"effnas fidelity {s.run} --resume", table="trainings")
    except KeyboardInterrupt:
        partial_report(s, picked, say)
        raise
    report = make_report(s, picked, records, time.time() - t0)
    write_report(report, s.out)
    return report


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


def make_report(s: FidelitySettings, picked: Sequence[Picked], records: dict[str, ChildRecord],
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
