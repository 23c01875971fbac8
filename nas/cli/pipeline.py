"""From data to trained models in one command: search a baseline, fit the scaling
coefficients, emit the family, train the chosen models fully, and write a report.

    effnas pipeline --target-flops 400M --budgets 600M,1.2G
    effnas pipeline --target-flops 400M --budgets 600M,1.2G --preset smoke
    effnas pipeline --target-flops 400M --budgets 600M --coefficients 1.2,1.1,1.15 \\
        --references efficientnet-b0,mnasnet-a1 --seeds 0,1,2 --compare
    effnas pipeline --resume --out runs/NAME      # after Ctrl-C, kill -9 or a crash

Stages, each in its own folder of the run folder (--out, default runs/pipeline-TIME):
search/ (search.py's run), scale/ (the grid, --compare, the family's specs), train/MODEL/
seedS/ (a full training run: last.pt, best.pt, metrics.json, model.pt), report/
(report.md, accuracy_vs_macs.png). pipeline.json records what each stage did; --resume skips
what is done and continues the rest (a model cut off mid-training from its last.pt).

Settings: configs/pipeline.yaml (its search and scale sections take search.py's and
scale.py's keys), a --preset (smoke: every stage on tiny data in a few minutes), --config
YAML, the flags, then --set KEY=VALUE (e.g. --set train.epochs=30).
"""

from __future__ import annotations

import argparse
import shlex
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
from nas.core.errors import ConfigError

PROG = "effnas pipeline"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target-flops", metavar="T",
                   help="the search's target multiply-adds: 400M, 0.4G or 4e8")
    p.add_argument("--budgets", metavar="LIST",
                   help="the family's budgets, e.g. 600M,1.2G (each member within 3 %%)")
    p.add_argument("--baseline", metavar="SPEC",
                   help="scale this spec instead of searching (the search stage is not run)")
    p.add_argument("--coefficients", metavar="A,B,G",
                   help="use these alpha,beta,gamma instead of fitting them on the grid")
    p.add_argument("--compare", action="store_true",
                   help="also train the width-, depth- and resolution-only scalings (proxy)")
    p.add_argument("--family", metavar="RULE",
                   help="also emit B1-B7 by this rule: budget | paper | official")
    p.add_argument("--members", metavar="LIST",
                   help="family members to train: budgets as given (600M), b1..b7, budgets, "
                        "family (default: every budget member)")
    p.add_argument("--references", metavar="LIST",
                   help="reference specs trained the same way, e.g. "
                        "efficientnet-b0,mnasnet-a1,mobilenetv2")
    p.add_argument("--seeds", metavar="LIST", help="train each model once per seed, e.g. 0,1,2")
    p.add_argument("--epochs", type=int, help="epochs of full training (default 10)")
    p.add_argument("--force", action="store_true",
                   help="take a target or budget under 1M or over 1P MACs, or a resolution "
                        "over 4096 px, that is otherwise refused as a likely typo")
    add_run_args(p, set_example="search.proxy.epochs=2")
    return p


# Each flag's setting (the keys of nas.search.settings.PipelineSettings; --set takes any key).
KEYS = {"target_flops": "target_flops", "budgets": "budgets", "baseline": "baseline",
        "coefficients": "scale.coefficients", "compare": "scale.compare",
        "family": "scale.rule", "members": "train.members", "references": "train.references",
        "seeds": "train.seeds", "epochs": "train.epochs", "workers": "workers",
        "cpus_per_trial": "cpus_per_trial", "gpus_per_trial": "gpus_per_trial",
        "address": "address", "data": "data.path", "dataset": "data.source", "seed": "seed",
        "name": "name", "out": "out"}


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _values(args: argparse.Namespace) -> argparse.Namespace:
    """The flags whose text is a list, as lists (a copy of ``args``)."""
    ns = argparse.Namespace(**vars(args))
    for key in ("budgets", "members", "references"):
        if getattr(ns, key) is not None:
            setattr(ns, key, _list(getattr(ns, key)))
    if ns.coefficients is not None:
        try:
            ns.coefficients = [float(x) for x in ns.coefficients.split(",")]
        except ValueError:
            raise ConfigError(f"--coefficients {ns.coefficients!r}: expected A,B,G such as "
                              "1.2,1.1,1.15") from None
    if ns.seeds is not None:
        try:
            ns.seeds = [int(x) for x in _list(ns.seeds)]
        except ValueError:
            raise ConfigError(f"--seeds {ns.seeds!r}: expected whole numbers such as "
                              "0,1,2") from None
    return ns


def cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The command line as the settings' overrides (``--family RULE`` is ``scale.family``
    and ``scale.rule``)."""
    over = overrides(_values(args), KEYS, switches=("compare",))
    if args.family is not None:
        over.setdefault("scale", {})["family"] = True
    return over


def execute(args: argparse.Namespace, command: str) -> Any:
    """The pipeline that flags (a parsed namespace) ask for, on the one code path of this
    command and of ``nas.run_pipeline`` (:func:`nas.cli.jobs.pipeline`)."""
    from nas.search.settings import PipelineSettings

    over = cli_overrides(args)
    if args.resume:
        jobs.no_layers(args.preset, args.config)
        s = jobs.pipeline_resumed({**over, "out": args.out} if args.out else over)
    else:
        s = jobs.settings(PipelineSettings, preset=args.preset, config=args.config,
                          overrides=over)
    return jobs.pipeline(s, resume=args.resume, force=args.force, command=command,
                         on_folder=note_run_folder)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "nas.cli.effnas",
                                                "pipeline", *argv])
    outcome = execute(args, command)
    if not outcome.finished:
        print(f"\npipeline stopped in the {outcome.stage} stage; continue it with:\n  "
              f"{command_name(PROG)} --resume --out {outcome.out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"pipeline done: report {outcome.report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_main(lambda ns: run(ns, argv), build_parser(), argv,
                    f"{PROG} --resume --out DIR", KEYS)
