"""What a pipeline run does: its plan (its stages' settings and the training plan), derived
from its settings (:class:`nas.search.settings.PipelineSettings`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from nas.search.settings import ScaleSettings, SearchSettings


@dataclass(frozen=True)
class TrainPlan:
    """Which models the training stage trains and how.

    ``template`` is a :class:`nas.training.settings.TrainSettings` holding the recipe and the data
    of every model; each model's spec, seed, resolution and folder are filled in per run.
    A model is trained at ``round(resolution * its spec resolution / the baseline's spec
    resolution)`` pixels (a multiple of ``resolution_multiple``), so the family's resolution
    scaling carries over to small images. ``members`` selects from the emitted family
    (None: every budget member): budget names (``600.0M``), ``b1``..``b7``, ``budgets`` or
    ``family``. ``references`` are (name, spec path) pairs trained the same way.
    """

    template: Any
    resolution: int
    seeds: tuple[int, ...]
    members: tuple[str, ...] | None
    baseline: bool
    references: tuple[tuple[str, str], ...]
    resolution_multiple: int = 4


@dataclass(frozen=True)
class PipelinePlan:
    """What a pipeline run does, derived from its settings
    (:class:`nas.search.settings.PipelineSettings`) by :func:`nas.cli.jobs.pipeline_plan` and
    checked before anything runs.

    ``search`` is None when a ``baseline`` spec is given instead. ``scale.baseline`` is a
    placeholder until the search has written its best child. ``configs`` holds the resolved
    YAML of the pipeline and of the search and scale stages (written into their folders).
    """

    name: str
    out: Path
    search: SearchSettings | None
    baseline: str | None
    scale: ScaleSettings
    grid: bool
    compare: bool
    family: bool
    train: TrainPlan
    configs: Mapping[str, str]
    command: str = ""
    on_miss: str = "closest"     # a budget no phi lands within 3 % of: closest | error
