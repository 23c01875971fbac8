#!/usr/bin/env python
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
import csv
import io
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nas.cli import (TRAINING_FLAGS, OneLineParser, add_training_args, check_int, check_num,
                     load_config, load_data, run_main, train_children, training_settings)
from nas.config import dump
from nas.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="scale.py", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", metavar="SPEC", help="spec YAML or bundled name to scale")
    p.add_argument("--grid", action="store_true",
                   help="fit alpha, beta, gamma by training every grid candidate on Ray")
    p.add_argument("--phi", type=float, help="phi of the grid search (default 1)")
    p.add_argument("--step", type=float, help="grid step (default 0.05)")
    p.add_argument("--tol", type=float, help="keep |alpha*beta^2*gamma^2 - 2| <= tol (default 0.1)")
    p.add_argument("--alpha-range", metavar="LO,HI", help="depth coefficient range (default 1,2)")
    p.add_argument("--beta-range", metavar="LO,HI", help="width coefficient range (default 1,1.5)")
    p.add_argument("--gamma-range", metavar="LO,HI", help="resolution coefficient range (default 1,1.5)")
    p.add_argument("--coefficients", metavar="A,B,G", help="use these alpha,beta,gamma (no grid)")
    p.add_argument("--scaling", metavar="YAML", help="take the coefficients from a scaling.yaml")
    p.add_argument("--rule", help="family rule: budget (default) | paper | official")
    p.add_argument("--target-flops", metavar="T", help="one model at this budget, e.g. 2G")
    p.add_argument("--budgets", metavar="LIST", help="a family at these budgets, e.g. 600M,1.2G,2.5G")
    p.add_argument("--resolution-multiple", type=int,
                   help="round resolutions to this multiple (default 8 for the family, 4 for budgets)")
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
            raise ConfigError("--coefficients: give three numbers alpha,beta,gamma, e.g. 1.2,1.1,1.15")
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


def run(args: argparse.Namespace) -> int:
    from nas.config import merge
    cfg = load_config(args, "scale", FLAGS)
    cfg = merge(cfg, _cli_layer(args), "command line")
    import scaler
    from nas.io import load_spec, write_text_atomic
    from nas.units import format_macs

    if not cfg.get("baseline"):
        cfg["baseline"] = default_baseline()
    base = load_spec(cfg["baseline"])
    base_name = base.name or Path(cfg["baseline"]).stem
    phi = check_num(cfg, "phi", -2.0)
    multiple = cfg.get("resolution_multiple")
    if multiple is not None:
        check_int(cfg, "resolution_multiple", 1)
    grid_cfg = scaler.GridConfig.from_dict(cfg["grid"], source="grid settings")
    if cfg["rule"] not in scaler.RULES:
        raise ConfigError(f"--rule {cfg['rule']!r}: use one of {', '.join(scaler.RULES)}")
    budgets = cfg.get("budgets")
    if budgets is not None:
        from nas.units import parse_macs
        budgets = [parse_macs(b, "--target-flops" if len(budgets) == 1 else "--budgets")
                   for b in budgets]
    trains = args.grid or args.compare
    settings = training_settings(cfg) if trains else None
    if not cfg.get("name"):
        cfg["name"] = f"scale-{base_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out = Path(cfg["out"] or Path("runs") / cfg["name"])
    cfg["out"] = str(out)
    print(f"baseline {base_name} ({cfg['baseline']}): {format_macs(_macs(base))} MACs, "
          f"{_params(base):,} params at {base.resolution}px\nrun folder: {out}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", dump(cfg))
    data = load_data(cfg) if trains else None

    # 1. The coefficients.
    if args.grid:
        coefficients = grid_search(base, base_name, cfg, grid_cfg, phi, settings, data, out,
                                   args.resume)
        source = f"grid search ({out / 'scaling.yaml'})"
    elif cfg.get("coefficients"):
        coefficients = scaler.Coefficients(*cfg["coefficients"])
        source = "--coefficients"
    elif args.scaling or (out / "scaling.yaml").is_file():
        path = Path(args.scaling) if args.scaling else out / "scaling.yaml"
        coefficients = scaler.load_scaling(path).coefficients
        source = str(path)
    else:
        coefficients = scaler.PAPER_COEFFICIENTS
        source = "the paper's coefficients (no grid search run; use --grid to fit them)"
    if cfg["rule"] != "official" or budgets:
        print(f"coefficients {coefficients} (product {coefficients.product():.3f}) from {source}")

    # 2. Single-dimension baselines at equal MACs.
    if args.compare:
        compare(base, coefficients, cfg, settings, data, out, args.resume)

    # 3. The family.
    if budgets:
        members = scaler.fit_budgets(base, coefficients, budgets,
                                     resolution_multiple=multiple or 4)
        folder = out / "family-budgets"
    else:
        try:
            members = scaler.make_family(base, cfg["rule"], coefficients,
                                         resolution_multiple=multiple or 8)
        except ConfigError as e:
            if cfg["rule"] != "budget":
                raise
            # A family is still useful when one member falls in a jump of the MACs: write
            # the closest reachable model and show its miss in the table's 'vs target'.
            print(f"warning: {e}; writing the closest reachable model instead (see the "
                  "'vs target' column)", file=sys.stderr)
            members = scaler.make_family(base, "budget", coefficients,
                                         resolution_multiple=multiple or 8, tolerance=0.99)
        folder = out / f"family-{cfg['rule']}"
    files = scaler.write_family(members, folder, base_name, base=base)
    print(f"\n{files.markdown.read_text()}")
    print(f"family specs: {folder}/*.yaml  tables: {files.markdown}, {files.csv}")
    return 0


def _macs(spec: Any) -> int:
    from nas.cost import count_macs
    return count_macs(spec)


def _params(spec: Any) -> int:
    from nas.cost import count_params
    return count_params(spec)


def _proxy_base_resolution(settings: dict, data: Any) -> int:
    res = settings["proxy"].resolution
    return int(res) if res is not None else int(data.image_size)


def _train_list(items: list[tuple[str, Any, dict]], folder: Path, cfg: dict, settings: dict,
                data: Any, resume: bool) -> dict[str, Any]:
    """Train a fixed list of (label, spec, proxy overrides) on Ray; returns label -> record."""
    from controller import Proposal
    from nas import tune_adapter as ta
    from nas.driver import ChildDriver, FixedList, Target
    from nas.reward import RewardConfig

    driver = ChildDriver(lambda t: (items[t[0]][1], items[t[0]][2]), FixedList(len(items)),
                         budget=len(items), reward=RewardConfig(target_macs=1, w=0.0),
                         target=Target(resolution=None))  # reward = accuracy
    state = folder / "driver.pt"
    if state.is_file():
        if not resume:
            raise ConfigError(f"{folder} already holds trained candidates; continue with "
                              f"--resume --out {cfg['out']}, or choose another --out")
        driver.load_state_dict(ta.load_state(state), Proposal)
    folder.mkdir(parents=True, exist_ok=True)
    train_children(driver, data, settings, folder, cfg.get("address"), len(items),
                   table="candidates")
    if not driver.finished():
        raise KeyboardInterrupt
    return {items[r.tokens[0]][0]: r for r in driver.trained_records()}


def grid_search(base: Any, base_name: str, cfg: dict, grid_cfg: Any, phi: float, settings: dict,
                data: Any, out: Path, resume: bool) -> Any:
    import scaler
    started = datetime.now(timezone.utc)
    t0 = time.time()
    grid = grid_cfg.candidates()
    points = scaler.distinct_candidates(
        base, grid, phi, cfg.get("resolution_multiple") or 8,
        base_proxy_res=_proxy_base_resolution(settings, data), proxy_multiple=4,
        num_classes=data.num_classes)
    print(scaler.summarize(points, len(grid)), flush=True)
    items = [(f"{i}", p.spec, {"resolution": p.resolution}) for i, p in enumerate(points)]
    records = _train_list(items, out / "grid", cfg, settings, data, resume)
    results = []
    for i, p in enumerate(points):
        r = records.get(f"{i}")
        ok = r is not None and r.status == "ok"
        results.append(scaler.GridResult(p.coefficients, r.accuracy if ok else None,
                                         _macs(p.spec), _params(p.spec), p.resolution,
                                         r.trial if r is not None else None))
    best = scaler.select_best(results)
    scaler.write_scaling(best.coefficients, results, out / "scaling.yaml", phi=phi, grid=grid_cfg,
                         baseline_name=base_name, baseline_path=cfg["baseline"],
                         grid_points=len(grid), distinct=len(points), started=started,
                         finished=datetime.now(timezone.utc))
    print(f"grid done in {time.time() - t0:.0f} s: best {best.coefficients} "
          f"(proxy accuracy {best.accuracy:.4f}); written to {out / 'scaling.yaml'}")
    return best.coefficients


def _closest(values: Any, macs_of: Any, target: int) -> tuple[float, Any]:
    best = min(values, key=lambda v: abs(macs_of(v)[1] - target))
    return best, macs_of(best)[0]


def compare(base: Any, c: Any, cfg: dict, settings: dict, data: Any, out: Path,
            resume: bool) -> None:
    """Width-only, depth-only and resolution-only scalings at the compound model's MACs."""
    import scaler
    from nas.cost import count_macs
    from nas.io import save_spec, write_text_atomic
    from nas.rounding import round_resolution, scale_spec
    from nas.units import format_macs

    compound = scaler.scale_candidate(base, c, 1.0, cfg.get("resolution_multiple") or 8)
    target = count_macs(compound)
    base_proxy = _proxy_base_resolution(settings, data)

    def by_width(w: float) -> tuple[Any, int]:
        s = scale_spec(base, width=w)
        return s, count_macs(s)

    def by_depth(d: float) -> tuple[Any, int]:
        s = scale_spec(base, depth=d)
        return s, count_macs(s)

    def by_res(r: float) -> tuple[Any, int]:
        s = scale_spec(base, resolution=round_resolution(base.resolution, r, 8))
        return s, count_macs(s)

    steps = [1 + i / 200 for i in range(801)]  # 1.0 ... 5.0
    w, sw = _closest(steps, by_width, target)
    d, sd = _closest(steps, by_depth, target)
    r, sr = _closest(steps, by_res, target)
    rows = [  # label, spec, (w, d, r multipliers), proxy resolution
        ("baseline", base, (1.0, 1.0, 1.0), base_proxy),
        ("width only", sw, (w, 1.0, 1.0), base_proxy),
        ("depth only", sd, (1.0, d, 1.0), base_proxy),
        ("resolution only", sr, (1.0, 1.0, sr.resolution / base.resolution),
         scaler.proxy_resolution(base_proxy, sr.resolution / base.resolution, 1.0)),
        ("compound", compound, c.multipliers(1.0),
         scaler.proxy_resolution(base_proxy, c.gamma, 1.0)),
    ]
    print(f"compare: {len(rows)} models at about {format_macs(target)} MACs", flush=True)
    items = [(label, spec, {"resolution": pres}) for label, spec, _, pres in rows]
    records = _train_list(items, out / "compare", cfg, settings, data, resume)
    header = ["model", "width", "depth", "resolution", "MACs", "params", "proxy resolution",
              "proxy accuracy"]
    table = []
    for label, spec, (mw, md, mr), pres in rows:
        rec = records.get(label)
        acc = f"{rec.accuracy:.4f}" if rec is not None and rec.status == "ok" else "failed"
        table.append([label, f"{mw:.3f}", f"{md:.3f}", f"{spec.resolution} ({mr:.3f}x)",
                      format_macs(count_macs(spec)), f"{_params(spec):,}", str(pres), acc])
        save_spec(spec.replace(name=f"compare-{label.replace(' ', '-')}"),
                  out / "compare" / f"{label.replace(' ', '-')}.yaml")
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(row) + " |" for row in table]
    note = (f"\nCoefficients {c}; proxy: {data.name}, {settings['proxy'].epochs} epoch(s), "
            f"{settings['proxy'].train_subset or len(data.train)} training images, width "
            f"multiplier {settings['proxy'].width_mult}.\n")
    write_text_atomic(out / "compare" / "compare.md", "\n".join(md) + "\n" + note)
    buf = io.StringIO()
    csv.writer(buf).writerows([header] + table)
    write_text_atomic(out / "compare" / "compare.csv", buf.getvalue())
    print("\n" + "\n".join(md) + "\n" + note)


def main(argv: list[str] | None = None) -> int:
    return run_main(run, build_parser(), argv, "scale.py")


if __name__ == "__main__":
    sys.exit(main())
