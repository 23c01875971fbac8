"""Scale a baseline into a model family (EfficientNet section 3.3).

    python scale.py --grid --phi 1                 # fit alpha, beta, gamma on proxy training (Ray)
    python scale.py --rule official                # B1-B7 from the published coefficient table
    python scale.py --coefficients 1.2,1.1,1.15    # B1-B7 from given coefficients (no training)
    python scale.py --target-flops 2G              # one model at a custom budget
    python scale.py --budgets 600M,1.2G,2.5G       # a custom-budget family
    python scale.py --compare                      # width-, depth-, resolution-only at equal MACs

The baseline is --baseline, else the newest search's best.yaml under runs/, else
EfficientNet-B0. Coefficients come from --grid, --coefficients, --scaling FILE, the run
folder's scaling.yaml, or else the paper's (1.2, 1.1, 1.15); every file says which.
Family rules: budget (each Bk at the published Bk's MACs ratio to B0; default), paper
(phi = 1..7), official (the published width/depth/resolution table).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from nas.cli.config import dump, merge
from nas.cli.options import (
    TRAINING_FLAGS,
    add_training_args,
    data_settings,
    load_config,
    trial_settings,
)
from nas.cli.parser import OneLineParser, run_main
from nas.core.checks import check_int, check_number
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
                   help="a family at these budgets, e.g. 600M,1.2G,2.5G")
    p.add_argument("--resolution-multiple", type=int,
                   help="round resolutions to this multiple (default 8 for the family, 4 for "
                        "budgets)")
    p.add_argument("--compare", action="store_true",
                   help="train width-, depth- and resolution-only scalings at the compound "
                        "phi=1 model's MACs and print the paper's Table 7 on the proxy")
    add_training_args(p)
    return p


FLAGS = {**TRAINING_FLAGS, "baseline": "baseline", "phi": "phi", "rule": "rule",
         "resolution_multiple": "resolution_multiple"}


def _pair(text: str, option: str) -> list[float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected LO,HI such as 1,1.5") from None
    return [lo, hi]


def _cli_layer(args: argparse.Namespace) -> dict[str, Any]:
    """Flags that need parsing before they become config values."""
    grid: dict[str, Any] = {}
    if args.step is not None:
        grid["step"] = args.step
    if args.tol is not None:
        grid["tol"] = args.tol
    for key in ("alpha_range", "beta_range", "gamma_range"):
        v = getattr(args, key)
        if v is not None:
            grid[key] = _pair(v, "--" + key.replace("_", "-"))
    layer: dict[str, Any] = {"grid": grid} if grid else {}
    if args.coefficients is not None:
        try:
            layer["coefficients"] = [float(x) for x in args.coefficients.split(",")]
        except ValueError:
            raise ConfigError(f"--coefficients {args.coefficients!r}: expected A,B,G such as "
                              "1.2,1.1,1.15") from None
        if len(layer["coefficients"]) != 3:
            raise ConfigError("--coefficients: give three numbers alpha,beta,gamma, e.g. "
                              "1.2,1.1,1.15")
    if args.target_flops is not None:
        layer["budgets"] = [args.target_flops]
    if args.budgets is not None:
        if args.target_flops is not None:
            raise ConfigError("--target-flops and --budgets exclude each other; use one")
        layer["budgets"] = [b.strip() for b in args.budgets.split(",") if b.strip()]
    return layer


def default_baseline() -> str:
    """The newest search's best.yaml under runs/, else EfficientNet-B0."""
    found = sorted(Path("runs").glob("*/best.yaml"), key=lambda p: p.stat().st_mtime)
    return str(found[-1]) if found else "efficientnet-b0"


def settings(cfg: dict[str, Any], trains: bool) -> Any:
    """Check a scale config and build its typed settings (name and run folder filled in)."""
    import scaler
    from nas.arch.io import load_spec
    from nas.arch.units import parse_macs
    from nas.search.settings import ScaleSettings

    if not cfg.get("baseline"):
        cfg["baseline"] = default_baseline()
    base = load_spec(cfg["baseline"])
    base_name = base.name or Path(cfg["baseline"]).stem
    phi = check_number(cfg["phi"], "phi", -2.0)
    multiple = cfg.get("resolution_multiple")
    if multiple is not None:
        multiple = check_int(multiple, "resolution_multiple", 1)
    grid = scaler.GridConfig.from_dict(cfg["grid"], source="grid settings")
    if cfg["rule"] not in scaler.RULES:
        raise ConfigError(f"--rule {cfg['rule']!r}: use one of {', '.join(scaler.RULES)}")
    budgets = cfg.get("budgets")
    if budgets is not None:
        budgets = tuple(parse_macs(b, "--target-flops" if len(budgets) == 1 else "--budgets")
                        for b in budgets)
    coefficients = cfg.get("coefficients")
    if coefficients is not None:
        coefficients = tuple(scaler.Coefficients(*coefficients).to_dict().values())
    trials = trial_settings(cfg) if trains else None
    if not cfg.get("name"):
        cfg["name"] = f"scale-{base_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out = Path(cfg["out"] or Path("runs") / cfg["name"])
    cfg["out"] = str(out)
    return ScaleSettings(name=cfg["name"], out=out, seed=check_int(cfg["seed"], "seed", 0),
                         baseline=cfg["baseline"], phi=phi,
                         grid=grid, coefficients=coefficients, rule=cfg["rule"],
                         budgets=budgets, resolution_multiple=multiple, trials=trials,
                         data=data_settings(cfg))


def run(args: argparse.Namespace) -> int:
    cfg = merge(load_config(args, "scale", FLAGS), _cli_layer(args), "command line")
    trains = args.grid or args.compare
    s = settings(cfg, trains)

    import scaler
    from nas.arch.cost import count
    from nas.arch.io import load_spec
    from nas.arch.units import format_macs
    from nas.core.files import write_text_atomic
    from nas.search.scaling import compare, grid_search

    base = load_spec(s.baseline)
    base_name = base.name or Path(s.baseline).stem
    cost = count(base)
    print(f"baseline {base_name} ({s.baseline}): {format_macs(cost.macs)} MACs, "
          f"{cost.params:,} params at {base.resolution}px\nrun folder: {s.out}", flush=True)
    s.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(s.out / "config.yaml", dump(cfg))
    data = s.data.load() if trains else None
    say = lambda line: print(line, flush=True)  # noqa: E731

    # 1. The coefficients.
    if args.grid:
        coefficients = grid_search(base, base_name, s, data, args.resume, say)
        source = f"grid search ({s.out / 'scaling.yaml'})"
    elif s.coefficients:
        coefficients = scaler.Coefficients(*s.coefficients)
        source = "--coefficients"
    elif args.scaling or (s.out / "scaling.yaml").is_file():
        path = Path(args.scaling) if args.scaling else s.out / "scaling.yaml"
        coefficients = scaler.load_scaling(path).coefficients
        source = str(path)
    else:
        coefficients = scaler.PAPER_COEFFICIENTS
        source = "the paper's coefficients (no grid search run; use --grid to fit them)"
    if s.rule != "official" or s.budgets:
        print(f"coefficients {coefficients} (product {coefficients.product():.3f}) from {source}")

    # 2. Single-dimension baselines at equal MACs.
    if args.compare:
        print("\n" + compare(base, coefficients, s, data, args.resume, say))

    # 3. The family.
    if s.budgets:
        members = scaler.fit_budgets(base, coefficients, list(s.budgets),
                                     resolution_multiple=s.resolution_multiple or 4)
        folder = s.out / "family-budgets"
    else:
        try:
            members = scaler.make_family(base, s.rule, coefficients,
                                         resolution_multiple=s.resolution_multiple or 8)
        except ConfigError as e:
            if s.rule != "budget":
                raise
            # A family is still useful when one member falls in a jump of the MACs: write
            # the closest reachable model and show its miss in the table's 'vs target'.
            print(f"warning: {e}; writing the closest reachable model instead (see the "
                  "'vs target' column)", file=sys.stderr)
            members = scaler.make_family(base, "budget", coefficients,
                                         resolution_multiple=s.resolution_multiple or 8,
                                         tolerance=0.99)
        folder = s.out / f"family-{s.rule}"
    files = scaler.write_family(members, folder, base_name, base=base)
    print(f"\n{files.markdown.read_text()}")
    print(f"family specs: {folder}/*.yaml  tables: {files.markdown}, {files.csv}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(run, build_parser(), argv, f"python {PROG} --resume --out DIR")
