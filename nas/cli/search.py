"""Search for a baseline network: an RL controller over the MnasNet space, children on Ray Tune.

    python search.py --target-flops 400M                  # the laptop default (~12 min, 2 cores)
    python search.py --target-flops 400M --preset smoke    # under 2 minutes, for trying things
    python search.py --target-latency 15ms                 # at a latency on this machine
    python search.py --resume --out runs/NAME              # continue an interrupted search

Every child is trained as a proxy (Fashion-MNIST by default) and scored with
``ACC(m) * (MACs(m) / T) ** -0.07``, its MACs counted at the target setting (224x224, 1000
classes). The best child is written to ``OUT/best.yaml``, a spec that ``nas.build_model``
and ``scale.py`` take as it is.

With ``--target-latency`` the cost is the child's latency on this machine instead, batch 1 at
the target setting (MnasNet's ``ACC(m) * (LAT(m) / T) ** w``), predicted from the device's
latency table for the space; the table is built before the search starts (once per device
and space: ``effnas latency --build-table`` builds the same one) or taken from
``--latency-table``, and copied into the run folder. ``--target-flops`` given too caps the
MACs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nas.cli import jobs
from nas.cli.parser import (
    EXIT_INTERRUPTED,
    OneLineParser,
    add_run_args,
    command_name,
    note_run_folder,
    overrides,
    run_main,
)

PROG = "search.py"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target-flops", metavar="T",
                   help="target multiply-adds at the target setting: 400M, 0.4G or 4e8 "
                        "(the papers' FLOPS are multiply-adds)")
    p.add_argument("--target-latency", metavar="T",
                   help="search at a latency instead: 15ms, 800us or 0.2s, batch 1 at the "
                        "target setting on this machine (predicted from its latency table; "
                        "with --target-flops, the MACs are capped too)")
    p.add_argument("--latency-table", metavar="FILE",
                   help="a latency table built on another device (effnas latency "
                        "--build-table); default: this machine's, built or read from its cache")
    p.add_argument("--strategy", help="ppo (default) | reinforce | random | evolution | tpe | "
                                      "nsga2 (tpe and nsga2 need optuna)")
    p.add_argument("--budget", type=int, help="number of children to train")
    p.add_argument("--time-budget", metavar="TIME",
                   help="wall time after which no new child starts, e.g. 30m, 2h, 90s "
                        "(children in training finish; default: none)")
    p.add_argument("--space", help="search-space YAML or bundled name (default mnasnet-space)")
    p.add_argument("--force", action="store_true",
                   help="take a target under 1M or over 1P MACs, a latency under 10us or over "
                        "10s, or a resolution over 4096 px, that is otherwise refused as a "
                        "likely typo")
    add_run_args(p)
    p.add_argument("--evaluator", help="proxy (default): every child trained as a proxy on Ray "
                                       "Tune | oneshot: a weight-sharing supernet on Ray Train, "
                                       "then its top-k trained as proxies")
    p.add_argument("--gpus-per-worker", type=float,
                   help="GPUs per Ray Train worker of the supernet (--evaluator oneshot)")
    return p


# Each flag's setting (the keys of nas.search.settings.SearchSettings; --set takes any key).
KEYS = {"target_flops": "target_flops", "target_latency": "target_latency",
        "latency_table": "latency_table", "strategy": "strategy", "budget": "budget",
        "time_budget": "time_budget", "space": "space", "workers": "workers",
        "cpus_per_trial": "cpus_per_trial", "gpus_per_trial": "gpus_per_trial",
        "address": "address", "data": "data.path", "dataset": "data.source", "seed": "seed",
        "name": "name", "out": "out", "evaluator": "evaluator",
        "gpus_per_worker": "oneshot.gpus_per_worker"}


def execute(args: argparse.Namespace) -> Any:
    """The search that flags (a parsed namespace) ask for, on the one code path of this
    command and of ``nas.run_search`` (:func:`nas.cli.jobs.search`)."""
    from nas.search.settings import SearchSettings

    over = overrides(args, KEYS)
    if args.resume:
        jobs.no_layers(args.preset, args.config)
        s = jobs.saved_settings(SearchSettings, args.out, ("search", "oneshot"), over,
                                jobs.SEARCH_RESUMABLE, "search")
    else:
        s = jobs.settings(SearchSettings, preset=args.preset, config=args.config,
                          overrides=over)
    return jobs.search(s, resume=args.resume, force=args.force, on_folder=note_run_folder)


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
    return run_main(run, build_parser(), argv, f"python {PROG} --resume --out DIR", KEYS)
