"""ASHA against full proxy schedules on a real search: children per hour and rank fidelity.

Two searches of the same children: random search with one seed proposes the same
architectures in the same order whatever their results, and every child is trained with a
seed drawn from the run's seed and its identity, so the run without a scheduler gives each
child's full-schedule accuracy (bit for bit what it would have reached in the ASHA run had
ASHA not stopped it). The ASHA run stops children after an epoch (``tune.scheduler: asha``).

Reported for the ASHA run against the full schedules of the same children: the children per
hour of each run (wall clock of the session, and the children's own seconds), how many ASHA
stopped at which epoch, Kendall's tau (with a bootstrap interval, ``nas.search.stats``)
between the accuracy each child ended the ASHA run with and its full-schedule accuracy, the
same for the reward, the overlap of the top 5, and whether the run's best child is the same.

Run: ``.venv/bin/python bench/bench_asha.py`` (two searches of 30 children, 4 epochs on
2,500 images, 2,000 validation images: about 15 minutes of CPU on 2 cores; the results:
docs/results/asha.md). ``--analyze OFF ON`` only reads two finished run folders.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nas.search.stats import bootstrap, kendall_tau, top_k_overlap  # noqa: E402


def command(out: Path, args: argparse.Namespace, asha: bool) -> list[str]:
    cmd = [sys.executable, str(ROOT / "search.py"), "--target-flops", "400M",
           "--strategy", "random", "--set", "strategy_options={}", "--budget",
           str(args.children), "--workers", str(args.workers), "--seed", str(args.seed),
           "--set", "reference=null", "--set", f"proxy.epochs={args.epochs}",
           "--set", f"proxy.train_subset={args.train_subset}",
           "--set", f"data.val_size={args.val_size}", "--out", str(out)]
    if asha:
        cmd += ["--set", "tune.scheduler=asha"]
    return cmd


def rows(out: Path) -> dict[str, dict]:
    lines = (out / "children.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines if line.strip()]
    return {r["identity"]: r for r in recs if r["status"] not in ("cached", "reference")}


def analyze(off: Path, on: Path) -> None:
    full, asha = rows(off), rows(on)
    shared = sorted(full.keys() & asha.keys(), key=lambda k: asha[k]["child"])
    summaries = {name: json.loads((p / "summary.json").read_text())
                 for name, p in (("off", off), ("on", on))}
    print(f"children: {len(full)} without ASHA, {len(asha)} with, {len(shared)} shared")
    print("\n| run | children | session s | children per hour | children's own s | "
          "stopped (after epoch: count) |")
    print("|---|---|---|---|---|---|")
    for name, recs in (("without ASHA", full), ("ASHA", asha)):
        s = summaries["off" if recs is full else "on"]
        stops: dict[int, int] = {}
        for r in recs.values():
            if r["status"] == "stopped":
                e = int(r["proxy"].get("epochs", 0))
                stops[e] = stops.get(e, 0) + 1
        per_hour = 3600 * len(recs) / s["session_seconds"]
        stop_text = ", ".join(f"{e}: {n}" for e, n in sorted(stops.items())) or "none"
        print(f"| {name} | {len(recs)} | {s['session_seconds']:.0f} | {per_hour:.0f} | "
              f"{s['children_seconds']:.0f} | {stop_text} |")
    ok = [k for k in shared if full[k]["status"] == "ok" and asha[k]["accuracy"] is not None]
    rng = np.random.default_rng(0)
    acc_full = [full[k]["accuracy"] for k in ok]
    acc_asha = [asha[k]["accuracy"] for k in ok]
    rew_full = [full[k]["reward"] for k in ok]
    rew_asha = [asha[k]["reward"] for k in ok]
    completed = [k for k in ok if asha[k]["status"] == "ok"]
    print(f"\nrank fidelity over {len(ok)} children (ASHA run's end against the full schedule):")
    print(f"- Kendall tau, accuracy: {bootstrap(kendall_tau, acc_asha, acc_full, rng)}")
    print(f"- Kendall tau, reward:   {bootstrap(kendall_tau, rew_asha, rew_full, rng)}")
    print(f"- top-5 overlap (reward): {top_k_overlap(rew_asha, rew_full, 5):.2f}")
    best_full = max(ok, key=lambda k: rew_full[ok.index(k)])
    best_asha = max(completed, key=lambda k: asha[k]["reward"]) if completed else None
    rank = sorted(rew_full, reverse=True).index(full[best_asha]["reward"]) + 1 \
        if best_asha else None
    print(f"- best child without ASHA: child {full[best_full]['child']} (reward "
          f"{full[best_full]['reward']:.4f}); ASHA's best (only completed children can be): "
          + (f"child {asha[best_asha]['child']}, full-schedule reward "
             f"{full[best_asha]['reward']:.4f}, rank {rank} of {len(ok)}"
             if best_asha else "none"))
    stopped = [k for k in ok if asha[k]["status"] == "stopped"]
    if stopped:
        lost = [full[k]["reward"] for k in stopped]
        print(f"- stopped children's full-schedule reward: best {max(lost):.4f}, "
              f"mean {np.mean(lost):.4f}; completed children's: best "
              f"{max(full[k]['reward'] for k in completed):.4f}, mean "
              f"{np.mean([full[k]['reward'] for k in completed]):.4f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--children", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--train-subset", type=int, default=2500)
    ap.add_argument("--val-size", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-asha"))
    ap.add_argument("--analyze", nargs=2, type=Path, metavar=("OFF", "ON"),
                    help="only compare two finished run folders")
    args = ap.parse_args(argv)
    if args.analyze:
        analyze(*args.analyze)
        return
    outs = {False: args.out / "off", True: args.out / "on"}
    for asha, out in outs.items():
        cmd = command(out, args, asha)
        print("$ " + " ".join(cmd[1:]), flush=True)
        t0 = time.time()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        print(f"  {time.time() - t0:.0f} s", flush=True)
    analyze(outs[False], outs[True])


if __name__ == "__main__":
    main()
