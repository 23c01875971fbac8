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
import copy
import shlex
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from nas.cli import config as layers
from nas.cli.config import dump, proxy_mapping
from nas.cli.options import add_training_args
from nas.cli.parser import (
    EXIT_INTERRUPTED,
    OneLineParser,
    command_name,
    note_run_folder,
    run_main,
)
from nas.core import runs
from nas.core.checks import MAX_SEED, check_int, check_number, check_resolution, is_int
from nas.core.errors import ConfigError, NasError
from nas.core.files import config_path, read_yaml

PROG = "effnas pipeline"
STAGE_SECTIONS = ("search", "scale")
# Keys set once for the whole pipeline: taken out of the search and scale sections.
SHARED = ("seed", "workers", "cpus_per_trial", "gpus_per_trial", "address", "max_failures",
          "data")
OWN_KEYS = {"search": ("name", "out", "target_flops", *SHARED),
            "scale": ("name", "out", "baseline", "budgets", *SHARED)}
FREE_FORM = ("proxy", "strategy_options")  # in a section: overlaid / replaced, not checked here
# train section keys that are not nas.training.fit.TrainConfig fields
PLAN_KEYS = ("members", "baseline", "references", "seeds", "resolution")
# May change on --resume whatever has run (as search.py's --resume allows).
RESUMABLE = ("workers", "cpus_per_trial", "gpus_per_trial", "address", "max_failures", "out",
             "data.path", "train.device", "train.threads", "train.export")
# The stage whose settings a key is: it may change on --resume only before that stage starts.
OWNER = {"seed": "search", "data": "search", "target_flops": "search", "baseline": "search",
         "search": "search", "budgets": "scale", "scale": "scale", "train": "train",
         "name": "search"}
# Settings of what the scale stage emits, not of its grid: they may change until it is done.
EMISSION = ("budgets", "scale.family", "scale.rule", "scale.resolution_multiple",
            "scale.on_miss")


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
    add_training_args(p, set_example="search.proxy.epochs=2")
    return p


# --------------------------------------------------------------------------- the layers


def _deep_update(base: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in layer.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def merge(base: dict[str, Any], layer: Mapping[str, Any], source: str) -> dict[str, Any]:
    """:func:`nas.cli.config.merge`, with the stage sections' free-form keys handled as the
    stage commands handle them: ``proxy`` (a bundled name, a path or a mapping) is overlaid
    on the proxy so far, ``strategy_options`` replaced as a whole."""
    if not isinstance(layer, Mapping):
        raise ConfigError(f"{source}: expected a mapping of settings")
    layer = dict(layer)
    held: dict[str, dict[str, Any]] = {}
    for sec in STAGE_SECTIONS:
        part = layer.get(sec)
        if isinstance(part, Mapping):
            part = dict(part)
            held[sec] = {k: part.pop(k) for k in FREE_FORM if k in part}
            layer[sec] = part
    out = layers.merge(base, layer, source)
    for sec, items in held.items():
        for key, value in items.items():
            if key not in out[sec]:
                raise ConfigError(f"{source}: unknown key '{sec}.{key}'; allowed here: "
                                  f"{', '.join(sorted(out[sec]))}")
            if key == "proxy":
                out[sec]["proxy"] = {**proxy_mapping(out[sec]["proxy"], source),
                                     **proxy_mapping(value, source)}
            else:
                if not isinstance(value, Mapping):
                    raise ConfigError(f"{source}: {sec}.{key}: expected a mapping")
                out[sec][key] = copy.deepcopy(dict(value))
    return out


def defaults() -> dict[str, Any]:
    """configs/pipeline.yaml with its search and scale sections filled from search.yaml and
    scale.yaml (less the keys the pipeline sets once), and its train section from the
    default recipe (configs/train-default.yaml)."""
    from nas.training.recipe import default_train_settings

    path = config_path("pipeline")
    base = read_yaml(path)
    base["train"] = {**default_train_settings(), **(base.get("train") or {})}
    for sec in STAGE_SECTIONS:
        stage = read_yaml(config_path(sec))
        for key in OWN_KEYS[sec]:
            stage.pop(key, None)
        stage["proxy"] = proxy_mapping(stage["proxy"], str(config_path(sec)))
        own = dict(base.get(sec) or {})
        new = {k: v for k, v in own.items() if k not in stage}
        stage.update(new)
        base[sec] = stage
        base = merge(base, {sec: {k: v for k, v in own.items() if k not in new}}, str(path))
    return base


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def cli_layer(args: argparse.Namespace) -> dict[str, Any]:
    """The command line as a config layer: flags, then ``--set`` items."""
    over: dict[str, Any] = {}
    for attr in ("target_flops", "baseline", "seed", "name", "out", "workers", "cpus_per_trial",
                 "gpus_per_trial", "address"):
        v = getattr(args, attr, None)
        if v is not None:
            over[attr] = v
    if args.data is not None:
        over.setdefault("data", {})["path"] = args.data
    if args.dataset is not None:
        over.setdefault("data", {})["source"] = args.dataset
    if args.budgets is not None:
        over["budgets"] = _list(args.budgets)
    scale: dict[str, Any] = {}
    if args.coefficients is not None:
        try:
            scale["coefficients"] = [float(x) for x in args.coefficients.split(",")]
        except ValueError:
            raise ConfigError(f"--coefficients {args.coefficients!r}: expected A,B,G such as "
                              "1.2,1.1,1.15") from None
    if args.compare:
        scale["compare"] = True
    if args.family is not None:
        scale.update(family=True, rule=args.family)
    if scale:
        over["scale"] = scale
    train: dict[str, Any] = {}
    if args.members is not None:
        train["members"] = _list(args.members)
    if args.references is not None:
        train["references"] = _list(args.references)
    if args.seeds is not None:
        try:
            train["seeds"] = [int(x) for x in _list(args.seeds)]
        except ValueError:
            raise ConfigError(f"--seeds {args.seeds!r}: expected whole numbers such as "
                              "0,1,2") from None
    if args.epochs is not None:
        train["epochs"] = args.epochs
    if train:
        over["train"] = train
    return _deep_update(over, layers.parse_set(args.set))


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v and f"{prefix}{k}" not in ("search.proxy",
                                                                    "scale.proxy"):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def load_config(args: argparse.Namespace) -> dict[str, Any]:
    """The layered config of a new run, or the saved one (with what may change) on --resume."""
    over = cli_layer(args)
    if not args.resume:
        cfg = defaults()
        if args.preset:
            try:
                path = config_path(f"pipeline-{args.preset}")
            except ConfigError:
                raise ConfigError(f"--preset {args.preset!r}: unknown preset; see the "
                                  "pipeline-*.yaml files in configs/") from None
            cfg = merge(cfg, read_yaml(path) or {}, str(path))
        if args.config:
            cfg = merge(cfg, read_yaml(args.config), args.config)  # empty: not a mapping
        return merge(cfg, over, "command line")
    if not args.out:
        raise ConfigError("--resume needs --out DIR, the folder of the pipeline to continue")
    if args.preset or args.config:
        raise ConfigError("--resume continues with the run's saved settings; leave out "
                          "--preset and --config (use --set for what may change)")
    out = Path(args.out)
    runs.claim(out, "pipeline", resume=True)
    if not (out / "config.yaml").is_file():
        raise ConfigError(f"--resume: {out} holds no pipeline to continue (no config.yaml); "
                          "check --out")
    from nas.search.pipeline import PipelineState, started

    saved = read_yaml(out / "config.yaml")
    if not isinstance(saved, dict) or "train" not in saved:
        raise ConfigError(f"{out / 'config.yaml'}: not a pipeline's settings; check --out")
    cfg = merge(saved, over, "command line")
    state = PipelineState.load(out)
    before, after = _flatten(saved), _flatten(cfg)
    for key in sorted(k for k in after if after[k] != before.get(k)):
        if key in RESUMABLE or key == "out":
            continue
        stage = OWNER[key.split(".")[0]]
        if key in EMISSION and state.status("scale") != "done":
            continue
        if started(state, stage):
            raise ConfigError(f"--resume keeps the run's settings; {key!r} cannot change once "
                              f"the {stage} stage has started (only "
                              f"{', '.join(RESUMABLE)} can)")
    cfg["out"] = str(out)
    return cfg


# --------------------------------------------------------------------------- typed settings


def _stage_config(cfg: Mapping[str, Any], sec: str, name: str, out: Path) -> dict[str, Any]:
    stage = copy.deepcopy(dict(cfg[sec]))
    for key in ("compare", "family", "on_miss") if sec == "scale" else ():
        stage.pop(key)
    stage.update({k: copy.deepcopy(cfg[k]) for k in SHARED})
    if sec == "search":
        stage["target_flops"] = cfg["target_flops"]
    stage.update(name=name, out=str(out / sec))
    return stage


def _in_section(sec: str, fn: Any, *a: Any) -> Any:
    try:
        return fn(*a)
    except ConfigError as e:
        raise ConfigError(f"{sec} settings: {e}") from None


def _budgets(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = _list(value)
    if not isinstance(value, list) or not value:
        raise ConfigError(f"budgets: got {value!r}; give a list such as [600M, 1.2G] (or "
                          "--budgets 600M,1.2G)")
    return [str(v) if not isinstance(v, str) else v for v in value]


def _train_error(e: ConfigError) -> ConfigError:
    """nas.train's flag names (``--lr: ...``) as the pipeline's keys (``train.lr: ...``)."""
    from nas.training.fit import FLAGS
    msg = str(e)
    flags = {flag: ("threads" if field == "num_threads" else field) for field, flag in
             FLAGS.items()}
    flags.update({"--dropout": "dropout", "--drop-path-rate": "drop_path_rate",
                  "--patience": "patience", "--export": "export", "--device": "device",
                  "--val-size": "val_size"})
    for flag, key in sorted(flags.items(), key=lambda kv: -len(kv[0])):
        if msg.startswith(flag + ":") or msg.startswith(flag + " "):
            return ConfigError("train." + key + msg[len(flag):])
    return ConfigError(f"train settings: {msg}")


def _train_plan(cfg: Mapping[str, Any], scale: Any, family: bool, force: bool = False) -> Any:
    from dataclasses import fields

    from nas.arch.io import load_spec
    from nas.arch.units import format_macs, parse_macs
    from nas.search.pipeline import TrainPlan
    from nas.training.device import pick_device
    from nas.training.fit import TrainConfig, check, resolve

    t = dict(cfg["train"])
    resolution = check_int(t["resolution"], "train.resolution", 8)
    check_resolution(resolution, "train.resolution", force)
    seeds = t["seeds"]
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"train.seeds: got {seeds!r}; give a list of seeds such as [0, 1, 2]")
    seeds = tuple(check_int(s, "train.seeds", 0, MAX_SEED) for s in seeds)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"train.seeds: {list(seeds)} lists a seed twice; list each once")
    if not isinstance(t["baseline"], bool):
        raise ConfigError(f"train.baseline: got {t['baseline']!r}; use true or false")

    members = t["members"]
    budget_names = [format_macs(b) for b in (scale.budgets or ())]
    if members is not None:
        if isinstance(members, str):
            members = _list(members)
        if not isinstance(members, list):
            raise ConfigError(f"train.members: got {members!r}; give a list such as [600M, b1]")
        names = []
        for item in members:
            item = str(item)
            if item in ("budgets", "family") or item in budget_names:
                names.append(item)
                continue
            if item in ("b1", "b2", "b3", "b4", "b5", "b6", "b7"):
                if not family:
                    raise ConfigError(f"train.members: {item!r} is a B1-B7 member, but no rule "
                                      "family is emitted; add --family RULE")
                names.append(item)
                continue
            try:
                macs = parse_macs(item, "train.members")
            except ConfigError:
                raise ConfigError(f"train.members: {item!r} is not a member; use a budget "
                                  f"({', '.join(budget_names) or 'none given'}), b1..b7, "
                                  "budgets or family") from None
            if format_macs(macs) not in budget_names:
                raise ConfigError(f"train.members: {item!r} is not one of the budgets "
                                  f"({', '.join(budget_names) or 'none given'})")
            names.append(format_macs(macs))
        if "family" in names and not family:
            raise ConfigError("train.members: 'family' needs a rule family; add --family RULE")
        members = tuple(names)

    refs = t["references"] or []
    if isinstance(refs, str):
        refs = _list(refs)
    if not isinstance(refs, list):
        raise ConfigError(f"train.references: got {refs!r}; give a list of specs such as "
                          "[efficientnet-b0, mnasnet-a1]")
    references = []
    for ref in refs:
        spec = load_spec(str(ref))
        path = str(ref) if Path(str(ref)).is_file() else str(config_path(str(ref)))
        name = Path(str(ref)).stem if Path(str(ref)).is_file() else str(ref)
        references.append((name or spec.name, path))
    taken = {"baseline", *budget_names, "b1", "b2", "b3", "b4", "b5", "b6", "b7"}
    seen: set[str] = set()
    for name, _ in references:
        if name in taken or name in seen:
            raise ConfigError(f"train.references: {name!r} is listed twice or is the name of "
                              "a family member; give each model a distinct name")
        seen.add(name)

    recipe = {k: v for k, v in t.items() if k not in PLAN_KEYS}
    known = {f.name for f in fields(TrainConfig)}
    extra = sorted(set(recipe) - known)
    if extra:  # configs/pipeline.yaml names a setting nas.training.fit does not have
        raise ConfigError(f"train.{extra[0]}: not a setting of nas.training.fit")
    for key in ("dropout", "drop_path_rate"):
        if recipe.get(key) is not None:
            check_number(recipe[key], f"train.{key}", 0.0, 1.0)
    if recipe.get("patience") is not None:
        check_int(recipe["patience"], "train.patience", 1)
    if recipe.get("threads") is not None:
        check_int(recipe["threads"], "train.threads", 1)
    check_int(recipe["epochs"], "train.epochs", 1)
    check_int(recipe["batch_size"], "train.batch_size", 2)
    if recipe.get("train_subset") is not None:
        check_int(recipe["train_subset"], "train.train_subset", 2)
    data = cfg["data"]
    template = TrainConfig(spec="efficientnet-b0", dataset=data["source"], data=data["path"],
                           val_size=data["val_size"], seed=seeds[0], resolution=resolution,
                           **recipe)
    try:
        checked = resolve(template)
        check(checked)
        checked.recipe()
    except ConfigError as e:
        raise _train_error(e) from None
    try:
        pick_device(template.device)
    except ConfigError as e:
        raise ConfigError(f"train.device: {e}") from None
    return TrainPlan(template=template, resolution=resolution, seeds=seeds, members=members,
                     baseline=t["baseline"], references=tuple(references))


def settings(cfg: dict[str, Any], command: str = "", force: bool = False) -> Any:
    """Check every setting of a pipeline config and build its typed settings (the name and
    run folder filled in). Nothing is written. ``force`` takes targets, budgets and
    resolutions that look like typos (see ``--force``)."""
    from dataclasses import replace

    from nas.arch.io import load_spec
    from nas.cli.scale import settings as scale_settings
    from nas.cli.search import settings as search_settings
    from nas.search.pipeline import PipelineSettings

    if not cfg.get("name"):
        cfg["name"] = f"pipeline-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out = Path(cfg["out"] or Path("runs") / cfg["name"])
    runs.check_path(out)  # before the stages' folders inside it are checked
    cfg["out"] = str(out)
    if not is_int(cfg["seed"]) or not 0 <= cfg["seed"] <= MAX_SEED:
        check_int(cfg["seed"], "seed", 0, MAX_SEED)
    scale_sec = cfg["scale"]
    for key in ("compare", "family"):
        if not isinstance(scale_sec[key], bool):
            raise ConfigError(f"scale.{key}: got {scale_sec[key]!r}; use true or false")
    if scale_sec["on_miss"] not in ("closest", "error"):
        raise ConfigError(f"scale.on_miss: got {scale_sec['on_miss']!r}; use closest or error")
    budgets = _budgets(cfg["budgets"])
    if not budgets and not scale_sec["family"]:
        raise ConfigError("nothing to scale: give the family's budgets (--budgets 600M,1.2G) "
                          "or a rule family (--family budget)")
    coefficients = scale_sec["coefficients"]
    grid = coefficients is None
    if not grid and (not isinstance(coefficients, list) or len(coefficients) != 3
                     or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                for v in coefficients) or min(coefficients) < 1):
        raise ConfigError(f"scale.coefficients: got {coefficients!r}; give three numbers >= 1, "
                          "alpha, beta, gamma, such as [1.2, 1.1, 1.15] (or null to fit them)")

    search = None
    baseline = cfg.get("baseline") or None
    if baseline is not None:
        load_spec(str(baseline))  # the given baseline must load
    else:
        search_cfg = _stage_config(cfg, "search", cfg["name"], out)
        search = _in_section("search", search_settings, search_cfg, force)
    scale_cfg = _stage_config(cfg, "scale", f"{cfg['name']}-scale", out)
    scale_cfg["baseline"] = str(baseline) if baseline else "efficientnet-b0"  # for checking
    scale_cfg["budgets"] = budgets
    scale = _in_section("scale", scale_settings, scale_cfg, grid or scale_sec["compare"],
                        False, force, "--budgets")
    scale = replace(scale, baseline="")  # the search's best child, once there is one
    scale_cfg["baseline"] = None
    plan = _train_plan(cfg, scale, scale_sec["family"], force)
    configs = {"pipeline": dump(cfg), "scale": dump(scale_cfg),
               "search": dump(search_cfg) if search is not None else ""}
    return PipelineSettings(name=cfg["name"], out=out, search=search,
                            baseline=str(baseline) if baseline else None, scale=scale,
                            grid=grid, compare=scale_sec["compare"], family=scale_sec["family"],
                            train=plan, configs=configs, command=command,
                            on_miss=scale_sec["on_miss"])


# --------------------------------------------------------------------------- the command


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from nas.search.pipeline import check_run_folder, run_pipeline

    cfg = load_config(args)
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "nas.cli.effnas",
                                                "pipeline", *argv])
    p = settings(cfg, command, bool(args.force or args.resume))
    note_run_folder(p.out)
    runs.claim(p.out, "pipeline", args.resume)
    check_run_folder(p.out, args.resume)
    from nas.search.tune_adapter import check_tune
    for stage in (p.search, p.scale):  # callbacks that do not import: one line now
        if stage is not None and stage.trials is not None:
            check_tune(stage.trials.tune)
    try:
        outcome = run_pipeline(p, args.resume)
    except NasError as e:  # a stage failed: what finished is kept, and says how to go on
        raise NasError(f"{e} [completed stages are kept; continue with {command_name(PROG)} "
                       f"--resume --out {p.out}]") from None
    if not outcome.finished:
        print(f"\npipeline stopped in the {outcome.stage} stage; continue it with:\n  "
              f"{command_name(PROG)} --resume --out {p.out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"pipeline done: report {outcome.report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_main(lambda ns: run(ns, argv), build_parser(), argv,
                    f"{PROG} --resume --out DIR")
