"""Train one spec fully, checkpoint every epoch, test the best weights, export the model.

    effnas train efficientnet-b0 --epochs 30                   # Fashion-MNIST at 28 px
    effnas train runs/scale/b2.yaml --dataset cifar10 --data ~/cifar --resolution 64
    effnas train efficientnet-b0 --resume --out runs/train-efficientnet-b0-20250101-120000

The recipe is configs/train-default.yaml, the project's one default (the pipeline's training
stage and the fidelity command's long schedule too): AdamW lr 0.002, weight decay 0.05,
cosine after a warm-up, label smoothing 0.1, crop and flip (in runs of 1,500 steps or more),
a weight average; stochastic depth and dropout from the spec. The paper's TF-style RMSProp is --optimizer rmsprop. Validation
images are held out of the training set; early stopping and the kept "best" weights look at
them only, and the test split is scored once, at the end, with the best weights. A run that
diverges (non-finite loss, validation loss above 10x the first epoch's, accuracy at chance
with a loss above 1.5 ln(classes)) stops, keeps the last good epoch and exits with status 3.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from nas.cli import jobs
from nas.cli.parser import (
    EXIT_INTERRUPTED,
    OneLineParser,
    command_name,
    count_or_fraction,
    flag_message,
    flag_table,
    note_run_folder,
    overrides,
    run_main,
    seconds,
)
from nas.cli.results import TrainResult
from nas.data import SOURCES
from nas.training.recipe import AUGMENT_MIN_STEPS, OPTIMIZERS, SCHEDULES
from nas.training.settings import DEVICES, EXPORTS, TrainSettings, default_lr, default_weight_decay

PROG = "effnas train"
# Exit status of a run that diverged (a non-finite training loss, a validation loss above 10x
# the first epoch's, or validation accuracy at chance with a loss above 1.5 ln(classes)):
# metrics.json says what and when, and best.pt / last.pt keep the last good epoch, if any. (2 is bad input, 130 an interrupt.)
EXIT_DIVERGED = 3


def _default_lr(d: TrainSettings) -> float:
    return default_lr(d.optimizer, d.batch_size)


def _default_wd(optimizer: str) -> float:
    return default_weight_decay(optimizer)


def _ema(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid decay {text!r}; use a number such as "
                                         "0.999, or 0 for no weight average") from None


def build_parser() -> argparse.ArgumentParser:
    d = TrainSettings()
    p = OneLineParser(prog="effnas train", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    # Every default is None here: a flag given is an override of the settings, whose
    # defaults (TrainSettings's) are shown in the help.
    p.add_argument("spec", nargs="?", metavar="SPEC",
                   help="spec YAML, or a bundled name such as efficientnet-b0 (or the "
                        "setting spec in --config)")
    g = p.add_argument_group("settings (layered: the defaults, --preset, --config, the flags, "
                             "then --set)")
    g.add_argument("--preset", help="a bundled preset: smoke (one short epoch on a subset)")
    g.add_argument("--config", metavar="YAML", help="a YAML file of settings (the flags' names "
                                                    "with underscores: epochs, batch_size, "
                                                    "...; --ema is ema_decay)")
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
                   help="random crop (zero padding of size/8) and horizontal flip (default: "
                        f"on in runs of at least {AUGMENT_MIN_STEPS:,} steps, off in shorter "
                        "ones, which they slow down; --set augment=auto; the paper's "
                        "AutoAugment is not implemented)")
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


# Each flag's setting (the keys of nas.training.settings.TrainSettings: the flags' names, but
# --ema, which is ema_decay; --set takes any key).
KEYS = {"spec": "spec", **{k: k for k in (
    "dataset", "data", "resolution", "width_mult", "dropout", "drop_path_rate", "auto_augment",
    "erasing", "ema_decay", "epochs", "batch_size", "optimizer", "lr", "momentum",
    "weight_decay", "schedule", "warmup_epochs", "decay_rate", "decay_epochs",
    "label_smoothing", "bn_momentum", "augment", "val_size", "train_subset", "patience", "seed",
    "threads", "device", "max_epochs_time", "export", "out")}}


def settings(ns: argparse.Namespace) -> TrainSettings:
    """The settings of a new run that flags (a parsed namespace) ask for: the layers of
    :func:`nas.core.settings.load` (TrainSettings's defaults, ``--preset``, ``--config``,
    the flags (SPEC among them), then ``--set``)."""
    return jobs.settings(TrainSettings, preset=ns.preset, config=ns.config,
                         overrides=overrides(ns, KEYS))


def execute(ns: argparse.Namespace, command: str) -> TrainResult:
    """The training run that flags (a parsed namespace) ask for: the one code path of this
    command and of ``nas.run_train`` (:mod:`nas.cli.jobs`). Bad input raises a
    :class:`ConfigError` before anything is written."""
    if ns.resume:
        jobs.no_layers(ns.preset, ns.config)
        c, spec, ckpt = jobs.train_resumed(overrides(ns, KEYS))
    else:
        (c, spec), ckpt = jobs.train_fresh(settings(ns), ns.force), None
    return jobs.train(c, spec, ckpt, command, on_folder=note_run_folder)


def run(ns: argparse.Namespace, argv: list[str]) -> int:
    from nas.training.fit import summary_lines

    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "nas.cli.effnas", "train",
                                                *argv])
    result = execute(ns, command)
    if result.status == "interrupted":
        print(f"\ninterrupted in epoch {result.epoch + 1}; last.pt holds epoch {result.epoch}: "
              f"continue with {command_name(PROG)} --resume --out {result.out}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    assert result.metrics is not None
    # The run's reason names settings' keys (metrics.json keeps it so); said here with flags.
    flags = flag_table(build_parser(), KEYS)
    print("\n".join(flag_message(line, *flags)
                    for line in summary_lines(result.metrics, result.out)))
    return EXIT_DIVERGED if result.status == "diverged" else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_main(lambda ns: run(ns, argv), build_parser(), argv,
                    f"{PROG} --resume --out DIR", KEYS)
