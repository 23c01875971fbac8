"""Train one spec fully, checkpoint every epoch, test the best weights, export the model.

    effnas train efficientnet-b0 --epochs 30                   # Fashion-MNIST at 28 px
    effnas train runs/scale/b2.yaml --dataset cifar10 --data ~/cifar --resolution 64
    effnas train efficientnet-b0 --resume --out runs/train-efficientnet-b0-20250101-120000

The recipe is configs/train-default.yaml, the project's one default (the pipeline's training
stage and the fidelity command's long schedule too): AdamW lr 0.002, weight decay 0.05,
cosine after a warm-up, label smoothing 0.1, crop and flip, a weight average; stochastic depth
and dropout from the spec. The paper's TF-style RMSProp is --optimizer rmsprop. Validation
images are held out of the training set; early stopping and the kept "best" weights look at
them only, and the test split is scored once, at the end, with the best weights. A run that
diverges (non-finite loss, validation loss above 10x the first epoch's, accuracy at chance
with a loss above 1.5 ln(classes)) stops, keeps the last good epoch and exits with status 3.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping

from nas.arch.spec import ArchSpec, spec_from_dict
from nas.cli import config as layers
from nas.cli.parser import (
    EXIT_INTERRUPTED,
    OneLineParser,
    command_name,
    count_or_fraction,
    note_run_folder,
    run_main,
    seconds,
)
from nas.cli.results import TrainResult
from nas.core import runs
from nas.core.checks import MAX_SEED, check_int, check_resolution
from nas.core.errors import ConfigError
from nas.core.files import config_path, configs_dir, read_yaml
from nas.data import SOURCES
from nas.training.checkpoint import EXPORTS, load_checkpoint
from nas.training.device import DEVICES
from nas.training.fit import (
    TrainConfig,
    check,
    default_out,
    fit,
    make_spec,
    resolve,
    summary_lines,
)
from nas.training.recipe import OPTIMIZERS, SCHEDULES

PROG = "effnas train"
# Exit status of a run that diverged (a non-finite training loss, a validation loss above 10x
# the first epoch's, or validation accuracy at chance with a loss above 1.5 ln(classes)):
# metrics.json says what and when, and best.pt / last.pt keep the last good epoch, if any. (2 is bad input, 130 an interrupt.)
EXIT_DIVERGED = 3


def _default_lr(d: TrainConfig) -> float:
    from nas.training.fit import default_lr
    return default_lr(d.optimizer, d.batch_size)


def _default_wd(optimizer: str) -> float:
    from nas.training.fit import default_weight_decay
    return default_weight_decay(optimizer)


def _ema(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid decay {text!r}; use a number such as "
                                         "0.999, or 0 for no weight average") from None


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig(spec="")
    p = OneLineParser(prog="effnas train", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    # Every default is None here so that --resume can tell which flags were given; the real
    # defaults live in TrainConfig and are shown in the help.
    p.add_argument("spec", nargs="?", metavar="SPEC",
                   help="spec YAML, or a bundled name such as efficientnet-b0 (or the "
                        "setting spec in --config)")
    g = p.add_argument_group("settings (layered: the defaults, --preset, --config, the flags, "
                             "then --set)")
    g.add_argument("--preset", help="a bundled preset: smoke (one short epoch on a subset)")
    g.add_argument("--config", metavar="YAML", help="a YAML file of settings (the flags' names "
                                                    "with underscores: epochs, batch_size, ...)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set epochs=2 (repeatable)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", help=f"{' | '.join(SOURCES)} (default fashion-mnist; with --data "
                                     "alone, the folder's format is detected)")
    g.add_argument("--data", metavar="PATH", help="data folder (default: the installed "
                                                  "Fashion-MNIST, or NAS_DATA_DIR)")
    g.add_argument("--resolution", type=int, metavar="PX",
                   help="train and test at PX x PX (images resized on the fly). Default: the "
                        "data's native size (28 for Fashion-MNIST), NOT the spec's own "
                        "resolution (224 for B0, far too slow on a CPU for 28-pixel images)")
    g.add_argument("--val-size", type=count_or_fraction, metavar="N",
                   help=f"training images held out for validation: a count or a fraction "
                        f"(default {d.val_size}); the test split is never used for choices")
    g.add_argument("--train-subset", type=int, metavar="N",
                   help="train on N images per epoch, drawn afresh each epoch (seeded); "
                        "default: all training images")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction,
                   help="random crop (zero padding of size/8) and horizontal flip (default "
                        f"{'on' if d.augment else 'off'}; the paper's AutoAugment is not "
                        "implemented)")
    g.add_argument("--auto-augment", choices=("none", "trivial"),
                   help="trivial: TrivialAugment, one of 14 operations per image at a random "
                        "strength (default none)")
    g.add_argument("--erasing", type=float, metavar="P",
                   help="random-erasing probability per image (default 0)")
    g = p.add_argument_group("model")
    g.add_argument("--width-mult", type=float, metavar="W",
                   help="scale the spec's widths by W first (nas.scale_spec; default 1)")
    g.add_argument("--dropout", type=float, help="dropout before the classifier (default: the "
                                                 "spec's)")
    g.add_argument("--drop-path-rate", type=float,
                   help="stochastic depth rate of the last layer (default: the spec's; the "
                        "paper's survival 0.8 is 0.2)")
    g.add_argument("--bn-momentum", type=float, metavar="M",
                   help="batch-norm momentum while training, PyTorch convention (default auto: "
                        "the spec's 0.01, raised where epochs are short so the running "
                        "statistics average over at most a tenth of an epoch, at most 0.5)")
    g = p.add_argument_group("recipe")
    g.add_argument("--epochs", type=int, help=f"epochs to train (default {d.epochs})")
    g.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    g.add_argument("--optimizer", choices=OPTIMIZERS,
                   help=f"default {d.optimizer}; rmsprop is TF-style RMSProp (decay 0.9, eps "
                        "1e-3 inside the square root, as in the paper)")
    g.add_argument("--lr", type=float, help=f"peak learning rate (default {_default_lr(d)} for "
                                            f"{d.optimizer}; for the others 0.016 * batch-size "
                                            "/ 256: the paper's 0.256 at batch 4096)")
    g.add_argument("--momentum", type=float, help=f"rmsprop and sgd (default {d.momentum})")
    g.add_argument("--weight-decay", type=float,
                   help="on weights, not biases or batch norm (default "
                        f"{_default_wd(d.optimizer):g} for {d.optimizer}; "
                        f"{_default_wd('rmsprop'):g} for the others)")
    g.add_argument("--schedule", choices=SCHEDULES,
                   help=f"default {d.schedule}. exponential: lr * 0.97 ** (epoch / 2.4), "
                        "smooth; step: the same in stairs, as the TF reference runs it; cosine "
                        "(to 0 at --epochs); constant")
    g.add_argument("--decay-rate", type=float, help=f"default {d.decay_rate}")
    g.add_argument("--decay-epochs", type=float, help=f"default {d.decay_epochs}")
    g.add_argument("--warmup-epochs", type=float,
                   help="linear warm-up (default the recipe's 1 epoch, at most a tenth of "
                        "--epochs)")
    g.add_argument("--label-smoothing", type=float, help=f"default {d.label_smoothing}")
    g.add_argument("--ema", type=_ema, dest="ema_decay", metavar="DECAY",
                   help="evaluate, keep and export an exponential moving average of the "
                        f"weights with this decay, e.g. 0.999 (default {d.ema_decay}; 0: none)")
    g = p.add_argument_group("run")
    g.add_argument("--patience", type=int, metavar="E",
                   help="stop when validation accuracy has not improved for E epochs (default: "
                        "no early stopping; the best weights are kept either way)")
    g.add_argument("--max-epochs-time", type=seconds, metavar="T",
                   help="in this invocation, start no epoch that would end after T (seconds, or "
                        "90m, 2h); continue later with --resume")
    g.add_argument("--seed", type=int, help="initialisation, split, batch order, augmentation, "
                                            "dropout (default 0)")
    g.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--device", choices=DEVICES,
                   help="default auto (cuda if available); AMP (bf16, else fp16) on CUDA")
    g.add_argument("--export", choices=EXPORTS,
                   help="default torchscript (model.pt); onnx needs the onnx package")
    g.add_argument("--out", metavar="DIR", help="run folder (default runs/train-SPEC-TIME)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from last.pt, exactly; only --epochs, "
                        "--patience, --max-epochs-time, --threads, --device, --export and "
                        "--data (the same data set, moved) may change")
    g.add_argument("--force", action="store_true",
                   help="take a --resolution over 4096 px, otherwise refused as a likely "
                        "typo")
    return p


# Flags that map one-to-one onto TrainConfig fields.
_FLAG_FIELDS = ("dataset", "data", "resolution", "width_mult", "dropout", "drop_path_rate",
                "auto_augment", "erasing", "ema_decay",
                "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay",
                "schedule", "warmup_epochs", "decay_rate", "decay_epochs", "label_smoothing",
                "bn_momentum", "augment", "val_size", "train_subset", "patience", "seed",
                "threads", "device", "max_epochs_time", "export", "out")
_RESUME_MAY_CHANGE = ("epochs", "patience", "max_epochs_time", "threads", "device", "export",
                      "data")


def _given(ns: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(ns, k) for k in _FLAG_FIELDS if getattr(ns, k) is not None}


def _set_layer(ns: argparse.Namespace) -> dict[str, Any]:
    """``--set`` items, each a known setting (checked as the other commands check theirs)."""
    items = layers.parse_set(getattr(ns, "set", None) or [])
    layers.merge(_defaults(), items, "--set")
    return items


def _defaults() -> dict[str, Any]:
    return {**TrainConfig(spec="").to_dict(), "spec": None}


def settings_from_args(ns: argparse.Namespace) -> dict[str, Any]:
    """The layers of a new run merged (strict, as ``search``'s and ``scale``'s; see
    :mod:`nas.cli.config`): TrainConfig's defaults, ``--preset`` (``configs/train-NAME.yaml``),
    ``--config``, the flags (SPEC among them), then ``--set``."""
    cfg = _defaults()
    if getattr(ns, "preset", None):
        # configs/train-default.yaml is the default recipe, not a preset: it applies without
        # --preset (TrainConfig reads it).
        try:
            if ns.preset == "default":
                raise ConfigError(ns.preset)
            path = config_path(f"train-{ns.preset}")
        except ConfigError:
            known = sorted(p.stem[len("train-"):] for p in configs_dir().glob("train-*.yaml")
                           if p.stem != "train-default")
            raise ConfigError(f"--preset {ns.preset!r}: unknown preset; use one of "
                              f"{', '.join(known)} (the default recipe applies without "
                              "--preset)") from None
        cfg = layers.merge(cfg, _mapping(path), str(path))
    if getattr(ns, "config", None):
        cfg = layers.merge(cfg, _mapping(ns.config), "config" if isinstance(
            ns.config, Mapping) else ns.config)
    flags = _given(ns) | ({"spec": ns.spec} if ns.spec is not None else {})
    return layers.merge(layers.merge(cfg, flags, "command line"), _set_layer(ns), "--set")


def _mapping(path: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A YAML file's settings (the Python API's ``config=`` may be a mapping)."""
    data = dict(path) if isinstance(path, Mapping) else read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    return data


def config_from_args(ns: argparse.Namespace) -> TrainConfig:
    cfg = settings_from_args(ns)
    if cfg["spec"] in (None, ""):
        raise ConfigError("SPEC is required: a spec YAML or a bundled name such as "
                          "efficientnet-b0 (or --resume --out DIR)")
    c = resolve(TrainConfig.from_dict({**cfg, "spec": str(cfg["spec"])}, "settings"))
    check(c)
    if c.resolution is not None:
        check_resolution(c.resolution, "--resolution", bool(getattr(ns, "force", False)))
    if c.seed is not None:
        check_int(c.seed, "--seed", 0, MAX_SEED)  # torch's generator overflows past 2^63
    return c


def _resume(ns: argparse.Namespace) -> tuple[TrainConfig, ArchSpec, dict[str, Any]]:
    if ns.out is None:
        raise ConfigError("--resume needs --out DIR, the folder of the run to continue")
    runs.claim(ns.out, "train", resume=True)
    if getattr(ns, "preset", None) or getattr(ns, "config", None):
        raise ConfigError("--resume continues with the run's saved settings; leave out "
                          "--preset and --config (use --set for what may change)")
    path = Path(ns.out) / "last.pt"
    ckpt = load_checkpoint(path)
    saved = TrainConfig.from_dict(ckpt["config"], str(path))
    given = _given(ns) | {k: v for k, v in _set_layer(ns).items() if k != "spec"}
    for key, v in given.items():
        if key not in _RESUME_MAY_CHANGE and key != "out" and v != getattr(saved, key):
            raise ConfigError(f"--{key.replace('_', '-')}: a resumed run keeps its settings "
                              f"({saved.to_dict()[key]!r} in {path}); only "
                              f"{', '.join('--' + k.replace('_', '-') for k in _RESUME_MAY_CHANGE)}"
                              " may change")
    spec = spec_from_dict(ckpt["spec"], source=str(path))
    if ns.spec is not None:
        other = make_spec(replace(saved, spec=ns.spec))
        if other != spec:
            raise ConfigError(f"SPEC {ns.spec!r} is not the spec of the run in {ns.out}; leave "
                              "SPEC out with --resume")
    c = replace(saved, **{k: v for k, v in given.items() if k in _RESUME_MAY_CHANGE},
                out=str(ns.out))
    check(c)
    return c, spec, ckpt


def _fresh(ns: argparse.Namespace) -> tuple[TrainConfig, ArchSpec]:
    c = config_from_args(ns)
    c.recipe()  # every option is checked before the spec or the data are read
    spec = make_spec(c)
    if c.out is None:
        c = replace(c, out=default_out(spec.name))
    runs.claim(c.out, "train", resume=False)
    if (Path(c.out) / "last.pt").exists():
        raise ConfigError(f"{c.out} already holds a training run (last.pt); continue it with "
                          f"--resume --out {c.out}, or choose another --out")
    return c, spec


def execute(ns: argparse.Namespace, command: str,
            say: Callable[[str], None] | None = None) -> TrainResult:
    """The training run that flags (a parsed namespace) ask for: the one code path of this
    command and of ``nas.run_train``. ``command`` is recorded in the checkpoint and
    ``metrics.json``; progress lines go to ``say`` (default: print). Bad input raises a
    :class:`ConfigError` before anything is written."""
    if ns.resume:
        c, spec, ckpt = _resume(ns)
    else:
        (c, spec), ckpt = _fresh(ns), None
    note_run_folder(c.out)
    result = fit(c, spec, ckpt, command, say=say)
    out = Path(result.metrics["config"]["out"]) if result.metrics else Path(c.out)
    return TrainResult(out=out, status=result.status, epoch=result.epoch,
                       metrics=result.metrics)


def run(ns: argparse.Namespace, argv: list[str]) -> int:
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "nas.cli.effnas", "train",
                                                *argv])
    result = execute(ns, command)
    if result.status == "interrupted":
        print(f"\ninterrupted in epoch {result.epoch + 1}; last.pt holds epoch {result.epoch}: "
              f"continue with {command_name(PROG)} --resume --out {result.out}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    assert result.metrics is not None
    print("\n".join(summary_lines(result.metrics, result.out)))
    return EXIT_DIVERGED if result.status == "diverged" else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_main(lambda ns: run(ns, argv), build_parser(), argv,
                    f"{PROG} --resume --out DIR")

