"""Search strategies ranked on a rugged, noisy synthetic landscape over the real MnasNet space.

The landscape (``bench/landscape.py``): 43 real decisions, the real cost model and reward
(``ACC * (MACs / 400M) ** -0.07``), an accuracy made of capacity, main effects and pairwise
interactions between decisions of a block and of neighbouring blocks, observed with 1.5 points
of Gaussian noise. Each strategy runs through the search's own driver
(``nas.search.driver.ChildDriver``: ``ask``/``tell``, duplicates answered from the table and
not counted, the search ending when the strategy only proposes known architectures) with
``--workers`` children in flight that finish in random order. Seed ``s`` uses landscape
``--landscape-base + s`` and strategy seed ``s``.

The score at a budget of ``n`` children is the TRUE (noise-free) reward of the child a search
would pick after ``n`` children: the one with the highest observed reward (``driver.best()``).

NSGA-II (``nsga2``) is told accuracy and MACs through the driver like in a search; its pick
is still the child with the best observed reward.

Modes:

* default: the strategy table (mean and range over seeds at each budget) and how many children
  PPO needs to beat random search and to match evolution;
* ``--tune``: a grid of PPO and REINFORCE options (``--tune-grid``) on tuning landscapes
  (``--landscape-base`` should then differ from the table's);
* ``--options 'ppo: {lr: 1.0e-3}'``: extra rows with options, beside the defaults;
* ``--describe``: each landscape's random architectures and its best known architecture.

Run: ``.venv/bin/python bench/bench_landscape.py`` (single-threaded; with two extra rows it took
305 s of CPU, 993 s wall on the shared 2-core machine; the results:
docs/results/controller-landscape.md).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.landscape import Landscape  # noqa: E402
from controller import OPTIONAL, STRATEGIES, make_strategy  # noqa: E402
from nas.core.errors import ConfigError, NasError  # noqa: E402
from nas.search.driver import OK, ChildDriver, Target  # noqa: E402

BUDGETS = (60, 100, 300, 1000, 3000)
# The finer grid the "children needed" answers are read from.
GRID = (20, 40, 60, 80, 100, 150, 200, 300, 400, 500, 600, 800, 1000, 1500, 2000, 2500, 3000)


@dataclass(frozen=True)
class Run:
    """One search: the true reward of its picked child at each checkpoint, and what it cost."""

    curve: dict[int, float]      # budget -> true reward of the best observed child
    trained: int                 # children trained (the driver may stop early)
    seconds: float


def run_search(name: str, options: dict, landscape: Landscape, seed: int, budget: int,
               workers: int, checkpoints: tuple[int, ...]) -> Run:
    """One asynchronous search of ``budget`` children on ``landscape`` through the driver."""
    space = landscape.space
    strategy = make_strategy(name, space.sizes(), seed=seed, **options)
    driver = ChildDriver(lambda tokens: (space.decode(tokens), {}), strategy, budget=budget,
                         reward=landscape.reward_config, target=Target())
    noise = np.random.default_rng([seed, 0x0B5])
    order = np.random.default_rng([seed, 0x0DE])
    curve: dict[int, float] = {}
    wanted = sorted(c for c in checkpoints if c <= budget)
    trial = itertools.count()
    start = time.perf_counter()

    def fill() -> None:
        while len(driver.in_flight) < workers:
            if not isinstance(driver.suggest(f"t{next(trial)}"), dict):
                return

    fill()
    while driver.in_flight:
        trial_id = list(driver.in_flight)[int(order.integers(len(driver.in_flight)))]
        tokens = driver.in_flight[trial_id].tokens
        acc = float(landscape.observe(tokens, noise)[0])
        driver.complete(trial_id, {"status": OK, "accuracy": acc})
        if wanted and driver.trained == wanted[0]:
            best = driver.best(1)[0]
            curve[wanted.pop(0)] = float(landscape.reward(best.tokens)[0])
        fill()
    if wanted:  # the driver stopped early (the strategy converged): the pick stands
        final = float(landscape.reward(driver.best(1)[0].tokens)[0])
        curve.update({c: final for c in wanted})
    return Run(curve, driver.trained, time.perf_counter() - start)


def run_many(name: str, options: dict, seeds: range, base: int, budget: int, workers: int,
             checkpoints: tuple[int, ...], landscapes: dict[int, Landscape]) -> list[Run]:
    runs = []
    for s in seeds:
        if base + s not in landscapes:
            landscapes[base + s] = Landscape(base + s)
        runs.append(run_search(name, options, landscapes[base + s], s, budget, workers,
                               checkpoints))
    return runs


def cell(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def at(runs: list[Run], n: int) -> list[float]:
    return [r.curve[n] for r in runs]


def first_from(grid: tuple[int, ...], holds) -> int | None:
    """The smallest ``n`` of ``grid`` from which ``holds(m)`` is true for every ``m >= n``."""
    found = None
    for n in reversed(grid):
        if not holds(n):
            break
        found = n
    return found


def needs(ppo: list[Run], other: list[Run], grid: tuple[int, ...], what: str,
          who: str = "PPO", shown: tuple[int, ...] = BUDGETS) -> str:
    """How many children ``ppo`` (named ``who``) needs to beat (``what='beat'``) or match
    (``'match'``) ``other``."""
    mean_ok = first_from(grid, lambda n: np.mean(at(ppo, n)) > np.mean(at(other, n))
                         if what == "beat" else np.mean(at(ppo, n)) >= np.mean(at(other, n)))
    sep = first_from(grid, lambda n: min(at(ppo, n)) > max(at(other, n)))
    behind = [n for n in grid if max(at(ppo, n)) < min(at(other, n))]
    wins = {n: sum(p > o for p, o in zip(at(ppo, n), at(other, n))) for n in grid}
    parts = []
    if mean_ok is None:
        parts.append(f"mean: not reached by {grid[-1]}")
    else:
        parts.append(f"mean {'ahead' if what == 'beat' else 'level or ahead'} from {mean_ok} on")
    if what == "beat":
        parts.append(f"ranges separate from {sep} on" if sep is not None else
                     "ranges overlap at some budget up to the last: not shown")
    if behind:
        parts.append(f"{who} behind with separate ranges at {', '.join(map(str, behind))}")
    parts.append(f"seeds where {who} is ahead (same landscape): " +
                 ", ".join(f"{n}: {wins[n]}/{len(ppo)}" for n in grid if n in shown))
    return "; ".join(parts)


def table(rows: dict[str, list[Run]], budgets: tuple[int, ...]) -> list[str]:
    lines = ["| strategy | " + " | ".join(f"{n} children" for n in budgets) + " | s per run |",
             "|---" * (len(budgets) + 2) + "|"]
    for name, runs in rows.items():
        secs = np.mean([r.seconds for r in runs])
        stopped = [r.trained for r in runs if r.trained < max(budgets)]
        note = f" (stopped early: {', '.join(map(str, stopped))})" if stopped else ""
        lines.append(f"| {name}{note} | " + " | ".join(cell(at(runs, n)) for n in budgets)
                     + f" | {secs:.1f} |")
    return lines


def describe(seeds: range, restarts: int, n: int = 2000) -> None:
    """A table of each landscape: its random architectures and its best known one."""
    print(f"\n| landscape | random architectures ({n}): accuracy | reward | reward p99 | "
          "corr(log MACs, accuracy) | additive model leaves | best known: reward | accuracy | "
          "MACs |")
    print("|---" * 9 + "|")
    for seed in seeds:
        land = Landscape(seed)
        t = np.random.default_rng([seed, 1]).integers(0, land.sizes, size=(n, len(land.sizes)))
        acc, reward, macs = land.accuracy(t), land.reward(t), land.macs_of(t)
        left = land.additive_residual(np.random.default_rng([seed, 2]))
        best, value = land.climb(np.random.default_rng([seed, 7]), restarts=restarts)
        print(f"| {seed} | {acc.mean():.3f} +- {acc.std():.3f} | {reward.mean():.3f} | "
              f"{np.percentile(reward, 99):.3f} | {np.corrcoef(np.log(macs), acc)[0, 1]:.2f} | "
              f"{left:.0%} | {value:.3f} | {land.accuracy(best)[0]:.3f} | "
              f"{land.macs_of(best)[0] / 1e6:.0f}M |", flush=True)


def parse_options(text: str) -> dict[str, dict]:
    import yaml
    data = yaml.safe_load(text) if text else {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) and k in STRATEGIES
                                             for k, v in data.items()):
        raise ConfigError(f"--options: got {text!r}; use a YAML mapping such as "
                          "'ppo: {lr: 1.0e-3, batch_size: 10}'")
    return data


def parse_settings(text: str) -> dict[str, list[dict]]:
    import yaml
    data = yaml.safe_load(text) if text else {}
    if not isinstance(data, dict) or not all(
            k in ("ppo", "reinforce") and isinstance(v, list)
            and all(isinstance(o, dict) for o in v) for k, v in data.items()):
        raise ConfigError(f"--tune-settings: got {text!r}; use a YAML mapping of ppo or reinforce "
                          "to a list of option mappings such as 'ppo: [{lr: 1.0e-3}]'")
    return data


TUNE_GRID = {
    "batch_size": (10, 20),
    "lr": (3.5e-4, 1e-3, 3e-3),
    "entropy_weight": (1e-5, 1e-3),
}


def label(options: dict) -> str:
    short = {"batch_size": "batch", "lr": "lr", "entropy_weight": "entropy",
             "baseline_decay": "decay"}
    return ", ".join(f"{short.get(k, k)} {v:g}" for k, v in options.items()) or "defaults"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strategies", nargs="+", choices=STRATEGIES,
                    default=[n for n in STRATEGIES if n not in OPTIONAL],
                    help="default: the built-in ones (tpe and nsga2 need optuna)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--landscape-base", type=int, default=0,
                    help="seed s runs on landscape base + s (default 0: the table's landscapes)")
    ap.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--options", default="", help="extra rows: 'ppo: {lr: 1.0e-3}'")
    ap.add_argument("--tune", nargs="*", choices=("ppo", "reinforce"), default=None,
                    help="tune these strategies over the grid instead of the table")
    ap.add_argument("--tune-settings", default="",
                    help="with --tune: these settings instead of the grid, e.g. "
                         "'ppo: [{lr: 1.0e-3, baseline_decay: 0.9}]'")
    ap.add_argument("--describe", action="store_true",
                    help="only describe the landscapes (random architectures, best known)")
    ap.add_argument("--reference-restarts", type=int, default=50,
                    help="coordinate-ascent restarts for the best known reward of each landscape")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.workers < 1 or min(args.budgets) < 1:
        raise ConfigError("--seeds, --workers and --budgets must be positive integers")
    budgets = tuple(sorted(set(args.budgets)))
    extra = parse_options(args.options)
    settings = parse_settings(args.tune_settings)
    sizes = Landscape(0).space.sizes()
    for name in args.strategies:
        make_strategy(name, sizes)  # a strategy whose package is missing fails here
    for name, options in [*extra.items(), *((n, o) for n, os in settings.items() for o in os)]:
        make_strategy(name, sizes, **options)  # unknown or bad options fail here, before any run

    import torch
    torch.set_num_threads(1)

    seeds = range(args.seeds)
    base = args.landscape_base
    landscapes: dict[int, Landscape] = {}
    t0 = time.perf_counter()
    print(f"landscapes {base}..{base + args.seeds - 1} over the MnasNet space (43 decisions), "
          f"noise 0.015, {args.workers} in flight, strategy seeds 0..{args.seeds - 1}; score: "
          "true reward of the child with the best observed reward")

    if args.describe:
        describe(range(base, base + args.seeds), args.reference_restarts)
        print(f"\ntotal {time.perf_counter() - t0:.0f} s")
        return

    if args.tune is not None:
        checkpoints = budgets
        budget = max(budgets)
        rows: dict[str, list[Run]] = {}
        for name in args.tune or list(settings) or ["ppo", "reinforce"]:
            combos = settings.get(name) if settings else [
                dict(zip(TUNE_GRID, v)) for v in itertools.product(*TUNE_GRID.values())]
            for options in combos:
                key = f"{name}: {label(options)}"
                rows[key] = run_many(name, options, seeds, base, budget, args.workers,
                                     checkpoints, landscapes)
                print(f"  {key:<52} " + "  ".join(cell(at(rows[key], n)) for n in budgets),
                      flush=True)
        print()
        print("\n".join(table(rows, budgets)))
        print(f"\ntotal {time.perf_counter() - t0:.0f} s")
        return

    checkpoints = tuple(sorted(set(budgets) | {n for n in GRID if n <= max(budgets)}))
    budget = max(budgets)
    rows = {}
    for name in args.strategies:
        rows[name] = run_many(name, {}, seeds, base, budget, args.workers, checkpoints, landscapes)
        print(f"  {name:<10} " + "  ".join(cell(at(rows[name], n)) for n in budgets), flush=True)
    for name, options in extra.items():
        key = f"{name} ({label(options)})"
        rows[key] = run_many(name, options, seeds, base, budget, args.workers, checkpoints,
                             landscapes)
        print(f"  {key:<10} " + "  ".join(cell(at(rows[key], n)) for n in budgets), flush=True)

    ref = []
    for s in seeds:
        _, v = landscapes[base + s].climb(np.random.default_rng([base + s, 7]),
                                          restarts=args.reference_restarts)
        ref.append(v)
    print()
    print("\n".join(table(rows, budgets)))
    print(f"| best known (coordinate ascent on the true reward, {args.reference_restarts} "
          f"restarts) | " + " | ".join(cell(ref) for _ in budgets) + " | |")
    grid = tuple(n for n in checkpoints if n <= budget)
    print()
    if "ppo" in rows and "random" in rows:
        print("- PPO against random: "
              f"{needs(rows['ppo'], rows['random'], grid, 'beat', shown=budgets)}")
    if "ppo" in rows and "evolution" in rows:
        print("- PPO against evolution: "
              f"{needs(rows['ppo'], rows['evolution'], grid, 'match', shown=budgets)}")
        print("- PPO beating evolution: "
              f"{needs(rows['ppo'], rows['evolution'], grid, 'beat', shown=budgets)}")
    for name, options in extra.items():
        if name in rows:
            key = f"{name} ({label(options)})"
            print(f"- {key} against {name} with its defaults: "
                  f"{needs(rows[key], rows[name], grid, 'beat', who=key, shown=budgets)}")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    try:
        main()
    except NasError as e:
        sys.exit(f"error: {e}")
