"""Train a scaled family with `effnas train` beside EfficientNet-B0 trained the same way.

    .venv/bin/python bench/bench_family.py FAMILY_DIR --baseline SPEC [--members b1 b2]
        [--epochs 3] [--base-resolution 32] [--parallel 2]

Each model is trained on Fashion-MNIST (55,000 training images, 5,000 held out for early
stopping, the 10,000 test images scored once with the best weights) at an input size that
follows its spec: ``base_resolution * spec.resolution / 224``, rounded to a multiple of 4,
so the family's resolution scaling carries over to 28x28 data. ``--parallel`` runs go at
once, one thread each. Prints test accuracy against MACs (at the spec's own resolution and
at the trained one) and the hours spent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def train_resolution(spec_resolution: int, base_resolution: int) -> int:
    return max(8, int(round(base_resolution * spec_resolution / 224 / 4)) * 4)


def main() -> None:
    import nas
    from nas.arch.units import format_macs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("family", type=Path)
    p.add_argument("--baseline", required=True)
    p.add_argument("--members", nargs="+", default=["b1", "b2"])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--base-resolution", type=int, default=32)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/family-train"))
    args = p.parse_args()

    models = [("EfficientNet-B0", "efficientnet-b0"), ("baseline (search best)", args.baseline)]
    for m in args.members:
        found = sorted(args.family.glob(f"*-{m}.yaml"))
        if not found:
            sys.exit(f"error: no *-{m}.yaml in {args.family}")
        models.append((m.upper(), str(found[0])))
    jobs = []
    for label, spec_path in models:
        spec = nas.load_spec(spec_path)
        res = train_resolution(spec.resolution, args.base_resolution)
        out = args.out / label.split()[0].lower()
        cmd = [sys.executable, "-m", "nas.cli.effnas", "train", spec_path,
               "--epochs", str(args.epochs), "--resolution", str(res), "--threads", "1",
               "--out", str(out), "--export", "none"]
        jobs.append((label, spec, res, out, cmd))

    t0 = time.time()
    running: list[tuple[subprocess.Popen, tuple]] = []
    queue = list(jobs)
    while queue or running:
        while queue and len(running) < args.parallel:
            job = queue.pop(0)
            job[3].parent.mkdir(parents=True, exist_ok=True)
            log = open(job[3].with_suffix(".log"), "w")
            running.append((subprocess.Popen(job[4], stdout=log, stderr=subprocess.STDOUT), job))
            print(f"started {job[0]}: {' '.join(job[4][1:])}", flush=True)
        time.sleep(2)
        for proc, job in list(running):
            if proc.poll() is not None:
                running.remove((proc, job))
                print(f"finished {job[0]} (exit {proc.returncode})", flush=True)
    hours = (time.time() - t0) / 3600

    print("\n| model | spec | params | MACs (own res) | trained at | MACs (trained) | "
          "best val acc | test acc | train hours |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, spec, res, out, _ in jobs:
        m = json.loads((out / "metrics.json").read_text())
        print(f"| {label} | {spec.name} | {nas.count_params(spec, 10, 1):,} | "
              f"{format_macs(nas.count_macs(spec))} | {res}px | "
              f"{format_macs(nas.count_macs(spec, res, 10, 1))} | "
              f"{m.get('best_val_accuracy', float('nan')):.4f} | {m['test_accuracy']:.4f} | "
              f"{m.get('seconds', 0) / 3600:.2f} |")
    print(f"\n{len(jobs)} models, {args.epochs} epochs each, {args.parallel} at a time: "
          f"{hours:.2f} h wall on this machine")


if __name__ == "__main__":
    main()
