"""Where and how a model runs: the device, mixed precision, threads, batch-norm momentum."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, Iterator

import torch
from torch import nn

from nas.core.errors import ConfigError
from nas.training.recipe import Recipe
from nas.training.settings import DEVICES


def pick_device(name: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA when available, else the CPU; ``cpu``; ``cuda`` (or ``cuda:N``), which
    must be available."""
    if isinstance(name, str) and name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = torch.device(name)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(name)!r}: CUDA is not available here; use device 'cpu'")
    return d


def amp_settings(cfg: Recipe, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use a gradient scaler)."""
    mode = cfg.amp
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None, False
    if mode == "auto":
        return (torch.bfloat16, False) if torch.cuda.is_bf16_supported() else (torch.float16, True)
    if mode == "fp16":
        if device.type != "cuda":
            raise ConfigError("amp: fp16 autocast needs a CUDA device; use amp 'off' or 'bf16' "
                              "on CPU")
        return torch.float16, True
    return torch.bfloat16, False


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


@contextmanager
def bn_momentum_override(model: nn.Module, momentum: float | None) -> Iterator[None]:
    if momentum is None:
        yield
        return
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    before = [m.momentum for m in norms]
    for m in norms:
        m.momentum = momentum
    try:
        yield
    finally:
        for m, v in zip(norms, before):
            m.momentum = v


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
