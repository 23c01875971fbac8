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
from pathlib import Path
from typing import Any

from nas.cli.parser import OneLineParser, note_run_folder, positive_int, run_main
from nas.core import runs
from nas.core.errors import ConfigError

PROG = "effnas fidelity"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="a search's run folder")
    p.add_argument("--children", type=positive_int, default=12,
                   help="children to compare, spread over the run's proxy ranking (default 12)")
    p.add_argument("--seeds", type=positive_int, default=2,
                   help="seeds of the long schedule per child (default 2)")
    p.add_argument("--long", default="train-default+width_mult=0.5", metavar="RECIPE",
                   help="the long schedule (default train-default+width_mult=0.5: the default "
                        "training recipe at the proxy's width)")
    p.add_argument("--epochs", type=positive_int, help="epochs of the long schedule")
    p.add_argument("--proxies", default="run", metavar="LIST",
                   help="comma-separated recipes to compare (default run: the search's own)")
    p.add_argument("--proxy-seeds", type=positive_int, default=1,
                   help="seeds per child of each proxy trained here (default 1)")
    p.add_argument("--no-reference", action="store_true",
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
    return p


def recipe_from(text: str, option: str) -> Any:
    """``name[+KEY=VALUE...]`` -> a checked Recipe."""
    from nas.cli.config import parse_set, proxy_mapping
    from nas.training.recipe import Recipe

    name, *changes = text.split("+")
    if not name:
        raise ConfigError(f"{option} {text!r}: start with a recipe's name or path, e.g. "
                          "proxy-default+epochs=4")
    base = proxy_mapping(name, option)
    for change in changes:
        if "=" not in change:
            raise ConfigError(f"{option} {text!r}: {change!r} is not KEY=VALUE")
        base.update(parse_set([change]))
    return Recipe.from_dict(base, source=f"{option} {text}")


def _load_run(run: Path) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    from nas.core.files import read_yaml
    from nas.search import tune_adapter as ta

    if not (run / "config.yaml").is_file() or not (run / "driver.pt").is_file():
        raise ConfigError(f"{run}: not a search's run folder (config.yaml and driver.pt "
                          "expected); pass the --out folder of a search")
    cfg = read_yaml(run / "config.yaml")
    if not isinstance(cfg, dict) or "target_flops" not in cfg:
        raise ConfigError(f"{run}: its config.yaml is not a search's; pass a search's run folder")
    from nas.cli.search import settings as search_settings
    settings = search_settings(dict(cfg), force=True)  # the search took its settings
    try:
        state = ta.load_state(run / "driver.pt")
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file
        raise ConfigError(f"{run / 'driver.pt'}: cannot be read ({type(e).__name__}); is the "
                          "run folder complete?") from None
    return cfg, settings, state


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from nas.arch.cost import count_macs
    from nas.arch.io import load_spec
    from nas.arch.spec import spec_from_dict
    from nas.core.files import config_path
    from nas.search.driver import REFERENCE, ChildRecord
    from nas.search.fidelity import (
        RUN_PROXY,
        FidelitySettings,
        Picked,
        markdown,
        partial_report,
        pick_children,
        run_fidelity,
    )
    from search_space import SearchSpace

    run_dir = Path(args.run)
    note_run_folder(run_dir)  # Ctrl-C's hint names it
    out = Path(args.out) if args.out else run_dir / "fidelity"
    # Its own folder (by default a sub-folder of the search's): never the search's files.
    runs.claim(out, "fidelity", args.resume or (args.report and out.exists()))
    long = recipe_from(args.long, "--long")
    if args.epochs is not None:
        long = long.replace(epochs=args.epochs, warmup_epochs=min(long.warmup_epochs,
                                                                  args.epochs / 10))
    proxies = []
    for text in [t.strip() for t in args.proxies.split(",") if t.strip()]:
        if text != RUN_PROXY:
            proxies.append((text, recipe_from(text, "--proxies")))
    if len({name for name, _ in proxies}) != len(proxies):
        raise ConfigError("--proxies: a recipe is listed twice; list each once")
    cfg, search, state = _load_run(run_dir)
    trials = search.trials
    for flag, key in (("workers", "workers"), ("cpus_per_trial", "cpus_per_trial"),
                      ("gpus_per_trial", "gpus_per_trial"), ("address", "address")):
        if getattr(args, flag) is not None:
            trials = replace(trials, **{key: getattr(args, flag)})
    space = SearchSpace.from_yaml(search.space if Path(search.space).is_file()
                                  else config_path(search.space))
    records = [ChildRecord.from_dict(r) for r in state["records"]]
    chosen = pick_children(records, args.children)
    if len(chosen) < 3:
        raise ConfigError(f"{run_dir}: only {len(chosen)} children trained successfully; "
                          "fidelity needs at least 3 (run the search longer)")
    picked = [Picked(f"child{r.child}", space.decode(r.tokens), r.accuracy, r.macs, r.blocks)
              for r in chosen]
    ref = next((r for r in records if r.status == REFERENCE), None)
    if not args.no_reference and ref is not None and ref.accuracy == ref.accuracy:
        spec = (spec_from_dict(state["reference"]) if state.get("reference")
                else load_spec(cfg["reference"]))
        picked.append(Picked("reference", spec, ref.accuracy, count_macs(spec), ref.blocks))
    s = FidelitySettings(run=run_dir, out=out, children=args.children, seeds=args.seeds,
                         long=long, proxies=tuple(proxies), proxy_seeds=args.proxy_seeds,
                         run_seed=search.seed, trials=trials, data=search.data,
                         include_reference=not args.no_reference)
    say = lambda line: print(line, flush=True)  # noqa: E731
    if args.report:
        if not (out / "driver.pt").is_file():
            raise ConfigError(f"{out}: no trainings saved yet; run without --report first "
                              "(with the same options)")
        report = partial_report(s, picked, say)
        if report is None:
            return 1
    else:
        report = run_fidelity(s, picked, args.resume, say)
    print("\n" + markdown(report))
    print(f"wrote {out}/: fidelity.md, fidelity.json, fidelity.csv, fidelity.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(run, build_parser(), argv, f"{PROG} DIR --resume")

