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
    check_out,
    data_settings,
    load_config,
    trial_settings,
)
from nas.cli.parser import (
    EXIT_INTERRUPTED,
    OneLineParser,
    command_name,
    note_run_folder,
    run_main,
)
from nas.core import runs
from nas.core.checks import (
    MAX_SEED,
    check_duration,
    check_int,
    check_number,
    check_resolution,
)
from nas.core.errors import ConfigError, NoResultError

PROG = "search.py"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target-flops", metavar="T",
                   help="target multiply-adds at the target setting: 400M, 0.4G or 4e8 "
                        "(the papers' FLOPS are multiply-adds)")
    p.add_argument("--strategy", help="ppo (default) | reinforce | random | evolution | tpe | "
                                      "nsga2 (tpe and nsga2 need optuna)")
    p.add_argument("--budget", type=int, help="number of children to train")
    p.add_argument("--time-budget", metavar="TIME",
                   help="wall time after which no new child starts, e.g. 30m, 2h, 90s "
                        "(children in training finish; default: none)")
    p.add_argument("--space", help="search-space YAML or bundled name (default mnasnet-space)")
    p.add_argument("--force", action="store_true",
                   help="take a target under 1M or over 1P MACs, or a resolution over "
                        "4096 px, that is otherwise refused as a likely typo")
    add_training_args(p)
    add_evaluator_args(p)
    return p


FLAGS = {**TRAINING_FLAGS, "target_flops": "target_flops", "strategy": "strategy",
         "budget": "budget", "time_budget": "time_budget", "space": "space", **EVALUATOR_FLAGS}


def _plan(cfg: dict[str, Any]) -> list[tuple[str, Any, None]]:
    """What the workers will build, for a dry run: the reference and the space's extremes
    (every decision at its first and at its last choice), at the proxy's resolution."""
    from nas.arch.io import load_spec
    from nas.core.files import config_path
    from search_space import SearchSpace

    space = cfg["space"]
    if not isinstance(space, str) or not space:
        raise ConfigError(f"space: got {space!r}; give a search-space YAML or a bundled name "
                          "such as mnasnet-space")
    space = SearchSpace.from_yaml(space if Path(space).is_file() else config_path(space))
    sizes = space.sizes()
    plan = [("the space's first choices", space.decode(tuple(0 for _ in sizes)), None),
            ("the space's last choices", space.decode(tuple(n - 1 for n in sizes)), None)]
    if cfg.get("reference"):
        plan.append((f"the reference {cfg['reference']}", load_spec(cfg["reference"]), None))
    return plan


def settings(cfg: dict[str, Any], force: bool = False) -> Any:
    """Check every setting of a search config and build its typed settings (names and the
    run folder filled in). ``force`` takes a target MACs or resolution that looks like a
    typo (see :func:`nas.arch.units.check_plausible_macs`)."""
    from controller import STRATEGIES, check_available
    from nas.arch.units import check_plausible_macs, format_macs, parse_macs
    from nas.search.driver import Target
    from nas.search.recheck import RecheckSettings
    from nas.search.reward import RewardConfig
    from nas.search.settings import SearchSettings, check_proxy_plan

    if cfg.get("target_flops") in (None, ""):
        raise ConfigError("--target-flops is required, e.g. --target-flops 400M")
    target_macs = check_plausible_macs(parse_macs(cfg["target_flops"], "--target-flops"),
                                       cfg["target_flops"], "--target-flops", force)
    if cfg["strategy"] not in STRATEGIES:
        raise ConfigError(f"--strategy {cfg['strategy']!r}: use one of {', '.join(STRATEGIES)}")
    check_available(cfg["strategy"])
    if not isinstance(cfg["strategy_options"], dict):
        raise ConfigError("strategy_options: expected a mapping")
    r = cfg["reward"]
    reward = RewardConfig(target_macs=target_macs, form=r["form"],
                          w=check_number(r["w"], "reward.w"),
                          failure_reward=check_number(r["failure_reward"], "reward.failure_reward"),
                          on_timeout=r["on_timeout"],
                          on_stopped=r.get("on_stopped", "partial"),
                          beta=check_number(r.get("beta", -0.1), "reward.beta"))
    t = cfg["target"]
    check_resolution(t["resolution"], "target.resolution", force)
    target = Target(*(check_int(t[k], f"target.{k}", 1)
                      for k in ("resolution", "num_classes", "in_channels")))
    trials = trial_settings(cfg)
    if trials.recipe.resolution is not None:
        check_resolution(trials.recipe.resolution, "proxy.resolution", force)
    if isinstance(cfg.get("data"), dict) and cfg["data"].get("image_size") is not None:
        check_resolution(cfg["data"]["image_size"], "data.image_size", force, minimum=1)
    check_proxy_plan(trials.recipe, _plan(cfg), "the proxy settings (proxy.resolution, "
                     "proxy.width_mult)")
    seed = check_int(cfg["seed"], "seed", 0, MAX_SEED)
    if not cfg.get("name"):
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        cfg["name"] = f"{cfg['strategy']}-{format_macs(target_macs)}-{stamp}"
    out = Path(cfg["out"] or Path("runs") / cfg["name"])
    check_out(out)
    cfg["out"] = str(out)
    return SearchSettings(
        name=cfg["name"], out=out, seed=seed, target_macs=target_macs, reward=reward,
        target=target, strategy=cfg["strategy"], strategy_options=dict(cfg["strategy_options"]),
        space=cfg["space"], budget=check_int(cfg["budget"], "budget", 1),
        top_k=check_int(cfg["top_k"], "top_k", 1), reference=cfg.get("reference") or None,
        trials=trials, data=data_settings(cfg),
        time_budget=check_duration(cfg.get("time_budget"), "time_budget (--time-budget)"),
        recheck=RecheckSettings.from_config(cfg.get("recheck")))


def execute(args: argparse.Namespace) -> Any:
    """The search that flags (a parsed namespace) ask for, run to its end or to Ctrl-C: the
    one code path of this command and of ``nas.run_search``. Returns the
    :class:`~nas.search.run.SearchOutcome`; bad input raises a :class:`ConfigError` before
    anything is written, a finished search with no successful child a
    :class:`NoResultError`."""
    from nas.search.run import no_success_line, search

    cfg = load_config(args, "search", FLAGS)
    # A resumed run's settings were taken when it started (with --force, if it needed it).
    s = settings(cfg, bool(getattr(args, "force", False) or args.resume))
    note_run_folder(s.out)
    runs.claim(s.out, "oneshot" if evaluator(cfg) == "oneshot" else "search", args.resume)
    if evaluator(cfg) == "oneshot":
        outcome = run_oneshot(args, cfg, s)
    else:
        outcome = search(s, args.resume, dump(cfg))
    if outcome.finished and outcome.summary["best"] is None:
        raise NoResultError(no_success_line(outcome.summary, s.out))
    return outcome


def run(args: argparse.Namespace) -> int:
    from nas.search import oneshot, run as multi_trial

    outcome = execute(args)
    lines = (oneshot if "supernet" in outcome.summary else multi_trial).summary_lines
    if not outcome.finished:
        print(f"search stopped after {outcome.summary.get('children_trained', 0)} children; continue "
              f"it with:\n  {command_name(f'python {PROG}')} --resume --out {outcome.out}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print("\n".join(lines(outcome.summary, outcome.out)))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(run, build_parser(), argv, f"python {PROG} --resume --out DIR")
