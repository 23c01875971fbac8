"""Architecture specs, the builder, the cost model and proxy training.

``import nas`` does not import torch: the spec, the rounding module and the cost model are
pure Python. :func:`build_model` imports torch when first called.
"""

from __future__ import annotations

from typing import Any

from nas.errors import ConfigError, DataError, NasError, SpaceError, SpecError
from nas.io import config_path, configs_dir, load_spec, save_spec
from nas.rounding import round_filters, round_repeats, round_resolution, scale_spec
from nas.spec import ArchSpec, StageSpec, spec_from_dict, spec_to_dict

__version__ = "0.1.0"


def build_model(spec: ArchSpec, num_classes: int = 1000, in_channels: int = 3) -> Any:
    """Build ``spec`` as a ``torch.nn.Module`` (see :mod:`nas.builder`)."""
    from nas.builder import build_model as _build
    return _build(spec, num_classes=num_classes, in_channels=in_channels)


def __getattr__(name: str) -> Any:
    # The cost model is imported lazily only to keep import order simple; it is torch-free.
    if name in ("count_params", "count_macs", "stage_costs"):
        from nas import cost
        return getattr(cost, name)
    raise AttributeError(f"module 'nas' has no attribute {name!r}")


__all__ = [
    "ArchSpec", "StageSpec", "NasError", "SpecError", "SpaceError", "ConfigError", "DataError",
    "build_model", "count_params", "count_macs", "stage_costs", "load_spec", "save_spec",
    "config_path", "configs_dir", "round_filters", "round_repeats", "round_resolution",
    "scale_spec", "spec_from_dict", "spec_to_dict",
]
