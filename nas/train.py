"""Train one spec fully, checkpoint every epoch, test the best weights, export the model.

    python -m nas.train efficientnet-b0 --epochs 30                   # Fashion-MNIST at 28 px
    python -m nas.train runs/scale/b2.yaml --dataset cifar10 --data ~/cifar --resolution 64
    python -m nas.train efficientnet-b0 --resume --out runs/train-efficientnet-b0-20250101-120000

The recipe is the paper's (REFERENCE.md, "Training recipe of the paper"): TF-style RMSProp
(decay 0.9, momentum 0.9, eps 1e-3), weight decay 1e-5, a learning rate that decays by 0.97
every 2.4 epochs after a linear warm-up, stochastic depth and dropout from the spec, plus the
TF reference's label smoothing 0.1 and 5-epoch warm-up. The paper's 0.256 is for batch 4096;
the default here scales it linearly (0.016 per 256 images, as the TF reference does).
Validation images are held out of the *training* set (``--val-size``); early stopping and the
kept "best" weights look at them only. The test split is scored once, at the end, with the
best weights. A short run (a few hundred steps) needs a lower --lr than the recipe's.

The run folder (``--out``) gets ``last.pt`` (everything needed to continue exactly: model,
optimizer, step, epoch, best weights, RNG states, the resolved settings) and ``best.pt``
after every epoch, ``train.csv`` (one row per epoch), TensorBoard scalars in
``tensorboard/``, and at the end ``metrics.json`` and the exported model (``model.pt``).

The training step reuses :mod:`nas.proxy`: its :class:`~nas.proxy.ProxyConfig` validates the
recipe settings, and its optimizer, learning-rate schedule (:func:`~nas.proxy.lr_at`), batch
feeder (resize, augmentation, normalisation), AMP and evaluation helpers are called, not
copied. ``train_proxy`` itself runs all its epochs in one call with an optimizer it makes and
drops, so it cannot checkpoint and resume; the epoch loop below is the part that differs.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import math
import re
import shlex
import sys
import time
import warnings
from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas.builder import build_model
from nas.cost import count
from nas.data import SOURCES, DataSplits, load_splits
from nas.errors import ConfigError, NasError
from nas.io import atomic_file, load_spec, write_text_atomic
from nas.proxy import (
    OPTIMIZERS, SCHEDULES, ProxyConfig, amp_settings, autocast, bn_momentum_override, resolve_device, evaluate_feeder,
    Feeder, make_optimizer, torch_threads, lr_at,
)
from nas.rounding import scale_spec
from nas.spec import ArchSpec, spec_from_dict, spec_to_dict

CHECKPOINT_FORMAT = "nas.train/1"
EXPORTS = ("torchscript", "onnx", "none")
DEVICES = ("auto", "cpu", "cuda")
CSV_COLUMNS = ("epoch", "step", "lr", "train_loss", "train_accuracy", "val_accuracy", "val_loss",
               "best_val_accuracy", "train_seconds", "eval_seconds", "images_per_second")
# Batch-norm "auto": the spec's momentum (TF's 0.01, a 100-step average), raised where an
# epoch is short so that the running statistics average over at most this fraction of an
# epoch (and never faster than PyTorch's 0.1). Measured: B0 at width 0.5 on 5,000-image
# epochs (39 steps) reached 66 % training but 10 % validation accuracy after 4 epochs with a
# 0.03 momentum, 61 % with 0.1: the running statistics lagged the weights.
_BN_WINDOW_EPOCHS = 0.1
_BN_MAX_MOMENTUM = 0.1
_LR_PER_256 = 0.016  # the paper's 0.256 at batch 4096
_WARMUP_EPOCHS = 5.0  # the TF reference's warm-up
_DIVERGENCE_CHECK_EVERY = 50  # steps; each check synchronises with the GPU


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TrainConfig:
    """The resolved settings of a run: every default filled in, written into ``last.pt`` and
    ``metrics.json``. ``None`` means "derive it" before the run starts (see :func:`resolve`)."""

    spec: str
    dataset: str | None = None
    data: str | None = None
    resolution: int | None = None  # None: the data's native size
    width_mult: float | None = None
    dropout: float | None = None  # None: the spec's
    drop_path_rate: float | None = None  # None: the spec's
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "rmsprop"
    lr: float | None = None  # None: 0.016 * batch_size / 256
    momentum: float = 0.9
    weight_decay: float = 1e-5
    schedule: str = "exponential"
    warmup_epochs: float | None = None  # None: 5, at most a tenth of the epochs
    decay_rate: float = 0.97
    decay_epochs: float = 2.4
    label_smoothing: float = 0.1
    bn_momentum: float | None = None  # None: auto
    augment: bool = False
    val_size: int | float = 5000
    train_subset: int | None = None
    patience: int | None = None
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    amp: str = "auto"
    max_epochs_time: float | None = None
    export: str = "torchscript"
    out: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting {unknown[0]!r}; the checkpoint was "
                              "written by another version of nas.train")
        return cls(**dict(d))

    def proxy_config(self) -> ProxyConfig:
        """The recipe part as a :class:`~nas.proxy.ProxyConfig` (which validates it)."""
        return _proxy_config(self)


# ProxyConfig field -> the flag that sets it, so its one-line errors name our flags.
_PROXY_FLAGS = {"epochs": "--epochs", "batch_size": "--batch-size", "resolution": "--resolution",
                "width_mult": "--width-mult", "optimizer": "--optimizer", "lr": "--lr",
                "momentum": "--momentum", "weight_decay": "--weight-decay",
                "schedule": "--schedule", "warmup_epochs": "--warmup-epochs",
                "decay_rate": "--decay-rate", "decay_epochs": "--decay-epochs",
                "label_smoothing": "--label-smoothing", "augment": "--augment", "seed": "--seed",
                "bn_momentum": "--bn-momentum", "num_threads": "--threads",
                "train_subset": "--train-subset"}


def _proxy_config(c: TrainConfig) -> ProxyConfig:
    d = {"epochs": c.epochs, "batch_size": c.batch_size, "resolution": c.resolution,
         "width_mult": 1.0 if c.width_mult is None else c.width_mult,
         "optimizer": c.optimizer, "lr": c.lr, "momentum": c.momentum,
         "weight_decay": c.weight_decay, "schedule": c.schedule,
         "warmup_epochs": c.warmup_epochs, "decay_rate": c.decay_rate,
         "decay_epochs": c.decay_epochs, "label_smoothing": c.label_smoothing,
         "augment": c.augment, "seed": c.seed, "amp": c.amp, "bn_momentum": c.bn_momentum,
         "num_threads": c.threads, "train_subset": c.train_subset, "channels_last": True}
    try:
        return ProxyConfig.from_dict({k: v for k, v in d.items() if v is not None})
    except ConfigError as e:
        msg = str(e)
        key = msg.split(":", 1)[0]
        if key in _PROXY_FLAGS:
            msg = _PROXY_FLAGS[key] + msg[len(key):]
        raise ConfigError(msg) from None


def resolve(c: TrainConfig) -> TrainConfig:
    """Fill in the defaults that derive from other settings (before any data is read)."""
    lr = c.lr if c.lr is not None else _LR_PER_256 * c.batch_size / 256
    warm = c.warmup_epochs if c.warmup_epochs is not None else min(_WARMUP_EPOCHS, c.epochs / 10)
    return replace(c, lr=lr, warmup_epochs=warm)


def _check_own(c: TrainConfig) -> None:
    """Settings that ProxyConfig does not know; one-line errors naming the flag."""
    for key, flag in (("dropout", "--dropout"), ("drop_path_rate", "--drop-path-rate")):
        v = getattr(c, key)
        if v is not None and not 0.0 <= v < 1.0:
            raise ConfigError(f"{flag}: got {v!r}; use a rate in [0, 1)")
    if c.patience is not None and c.patience < 1:
        raise ConfigError(f"--patience: got {c.patience!r}; use a number of epochs >= 1 (leave "
                          "it out for no early stopping)")
    if c.max_epochs_time is not None and not c.max_epochs_time > 0:
        raise ConfigError(f"--max-epochs-time: got {c.max_epochs_time!r}; use a time > 0")
    if isinstance(c.val_size, float) and not 0.0 < c.val_size < 1.0:
        raise ConfigError(f"--val-size: got {c.val_size!r}; use an image count >= 1 or a "
                          "fraction in (0, 1)")
    if isinstance(c.val_size, int) and c.val_size < 1:
        raise ConfigError(f"--val-size: got {c.val_size!r}; use an image count >= 1 (the "
                          "validation set drives early stopping and the best weights)")
    if c.export not in EXPORTS:
        raise ConfigError(f"--export: got {c.export!r}; use one of {', '.join(EXPORTS)}")
    if c.device not in DEVICES:
        raise ConfigError(f"--device: got {c.device!r}; use one of {', '.join(DEVICES)}")


# --------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """A usage error is one line naming the problem (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message}; see python -m nas.train --help\n")


def _seconds(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([smh]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid time {text!r}; use seconds or 90m / 2h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def _count_or_fraction(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; use an image count (5000) "
                                         "or a fraction of the training images (0.1)") from None


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig(spec="")
    p = _Parser(prog="python -m nas.train", description=__doc__.split("\nThe training step")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    # Every default is None here so that --resume can tell which flags were given; the real
    # defaults live in TrainConfig and are shown in the help.
    p.add_argument("spec", nargs="?", metavar="SPEC",
                   help="spec YAML, or a bundled name such as efficientnet-b0")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", help=f"{' | '.join(SOURCES)} (default fashion-mnist; with --data "
                                     "alone, the folder's format is detected)")
    g.add_argument("--data", metavar="PATH", help="data folder (default: the installed "
                                                  "Fashion-MNIST, or NAS_DATA_DIR)")
    g.add_argument("--resolution", type=int, metavar="PX",
                   help="train and test at PX x PX (images resized on the fly). Default: the "
                        "data's native size (28 for Fashion-MNIST), NOT the spec's own "
                        "resolution (224 for B0, far too slow on a CPU for 28-pixel images)")
    g.add_argument("--val-size", type=_count_or_fraction, metavar="N",
                   help=f"training images held out for validation: a count or a fraction "
                        f"(default {d.val_size}); the test split is never used for choices")
    g.add_argument("--train-subset", type=int, metavar="N",
                   help="train on N images per epoch, drawn afresh each epoch (seeded); "
                        "default: all training images")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction,
                   help="random crop (zero padding of size/8) and horizontal flip (default off; "
                        "the paper's AutoAugment is not implemented)")
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
                        "statistics average over at most a tenth of an epoch, at most 0.1)")
    g = p.add_argument_group("recipe")
    g.add_argument("--epochs", type=int, help=f"epochs to train (default {d.epochs})")
    g.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    g.add_argument("--optimizer", choices=OPTIMIZERS,
                   help=f"default {d.optimizer} (TF-style: decay 0.9, eps 1e-3)")
    g.add_argument("--lr", type=float, help="peak learning rate (default 0.016 * batch-size / "
                                            "256: the paper's 0.256 at batch 4096)")
    g.add_argument("--momentum", type=float, help=f"rmsprop and sgd (default {d.momentum})")
    g.add_argument("--weight-decay", type=float,
                   help=f"on weights, not biases or batch norm (default {d.weight_decay:g})")
    g.add_argument("--schedule", choices=SCHEDULES,
                   help="exponential (default): lr * 0.97 ** (epoch / 2.4), smooth; step: the "
                        "same in stairs, as the TF reference runs it; cosine (to 0 at "
                        "--epochs); constant")
    g.add_argument("--decay-rate", type=float, help=f"default {d.decay_rate}")
    g.add_argument("--decay-epochs", type=float, help=f"default {d.decay_epochs}")
    g.add_argument("--warmup-epochs", type=float,
                   help="linear warm-up (default 5, as in the TF reference, at most a tenth of "
                        "--epochs)")
    g.add_argument("--label-smoothing", type=float, help=f"default {d.label_smoothing}")
    g = p.add_argument_group("run")
    g.add_argument("--patience", type=int, metavar="E",
                   help="stop when validation accuracy has not improved for E epochs (default: "
                        "no early stopping; the best weights are kept either way)")
    g.add_argument("--max-epochs-time", type=_seconds, metavar="T",
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
    return p


# Flags that map one-to-one onto TrainConfig fields.
_FLAG_FIELDS = ("dataset", "data", "resolution", "width_mult", "dropout", "drop_path_rate",
                "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay",
                "schedule", "warmup_epochs", "decay_rate", "decay_epochs", "label_smoothing",
                "bn_momentum", "augment", "val_size", "train_subset", "patience", "seed",
                "threads", "device", "max_epochs_time", "export", "out")
_RESUME_MAY_CHANGE = ("epochs", "patience", "max_epochs_time", "threads", "device", "export",
                      "data")


def _given(ns: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(ns, k) for k in _FLAG_FIELDS if getattr(ns, k) is not None}


def config_from_args(ns: argparse.Namespace) -> TrainConfig:
    if ns.spec is None:
        raise ConfigError("SPEC is required: a spec YAML or a bundled name such as "
                          "efficientnet-b0 (or --resume --out DIR)")
    c = resolve(TrainConfig(spec=ns.spec, **_given(ns)))
    _check_own(c)
    return c


# --------------------------------------------------------------------------- trainer


class Diverged(NasError):
    """The training loss became NaN or infinite."""


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


class Trainer:
    """One model, its optimizer, schedule position, RNGs and validation history.

    ``state_dict()`` / ``load_state_dict()`` capture everything the next epoch depends on, so
    a run continued from a checkpoint takes the same steps as one that never stopped (on CPU,
    with the same thread count).
    """

    def __init__(self, model: nn.Module, splits: DataSplits, cfg: ProxyConfig,
                 device: torch.device, patience: int | None = None) -> None:
        self.model, self.cfg, self.device, self.patience = model, cfg, device, patience
        self.stats = splits.train.channel_stats()
        model.to(device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        self.train_feed = Feeder(splits.train, None, device, self.stats, cfg.resolution,
                                  cfg.channels_last)
        self.val_feed = Feeder(splits.val, None, device, self.stats, cfg.resolution,
                                cfg.channels_last)
        n = self.train_feed.n
        per_epoch = n if cfg.train_subset is None else min(cfg.train_subset, n)
        if per_epoch < 2:
            raise ConfigError(f"only {per_epoch} training images; need at least 2 (lower "
                              "--val-size)")
        self.batch_size = min(cfg.batch_size, per_epoch)
        self.steps_per_epoch = per_epoch // self.batch_size  # the last partial batch is dropped
        self.amp_dtype, use_scaler = amp_settings(cfg, device)
        self.opt = make_optimizer(model, cfg)
        self.scaler = torch.amp.GradScaler(device.type) if use_scaler else None
        self.rng = np.random.default_rng(cfg.seed)  # batch order and subsets
        self.gen = torch.Generator().manual_seed(cfg.seed)  # augmentation
        self.step = 0
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best_val_accuracy = -1.0
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    @property
    def images_per_epoch(self) -> int:
        return self.steps_per_epoch * self.batch_size

    def should_stop(self) -> bool:
        return self.patience is not None and self.epoch - self.best_epoch >= self.patience

    def train_epoch(self) -> dict[str, Any]:
        """One epoch of training and a validation pass; returns the epoch's ``train.csv`` row."""
        model, cfg, dev, bs = self.model, self.cfg, self.device, self.batch_size
        model.train()
        order = self.rng.permutation(self.train_feed.n)[: self.images_per_epoch]
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        t0 = time.perf_counter()
        lr = cfg.lr
        for b in range(self.steps_per_epoch):
            lr = lr_at(cfg, self.step, self.steps_per_epoch)
            for g in self.opt.param_groups:
                g["lr"] = lr
            x, y = self.train_feed.batch(order[b * bs:(b + 1) * bs], cfg.augment, self.gen)
            with autocast(dev, self.amp_dtype):
                logits = model(x)
            logits = logits.float()
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            self.opt.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.opt)
                self.scaler.update()
            else:
                loss.backward()
                self.opt.step()
            self.step += 1
            loss_sum += loss.detach().double()
            correct += (logits.detach().argmax(1) == y).sum()
            if (b + 1) % _DIVERGENCE_CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
                break
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        train_seconds = time.perf_counter() - t0
        train_loss = loss_sum.item() / self.steps_per_epoch
        if not math.isfinite(train_loss):
            raise Diverged(f"training diverged in epoch {self.epoch + 1} (non-finite loss at "
                           f"lr {lr:.3g}); lower --lr or raise --warmup-epochs")
        t1 = time.perf_counter()
        val_acc, val_loss = evaluate_feeder(model, self.val_feed, cfg.eval_batch_size, dev,
                                      self.amp_dtype)
        self.epoch += 1
        if val_acc > self.best_val_accuracy:
            self.best_val_accuracy, self.best_epoch = val_acc, self.epoch
            self.best_state = _cpu_state(model)
        row = {"epoch": self.epoch, "step": self.step, "lr": lr, "train_loss": train_loss,
               "train_accuracy": correct.item() / self.images_per_epoch,
               "val_accuracy": val_acc, "val_loss": val_loss,
               "best_val_accuracy": self.best_val_accuracy, "train_seconds": train_seconds,
               "eval_seconds": time.perf_counter() - t1,
               "images_per_second": self.images_per_epoch / max(train_seconds, 1e-9)}
        self.history.append(row)
        return row

    def state_dict(self) -> dict[str, Any]:
        cuda = (torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None)
        return {"epoch": self.epoch, "step": self.step, "model": _cpu_state(self.model),
                "optimizer": self.opt.state_dict(),
                "scaler": None if self.scaler is None else self.scaler.state_dict(),
                "best_model": self.best_state, "best_val_accuracy": self.best_val_accuracy,
                "best_epoch": self.best_epoch, "history": copy.deepcopy(self.history),
                "rng": {"numpy": self.rng.bit_generator.state, "torch": torch.get_rng_state(),
                        "cuda": cuda, "augment": self.gen.get_state()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best_state = state["best_model"]
        self.best_val_accuracy = float(state["best_val_accuracy"])
        self.best_epoch = int(state["best_epoch"])
        self.history = [dict(r) for r in state["history"]]
        rng = state["rng"]
        self.rng.bit_generator.state = rng["numpy"]
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng.get("cuda") is not None:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.gen.set_state(rng["augment"])

    def load_best(self) -> None:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)


# --------------------------------------------------------------------------- files


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically."""
    with atomic_file(path, "wb") as f:
        torch.save(obj, f)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint to continue from; start the run without "
                          "--resume (or pass the run's --out)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise ConfigError(f"{path}: cannot read the checkpoint ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); it is corrupt") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path}: not a nas.train checkpoint (format "
                          f"{ckpt.get('format') if isinstance(ckpt, dict) else '?'!r})")
    return ckpt


def write_csv(history: list[dict[str, Any]], path: Path) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r in history:
        w.writerow([f"{r[c]:.6g}" if isinstance(r[c], float) else r[c] for c in CSV_COLUMNS])
    write_text_atomic(path, buf.getvalue())


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


# --------------------------------------------------------------------------- export


def _check_export_available(kind: str) -> None:
    if kind == "onnx":
        import importlib.util
        if importlib.util.find_spec("onnx") is None:
            raise ConfigError("--export onnx needs the onnx package: pip install onnx (or use "
                              "--export torchscript)")


def export_model(model: nn.Module, example: torch.Tensor, kind: str, out: Path,
                 preprocess: dict[str, Any]) -> dict[str, Any]:
    """Write the model for inference and check that the file loads and gives the same logits.

    The exported network takes images normalised as ``preprocess`` says (written beside it).
    """
    m = copy.deepcopy(model).cpu().float().eval().to(memory_format=torch.contiguous_format)
    x = example.cpu().float().contiguous()
    with torch.inference_mode():
        want = m(x)
    if kind == "torchscript":
        path = out / "model.pt"
        with warnings.catch_warnings():  # torch.jit is deprecated but still the portable format
            warnings.simplefilter("ignore", DeprecationWarning)
            with torch.no_grad():
                traced = torch.jit.trace(m, x, check_trace=False)
            buf = io.BytesIO()
            torch.jit.save(traced, buf, _extra_files={"preprocess.json": json.dumps(preprocess)})
            with atomic_file(path, "wb") as f:
                f.write(buf.getvalue())
            loaded = torch.jit.load(str(path), map_location="cpu")
            with torch.inference_mode():
                got = loaded(x)
    else:  # onnx
        import importlib.util
        path = out / "model.onnx"
        dynamo = importlib.util.find_spec("onnxscript") is not None
        torch.onnx.export(m, (x,), str(path), input_names=["images"], output_names=["logits"],
                          dynamo=dynamo, external_data=False,
                          **({} if dynamo else {"dynamic_axes": {"images": {0: "batch"}}}))
        import onnx
        onnx.checker.check_model(onnx.load(str(path)))
        if importlib.util.find_spec("onnxruntime") is None:
            return {"format": kind, "path": path.name, "checked": "onnx.checker only (install "
                    "onnxruntime to compare outputs)", "max_abs_diff": None}
        import onnxruntime
        sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(sess.run(None, {"images": x.numpy()})[0])
    diff = float((got - want).abs().max())
    tol = 1e-4 * max(1.0, float(want.abs().max()))
    if not diff <= tol:
        raise NasError(f"{path}: the exported model's outputs differ from the trained model's "
                       f"by {diff:.3g} (tolerance {tol:.3g}); use --export none and report it")
    return {"format": kind, "path": path.name, "checked": "loaded and compared",
            "max_abs_diff": diff}


# --------------------------------------------------------------------------- run


def _load_data(c: TrainConfig) -> DataSplits:
    image_size = None
    if (c.dataset or "").lower() in ("imagefolder", "image-folder"):
        image_size = c.resolution  # image folders are resized at load time anyway
    if c.dataset is None and c.data is not None and Path(c.data).expanduser().is_dir():
        return load_splits(c.data, val_size=c.val_size, seed=c.seed, image_size=image_size)
    return load_splits(c.dataset or "fashion-mnist", path=c.data, val_size=c.val_size,
                       seed=c.seed, image_size=image_size)


def _make_spec(c: TrainConfig) -> ArchSpec:
    spec = load_spec(c.spec)
    if c.width_mult is not None and c.width_mult != 1.0:
        spec = scale_spec(spec, width=c.width_mult)
    if c.dropout is not None:
        spec = spec.replace(dropout=float(c.dropout))
    if c.drop_path_rate is not None:
        spec = spec.replace(drop_path_rate=float(c.drop_path_rate))
    if not spec.name:
        spec = spec.replace(name=Path(c.spec).stem)
    return spec


def _auto_bn_momentum(spec_momentum: float, steps_per_epoch: int) -> float:
    window = _BN_WINDOW_EPOCHS * steps_per_epoch  # steps the running average should span
    wanted = min(_BN_MAX_MOMENTUM, 1.0 / max(window, 1.0))
    return float(max(spec_momentum, round(wanted, 4)))


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return resolve_device(name)


def _default_out(spec_name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec_name) or "spec"
    return str(Path("runs") / f"train-{safe}-{datetime.now():%Y%m%d-%H%M%S}")


def _resume(ns: argparse.Namespace) -> tuple[TrainConfig, ArchSpec, dict[str, Any]]:
    if ns.out is None:
        raise ConfigError("--resume needs --out DIR, the folder of the run to continue")
    path = Path(ns.out) / "last.pt"
    ckpt = load_checkpoint(path)
    saved = TrainConfig.from_dict(ckpt["config"], str(path))
    given = _given(ns)
    for key, v in given.items():
        if key not in _RESUME_MAY_CHANGE and key != "out" and v != getattr(saved, key):
            raise ConfigError(f"--{key.replace('_', '-')}: a resumed run keeps its settings "
                              f"({saved.to_dict()[key]!r} in {path}); only "
                              f"{', '.join('--' + k.replace('_', '-') for k in _RESUME_MAY_CHANGE)}"
                              " may change")
    spec = spec_from_dict(ckpt["spec"], source=str(path))
    if ns.spec is not None:
        other = _make_spec(replace(saved, spec=ns.spec))
        if other != spec:
            raise ConfigError(f"SPEC {ns.spec!r} is not the spec of the run in {ns.out}; leave "
                              "SPEC out with --resume")
    c = replace(saved, **{k: v for k, v in given.items() if k in _RESUME_MAY_CHANGE},
                out=str(ns.out))
    _check_own(c)
    return c, spec, ckpt


def _fresh(ns: argparse.Namespace) -> tuple[TrainConfig, ArchSpec]:
    c = config_from_args(ns)
    c.proxy_config()  # every option is checked before the spec or the data are read
    spec = _make_spec(c)
    if c.out is None:
        c = replace(c, out=_default_out(spec.name))
    if (Path(c.out) / "last.pt").exists():
        raise ConfigError(f"{c.out} already holds a training run (last.pt); continue it with "
                          "--resume --out DIR, or choose another --out")
    return c, spec


@dataclass
class _Session:
    """What one invocation works with, beside the trainer's own state."""

    c: TrainConfig
    spec: ArchSpec
    splits: DataSplits
    out: Path
    command: str
    prior_seconds: float  # wall time of earlier invocations of this run
    t_start: float


def run(ns: argparse.Namespace, argv: list[str]) -> int:
    t_start = time.perf_counter()
    ckpt: dict[str, Any] | None = None
    if ns.resume:
        c, spec, ckpt = _resume(ns)
    else:
        c, spec = _fresh(ns)
    pcfg = c.proxy_config()
    _check_export_available(c.export)
    dev = _pick_device(c.device)
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "nas.train", *argv])

    fork = [dev.index or 0] if dev.type == "cuda" else []
    with torch_threads(c.threads), torch.random.fork_rng(devices=fork):
        splits = _load_data(c)
        if c.resolution is None:
            c = replace(c, resolution=splits.image_size)
        torch.manual_seed(c.seed)
        model = build_model(spec, num_classes=splits.num_classes, in_channels=splits.in_channels)
        trainer = Trainer(model, splits, pcfg.replace(resolution=c.resolution), dev, c.patience)
        if c.bn_momentum is None:
            c = replace(c, bn_momentum=_auto_bn_momentum(spec.bn_momentum,
                                                         trainer.steps_per_epoch))
        prior_seconds = 0.0
        if ckpt is not None:
            if ckpt["data"] != splits.describe():
                raise ConfigError(f"the data set differs from the one {c.out}/last.pt was "
                                  f"trained on ({ckpt['data']}); pass the same --data")
            if ckpt["epochs_planned"] != c.epochs and c.schedule == "cosine":
                print(f"note: --epochs {ckpt['epochs_planned']} -> {c.epochs} changes the "
                      "cosine schedule from here on", flush=True)
            trainer.load_state_dict(ckpt)
            prior_seconds = float(ckpt["seconds"])
        s = _Session(c, spec, splits, Path(c.out), command, prior_seconds, t_start)
        s.out.mkdir(parents=True, exist_ok=True)
        print(f"training {spec.name} on {splits.name} ({len(splits.train)} train / "
              f"{len(splits.val)} val images, {trainer.images_per_epoch} per epoch) at "
              f"{c.resolution} px on {dev.type}: {c.epochs} epochs, {c.optimizer} lr {c.lr:g}, "
              f"{c.schedule}; out {s.out}", flush=True)
        if ckpt is not None:
            print(f"resumed at epoch {trainer.epoch} (best val {trainer.best_val_accuracy:.4f} "
                  f"at epoch {trainer.best_epoch})", flush=True)

        from torch.utils.tensorboard import SummaryWriter
        # On resume, drop the events of epochs logged after the checkpoint was written.
        tb = SummaryWriter(log_dir=str(s.out / "tensorboard"),
                           purge_step=trainer.epoch + 1 if ckpt is not None else None)
        try:
            with bn_momentum_override(model, c.bn_momentum):
                status, reason = _train(trainer, s, tb)
        except KeyboardInterrupt:
            tb.close()
            print(f"\ninterrupted in epoch {trainer.epoch + 1}; last.pt holds epoch "
                  f"{trainer.epoch}: continue with python -m nas.train --resume --out {s.out}",
                  file=sys.stderr)
            return 130
        if trainer.best_state is None:
            tb.close()
            raise NasError(f"no epoch finished ({reason or status}); nothing to test or export")
        metrics = _finish(trainer, s, tb, status, reason)
    _print_summary(metrics, s.out)
    return 1 if status == "diverged" else 0


def _train(trainer: Trainer, s: _Session, tb: Any) -> tuple[str, str]:
    """The epoch loop: train, validate, log, checkpoint. Returns (status, reason)."""
    c = s.c
    session_start, session_epochs = time.perf_counter(), 0
    while trainer.epoch < c.epochs:
        if trainer.should_stop():
            return "early_stopped", (f"no validation improvement for {c.patience} epochs "
                                     f"after epoch {trainer.best_epoch}")
        if c.max_epochs_time is not None and session_epochs:
            spent = time.perf_counter() - session_start
            per = spent / session_epochs
            if spent + per > c.max_epochs_time:
                return "time_limit", (f"--max-epochs-time {c.max_epochs_time:g} s: another "
                                      f"epoch (~{per:.0f} s) would not fit; continue with "
                                      f"--resume --out {s.out}")
        try:
            row = trainer.train_epoch()
        except Diverged as e:
            return "diverged", str(e)
        session_epochs += 1
        _log_epoch(tb, row)
        tb.flush()
        _print_epoch(row, c.epochs, trainer.best_epoch)
        _save_epoch(trainer, s)
    return "completed", ""


def _save_epoch(trainer: Trainer, s: _Session) -> None:
    """``best.pt`` (when this epoch is the best), then ``last.pt`` and ``train.csv``."""
    state = trainer.state_dict()
    state.update(format=CHECKPOINT_FORMAT, config=s.c.to_dict(), spec=spec_to_dict(s.spec),
                 data=s.splits.describe(), epochs_planned=s.c.epochs, command=s.command,
                 seconds=s.prior_seconds + time.perf_counter() - s.t_start)
    if trainer.best_epoch == trainer.epoch:
        save_atomic({"format": CHECKPOINT_FORMAT, "model": state["best_model"],
                     "epoch": trainer.epoch, "val_accuracy": trainer.best_val_accuracy,
                     "spec": state["spec"], "config": state["config"],
                     "num_classes": s.splits.num_classes, "in_channels": s.splits.in_channels,
                     "preprocess": _preprocess(s.c, s.splits, trainer.stats)},
                    s.out / "best.pt")
    save_atomic(state, s.out / "last.pt")
    write_csv(trainer.history, s.out / "train.csv")


def _finish(trainer: Trainer, s: _Session, tb: Any, status: str, reason: str
            ) -> dict[str, Any]:
    """Test the best weights, export them, write ``metrics.json``; returns the metrics."""
    c, splits, model = s.c, s.splits, trainer.model
    trainer.load_best()
    test_acc = test_loss = None
    if splits.test is not None:
        feed = Feeder(splits.test, None, trainer.device, trainer.stats, c.resolution,
                       trainer.cfg.channels_last)
        test_acc, test_loss = evaluate_feeder(model, feed, trainer.cfg.eval_batch_size,
                                        trainer.device, trainer.amp_dtype)
        tb.add_scalar("test/accuracy", test_acc, trainer.best_epoch)
        tb.add_scalar("test/loss", test_loss, trainer.best_epoch)
    tb.close()

    preprocess = _preprocess(c, splits, trainer.stats)
    exported = None
    if c.export != "none":
        sample = splits.test if splits.test is not None else splits.val
        x, _ = Feeder(sample, None, torch.device("cpu"), trainer.stats, c.resolution,
                       False).batch(np.arange(min(8, len(sample))))
        exported = export_model(model, x, c.export, s.out, preprocess)

    train_seconds = sum(r["train_seconds"] for r in trainer.history)
    trained = count(s.spec, c.resolution, splits.num_classes, splits.in_channels)
    native = count(s.spec, None, splits.num_classes, splits.in_channels)
    metrics = {
        "spec": s.spec.name, "status": status, "reason": reason,
        "epochs_run": trainer.epoch, "epochs_planned": c.epochs,
        "best_epoch": trainer.best_epoch, "best_val_accuracy": trainer.best_val_accuracy,
        "test_accuracy": test_acc, "test_loss": test_loss,
        "test_images": None if splits.test is None else len(splits.test),
        "params": trained.params,
        "macs": {"trained_resolution": c.resolution, "at_trained_resolution": trained.macs,
                 "spec_resolution": s.spec.resolution, "at_spec_resolution": native.macs,
                 "num_classes": splits.num_classes, "in_channels": splits.in_channels},
        "seconds": s.prior_seconds + time.perf_counter() - s.t_start,
        "train_seconds": train_seconds,
        "images_per_second": (trainer.images_per_epoch * len(trainer.history)
                              / max(train_seconds, 1e-9)),
        "steps": trainer.step, "images_per_epoch": trainer.images_per_epoch,
        "val_curve": trainer.history, "data": splits.describe(), "preprocess": preprocess,
        "export": exported, "device": str(trainer.device), "threads": torch.get_num_threads(),
        "command": s.command, "config": c.to_dict(), "spec_dict": spec_to_dict(s.spec),
    }
    write_text_atomic(s.out / "metrics.json", json.dumps(_json_safe(metrics), indent=2) + "\n")
    return metrics


def _preprocess(c: TrainConfig, splits: DataSplits, stats: tuple[tuple[float, ...], ...]
                ) -> dict[str, Any]:
    return {"resolution": c.resolution, "in_channels": splits.in_channels,
            "mean": list(stats[0]), "std": list(stats[1]),
            "note": "pixels scaled to [0, 1], resized (bilinear) to resolution, then "
                    "(x - mean) / std per channel",
            "class_names": list(splits.train.class_names)}


def _log_epoch(tb: Any, row: dict[str, Any]) -> None:
    e = row["epoch"]
    for key, tag in (("train_loss", "train/loss"), ("train_accuracy", "train/accuracy"),
                     ("lr", "train/lr"), ("images_per_second", "train/images_per_second"),
                     ("val_accuracy", "val/accuracy"), ("val_loss", "val/loss"),
                     ("best_val_accuracy", "val/best_accuracy")):
        tb.add_scalar(tag, row[key], e)


def _print_epoch(row: dict[str, Any], epochs: int, best_epoch: int) -> None:
    mark = " *" if best_epoch == row["epoch"] else ""
    print(f"epoch {row['epoch']:>3}/{epochs}  loss {row['train_loss']:.4f}  "
          f"train {row['train_accuracy']:.4f}  val {row['val_accuracy']:.4f}{mark}  "
          f"lr {row['lr']:.3g}  {row['train_seconds'] + row['eval_seconds']:.1f} s  "
          f"{row['images_per_second']:.0f} img/s", flush=True)


def _print_summary(m: dict[str, Any], out: Path) -> None:
    from nas.units import format_macs
    mc = m["macs"]
    test = ("no test split" if m["test_accuracy"] is None
            else f"test accuracy {m['test_accuracy']:.4f} ({m['test_images']} images)")
    print(f"{m['status']}{': ' + m['reason'] if m['reason'] else ''}")
    print(f"{m['spec']}: best val {m['best_val_accuracy']:.4f} at epoch {m['best_epoch']}/"
          f"{m['epochs_run']}; {test}; {m['params'] / 1e6:.3f}M params, "
          f"{format_macs(mc['at_trained_resolution'])} MACs at {mc['trained_resolution']} px "
          f"({format_macs(mc['at_spec_resolution'])} at {mc['spec_resolution']} px); "
          f"{m['seconds']:.0f} s, {m['images_per_second']:.0f} img/s")
    exported = f", {m['export']['path']}" if m["export"] else ""
    print(f"wrote {out}/: metrics.json, train.csv, best.pt, last.pt{exported}, tensorboard/")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        ns = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed
        return int(e.code or 0)
    try:
        return run(ns, argv)
    except NasError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; continue with: python -m nas.train --resume --out DIR",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
