"""What search.py and scale.py share: argument parsing, settings, and training a driver's
children on Ray with a progress line, tables and TensorBoard."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Callable

from nas.errors import ConfigError, NasError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem and pointing at --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


def add_training_args(p: argparse.ArgumentParser) -> None:
    """Flags of every command that trains children on Ray."""
    p.add_argument("--preset", help="a bundled preset: smoke (a whole run in about a minute)")
    p.add_argument("--config", metavar="YAML", help="a YAML file of settings")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set proxy.epochs=2 (repeatable)")
    p.add_argument("--workers", type=int, help="children trained at the same time")
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per child (default 1)")
    p.add_argument("--gpus-per-trial", type=float,
                   help="GPUs per child; fractions share a GPU (e.g. 0.25 = 4 children per GPU)")
    p.add_argument("--address", help="join an existing Ray cluster (or set RAY_ADDRESS); "
                                     "default: a fresh local Ray")
    p.add_argument("--data", metavar="PATH", help="data folder (default: the Fashion-MNIST "
                                                  "install, or NAS_DATA_DIR)")
    p.add_argument("--dataset", help="fashion-mnist (default) | mnist | cifar10 | cifar100 | imagefolder")
    p.add_argument("--seed", type=int, help="seed of the controller/proxy and the data split")
    p.add_argument("--name", help="run name (default: derived from the settings and the time)")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/NAME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")


def overrides(args: argparse.Namespace, flag_keys: dict[str, str]) -> dict[str, Any]:
    """The command line as a config layer: named flags first, then ``--set`` items."""
    from nas.config import parse_set
    over: dict[str, Any] = {}
    for attr, key in flag_keys.items():
        v = getattr(args, attr, None)
        if v is not None and v is not False:
            over[key] = v
    if getattr(args, "data", None) is not None:
        over.setdefault("data", {})["path"] = args.data
    if getattr(args, "dataset", None) is not None:
        over.setdefault("data", {})["source"] = args.dataset
    for k, v in parse_set(args.set).items():
        if isinstance(v, dict) and isinstance(over.get(k), dict):
            over[k] = {**over[k], **v}
        else:
            over[k] = v
    return over


TRAINING_FLAGS = {"workers": "workers", "cpus_per_trial": "cpus_per_trial",
                  "gpus_per_trial": "gpus_per_trial", "address": "address", "seed": "seed",
                  "name": "name", "out": "out"}
RESUMABLE = {"workers", "address", "budget", "cpus_per_trial", "gpus_per_trial", "out"}


def load_config(args: argparse.Namespace, defaults: str, flag_keys: dict[str, str]) -> dict[str, Any]:
    """Layered config for a new run, or the saved one (with a few flags) for ``--resume``."""
    from nas import config as nconfig
    from nas.io import read_yaml
    over = overrides(args, flag_keys)
    if not args.resume:
        return nconfig.load_layers(defaults, args.preset, args.config, over)
    if not args.out:
        raise ConfigError("--resume needs --out DIR, the folder of the run to continue")
    out = Path(args.out)
    if not (out / "config.yaml").is_file():
        raise ConfigError(f"--resume: {out} holds no run to continue (no config.yaml); check --out")
    saved = read_yaml(out / "config.yaml")
    changed = sorted(k for k in over if k not in RESUMABLE and over[k] != saved.get(k))
    if changed:
        raise ConfigError(f"--resume keeps the run's settings; {changed[0]!r} cannot change "
                          f"(only {', '.join(sorted(RESUMABLE))} can)")
    return nconfig.merge(saved, over, "command line")


def check_int(cfg: dict, key: str, lo: int) -> int:
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"{key}: got {v!r}; use an integer >= {lo}")
    return v


def check_num(cfg: dict, key: str, lo: float, strict: bool = False) -> float:
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or v < lo or (strict and v == lo):
        raise ConfigError(f"{key}: got {v!r}; use a number {'>' if strict else '>='} {lo:g}")
    return float(v)


def training_settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """Check the settings every trained run has and build the proxy config."""
    from nas.proxy import ProxyConfig
    proxy = ProxyConfig.from_dict(cfg["proxy"], source="proxy settings")
    cpus = check_num(cfg, "cpus_per_trial", 0.0, strict=True)
    if proxy.num_threads is None:
        proxy = proxy.replace(num_threads=max(1, int(cpus)))
    if not isinstance(cfg["data"].get("source"), str):
        raise ConfigError("data.source: expected a name such as fashion-mnist")
    return {"proxy": proxy, "workers": check_int(cfg, "workers", 1), "cpus_per_trial": cpus,
            "gpus_per_trial": check_num(cfg, "gpus_per_trial", 0.0),
            "max_failures": check_int(cfg, "max_failures", 0), "seed": check_int(cfg, "seed", 0)}


def load_data(cfg: dict[str, Any]) -> Any:
    from nas.data import load_splits
    d = cfg["data"]
    return load_splits(d["source"], d.get("path"), val_size=d["val_size"], seed=d["seed"],
                       image_size=d.get("image_size"))


def train_children(driver: Any, data: Any, settings: dict[str, Any], out: Path, address: str | None,
                   total: int, after_records: Callable[[Any, bool], None] | None = None,
                   table: str = "children") -> None:
    """Train every child the driver hands out on Ray; keep ``out``'s tables, TensorBoard and
    the progress line up to date after each result (and once more at the end).

    ``after_records(tb, final)`` writes the caller's own outputs at the same moments.
    """
    from nas import tune_adapter as ta
    from nas.runlog import Progress, TensorBoardLog, write_tables

    tb = TensorBoardLog(out / "tensorboard")
    progress = Progress(total, settings["workers"], noun=table,
                        metric="reward" if table == "children" else "accuracy")

    def on_records(records: list) -> None:
        for r in records:
            tb.child(r, max(r.child, 0))
        tb.diagnostics(driver.pop_diagnostics())
        write_tables(driver.records, out, table)
        if after_records is not None:
            after_records(tb, False)
        trained = driver.trained_records()
        best = driver.best(1)
        walls = [r.wall_seconds for r in trained if r.wall_seconds > 0]
        progress.update(len(trained), best[0].reward if best else None,
                        best[0].macs if best else None,
                        sum(1 for r in trained if r.status != "ok"),
                        sum(walls) / len(walls) if walls else None)

    ta.init_ray(address)
    ta.check_resources(settings["cpus_per_trial"], settings["gpus_per_trial"])
    tune_dir = out / "tune"
    session = f"session{len(list(tune_dir.glob('session*'))) if tune_dir.exists() else 0}"
    try:
        if not driver.finished():
            ta.run_trials(driver, data, settings["proxy"], out, session, settings["workers"],
                          settings["cpus_per_trial"], settings["gpus_per_trial"],
                          settings["max_failures"], on_records)
    finally:
        progress.close()
        write_tables(driver.records, out, table)
        if after_records is not None:
            after_records(tb, True)
        tb.close()


def run_main(run: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser,
             argv: list[str] | None, prog: str) -> int:
    """Parse, run, and turn every expected failure into one line and a non-zero exit."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed
        return int(e.code or 0)
    try:
        return run(args)
    except NasError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: python {prog} --resume --out DIR", file=sys.stderr)
        return 130
