"""The one-shot evaluator, measured: layout, fidelity, throughput, search quality.

    .venv/bin/python bench/bench_oneshot.py layout [--epochs 4] [--repeats 3]
    .venv/bin/python bench/bench_oneshot.py fidelity --out DIR [--archs 24] [--variant NAME
        --supernet-seeds 0 1 2 --set oneshot.KEY=VALUE ...]
    .venv/bin/python bench/bench_oneshot.py strategies --out DIR [--seeds 0 1 2]
        [--strategies ppo evolution random] [--retrain-seeds 0]
    .venv/bin/python bench/bench_oneshot.py ablate [--epochs 3] [--seeds 0 1 2]
    .venv/bin/python bench/bench_oneshot.py versus --out DIR [--minutes 30] [--seeds 0 1 2]
        [--evaluators oneshot proxy]
    .venv/bin/python bench/bench_oneshot.py noise --out DIR [--archs 24] [--proxy-seeds 0 1]

``layout``      the supernet job (the laptop default's recipe, ``--epochs`` epochs) as two
                Ray Train workers of one CPU and as one worker of two CPUs, alternating, each
                ``--repeats`` times: training seconds, steps/s, images/s, samples/hour.
``fidelity``    a fixed set of ``--archs`` distinct networks spread over the space (evenly
                over the MACs ranking of 20x as many uniform samples) is trained standalone
                by the proxy on Ray Tune (once per ``--out``; later variants reuse it), and
                scored on a supernet trained with uniform paths (``--strategy random``, the
                SPOS supernet) under each batch-norm mode; one supernet per
                ``--supernet-seeds``. Prints per seed Kendall's tau (bootstrap 95 % interval)
                of supernet accuracy against standalone accuracy per mode, its mean and range
                over the seeds, and the supernet's samples/hour against the proxy's
                children/hour measured in the same run.
``strategies``  one-shot searches (laptop default) with each of ``--strategies`` (PPO,
                evolution and uniform random sampling of the same supernet), per seed: the
                standalone reward of best.yaml, the mean standalone reward of the top-k
                networks the proxy trained, and the mean supernet reward of the last
                epoch's samples; each strategy against random by the seed rule. With
                ``--retrain-seeds N`` each best.yaml is also trained again by the proxy with
                N fresh seeds, as ``versus`` does (the same seeds).
``ablate``      what each kind of decision costs the shared weights: the supernet is
                trained (the laptop default's recipe, ``--epochs`` epochs, one process) with
                every decision held at one random network's choice except the decisions of
                one kind (``op``, ``kernel``, ``se``, ``skip``, ``filters``, ``layers``,
                ``activation``), which are sampled uniformly at every step; also with
                nothing sampled (``none``: a plain network) and everything sampled
                (``all``). Per ``--seeds`` (each its own held network): the training loss of
                the last epoch and the validation accuracy of the last epoch's paths.
``versus``      a one-shot search against a multi-trial search (both PPO, default proxy),
                per seed, each given ``--minutes`` of wall time (the multi-trial search is
                interrupted at the cap, as Ctrl-C would; the one-shot search is sized to end
                within it, or, with ``--oneshot-set oneshot.handoff=search``, interrupted
                at the cap too). Both best.yaml are then trained again by the proxy with
                ``--retrain-seeds`` fresh seeds, which removes the selection bias of a best
                picked among noisy proxy runs. ``--evaluators oneshot`` runs (and
                retrains) the one-shot side alone, for a variant measured against a
                multi-trial side recorded earlier (the retraining seeds are the same).
                Finished searches in ``--out`` are reused, so seeds may run in separate
                sessions; each seed's machine speed (``machine_speed``) is measured before
                its first search and kept in ``machine-SEED.json``.
``noise``       the ceiling of ``fidelity``: the same networks (the same ``--out``, ``--seed``
                and ``--archs``) trained standalone by the proxy once per ``--proxy-seeds``
                (the ``--seed`` run is fidelity's own, reused). Prints Kendall's tau
                (bootstrap 95 % interval) between the seeds' accuracies: how well the proxy
                ranks these networks against itself, which no supernet can beat on average.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _settings(sets: list[str]) -> Any:
    """A search's settings with the ``KEY=VALUE`` items ``sets``, and its one-shot section."""
    from nas.core.settings import load
    from nas.search.settings import SearchSettings
    cfg = load(SearchSettings, overrides=sets)
    return cfg, cfg.oneshot


def _data(cfg: Any) -> Any:
    return cfg.data_settings().load()


SPACE = ["mnasnet-space"]  # --space of the command


def _space() -> Any:
    from nas.core.files import config_path
    from search_space import SearchSpace
    name = SPACE[0]
    return SearchSpace.from_yaml(name if Path(name).is_file() else config_path(name))


def train_supernet(folder: Path, o: Any, strategy: str, options: dict, data: Any, seed: int,
                   workers: int, cpus: float) -> tuple[dict, float]:
    """A supernet job exactly as the search runs it; returns its final checkpoint and the
    job's wall time (Ray Train's start included)."""
    from nas.ray import train as ray_train
    from nas.ray.runtime import init_ray
    from nas.search.driver import Target
    from nas.search.oneshot import path_score
    from nas.search.reward import RewardConfig
    space = _space()
    o = o.replace(supernet=o.supernet.replace(num_threads=max(1, int(cpus))))
    init_ray(None)
    job = ray_train.SupernetJob(space.to_dict(), o, strategy, options,
                                path_score(space, RewardConfig(), Target()), seed, workers,
                                cpus, 0.0)
    t0 = time.time()
    status = ray_train.run_supernet(job, data, folder, 0, lambda recs: print(
        f"  epoch {recs[-1]['epoch']}: {recs[-1]['samples']} samples, "
        f"{recs[-1]['elapsed']:.0f} s, loss {recs[-1]['train_loss']:.3f}", flush=True))
    assert status == "ok", status
    return ray_train.load_checkpoint(folder), time.time() - t0


# ---------------------------------------------------------------------- layout


def layout(args: argparse.Namespace) -> None:
    import tempfile
    cfg, o = _settings(args.set + [f"oneshot.supernet.epochs={args.epochs}"])
    data = _data(cfg)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for workers, cpus in ((2, 1), (1, 2)):
                folder = Path(tmp) / f"{workers}x{cpus}-{rep}"
                state, wall = train_supernet(folder, o, "random", {}, data, rep, workers, cpus)
                steps, secs, samples = state["step"], state["seconds"], len(state["samples"])
                images = steps * o.supernet.batch_size
                rows.append({"layout": f"{workers} x {cpus} CPU", "repeat": rep,
                             "steps": steps, "seconds": secs, "wall": wall,
                             "steps_per_s": steps / secs, "images_per_s": images / secs,
                             "samples_per_hour": samples / secs * 3600})
                print(json.dumps(rows[-1]), flush=True)
    print("\n| layout | repeat | steps | training s | job wall s | steps/s | images/s | "
          "samples/hour |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layout']} | {r['repeat']} | {r['steps']} | {r['seconds']:.1f} | "
              f"{r['wall']:.1f} | {r['steps_per_s']:.2f} | {r['images_per_s']:.0f} | "
              f"{r['samples_per_hour']:.0f} |")
    for name in ("2 x 1 CPU", "1 x 2 CPU"):
        v = [r["images_per_s"] for r in rows if r["layout"] == name]
        s = [r["samples_per_hour"] for r in rows if r["layout"] == name]
        print(f"{name}: images/s mean {statistics.mean(v):.0f} (range {min(v):.0f}-{max(v):.0f}), "
              f"samples/hour mean {statistics.mean(s):.0f} (range {min(s):.0f}-{max(s):.0f})")


# ---------------------------------------------------------------------- fidelity


def arch_set(space: Any, n: int, seed: int) -> list[tuple[int, ...]]:
    """``n`` distinct networks evenly spread over the MACs ranking of ``20 n`` uniform samples."""
    from nas.arch.cost import count_macs
    from nas.arch.spec import identity
    rng = np.random.default_rng(seed)
    seen: dict[str, tuple[int, ...]] = {}
    while len(seen) < 20 * n:
        t = space.sample_tokens(rng)
        seen.setdefault(identity(space.decode(t)), t)
    pool = sorted(seen.values(), key=lambda t: count_macs(space.decode(t)))
    return [pool[int(i)] for i in np.linspace(0, len(pool) - 1, n).round()]


def score(state: dict, o: Any, data: Any, archs: list, modes: tuple[str, ...],
          images: int, seed: int) -> dict[str, list[float]]:
    import torch

    from nas.supernet.model import make_supernet
    from nas.supernet.score import Scorer
    from nas.training.feeder import Feeder
    torch.set_num_threads(2)
    space = _space()
    r = o.supernet
    sn = make_supernet(space, r.width_mult, r.resolution, data.num_classes, data.in_channels,
                       o.split, o.bn_affine)
    sn.load_state_dict(state["supernet"])
    if r.channels_last:
        sn.to(memory_format=torch.channels_last)
    stats = data.train.channel_stats()
    dev = torch.device("cpu")
    val = Feeder(data.val, None, dev, stats, r.resolution, r.channels_last)
    train = Feeder(data.train, None, dev, stats, r.resolution, r.channels_last)
    rows = np.random.default_rng(seed).permutation(val.n)[:images]
    out = {}
    for mode in modes:
        scorer = Scorer(sn, val, train, mode, o.recal_batches, r.eval_batch_size,
                        np.random.default_rng(seed), None, r.channels_last)
        t0 = time.time()
        out[mode] = [scorer.accuracy(t, rows) for t in archs]
        print(f"  scored {len(archs)} networks with bn={mode} in {time.time() - t0:.0f} s",
              flush=True)
    return out


def train_standalone(items: list, folder: Path, trials: Any, data: Any, seed: int) -> dict:
    """Each network of ``items`` trained by the proxy once with ``seed`` in ``folder`` (a
    finished folder is read back, an interrupted one continued): label -> record."""
    from nas.search.runner import train_fixed
    return train_fixed(items, folder, trials, data, seed, resume=True,
                       resume_hint="the same command", table="children")


def fixed_networks(args: argparse.Namespace) -> tuple[Any, Any, list, list, Any]:
    """fidelity's and noise's setup: (supernet settings, data, tokens, items, trial
    settings) for ``--archs`` networks of the space, with Ray started."""
    from nas.ray.runtime import init_ray
    cfg, o = _settings(args.set)
    data = _data(cfg)
    space = _space()
    archs = arch_set(space, args.archs, args.seed)
    init_ray(None)
    items = [(f"a{i}", space.decode(t), {}) for i, t in enumerate(archs)]
    return o, data, archs, items, cfg.trials


def fidelity(args: argparse.Namespace) -> None:
    from nas.search.stats import bootstrap, kendall_tau, spearman_rho
    out = Path(args.out)
    o, data, archs, items, trials = fixed_networks(args)
    t0 = time.time()
    done_before = (out / "standalone" / "driver.pt").is_file()
    standalone = train_standalone(items, out / "standalone", trials, data, args.seed)
    standalone_wall = time.time() - t0
    acc = [standalone[f"a{i}"].accuracy for i in range(len(archs))]
    children = [r for r in standalone.values() if r.status == "ok"]
    children_per_hour = None if done_before else len(children) / standalone_wall * 3600

    folder = out / "variants" / args.variant
    modes = ("batch", "recalibrate", "running")
    seeds = args.supernet_seeds or [args.seed]
    report: dict[str, Any] = {"variant": args.variant, "sets": args.set, "archs": len(archs),
                              "standalone_accuracy": acc, "supernet_seeds": {}}
    for seed in seeds:
        sub = "supernet" if seed == args.seed else f"supernet-seed{seed}"
        state, job_wall = train_supernet(folder / sub, o, args.strategy, {}, data, seed,
                                         args.workers, args.cpus)
        scores = score(state, o, data, archs, modes, args.score_images, args.seed)
        rng = np.random.default_rng(0)
        one: dict[str, Any] = {"scores": scores, "modes": {}}
        for m in modes:
            one["modes"][m] = {"kendall": bootstrap(kendall_tau, scores[m], acc, rng).to_dict(),
                               "spearman": spearman_rho(scores[m], acc)}
        one["between_modes"] = {f"{a}~{b}": kendall_tau(scores[a], scores[b])
                                for a, b in (("batch", "recalibrate"), ("batch", "running"),
                                             ("recalibrate", "running"))}
        samples, secs = len(state["samples"]), float(state["seconds"])
        one["last_train_loss"] = state["history"][-1]["train_loss"]
        one["throughput"] = {
            "supernet_samples": samples, "supernet_training_seconds": secs,
            "supernet_job_wall_seconds": job_wall,
            "samples_per_hour": samples / secs * 3600,
            "samples_per_hour_wall": samples / job_wall * 3600,
            "standalone_children": len(children),
            "standalone_children_seconds": sum(r.seconds for r in children),
            "standalone_wall_seconds": None if done_before else standalone_wall,
            "children_per_hour": children_per_hour,
        }
        report["supernet_seeds"][str(seed)] = one
    report["summary"] = {m: _spread([report["supernet_seeds"][str(s)]["modes"][m]["kendall"]
                                     ["value"] for s in seeds]) for m in modes}
    (folder / "fidelity.json").write_text(json.dumps(report, indent=2) + "\n")

    print(f"\nvariant {args.variant} ({' '.join(args.set) or 'laptop default'}): "
          f"{len(archs)} networks, supernet seeds {seeds}")
    print("| supernet seed | last loss | " + " | ".join(
        f"tau, bn {m} [95 % bootstrap]" for m in modes) + " | samples/hour |")
    print("|---" * (len(modes) + 3) + "|")
    for seed in seeds:
        one = report["supernet_seeds"][str(seed)]
        cells = [f"{_f(k['value'])} [{_f(k['low'])}, {_f(k['high'])}]"
                 for k in (one["modes"][m]["kendall"] for m in modes)]
        print(f"| {seed} | {one['last_train_loss']:.3f} | " + " | ".join(cells) +
              f" | {one['throughput']['samples_per_hour']:.0f} |")
    print("| mean (range) | | " + " | ".join(
        "{} ({} to {})".format(*(_f(report["summary"][m][k]) for k in ("mean", "low", "high")))
        for m in modes) + " | |")
    if children_per_hour:
        for seed in seeds:
            t = report["supernet_seeds"][str(seed)]["throughput"]
            print(f"throughput, supernet seed {seed}: {t['samples_per_hour']:.0f} samples/hour "
                  f"of supernet training ({t['samples_per_hour_wall']:.0f} counting the job's "
                  f"start) vs {children_per_hour:.1f} proxy children/hour -> ratio "
                  f"{t['samples_per_hour'] / children_per_hour:.0f} "
                  f"({t['samples_per_hour_wall'] / children_per_hour:.0f})")


def _spread(values: list[float | None]) -> dict[str, Any]:
    """Mean and range over the seeds whose tau is defined (it is not when every score ties)."""
    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return {"mean": None, "low": None, "high": None, "seeds": 0}
    return {"mean": statistics.mean(v), "low": min(v), "high": max(v), "seeds": len(v)}


def _f(x: float | None) -> str:
    return "undefined" if x is None or math.isnan(x) else f"{x:.2f}"


def noise(args: argparse.Namespace) -> None:
    from nas.search.stats import bootstrap, kendall_tau
    out = Path(args.out)
    _, data, archs, items, trials = fixed_networks(args)
    acc: dict[int, list[float]] = {}
    cut: dict[int, list[str]] = {}  # children not trained to the end: a partial accuracy
    folders: dict[int, Path] = {}
    for s in args.proxy_seeds:
        folders[s] = out / ("standalone" if s == args.seed else f"standalone-seed{s}")
        done = train_standalone(items, folders[s], trials, data, s)
        records = [done[f"a{i}"] for i in range(len(archs))]
        acc[s] = [r.accuracy for r in records]
        cut[s] = [f"a{i}:{r.status}" for i, r in enumerate(records) if r.status != "ok"]
    rng = np.random.default_rng(0)
    pairs = {f"{a}~{b}": bootstrap(kendall_tau, acc[a], acc[b], rng).to_dict()
             for i, a in enumerate(args.proxy_seeds) for b in args.proxy_seeds[i + 1:]}
    (out / "noise.json").write_text(json.dumps({"archs": len(archs), "accuracy": acc,
                                                "not_ok": cut, "kendall": pairs},
                                               indent=2) + "\n")
    print(f"\n{len(archs)} networks, proxy seeds {args.proxy_seeds}")
    for s, a in acc.items():
        print(f"  seed {s}: accuracy {statistics.mean(a):.3f} [{min(a):.3f}, {max(a):.3f}], "
              f"mean change from seed {args.proxy_seeds[0]} "
              f"{statistics.mean(abs(x - y) for x, y in zip(a, acc[args.proxy_seeds[0]])):.3f}")
    for k, t in pairs.items():
        print(f"  Kendall tau between seeds {k}: {t['value']:.2f} [{t['low']:.2f}, "
              f"{t['high']:.2f}]")
    for s, names in cut.items():
        if names:
            print(f"  warning: seed {s} holds {len(names)} children cut short ({', '.join(names)})"
                  f"; their partial accuracies are in the tau. Delete {folders[s]} and run "
                  "again on an idle machine", flush=True)


# ---------------------------------------------------------------------- searches


def search(out: Path, seed: int, strategy: str, evaluator: str, sets: list[str],
           cap: float | None = None) -> float:
    """One search.py run (interrupted after ``cap`` seconds if given); its wall time.

    Only a new folder: one left by a bench stopped mid-search holds a best.yaml but no
    wall time to compare, and search.py would refuse it after a few seconds, which would
    read as a finished search."""
    log_path = out.parent / f"{out.name}.log"
    if out.exists():
        raise SystemExit(f"error: {out} holds a search this bench did not finish (it was "
                         f"stopped); remove it and {log_path.name} (rm -r {out} {log_path}) "
                         "and run the bench again")
    cmd = [sys.executable, str(ROOT / "search.py"), "--target-flops", "400M", "--seed",
           str(seed), "--strategy", strategy, "--evaluator", evaluator, "--space", SPACE[0],
           "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            proc.wait(timeout=cap)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # as Ctrl-C: every finished child is kept
            proc.wait()
    if not (out / "best.yaml").is_file():
        raise SystemExit(f"error: the search in {out} wrote no best.yaml (exit status "
                         f"{proc.returncode}); see {log_path}")
    return time.time() - t0


def machine_speed(steps: int = 5) -> dict[str, Any]:
    """How fast this machine trains, to tell sessions' machines apart: ``bench_builder.py
    --threads 1``'s steps on our EfficientNet-B0 (batch 32 of 3x64x64, 1000 classes, SGD),
    3 untimed then ``steps`` timed; 74.9 images/s on the machine of its table. With the
    load average before it, and the time."""
    import torch

    here = str(Path(__file__).resolve().parent)  # on sys.path as a script, not as a module
    if here not in sys.path:
        sys.path.insert(0, here)
    from bench_builder import _step, _timed

    from nas import build_model, load_spec
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build_model(load_spec("efficientnet-b0")).train()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            x, y = torch.randn(32, 3, 64, 64), torch.randint(0, 1000, (32,))
            load = os.getloadavg()[0]
            for _ in range(3):
                _step(model, opt, x, y)
            rate = _timed(model, opt, x, y, steps)
    finally:
        torch.set_num_threads(threads)
    return {"images_per_s": round(rate, 1), "load": round(load, 2),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def best_of(out: Path) -> dict[str, Any] | None:
    from nas.arch.io import load_spec
    if not (out / "best.yaml").is_file():
        return None
    spec = load_spec(out / "best.yaml")
    return {"spec": spec, "reward": spec.meta["metrics"]["reward"],
            "accuracy": spec.meta["metrics"]["accuracy"], "macs": spec.meta["metrics"]["macs"]}


def summary_line(name: str, values: list[float | None]) -> str:
    """Mean, range and values of one measure over seeds; None (a run with no value, such as a
    network whose every retraining failed) is left out and counted."""
    have = [v for v in values if v is not None]
    missing = f"; {len(values) - len(have)} without a value" if len(have) < len(values) else ""
    if not have:
        return f"{name}: no value{missing}"
    return (f"{name}: mean {statistics.mean(have):.4f}, range {min(have):.4f}-"
            f"{max(have):.4f} ({', '.join(f'{v:.4f}' for v in have)}{missing})")


def run_stats(run: Path) -> dict[str, Any]:
    """What ``strategies`` reads from one finished one-shot run folder: best.yaml's
    standalone reward and accuracy, the mean standalone reward of every top-k network the
    proxy trained (a strategy's picks as a whole, not only the luckiest), the supernet's
    sample count, and the mean supernet reward of the last epoch's samples."""
    import csv
    summary = json.loads((run / "summary.json").read_text())
    with open(run / "supernet" / "samples.csv") as f:
        samples = list(csv.DictReader(f))
    steps = [json.loads(line)["step"]
             for line in (run / "supernet" / "progress.jsonl").read_text().splitlines()]
    epoch_steps = steps[-1] - steps[-2]
    last_step = max(int(s["step"]) for s in samples)
    last = [float(s["reward"]) for s in samples if int(s["step"]) > last_step - epoch_steps]
    children = [json.loads(line) for line in (run / "children.jsonl").read_text().splitlines()]
    trained = [c["reward"] for c in children if c.get("status") == "ok"]
    return {"best": summary["best"]["reward"], "best_accuracy": summary["best"]["accuracy"],
            "standalone_mean": statistics.mean(trained), "standalone": len(trained),
            "samples": summary["supernet"]["samples"],
            "last_epoch_reward": statistics.mean(last), "seconds": summary["session_seconds"]}


def strategies(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {name: [] for name in args.strategies}
    for seed in args.seeds:
        for strategy in args.strategies:
            run = out / f"{strategy}-{seed}"
            if not (run / "summary.json").is_file():
                search(run, seed, strategy, "oneshot", args.set + ["reference=null"])
            results[strategy].append({"seed": seed, **run_stats(run)})
            print(json.dumps({"strategy": strategy, **results[strategy][-1]}), flush=True)
    keys = ["best", "standalone_mean", "last_epoch_reward"]
    if args.retrain_seeds > 0:
        specs = [(f"{strategy}-{r['seed']}", best_of(out / f"{strategy}-{r['seed']}")["spec"])
                 for strategy, rs in results.items() for r in rs]
        runs = retrain(out, specs, args.retrain_seeds)
        for strategy, rs in results.items():
            for r in rs:
                r["retrained_runs"] = runs[f"{strategy}-{r['seed']}"]
                # None where every retraining of the network failed: left out of the means.
                r["retrained"] = (statistics.mean(r["retrained_runs"])
                                  if r["retrained_runs"] else None)
        keys.insert(1, "retrained")
    (out / "strategies.json").write_text(json.dumps(results, indent=2) + "\n")
    for key in keys:
        for strategy, rs in results.items():
            print(summary_line(f"{strategy} {key}", [r[key] for r in rs]))
    if "random" in results:
        from nas.pipeline.report import compare_to, seed_summary
        what_of = {"best": "standalone reward of best.yaml", "retrained": "best.yaml retrained",
                   "standalone_mean": "mean standalone reward of the top-k"}
        for key, what in ((k, what_of[k]) for k in keys if k in what_of):
            chance = seed_summary(results["random"], key)
            for strategy, rs in results.items():
                if strategy != "random":
                    print(f"{strategy} against random, {what}: "
                          f"{compare_to(seed_summary(rs, key), chance)}")


def retrain(out: Path, specs: list[tuple[str, Any]], seeds: int) -> dict[str, list[float]]:
    """Each (label, best.yaml spec) trained again by the default proxy with ``seeds`` fresh
    run seeds (1000, 1001, ...; one ``retrain-K`` folder each under ``out``, reused when
    finished): label -> the search's reward of each run. The mean is the network's
    standalone reward without the selection bias of a best picked among noisy runs."""
    if seeds <= 0:
        return {label: [] for label, _ in specs}
    from nas.core.settings import load
    from nas.ray.runtime import init_ray
    from nas.search.reward import RewardConfig, compute_reward
    from nas.search.settings import SearchSettings
    cfg = load(SearchSettings)
    trials = cfg.trials
    init_ray(None)
    data = _data(cfg)
    items = [(label, spec, {}) for label, spec in specs]
    retrained: dict[str, list[float]] = {label: [] for label, _ in specs}
    for k in range(seeds):
        recs = train_standalone(items, out / f"retrain-{k}", trials, data, 1000 + k)
        for label, rec in recs.items():
            if rec.status == "ok":
                retrained[label].append(
                    compute_reward(rec.accuracy, _macs(items, label), RewardConfig()).reward)
    return retrained


def versus(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cap = args.minutes * 60
    bests: dict[str, list[dict]] = {evaluator: [] for evaluator in args.evaluators}
    speeds: dict[int, dict] = {}
    for seed in args.seeds:
        # Searches of one seed run back to back; a later --seeds may run in another session,
        # so each seed's machine speed is taken before its first search and kept.
        speed_file = out / f"machine-{seed}.json"
        if not speed_file.is_file() and not all(
                (out / f"{ev}-{seed}" / "wall.txt").is_file() for ev in args.evaluators):
            speed_file.write_text(json.dumps(machine_speed()) + "\n")
        if speed_file.is_file():
            speeds[seed] = json.loads(speed_file.read_text())
            print(f"seed {seed}: machine {speeds[seed]['images_per_s']} images/s (load "
                  f"{speeds[seed]['load']}) at {speeds[seed]['time']}", flush=True)
        for evaluator in args.evaluators:
            run = out / f"{evaluator}-{seed}"
            if not (run / "best.yaml").is_file() or not (run / "wall.txt").is_file():
                sets = args.oneshot_set if evaluator == "oneshot" else ["budget=100000"]
                # A handoff search, like the multi-trial one, runs until it is stopped.
                capped = evaluator == "proxy" or "oneshot.handoff=search" in sets
                wall = search(run, seed, "ppo", evaluator, sets + ["reference=null"],
                              cap=cap if capped else None)
                (run / "wall.txt").write_text(f"{wall:.1f}\n")
            b = best_of(run)
            assert b is not None, f"{run} has no best.yaml"
            b["wall"] = float((run / "wall.txt").read_text())
            b["seed"] = seed
            b["children"] = sum(1 for line in (run / "children.jsonl").read_text().splitlines()
                                if '"status": "ok"' in line)
            bests[evaluator].append(b)
            print(f"{evaluator} seed {seed}: best reward {b['reward']:.4f} "
                  f"(accuracy {b['accuracy']:.4f}, {b['macs'] / 1e6:.1f}M MACs) after "
                  f"{b['wall']:.0f} s, {b['children']} standalone children", flush=True)
    retrained = retrain(out, [(f"{ev}-{b['seed']}", b["spec"]) for ev, bs in bests.items()
                              for b in bs], args.retrain_seeds)
    report = {ev: [{k: v for k, v in b.items() if k != "spec"} | {
        "retrained": retrained[f"{ev}-{b['seed']}"]} for b in bs] for ev, bs in bests.items()}
    machine = {str(seed): speed for seed, speed in speeds.items()}
    (out / "versus.json").write_text(json.dumps({**report, "machine": machine}, indent=2)
                                     + "\n")
    for ev, bs in report.items():
        print(summary_line(f"{ev} best reward in the run", [b["reward"] for b in bs]))
        means = [statistics.mean(b["retrained"]) for b in bs if b["retrained"]]
        if means:
            print(summary_line(f"{ev} best.yaml retrained ({args.retrain_seeds} seeds, mean per "
                               "run)", means))
        walls = ", ".join(f"{b['wall']:.0f}" for b in bs)
        print(f"{ev} wall s: {walls}")


# ---------------------------------------------------------------------- ablate


class HeldSampler:
    """A strategy for ``ablate``: every decision at ``held``'s choice except those of the
    kinds in ``free``, which are drawn uniformly at every ``ask``."""

    def __init__(self, space: Any, held: tuple[int, ...], free: set[str], seed: int) -> None:
        self.sizes, self.held = space.sizes(), held
        self.free = [i for i, d in enumerate(space.decisions())
                     if "all" in free or d.key in free]
        self.rng = np.random.default_rng(seed)

    def ask(self) -> Any:
        from controller.base import Proposal
        tokens = list(self.held)
        for i in self.free:
            tokens[i] = int(self.rng.integers(self.sizes[i]))
        return Proposal(tokens=tuple(tokens))

    def tell(self, proposal: Any, reward: float, metrics: Any = None) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}


KINDS = ("none", "activation", "op", "kernel", "se", "skip", "filters", "layers", "all")


def ablate(args: argparse.Namespace) -> None:
    import torch

    from nas.arch.cost import count_macs
    from nas.supernet.model import Supernet
    from nas.supernet.train import JointTraining
    cfg, o = _settings(args.set)
    data = _data(cfg)
    space = _space()
    r = o.supernet.replace(epochs=args.epochs, num_threads=2)
    o = o.replace(supernet=r, warmup=0.0, candidates=1, score_images=64)
    rows = []
    for seed in args.seeds:
        held = tuple(space.sample_tokens(np.random.default_rng(1000 + seed)))
        for kind in args.kinds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                sn = Supernet(space, r.width_mult, r.resolution, data.num_classes,
                              data.in_channels)
            free = set() if kind == "none" else {kind}
            jt = JointTraining(sn, sn, space, o, data.train, data.val,
                               data.train.channel_stats(), HeldSampler(space, held, free, seed),
                               lambda acc, tokens: (acc, count_macs(space.decode(tokens))),
                               torch.device("cpu"), seed=seed)
            t0 = time.time()
            records: list[dict] = []
            assert jt.run(on_epoch=records.append) == "ok"
            rows.append({"seed": seed, "sampled": kind, "loss": records[-1]["train_loss"],
                         "val_accuracy": records[-1]["accuracy_mean"],
                         "seconds": time.time() - t0})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.epochs} epochs of {r.train_subset} images, batch {r.batch_size}, "
          f"{r.optimizer} lr {r.lr:g}; chance: loss {math.log(data.num_classes):.3f}, "
          f"accuracy {1 / data.num_classes:.2f}")
    print("| sampled | last-epoch training loss: mean [range] | validation accuracy of its "
          "paths: mean [range] |\n|---|---|---|")
    for kind in args.kinds:
        loss = [x["loss"] for x in rows if x["sampled"] == kind]
        acc = [x["val_accuracy"] for x in rows if x["sampled"] == kind]
        print(f"| {kind} | {statistics.mean(loss):.2f} [{min(loss):.2f}, {max(loss):.2f}] | "
              f"{statistics.mean(acc):.3f} [{min(acc):.3f}, {max(acc):.3f}] |")


def _macs(items: list, label: str) -> int:
    from nas.arch.cost import count_macs
    spec = next(s for lab, s, _ in items if lab == label)
    return count_macs(spec, 224, 1000, 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("layout")
    a.add_argument("--epochs", type=int, default=4)
    a.add_argument("--repeats", type=int, default=3)
    a.add_argument("--set", action="append", default=[])
    f = sub.add_parser("fidelity")
    f.add_argument("--out", required=True)
    f.add_argument("--archs", type=int, default=24)
    f.add_argument("--variant", default="default")
    f.add_argument("--strategy", default="random")
    f.add_argument("--seed", type=int, default=0,
                   help="draws the networks, seeds their proxy runs and the first supernet")
    f.add_argument("--supernet-seeds", type=int, nargs="+", default=None,
                   help="train one supernet per seed (default: --seed); --seed's folder is "
                        "supernet/, another's supernet-seedN/")
    f.add_argument("--workers", type=int, default=2)
    f.add_argument("--cpus", type=float, default=1)
    f.add_argument("--score-images", type=int, default=1000)
    f.add_argument("--set", action="append", default=[])
    s = sub.add_parser("strategies")
    s.add_argument("--out", required=True)
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    s.add_argument("--strategies", nargs="+", default=["ppo", "evolution", "random"])
    s.add_argument("--retrain-seeds", type=int, default=0,
                   help="train each best.yaml again with this many fresh seeds (as versus)")
    s.add_argument("--set", action="append", default=[])
    b = sub.add_parser("ablate")
    b.add_argument("--epochs", type=int, default=3)
    b.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    b.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    b.add_argument("--set", action="append", default=[])
    v = sub.add_parser("versus")
    v.add_argument("--out", required=True)
    v.add_argument("--minutes", type=float, default=30)
    v.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    v.add_argument("--retrain-seeds", type=int, default=3)
    v.add_argument("--oneshot-set", action="append", default=[])
    v.add_argument("--evaluators", nargs="+", default=["oneshot", "proxy"],
                   choices=["oneshot", "proxy"])
    n = sub.add_parser("noise")
    n.add_argument("--out", required=True)
    n.add_argument("--archs", type=int, default=24)
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--proxy-seeds", type=int, nargs="+", default=[0, 1])
    n.add_argument("--set", action="append", default=[])
    for sp in (a, f, s, b, v, n):
        sp.add_argument("--space", default="mnasnet-space",
                        help="search-space YAML or bundled name (default mnasnet-space)")
    args = p.parse_args()
    SPACE[0] = getattr(args, "space", SPACE[0])
    from nas.core.errors import NasError
    try:
        {"layout": layout, "fidelity": fidelity, "strategies": strategies, "versus": versus,
         "ablate": ablate, "noise": noise}[args.what](args)
    except NasError as e:  # a bad space, --set or data path: one line, not a traceback
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
