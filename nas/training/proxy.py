"""Proxy training: train a model briefly with a short recipe and measure its validation
accuracy. It is the training engine (:mod:`nas.training.engine`) run for ``recipe.epochs``
epochs with no checkpoints, a fixed training subset and an optional time cap.

:func:`train_proxy` takes a built model, :class:`~nas.data.DataSplits` (or a ``(train, val)``
pair of :class:`~nas.data.ImageData`) and a :class:`~nas.training.recipe.Recipe`, and returns a
:class:`ProxyResult`. It imports neither Ray nor Tune: a Tune trainable passes ``on_epoch``
to report intermediate results.

Outcomes. ``status`` is ``"ok"``; ``"diverged"`` when the training loss became non-finite
or the validation loss non-finite or above 10x the first epoch's (training stops, ``accuracy``
is 0.0 and ``val_loss`` is NaN, no exception is raised: the caller records the outcome and
``reason``, which says what and when; a search scores the child as failed); or ``"timeout"`` when ``recipe.max_seconds`` of
training ran out (the partly trained model is still evaluated and its accuracy reported).
``on_epoch`` returning True stops training early with status ``"ok"`` and
``stopped_early=True``.

Determinism. The training subset, the batch order and the augmentation are drawn from
``recipe.seed``; the global torch RNG (dropout, drop path) is seeded inside
``torch.random.fork_rng`` so the caller's RNG state is left as it was. Same seed, same model
initialisation and same thread count give the same result on CPU.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from nas.arch.builder import build_model
from nas.arch.spec import ArchSpec
from nas.core.errors import ConfigError
from nas.data import DataSplits, ImageData
from nas.training.device import (
    amp_settings,
    bn_momentum_override,
    pick_device,
    torch_threads,
)
from nas.training.engine import Engine, evaluate_feeder
from nas.training.feeder import Feeder, Stats
from nas.training.recipe import Recipe

STATUSES = ("ok", "diverged", "timeout")


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

def build_seeded(spec: ArchSpec, num_classes: int, in_channels: int, seed: int) -> nn.Module:
    """Build ``spec`` with initial weights drawn from ``seed`` alone (the caller's torch RNG
    state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(spec, num_classes=num_classes, in_channels=in_channels)


def _as_pair(data: DataSplits | tuple[ImageData, ImageData]) -> tuple[ImageData, ImageData]:
    if isinstance(data, DataSplits):
        return data.train, data.val
    if (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(d, ImageData) for d in data)):
        return data[0], data[1]
    raise TypeError("train_proxy needs DataSplits or a (train, val) pair of ImageData, got "
                    f"{type(data).__name__}")


def evaluate(model: nn.Module, data: ImageData, cfg: Recipe | None = None,
             device: str | torch.device = "cpu", stats: Stats | None = None
             ) -> tuple[float, float]:
    """Top-1 accuracy in [0, 1] and mean cross-entropy of ``model`` on ``data``.

    ``stats`` is the (mean, std) per channel used for normalisation; pass the *training*
    set's (``splits.train.channel_stats()``) when evaluating a test set. None uses
    ``data``'s own statistics. ``cfg`` supplies resolution, eval batch size, amp and memory
    format (default: ``Recipe()``).
    """
    cfg = cfg or Recipe()
    dev = pick_device(device)
    model.to(dev)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    feeder = Feeder(data, None, dev, stats or data.channel_stats(), cfg.resolution,
                    cfg.channels_last)
    amp_dtype, _ = amp_settings(cfg, dev)
    with torch_threads(cfg.num_threads):
        return evaluate_feeder(model, feeder, cfg.eval_batch_size, dev, amp_dtype)


def train_proxy(model: nn.Module, data: DataSplits | tuple[ImageData, ImageData],
                cfg: Recipe | None = None, device: str | torch.device = "cpu",
                on_epoch: Callable[[int, dict[str, Any]], bool | None] | None = None,
                stats: Stats | None = None) -> ProxyResult:
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
    cfg = cfg or Recipe()
    train, val = _as_pair(data)
    if train.num_classes != val.num_classes or train.in_channels != val.in_channels:
        raise ConfigError("train and val differ in classes or channels; load them together "
                          "with nas.data.load_splits")
    dev = pick_device(device)
    fork_devices = ([torch.cuda.current_device() if dev.index is None else dev.index]
                    if dev.type == "cuda" else [])

    with (torch_threads(cfg.num_threads), torch.random.fork_rng(devices=fork_devices),
          bn_momentum_override(model, cfg.bn_momentum)):
        torch.manual_seed(cfg.seed)
        engine = Engine(model, train, val, cfg, dev, stats=stats, resample_subset=False)
        status, reason, stopped_early = "ok", "", False
        train_seconds, train_loss = 0.0, float("nan")
        acc, vloss = 0.0, float("nan")
        for _ in range(cfg.epochs):
            left = None if cfg.max_seconds is None else cfg.max_seconds - train_seconds
            e = engine.train_epoch(time_left=left)
            train_seconds += e.train_seconds
            train_loss = e.train_loss
            if e.status == "diverged":
                status, reason = "diverged", f"diverged in epoch {e.epoch}: {e.reason}"
                break
            if e.status == "timeout":
                status, reason = "timeout", (f"training time cap of {cfg.max_seconds:g} s "
                                             f"reached at epoch {e.epoch}, step {e.step}")
                acc, vloss = engine.evaluate()
                break
            acc, vloss = e.val_accuracy, e.val_loss
            if on_epoch is not None:
                metrics = {"epoch": e.epoch, "train_loss": e.train_loss, "val_accuracy": acc,
                           "val_loss": vloss, "lr": e.lr,
                           "seconds": time.perf_counter() - t_start,
                           "images_per_second": engine.step * engine.batch_size
                           / max(train_seconds, 1e-9)}
                if on_epoch(e.epoch, metrics):
                    stopped_early = e.epoch < cfg.epochs
                    break
        model.eval()

    step, bs = engine.step, engine.batch_size
    return ProxyResult(
        accuracy=float(acc), val_loss=float(vloss), train_loss=float(train_loss),
        epochs_done=engine.epoch, seconds=time.perf_counter() - t_start,
        train_seconds=train_seconds,
        images_per_second=step * bs / train_seconds if train_seconds > 0 else 0.0,
        status=status, steps=step, train_images=engine.images_per_epoch,
        stopped_early=stopped_early, reason=reason)
