"""Train one child as a proxy and say what happened, without raising (Ray-free).

The Ray Tune trainable is a thin wrapper around :func:`run_child`. Every outcome is a result
dict with a ``status``: ``ok``; ``timeout`` (the recipe's ``max_seconds`` cut training short;
``accuracy`` is the partly trained model's); ``diverged`` (non-finite loss); ``oom`` (out of
memory) or ``failed`` (the spec did not build, or training raised), with the reason in
``error``. Only a worker that dies outright produces no result; Tune retries that trial.

Seeding. The driver's ``seed`` (drawn from the run seed and the child's identity) seeds the
initial weights, the training subset, the batch order, the augmentation and dropout, so the
same child gives the same result whichever worker trains it (bitwise on CPU with one thread;
on GPU or with several threads, kernels may add run-to-run noise).
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Callable, Mapping

from nas.arch.rounding import as_trained
from nas.arch.spec import ArchSpec, spec_from_dict
from nas.data import DataSplits
from nas.training.recipe import Recipe


def proxy_spec(spec: ArchSpec, cfg: Recipe) -> ArchSpec:
    """The spec as trained on the proxy: width-scaled and at the proxy resolution."""
    return as_trained(spec, width=cfg.width_mult, resolution=cfg.resolution)


def run_child(config: Mapping[str, Any], data: DataSplits, proxy: Recipe,
              device: str = "cpu",
              on_epoch: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train the child described by a driver config (``{"spec": ..., "proxy": overrides}``).

    ``on_epoch(epoch, metrics)`` is called after each finished epoch (the Tune trainable
    reports it, for a trial scheduler); the result's ``val_curve`` lists the validation
    accuracy after each finished epoch."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {"status": "failed", "error": "", "train_seconds": 0.0}
    try:
        from nas.arch.cost import count_macs
        from nas.training.proxy import build_seeded, train_proxy

        overrides = dict(config.get("proxy") or {})
        if config.get("seed") is not None:
            overrides["seed"] = int(config["seed"])
        cfg = proxy.replace(**overrides) if overrides else proxy
        spec = proxy_spec(spec_from_dict(config["spec"]), cfg)
        out["proxy_resolution"] = spec.resolution if cfg.resolution is not None else data.image_size
        out["proxy_macs"] = count_macs(spec, out["proxy_resolution"], data.num_classes,
                                       data.in_channels)
        model = build_seeded(spec, data.num_classes, data.in_channels, cfg.seed)

        curve: list[float] = []
        out["val_curve"] = curve  # validation accuracy after each finished epoch

        def epoch_hook(epoch: int, metrics: dict[str, Any]) -> bool:
            curve.append(float(metrics["val_accuracy"]))
            if on_epoch is not None:
                on_epoch(epoch, dict(metrics))
            return False

        result = train_proxy(model, (data.train, data.val), cfg, device=device,
                             on_epoch=epoch_hook)
        out.update({
            "status": result.status, "seed": cfg.seed,
            "accuracy": result.accuracy, "val_loss": result.val_loss,
            "train_loss": result.train_loss, "epochs": result.epochs_done,
            "train_seconds": result.train_seconds,
            "images_per_second": result.images_per_second,
            "error": result.reason if result.status != "ok" else "",
        })
    except Exception as e:  # noqa: BLE001 - every failure becomes a recorded outcome
        oom = type(e).__name__ == "OutOfMemoryError" or "out of memory" in str(e).lower()
        out["status"] = "oom" if oom else "failed"
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        out["error"] = last.replace("\n", " ")[:500]
    out["seconds"] = time.perf_counter() - t0
    return out
