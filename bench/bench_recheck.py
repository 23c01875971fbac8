"""Does the search's re-check choose a better best.yaml than the best single run?

    .venv/bin/python bench/bench_recheck.py --out runs/bench-recheck \\
        [--seeds 0 1 2] [--budget 16] [--top 3] [--recheck-seeds 2] [--eval-seeds 3]

For each seed, one multi-trial search (``search.py --target-flops 400M``, the laptop
default proxy, no reference) with ``recheck.top``/``recheck.seeds`` on. Its summary names
two children: ``first``, the best single run (what best.yaml was without a re-check), and
``chosen``, the re-check's choice. Both are then trained ``--eval-seeds`` more times with
fresh seeds (run seeds 2000, 2001, ...: neither the search's nor the re-check's) and scored
with the search's reward; that mean is the network's standalone reward, free of the
selection that picked it. Prints, per seed and over seeds (mean and range), the standalone
reward of each choice and how much each lost against the number it was chosen on.

A finished search or evaluation in ``--out`` is read back, an interrupted one continued.
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


def run_search(out: Path, seed: int, args: argparse.Namespace) -> dict:
    """The search of one seed, run (or continued) to its end; its summary.json."""
    summary = out / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("finished"):
        return json.loads(summary.read_text())
    cmd = [sys.executable, str(ROOT / "search.py")]
    if (out / "driver.pt").is_file():
        cmd += ["--resume", "--out", str(out)]
    else:
        cmd += ["--target-flops", "400M", "--budget", str(args.budget), "--seed", str(seed),
                "--out", str(out), "--set", "reference=null",
                "--set", f"recheck.top={args.top}", "--set", f"recheck.seeds={args.recheck_seeds}"]
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    print(f"seed {seed}: search and re-check took {time.time() - t0:.0f} s", flush=True)
    return json.loads(summary.read_text())


def summary_line(label: str, values: list[float]) -> str:
    return (f"{label}: mean {statistics.mean(values):.4f} "
            f"({min(values):.4f}-{max(values):.4f}) over {len(values)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budget", type=int, default=16)
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--recheck-seeds", type=int, default=2)
    p.add_argument("--eval-seeds", type=int, default=3)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from nas.core.files import config_path
    from nas.core.settings import load
    from nas.ray.runtime import init_ray
    from nas.search.reward import RewardConfig, compute_reward
    from nas.search.runner import train_fixed
    from nas.search.settings import SearchSettings
    from search_space import SearchSpace

    runs = {}
    for seed in args.seeds:
        summary = run_search(out / f"search-{seed}", seed, args)
        runs[seed] = summary["recheck"]

    cfg = load(SearchSettings)
    trials = cfg.trials
    space = SearchSpace.from_yaml(config_path(cfg.space))
    reward = RewardConfig(target_macs=400_000_000)
    data = cfg.data_settings().load()
    items, macs = [], {}
    for seed, d in runs.items():
        rows = {int(c["child"]): c for c in d["candidates"]}
        children = {json.loads(line)["child"]: json.loads(line) for line in
                    (out / f"search-{seed}" / "children.jsonl").read_text().splitlines()
                    if line.strip()}
        for child in sorted({d["first"], d["chosen"]}):
            label = f"s{seed}-c{child}"
            items.append((label, space.decode(tuple(children[child]["tokens"])), {}))
            macs[label] = rows[child]["macs"]
    init_ray(None)
    evals: dict[str, list[float]] = {label: [] for label, _, _ in items}
    for k in range(args.eval_seeds):
        recs = train_fixed(items, out / f"eval-{k}", trials, data, 2000 + k, resume=True,
                           resume_hint="the same command", table="children")
        for label, rec in recs.items():
            if rec.status == "ok":
                evals[label].append(compute_reward(rec.accuracy, macs[label], reward).reward)

    report = []
    for seed, d in runs.items():
        rows = {int(c["child"]): c for c in d["candidates"]}
        first, chosen = d["first"], d["chosen"]
        e_first = statistics.mean(evals[f"s{seed}-c{first}"])
        e_chosen = statistics.mean(evals[f"s{seed}-c{chosen}"])
        report.append({"seed": seed, "first": first, "chosen": chosen,
                       "first_in_run": rows[first]["rewards"][0],
                       "chosen_recheck_mean": rows[chosen]["mean"],
                       "first_standalone": e_first, "chosen_standalone": e_chosen,
                       "separated": d["separated"], "evals": {
                           "first": evals[f"s{seed}-c{first}"],
                           "chosen": evals[f"s{seed}-c{chosen}"]}})
        print(f"seed {seed}: best single run child {first} (reward {rows[first]['rewards'][0]:.4f}"
              f", standalone {e_first:.4f}); re-check chose child {chosen} (mean "
              f"{rows[chosen]['mean']:.4f}, standalone {e_chosen:.4f}"
              f"{', separated' if d['separated'] else ''})", flush=True)
    (out / "recheck.json").write_text(json.dumps(report, indent=2) + "\n")
    print(summary_line("best single run, standalone", [r["first_standalone"] for r in report]))
    print(summary_line("re-checked choice, standalone", [r["chosen_standalone"] for r in report]))
    print(summary_line("re-checked minus single run (per seed)",
                       [r["chosen_standalone"] - r["first_standalone"] for r in report]))
    print(summary_line("best single run: in-run reward minus standalone",
                       [r["first_in_run"] - r["first_standalone"] for r in report]))
    print(summary_line("re-checked: mean over its runs minus standalone",
                       [r["chosen_recheck_mean"] - r["chosen_standalone"] for r in report]))
    print(f"choice changed in {sum(r['first'] != r['chosen'] for r in report)} of {len(report)}")


if __name__ == "__main__":
    main()
