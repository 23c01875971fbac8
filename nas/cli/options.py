"""What the commands that train children on Ray share: their flags, the command line as a
config layer, the layered config of a new or resumed run, and the typed settings built
from it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nas.cli import config as layers
from nas.cli.parser import other_command
from nas.core import runs
from nas.core.errors import ConfigError
from nas.core.files import config_path, read_yaml


def add_training_args(p: argparse.ArgumentParser, set_example: str = "proxy.epochs=2") -> None:
    """Flags of every command that trains children on Ray; ``set_example`` is a ``--set``
    item that this command takes (shown in its help)."""
    p.add_argument("--preset", help="a bundled preset: smoke (a whole run in about a minute)")
    p.add_argument("--config", metavar="YAML", help="a YAML file of settings")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override any setting, e.g. --set {set_example} (repeatable)")
    p.add_argument("--workers", type=int, help="children trained at the same time")
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per child (default 1)")
    p.add_argument("--gpus-per-trial", type=float,
                   help="GPUs per child; fractions share a GPU (e.g. 0.25 = 4 children per GPU)")
    p.add_argument("--address", help="join an existing Ray cluster (or set RAY_ADDRESS); "
                                     "default: a fresh local Ray")
    p.add_argument("--data", metavar="PATH", help="data folder (default: the Fashion-MNIST "
                                                  "install, or NAS_DATA_DIR)")
    p.add_argument("--dataset", help="fashion-mnist (default) | mnist | cifar10 | cifar100 | imagefolder")
    p.add_argument("--seed", type=int, help="the run's seed: the controller, the validation "
                                            "split, and every child's (with its identity)")
    p.add_argument("--name", help="run name (default: derived from the settings and the time)")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/NAME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")


def overrides(args: argparse.Namespace, flag_keys: dict[str, str]) -> dict[str, Any]:
    """The command line as a config layer: named flags first, then ``--set`` items."""
    over: dict[str, Any] = {}
    for attr, key in flag_keys.items():
        v = getattr(args, attr, None)
        if v is not None and v is not False:
            over[key] = v
    if getattr(args, "data", None) is not None:
        over.setdefault("data", {})["path"] = args.data
    if getattr(args, "dataset", None) is not None:
        over.setdefault("data", {})["source"] = args.dataset
    for k, v in layers.parse_set(args.set).items():
        if isinstance(v, dict) and isinstance(over.get(k), dict):
            over[k] = {**over[k], **v}
        else:
            over[k] = v
    return over


TRAINING_FLAGS = {"workers": "workers", "cpus_per_trial": "cpus_per_trial",
                  "gpus_per_trial": "gpus_per_trial", "address": "address", "seed": "seed",
                  "name": "name", "out": "out"}
RESUMABLE = {"workers", "address", "budget", "time_budget", "cpus_per_trial", "gpus_per_trial",
             "out", "recheck"}
# Settings added after runs were saved without them: a resumed run gets their defaults
# (which keep what those runs did: no Tune callbacks, no scheduler).
ADDED_LATER = ("tune", "time_budget", "recheck")


def load_config(args: argparse.Namespace, defaults: str, flag_keys: dict[str, str]) -> dict[str, Any]:
    """Layered config for a new run, or the saved one (with a few flags) for ``--resume``."""
    over = overrides(args, flag_keys)
    if not args.resume:
        return layers.load_layers(defaults, args.preset, args.config, over)
    if not args.out:
        raise ConfigError("--resume needs --out DIR, the folder of the run to continue")
    out = Path(args.out)
    runs.claim(out, RUN_KINDS[defaults], resume=True)  # a folder of this command's kind
    if not (out / "config.yaml").is_file():
        raise ConfigError(f"--resume: {out} holds no run to continue (no config.yaml); check --out")
    saved = read_yaml(out / "config.yaml")
    check_run_kind(saved, out, defaults)
    base = read_yaml(config_path(defaults))
    saved.update({k: base[k] for k in ADDED_LATER if k in base and k not in saved})
    changed = sorted(k for k in over if k not in RESUMABLE and over[k] != saved.get(k))
    if changed:
        raise ConfigError(f"--resume keeps the run's settings; {changed[0]!r} cannot change "
                          f"(only {', '.join(sorted(RESUMABLE))} can)")
    missing = sorted(set(base) - set(saved))
    if missing:
        raise ConfigError(f"--resume: {out / 'config.yaml'} lacks the setting {missing[0]!r}; "
                          f"it was not written by this {command_for(defaults)}; check --out")
    return layers.merge(saved, over, "command line")


COMMANDS = {"search": "search.py", "scale": "scale.py"}  # defaults name -> command


def command_for(defaults: str) -> str:
    """The command of a run kind as the user runs them: ``effnas scale`` under the entry
    point, else ``scale.py``."""
    return other_command(defaults, COMMANDS[defaults])


# defaults name -> the kinds of run folder (nas.core.runs) its --resume continues
RUN_KINDS = {"search": ("search", "oneshot"), "scale": ("scale",)}
_KIND_NAMES = {"search": "search", "scale": "scale run"}


def check_run_kind(saved: Any, out: Path, defaults: str) -> None:
    """``--resume`` continues a run of the same command: a saved config with another
    command's settings is a one-line error saying which command continues it."""
    if not isinstance(saved, dict):
        raise ConfigError(f"--resume: {out / 'config.yaml'} is not a run config (expected a "
                          "mapping of settings); check --out")

    def fits(name: str) -> bool:
        return set(saved) <= set(read_yaml(config_path(name)))

    if fits(defaults):
        return
    kind = next((k for k in COMMANDS if k != defaults and fits(k)), None)
    if kind is None:
        unknown = sorted(set(saved) - set(read_yaml(config_path(defaults))))
        raise ConfigError(f"--resume: {out / 'config.yaml'} is not the config of a "
                          f"{command_for(defaults)} run (unknown setting {unknown[0]!r}); check "
                          "--out")
    evidence = {"scale": "scaling.yaml", "search": "driver.pt"}[kind]
    found = evidence if (out / evidence).exists() else f"config.yaml of {command_for(kind)}"
    raise ConfigError(f"{out} holds a {_KIND_NAMES[kind]} ({found}), not a "
                      f"{_KIND_NAMES[defaults]}; continue it with {command_for(kind)} --resume "
                      f"--out {out}")


def check_out(out: Path) -> None:
    """The run folder can be made and written: no part of its path is a file, a symlink
    loop or a broken link, and the nearest existing folder is writable (one-line errors
    before anything is written; see :func:`nas.core.runs.check_path`)."""
    runs.check_path(out)


def trial_settings(cfg: dict[str, Any]) -> Any:
    """The typed settings of every run that trains children on Ray."""
    from nas.search.settings import TrialSettings
    return TrialSettings.from_config(cfg)


def data_settings(cfg: dict[str, Any]) -> Any:
    """The data settings; a ``data.seed`` of null is the run's seed."""
    from nas.data import DataSettings
    d = dict(cfg["data"])
    if d.get("seed") is None:
        d["seed"] = cfg["seed"]
    return DataSettings.from_dict(d)
