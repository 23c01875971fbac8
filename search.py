#!/usr/bin/env python
"""Search for a baseline network: an RL controller over the MnasNet space, children on Ray Tune.

    python search.py --target-flops 400M                  # the laptop default (~30 min, 2 cores)
    python search.py --target-flops 400M --preset smoke    # under 2 minutes, for trying things
    python search.py --resume --out runs/NAME              # continue an interrupted search

Every child is trained as a proxy (Fashion-MNIST by default) and scored with
``ACC(m) * (MACs(m) / T) ** -0.07``, its MACs counted at the target setting (224x224, 1000
classes). The best child is written to ``OUT/best.yaml``, a spec that ``nas.build_model``
and ``scale.py`` take as it is.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from nas.errors import ConfigError, NasError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem and pointing at --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="search.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target-flops", metavar="T",
                   help="target multiply-adds at the target setting: 400M, 0.4G or 4e8 "
                        "(the papers' FLOPS are multiply-adds)")
    p.add_argument("--preset", help="a bundled preset: smoke (under 2 minutes)")
    p.add_argument("--config", metavar="YAML", help="a YAML file of settings (see configs/search.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set proxy.epochs=2 (repeatable)")
    p.add_argument("--strategy", choices=None, help="ppo (default) | reinforce | random | evolution")
    p.add_argument("--budget", type=int, help="number of children to train")
    p.add_argument("--workers", type=int, help="children trained at the same time")
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per child (default 1)")
    p.add_argument("--gpus-per-trial", type=float,
                   help="GPUs per child; fractions share a GPU (e.g. 0.25 = 4 children per GPU)")
    p.add_argument("--address", help="join an existing Ray cluster (or set RAY_ADDRESS); "
                                     "default: a fresh local Ray")
    p.add_argument("--data", metavar="PATH", help="data folder (default: the Fashion-MNIST "
                                                  "install, or NAS_DATA_DIR)")
    p.add_argument("--dataset", help="fashion-mnist (default) | mnist | cifar10 | cifar100 | imagefolder")
    p.add_argument("--space", help="search-space YAML or bundled name (default mnasnet-space)")
    p.add_argument("--seed", type=int, help="seed of the controller and the data split")
    p.add_argument("--name", help="run name (default: derived from the settings and the time)")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/NAME)")
    p.add_argument("--resume", action="store_true",
                   help="continue the search in --out where it stopped")
    return p


_FLAG_KEYS = {"target_flops": "target_flops", "strategy": "strategy", "budget": "budget",
              "workers": "workers", "cpus_per_trial": "cpus_per_trial",
              "gpus_per_trial": "gpus_per_trial", "address": "address", "space": "space",
              "seed": "seed", "name": "name", "out": "out"}


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from nas.config import merge, parse_set
    over: dict[str, Any] = {}
    for attr, key in _FLAG_KEYS.items():
        v = getattr(args, attr)
        if v is not None:
            over[key] = v
    if args.data is not None:
        over.setdefault("data", {})["path"] = args.data
    if args.dataset is not None:
        over.setdefault("data", {})["source"] = args.dataset
    sets = parse_set(args.set)
    for k, v in sets.items():  # --set may extend what the flags set
        if isinstance(v, dict) and isinstance(over.get(k), dict):
            over[k] = {**over[k], **v}
        else:
            over[k] = v
    return over


def _int(cfg: dict, key: str, lo: int) -> int:
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"{key}: got {v!r}; use an integer >= {lo}")
    return v


def _num(cfg: dict, key: str, lo: float, strict: bool = False) -> float:
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or v < lo or (strict and v == lo):
        raise ConfigError(f"{key}: got {v!r}; use a number {'>' if strict else '>='} {lo:g}")
    return float(v)


def resolve(cfg: dict[str, Any]) -> dict[str, Any]:
    """Check every setting and build the typed objects the run needs."""
    from controller import STRATEGIES
    from nas.driver import Target
    from nas.proxy import ProxyConfig
    from nas.reward import RewardConfig
    from nas.units import parse_macs

    if cfg.get("target_flops") in (None, ""):
        raise ConfigError("--target-flops is required, e.g. --target-flops 400M")
    target_macs = parse_macs(cfg["target_flops"], "--target-flops")
    if cfg["strategy"] not in STRATEGIES:
        raise ConfigError(f"--strategy {cfg['strategy']!r}: use one of {', '.join(STRATEGIES)}")
    if not isinstance(cfg["strategy_options"], dict):
        raise ConfigError("strategy_options: expected a mapping")
    r = cfg["reward"]
    reward = RewardConfig(target_macs=target_macs, form=r["form"], w=float(r["w"]),
                          failure_reward=float(r["failure_reward"]))
    t = cfg["target"]
    for k in ("resolution", "num_classes", "in_channels"):
        _int(t, k, 1)
    target = Target(t["resolution"], t["num_classes"], t["in_channels"])
    proxy = ProxyConfig.from_dict(cfg["proxy"], source="proxy settings")
    cpus = _num(cfg, "cpus_per_trial", 0.0, strict=True)
    if proxy.num_threads is None:
        proxy = proxy.replace(num_threads=max(1, int(cpus)))
    d = cfg["data"]
    if not isinstance(d.get("source"), str):
        raise ConfigError("data.source: expected a name such as fashion-mnist")
    return {
        "target_macs": target_macs, "reward": reward, "target": target, "proxy": proxy,
        "budget": _int(cfg, "budget", 1), "workers": _int(cfg, "workers", 1),
        "cpus_per_trial": cpus, "gpus_per_trial": _num(cfg, "gpus_per_trial", 0.0),
        "max_failures": _int(cfg, "max_failures", 0), "top_k": _int(cfg, "top_k", 1),
        "seed": _int(cfg, "seed", 0),
    }


def _run_name(cfg: dict[str, Any]) -> str:
    from nas.units import format_macs, parse_macs
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{cfg['strategy']}-{format_macs(parse_macs(cfg['target_flops']))}-{stamp}"


def run(args: argparse.Namespace) -> int:
    import yaml

    from nas import config as nconfig
    from nas.io import dump_yaml, load_spec, read_yaml, save_spec, write_text_atomic

    if args.resume:
        if not args.out:
            raise ConfigError("--resume needs --out DIR, the folder of the search to continue")
        out = Path(args.out)
        if not (out / "driver.pt").is_file() or not (out / "config.yaml").is_file():
            raise ConfigError(f"--resume: {out} holds no search to continue (no driver.pt / "
                              "config.yaml); check --out")
        saved = read_yaml(out / "config.yaml")
        over = _overrides(args)
        allowed = {"workers", "address", "budget", "cpus_per_trial", "gpus_per_trial", "out"}
        changed = sorted(k for k in over if k not in allowed and over[k] != saved.get(k))
        if changed:
            raise ConfigError(f"--resume keeps the run's settings; {changed[0]!r} cannot change "
                              f"(only {', '.join(sorted(allowed))} can)")
        cfg = nconfig.merge(saved, over, "command line")
    else:
        cfg = nconfig.load_layers("search", args.preset, args.config, _overrides(args))
    settings = resolve(cfg)
    if not cfg.get("name"):
        cfg["name"] = _run_name(cfg)
    out = Path(cfg["out"] or Path("runs") / cfg["name"])
    cfg["out"] = str(out)
    if not args.resume and (out / "driver.pt").exists():
        raise ConfigError(f"{out} already holds a search; continue it with --resume --out {out}, "
                          "or choose another --out")

    # Everything below is heavy: load it only once the settings are known to be good.
    import numpy as np

    from controller import Proposal, make_strategy
    from nas import tune_adapter as ta
    from nas.data import load_splits
    from nas.driver import ChildDriver
    from nas.runlog import Progress, TensorBoardLog, pareto_front, plot_front, save_specs, write_tables
    from nas.units import format_macs
    from search_space import SearchSpace

    space_path = Path(cfg["space"]) if Path(cfg["space"]).is_file() else \
        __import__("nas").config_path(cfg["space"])
    space = SearchSpace.from_yaml(space_path)
    reference = load_spec(cfg["reference"]) if cfg.get("reference") else None
    d = cfg["data"]
    data = load_splits(d["source"], d.get("path"), val_size=d["val_size"], seed=d["seed"],
                       image_size=d.get("image_size"))
    strategy = make_strategy(cfg["strategy"], space.sizes(), seed=settings["seed"],
                             **cfg["strategy_options"])
    driver = ChildDriver(lambda tokens: (space.decode(tokens), {}), strategy,
                         budget=settings["budget"], reward=settings["reward"],
                         target=settings["target"], reference=reference)
    out.mkdir(parents=True, exist_ok=True)
    if args.resume:
        driver.load_state_dict(ta.load_state(out / "driver.pt"), Proposal)
        driver.budget = settings["budget"]
    write_text_atomic(out / "config.yaml", nconfig.dump(cfg))

    provenance = {
        "search": {"run": cfg["name"], "strategy": cfg["strategy"],
                   "space": space.name, "space_hash": space.hash(),
                   "reward": settings["reward"].to_dict(),
                   "target": {"resolution": settings["target"].resolution,
                              "num_classes": settings["target"].num_classes,
                              "in_channels": settings["target"].in_channels},
                   "data": data.name, "proxy": settings["proxy"].to_dict()}}
    tb = TensorBoardLog(out / "tensorboard")
    progress = Progress(settings["budget"], settings["workers"])
    print(f"search {cfg['name']}: {cfg['strategy']} over {space.name} "
          f"({space.size():.2e} architectures), target {format_macs(settings['target_macs'])} MACs, "
          f"{settings['budget']} children, {settings['workers']} workers, data {data.name} "
          f"({len(data.train)} train / {len(data.val)} val)\nrun folder: {out}", flush=True)

    def write_outputs(final: bool) -> None:
        write_tables(driver.records, out)
        best = driver.best(settings["top_k"])
        if best:
            top = [(r, driver.spec_of(r)) for r in best]
            rec, spec = top[0]
            from nas.runlog import record_metrics
            save_spec(spec.replace(name=f"{cfg['name']}-best").with_meta(
                **provenance, metrics=record_metrics(rec)), out / "best.yaml")
            save_specs(top, out / "top", provenance)
            front = pareto_front(driver.trained_records())
            save_specs([(r, driver.spec_of(r)) for r in front], out / "pareto", provenance)
        if final or len(driver.trained_records()) % 10 == 0:
            fig = plot_front(driver.trained_records(), driver.reference_record(),
                             settings["target_macs"], cfg["name"])
            tb.figure(fig, len(driver.trained_records()))
            if final:
                fig.savefig(out / "accuracy_vs_macs.png")
            __import__("matplotlib.pyplot").pyplot.close(fig)

    def on_records(records: list) -> None:
        for r in records:
            tb.child(r, max(r.child, 0))
        tb.diagnostics(driver.pop_diagnostics())
        write_outputs(final=False)
        trained = driver.trained_records()
        best = driver.best(1)
        walls = [r.wall_seconds for r in trained if r.wall_seconds > 0]
        progress.update(len(trained), best[0].reward if best else None,
                        best[0].macs if best else None,
                        sum(1 for r in trained if r.status != "ok"),
                        sum(walls) / len(walls) if walls else None)

    ta.init_ray(cfg.get("address"))
    ta.check_resources(settings["cpus_per_trial"], settings["gpus_per_trial"])
    session = f"session{len(list((out / 'tune').glob('session*'))) if (out / 'tune').exists() else 0}"
    t0 = time.time()
    try:
        if not driver.finished():
            ta.run_trials(driver, data, settings["proxy"], out, session, settings["workers"],
                          settings["cpus_per_trial"], settings["gpus_per_trial"],
                          settings["max_failures"], on_records)
    finally:
        progress.close()
        write_outputs(final=True)
        tb.close()
    summary = _summary(driver, cfg, time.time() - t0)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    if not driver.finished():
        print(f"search stopped after {summary['children_trained']} children; continue it with:\n"
              f"  python search.py --resume --out {out}", file=sys.stderr)
        return 130
    _print_summary(summary, out)
    return 0


def _summary(driver: Any, cfg: dict, seconds: float) -> dict[str, Any]:
    trained = driver.trained_records()
    best = driver.best(1)
    ref = driver.reference_record()
    return {
        "run": cfg["name"], "finished": driver.finished(), "converged_early": driver.converged,
        "children_trained": len(trained),
        "children_failed": sum(1 for r in trained if r.status != "ok"),
        "cached_samples": sum(1 for r in driver.records if r.status == "cached"),
        "session_seconds": round(seconds, 1),
        "children_train_seconds": round(sum(r.seconds for r in trained), 1),
        "best": None if not best else {"child": best[0].child, "reward": best[0].reward,
                                       "accuracy": best[0].accuracy, "macs": best[0].macs,
                                       "params": best[0].params, "blocks": best[0].blocks},
        "reference": None if ref is None else {"reward": ref.reward, "accuracy": ref.accuracy,
                                               "macs": ref.macs, "params": ref.params},
    }


def _print_summary(s: dict[str, Any], out: Path) -> None:
    from nas.units import format_macs
    print(f"done: {s['children_trained']} children ({s['children_failed']} failed) in "
          f"{s['session_seconds']:.0f} s")
    if s["best"]:
        b = s["best"]
        print(f"best child {b['child']}: reward {b['reward']:.4f}, accuracy {b['accuracy']:.4f}, "
              f"{format_macs(b['macs'])} MACs, {b['params'] / 1e6:.2f}M params\n  {b['blocks']}")
    if s["reference"] and s["reference"]["accuracy"] is not None and \
            not math.isnan(s["reference"]["accuracy"]):
        r = s["reference"]
        print(f"EfficientNet-B0 on the same proxy: reward {r['reward']:.4f}, accuracy "
              f"{r['accuracy']:.4f}, {format_macs(r['macs'])} MACs")
    print(f"best spec: {out / 'best.yaml'}   table: {out / 'children.csv'}\n"
          f"TensorBoard: tensorboard --logdir {out / 'tensorboard'}")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed
        return int(e.code or 0)
    try:
        return run(args)
    except NasError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; continue with: python search.py --resume --out DIR", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
