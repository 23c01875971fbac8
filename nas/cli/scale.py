"""Scale a baseline into a model family (EfficientNet section 3.3).

    python scale.py --grid --phi 1                 # fit alpha, beta, gamma on proxy training (Ray)
    python scale.py --rule official                # B1-B7 from the published coefficient table
    python scale.py --coefficients 1.2,1.1,1.15    # B1-B7 from given coefficients (no training)
    python scale.py --target-flops 2G              # one model at a custom budget
    python scale.py --budgets 600M,1.2G,2.5G       # a custom-budget family
    python scale.py --budgets 5ms,10ms,20ms        # a family at latency budgets, measured here
    python scale.py --compare                      # width-, depth-, resolution-only at equal MACs

The baseline is --baseline, else the newest search's best.yaml under runs/, else
EfficientNet-B0. Coefficients come from --grid, --coefficients, --scaling FILE, the run
folder's scaling.yaml, or else the paper's (1.2, 1.1, 1.15); every file says which.
Settings: configs/scale.yaml, a --preset, --config YAML, the flags, then --set KEY=VALUE.
Family rules: budget (each Bk at the published Bk's MACs ratio to B0; default), paper
(phi = 1..7), official (the published width/depth/resolution table).
Latency budgets (5ms, 800us, 0.2s; all of a list in latency or all in MACs): each member's
phi is solved so that its batch-1 latency on this machine, predicted from the device's
latency table (parts it lacks are measured on demand, as in effnas latency), lies within 5%
of its budget; then every member is measured whole (median, spread, noisy) and the tables
say how far off it landed. --threads, --runtime and --cache-dir pick the table as in
effnas latency.
"""

from __future__ import annotations

import argparse
from typing import Callable

from nas.cli import jobs
from nas.cli.parser import OneLineParser, add_run_args, note_run_folder, overrides, run_main
from nas.cli.results import ScaleResult
from nas.core.errors import ConfigError

PROG = "scale.py"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", metavar="SPEC", help="spec YAML or bundled name to scale")
    p.add_argument("--grid", action="store_true",
                   help="fit alpha, beta, gamma by training every grid candidate on Ray")
    p.add_argument("--phi", type=float, help="phi of the grid search (default 1)")
    p.add_argument("--step", type=float, help="grid step (default 0.05)")
    p.add_argument("--tol", type=float, help="keep |alpha*beta^2*gamma^2 - 2| <= tol (default 0.1)")
    p.add_argument("--alpha-range", metavar="LO,HI", help="depth coefficient range (default 1,2)")
    p.add_argument("--beta-range", metavar="LO,HI", help="width coefficient range (default 1,1.5)")
    p.add_argument("--gamma-range", metavar="LO,HI",
                   help="resolution coefficient range (default 1,1.5)")
    p.add_argument("--coefficients", metavar="A,B,G", help="use these alpha,beta,gamma (no grid)")
    p.add_argument("--scaling", metavar="YAML", help="take the coefficients from a scaling.yaml")
    p.add_argument("--rule", help="family rule: budget (default) | paper | official")
    p.add_argument("--target-flops", metavar="T", help="one model at this budget, e.g. 2G")
    p.add_argument("--budgets", metavar="LIST",
                   help="a family at these budgets, all in MACs (600M,1.2G,2.5G) or all in "
                        "batch-1 latency on this machine (5ms,10ms,20ms)")
    p.add_argument("--force", action="store_true",
                   help="take a budget under 1M or over 1P MACs, otherwise refused as a "
                        "likely typo")
    p.add_argument("--resolution-multiple", type=int,
                   help="round resolutions to this multiple (default 8 for the family, 4 for "
                        "budgets)")
    p.add_argument("--threads", type=int,
                   help="latency budgets: intra-op threads (default 1), as effnas latency")
    p.add_argument("--runtime", help="latency budgets: torch (default) | onnxruntime")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="latency budgets: where latency tables are kept (default as effnas "
                        "latency)")
    p.add_argument("--max-seconds", type=float,
                   help="latency budgets: time cap of each network measured whole (default 10)")
    p.add_argument("--clock", help="latency budgets: wall (default) | thread: the thread's CPU "
                                   "time, as effnas latency --clock")
    p.add_argument("--reaim", type=int, metavar="N",
                   help="latency budgets: a member measured more than 5%% off its budget is "
                        "solved again with its own measured/predicted ratio and measured "
                        "again, up to N times, keeping the try measured closest (default 0)")
    p.add_argument("--compare", action="store_true",
                   help="train width-, depth- and resolution-only scalings at the compound "
                        "phi=1 model's MACs and print the paper's Table 7 on the proxy")
    add_run_args(p)
    return p


# Each flag's setting (the keys of nas.search.settings.ScaleSettings; --set takes any key).
KEYS = {"baseline": "baseline", "grid": "grid_search", "phi": "phi", "step": "grid.step",
        "tol": "grid.tol", "alpha_range": "grid.alpha_range", "beta_range": "grid.beta_range",
        "gamma_range": "grid.gamma_range", "coefficients": "coefficients",
        "scaling": "scaling", "rule": "rule", "budgets": "budgets",
        "resolution_multiple": "resolution_multiple", "compare": "compare",
        "threads": "latency.threads", "runtime": "latency.runtime",
        "cache_dir": "latency.cache_dir", "max_seconds": "latency.max_seconds",
        "clock": "latency.clock", "reaim": "latency.reaim",
        "workers": "workers", "cpus_per_trial": "cpus_per_trial",
        "gpus_per_trial": "gpus_per_trial", "address": "address", "data": "data.path",
        "dataset": "data.source", "seed": "seed", "name": "name", "out": "out"}


def keys(args: argparse.Namespace) -> dict[str, str]:
    """The flags' settings for this command line: ``--target-flops T`` is ``budgets`` (one
    budget), so a message about the budgets names the flag that gave them."""
    if getattr(args, "target_flops", None) is not None:
        return {"target_flops": "budgets", **{k: v for k, v in KEYS.items() if k != "budgets"}}
    return KEYS


def _pair(text: str, option: str) -> list[float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected LO,HI such as 1,1.5") from None
    return [lo, hi]


def _values(args: argparse.Namespace) -> argparse.Namespace:
    """The flags whose text is a list, as lists (a copy of ``args``)."""
    ns = argparse.Namespace(**vars(args))
    for key in ("alpha_range", "beta_range", "gamma_range"):
        if getattr(ns, key) is not None:
            setattr(ns, key, _pair(getattr(ns, key), "--" + key.replace("_", "-")))
    if ns.coefficients is not None:
        try:
            ns.coefficients = [float(x) for x in ns.coefficients.split(",")]
        except ValueError:
            raise ConfigError(f"--coefficients {ns.coefficients!r}: expected A,B,G such as "
                              "1.2,1.1,1.15") from None
    if ns.budgets is not None:
        if ns.target_flops is not None:
            raise ConfigError("--target-flops and --budgets exclude each other; use one")
        items = [b.strip() for b in ns.budgets.split(",")]
        if not any(items) or not all(items):
            raise ConfigError(f"--budgets {ns.budgets!r}: "
                              f"{'no budget given' if not any(items) else 'an empty item'}; "
                              "list budgets separated by commas, e.g. 600M,1.2G,2.5G")
        ns.budgets = items
    if ns.target_flops is not None:
        if _is_latency(ns.target_flops):
            raise ConfigError(f"--target-flops {ns.target_flops.strip()}: a latency, not a number "
                              f"of multiply-adds; a family member at a latency budget is "
                              f"--budgets {ns.target_flops.strip()}")
        ns.budgets = [ns.target_flops]
    return ns


def _is_latency(text: str) -> bool:
    from nas.latency.units import parse_latency
    try:
        parse_latency(text)
    except ConfigError:
        return False
    return True


def execute(args: argparse.Namespace,
            say: Callable[[str], None] = lambda line: print(line, flush=True)) -> ScaleResult:
    """The scaling run that flags (a parsed namespace) ask for, on the one code path of this
    command and of ``nas.run_scale`` (:func:`nas.cli.jobs.scale`)."""
    from nas.search.settings import ScaleSettings

    over = overrides(_values(args), KEYS, switches=("grid", "compare"))
    if args.resume:
        jobs.no_layers(args.preset, args.config)
        s = jobs.saved_settings(ScaleSettings, args.out, "scale", over, jobs.SCALE_RESUMABLE,
                                "scale run")
    else:
        s = jobs.settings(ScaleSettings, preset=args.preset, config=args.config,
                          overrides=over)
        jobs.check_grid_keys(s, over)
    return jobs.scale(s, resume=args.resume, force=args.force, say=say,
                      on_folder=note_run_folder)


def run(args: argparse.Namespace) -> int:
    execute(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(run, build_parser(), argv, f"python {PROG} --resume --out DIR", keys)
