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
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from nas.cli import (TRAINING_FLAGS, OneLineParser, add_training_args, check_int, load_config,
                     load_data, run_main, train_children, training_settings)
from nas.config import dump
from nas.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="search.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target-flops", metavar="T",
                   help="target multiply-adds at the target setting: 400M, 0.4G or 4e8 "
                        "(the papers' FLOPS are multiply-adds)")
    p.add_argument("--strategy", help="ppo (default) | reinforce | random | evolution")
    p.add_argument("--budget", type=int, help="number of children to train")
    p.add_argument("--space", help="search-space YAML or bundled name (default mnasnet-space)")
    add_training_args(p)
    return p


FLAGS = {**TRAINING_FLAGS, "target_flops": "target_flops", "strategy": "strategy",
         "budget": "budget", "space": "space"}


def resolve(cfg: dict[str, Any]) -> dict[str, Any]:
    """Check every setting and build the typed objects the run needs."""
    from controller import STRATEGIES
    from nas.driver import Target
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
        check_int(t, k, 1)
    return {**training_settings(cfg), "target_macs": target_macs, "reward": reward,
            "target": Target(t["resolution"], t["num_classes"], t["in_channels"]),
            "budget": check_int(cfg, "budget", 1), "top_k": check_int(cfg, "top_k", 1)}


def _run_name(cfg: dict[str, Any]) -> str:
    from nas.units import format_macs, parse_macs
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{cfg['strategy']}-{format_macs(parse_macs(cfg['target_flops']))}-{stamp}"


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args, "search", FLAGS)
    settings = resolve(cfg)
    if not cfg.get("name"):
        cfg["name"] = _run_name(cfg)
    out = Path(cfg["out"] or Path("runs") / cfg["name"])
    cfg["out"] = str(out)
    if args.resume and not (out / "driver.pt").is_file():
        raise ConfigError(f"--resume: {out} holds no search to continue (no driver.pt); check --out")
    if not args.resume and (out / "driver.pt").exists():
        raise ConfigError(f"{out} already holds a search; continue it with --resume --out {out}, "
                          "or choose another --out")

    # Everything below is heavy: load it only once the settings are known to be good.
    from controller import Proposal, make_strategy
    from nas import tune_adapter as ta
    from nas.driver import ChildDriver
    from nas.io import config_path, load_spec, save_spec, write_text_atomic
    from nas.runlog import pareto_front, plot_front, record_metrics, save_specs
    from nas.units import format_macs
    from search_space import SearchSpace

    space = SearchSpace.from_yaml(cfg["space"] if Path(cfg["space"]).is_file()
                                  else config_path(cfg["space"]))
    reference = load_spec(cfg["reference"]) if cfg.get("reference") else None
    data = load_data(cfg)
    strategy = make_strategy(cfg["strategy"], space.sizes(), seed=settings["seed"],
                             **cfg["strategy_options"])
    driver = ChildDriver(lambda tokens: (space.decode(tokens), {}), strategy,
                         budget=settings["budget"], reward=settings["reward"],
                         target=settings["target"], reference=reference)
    out.mkdir(parents=True, exist_ok=True)
    if args.resume:
        driver.load_state_dict(ta.load_state(out / "driver.pt"), Proposal)
        driver.budget = settings["budget"]
    write_text_atomic(out / "config.yaml", dump(cfg))

    provenance = {
        "search": {"run": cfg["name"], "strategy": cfg["strategy"],
                   "space": space.name, "space_hash": space.hash(),
                   "reward": settings["reward"].to_dict(),
                   "target": {"resolution": settings["target"].resolution,
                              "num_classes": settings["target"].num_classes,
                              "in_channels": settings["target"].in_channels},
                   "data": data.name, "proxy": settings["proxy"].to_dict()}}
    print(f"search {cfg['name']}: {cfg['strategy']} over {space.name} "
          f"({space.size():.2e} architectures), target {format_macs(settings['target_macs'])} MACs, "
          f"{settings['budget']} children, {settings['workers']} workers, data {data.name} "
          f"({len(data.train)} train / {len(data.val)} val)\nrun folder: {out}", flush=True)

    def write_outputs(tb: Any, final: bool) -> None:
        best = driver.best(settings["top_k"])
        if best:
            top = [(r, driver.spec_of(r)) for r in best]
            rec, spec = top[0]
            save_spec(spec.replace(name=f"{cfg['name']}-best").with_meta(
                **provenance, metrics=record_metrics(rec)), out / "best.yaml")
            save_specs(top, out / "top", provenance)
            front = pareto_front(driver.trained_records())
            save_specs([(r, driver.spec_of(r)) for r in front], out / "pareto", provenance)
        trained = driver.trained_records()
        if final or (trained and len(trained) % 10 == 0):
            import matplotlib.pyplot as plt
            fig = plot_front(trained, driver.reference_record(), settings["target_macs"],
                             cfg["name"])
            tb.figure(fig, len(trained))
            if final:
                fig.savefig(out / "accuracy_vs_macs.png")
            plt.close(fig)

    t0 = time.time()
    train_children(driver, data, settings, out, cfg.get("address"), settings["budget"],
                   write_outputs)
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
        "children_seconds": round(sum(r.seconds for r in trained), 1),
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
    return run_main(run, build_parser(), argv, "search.py")


if __name__ == "__main__":
    sys.exit(main())
