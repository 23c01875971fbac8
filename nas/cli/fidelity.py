"""Measure how well a proxy ranks a search's children: train a spread of them (by proxy rank,
plus the reference network) with a long schedule for several seeds, and with every proxy to
compare, on the Ray workers; report Kendall's tau and Spearman's rho with bootstrap
intervals, the top-k overlap, minutes per child and a picture.

    effnas fidelity runs/NAME                                  # 12 children, 2 seeds
    effnas fidelity runs/NAME --children 12 --epochs 10 --seeds 3
    effnas fidelity runs/NAME --proxies proxy-default,proxy-default+epochs=4
    effnas fidelity runs/NAME --resume                         # after Ctrl-C
    effnas fidelity runs/NAME --report      # same options: report what has finished

A recipe is a bundled config's name or a YAML path, optionally followed by ``+KEY=VALUE``
changes (``proxy-default+epochs=1+train_subset=20000``). ``run`` in ``--proxies`` stands for
the accuracies the search itself measured. Results go to RUN/fidelity (or --out): the
trainings' table and driver state, fidelity.md / .json / .csv and fidelity.png.
"""

from __future__ import annotations

import argparse

from nas.cli import jobs
from nas.cli.parser import (
    OneLineParser,
    add_layer_args,
    note_run_folder,
    overrides,
    positive_int,
    run_main,
)

PROG = "effnas fidelity"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="a search's run folder")
    p.add_argument("--children", type=positive_int,
                   help="children to compare, spread over the run's proxy ranking (default 12)")
    p.add_argument("--seeds", type=positive_int,
                   help="seeds of the long schedule per child (default 2)")
    p.add_argument("--long", metavar="RECIPE",
                   help="the long schedule (default train-default+width_mult=0.5: the default "
                        "training recipe at the proxy's width)")
    p.add_argument("--epochs", type=positive_int, help="epochs of the long schedule")
    p.add_argument("--proxies", metavar="LIST",
                   help="comma-separated recipes to compare (default run: the search's own)")
    p.add_argument("--proxy-seeds", type=positive_int,
                   help="seeds per child of each proxy trained here (default 1)")
    p.add_argument("--no-reference", action="store_false", dest="reference", default=None,
                   help="leave out the run's reference network")
    p.add_argument("--workers", type=positive_int, help="trainings at the same time (default: "
                                                        "the run's)")
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per training (default: the run's)")
    p.add_argument("--gpus-per-trial", type=float, help="GPUs per training (default: the run's)")
    p.add_argument("--address", help="join an existing Ray cluster")
    p.add_argument("--out", metavar="DIR", help="results folder (default RUN/fidelity)")
    p.add_argument("--resume", action="store_true", help="continue where it stopped")
    p.add_argument("--report", action="store_true",
                   help="write the report over the networks finished so far in the results "
                        "folder and train nothing (safe while a run is going on)")
    add_layer_args(p, None, "children=6")
    return p


# Each flag's setting (the keys of nas.search.settings.FidelitySettings; --set takes any key).
KEYS = {k: k for k in ("run", "children", "seeds", "long", "epochs", "proxies", "proxy_seeds",
                       "reference", "workers", "cpus_per_trial", "gpus_per_trial", "address",
                       "out")}


def run(args: argparse.Namespace) -> int:
    from nas.search.settings import FidelitySettings

    over = overrides(args, KEYS)
    if isinstance(over.get("proxies"), str):
        over["proxies"] = [t.strip() for t in over["proxies"].split(",") if t.strip()]
    s = jobs.settings(FidelitySettings, config=args.config, overrides=over)
    result = jobs.fidelity(s, resume=args.resume, report=args.report,
                           on_folder=note_run_folder)
    if result.report is None:
        return 1
    print("\n" + (result.markdown or ""))
    print(f"wrote {result.out}/: fidelity.md, fidelity.json, fidelity.csv, fidelity.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(run, build_parser(), argv, f"{PROG} DIR --resume", KEYS)
