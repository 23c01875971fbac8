"""The recipe: how a model is trained, as one frozen dataclass with one validator.

A proxy run and full training differ only in their recipe (and in what the caller does
around the epochs: checkpoints, early stopping).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from nas.arch.spec import MIN_RESOLUTION
from nas.core.checks import is_int, is_number
from nas.core.errors import ConfigError, where
from nas.core.settings import join, unknown_key

OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")
SCHEDULES = ("cosine", "constant", "step", "exponential")
AMP_MODES = ("auto", "off", "bf16", "fp16")
AUTO_AUGMENT = ("none", "trivial")

# augment "auto": crop and flip from this many optimizer steps in the run (epochs times
# steps per epoch). EfficientNet-B0 on Fashion-MNIST, the default recipe, 3 seeds, learned
# less with them in runs of 15, 429 and 1,287 steps, the ranges apart at each
# (docs/results/short-runs.md); longer runs keep them, as the recipe was measured.
AUGMENT_MIN_STEPS = 1500


def is_augment(value: Any) -> bool:
    """Whether ``value`` is a value of ``augment``: True, False or "auto"."""
    return isinstance(value, bool) or value == "auto"


def describe_augment(augment: bool | str) -> str:
    """``augment`` in words: on, off, or when auto turns it on."""
    if augment == "auto":
        return f"in runs of {AUGMENT_MIN_STEPS:,} steps or more"
    return "on" if augment else "off"


def augment_on(augment: bool | str, epochs: int, steps_per_epoch: int) -> bool:
    """Whether a run of ``epochs`` x ``steps_per_epoch`` steps crops and flips."""
    if augment == "auto":
        return epochs * steps_per_epoch >= AUGMENT_MIN_STEPS
    return bool(augment)

# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Recipe:
    """How a model is trained: a proxy run (a short recipe) and full training (a long one)
    are the same settings. Fields and their meaning:

    epochs            passes over the training subset.
    train_subset      training images per epoch: a seeded random subset fixed for the run
                      (None = all; larger than the training set = all).
    batch_size        training batch size (the last partial batch of an epoch is dropped).
    resolution        resize inputs on the fly to this many pixels (None = native size).
    width_mult        width multiplier for the child; stored here, applied by the caller to
                      the spec before building (``nas.scale_spec(spec, width=...)``).
    optimizer         sgd (Nesterov when momentum > 0) | rmsprop (TF-style RMSProp as in
                      the paper: decay 0.9, eps 1e-3 inside the square root, the squared-
                      gradient average starting at 1, lr inside the momentum, coupled L2
                      weight decay; :mod:`nas.training.rmsprop`) | adam | adamw (decoupled
                      weight decay). ``momentum`` is used by sgd and rmsprop.
    lr, momentum, weight_decay
                      weight decay applies to weights with more than one dimension, not to
                      biases or batch-norm parameters.
    schedule          cosine (to 0) | constant | step (``lr * decay_rate ** floor(e /
                      decay_epochs)``) | exponential (``lr * decay_rate ** (e / decay_epochs)``),
                      ``e`` in fractional epochs; after ``warmup_epochs`` of linear warm-up.
    label_smoothing   cross-entropy label smoothing in [0, 1).
    augment           random crop (zero padding size // 8) and horizontal flip: true,
                      false, or auto (on when the run takes at least
                      :data:`AUGMENT_MIN_STEPS` optimizer steps, off in shorter runs, which
                      they were measured to slow down; :func:`augment_on`).
    auto_augment      none | trivial: TrivialAugment (one of 14 ops per image at a uniform
                      random strength: geometric (rotate, shear, translate), photometric
                      (brightness, colour, contrast, sharpness, solarize, posterize,
                      autocontrast, equalize) or identity; see :mod:`nas.training.augment`).
    erasing           random-erasing probability: one rectangle per image (2-33 % of the
                      area, aspect 0.3-3.3) replaced by noise, after normalisation.
    ema_decay         exponential moving average of the weights (and batch-norm statistics)
                      used for evaluation, the best weights and export; None = off. The
                      decay ramps up as ``min(decay, (1 + step) / (10 + step))``.
    seed              draws the subset, batch order, augmentation, dropout.
    amp               auto (bf16 autocast on CUDA where supported, else fp16 with loss
                      scaling; off on CPU) | off | bf16 | fp16 (CUDA only).
    bn_momentum       batch-norm momentum (PyTorch convention) used while training, restored
                      afterwards; None = keep the model's. Specs carry TF's 0.01 (decay 0.99),
                      which leaves the running statistics mostly at their initial values
                      after the hundred-odd steps of a proxy run, so evaluation is garbage;
                      0.1 makes them track the weights.
    eval_batch_size   batch size for evaluation.
    channels_last     use channels-last memory format for model and inputs (on CPU about
                      2.5x faster for MBConv networks: oneDNN's depthwise kernels).
    num_threads       torch.set_num_threads during training (restored afterwards); None = leave.
    max_seconds       cap on training time (evaluation not included); None = no cap.
    """

    epochs: int = 1
    train_subset: int | None = None
    batch_size: int = 128
    resolution: int | None = None
    width_mult: float = 1.0
    # The optimiser defaults are the measured proxy recipe (configs/proxy-default.yaml).
    optimizer: str = "rmsprop"
    lr: float = 0.006
    momentum: float = 0.9
    weight_decay: float = 1e-5
    schedule: str = "cosine"
    warmup_epochs: float = 0.3
    decay_rate: float = 0.97
    decay_epochs: float = 2.4
    label_smoothing: float = 0.0
    augment: bool | str = False  # True, False or "auto"
    auto_augment: str = "none"
    erasing: float = 0.0
    ema_decay: float | None = None
    seed: int = 0
    amp: str = "auto"
    bn_momentum: float | None = 0.1
    eval_batch_size: int = 512
    channels_last: bool = True
    num_threads: int | None = None
    max_seconds: float | None = None

    # A section of a job's settings may name a bundled recipe (``proxy: proxy-smoke``).
    NAMED: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _validate(self, None)

    def replace(self, **changes: Any) -> "Recipe":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML/JSON-safe); ``Recipe.from_dict(cfg.to_dict()) == cfg``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_mapping(self) -> dict[str, Any]:
        """The recipe as a section of a job's settings (:mod:`nas.core.settings`)."""
        return self.to_dict()

    @classmethod
    def from_mapping(cls, d: Any, key: str = "") -> "Recipe":
        """A section of a job's settings at ``key`` (``proxy``): messages name
        ``proxy.epochs``."""
        return cls.from_dict(d, prefix=key)

    @classmethod
    def from_dict(cls, d: Any, source: str | None = None, prefix: str = "") -> "Recipe":
        """Build from plain data strictly: unknown keys, wrong types and bad ranges raise
        :class:`~nas.core.errors.ConfigError` naming the key (below ``prefix``, a section's
        path, and in ``source``, the file)."""
        if d is None:
            d = {}
        if not isinstance(d, Mapping):
            raise ConfigError(f"{where(source, prefix or 'top level')}: expected a mapping of "
                              f"recipe settings, got {type(d).__name__}")
        unknown = sorted(str(k) for k in d if k not in _FIELDS)
        if unknown:
            raise unknown_key(join(prefix, unknown[0]), _FIELDS, source)
        kwargs = {}
        for k, v in d.items():
            kwargs[k] = _coerce(k, v, source, prefix)
        _validate(_Overlay(kwargs), source, prefix)  # first, so the error names the file
        return cls(**kwargs)


class _Overlay:
    """The defaults overlaid with ``kwargs``: validated before construction."""

    def __init__(self, kwargs: Mapping[str, Any]) -> None:
        for f in dataclasses.fields(Recipe):
            setattr(self, f.name, kwargs.get(f.name, f.default))


_FIELDS = tuple(f.name for f in dataclasses.fields(Recipe))
# kind of each field: int, num (int or float), str, bool; "?" = None allowed
_KINDS = {"epochs": "int", "train_subset": "int?", "batch_size": "int", "resolution": "int?",
          "width_mult": "num", "optimizer": "str", "lr": "num", "momentum": "num",
          "weight_decay": "num", "schedule": "str", "warmup_epochs": "num", "decay_rate": "num",
          "decay_epochs": "num", "label_smoothing": "num", "augment": "bool|auto", "seed": "int",
          "auto_augment": "str", "erasing": "num", "ema_decay": "num?",
          "amp": "str", "bn_momentum": "num?", "eval_batch_size": "int", "channels_last": "bool",
          "num_threads": "int?",
          "max_seconds": "num?"}
assert set(_KINDS) == set(_FIELDS)


def _coerce(key: str, v: Any, source: str | None, prefix: str = "") -> Any:
    kind = _KINDS[key]
    if v is None:
        if kind.endswith("?"):
            return None
        raise ConfigError(f"{where(source, join(prefix, key))}: got null; this setting needs a "
                          "value")
    kind = kind.rstrip("?")
    ok = {"int": is_int, "num": is_number, "str": lambda x: isinstance(x, str),
          "bool": lambda x: isinstance(x, bool), "bool|auto": is_augment}[kind](v)
    if not ok:
        what = {"int": "an integer", "num": "a finite number", "str": "a string",
                "bool": "true or false", "bool|auto": "true, false or auto"}[kind]
        hint = (" (YAML reads 3e8 as a string: write 3.0e+8)" if isinstance(v, str)
                and kind in ("int", "num") else "")
        raise ConfigError(f"{where(source, join(prefix, key))}: got {v!r}; expected "
                          f"{what}{hint}")
    if kind == "int":
        return int(v)
    if kind == "num":
        return float(v)
    return v


def _validate(c: Any, source: str | None, prefix: str = "") -> None:
    def fail(key: str, msg: str) -> None:
        raise ConfigError(f"{where(source, join(prefix, key))}: got {getattr(c, key)!r}; {msg}")

    for key in _FIELDS:  # types, for direct construction (from_dict has already coerced)
        v, kind = getattr(c, key), _KINDS[key]
        if v is None and kind.endswith("?"):
            continue
        kind = kind.rstrip("?")
        good = {"int": is_int, "num": is_number, "str": lambda x: isinstance(x, str),
                "bool": lambda x: isinstance(x, bool), "bool|auto": is_augment}[kind](v)
        if not good:
            fail(key, {"int": "expected an integer", "num": "expected a finite number",
                       "str": "expected a string", "bool": "expected true or false",
                       "bool|auto": "expected true, false or auto"}[kind])
    if c.epochs < 1:
        fail("epochs", "use an integer >= 1")
    if c.train_subset is not None and c.train_subset < 2:
        fail("train_subset", "use an image count >= 2, or null for the whole training set")
    if c.batch_size < 2:
        fail("batch_size", "use an integer >= 2 (batch norm needs two images)")
    if c.resolution is not None and c.resolution < MIN_RESOLUTION:
        # The spec is built at this resolution (nas.arch.rounding.as_trained), and a spec
        # below MIN_RESOLUTION does not validate: every run would fail at its first step.
        fail("resolution", f"use an integer >= {MIN_RESOLUTION} (pixels, the smallest input "
                           "a spec takes), or null for the native size")
    if not 0.0 < c.width_mult <= 10.0:
        fail("width_mult", "use a multiplier in (0, 10]")
    if c.optimizer not in OPTIMIZERS:
        fail("optimizer", f"use one of {', '.join(OPTIMIZERS)}")
    if not c.lr > 0.0:
        fail("lr", "use a learning rate > 0")
    if not 0.0 <= c.momentum < 1.0:
        fail("momentum", "use a momentum in [0, 1)")
    if c.weight_decay < 0.0:
        fail("weight_decay", "use a weight decay >= 0")
    if c.schedule not in SCHEDULES:
        fail("schedule", f"use one of {', '.join(SCHEDULES)}")
    if c.warmup_epochs < 0.0 or c.warmup_epochs > c.epochs:
        fail("warmup_epochs", f"use 0 to epochs ({c.epochs}) epochs of warm-up")
    if not 0.0 < c.decay_rate <= 1.0:
        fail("decay_rate", "use a decay factor in (0, 1]")
    if not c.decay_epochs > 0.0:
        fail("decay_epochs", "use a number of epochs > 0")
    if not 0.0 <= c.label_smoothing < 1.0:
        fail("label_smoothing", "use a value in [0, 1)")
    if c.amp not in AMP_MODES:
        fail("amp", f"use one of {', '.join(AMP_MODES)}")
    if c.bn_momentum is not None and not 0.0 < c.bn_momentum <= 1.0:
        fail("bn_momentum", "use a PyTorch batch-norm momentum in (0, 1], or null to keep the "
             "model's")
    if c.eval_batch_size < 1:
        fail("eval_batch_size", "use an integer >= 1")
    if c.num_threads is not None and c.num_threads < 1:
        fail("num_threads", "use an integer >= 1, or null to leave torch's setting alone")
    if c.auto_augment not in AUTO_AUGMENT:
        fail("auto_augment", f"use one of {', '.join(AUTO_AUGMENT)}")
    if not 0.0 <= c.erasing <= 1.0:
        fail("erasing", "use a probability in [0, 1]")
    if c.ema_decay is not None and not 0.0 < c.ema_decay < 1.0:
        fail("ema_decay", "use a decay in (0, 1) such as 0.999, or null for no weight average")
    if c.max_seconds is not None and not c.max_seconds > 0.0:
        fail("max_seconds", "use a number of seconds > 0, or null for no cap")


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read a proxy config from YAML, strictly. ``path`` may name a bundled config
    (``"proxy-default"``, ``"proxy-smoke"``)."""
    from pathlib import Path

    from nas.core.files import config_path, read_yaml

    p = Path(path)
    if not p.exists() and os.sep not in str(path) and not str(path).endswith((".yaml", ".yml")):
        p = config_path(str(path))
    return Recipe.from_dict(read_yaml(p, ConfigError), source=str(p))


#: The default training recipe (configs/train-default.yaml): the defaults of ``effnas train``
#: (:class:`nas.training.settings.TrainSettings`), of the pipeline's training stage and of the
#: fidelity command's long schedule.
DEFAULT_RECIPE = "train-default"
