"""The settings of full training (``effnas train``, ``nas.run_train``, each model of the
pipeline's training stage): one frozen dataclass around the training recipe, torch-free.

:class:`TrainSettings` holds what a run asks for: the spec, the data, the model's changes,
the recipe's settings (:meth:`TrainSettings.recipe` is the
:class:`~nas.training.recipe.Recipe` they make) and the run's own (early stopping, the device,
the export, the folder). ``None`` means "derive it" where a field says so; :func:`resolve`
fills those in before a run starts, and the resolved settings are what ``last.pt`` and
``metrics.json`` record (``TrainSettings.from_mapping`` reads them back).

The recipe's defaults are the default recipe's (``configs/train-default.yaml``), the
project's one default for full training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from nas.core.checks import MAX_SEED, check_int, check_resolution
from nas.core.errors import ConfigError
from nas.core.settings import Settings, read_duration, read_path, setting
from nas.training.recipe import AUGMENT_MIN_STEPS, DEFAULT_RECIPE, Recipe, is_augment, load_recipe

DEVICES = ("auto", "cpu", "cuda")
EXPORTS = ("torchscript", "onnx", "none")

_DEFAULT = load_recipe(DEFAULT_RECIPE)


def read_augment(value: Any, key: str) -> bool | str:
    """``augment``: True, False or "auto" (crop and flip from AUGMENT_MIN_STEPS steps)."""
    if not is_augment(value):
        raise ConfigError(f"{key}={value!r}: expected true, false or auto (auto: crop and "
                          f"flip in runs of at least {AUGMENT_MIN_STEPS:,} steps)")
    return value
_LR_PER_256 = 0.016  # the paper's 0.256 at batch 4096 (the default lr of other optimizers)
_PAPER_WEIGHT_DECAY = 1e-5  # the default weight decay of other optimizers


@dataclass(frozen=True)
class TrainSettings(Settings):
    """Everything a training run needs (``effnas train --help`` describes each).

    spec              a spec YAML or a bundled name (``efficientnet-b0``); required.
    dataset, data     the data set (fashion-mnist, mnist, cifar10, cifar100, imagefolder)
                      and its folder (None: the installed one; with only ``data``, the
                      folder's format is detected).
    resolution        train and test at this size (None: the data's native size).
    width_mult, dropout, drop_path_rate
                      the spec's width scaled first; dropout and stochastic depth (None:
                      the spec's).
    epochs ... amp    the recipe (:class:`~nas.training.recipe.Recipe`); ``lr``,
                      ``weight_decay`` and ``warmup_epochs`` None are derived
                      (:func:`resolve`), ``bn_momentum`` None is automatic, ``ema_decay``
                      None or 0 is no weight average.
    val_size          training images held out for validation: a count or a fraction.
    train_subset      images per epoch, drawn afresh each epoch (None: all).
    patience          stop after this many epochs without a better validation accuracy.
    seed, threads, device, max_epochs_time, export, out
                      the run's seed, torch's CPU threads, the device, a time limit for
                      this invocation (seconds, or ``90m``), the export format and the run
                      folder (None: ``runs/train-SPEC-TIME``).
    """

    PRESETS: ClassVar[str] = "train"
    NOT_PRESETS: ClassVar[tuple[str, ...]] = ("default",)  # the default recipe, not a preset

    spec: str | None = setting(None, read=read_path)
    dataset: str | None = None
    data: str | None = setting(None, read=read_path)
    resolution: int | None = None  # None: the data's native size
    width_mult: float | None = None
    dropout: float | None = None  # None: the spec's
    drop_path_rate: float | None = None  # None: the spec's
    # The recipe's defaults are configs/train-default.yaml's (DEFAULT_RECIPE).
    epochs: int = _DEFAULT.epochs
    batch_size: int = _DEFAULT.batch_size
    optimizer: str = _DEFAULT.optimizer
    lr: float | None = None  # None: see default_lr
    momentum: float = _DEFAULT.momentum
    weight_decay: float | None = None  # None: see default_weight_decay
    schedule: str = _DEFAULT.schedule
    warmup_epochs: float | None = None  # None: the recipe's, at most a tenth of the epochs
    decay_rate: float = _DEFAULT.decay_rate
    decay_epochs: float = _DEFAULT.decay_epochs
    label_smoothing: float = _DEFAULT.label_smoothing
    bn_momentum: float | None = None  # None: auto
    augment: bool | str = setting(_DEFAULT.augment, read=read_augment)  # True, False, "auto"
    auto_augment: str = _DEFAULT.auto_augment
    erasing: float = _DEFAULT.erasing
    ema_decay: float | None = _DEFAULT.ema_decay  # None or 0: no weight average
    val_size: int | float = 5000
    train_subset: int | None = None
    patience: int | None = None
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    amp: str = _DEFAULT.amp
    max_epochs_time: float | None = setting(None, read=read_duration)
    export: str = "torchscript"
    out: str | None = setting(None, read=read_path)

    def __post_init__(self) -> None:
        for key in ("spec", "data", "out"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, key, read_path(value, key))
        for key in ("dropout", "drop_path_rate"):
            v = getattr(self, key)
            if v is not None and not 0.0 <= v < 1.0:
                raise ConfigError(f"{key}: got {v!r}; use a rate in [0, 1)")
        if self.patience is not None:
            check_int(self.patience, "patience", 1)
        if self.max_epochs_time is not None and not self.max_epochs_time > 0:
            raise ConfigError(f"max_epochs_time: got {self.max_epochs_time!r}; use a time > 0")
        if isinstance(self.val_size, float) and not 0.0 < self.val_size < 1.0:
            raise ConfigError(f"val_size: got {self.val_size!r}; use an image count >= 1 or a "
                              "fraction in (0, 1)")
        if isinstance(self.val_size, int) and self.val_size < 1:
            raise ConfigError(f"val_size: got {self.val_size!r}; use an image count >= 1 (the "
                              "validation set drives early stopping and the best weights)")
        if self.export not in EXPORTS:
            raise ConfigError(f"export={self.export!r}: use one of {', '.join(EXPORTS)}")
        if self.device not in DEVICES:
            raise ConfigError(f"device={self.device!r}: use one of {', '.join(DEVICES)}")
        if self.threads is not None:
            check_int(self.threads, "threads", 1)
        check_int(self.seed, "seed", 0, MAX_SEED)  # torch's generator overflows past 2^63
        resolve(self).recipe()  # the recipe's own checks, on what the run will use

    def recipe(self) -> Recipe:
        """The recipe part as a :class:`~nas.training.recipe.Recipe` (which validates it)."""
        d = {"epochs": self.epochs, "batch_size": self.batch_size,
             "resolution": self.resolution,
             "width_mult": 1.0 if self.width_mult is None else self.width_mult,
             "optimizer": self.optimizer, "lr": self.lr, "momentum": self.momentum,
             "weight_decay": self.weight_decay, "schedule": self.schedule,
             "warmup_epochs": self.warmup_epochs, "decay_rate": self.decay_rate,
             "decay_epochs": self.decay_epochs, "label_smoothing": self.label_smoothing,
             "augment": self.augment, "auto_augment": self.auto_augment,
             "erasing": self.erasing, "ema_decay": self.ema_decay or None, "seed": self.seed,
             "amp": self.amp, "bn_momentum": self.bn_momentum, "num_threads": self.threads,
             "train_subset": self.train_subset, "channels_last": True}
        return Recipe.from_dict({k: v for k, v in d.items() if v is not None})

    def check(self, force: bool = False) -> None:
        """A resolution over 4096 px is refused as a likely typo unless ``force``."""
        if self.resolution is not None:
            check_resolution(self.resolution, "resolution", force)

    def resolved(self) -> "TrainSettings":
        """:func:`resolve`."""
        return resolve(self)

    def to_dict(self) -> dict[str, Any]:
        return self.to_mapping()


def default_lr(optimizer: str, batch_size: int) -> float:
    """The learning rate when none is given: the default recipe's for its optimizer (at any
    batch size); for the others the paper's RMSProp rate scaled to the batch, 0.016 per 256
    images (its 0.256 at batch 4096)."""
    if optimizer == _DEFAULT.optimizer:
        return _DEFAULT.lr
    return _LR_PER_256 * batch_size / 256


def default_weight_decay(optimizer: str) -> float:
    """The weight decay when none is given: the default recipe's for its optimizer (AdamW's
    decoupled 0.05), else the paper's 1e-5 (an L2 penalty of 0.05 would swamp Adam's or
    RMSProp's gradients)."""
    return _DEFAULT.weight_decay if optimizer == _DEFAULT.optimizer else _PAPER_WEIGHT_DECAY


def resolve(c: TrainSettings) -> TrainSettings:
    """Fill in the defaults that derive from other settings (before any data is read)."""
    lr = c.lr if c.lr is not None else default_lr(c.optimizer, c.batch_size)
    wd = c.weight_decay if c.weight_decay is not None else default_weight_decay(c.optimizer)
    warm = (c.warmup_epochs if c.warmup_epochs is not None
            else min(_DEFAULT.warmup_epochs, c.epochs / 10))
    if (lr, wd, warm) == (c.lr, c.weight_decay, c.warmup_epochs):
        return c
    return dataclasses.replace(c, lr=lr, weight_decay=wd, warmup_epochs=warm)


def check(c: TrainSettings) -> None:
    """The settings' checks (they run when the settings are made; kept for callers that
    check explicitly)."""
    dataclasses.replace(c)


__all__ = ["TrainSettings", "DEVICES", "EXPORTS", "default_lr", "default_weight_decay",
           "resolve", "check"]
