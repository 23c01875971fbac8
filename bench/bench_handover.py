"""What a search hands over, retrained: one strategy against another, or a latency target
against a MACs target.

    .venv/bin/python bench/bench_handover.py strategies --out runs/bench-handover \\
        [--arms ppo random] [--seeds 0 1 2] [--budget 60] [--eval-seeds 3]
    .venv/bin/python bench/bench_handover.py targets --out runs/bench-targets \\
        [--seeds 0 1 2] [--budget 30] [--eval-seeds 3] [--target-flops 400M]

Every search is a real ``search.py`` run with the laptop defaults (the default proxy, 2
workers, no reference), only the flags named here changed. The network it hands over is its
best.yaml. That network is then trained ``--eval-seeds`` more times by the same proxy with
fresh seeds (run seeds 3000, 3001, ...) on a validation split no search used (data seed
1000), so its score is free of the selection that picked it: the luck of the one run that
made it the best does not come along.

``strategies``: one search per arm (a strategy) and seed at ``--target-flops``; the score is
the retrained network's reward (``ACC * (MACs/T)^-0.07``) and accuracy.

``targets``: per seed, a search at ``--target-flops`` ("flops"); its best.yaml's latency is
measured here (batch 1, 1 thread, the target setting: 224 px, 1,000 classes; the median of
three measurements, once the search's Ray processes are gone); then a search
at ``--target-latency`` of that measurement ("latency"), same seed and budget. At the end
both arms' networks are measured again, side by side, and scored with MnasNet's soft latency
reward ``ACC * (LAT/T)^-0.07``, T the flops network's latency in that pass. The machine should be
otherwise idle: the latencies are wall-clock times.

Prints, per arm, the mean and range over seeds (each seed's value the mean of its
retrainings), and "not shown" where the ranges overlap. A finished search or retraining in
``--out`` is read back, an interrupted one continued; results go to ``OUT/handover.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EVAL_SEED = 3000   # retraining run seeds: EVAL_SEED + k, no search's
EVAL_SPLIT = 1000  # the retraining's validation split: no search's data seed


SETS: list[str] = []  # --set KEY=VALUE given to the bench: every search's and retraining's


def run_search(out: Path, args: list[str]) -> dict:
    """A search run (or continued) to its end in ``out``; its summary.json."""
    summary = out / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("finished"):
        return json.loads(summary.read_text())
    cmd = [sys.executable, str(ROOT / "search.py")]
    cmd += ["--resume", "--out", str(out)] if (out / "driver.pt").is_file() else [
        *args, "--out", str(out), "--set", "reference=null",
        *(x for kv in SETS for x in ("--set", kv))]
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    print(f"{out.name}: search took {time.time() - t0:.0f} s", flush=True)
    return json.loads(summary.read_text())


SETTLE_S = 10.0   # quiet seconds before a measurement, after the search's Ray has gone
PASSES = 3        # adaptive measurements per network; their median is its latency


def settle(limit_s: float = 120.0) -> None:
    """Wait until no Ray process is left (a search that just ended stops its cluster for a
    few seconds) and then ``SETTLE_S`` more: a measurement beside them is slower."""
    from nas.ray.leftovers import ray_processes
    t0 = time.time()
    while ray_processes() and time.time() - t0 < limit_s:
        time.sleep(1.0)
    time.sleep(SETTLE_S)


def measure(path: Path) -> float:
    """The latency (ms) of the spec file at ``path``: batch 1, 1 thread, 224 px; the median
    of ``PASSES`` adaptive measurements."""
    from nas.latency.measure import measure_latency
    return statistics.median(measure_latency(path, threads=1).median_ms
                             for _ in range(PASSES))


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ({min(values):.4f}-{max(values):.4f})"


def verdict(name: str, a: str, b: str, va: list[float], vb: list[float]) -> str:
    """Which arm's mean is higher, and whether the ranges are apart."""
    hi, lo = (a, b) if statistics.mean(va) >= statistics.mean(vb) else (b, a)
    vhi, vlo = (va, vb) if hi == a else (vb, va)
    if len(va) < 3 or len(vb) < 3:
        return f"{name}: {hi}'s mean above {lo}'s, fewer than 3 seeds (not shown)"
    if min(vhi) > max(vlo):
        return f"{name}: {hi} above {lo}, ranges apart (shown, {len(va)} seeds)"
    return f"{name}: {hi}'s mean above {lo}'s, ranges overlap (not shown)"


def retrain(out: Path, networks: dict[str, Path], eval_seeds: int) -> dict[str, list[float]]:
    """label -> validation accuracies of the network at each path, over ``eval_seeds``
    proxy trainings with fresh seeds (failed runs left out). Two searches that hand over
    the same network share its trainings."""
    from nas.arch.spec import identity
    from nas.core.settings import load
    from nas.latency.measure import as_spec
    from nas.ray.runtime import init_ray
    from nas.search.runner import train_fixed
    from nas.search.settings import SearchSettings

    cfg = load(SearchSettings, overrides=[*SETS, f"data.seed={EVAL_SPLIT}"])
    data = cfg.data_settings().load()
    specs = {label: as_spec(path) for label, path in networks.items()}
    unique = {identity(spec): spec for _, spec in sorted(specs.items())}  # trained once each
    items = [(key, spec, {}) for key, spec in sorted(unique.items())]
    init_ray(None)
    accs: dict[str, list[float]] = {key: [] for key in unique}
    for k in range(eval_seeds):
        recs = train_fixed(items, out / f"eval-{k}", cfg.trials, data, EVAL_SEED + k,
                           resume=True, resume_hint="the same command", table="children")
        for key, rec in recs.items():
            if rec.status == "ok":
                accs[key].append(rec.accuracy)
    return {label: accs[identity(spec)] for label, spec in specs.items()}


def strategies(args: argparse.Namespace, out: Path) -> dict:
    from nas.arch.units import parse_macs
    from nas.search.reward import RewardConfig, compute_reward

    searches: dict[str, dict] = {}
    for seed in args.seeds:
        for arm in args.arms:
            label = f"{arm}-{seed}"
            searches[label] = run_search(out / label, [
                "--target-flops", args.target_flops, "--strategy", arm, "--seed", str(seed),
                "--budget", str(args.budget)])
    accs = retrain(out, {label: out / label / "best.yaml" for label in searches},
                   args.eval_seeds)
    reward = RewardConfig(target_macs=parse_macs(args.target_flops))
    rows = []
    for label, s in searches.items():
        arm, seed = label.rsplit("-", 1)
        acc = statistics.mean(accs[label])
        rows.append({"arm": arm, "seed": int(seed), "child": s["best"]["child"],
                     "macs": s["best"]["macs"], "in_run_reward": s["best"]["reward"],
                     "in_run_accuracy": s["best"]["accuracy"], "retrained": accs[label],
                     "accuracy": acc,
                     "reward": compute_reward(acc, s["best"]["macs"], reward).reward})
    return {"compare": "strategies", "rows": rows}


def targets(args: argparse.Namespace, out: Path) -> dict:
    base = ["--budget", str(args.budget)]
    searches: dict[str, dict] = {}
    target_ms: dict[int, float] = {}
    for seed in args.seeds:
        flops = f"flops-{seed}"
        searches[flops] = run_search(out / flops, [
            "--target-flops", args.target_flops, "--seed", str(seed), *base])
        first = out / flops / "target-latency.json"
        if not first.is_file():
            settle()
            first.write_text(json.dumps({"ms": measure(out / flops / "best.yaml")}) + "\n")
        target_ms[seed] = json.loads(first.read_text())["ms"]
        print(f"seed {seed}: the flops search's network measures {target_ms[seed]:.3f} ms",
              flush=True)
        searches[f"latency-{seed}"] = run_search(out / f"latency-{seed}", [
            "--target-latency", f"{target_ms[seed]:.4f}ms", "--seed", str(seed), *base])
    lat: dict[str, list[float]] = {label: [] for label in searches}
    settle()
    for _ in range(2):  # both arms again, side by side, twice
        for label in searches:
            lat[label].append(measure(out / label / "best.yaml"))
    accs = retrain(out, {label: out / label / "best.yaml" for label in searches},
                   args.eval_seeds)
    rows = []
    for label, s in searches.items():
        arm, seed = label.rsplit("-", 1)
        acc, ms = statistics.mean(accs[label]), statistics.median(lat[label])
        t = statistics.median(lat[f"flops-{seed}"])  # measured in the same pass
        rows.append({"arm": arm, "seed": int(seed), "child": s["best"]["child"],
                     "macs": s["best"]["macs"], "predicted_ms": s["best"].get("latency_ms"),
                     "measured_ms": lat[label], "latency_ms": ms, "target_ms": t,
                     "search_target_ms": target_ms[int(seed)],
                     "in_run_reward": s["best"]["reward"], "retrained": accs[label],
                     "accuracy": acc, "reward": acc * (ms / t) ** -0.07})
    return {"compare": "targets", "rows": rows}


def report(result: dict) -> None:
    rows = result["rows"]
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    keys = ["reward", "accuracy"] + (["latency_ms"] if result["compare"] == "targets" else [])
    print("\n| arm | seed | child | MACs | " + " | ".join(keys) + " | retrained accuracies |")
    print("|---|---|---|---|" + "---|" * len(keys) + "---|")
    for r in sorted(rows, key=lambda r: (arms.index(r["arm"]), r["seed"])):
        print(f"| {r['arm']} | {r['seed']} | {r['child']} | {r['macs'] / 1e6:.1f}M | "
              + " | ".join(f"{r[k]:.4f}" for k in keys) + " | "
              + ", ".join(f"{a:.4f}" for a in r["retrained"]) + " |")
    print("\nover seeds, mean (range):")
    values = {a: {k: [r[k] for r in rows if r["arm"] == a] for k in keys} for a in arms}
    for a in arms:
        print(f"  {a}: " + "; ".join(f"{k} {spread(values[a][k])}" for k in keys))
    if len(arms) == 2:
        for k in ("reward", "accuracy"):
            print("  " + verdict(k, arms[0], arms[1], values[arms[0]][k], values[arms[1]][k]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("compare", choices=["strategies", "targets"])
    p.add_argument("--out", required=True)
    p.add_argument("--arms", nargs="+", default=["ppo", "random"],
                   help="strategies to compare (strategies only)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budget", type=int, default=None,
                   help="children per search (default 60 for strategies, 30 for targets)")
    p.add_argument("--eval-seeds", type=int, default=3)
    p.add_argument("--target-flops", default="400M")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a search setting for every search and retraining (repeatable)")
    args = p.parse_args(argv)
    SETS[:] = args.set
    if args.budget is None:
        args.budget = 60 if args.compare == "strategies" else 30
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    result = (strategies if args.compare == "strategies" else targets)(args, out)
    result.update(budget=args.budget, sets=args.set, seeds=args.seeds, eval_seeds=args.eval_seeds,
                  target_flops=args.target_flops, seconds=round(time.time() - t0))
    (out / "handover.json").write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    print(f"\n{time.time() - t0:.0f} s; {out / 'handover.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
