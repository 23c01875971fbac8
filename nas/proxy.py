"""Proxy training: train a child briefly and measure its validation accuracy.

:func:`train_proxy` takes a built model, :class:`~nas.data.DataSplits` (or a ``(train, val)``
pair of :class:`~nas.data.ImageData`) and a :class:`ProxyConfig`, and returns a
:class:`ProxyResult`. It imports neither Ray nor Tune: a Tune trainable passes ``on_epoch``
to report intermediate results.

Data handling. The uint8 arrays may be read-only views of Ray's object store, so they are
never written: each batch is gathered with numpy fancy indexing (a copy of that batch only),
turned into a tensor, scaled to [0, 1], resized to ``cfg.resolution`` if set, augmented if
``cfg.augment`` (random crop with zero padding of ``size // 8`` and horizontal flip, per
image, on the batch tensor), and normalised with the training set's per-channel mean/std.
On CUDA the images used are uploaded once as uint8 and batches are gathered on the GPU.

Outcomes. ``status`` is ``"ok"``; ``"diverged"`` when the training loss became non-finite
(training stops, ``accuracy`` is 0.0 and ``val_loss`` is NaN, no exception is raised: the
caller records the outcome and ``reason``); or ``"timeout"`` when ``cfg.max_seconds`` of
training ran out (the partly trained model is still evaluated and its accuracy reported).
``on_epoch`` returning True stops training early with status ``"ok"`` and
``stopped_early=True``.

Determinism. The training subset, the batch order and the augmentation are drawn from
``cfg.seed``; the global torch RNG (dropout, drop path) is seeded inside
``torch.random.fork_rng`` so the caller's RNG state is left as it was. Same seed, same model
initialisation and same thread count give the same result on CPU.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas.data import DataSplits, ImageData
from nas.errors import ConfigError, DataError, where

OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")
SCHEDULES = ("cosine", "constant", "step", "exponential")
AMP_MODES = ("auto", "off", "bf16", "fp16")
STATUSES = ("ok", "diverged", "timeout")

# How often (in steps) the loss is checked for NaN/inf: each check synchronises with the GPU.
_FINITE_CHECK_EVERY = 10


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ProxyConfig:
    """How a child is trained. Fields and their meaning:

    epochs            passes over the training subset.
    train_subset      training images per epoch: a seeded random subset fixed for the run
                      (None = all; larger than the training set = all).
    batch_size        training batch size (the last partial batch of an epoch is dropped).
    resolution        resize inputs on the fly to this many pixels (None = native size).
    width_mult        width multiplier for the child; stored here, applied by the caller to
                      the spec before building (``nas.scale_spec(spec, width=...)``).
    optimizer         sgd (Nesterov when momentum > 0) | rmsprop (alpha 0.9 as TF's decay,
                      eps 1e-3, which PyTorch adds outside the square root, unlike TF)
                      | adam | adamw. ``momentum`` is used by sgd and rmsprop.
    lr, momentum, weight_decay
                      weight decay applies to weights with more than one dimension, not to
                      biases or batch-norm parameters.
    schedule          cosine (to 0) | constant | step (``lr * decay_rate ** floor(e /
                      decay_epochs)``) | exponential (``lr * decay_rate ** (e / decay_epochs)``),
                      ``e`` in fractional epochs; after ``warmup_epochs`` of linear warm-up.
    label_smoothing   cross-entropy label smoothing in [0, 1).
    augment           random crop (zero padding size // 8) and horizontal flip.
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
    lr: float = 0.0015
    momentum: float = 0.9
    weight_decay: float = 1e-5
    schedule: str = "cosine"
    warmup_epochs: float = 0.3
    decay_rate: float = 0.97
    decay_epochs: float = 2.4
    label_smoothing: float = 0.0
    augment: bool = False
    seed: int = 0
    amp: str = "auto"
    bn_momentum: float | None = 0.1
    eval_batch_size: int = 512
    channels_last: bool = True
    num_threads: int | None = None
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        _validate(self, None)

    def replace(self, **changes: Any) -> "ProxyConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML/JSON-safe); ``ProxyConfig.from_dict(cfg.to_dict()) == cfg``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Any, source: str | None = None) -> "ProxyConfig":
        """Build from plain data strictly: unknown keys, wrong types and bad ranges raise
        :class:`~nas.errors.ConfigError` naming the key (and ``source``, the file)."""
        if d is None:
            d = {}
        if not isinstance(d, Mapping):
            raise ConfigError(f"{where(source, 'top level')}: expected a mapping of proxy "
                              f"settings, got {type(d).__name__}")
        unknown = sorted(str(k) for k in d if k not in _FIELDS)
        if unknown:
            raise ConfigError(f"{where(source, unknown[0])}: unknown proxy setting; allowed: "
                              f"{', '.join(_FIELDS)}")
        kwargs = {}
        for k, v in d.items():
            kwargs[k] = _coerce(k, v, source)
        _validate(_Overlay(kwargs), source)  # first, so the error names the file
        return cls(**kwargs)


class _Overlay:
    """The defaults overlaid with ``kwargs``: validated before construction."""

    def __init__(self, kwargs: Mapping[str, Any]) -> None:
        for f in dataclasses.fields(ProxyConfig):
            setattr(self, f.name, kwargs.get(f.name, f.default))


_FIELDS = tuple(f.name for f in dataclasses.fields(ProxyConfig))
# kind of each field: int, num (int or float), str, bool; "?" = None allowed
_KINDS = {"epochs": "int", "train_subset": "int?", "batch_size": "int", "resolution": "int?",
          "width_mult": "num", "optimizer": "str", "lr": "num", "momentum": "num",
          "weight_decay": "num", "schedule": "str", "warmup_epochs": "num", "decay_rate": "num",
          "decay_epochs": "num", "label_smoothing": "num", "augment": "bool", "seed": "int",
          "amp": "str", "bn_momentum": "num?", "eval_batch_size": "int", "channels_last": "bool",
          "num_threads": "int?",
          "max_seconds": "num?"}
assert set(_KINDS) == set(_FIELDS)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float, np.integer, np.floating))
            and not isinstance(v, (bool, np.bool_)) and math.isfinite(float(v)))


def _coerce(key: str, v: Any, source: str | None) -> Any:
    kind = _KINDS[key]
    if v is None:
        if kind.endswith("?"):
            return None
        raise ConfigError(f"{where(source, key)}: got null; this setting needs a value")
    kind = kind.rstrip("?")
    ok = {"int": _is_int, "num": _is_num, "str": lambda x: isinstance(x, str),
          "bool": lambda x: isinstance(x, bool)}[kind](v)
    if not ok:
        what = {"int": "an integer", "num": "a finite number", "str": "a string",
                "bool": "true or false"}[kind]
        hint = (" (YAML reads 3e8 as a string: write 3.0e+8)" if isinstance(v, str)
                and kind in ("int", "num") else "")
        raise ConfigError(f"{where(source, key)}: got {v!r}; expected {what}{hint}")
    if kind == "int":
        return int(v)
    if kind == "num":
        return float(v)
    return v


def _validate(c: Any, source: str | None) -> None:
    def fail(key: str, msg: str) -> None:
        raise ConfigError(f"{where(source, key)}: got {getattr(c, key)!r}; {msg}")

    for key in _FIELDS:  # types, for direct construction (from_dict has already coerced)
        v, kind = getattr(c, key), _KINDS[key]
        if v is None and kind.endswith("?"):
            continue
        kind = kind.rstrip("?")
        good = {"int": _is_int, "num": _is_num, "str": lambda x: isinstance(x, str),
                "bool": lambda x: isinstance(x, bool)}[kind](v)
        if not good:
            fail(key, {"int": "expected an integer", "num": "expected a finite number",
                       "str": "expected a string", "bool": "expected true or false"}[kind])
    if c.epochs < 1:
        fail("epochs", "use an integer >= 1")
    if c.train_subset is not None and c.train_subset < 2:
        fail("train_subset", "use an image count >= 2, or null for the whole training set")
    if c.batch_size < 2:
        fail("batch_size", "use an integer >= 2 (batch norm needs two images)")
    if c.resolution is not None and c.resolution < 4:
        fail("resolution", "use an integer >= 4 (pixels), or null for the native size")
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
    if c.max_seconds is not None and not c.max_seconds > 0.0:
        fail("max_seconds", "use a number of seconds > 0, or null for no cap")


def load_proxy_config(path: str | os.PathLike[str]) -> ProxyConfig:
    """Read a proxy config from YAML, strictly. ``path`` may name a bundled config
    (``"proxy-default"``, ``"proxy-smoke"``)."""
    from pathlib import Path

    from nas.io import config_path, read_yaml

    p = Path(path)
    if not p.exists() and os.sep not in str(path) and not str(path).endswith((".yaml", ".yml")):
        p = config_path(str(path))
    return ProxyConfig.from_dict(read_yaml(p, ConfigError), source=str(p))


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class ProxyResult:
    """What proxy training measured.

    accuracy           validation top-1 in [0, 1] (0.0 when diverged).
    val_loss           validation cross-entropy (NaN when diverged).
    train_loss         mean training loss of the last epoch run (may be non-finite when diverged).
    epochs_done        epochs completed (a diverged or timed-out epoch is not counted).
    seconds            wall time of the whole call: statistics, training and evaluation.
    train_seconds      wall time spent in training steps.
    images_per_second  training throughput (images / train_seconds).
    status             "ok" | "diverged" | "timeout".
    steps              optimiser steps taken.
    train_images       training images per epoch actually used.
    stopped_early      ``on_epoch`` asked to stop.
    reason             why training ended other than normally ("" when it did not).
    """

    accuracy: float
    val_loss: float
    train_loss: float
    epochs_done: int
    seconds: float
    train_seconds: float
    images_per_second: float
    status: str = "ok"
    steps: int = 0
    train_images: int = 0
    stopped_early: bool = False
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# --------------------------------------------------------------------------- batches


class Feeder:
    """Turns index arrays into normalised float batches on ``device``, never writing the source."""

    def __init__(self, data: ImageData, indices: np.ndarray | None, device: torch.device,
                 stats: tuple[tuple[float, ...], tuple[float, ...]], resolution: int | None,
                 channels_last: bool) -> None:
        self.device = device
        self.on_gpu = device.type != "cpu"
        images, labels = data.images, data.labels
        self.index = indices  # batch positions -> rows of the source arrays (None: identity)
        if self.on_gpu:  # one upload of the uint8 images used, then gathers on the device
            if indices is not None:
                images, labels = images[indices], labels[indices]
                self.index = None
            self.images = torch.as_tensor(np.ascontiguousarray(images)).to(device)
            self.labels = torch.as_tensor(np.ascontiguousarray(labels)).to(device)
        else:
            self.images, self.labels = images, labels
        self.n = len(labels) if indices is None else len(indices)
        mean, std = stats
        c = data.in_channels
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, c, 1, 1) * 255
        self.inv_std = 1.0 / (torch.tensor(std, dtype=torch.float32, device=device)
                              .view(1, c, 1, 1) * 255)
        self.size = resolution
        self.native = data.image_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def raw(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if self.on_gpu:
            t = torch.as_tensor(idx, device=self.device)
            return self.images.index_select(0, t), self.labels.index_select(0, t)
        rows = idx if self.index is None else self.index[idx]
        # Fancy indexing copies just this batch, so the tensor owns writable memory.
        return torch.from_numpy(self.images[rows]), torch.from_numpy(self.labels[rows])

    def batch(self, idx: np.ndarray, augment: bool = False,
              gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.raw(idx)
        x = x.to(self.device, non_blocking=True).float()
        if self.size is not None and self.size != self.native:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=self.size < self.native)
        if augment:
            x = _crop_flip(x, gen)
        x = (x - self.mean) * self.inv_std
        return x.contiguous(memory_format=self.memory_format), y.to(self.device, non_blocking=True)


def _crop_flip(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Per-image random crop (zero padding of size // 8) and horizontal flip, vectorised."""
    n, c, h, w = x.shape
    pad = max(1, h // 8)
    # Draws come from a CPU generator so CPU and CUDA runs use the same numbers.
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(h, device=x.device)  # n x h
    cols = dx[:, None] + torch.arange(w, device=x.device)  # n x w
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = padded[torch.arange(n, device=x.device)[:, None, None], :, rows[:, :, None],
                 cols[:, None, :]]  # n x h x w x c (advanced indices first)
    return out.permute(0, 3, 1, 2)


# --------------------------------------------------------------------------- helpers


def resolve_device(device: str | torch.device) -> torch.device:
    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: CUDA is not available here; use device 'cpu'")
    return d


def amp_settings(cfg: ProxyConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use a gradient scaler)."""
    mode = cfg.amp
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None, False
    if mode == "auto":
        return (torch.bfloat16, False) if torch.cuda.is_bf16_supported() else (torch.float16, True)
    if mode == "fp16":
        if device.type != "cuda":
            raise ConfigError("amp: fp16 autocast needs a CUDA device; use amp 'off' or 'bf16' "
                              "on CPU")
        return torch.float16, True
    return torch.bfloat16, False


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


@contextmanager
def bn_momentum_override(model: nn.Module, momentum: float | None) -> Iterator[None]:
    if momentum is None:
        yield
        return
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    before = [m.momentum for m in norms]
    for m in norms:
        m.momentum = momentum
    try:
        yield
    finally:
        for m, v in zip(norms, before):
            m.momentum = v


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_optimizer(model: nn.Module, cfg: ProxyConfig) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.momentum > 0)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=0.9, eps=1e-3, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_at(cfg: ProxyConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate for optimiser step ``step`` (0-based)."""
    total = cfg.epochs * steps_per_epoch
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        frac = (step - warm) / max(1, total - warm)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * frac))
    epoch = step / steps_per_epoch
    if cfg.schedule == "step":
        return cfg.lr * cfg.decay_rate ** math.floor(epoch / cfg.decay_epochs)
    return cfg.lr * cfg.decay_rate ** (epoch / cfg.decay_epochs)


def _as_pair(data: DataSplits | tuple[ImageData, ImageData]) -> tuple[ImageData, ImageData]:
    if isinstance(data, DataSplits):
        return data.train, data.val
    if (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(d, ImageData) for d in data)):
        return data[0], data[1]
    raise TypeError("train_proxy needs DataSplits or a (train, val) pair of ImageData, got "
                    f"{type(data).__name__}")


# --------------------------------------------------------------------------- evaluation


def evaluate(model: nn.Module, data: ImageData, cfg: ProxyConfig | None = None,
             device: str | torch.device = "cpu",
             stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
             ) -> tuple[float, float]:
    """Top-1 accuracy in [0, 1] and mean cross-entropy of ``model`` on ``data``.

    ``stats`` is the (mean, std) per channel used for normalisation; pass the *training*
    set's (``splits.train.channel_stats()``) when evaluating a test set. None uses
    ``data``'s own statistics. ``cfg`` supplies resolution, eval batch size, amp and memory
    format (default: ``ProxyConfig()``).
    """
    cfg = cfg or ProxyConfig()
    dev = resolve_device(device)
    model.to(dev)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    feeder = Feeder(data, None, dev, stats or data.channel_stats(), cfg.resolution,
                     cfg.channels_last)
    amp_dtype, _ = amp_settings(cfg, dev)
    with torch_threads(cfg.num_threads):
        return evaluate_feeder(model, feeder, cfg.eval_batch_size, dev, amp_dtype)


def evaluate_feeder(model: nn.Module, feeder: Feeder, batch_size: int, device: torch.device,
              amp_dtype: torch.dtype | None) -> tuple[float, float]:
    if feeder.n == 0:
        raise DataError("evaluate: the data set is empty; use a non-empty validation split")
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    with torch.inference_mode():
        for start in range(0, feeder.n, batch_size):
            x, y = feeder.batch(np.arange(start, min(start + batch_size, feeder.n)))
            with autocast(device, amp_dtype):
                logits = model(x)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
            correct += (logits.argmax(1) == y).sum()
    return correct.item() / feeder.n, loss_sum.item() / feeder.n


# --------------------------------------------------------------------------- training


def train_proxy(model: nn.Module, data: DataSplits | tuple[ImageData, ImageData],
                cfg: ProxyConfig | None = None, device: str | torch.device = "cpu",
                on_epoch: Callable[[int, dict[str, Any]], bool | None] | None = None,
                stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
                ) -> ProxyResult:
    """Train ``model`` on ``data``'s training split as ``cfg`` says; score it on ``val``.

    ``on_epoch(epoch, metrics)`` is called after each completed epoch (``epoch`` counts
    from 1) with ``train_loss``, ``val_accuracy``, ``val_loss``, ``lr``, ``seconds`` and
    ``images_per_second``; returning True stops training. See the module docstring for the
    outcomes (no exception on divergence: ``status == "diverged"``).

    ``stats`` is the training set's per-channel (mean, std) in [0, 1] units; None computes
    it (``train.channel_stats()``, about 0.1 s for Fashion-MNIST), so a caller that trains
    many children may compute it once. The model is left on ``device`` in eval mode (and in
    channels-last format when ``cfg.channels_last``).
    """
    t_start = time.perf_counter()
    cfg = cfg or ProxyConfig()
    train, val = _as_pair(data)
    if train.num_classes != val.num_classes or train.in_channels != val.in_channels:
        raise ConfigError("train and val differ in classes or channels; load them together "
                          "with nas.data.load_splits")
    dev = resolve_device(device)
    amp_dtype, use_scaler = amp_settings(cfg, dev)
    fork_devices = ([torch.cuda.current_device() if dev.index is None else dev.index]
                    if dev.type == "cuda" else [])

    with (torch_threads(cfg.num_threads), torch.random.fork_rng(devices=fork_devices),
          bn_momentum_override(model, cfg.bn_momentum)):
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)

        stats = stats or train.channel_stats()
        subset = None
        if cfg.train_subset is not None and cfg.train_subset < len(train):
            subset = np.sort(rng.choice(len(train), size=cfg.train_subset, replace=False))
        feeder = Feeder(train, subset, dev, stats, cfg.resolution, cfg.channels_last)
        val_feeder = Feeder(val, None, dev, stats, cfg.resolution, cfg.channels_last)
        n = feeder.n
        if n < 2:
            raise DataError("train_proxy: need at least 2 training images; use a larger "
                            "training split")
        bs = min(cfg.batch_size, n)
        steps_per_epoch = n // bs  # the last partial batch is dropped
        train_images = steps_per_epoch * bs

        model.to(dev)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        opt = make_optimizer(model, cfg)
        scaler = torch.amp.GradScaler(dev.type) if use_scaler else None

        step, epochs_done, status, reason = 0, 0, "ok", ""
        stopped_early = False
        train_seconds, train_loss = 0.0, float("nan")
        for epoch in range(cfg.epochs):
            model.train()
            order = rng.permutation(n)
            loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
            seen = 0
            t_epoch = time.perf_counter()
            for b in range(steps_per_epoch):
                lr = lr_at(cfg, step, steps_per_epoch)
                for g in opt.param_groups:
                    g["lr"] = lr
                x, y = feeder.batch(order[b * bs:(b + 1) * bs], cfg.augment, gen)
                with autocast(dev, amp_dtype):
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                step += 1
                seen += 1
                loss_sum += loss.detach().double()
                last = b == steps_per_epoch - 1
                if (step % _FINITE_CHECK_EVERY == 0 or last) and not torch.isfinite(loss_sum):
                    status, reason = "diverged", (f"non-finite training loss at epoch {epoch + 1}, "
                                                  f"step {step}")
                    break
                if (cfg.max_seconds is not None and not (last and epoch == cfg.epochs - 1)
                        and train_seconds + time.perf_counter() - t_epoch > cfg.max_seconds):
                    status, reason = "timeout", (f"training time cap of {cfg.max_seconds:g} s "
                                                 f"reached at epoch {epoch + 1}, step {step}")
                    break
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            train_seconds += time.perf_counter() - t_epoch
            train_loss = loss_sum.item() / max(seen, 1)
            if status != "ok":
                break
            epochs_done += 1
            acc, vloss = evaluate_feeder(model, val_feeder, cfg.eval_batch_size, dev, amp_dtype)
            if on_epoch is not None:
                metrics = {"epoch": epochs_done, "train_loss": train_loss, "val_accuracy": acc,
                           "val_loss": vloss, "lr": lr, "seconds": time.perf_counter() - t_start,
                           "images_per_second": step * bs / max(train_seconds, 1e-9)}
                if on_epoch(epochs_done, metrics):
                    stopped_early = epochs_done < cfg.epochs
                    break

        if status == "diverged":
            acc, vloss = 0.0, float("nan")
        elif status == "timeout":
            acc, vloss = evaluate_feeder(model, val_feeder, cfg.eval_batch_size, dev, amp_dtype)
        model.eval()

    return ProxyResult(
        accuracy=float(acc), val_loss=float(vloss), train_loss=float(train_loss),
        epochs_done=epochs_done, seconds=time.perf_counter() - t_start,
        train_seconds=train_seconds,
        images_per_second=step * bs / train_seconds if train_seconds > 0 else 0.0,
        status=status, steps=step, train_images=train_images, stopped_early=stopped_early,
        reason=reason)
