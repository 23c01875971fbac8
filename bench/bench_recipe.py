"""Training recipes compared on the validation split: which long schedule is accurate and
stable from seed to seed (the test split is not looked at).

    python bench/bench_recipe.py --spec efficientnet-b0 --width 0.5 --resolution 32 \\
        --epochs 10 --seeds 0,1 --variants base,aug,trivial,sgd,adamw --processes 2

Each (variant, seed) trains the spec from initial weights drawn from its seed, on
the full training split (55,000 Fashion-MNIST images, 5,000 held out for validation), with
``--processes`` runs at a time, one thread each. Prints one Markdown row per variant: the
final validation accuracy (with the weight average where the recipe has one) per seed, the
mean, the range, and the minutes per run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from typing import Any

COMMON: dict[str, Any] = {"batch_size": 128, "label_smoothing": 0.1, "num_threads": 1,
                          "channels_last": True, "eval_batch_size": 512}
# Each variant: recipe settings on top of COMMON (lr for batch 128).
VARIANTS: dict[str, dict[str, Any]] = {
    # nas.train's defaults before this comparison: the paper's RMSProp recipe, scaled to
    # batch 128, warm-up a tenth of the run.
    "base": {"optimizer": "rmsprop", "lr": 0.008, "schedule": "exponential",
             "warmup_epochs": "tenth"},
    "aug": {"optimizer": "rmsprop", "lr": 0.008, "schedule": "exponential",
            "warmup_epochs": "tenth", "augment": True, "ema_decay": 0.999},
    "trivial": {"optimizer": "rmsprop", "lr": 0.008, "schedule": "exponential",
                "warmup_epochs": "tenth", "augment": True, "ema_decay": 0.999,
                "auto_augment": "trivial", "erasing": 0.25},
    "sgd": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-5,
            "schedule": "cosine", "warmup_epochs": "tenth", "augment": True, "ema_decay": 0.999},
    "adamw": {"optimizer": "adamw", "lr": 0.002, "weight_decay": 0.05, "schedule": "cosine",
              "warmup_epochs": "tenth", "augment": True, "ema_decay": 0.999},
    "sgd-noema": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-5,
                  "schedule": "cosine", "warmup_epochs": "tenth", "augment": True},
    "sgd-lr05": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-5,
                 "schedule": "cosine", "warmup_epochs": "tenth", "augment": True,
                 "ema_decay": 0.999},
    "adamw-noema": {"optimizer": "adamw", "lr": 0.002, "weight_decay": 0.05,
                    "schedule": "cosine", "warmup_epochs": "tenth", "augment": True},
    "rmsprop-cosine": {"optimizer": "rmsprop", "lr": 0.008, "schedule": "cosine",
                       "warmup_epochs": "tenth", "augment": True, "ema_decay": 0.999},
    "sgd-trivial": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-5,
                    "schedule": "cosine", "warmup_epochs": "tenth", "augment": True,
                    "ema_decay": 0.999, "auto_augment": "trivial", "erasing": 0.25},
}


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    import torch
    torch.set_num_threads(1)
    import nas
    from nas.arch.rounding import as_trained
    from nas.data import load_splits
    from nas.training.fit import auto_bn_momentum
    from nas.training.proxy import build_seeded, train_proxy
    from nas.training.recipe import Recipe

    data = load_splits("fashion-mnist", val_size=5000, seed=0)
    spec = as_trained(nas.load_spec(job["spec"]), width=job["width"],
                      resolution=job["resolution"])
    settings = {**COMMON, **VARIANTS[job["variant"]]}
    if settings.get("warmup_epochs") == "tenth":
        settings["warmup_epochs"] = job["epochs"] / 10
    steps = len(data.train) // settings["batch_size"]
    recipe = Recipe(epochs=job["epochs"], resolution=job["resolution"], seed=job["seed"],
                    bn_momentum=auto_bn_momentum(spec.bn_momentum, steps), **settings)
    model = build_seeded(spec, data.num_classes, data.in_channels, job["seed"])
    t0 = time.perf_counter()
    curve: list[float] = []
    r = train_proxy(model, data, recipe,
                    on_epoch=lambda e, m: curve.append(m["val_accuracy"]) and None)
    return {**job, "accuracy": r.accuracy, "status": r.status, "curve": curve,
            "minutes": (time.perf_counter() - t0) / 60}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default="efficientnet-b0")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--variants", default="base,aug,trivial,sgd,adamw")
    p.add_argument("--processes", type=int, default=2)
    args = p.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant {unknown[0]}; known: {', '.join(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [{"spec": args.spec, "width": args.width, "resolution": args.resolution,
             "epochs": args.epochs, "variant": v, "seed": s} for v in variants for s in seeds]
    print(f"{len(jobs)} runs of {args.spec} (width {args.width}, {args.resolution} px, "
          f"{args.epochs} epochs), {args.processes} at a time; {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    t0 = time.time()
    with mp.get_context("spawn").Pool(args.processes) as pool:
        results = []
        for r in pool.imap_unordered(run_one, jobs):
            print(f"  {r['variant']} seed {r['seed']}: {r['accuracy']:.4f} ({r['status']}, "
                  f"{r['minutes']:.1f} min) curve {' '.join(f'{a:.3f}' for a in r['curve'])}",
                  flush=True)
            results.append(r)
    print(f"\n{len(jobs)} runs in {(time.time() - t0) / 60:.1f} min\n")
    print("| recipe | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | range | min/run |")
    print("|---|" + "---|" * (len(seeds) + 3))
    for v in variants:
        rows = sorted((r for r in results if r["variant"] == v), key=lambda r: r["seed"])
        accs = [r["accuracy"] for r in rows]
        print(f"| {v} | " + " | ".join(f"{a:.4f}" for a in accs)
              + f" | {statistics.mean(accs):.4f} | {min(accs):.4f}-{max(accs):.4f} | "
              f"{statistics.mean(r['minutes'] for r in rows):.1f} |")


if __name__ == "__main__":
    main()
