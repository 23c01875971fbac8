"""What a fidelity measurement trains: its plan (derived from its settings,
:class:`nas.search.settings.FidelitySettings`), and the networks picked from a search.

``run`` in a list of proxies (:data:`RUN_PROXY`) stands for the accuracies the search itself
measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nas.arch.spec import ArchSpec
from nas.data import DataSettings
from nas.search.settings import RUN_PROXY, TrialSettings  # noqa: F401 - RUN_PROXY: here too
from nas.training.recipe import Recipe


@dataclass(frozen=True)
class FidelityPlan:
    """What to train, derived from a fidelity measurement's settings
    (:class:`nas.search.settings.FidelitySettings`) and the search it measures:
    ``children`` networks of the run at ``run``, the ``long`` recipe for ``seeds`` seeds and
    every recipe of ``proxies`` (label -> recipe) for ``proxy_seeds``."""

    run: Path
    out: Path
    children: int
    seeds: int
    long: Recipe
    proxies: tuple[tuple[str, Recipe], ...]
    proxy_seeds: int
    run_seed: int
    trials: TrialSettings
    data: DataSettings
    include_reference: bool = True


@dataclass(frozen=True)
class Picked:
    """A network picked for the comparison, with what the search measured."""

    label: str                 # "child12" or "reference"
    spec: ArchSpec
    run_accuracy: float
    macs: int
    blocks: str
