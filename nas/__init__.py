"""effnas: find a baseline network the way EfficientNet-B0 was found, then scale it.

The package is built in layers; each imports only the ones below it (``docs/architecture.md``):

=================  ==============================================================
``nas.core``       errors, number checks, files, settings and their loader (no torch, no Ray)
``nas.arch``       specs, units, block strings, rounding, cost model, spec files, builder
``nas.data``       image data sets as numpy arrays
``nas.training``   one training engine: proxy runs and full training (torch, no Ray)
``nas.latency``    latency on a device: measure a spec, predict it from a per-device table
``nas.supernet``   weight sharing: one supernet holds every path of a space (no Ray)
``nas.ray``        the Ray adapters: Ray's start and stop, Tune's searcher, Ray Train
``nas.search``     the search: reward, driver, runner, run log, multi-trial and one-shot
``nas.scaling``    the scaling grid on Ray (and ``nas.fidelity``, the proxy's fidelity)
``nas.pipeline``   search, scale, train and report in one run folder
``nas.cli``        the commands (``effnas search``, ``effnas scale``, ``effnas train``, ...)
=================  ==============================================================

Beside them: ``search_space`` and ``controller`` (the strategies) on the floor of
``nas.training``, and ``scaler`` (compound scaling, pure) there too.

``import nas`` does not import torch: the spec, the rounding module and the cost model are
pure Python. :func:`build_model` imports torch when first called.

The commands are functions too (:mod:`nas.cli.api`): ``nas.run_search``, ``nas.run_scale``,
``nas.run_train``, ``nas.run_fidelity`` and ``nas.run_pipeline`` take their job's settings
(``nas.SearchSettings``, ...: frozen dataclasses read from and written to plain mappings) or
keyword overrides of them, raise the project's errors and return result objects;
``nas.load_settings`` layers a job's settings as the commands do; ``nas.load_run`` reads a
search's run folder into a pandas DataFrame and specs.
"""

from __future__ import annotations

from typing import Any

from nas.arch.io import load_spec, save_spec
from nas.arch.rounding import round_filters, round_repeats, round_resolution, scale_spec
from nas.arch.spec import ArchSpec, StageSpec, spec_from_dict, spec_to_dict
from nas.arch.timm_export import (
    TimmArch,
    from_timm_state_dict,
    timm_state_dict,
    to_timm,
)
from nas.core.errors import ConfigError, DataError, NasError, SpaceError, SpecError
from nas.core.files import config_path, configs_dir

__version__ = "0.1.0"


def build_model(spec: ArchSpec, num_classes: int = 1000, in_channels: int = 3) -> Any:
    """Build ``spec`` as a ``torch.nn.Module`` (see :mod:`nas.arch.builder`)."""
    from nas.arch.builder import build_model as _build
    return _build(spec, num_classes=num_classes, in_channels=in_channels)


def build_timm_model(spec: ArchSpec, num_classes: int = 1000, in_channels: int = 3,
                     weights: Any = None) -> Any:
    """Build ``spec`` with timm's own ``EfficientNet`` (needs timm: ``pip install
    'effnas[timm]'``); with ``weights`` (a model built from ``spec`` or its state dict) loaded
    through :func:`timm_state_dict` (see :mod:`nas.arch.timm_model`)."""
    from nas.arch.timm_model import build_timm_model as _build
    return _build(spec, num_classes=num_classes, in_channels=in_channels, weights=weights)


_API = ("run_search", "run_scale", "run_train", "run_fidelity", "run_pipeline", "load_run",
        "SearchResult", "ScaleResult", "TrainResult", "FidelityResult", "PipelineResult",
        "RunData")
# The jobs' settings (frozen dataclasses with from_mapping / to_mapping), lazily too.
_SETTINGS = {"SearchSettings": "nas.search.settings", "ScaleSettings": "nas.search.settings",
             "FidelitySettings": "nas.search.settings",
             "PipelineSettings": "nas.search.settings",
             "TrainSettings": "nas.training.settings", "load_settings": "nas.core.settings"}


def __getattr__(name: str) -> Any:
    # The cost model is imported lazily only to keep import order simple; it is torch-free.
    if name in ("count_params", "count_macs", "stage_costs"):
        from nas.arch import cost
        return getattr(cost, name)
    # The commands as functions (nas/cli/api.py): imported when first used.
    if name in _API:
        from nas.cli import api
        return getattr(api, name)
    if name in _SETTINGS:
        import importlib
        return getattr(importlib.import_module(_SETTINGS[name]),
                       "load" if name == "load_settings" else name)
    # Latency on this machine (nas/latency/): measuring imports torch, predicting does not.
    if name in ("measure_latency", "predict_latency"):
        from nas import latency
        return getattr(latency, name)
    raise AttributeError(f"module 'nas' has no attribute {name!r}")


def __dir__() -> list[str]:
    # dir(nas) and completion list the lazily imported names too (they are in __all__).
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "ArchSpec", "StageSpec", "NasError", "SpecError", "SpaceError", "ConfigError", "DataError",
    "build_model", "count_params", "count_macs", "stage_costs", "load_spec", "save_spec",
    "config_path", "configs_dir", "round_filters", "round_repeats", "round_resolution",
    "scale_spec", "spec_from_dict", "spec_to_dict",
    "TimmArch", "to_timm", "timm_state_dict", "from_timm_state_dict", "build_timm_model",
    "measure_latency", "predict_latency",
    *_API, *_SETTINGS,
]
