"""The training engine: the one place where a training step is computed.

A proxy run (:func:`nas.training.proxy.train_proxy`) and full training
(:mod:`nas.training.fit`) both drive an :class:`Engine` one epoch at a time; they differ
only in their recipe and in what they do between epochs (full training checkpoints and stops
early, a proxy run has a time cap). A supernet trains through the same engine with a path
sampler (``before_step``).

Randomness. The engine owns a numpy generator (batch order, the training subset) and a
torch CPU generator (augmentation), both seeded from ``recipe.seed``; the global torch RNG
(dropout, drop path) is the caller's to seed. ``state_dict`` captures all of it, so a run
continued from a checkpoint takes the same steps as one that never stopped (on CPU, with the
same thread count).

Training subset. ``recipe.train_subset`` images per epoch: drawn once for the whole run
(``resample_subset=False``, a proxy run: every epoch sees the same images) or afresh every
epoch (``True``, full training).

Weight average. With ``recipe.ema_decay`` the engine keeps an exponential moving average of
the model's state (weights and batch-norm statistics) after every step; validation, the
best weights, testing and export use the average, training continues on the raw weights.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas.core.errors import DataError
from nas.data import ImageData
from nas.training.device import amp_settings, autocast
from nas.training.feeder import Feeder, Stats
from nas.training.optim import lr_at, make_optimizer
from nas.training.recipe import Recipe, augment_on

# How often (in steps) the loss is checked for NaN/inf on a GPU, where each check synchronises
# with it (on the CPU every step is checked).
FINITE_CHECK_EVERY = 10
# Divergence seen at validation: a validation loss above this multiple of the run's first
# validation loss, or (``chance_check``) a validation accuracy at most CHANCE_MARGIN times
# chance (1 / number of classes) with a validation loss above CHANCE_LOSS_FACTOR times
# ln(classes), the loss of a uniform guess: confidently wrong, as blown-up weights are. A
# model at chance with a loss near ln(classes) has not learned yet (the pipeline's smoke
# runs: 4 steps, accuracy 0.09-0.11, loss 2.36-2.42 for 10 classes) and is not stopped.
EXPLODED_LOSS_FACTOR = 10.0
CHANCE_MARGIN = 1.1
CHANCE_LOSS_FACTOR = 1.5


@dataclass(frozen=True)
class EpochResult:
    """One epoch of training and its validation pass.

    ``status`` is ``ok``, ``diverged`` or ``timeout`` (the time given ran out inside the
    epoch; the epoch is not counted). ``diverged``: the training loss became non-finite (no
    validation ran), or the validation loss was non-finite or above
    ``EXPLODED_LOSS_FACTOR`` times the run's first, or (with the engine's ``chance_check``)
    the validation accuracy was at chance with a loss well above a uniform guess's; the epoch is not counted either (the engine's
    epoch, best weights and history stay those of the last good epoch). ``reason`` says
    what and when, in one line.
    """

    epoch: int                 # 1-based; the epoch this result is about
    status: str
    step: int                  # optimiser steps taken so far in the run
    steps: int                 # steps taken in this epoch
    lr: float                  # learning rate of the last step
    train_loss: float          # mean over the epoch's steps (non-finite when diverged)
    train_accuracy: float
    train_seconds: float
    val_accuracy: float | None
    val_loss: float | None
    eval_seconds: float
    images_per_second: float
    reason: str = ""

    def row(self) -> dict[str, Any]:
        """The epoch as a ``train.csv`` row."""
        return {"epoch": self.epoch, "step": self.step, "lr": self.lr,
                "train_loss": self.train_loss, "train_accuracy": self.train_accuracy,
                "val_accuracy": self.val_accuracy, "val_loss": self.val_loss,
                "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds,
                "images_per_second": self.images_per_second}


def evaluate_feeder(model: nn.Module, feeder: Feeder, batch_size: int, device: torch.device,
                    amp_dtype: torch.dtype | None) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` over every image of ``feeder``."""
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


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


class Engine:
    """One model, its optimizer, schedule position, RNGs and validation history.

    Args:
        model: the network (moved to ``device``, channels-last if the recipe says so).
        train, val: the training images and the held-out validation images.
        recipe: how to train.
        device: where.
        stats: the training set's per-channel (mean, std) in [0, 1] units; None computes it.
        resample_subset: see the module docstring.
        before_step: called with the step's number (0-based, over the run) before each
            batch is drawn (a supernet samples its path here); None for ordinary networks.
        chance_check: a validation accuracy at chance (at most ``CHANCE_MARGIN / classes``)
            with a validation loss above ``CHANCE_LOSS_FACTOR * ln(classes)`` ends the epoch
            as ``diverged`` (full training; a proxy run reports its accuracy).
    """

    def __init__(self, model: nn.Module, train: ImageData, val: ImageData, recipe: Recipe,
                 device: torch.device, stats: Stats | None = None,
                 resample_subset: bool = True,
                 before_step: Callable[[int], None] | None = None,
                 chance_check: bool = False) -> None:
        self.model, self.recipe, self.device = model, recipe, device
        self.chance = 1.0 / max(1, val.num_classes) if chance_check else None
        self.before_step = before_step
        self.rng = np.random.default_rng(recipe.seed)  # batch order and subsets
        self.gen = torch.Generator().manual_seed(recipe.seed)  # augmentation
        self.stats = stats or train.channel_stats()
        self.resample_subset = resample_subset
        n = len(train)
        self.pool: np.ndarray | None = None  # the run's fixed subset (resample_subset=False)
        if not resample_subset and recipe.train_subset is not None and recipe.train_subset < n:
            self.pool = np.sort(self.rng.choice(n, size=recipe.train_subset, replace=False))
        per_epoch = n if recipe.train_subset is None else min(recipe.train_subset, n)
        if per_epoch < 2:
            raise DataError(f"only {per_epoch} training images; need at least 2 (use a larger "
                            "training split: lower the validation size or raise train_subset)")
        model.to(device)
        if recipe.channels_last:
            model.to(memory_format=torch.channels_last)
        self.train_feed = Feeder(train, None, device, self.stats, recipe.resolution,
                                 recipe.channels_last)
        self.val_feed = Feeder(val, None, device, self.stats, recipe.resolution,
                               recipe.channels_last)
        self.batch_size = min(recipe.batch_size, per_epoch)
        self.steps_per_epoch = per_epoch // self.batch_size  # the last partial batch is dropped
        self.augment = augment_on(recipe.augment, recipe.epochs, self.steps_per_epoch)
        self.amp_dtype, use_scaler = amp_settings(recipe, device)
        self.opt = make_optimizer(model, recipe)
        self.scaler = torch.amp.GradScaler(device.type) if use_scaler else None
        self.ema: dict[str, torch.Tensor] | None = None
        if recipe.ema_decay is not None:
            self.ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.step = 0
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best_val_accuracy = -1.0
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    @property
    def images_per_epoch(self) -> int:
        return self.steps_per_epoch * self.batch_size

    def _order(self) -> np.ndarray:
        """The epoch's training images, in batch order (rows of the training set)."""
        if self.pool is not None:
            return self.pool[self.rng.permutation(len(self.pool))]
        return self.rng.permutation(self.train_feed.n)[: self.images_per_epoch]

    def train_epoch(self, time_left: float | None = None, validate: bool = True) -> EpochResult:
        """Train one epoch, then (``validate``) score the validation split.

        ``time_left``: seconds of training this epoch may take; past it the epoch stops
        with status ``timeout`` (except on the run's very last step, which is finished).
        """
        model, r, dev, bs = self.model, self.recipe, self.device, self.batch_size
        model.train()
        order = self._order()
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        status, seen, lr, reason = "ok", 0, r.lr, ""
        final_epoch = self.epoch == r.epochs - 1
        check_every = 1 if dev.type == "cpu" else FINITE_CHECK_EVERY
        t0 = time.perf_counter()
        for b in range(self.steps_per_epoch):
            lr = lr_at(r, self.step, self.steps_per_epoch)
            for g in self.opt.param_groups:
                g["lr"] = lr
            idx = order[b * bs:(b + 1) * bs]
            if self.before_step is not None:
                self.before_step(self.step)
            x, y = self.train_feed.batch(idx, self.augment, self.gen, r.auto_augment == "trivial",
                                         r.erasing)
            with autocast(dev, self.amp_dtype):
                logits = model(x)
            logits = logits.float()
            loss = F.cross_entropy(logits, y, label_smoothing=r.label_smoothing)
            self.opt.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.opt)
                self.scaler.update()
            else:
                loss.backward()
                self.opt.step()
            if self.ema is not None:
                self._update_ema()
            self.step += 1
            seen += 1
            loss_sum += loss.detach().double()
            correct += (logits.detach().argmax(1) == y).sum()
            last = b == self.steps_per_epoch - 1
            if (self.step % check_every == 0 or last) and not torch.isfinite(loss_sum):
                status = "diverged"
                within = ("" if check_every == 1 else
                          f" within the {min(seen, check_every)} steps up to")
                reason = (f"non-finite training loss ({loss.item():g}){within} at step {self.step} (epoch "
                          f"{self.epoch + 1}, step {seen} of {self.steps_per_epoch}, lr {lr:.3g})")
                break
            if (time_left is not None and not (last and final_epoch)
                    and time.perf_counter() - t0 > time_left):
                status = "timeout"
                break
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        train_seconds = time.perf_counter() - t0
        train_loss = loss_sum.item() / max(seen, 1)
        train_acc = correct.item() / max(seen * bs, 1)
        ips = seen * bs / max(train_seconds, 1e-9)
        if status != "ok" or not validate:
            if status == "ok":  # a whole epoch, trained without validation (a supernet's)
                self.epoch += 1
                return EpochResult(self.epoch, status, self.step, seen, lr, train_loss,
                                   train_acc, train_seconds, None, None, 0.0, ips)
            return EpochResult(self.epoch + 1, status, self.step, seen, lr, train_loss,
                               train_acc, train_seconds, None, None, 0.0, ips, reason)
        t1 = time.perf_counter()
        val_acc, val_loss = self.evaluate()
        reason = self.exploded(val_acc, val_loss)
        if reason:  # not counted: epoch, best weights and history stay the last good epoch's
            return EpochResult(self.epoch + 1, "diverged", self.step, seen, lr, train_loss,
                               train_acc, train_seconds, val_acc, val_loss,
                               time.perf_counter() - t1, ips,
                               f"{reason} after epoch {self.epoch + 1} (step {self.step}, lr "
                               f"{lr:.3g})")
        self.epoch += 1
        if val_acc > self.best_val_accuracy:
            self.best_val_accuracy, self.best_epoch = val_acc, self.epoch
            self.best_state = self.eval_state()
        result = EpochResult(self.epoch, status, self.step, seen, lr, train_loss, train_acc,
                             train_seconds, val_acc, val_loss, time.perf_counter() - t1, ips)
        self.history.append({**result.row(), "best_val_accuracy": self.best_val_accuracy})
        return result

    def exploded(self, val_acc: float, val_loss: float) -> str:
        """Why this validation result means the run diverged ("" when it does not)."""
        if not np.isfinite(val_loss):
            return f"validation loss {val_loss:g}"
        first = self.history[0]["val_loss"] if self.history else None
        if first is not None and val_loss > EXPLODED_LOSS_FACTOR * first:
            return (f"validation loss {val_loss:.4g}, above {EXPLODED_LOSS_FACTOR:g}x the first "
                    f"epoch's {first:.4g}")
        if (self.chance is not None and val_acc <= CHANCE_MARGIN * self.chance
                and val_loss > CHANCE_LOSS_FACTOR * math.log(1.0 / self.chance)):
            return (f"validation accuracy {val_acc:.4f} at chance ({self.chance:.4g}; "
                    f"validation loss {val_loss:.4g})")
        return ""

    def evaluate(self, feeder: Feeder | None = None) -> tuple[float, float]:
        """Accuracy and loss on ``feeder`` (default: the validation split), with the weight
        average when there is one."""
        if self.ema is None:
            return evaluate_feeder(self.model, feeder or self.val_feed,
                                   self.recipe.eval_batch_size, self.device, self.amp_dtype)
        raw = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.ema)
        try:
            return evaluate_feeder(self.model, feeder or self.val_feed,
                                   self.recipe.eval_batch_size, self.device, self.amp_dtype)
        finally:
            self.model.load_state_dict(raw)

    def eval_state(self) -> dict[str, torch.Tensor]:
        """The weights that are evaluated (the average when there is one), on the CPU."""
        if self.ema is None:
            return _cpu_state(self.model)
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.ema.items()}

    @torch.no_grad()
    def _update_ema(self) -> None:
        assert self.ema is not None and self.recipe.ema_decay is not None
        decay = min(self.recipe.ema_decay, (1 + self.step) / (10 + self.step))
        for k, v in self.model.state_dict().items():
            avg = self.ema[k]
            if avg.is_floating_point():
                avg.mul_(decay).add_(v.detach(), alpha=1 - decay)
            else:  # counters such as num_batches_tracked
                avg.copy_(v)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """Everything the next epoch depends on (weights, optimizer, RNGs, history, best)."""
        cuda = (torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None)
        return {"epoch": self.epoch, "step": self.step, "model": _cpu_state(self.model),
                "optimizer": self.opt.state_dict(),
                "scaler": None if self.scaler is None else self.scaler.state_dict(),
                "best_model": self.best_state, "best_val_accuracy": self.best_val_accuracy,
                "best_epoch": self.best_epoch, "history": copy.deepcopy(self.history),
                "ema": None if self.ema is None else
                {k: v.detach().to("cpu", copy=True) for k, v in self.ema.items()},
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
        if self.ema is not None and state.get("ema") is not None:
            self.ema = {k: v.to(self.device) for k, v in state["ema"].items()}
        rng = state["rng"]
        self.rng.bit_generator.state = rng["numpy"]
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng.get("cuda") is not None:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.gen.set_state(rng["augment"])

    def load_best(self) -> None:
        """The best weights into the model, and into the weight average when there is one
        (:meth:`evaluate` scores the average): testing and export see the same weights."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
            if self.ema is not None:
                self.ema = {k: v.detach().to(self.device, copy=True)
                            for k, v in self.best_state.items()}

