"""Search strategies on real tabular landscapes: every network of a space trained, the tables
of what came out.

A table (the format of ``/work/shared/benchmarks/``, e.g. Channel-Bench-Macro)::

    {"4432214": {"acc": [a1, a2, a3], "mean": m, "std": s, "params": p, "flops": f}, ...}

The key has one character per decision (Channel-Bench-Macro: ``1``..``4``, width = digit / 4
of the layer's maximum); ``acc`` holds the test accuracies (%) of independent trainings of
the network; ``flops`` its multiply-adds. Each decision's choices are the characters its
position takes in the table, sorted, so a strategy searches ``sizes = [4] * 7`` there.

Protocol. Each strategy runs through the search's own driver (:class:`ChildDriver`: ask/tell,
duplicates answered from the record and not counted, the search ending when a strategy only
proposes known networks) with ``--workers`` children in flight that finish in random order.
A query of a network returns ONE of its trainings, drawn at random (real seed noise), plus
``N(0, noise)`` points of proxy noise when ``--noise`` is above 0, clipped to [0, 100]. The
reward is the search's (:func:`nas.search.reward.compute_reward`, soft form by default):
``acc * (flops / T) ** -0.07`` with the table's own flops as the MACs (the driver's ``cost``)
and ``T`` the table's median flops unless ``--target`` says otherwise. A strategy never sees
the table's ``mean``: the driver tells it the reward of the drawn training only.

Score. At each budget ``n`` (children trained), the network a search hands over is its best
observed one (``driver.best()``); its TRUE reward uses the mean of the table's trainings. The
score is that network's percentile among all networks of the table (the share whose true
reward is at most its own: 1.0 is the best) and its regret (the best network's true reward
minus its own, in reward points: x100). A search runs to the largest budget and is read at
the smaller ones on the way (a strategy does not know its budget). Over ``--seeds`` seeds
(strategy seed ``s``, noise and completion order from ``s``), the mean with its 95 %
bootstrap interval (10,000 resamples of the seeds). Two means are "apart" when their
intervals do not overlap.

Extra rows: ``--variant 'LABEL=STRATEGY:{yaml options}'`` (repeatable), e.g.
``--variant 'ppo-b5=ppo:{batch_size: 5}'``, run beside the default strategies in the same run.

Run (the table of docs/results/controller-tabular.md)::

    nice -n 10 .venv/bin/python bench/bench_tabular.py \\
        --tables /work/shared/benchmarks/channel-bench-macro/{mobilenet,resnet}.json \\
        --seeds 20 --noise 0 1.5 --budgets 60 100 300 --jobs 2 \\
        --out docs/results/controller-tabular

It writes ``OUT.csv`` (one row per search and budget), ``OUT.json`` (the protocol, the summary
and the comparisons) and ``OUT.png`` (matplotlib, skipped with a message when it is missing).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller import OPTIONAL, STRATEGIES, make_strategy  # noqa: E402
from nas.arch.cost import Cost  # noqa: E402
from nas.arch.spec import ArchSpec, StageSpec  # noqa: E402
from nas.core.errors import ConfigError, NasError  # noqa: E402
from nas.search.driver import OK, ChildDriver, Target  # noqa: E402
from nas.search.reward import RewardConfig, compute_reward  # noqa: E402

BUDGETS = (60, 100, 300)
NOISE = (0.0, 1.5)
DEFAULT_STRATEGIES = ("random", "evolution", "ppo", "reinforce", "tpe", "nsga2")
BOOTSTRAP = 10_000


# --------------------------------------------------------------------------- the table

class Table:
    """A table of measured networks and the small search space of its keys.

    ``sizes`` are the number of choices of each decision; ``decode(tokens)`` gives a stand-in
    spec that names the network (one 1x1 conv stage per decision whose ``out`` is the
    decision's choice index + 1; the driver uses it for the network's identity and its
    ``blocks`` column) and ``cost(spec)`` the table's params and flops of that network. The
    networks of such a table (MobileNetV2 blocks with free hidden widths, ResNet basic blocks)
    are not expressible as the project's :class:`ArchSpec`, so the cost comes from the table,
    not from :mod:`nas.arch.cost`.
    """

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = Path(path)
        self.name = name or self.path.stem
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"table {str(self.path)!r}: {e}") from None
        if not isinstance(data, dict) or not data:
            raise ConfigError(f"table {str(self.path)!r}: expected a non-empty JSON object of "
                              "networks")
        keys = sorted(data)
        lengths = {len(k) for k in keys}
        if len(lengths) != 1:
            raise ConfigError(f"table {self.name}: keys of different lengths {sorted(lengths)}")
        n_dec = lengths.pop()
        self.choices = [sorted({k[i] for k in keys}) for i in range(n_dec)]
        self.sizes = tuple(len(c) for c in self.choices)
        index = [{c: j for j, c in enumerate(cs)} for cs in self.choices]
        self.keys = keys
        self.tokens = np.array([[index[i][k[i]] for i in range(n_dec)] for k in keys],
                               dtype=np.int64)
        runs = {len(data[k].get("acc", ())) for k in keys}
        if min(runs) < 1:
            raise ConfigError(f"table {self.name}: every network needs an 'acc' list")
        # Networks may have different numbers of trainings: pad with NaN, draw among the real.
        width = max(runs)
        self.acc = np.full((len(keys), width), np.nan)
        for r, k in enumerate(keys):
            a = data[k]["acc"]
            self.acc[r, :len(a)] = a
        self.n_acc = np.array([len(data[k]["acc"]) for k in keys], dtype=np.int64)
        # The truth: the table's mean (the mean of the trainings when it gives none).
        self.mean = np.array([float(data[k].get("mean", np.mean(data[k]["acc"]))) for k in keys])
        self.flops = np.array([int(data[k]["flops"]) for k in keys], dtype=np.int64)
        self.params = np.array([int(data[k].get("params", 0)) for k in keys], dtype=np.int64)
        if not (np.isfinite(self.acc[~np.isnan(self.acc)]).all() and (self.flops > 0).all()):
            raise ConfigError(f"table {self.name}: accuracies must be finite, flops positive")
        radix = np.cumprod((1,) + self.sizes[::-1])[:-1][::-1]
        self._radix = radix
        self._row = {int(c): r for r, c in enumerate(self.tokens @ radix)}

    def __len__(self) -> int:
        return len(self.keys)

    def row(self, tokens: Sequence[int]) -> int:
        code = int(np.dot(np.asarray(tokens, dtype=np.int64), self._radix))
        if code not in self._row:
            raise ConfigError(f"table {self.name}: no network for tokens {list(tokens)}")
        return self._row[code]

    def decode(self, tokens: Sequence[int]) -> tuple[ArchSpec, dict]:
        stages = tuple(StageSpec(op="conv", kernel=1, stride=1, out=int(t) + 1, repeats=1)
                       for t in tokens)
        return ArchSpec(stages=stages, stem=8, head=0, resolution=32, stem_stride=1), {}

    def cost(self, spec: ArchSpec) -> Cost:
        r = self.row([st.out - 1 for st in spec.stages])
        return Cost(int(self.params[r]), int(self.flops[r]))

    def observe(self, row: int, rng: np.random.Generator, noise: float) -> float:
        """One query: one of the network's trainings (%), plus proxy noise, as a fraction."""
        acc = float(self.acc[row, int(rng.integers(self.n_acc[row]))])
        if noise > 0:
            acc += float(rng.normal(0.0, noise))
        return min(100.0, max(0.0, acc)) / 100.0

    def true_rewards(self, cfg: RewardConfig) -> np.ndarray:
        return np.array([compute_reward(min(1.0, m / 100.0), int(f), cfg).reward
                         for m, f in zip(self.mean, self.flops)])


def parse_target(text: str, table: Table) -> int:
    """'median' (the table's median flops), or a number with an optional K/M/G suffix."""
    if text == "median":
        return int(np.median(table.flops))
    from nas.arch.units import parse_macs
    return parse_macs(text, "--target")


# --------------------------------------------------------------------------- one search

@dataclass(frozen=True)
class Task:
    table: str          # path
    target: int
    noise: float
    label: str
    strategy: str
    options: tuple      # sorted (key, value) pairs
    seed: int
    budgets: tuple[int, ...]
    workers: int
    reward_form: str
    reward_w: float


_TABLES: dict[str, Table] = {}


def _table(path: str) -> Table:
    if path not in _TABLES:
        _TABLES[path] = Table(path)
    return _TABLES[path]


def run_search(task: Task) -> dict[str, Any]:
    """One asynchronous search on a table; the handed-over network at each budget."""
    table = _table(task.table)
    cfg = RewardConfig(target_macs=int(task.target), form=task.reward_form, w=task.reward_w)
    strategy = make_strategy(task.strategy, table.sizes, seed=task.seed, **dict(task.options))
    budget = max(task.budgets)
    driver = ChildDriver(table.decode, strategy, budget=budget, reward=cfg,
                         target=Target(resolution=None), seed=task.seed, cost=table.cost)
    # The noise stream and the completion order depend on the seed and the noise level only.
    noise_rng = np.random.default_rng([task.seed, 0x7AB, int(round(task.noise * 1000))])
    order = np.random.default_rng([task.seed, 0x0DE])
    wanted = sorted(task.budgets)
    picks: dict[int, int] = {}
    trial = itertools.count()
    start = time.process_time()

    def fill() -> None:
        while len(driver.in_flight) < task.workers:
            if not isinstance(driver.suggest(f"t{next(trial)}"), dict):
                return

    fill()
    while driver.in_flight:
        trial_id = list(driver.in_flight)[int(order.integers(len(driver.in_flight)))]
        row = table.row(driver.in_flight[trial_id].tokens)
        driver.complete(trial_id, {"status": OK, "accuracy": table.observe(row, noise_rng,
                                                                           task.noise)})
        if wanted and driver.trained == wanted[0]:
            picks[wanted.pop(0)] = table.row(driver.best(1)[0].tokens)
        fill()
    final = table.row(driver.best(1)[0].tokens)
    stopped = driver.trained if wanted else None
    for n in wanted:  # the strategy stopped early (only known networks proposed): it stands
        picks[n] = final
    return {"task": task, "picks": picks, "stopped": stopped, "trained": driver.trained,
            "cpu_seconds": time.process_time() - start}


def _init_worker() -> None:
    import torch
    torch.set_num_threads(1)


# --------------------------------------------------------------------------- statistics

def bootstrap_mean(values: Sequence[float], seed: int = 0,
                   n: int = BOOTSTRAP) -> tuple[float, float, float]:
    """The mean and its 95 % percentile-bootstrap interval over the seeds."""
    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n, len(v)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(v.mean()), float(lo), float(hi)


def verdict(a: tuple[float, float, float], b: tuple[float, float, float],
            seeds: int = 2) -> str:
    """How the mean ``a`` compares with ``b`` (each (mean, lo, hi)) over ``seeds`` seeds."""
    if seeds < 2:
        side = "above" if a[0] > b[0] else "below" if a[0] < b[0] else "level"
        return f"{side}, not shown: one seed has no interval"
    if a[1] > b[2]:
        return "above, shown (intervals apart)"
    if a[2] < b[1]:
        return "below, shown (intervals apart)"
    side = "above" if a[0] > b[0] else "below" if a[0] < b[0] else "level"
    return f"{side}, not shown: intervals overlap"


# --------------------------------------------------------------------------- the run

def parse_variants(items: Sequence[str]) -> list[tuple[str, str, dict]]:
    import yaml
    out = []
    for item in items:
        label, sep, rest = item.partition("=")
        name, sep2, opts = rest.partition(":")
        name = name.strip()
        if not sep or not label.strip() or name not in STRATEGIES:
            raise ConfigError(f"--variant {item!r}: use LABEL=STRATEGY:{{options}}, e.g. "
                              "'ppo-b5=ppo:{batch_size: 5}' (strategies: "
                              f"{', '.join(STRATEGIES)})")
        options = yaml.safe_load(opts) if sep2 and opts.strip() else {}
        if not isinstance(options, dict):
            raise ConfigError(f"--variant {item!r}: the options must be a YAML mapping")
        out.append((label.strip(), name, options))
    return out


def available(names: Sequence[str]) -> tuple[list[str], list[str]]:
    import importlib.util
    ok, missing = [], []
    for n in names:
        if n in OPTIONAL and importlib.util.find_spec(OPTIONAL[n][0]) is None:
            missing.append(n)
        else:
            ok.append(n)
    return ok, missing


def summarise(results: list[dict], truths: dict[str, np.ndarray]) -> tuple[list[dict], list[dict]]:
    """Per-search rows and per-cell summaries (space, noise, label, budget)."""
    rows = []
    for res in results:
        t: Task = res["task"]
        name = Path(t.table).stem
        true = truths[t.table]
        best = float(true.max())
        for n in t.budgets:
            r = res["picks"][n]
            rows.append({"space": name, "noise": t.noise, "strategy": t.label, "budget": n,
                         "seed": t.seed, "network": _table(t.table).keys[r],
                         "true_reward": float(true[r]),
                         "percentile": float((true <= true[r]).mean()),
                         "regret": 100.0 * (best - float(true[r])),
                         "true_accuracy": float(_table(t.table).mean[r]),
                         "flops": int(_table(t.table).flops[r]),
                         "trained": res["trained"], "stopped_early": res["stopped"] is not None,
                         "cpu_seconds": round(res["cpu_seconds"], 3)})
    cells: dict[tuple, list[dict]] = {}
    for row in rows:
        cells.setdefault((row["space"], row["noise"], row["strategy"], row["budget"]),
                         []).append(row)
    summary = []
    for (space, noise, label, n), rs in cells.items():
        pct = bootstrap_mean([r["percentile"] for r in rs])
        reg = bootstrap_mean([r["regret"] for r in rs])
        summary.append({"space": space, "noise": noise, "strategy": label, "budget": n,
                        "seeds": len(rs), "percentile": pct[0], "percentile_lo": pct[1],
                        "percentile_hi": pct[2], "regret": reg[0], "regret_lo": reg[1],
                        "regret_hi": reg[2],
                        "stopped_early": sum(r["stopped_early"] for r in rs),
                        "cpu_seconds": float(np.mean([r["cpu_seconds"] for r in rs]))})
    return rows, summary


def comparisons(summary: list[dict], pairs: Sequence[tuple[str, str]]) -> list[dict]:
    by = {(s["space"], s["noise"], s["strategy"], s["budget"]): s for s in summary}
    out = []
    for (space, noise, label, n), s in sorted(by.items(), key=lambda kv: kv[0]):
        for a, b in pairs:
            if label != a or (space, noise, b, n) not in by:
                continue
            o = by[(space, noise, b, n)]
            out.append({"space": space, "noise": noise, "budget": n, "a": a, "b": b,
                        "verdict": verdict(
                            (s["percentile"], s["percentile_lo"], s["percentile_hi"]),
                            (o["percentile"], o["percentile_lo"], o["percentile_hi"]),
                            min(s["seeds"], o["seeds"]))})
    return out


def markdown(summary: list[dict], labels: Sequence[str], budgets: Sequence[int]) -> list[str]:
    lines = []
    groups = sorted({(s["space"], s["noise"]) for s in summary})
    by = {(s["space"], s["noise"], s["strategy"], s["budget"]): s for s in summary}
    for space, noise in groups:
        lines += ["", f"{space}, proxy noise {noise:g} points: percentile of the handed-over "
                  "network (mean over seeds [95 % bootstrap interval]); regret in reward points",
                  "", "| strategy | " + " | ".join(f"{n} children" for n in budgets)
                  + " | regret at " + " | regret at ".join(map(str, budgets)) + " |",
                  "|---" * (1 + 2 * len(budgets)) + "|"]
        for label in labels:
            cells = [by.get((space, noise, label, n)) for n in budgets]
            if not any(cells):
                continue
            pct = [f"{c['percentile']:.3f} [{c['percentile_lo']:.3f}, {c['percentile_hi']:.3f}]"
                   if c else "" for c in cells]
            reg = [f"{c['regret']:.2f} [{c['regret_lo']:.2f}, {c['regret_hi']:.2f}]"
                   if c else "" for c in cells]
            stop = max((c["stopped_early"] for c in cells if c), default=0)
            note = f" ({stop} stopped early)" if stop else ""
            lines.append(f"| {label}{note} | " + " | ".join(pct) + " | " + " | ".join(reg) + " |")
    return lines


def plot(summary: list[dict], labels: Sequence[str], budgets: Sequence[int], path: Path) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib)"
    groups = sorted({(s["space"], s["noise"]) for s in summary})
    by = {(s["space"], s["noise"], s["strategy"], s["budget"]): s for s in summary}
    fig, axes = plt.subplots(2, len(groups), figsize=(4.2 * len(groups), 7.0), squeeze=False,
                             sharex=True)
    colors = plt.get_cmap("tab20").colors
    styles = ("-", "--", ":", "-.")
    for col, (space, noise) in enumerate(groups):
        for k, label in enumerate(labels):
            cells = [(n, by[(space, noise, label, n)]) for n in budgets
                     if (space, noise, label, n) in by]
            if not cells:
                continue
            x = np.array([n for n, _ in cells], dtype=float) * (1 + 0.02 * (k - len(labels) / 2))
            for row, key in enumerate(("percentile", "regret")):
                y = np.array([c[key] for _, c in cells])
                err = np.array([[c[key] - c[f"{key}_lo"] for _, c in cells],
                                [c[f"{key}_hi"] - c[key] for _, c in cells]])
                axes[row][col].errorbar(x, y, yerr=err, marker="o", ms=3, capsize=2,
                                        color=colors[(2 * k) % 20 + (k // 10) % 2],
                                        ls=styles[(k // 10) % len(styles)], label=label)
        for row in range(2):
            ax = axes[row][col]
            ax.set_xscale("log")
            ax.set_xticks(list(budgets), [str(n) for n in budgets])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
        axes[0][col].set_title(f"{space}, noise {noise:g} points", fontsize=9)
        axes[1][col].set_xlabel("children")
    axes[0][0].set_ylabel("percentile of the handed-over network")
    axes[1][0].set_ylabel("regret (reward points)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return f"plot: {path}"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tables", nargs="+", default=[], help="table JSON files")
    ap.add_argument("--landscape", action="store_true",
                    help="instead of tables: bench/landscape.py's synthetic rugged landscapes "
                         "over the MnasNet space (accuracy grows with MACs; seed s on landscape "
                         "s, its own 1.5 points of noise): each row's pick's true reward")
    ap.add_argument("--strategies", nargs="*", default=list(DEFAULT_STRATEGIES),
                    help="default: all (those whose optional package is missing are skipped)")
    ap.add_argument("--variant", action="append", default=[],
                    help="extra row: LABEL=STRATEGY:{yaml options}")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--seed-base", type=int, default=0)
    ap.add_argument("--noise", type=float, nargs="+", default=list(NOISE),
                    help="proxy noise levels, points of accuracy (default 0 1.5)")
    ap.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    ap.add_argument("--budgets-for", action="append", default=[],
                    help="LABEL=N: run LABEL only up to N children (e.g. tpe=100)")
    ap.add_argument("--workers", type=int, default=2, help="children in flight")
    ap.add_argument("--target", default="median",
                    help="T of the reward: 'median' (the table's median flops) or e.g. 80M")
    ap.add_argument("--reward-form", default="soft", choices=("soft", "hard", "absolute"))
    ap.add_argument("--w", type=float, default=-0.07)
    ap.add_argument("--jobs", type=int, default=1, help="processes")
    ap.add_argument("--out", default="bench-tabular", help="output prefix: OUT.csv/json/png")
    ap.add_argument("--compare", action="append", default=[],
                    help="A:B pairs to compare besides each row against random "
                         "(default also ppo against evolution and tpe)")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.workers < 1 or min(args.budgets) < 1 or args.jobs < 1:
        raise ConfigError("--seeds, --workers, --jobs and --budgets must be positive integers")
    if min(args.noise) < 0:
        raise ConfigError("--noise levels must be >= 0")
    budgets = tuple(sorted(set(args.budgets)))
    names, missing = available(args.strategies)
    for n in names:
        if n not in STRATEGIES:
            raise ConfigError(f"unknown strategy {n!r}; known: {', '.join(STRATEGIES)}")
    if missing:
        print(f"skipped (package missing): {', '.join(missing)}")
    rows_def = [(n, n, {}) for n in names] + parse_variants(args.variant)
    limit = {}
    for item in args.budgets_for:
        label, _, n = item.partition("=")
        limit[label] = int(n)
    labels = [label for label, _, _ in rows_def]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"row labels must differ, got {labels}")
    if args.landscape:
        return landscape_check(rows_def, budgets, args)
    if not args.tables:
        raise ConfigError("give --tables (table JSON files) or --landscape")
    tables = [Table(p) for p in args.tables]
    for t in tables:
        _TABLES[str(t.path)] = t
    for label, name, options in rows_def:
        make_strategy(name, tables[0].sizes, **options)  # bad options fail before any run
    tasks, truths, protocol_tables = [], {}, []
    for t in tables:
        target = parse_target(args.target, t)
        cfg = RewardConfig(target_macs=target, form=args.reward_form, w=args.w)
        truths[str(t.path)] = t.true_rewards(cfg)
        true = truths[str(t.path)]
        protocol_tables.append({
            "table": str(t.path), "networks": len(t), "sizes": list(t.sizes),
            "trainings": int(t.n_acc.max()), "target_flops": target,
            "best_network": t.keys[int(true.argmax())], "best_true_reward": float(true.max()),
            "median_true_reward": float(np.median(true)),
            "median_std_of_trainings": float(np.nanmedian(np.nanstd(t.acc, axis=1, ddof=1)))
            if t.acc.shape[1] > 1 else None})
        for noise in args.noise:
            for label, name, options in rows_def:
                bs = tuple(n for n in budgets if n <= limit.get(label, max(budgets)))
                if not bs:
                    continue
                for s in range(args.seed_base, args.seed_base + args.seeds):
                    tasks.append(Task(str(t.path), target, float(noise), label, name,
                                      tuple(sorted(options.items())), s, bs, args.workers,
                                      args.reward_form, args.w))
    print(f"{len(tasks)} searches: tables {', '.join(t.name for t in tables)}; rows "
          f"{', '.join(labels)}; noise {args.noise}; budgets {list(budgets)}; seeds "
          f"{args.seed_base}..{args.seed_base + args.seeds - 1}; {args.workers} in flight; "
          f"{args.jobs} processes", flush=True)
    t0 = time.perf_counter()
    results = []
    if args.jobs == 1:
        _init_worker()
        for i, task in enumerate(tasks):
            results.append(run_search(task))
            _progress(i + 1, len(tasks), t0)
    else:
        with ProcessPoolExecutor(args.jobs, initializer=_init_worker) as pool:
            for i, res in enumerate(pool.map(run_search, tasks, chunksize=1)):
                results.append(res)
                _progress(i + 1, len(tasks), t0)
    wall = time.perf_counter() - t0
    rows, summary = summarise(results, truths)
    pairs = [(label, "random") for label in labels if label != "random"]
    if "ppo" in labels:
        pairs += [("ppo", b) for b in ("evolution", "tpe") if b in labels]
    for item in args.compare:
        a, _, b = item.partition(":")
        pairs.append((a, b))
    comp = comparisons(summary, pairs)
    order = {lab: i for i, lab in enumerate(labels)}
    summary.sort(key=lambda s: (s["space"], s["noise"], order[s["strategy"]], s["budget"]))
    lines = markdown(summary, labels, budgets)
    print("\n".join(lines))
    print()
    for c in comp:
        print(f"- {c['space']}, noise {c['noise']:g}, {c['budget']} children: {c['a']} against "
              f"{c['b']}: {c['verdict']}")
    cpu = {}
    for r in results:
        cpu.setdefault(r["task"].label, []).append(r["cpu_seconds"])
    print("\nCPU seconds per search: " + ", ".join(f"{k} {np.mean(v):.2f}"
                                                    for k, v in cpu.items()))
    print(f"total {wall:.0f} s wall, {len(tasks)} searches, {args.jobs} processes")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{out}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    protocol = {
        "command": "bench/bench_tabular.py " + " ".join(argv if argv is not None
                                                        else sys.argv[1:]),
        "tables": protocol_tables, "rows": [{"label": a, "strategy": b, "options": o}
                                            for a, b, o in rows_def],
        "seeds": [args.seed_base, args.seed_base + args.seeds - 1], "noise": args.noise,
        "budgets": list(budgets), "budgets_for": limit, "workers": args.workers,
        "reward": {"form": args.reward_form, "w": args.w, "target": args.target},
        "bootstrap": BOOTSTRAP, "wall_seconds": round(wall, 1), "jobs": args.jobs,
        "cpu_seconds_per_search": {k: float(np.mean(v)) for k, v in cpu.items()}}
    report = {"protocol": protocol, "summary": summary, "comparisons": comp}
    Path(f"{out}.json").write_text(json.dumps(report, indent=1))
    print(plot(summary, labels, budgets, Path(f"{out}.png")))
    print(f"wrote {out}.csv, {out}.json")
    return report


def landscape_check(rows_def: list[tuple[str, str, dict]], budgets: tuple[int, ...],
                    args: argparse.Namespace) -> dict:
    """The rows on the synthetic landscapes of bench/landscape.py, through
    ``bench_landscape.run_many`` (the search's driver, ``--workers`` in flight): the mean TRUE
    reward of each row's pick with its 95 % bootstrap interval, and how often a row's pick
    beats the ``ppo`` row's on the same landscape. A check for levers that use the reward's
    MACs term: there, unlike on Channel-Bench-Macro, accuracy grows with MACs."""
    from bench.bench_landscape import run_many
    _init_worker()
    seeds = range(args.seed_base, args.seed_base + args.seeds)
    lands: dict = {}
    runs, t0 = {}, time.perf_counter()
    for label, name, options in rows_def:
        runs[label] = run_many(name, options, seeds, 0, max(budgets), args.workers, budgets,
                               lands)
        print(f"  {label}: {time.perf_counter() - t0:.0f} s", flush=True)
    summary = []
    lines = ["", f"synthetic landscapes {seeds.start}..{seeds.stop - 1} (bench/landscape.py): "
             "true reward of the pick (mean over seeds [95 % bootstrap interval])", "",
             "| row | " + " | ".join(f"{n} children" for n in budgets) + " |",
             "|---" * (1 + len(budgets)) + "|"]
    cells = {}
    for label in runs:
        row = []
        for n in budgets:
            cells[(label, n)] = bootstrap_mean([r.curve[n] for r in runs[label]])
            m, lo, hi = cells[(label, n)]
            row.append(f"{m:.4f} [{lo:.4f}, {hi:.4f}]")
            summary.append({"strategy": label, "budget": n, "seeds": len(seeds),
                            "true_reward": m, "true_reward_lo": lo, "true_reward_hi": hi})
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    print("\n".join(lines) + "\n")
    comp = []
    for label in runs:
        for other in ("random", "ppo"):
            if other == label or other not in runs:
                continue
            for n in budgets:
                wins = sum(a.curve[n] > b.curve[n] for a, b in zip(runs[label], runs[other]))
                v = verdict(cells[(label, n)], cells[(other, n)], len(seeds))
                comp.append({"budget": n, "a": label, "b": other, "verdict": v, "wins": wins})
                print(f"- {n} children: {label} against {other}: {v}; ahead on {wins}/"
                      f"{len(seeds)} landscapes")
    report = {"protocol": {"command": "bench/bench_tabular.py " + " ".join(
        sys.argv[1:]), "landscapes": [seeds.start, seeds.stop - 1], "budgets": list(budgets),
        "workers": args.workers, "rows": [{"label": a, "strategy": b, "options": o}
                                          for a, b, o in rows_def],
        "wall_seconds": round(time.perf_counter() - t0, 1)},
        "summary": summary, "comparisons": comp}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(report, indent=1))
    print(f"total {time.perf_counter() - t0:.0f} s; wrote {out}.json")
    return report


def _progress(done: int, total: int, t0: float) -> None:
    if done == total or done % max(1, total // 20) == 0:
        print(f"  {done}/{total} searches, {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    try:
        main()
    except NasError as e:
        sys.exit(f"error: {e}")
