"""Build a spec's network with timm's own code (``timm.models.efficientnet.EfficientNet`` from
``decode_arch_def`` of the strings :func:`nas.arch.timm_export.to_timm` writes).

timm is an optional dependency (``pip install 'effnas[timm]'``); without it
:func:`build_timm_model` raises a one-line :class:`~nas.core.errors.ConfigError`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import nn

from nas.arch.spec import ArchSpec
from nas.arch.timm_export import TimmArch, timm_state_dict, to_timm
from nas.core.errors import ConfigError


def _timm() -> tuple[Any, Any]:
    try:
        from timm.models._efficientnet_builder import decode_arch_def
        from timm.models.efficientnet import EfficientNet
    except Exception as e:  # ImportError, or a torchvision that does not load beside torch
        first = (str(e).splitlines() or [""])[0]
        raise ConfigError(f"building the timm model needs timm: pip install 'effnas[timm]' "
                          f"({type(e).__name__}: {first})") from None
    return decode_arch_def, EfficientNet


def efficientnet_kwargs(arch: TimmArch) -> dict[str, Any]:
    """Every keyword argument of timm's ``EfficientNet`` for ``arch`` but the block args,
    ``num_classes`` and ``in_chans`` (``norm_layer`` made from the batch-norm settings)."""
    return {**arch.kwargs, "norm_layer": partial(nn.BatchNorm2d, eps=arch.bn_eps,
                                                 momentum=arch.bn_momentum)}


def build_timm_model(spec: ArchSpec, num_classes: int = 1000, in_channels: int = 3,
                     weights: Any = None) -> Any:
    """timm's ``EfficientNet`` for ``spec`` (same layers, parameters and state-dict shapes as
    ``nas.build_model(spec)``). With ``weights`` (a model built from ``spec``, or its state
    dict), those weights are loaded, so both give the same outputs in eval mode."""
    arch = to_timm(spec)
    decode_arch_def, EfficientNet = _timm()
    model = EfficientNet(decode_arch_def(arch.arch_def_list()), num_classes=num_classes,
                         in_chans=in_channels, **efficientnet_kwargs(arch))
    if weights is not None:
        model.load_state_dict(timm_state_dict(weights, spec))
    return model
