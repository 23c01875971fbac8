"""Full training of one spec: checkpoint every epoch, stop early, test the best weights,
export the model.

The recipe by default is the project's one default (``configs/train-default.yaml``, also the
pipeline's training stage and the fidelity command's long schedule): AdamW (lr 0.002, weight
decay 0.05), cosine after a linear warm-up (the recipe's 1 epoch, at most a tenth of the
run), label smoothing 0.1, crop and flip, a weight average (EMA 0.999), stochastic depth and
dropout from the spec. The paper's recipe is ``optimizer="rmsprop"`` (TF-style RMSProp, decay
0.9, momentum 0.9, eps 1e-3: :mod:`nas.training.rmsprop`) with ``weight_decay=1e-5,
schedule="exponential", augment=False`` and its lr 0.256 at batch 4096, scaled here to 0.016
per 256 images (:class:`~nas.training.settings.TrainSettings`). Validation images are held out of the *training* set (``val_size``); early
stopping and the kept "best" weights look at them only. The test split is scored once, at
the end, with the best weights.

A run that diverges (a non-finite training loss, a validation loss above 10x the first
epoch's, or validation accuracy at chance with a loss above 1.5 ln(classes): confidently
wrong) stops with status ``diverged`` and says what and when; its checkpoints keep the
last good epoch, which is tested and exported.

The run folder (``out``) gets ``last.pt`` (everything needed to continue exactly: model,
optimizer, step, epoch, best weights, RNG states, the resolved settings) and ``best.pt``
after every epoch, ``train.csv`` (one row per epoch), TensorBoard scalars in
``tensorboard/``, and at the end ``metrics.json`` and the exported model (``model.pt``).

The epochs are the training engine's (:class:`~nas.training.engine.Engine`), the same step
as a proxy run's; this module adds what a long run needs around them. The command line is
:mod:`nas.cli.train` (``effnas train``).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from nas.arch.builder import build_model
from nas.arch.cost import count
from nas.arch.io import load_spec
from nas.arch.rounding import as_trained
from nas.arch.spec import ArchSpec, spec_to_dict
from nas.core import runs
from nas.core.errors import ConfigError, NasError
from nas.core.files import json_safe, write_csv, write_text_atomic
from nas.core.progress import Bar, format_duration
from nas.data import DataSplits, load_splits
from nas.training.checkpoint import (
    CHECKPOINT_FORMAT,
    check_export_available,
    export_model,
    save_atomic,
)
from nas.training.device import bn_momentum_override, pick_device, torch_threads
from nas.training.engine import Engine, EpochResult
from nas.training.feeder import Feeder
from nas.training.recipe import AUGMENT_MIN_STEPS
from nas.training.settings import (  # noqa: F401 - check: for the callers of fit, beside it
    TrainSettings,
    check,
    resolve,
)

CSV_COLUMNS = ("epoch", "step", "lr", "train_loss", "train_accuracy", "val_accuracy", "val_loss",
               "best_val_accuracy", "train_seconds", "eval_seconds", "images_per_second")
# Batch-norm "auto": the spec's momentum (TF's 0.01, a 100-step average), raised where an
# epoch is short so that the running statistics average over at most this fraction of an
# epoch (and never faster than PyTorch's 0.1). Measured: B0 at width 0.5 on 5,000-image
# epochs (39 steps) reached 66 % training but 10 % validation accuracy after 4 epochs with a
# 0.03 momentum, 61 % with 0.1: the running statistics lagged the weights.
# At most 0.5 (was 0.1): on 15-step epochs (2,000 images, batch 128) B0's running statistics
# at 0.1 still held a fifth of their initial values after the epoch and validation was at
# chance (10 %) in eval mode; at 0.5 the same weights scored 22 % (AdamW lr 0.002) and 38 %
# (lr 0.005), one seed each.
_BN_WINDOW_EPOCHS = 0.1
_BN_MAX_MOMENTUM = 0.5


class Diverged(NasError):
    """The training loss became NaN or infinite."""


# --------------------------------------------------------------------------- the run


def load_data(c: TrainSettings) -> DataSplits:
    image_size = None
    if (c.dataset or "").lower() in ("imagefolder", "image-folder"):
        image_size = c.resolution  # image folders are resized at load time anyway
    if c.dataset is None and c.data is not None and Path(c.data).expanduser().is_dir():
        return load_splits(c.data, val_size=c.val_size, seed=c.seed, image_size=image_size)
    return load_splits(c.dataset or "fashion-mnist", path=c.data, val_size=c.val_size,
                       seed=c.seed, image_size=image_size)


def make_spec(c: TrainSettings) -> ArchSpec:
    """The spec as this run trains it (width, dropout and drop path applied, named)."""
    spec = as_trained(load_spec(c.spec), width=c.width_mult, dropout=c.dropout,
                      drop_path_rate=c.drop_path_rate)
    if not spec.name:
        spec = spec.replace(name=Path(c.spec).stem)
    return spec


def auto_bn_momentum(spec_momentum: float, steps_per_epoch: int) -> float:
    window = _BN_WINDOW_EPOCHS * steps_per_epoch  # steps the running average should span
    wanted = min(_BN_MAX_MOMENTUM, 1.0 / max(window, 1.0))
    return float(max(spec_momentum, round(wanted, 4)))


def _augment_note(augment: bool | str, engine: Engine) -> str:
    state = "on" if engine.augment else "off"
    if augment != "auto":
        return state
    steps = engine.steps_per_epoch * engine.recipe.epochs
    return f"{state} (auto: {steps:,} steps, on from {AUGMENT_MIN_STEPS:,})"


def default_out(spec_name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec_name) or "spec"
    return str(Path("runs") / f"train-{safe}-{datetime.now():%Y%m%d-%H%M%S}")


@dataclass
class FitResult:
    """How a run ended: ``status`` is completed, early_stopped, time_limit, diverged or
    interrupted; ``metrics`` is what ``metrics.json`` holds (None when interrupted)."""

    status: str
    metrics: dict[str, Any] | None
    epoch: int


@dataclass
class _Session:
    """What one invocation works with, beside the engine's own state."""

    c: TrainSettings
    spec: ArchSpec
    splits: DataSplits
    out: Path
    command: str
    prior_seconds: float  # wall time of earlier invocations of this run
    t_start: float
    say: Callable[[str], None]
    bar: Any = None       # a progress bar over the epochs (nas.core.progress.Bar), or None


def fit(c: TrainSettings, spec: ArchSpec, checkpoint: Mapping[str, Any] | None = None,
        command: str = "", say: Callable[[str], None] | None = None) -> FitResult:
    """Train ``spec`` as ``c`` says (continuing ``checkpoint``, a ``last.pt``, if given).

    Progress lines go to ``say`` (default: print, with a progress bar over the epochs and
    the time left when the output is a terminal or a notebook). A KeyboardInterrupt ends
    the run with status ``interrupted``; ``last.pt`` holds the last finished epoch.
    """
    t_start = time.perf_counter()
    bar = None if say is not None else Bar(c.epochs, "epochs", lazy=True)
    say = say or (lambda line: print(line, flush=True))
    try:
        return _fit(c, spec, checkpoint, command, say, bar, t_start)
    finally:
        if bar is not None:
            bar.close()


def _fit(c: TrainSettings, spec: ArchSpec, checkpoint: Mapping[str, Any] | None, command: str,
         say: Callable[[str], None], bar: Any, t_start: float) -> FitResult:
    recipe = c.recipe()
    check_export_available(c.export)
    dev = pick_device(c.device)

    fork = [dev.index or 0] if dev.type == "cuda" else []
    with torch_threads(c.threads), torch.random.fork_rng(devices=fork):
        splits = load_data(c)
        if c.resolution is None:
            c = replace(c, resolution=splits.image_size)
        torch.manual_seed(c.seed)
        model = build_model(spec, num_classes=splits.num_classes, in_channels=splits.in_channels)
        engine = Engine(model, splits.train, splits.val, recipe.replace(resolution=c.resolution),
                        dev, resample_subset=True, chance_check=True)
        if c.bn_momentum is None:
            c = replace(c, bn_momentum=auto_bn_momentum(spec.bn_momentum,
                                                        engine.steps_per_epoch))
        prior_seconds = 0.0
        if checkpoint is not None:
            if checkpoint["data"] != splits.describe():
                raise ConfigError(f"the data set differs from the one {c.out}/last.pt was "
                                  f"trained on ({checkpoint['data']}); pass the same data=")
            if checkpoint["epochs_planned"] != c.epochs and c.schedule == "cosine":
                say(f"note: epochs {checkpoint['epochs_planned']} -> {c.epochs} changes the "
                    "cosine schedule from here on")
            engine.load_state_dict(checkpoint)
            prior_seconds = float(checkpoint["seconds"])
        if bar is not None and bar.start(engine.epoch):  # drawn: lines go above it
            say = bar.write
        else:
            bar = None
        s = _Session(c, spec, splits, Path(c.out), command, prior_seconds, t_start, say, bar)
        runs.mark(s.out, "train")  # creates the run folder
        say(f"training {spec.name} on {splits.name} ({len(splits.train)} train / "
            f"{len(splits.val)} val images, {engine.images_per_epoch} per epoch) at "
            f"{c.resolution} px on {dev.type}: {c.epochs} epochs, {c.optimizer} lr {c.lr:g}, "
            f"{c.schedule}, crop and flip {_augment_note(c.augment, engine)}; out {s.out}")
        if checkpoint is not None:
            say(f"resumed at epoch {engine.epoch} (best val {engine.best_val_accuracy:.4f} "
                f"at epoch {engine.best_epoch})")

        from torch.utils.tensorboard import SummaryWriter
        # On resume, drop the events of epochs logged after the checkpoint was written.
        tb = SummaryWriter(log_dir=str(s.out / "tensorboard"),
                           purge_step=engine.epoch + 1 if checkpoint is not None else None)
        try:
            with bn_momentum_override(model, c.bn_momentum):
                status, reason = _epochs(engine, s, tb)
        except KeyboardInterrupt:
            tb.close()
            return FitResult("interrupted", None, engine.epoch)
        if engine.best_state is None:
            tb.close()
            if status == "diverged":  # no good epoch: nothing to test or export, but a result
                return FitResult(status, _diverged_metrics(engine, s, reason), engine.epoch)
            raise NasError(f"no epoch finished ({reason or status}); nothing to test or export")
        metrics = _finish(engine, s, tb, status, reason)
    return FitResult(status, metrics, engine.epoch)


def _epoch(engine: Engine) -> EpochResult:
    e = engine.train_epoch()
    if e.status == "diverged":
        kept = (f"last.pt keeps epoch {engine.epoch}, best.pt epoch {engine.best_epoch}"
                if engine.epoch else "no good epoch to keep")
        hint = ("it has learned nothing: lower lr=, or give it more steps (epochs=, "
                "train_subset=)" if "at chance" in e.reason
                else "lower lr= or raise warmup_epochs=")
        raise Diverged(f"training diverged in epoch {e.epoch}: {e.reason}; {kept}; {hint}")
    return e


def _epochs(engine: Engine, s: _Session, tb: Any) -> tuple[str, str]:
    """The epoch loop: train, validate, log, checkpoint. Returns (status, reason)."""
    c = s.c
    session_start, session_epochs = time.perf_counter(), 0
    while engine.epoch < c.epochs:
        if c.patience is not None and engine.epoch - engine.best_epoch >= c.patience:
            return "early_stopped", (f"no validation improvement for {c.patience} epochs "
                                     f"after epoch {engine.best_epoch}")
        if c.max_epochs_time is not None and session_epochs:
            spent = time.perf_counter() - session_start
            per = spent / session_epochs
            if spent + per > c.max_epochs_time:
                return "time_limit", (f"max_epochs_time={c.max_epochs_time:g} s: another "
                                      f"epoch (~{per:.0f} s) would not fit; continue with "
                                      f"nas.run_train(resume=True, out={str(s.out)!r})")
        try:
            _epoch(engine)
        except Diverged as e:
            return "diverged", str(e)
        session_epochs += 1
        row = engine.history[-1]
        _log_epoch(tb, row)
        tb.flush()
        s.say(_epoch_line(row, c.epochs, engine.best_epoch))
        _save_epoch(engine, s)
        if s.bar is not None:
            per = (time.perf_counter() - session_start) / session_epochs
            left = max(0, c.epochs - engine.epoch) * per
            s.bar.update(engine.epoch, f"val {row['val_accuracy']:.4f} (best "
                         f"{engine.best_val_accuracy:.4f} at epoch {engine.best_epoch})  "
                         f"{per:.0f} s per epoch" + (f", ~{format_duration(left)} left"
                                                     if left else ""))
    return "completed", ""


def _save_epoch(engine: Engine, s: _Session) -> None:
    """``best.pt`` (when this epoch is the best), then ``last.pt`` and ``train.csv``."""
    state = engine.state_dict()
    state.update(format=CHECKPOINT_FORMAT, config=s.c.to_dict(), spec=spec_to_dict(s.spec),
                 data=s.splits.describe(), epochs_planned=s.c.epochs, command=s.command,
                 seconds=s.prior_seconds + time.perf_counter() - s.t_start)
    if engine.best_epoch == engine.epoch:
        save_atomic({"format": CHECKPOINT_FORMAT, "model": state["best_model"],
                     "epoch": engine.epoch, "val_accuracy": engine.best_val_accuracy,
                     "spec": state["spec"], "config": state["config"],
                     "num_classes": s.splits.num_classes, "in_channels": s.splits.in_channels,
                     "preprocess": _preprocess(s.c, s.splits, engine.stats)},
                    s.out / "best.pt")
    save_atomic(state, s.out / "last.pt")
    write_csv(s.out / "train.csv", CSV_COLUMNS,
              ([f"{r[k]:.6g}" if isinstance(r[k], float) else r[k] for k in CSV_COLUMNS]
               for r in engine.history))


def _finish(engine: Engine, s: _Session, tb: Any, status: str, reason: str
            ) -> dict[str, Any]:
    """Test the best weights, export them, write ``metrics.json``; returns the metrics."""
    c, splits, model = s.c, s.splits, engine.model
    engine.load_best()
    test_acc = test_loss = None
    if splits.test is not None:
        feed = Feeder(splits.test, None, engine.device, engine.stats, c.resolution,
                      engine.recipe.channels_last)
        test_acc, test_loss = engine.evaluate(feed)
        tb.add_scalar("test/accuracy", test_acc, engine.best_epoch)
        tb.add_scalar("test/loss", test_loss, engine.best_epoch)
    tb.close()

    preprocess = _preprocess(c, splits, engine.stats)
    exported = None
    if c.export != "none":
        sample = splits.test if splits.test is not None else splits.val
        x, _ = Feeder(sample, None, torch.device("cpu"), engine.stats, c.resolution,
                      False).batch(np.arange(min(8, len(sample))))
        exported = export_model(model, x, c.export, s.out, preprocess)

    train_seconds = sum(r["train_seconds"] for r in engine.history)
    trained = count(s.spec, c.resolution, splits.num_classes, splits.in_channels)
    native = count(s.spec, None, splits.num_classes, splits.in_channels)
    metrics = {
        "spec": s.spec.name, "status": status, "reason": reason,
        "epochs_run": engine.epoch, "epochs_planned": c.epochs,
        "best_epoch": engine.best_epoch, "best_val_accuracy": engine.best_val_accuracy,
        "test_accuracy": test_acc, "test_loss": test_loss,
        "test_images": None if splits.test is None else len(splits.test),
        "params": trained.params,
        "macs": {"trained_resolution": c.resolution, "at_trained_resolution": trained.macs,
                 "spec_resolution": s.spec.resolution, "at_spec_resolution": native.macs,
                 "num_classes": splits.num_classes, "in_channels": splits.in_channels},
        "seconds": s.prior_seconds + time.perf_counter() - s.t_start,
        "train_seconds": train_seconds,
        "images_per_second": (engine.images_per_epoch * len(engine.history)
                              / max(train_seconds, 1e-9)),
        "steps": engine.step, "images_per_epoch": engine.images_per_epoch,
        "val_curve": engine.history, "data": splits.describe(), "preprocess": preprocess,
        "export": exported, "device": str(engine.device), "threads": torch.get_num_threads(),
        "command": s.command, "config": c.to_dict(), "spec_dict": spec_to_dict(s.spec),
    }
    write_text_atomic(s.out / "metrics.json", json.dumps(json_safe(metrics), indent=2) + "\n")
    return metrics


def _diverged_metrics(engine: Engine, s: _Session, reason: str) -> dict[str, Any]:
    """``metrics.json`` of a run that diverged before any epoch was good: the status, the
    reason and the settings (no accuracy: nothing was tested)."""
    c = s.c
    metrics = {
        "spec": s.spec.name, "status": "diverged", "reason": reason,
        "epochs_run": engine.epoch, "epochs_planned": c.epochs, "best_epoch": None,
        "best_val_accuracy": None, "test_accuracy": None, "test_loss": None,
        "test_images": None, "seconds": s.prior_seconds + time.perf_counter() - s.t_start,
        "steps": engine.step, "images_per_epoch": engine.images_per_epoch,
        "val_curve": engine.history, "data": s.splits.describe(), "export": None,
        "device": str(engine.device), "command": s.command, "config": c.to_dict(),
        "spec_dict": spec_to_dict(s.spec),
    }
    write_text_atomic(s.out / "metrics.json", json.dumps(json_safe(metrics), indent=2) + "\n")
    return metrics


def _preprocess(c: TrainSettings, splits: DataSplits, stats: tuple[tuple[float, ...], ...]
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


def _epoch_line(row: dict[str, Any], epochs: int, best_epoch: int) -> str:
    mark = " *" if best_epoch == row["epoch"] else ""
    return (f"epoch {row['epoch']:>3}/{epochs}  loss {row['train_loss']:.4f}  "
            f"train {row['train_accuracy']:.4f}  val {row['val_accuracy']:.4f}{mark}  "
            f"lr {row['lr']:.3g}  {row['train_seconds'] + row['eval_seconds']:.1f} s  "
            f"{row['images_per_second']:.0f} img/s")


def summary_lines(m: dict[str, Any], out: Path) -> list[str]:
    """What a finished run prints: its status, the key numbers, the files it wrote."""
    from nas.arch.units import format_macs
    if m["best_val_accuracy"] is None:  # diverged before any epoch was good
        return [f"{m['status']}: {m['reason']}", f"wrote {out}/: metrics.json, tensorboard/"]
    mc = m["macs"]
    test = ("no test split" if m["test_accuracy"] is None
            else f"test accuracy {m['test_accuracy']:.4f} ({m['test_images']} images)")
    exported = f", {m['export']['path']}" if m["export"] else ""
    return [f"{m['status']}{': ' + m['reason'] if m['reason'] else ''}",
            f"{m['spec']}: best val {m['best_val_accuracy']:.4f} at epoch {m['best_epoch']}/"
            f"{m['epochs_run']}; {test}; {m['params'] / 1e6:.3f}M params, "
            f"{format_macs(mc['at_trained_resolution'])} MACs at {mc['trained_resolution']} px "
            f"({format_macs(mc['at_spec_resolution'])} at {mc['spec_resolution']} px); "
            f"{m['seconds']:.0f} s, {m['images_per_second']:.0f} img/s",
            f"wrote {out}/: metrics.json, train.csv, best.pt, last.pt{exported}, tensorboard/"]
