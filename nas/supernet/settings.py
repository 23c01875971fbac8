"""The one-shot evaluator's settings, as one frozen dataclass with one validator (no torch).

``configs/oneshot-default.yaml`` documents every field with the measurements behind it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nas.core.checks import check_int, check_number
from nas.core.errors import ConfigError
from nas.core.settings import fields_from, fields_to, named_file
from nas.training.recipe import Recipe

BN_MODES = ("batch", "recalibrate", "running")
SPLITS = (None, "activation")
HANDOFFS = ("top_k", "search")
DEFAULT = "oneshot-default"  # the bundled settings: the defaults below are its values


def _default_supernet() -> Recipe:
    return Recipe.from_mapping(named_file(DEFAULT, "oneshot")["supernet"], "oneshot.supernet")


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

    supernet: Recipe = field(default_factory=_default_supernet)
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

    # A job's ``oneshot`` section may name a bundled file (``oneshot: oneshot-smoke``).
    NAMED: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._check("oneshot")

    def _check(self, at: str) -> None:
        if not isinstance(self.supernet, Recipe):
            raise ConfigError(f"{at}.supernet: expected a recipe")
        check_number(self.warmup, f"{at}.warmup", 0.0, 1.0)
        check_int(self.val_batch, f"{at}.val_batch", 2)
        if self.bn not in BN_MODES:
            raise ConfigError(f"{at}.bn: got {self.bn!r}; use one of {', '.join(BN_MODES)}")
        check_int(self.recal_batches, f"{at}.recal_batches", 1)
        check_int(self.candidates, f"{at}.candidates", 1)
        check_int(self.score_images, f"{at}.score_images", 1)
        if not isinstance(self.bn_affine, bool):
            raise ConfigError(f"{at}.bn_affine: got {self.bn_affine!r}; use true or false")
        if self.split not in SPLITS:
            raise ConfigError(f"{at}.split: got {self.split!r}; use activation or null")
        if self.handoff not in HANDOFFS:
            raise ConfigError(f"{at}.handoff: got {self.handoff!r}; use top_k or search")
        check_int(self.max_params, f"{at}.max_params", 1)
        if self.workers is not None:
            check_int(self.workers, f"{at}.workers", 1)
        if self.cpus_per_worker is not None:
            check_number(self.cpus_per_worker, f"{at}.cpus_per_worker", 0.0, strict=True)
        check_number(self.gpus_per_worker, f"{at}.gpus_per_worker", 0.0)
        if self.supernet.ema_decay is not None:
            raise ConfigError(f"{at}.supernet.ema_decay: a weight average mixes paths; use null")

    def replace(self, **changes: Any) -> "SupernetSettings":
        return dataclasses.replace(self, **changes)

    def to_mapping(self) -> dict[str, Any]:
        """Plain data; :meth:`from_mapping` reads it back as it was."""
        return fields_to(self)

    to_dict = to_mapping

    @classmethod
    def from_mapping(cls, d: Any, key: str = "oneshot") -> "SupernetSettings":
        """The ``oneshot`` section of a search's settings, strictly (keys, types, ranges);
        what it leaves out keeps its default (``configs/oneshot-default.yaml``'s)."""
        return cls(**fields_from(cls, d, key))

    @classmethod
    def from_dict(cls, d: Any, source: str = "oneshot") -> "SupernetSettings":
        return cls.from_mapping(d, source)
