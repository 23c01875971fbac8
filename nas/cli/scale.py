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
from typing import Any, Callable

from nas.cli.config import dump, merge, parse_set
from nas.cli.options import (
    TRAINING_FLAGS,
    add_training_args,
    check_out,
    data_settings,
    load_config,
    trial_settings,
)
from nas.cli.parser import OneLineParser, note_run_folder, run_main
from nas.cli.results import ScaleResult
from nas.core import runs
from nas.core.checks import MAX_SEED, check_int, check_number, check_resolution
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
    p.add_argument("--force", action="store_true",
                   help="take a budget under 1M or over 1P MACs, otherwise refused as a "
                        "likely typo")
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
        items = [b.strip() for b in args.budgets.split(",")]
        if not any(items) or not all(items):
            raise ConfigError(f"--budgets {args.budgets!r}: "
                              f"{'no budget given' if not any(items) else 'an empty item'}; "
                              "list budgets separated by commas, e.g. 600M,1.2G,2.5G")
        layer["budgets"] = items
    return layer


GRID_FLAGS = (("phi", "--phi"), ("step", "--step"), ("alpha_range", "--alpha-range"),
              ("beta_range", "--beta-range"), ("gamma_range", "--gamma-range"))
COEFFICIENT_MAX = 4.0  # alpha, beta or gamma above it: a typo (the paper's are 1.1-1.2)
GRID_PHI_MAX = 3.0  # the grid trains ~(alpha*beta^2*gamma^2)^phi times the baseline's MACs


def check_grid_flags(args: argparse.Namespace) -> None:
    """Grid settings on the command line without ``--grid`` would be silently ignored."""
    if args.grid:
        return
    given = [flag for attr, flag in GRID_FLAGS if getattr(args, attr, None) is not None]
    if "phi" in parse_set(args.set):
        given.append("--set phi")
    if given:
        raise ConfigError(f"{given[0]} sets the grid search, which runs only with --grid; add "
                          f"--grid, or drop {given[0]} (a family's phi comes from --rule or the "
                          "budgets)")


def check_coefficients(c: Any, source: str, grid: Any) -> None:
    """Coefficients that cannot scale up are errors; a product far from the grid's target is
    a one-line warning on stderr (the rules still apply; each step of phi just multiplies the
    MACs by that product instead)."""
    if min(c.alpha, c.beta, c.gamma) < 1.0:
        raise ConfigError(f"coefficients {c} (from {source}): compound scaling needs alpha, "
                          "beta, gamma >= 1 (it never shrinks a dimension); e.g. 1.2,1.1,1.15")
    if max(c.alpha, c.beta, c.gamma) > COEFFICIENT_MAX:
        raise ConfigError(f"coefficients {c} (from {source}): each must be at most "
                          f"{COEFFICIENT_MAX:g} (one step of phi multiplies the MACs by "
                          "alpha*beta^2*gamma^2, about 2 in the paper); e.g. 1.2,1.1,1.15")
    if max(c.alpha, c.beta, c.gamma) == 1.0:
        raise ConfigError(f"coefficients {c} (from {source}): at least one must be above 1, or "
                          "phi cannot change the model; e.g. 1.2,1.1,1.15")
    product = c.product()
    if abs(product - grid.target) > grid.tol:
        print(f"warning: coefficients {c} (from {source}): alpha*beta^2*gamma^2 = "
              f"{product:.4g}, more than the grid's tol {grid.tol:g} from {grid.target:g}, so "
              f"each step of phi multiplies the MACs by about {product:.3g}, not "
              f"{grid.target:g}", file=sys.stderr)


def default_baseline() -> str:
    """The newest search's best.yaml under runs/, else EfficientNet-B0."""
    found = sorted(Path("runs").glob("*/best.yaml"), key=lambda p: p.stat().st_mtime)
    return str(found[-1]) if found else "efficientnet-b0"


def settings(cfg: dict[str, Any], trains: bool, grid_search: bool = False,
             force: bool = False, budgets_option: str = "budgets") -> Any:
    """Check a scale config and build its typed settings (name and run folder filled in).
    ``grid_search``: the grid will run, so its phi must be in (0, GRID_PHI_MAX]. ``force``
    takes budgets that look like typos (under 1M or over 1P MACs); ``budgets_option`` is
    the setting that gave the budgets, for messages (``--target-flops``, ``--budgets``)."""
    import scaler
    from nas.arch.io import load_spec
    from nas.arch.units import check_plausible_macs, format_macs, parse_macs
    from nas.search.settings import ScaleSettings

    if not cfg.get("baseline"):
        cfg["baseline"] = default_baseline()
    base = load_spec(cfg["baseline"])
    base_name = base.name or Path(cfg["baseline"]).stem
    phi = check_number(cfg["phi"], "phi")
    if grid_search and not 0.0 < phi <= GRID_PHI_MAX:
        raise ConfigError(f"--phi {phi:g}: the grid trains every candidate at alpha^phi, "
                          f"beta^phi, gamma^phi, about 2^phi times the baseline's MACs; use "
                          f"0 < phi <= {GRID_PHI_MAX:g} (the paper fits at phi = 1)")
    multiple = cfg.get("resolution_multiple")
    if multiple is not None:
        multiple = check_int(multiple, "resolution_multiple", 1)
    grid = scaler.GridConfig.from_dict(cfg["grid"], source="grid settings")
    if cfg["rule"] not in scaler.RULES:
        raise ConfigError(f"--rule {cfg['rule']!r}: use one of {', '.join(scaler.RULES)}")
    budgets = cfg.get("budgets")
    if budgets is not None and (not isinstance(budgets, list) or not budgets):
        raise ConfigError(f"budgets: got {budgets!r}; give a list of budgets such as "
                          "[600M, 1.2G], or null for the rule's family")
    if budgets is not None:
        budgets = tuple(check_plausible_macs(parse_macs(b, budgets_option), b, budgets_option,
                                             force) for b in budgets)
        twice = next((b for i, b in enumerate(budgets) if b in budgets[:i]), None)
        if twice is not None:
            raise ConfigError(f"{budgets_option} {','.join(map(str, cfg['budgets']))}: "
                              f"{format_macs(twice)} is given twice; list each budget once")
    if isinstance(cfg.get("data"), dict) and cfg["data"].get("image_size") is not None:
        check_resolution(cfg["data"]["image_size"], "data.image_size", force, minimum=1)
    coefficients = cfg.get("coefficients")
    if coefficients is not None:
        if not isinstance(coefficients, list) or len(coefficients) != 3:
            raise ConfigError(f"coefficients: got {coefficients!r}; give [alpha, beta, gamma], "
                              "e.g. [1.2, 1.1, 1.15]")
        c = scaler.Coefficients(*coefficients)
        check_coefficients(c, "--coefficients", grid)
        coefficients = tuple(c.to_dict().values())
    trials = trial_settings(cfg) if trains else None
    if not cfg.get("name"):
        cfg["name"] = f"scale-{base_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out = Path(cfg["out"] or Path("runs") / cfg["name"])
    check_out(out)
    cfg["out"] = str(out)
    return ScaleSettings(name=cfg["name"], out=out, seed=check_int(cfg["seed"], "seed", 0, MAX_SEED),
                         baseline=cfg["baseline"], phi=phi,
                         grid=grid, coefficients=coefficients, rule=cfg["rule"],
                         budgets=budgets, resolution_multiple=multiple, trials=trials,
                         data=data_settings(cfg))


def _coefficients(args: argparse.Namespace, s: Any) -> tuple[Any, str]:
    """The coefficients and where they come from, when no grid runs (``--coefficients``,
    ``--scaling``, the run folder's scaling.yaml, else the paper's); checked."""
    import scaler
    if s.coefficients:
        return scaler.Coefficients(*s.coefficients), "--coefficients"
    if args.scaling or (s.out / "scaling.yaml").is_file():
        path = Path(args.scaling) if args.scaling else s.out / "scaling.yaml"
        c = scaler.load_scaling(path).coefficients
        check_coefficients(c, str(path), s.grid)
        return c, str(path)
    return (scaler.PAPER_COEFFICIENTS,
            "the paper's coefficients (no grid search run; use --grid to fit them)")


def _family(base: Any, s: Any, coefficients: Any,
            option: str = "--target-flops") -> tuple[list, Path]:
    """The members and their folder. Every budget member lands within 3 % (see
    scaler.family.solve_budget) or this is a one-line error naming the member."""
    import scaler
    if s.budgets:
        return (scaler.fit_budgets(base, coefficients, list(s.budgets),
                                   resolution_multiple=s.resolution_multiple or 4,
                                   option=option),
                s.out / "family-budgets")
    return (scaler.make_family(base, s.rule, coefficients,
                               resolution_multiple=s.resolution_multiple or 8),
            s.out / f"family-{s.rule}")


def _check_before_training(base: Any, s: Any, data: Any, grid: bool) -> None:
    """What the grid and the compare runs will build, dry (torch-free), and the cluster."""
    import scaler
    from nas.search import tune_adapter as ta
    from nas.search.scaling import proxy_base_resolution
    from nas.search.settings import check_proxy_plan

    res = proxy_base_resolution(s, data)
    plan = [("the baseline", base, res)]
    if grid:
        points = scaler.distinct_candidates(base, s.grid.candidates(), s.phi,
                                            s.resolution_multiple or 8, base_proxy_res=res,
                                            proxy_multiple=4, num_classes=data.num_classes)
        plan += [(f"grid candidate {p.coefficients} at {p.resolution} px", p.spec,
                  p.resolution) for p in points]
    check_proxy_plan(s.trials.recipe, plan, "proxy.resolution (or data.image_size when it is "
                                            "null)")
    ta.check_address(s.trials.address)
    ta.check_tune(s.trials.tune)


def execute(args: argparse.Namespace,
            say: Callable[[str], None] = lambda line: print(line, flush=True)) -> ScaleResult:
    """The scaling run that flags (a parsed namespace) ask for: the one code path of this
    command and of ``nas.run_scale``. What it prints goes to ``say``; bad input raises a
    :class:`ConfigError` before anything is written."""
    check_grid_flags(args)
    cfg = merge(load_config(args, "scale", FLAGS), _cli_layer(args), "command line")
    trains = args.grid or args.compare
    option = ("--target-flops" if args.target_flops is not None else
              "--budgets" if args.budgets is not None else "budgets")
    s = settings(cfg, trains, args.grid, bool(args.force or args.resume), option)
    note_run_folder(s.out)
    runs.claim(s.out, "scale", args.resume)

    # Everything is checked before anything is written: the baseline, the coefficients,
    # the family (when the coefficients are known now), saved states to resume, the data,
    # what the workers will build and the cluster.
    from nas.arch.cost import count
    from nas.arch.io import load_spec
    from nas.arch.units import format_macs
    from nas.core.files import write_text_atomic
    from nas.search import tune_adapter as ta
    from nas.search.scaling import compare, grid_search

    base = load_spec(s.baseline)
    base_name = base.name or Path(s.baseline).stem
    coefficients, source = (None, "") if args.grid else _coefficients(args, s)
    family = None if coefficients is None else _family(base, s, coefficients, option)
    if args.resume:
        for part in ("grid", "compare"):
            if (s.out / part / "driver.pt").is_file():
                ta.load_state(s.out / part / "driver.pt")
    data = s.data.load() if trains else None
    if trains:
        _check_before_training(base, s, data, args.grid)

    cost = count(base)
    say(f"baseline {base_name} ({s.baseline}): {format_macs(cost.macs)} MACs, "
        f"{cost.params:,} params at {base.resolution}px\nrun folder: {s.out}")
    runs.mark(s.out, "scale")
    write_text_atomic(s.out / "config.yaml", dump(cfg))

    # 1. The coefficients.
    if args.grid:
        coefficients = grid_search(base, base_name, s, data, args.resume, say)
        source = f"grid search ({s.out / 'scaling.yaml'})"
    if s.rule != "official" or s.budgets:
        say(f"coefficients {coefficients} (product {coefficients.product():.3f}) from {source}")

    # 2. Single-dimension baselines at equal MACs.
    table = None
    if args.compare:
        table = compare(base, coefficients, s, data, args.resume, say)
        say("\n" + table)

    # 3. The family.
    import scaler
    members, folder = family if family is not None else _family(base, s, coefficients,
                                                                option)
    files = scaler.write_family(members, folder, base_name, base=base)
    markdown = files.markdown.read_text()
    say(f"\n{markdown}")
    say(f"family specs: {folder}/*.yaml  tables: {files.markdown}, {files.csv}")
    return ScaleResult(out=s.out, name=s.name, baseline=s.baseline,
                       coefficients=tuple(coefficients.to_dict().values()), source=source,
                       family=files.specs, family_table=markdown, family_csv=files.csv,
                       scaling=s.out / "scaling.yaml" if args.grid else None, compare=table)


def run(args: argparse.Namespace) -> int:
    execute(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(run, build_parser(), argv, f"python {PROG} --resume --out DIR")
