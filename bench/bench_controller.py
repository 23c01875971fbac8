"""How many children each strategy needs on the planted objective, with the default options.

The planted objective: a hidden target token sequence over the decisions of the MnasNet search
space; reward = fraction of decisions that match it (the optimum, 1.0, is the target alone).
Children finish asynchronously: ``--in-flight`` are outstanding at once and finish in random
order. For each strategy and seed the bench counts the results told until the first reward
>= ``--milestone`` and until the optimum, capped at ``--budget`` ("not reached" otherwise).

NSGA-II (``nsga2``) searches two objectives; here it is told the reward as its accuracy and
the same MACs for every architecture, so it runs as a genetic algorithm on the reward alone.

Random search's expected number of samples to hit the optimum is the size of the space (about
2e18 here), so the ratio against random for the optimum is a lower bound (cap / samples).

Run: ``.venv/bin/python bench/bench_controller.py`` (single-threaded; about a minute).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller import OPTIONAL, STRATEGIES, make_strategy  # noqa: E402


def space_sizes() -> tuple[int, ...]:
    import nas
    from search_space import SearchSpace
    return SearchSpace.from_yaml(nas.config_path("mnasnet-space")).sizes()


def run_one(name: str, sizes, seed: int, budget: int, in_flight: int, milestone: float):
    target = np.random.default_rng(10_000 + seed).integers(0, np.array(sizes))
    order = np.random.default_rng(20_000 + seed)
    strategy = make_strategy(name, sizes, seed=seed)
    pending = [strategy.ask() for _ in range(in_flight)]
    to_milestone = to_optimum = None
    best = -math.inf
    start = time.perf_counter()
    n = 0
    for n in range(1, budget + 1):
        p = pending.pop(int(order.integers(len(pending))))
        r = float(np.mean(np.asarray(p.tokens) == target))
        best = max(best, r)
        # One objective here: a strategy that searches accuracy and MACs (nsga2) is told
        # the reward as accuracy and the same MACs for every architecture.
        strategy.tell(p, r, {"accuracy": r, "macs": 0.0} if strategy.METRICS else None)
        if to_milestone is None and r >= milestone:
            to_milestone = n
        if r == 1.0:
            to_optimum = n
            break
        pending.append(strategy.ask())
    return to_milestone, to_optimum, best, (time.perf_counter() - start) / n


def summary(values: list[int | None], budget: int) -> tuple[str, float | None]:
    reached = [v for v in values if v is not None]
    if not reached:
        return f"not reached (> {budget})", None
    mean = float(np.mean(reached))
    text = f"{mean:,.0f}"
    if len(reached) < len(values):
        text += f" ({len(reached)}/{len(values)} seeds; others > {budget})"
    return text, mean if len(reached) == len(values) else None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strategies", nargs="+", choices=STRATEGIES,
                    default=[n for n in STRATEGIES if n not in OPTIONAL],
                    help="default: the built-in ones (tpe and nsga2 need optuna)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=20_000)
    ap.add_argument("--in-flight", type=int, default=4)
    ap.add_argument("--milestone", type=float, default=0.6)
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(1)

    sizes = space_sizes()
    print(f"planted objective over the MnasNet space: {len(sizes)} decisions, "
          f"{math.prod(sizes):.3g} architectures; {args.seeds} seeds, budget {args.budget}, "
          f"{args.in_flight} in flight, default options")
    rows = {}
    for name in args.strategies:
        runs = [run_one(name, sizes, s, args.budget, args.in_flight, args.milestone)
                for s in range(args.seeds)]
        rows[name] = runs
        per_seed = ", ".join("-" if r[1] is None else str(r[1]) for r in runs)
        print(f"  {name:<10} samples to optimum per seed: {per_seed}", flush=True)

    print()
    head = (f"| strategy | samples to reward >= {args.milestone} | samples to optimum | "
            f"best reward (mean) | ms per sample | vs random (>= {args.milestone}) | "
            "vs random (optimum) |")
    print(head)
    print("|---" * 7 + "|")
    rand_m = None
    if "random" in rows:
        rand_m = summary([r[0] for r in rows["random"]], args.budget)[1]
    for name, runs in rows.items():
        m_text, m_mean = summary([r[0] for r in runs], args.budget)
        o_text, o_mean = summary([r[1] for r in runs], args.budget)
        best = np.mean([r[2] for r in runs])
        ms = 1000 * np.mean([r[3] for r in runs])
        vs_m = f"{rand_m / m_mean:.1f}x fewer" if rand_m and m_mean else "-"
        if name == "random":
            vs_m = "1.0x"
        vs_o = f">= {args.budget / o_mean:.0f}x fewer" if o_mean else "-"
        print(f"| {name} | {m_text} | {o_text} | {best:.3f} | {ms:.2f} | {vs_m} | {vs_o} |")
    print()
    print(f"random search needs {math.prod(sizes):.3g} samples on average to hit the optimum; "
          f"'>= Nx' is budget / samples, a lower bound.")


if __name__ == "__main__":
    main()
