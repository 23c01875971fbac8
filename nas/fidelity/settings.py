"""What a fidelity measurement trains: its settings, and the networks picked from a search.

``run`` in a list of proxies (:data:`RUN_PROXY`) stands for the accuracies the search itself
measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nas.arch.spec import ArchSpec
from nas.data import DataSettings
from nas.search.settings import TrialSettings
from nas.training.recipe import Recipe

RUN_PROXY = "run"  # the accuracies the search itself measured


@dataclass(frozen=True)
class FidelitySettings:
    """What to train: ``children`` networks of the run at ``run``, the ``long`` recipe for
    ``seeds`` seeds and every recipe of ``proxies`` (label -> recipe) for ``proxy_seeds``."""

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
