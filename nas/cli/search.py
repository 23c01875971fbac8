"""Search for a baseline network: an RL controller over the MnasNet space, children on Ray Tune.

    python search.py --target-flops 400M                  # the laptop default (~20 min, 2 cores)
    python search.py --target-flops 400M --preset smoke    # under 2 minutes, for trying things
    python search.py --resume --out runs/NAME              # continue an interrupted search

Every child is trained as a proxy (Fashion-MNIST by default) and scored with
``ACC(m) * (MACs(m) / T) ** -0.07``, its MACs counted at the target setting (224x224, 1000
classes). The best child is written to ``OUT/best.yaml``, a spec that ``nas.build_model``
and ``scale.py`` take as it is.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from nas.cli.config import dump
from nas.cli.oneshot import EVALUATOR_FLAGS, add_evaluator_args, evaluator, run_oneshot
from nas.cli.options import (
    TRAINING_FLAGS,
    add_training_args,
    data_settings,
    load_config,
    trial_settings,
)
from nas.cli.parser import EXIT_INTERRUPTED, OneLineParser, run_main
from nas.core.checks import check_int, check_number
from nas.core.errors import ConfigError

PROG = "search.py"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target-flops", metavar="T",
                   help="target multiply-adds at the target setting: 400M, 0.4G or 4e8 "
                        "(the papers' FLOPS are multiply-adds)")
    p.add_argument("--strategy", help="ppo (default) | reinforce | random | evolution")
    p.add_argument("--budget", type=int, help="number of children to train")
    p.add_argument("--space", help="search-space YAML or bundled name (default mnasnet-space)")
    add_training_args(p)
    add_evaluator_args(p)
    return p


FLAGS = {**TRAINING_FLAGS, "target_flops": "target_flops", "strategy": "strategy",
         "budget": "budget", "space": "space", **EVALUATOR_FLAGS}


def settings(cfg: dict[str, Any]) -> Any:
    """Check every setting of a search config and build its typed settings (names and the
    run folder filled in)."""
    from controller import STRATEGIES
    from nas.arch.units import format_macs, parse_macs
    from nas.search.driver import Target
    from nas.search.reward import RewardConfig
    from nas.search.settings import SearchSettings

    if cfg.get("target_flops") in (None, ""):
        raise ConfigError("--target-flops is required, e.g. --target-flops 400M")
    target_macs = parse_macs(cfg["target_flops"], "--target-flops")
    if cfg["strategy"] not in STRATEGIES:
        raise ConfigError(f"--strategy {cfg['strategy']!r}: use one of {', '.join(STRATEGIES)}")
    if not isinstance(cfg["strategy_options"], dict):
        raise ConfigError("strategy_options: expected a mapping")
    r = cfg["reward"]
    reward = RewardConfig(target_macs=target_macs, form=r["form"],
                          w=check_number(r["w"], "reward.w"),
                          failure_reward=check_number(r["failure_reward"], "reward.failure_reward"),
                          on_timeout=r["on_timeout"],
                          beta=check_number(r.get("beta", -0.1), "reward.beta"))
    t = cfg["target"]
    target = Target(*(check_int(t[k], f"target.{k}", 1)
                      for k in ("resolution", "num_classes", "in_channels")))
    trials = trial_settings(cfg)
    seed = check_int(cfg["seed"], "seed", 0)
    if not cfg.get("name"):
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        cfg["name"] = f"{cfg['strategy']}-{format_macs(target_macs)}-{stamp}"
    out = Path(cfg["out"] or Path("runs") / cfg["name"])
    cfg["out"] = str(out)
    return SearchSettings(
        name=cfg["name"], out=out, seed=seed, target_macs=target_macs, reward=reward,
        target=target, strategy=cfg["strategy"], strategy_options=dict(cfg["strategy_options"]),
        space=cfg["space"], budget=check_int(cfg["budget"], "budget", 1),
        top_k=check_int(cfg["top_k"], "top_k", 1), reference=cfg.get("reference") or None,
        trials=trials, data=data_settings(cfg))


def run(args: argparse.Namespace) -> int:
    from nas.search.run import search, summary_lines

    cfg = load_config(args, "search", FLAGS)
    s = settings(cfg)
    if evaluator(cfg) == "oneshot":
        return run_oneshot(args, cfg, s, PROG)
    outcome = search(s, args.resume, dump(cfg))
    if not outcome.finished:
        print(f"search stopped after {outcome.summary['children_trained']} children; continue "
              f"it with:\n  python {PROG} --resume --out {s.out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print("\n".join(summary_lines(outcome.summary, s.out)))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(run, build_parser(), argv, f"python {PROG} --resume --out DIR")
