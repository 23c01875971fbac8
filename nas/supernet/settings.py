"""The one-shot evaluator's settings, as one frozen dataclass with one validator (no torch).

``configs/oneshot-default.yaml`` documents every field with the measurements behind it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from nas.core.checks import check_int, check_number
from nas.core.errors import ConfigError
from nas.training.recipe import Recipe

BN_MODES = ("batch", "recalibrate", "running")
SPLITS = (None, "activation")
HANDOFFS = ("top_k", "search")


@dataclass(frozen=True)
class SupernetSettings:
    """How the shared weights are trained and how paths are scored.

    supernet       the shared weights' recipe (:class:`~nas.training.recipe.Recipe`): an epoch
                   is ``train_subset`` images (a fresh subset each epoch) and ends with a
                   checkpoint; ``width_mult`` and ``resolution`` set the supernet's size.
                   ``batch_size`` is the global batch, split over the workers.
    warmup         fraction of the steps whose paths are drawn uniformly (the strategy is
                   neither asked nor told), as TuNAS and SPOS do.
    val_batch      validation images that score each sampled path for the strategy (per
                   worker, drawn afresh each time; batch-norm batch statistics).
    bn             how candidates are scored for the final ranking: batch | recalibrate |
                   running (see :mod:`nas.supernet.score`).
    recal_batches  training batches that re-estimate a path's statistics (``recalibrate``).
    candidates     distinct networks drawn from the final policy and ranked on the supernet.
    score_images   validation images that score each candidate (the same images for all).
    split          ``activation``: one copy of the shared weights per activation of the space
                   (paths of different activations share nothing); null: one copy.
    bn_affine      false: batch norm scales and shifts stay at 1 and 0 (SPOS).
    handoff        what the standalone stage trains: ``top_k``, the top ``top_k`` of the
                   ranking; ``search``, the children the strategy the supernet trained goes on
                   to propose, as a multi-trial search (``budget`` children, or until stopped)
                   that starts from that strategy with its reward statistics restarted.
    max_params     refuse a space whose supernet holds more shared parameters.
    workers, cpus_per_worker, gpus_per_worker
                   the Ray Train layout (None: the top-level ``workers`` / ``cpus_per_trial``).
    """

    supernet: Recipe
    warmup: float = 0.25
    val_batch: int = 128
    bn: str = "batch"
    recal_batches: int = 8
    candidates: int = 100
    score_images: int = 1000
    split: str | None = "activation"
    bn_affine: bool = False
    handoff: str = "top_k"
    max_params: int = 50_000_000
    workers: int | None = None
    cpus_per_worker: float | None = None
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.supernet, Recipe):
            raise ConfigError("oneshot.supernet: expected a recipe")
        check_number(self.warmup, "oneshot.warmup", 0.0, 1.0)
        check_int(self.val_batch, "oneshot.val_batch", 2)
        if self.bn not in BN_MODES:
            raise ConfigError(f"oneshot.bn: got {self.bn!r}; use one of {', '.join(BN_MODES)}")
        check_int(self.recal_batches, "oneshot.recal_batches", 1)
        check_int(self.candidates, "oneshot.candidates", 1)
        check_int(self.score_images, "oneshot.score_images", 1)
        if not isinstance(self.bn_affine, bool):
            raise ConfigError(f"oneshot.bn_affine: got {self.bn_affine!r}; use true or false")
        if self.split not in SPLITS:
            raise ConfigError(f"oneshot.split: got {self.split!r}; use activation or null")
        if self.handoff not in HANDOFFS:
            raise ConfigError(f"oneshot.handoff: got {self.handoff!r}; use top_k or search")
        check_int(self.max_params, "oneshot.max_params", 1)
        if self.workers is not None:
            check_int(self.workers, "oneshot.workers", 1)
        if self.cpus_per_worker is not None:
            check_number(self.cpus_per_worker, "oneshot.cpus_per_worker", 0.0, strict=True)
        check_number(self.gpus_per_worker, "oneshot.gpus_per_worker", 0.0)
        if self.supernet.ema_decay is not None:
            raise ConfigError("oneshot.supernet.ema_decay: a weight average mixes paths; use null")

    def replace(self, **changes: Any) -> "SupernetSettings":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["supernet"] = self.supernet.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Any, source: str = "oneshot") -> "SupernetSettings":
        if not isinstance(d, Mapping):
            raise ConfigError(f"{source}: expected a mapping of one-shot settings")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ConfigError(f"{source}.{unknown[0]}: unknown setting; allowed: "
                              f"{', '.join(names)}")
        if "supernet" not in d:
            raise ConfigError(f"{source}.supernet: missing (the shared weights' recipe)")
        kwargs = dict(d)
        kwargs["supernet"] = Recipe.from_dict(d["supernet"], source=f"{source}.supernet")
        for key in ("warmup", "cpus_per_worker", "gpus_per_worker"):
            if kwargs.get(key) is not None:
                kwargs[key] = check_number(kwargs[key], f"{source}.{key}")
        return cls(**kwargs)
