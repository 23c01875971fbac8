"""PPO vs random search vs regularized evolution on Fashion-MNIST at an equal budget.

    .venv/bin/python bench/bench_strategies.py [--budget 20] [--seeds 0 1 2]

Each (strategy, seed) is a real `search.py` run (Ray, 2 workers, target 400M MACs) with a
light proxy (1 epoch over 4,000 images, 32 px, width 0.5) so that nine searches fit in about
fifteen minutes on 2 cores. Small budgets need small update batches: PPO and REINFORCE update
every 6 children, evolution keeps a population of 8 and samples 3. Prints the best and the
top-5 mean reward per strategy (mean over seeds, and each seed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = {"ppo": "{batch_size: 6}", "reinforce": "{batch_size: 6}", "random": "{}",
           "evolution": "{population: 8, sample: 3}"}
PROXY = ["--set", "proxy.epochs=1", "--set", "proxy.train_subset=4000",
         "--set", "proxy.max_seconds=120"]


def run(strategy: str, seed: int, budget: int, out: Path) -> tuple[list[float], float]:
    cmd = [sys.executable, str(ROOT / "search.py"), "--target-flops", "400M",
           "--strategy", strategy, "--seed", str(seed), "--budget", str(budget),
           "--set", f"strategy_options={OPTIONS[strategy]}", "--set", "reference=null",
           *PROXY, "--out", str(out)]
    t0 = time.time()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in (out / "children.jsonl").read_text().splitlines()]
    rewards = sorted((r["reward"] for r in rows if r["status"] == "ok"), reverse=True)
    return rewards, time.time() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=20)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--strategies", nargs="+", default=["ppo", "random", "evolution"])
    args = p.parse_args()
    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for s in args.strategies:
                rewards, secs = run(s, seed, args.budget, Path(tmp) / f"{s}-{seed}")
                best, top5 = rewards[0], statistics.mean(rewards[:5])
                results.setdefault(s, []).append((best, top5))
                print(f"{s:<10} seed {seed}: best {best:.4f}  top-5 mean {top5:.4f}  "
                      f"({len(rewards)} ok children, {secs:.0f} s)", flush=True)
    print(f"\nbudget {args.budget} children per search, seeds {args.seeds}\n")
    print("| strategy | best reward (mean) | top-5 mean reward (mean) | best per seed |")
    print("|---|---|---|---|")
    for s, rs in results.items():
        print(f"| {s} | {statistics.mean(b for b, _ in rs):.4f} | "
              f"{statistics.mean(t for _, t in rs):.4f} | "
              f"{', '.join(f'{b:.4f}' for b, _ in rs)} |")


if __name__ == "__main__":
    main()
