"""Import the real timm for tests/test_timm_real.py, or say why it cannot be imported.

timm imports torchvision. On a machine whose torch is the CPU build (this project's test
machine: torch 2.13.0+cpu), PyPI's torchvision 0.28.0 is a CUDA build: its C extension does
not load, and its Python part then fails on import at ``register_fake("torchvision::nms")``
('operator torchvision::nms does not exist'). timm's EfficientNet uses no torchvision operator
(it takes ``FrozenBatchNorm2d`` and the transforms, pure Python), so when exactly that
happens, the two operator schemas torchvision's meta registrations expect (``nms`` and
``qnms``, copied from torchvision's C++ ``TORCH_LIBRARY`` definitions) are declared, without
any kernel, and the import is tried again. Calling those operators still fails; nothing
else changes. A working torchvision is imported as it is.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBRARY: Any = None  # kept alive: a torch.library.Library drops its definitions when collected
HOW = "bash tools/setup.sh installs it (or pip install 'effnas[timm]')"


def _forget(prefixes: tuple[str, ...]) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in prefixes]:
        del sys.modules[name]


def _declare_torchvision_schemas() -> None:
    global _LIBRARY
    import torch
    if _LIBRARY is None:
        _LIBRARY = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS.values():
            _LIBRARY.define(schema)


def import_timm() -> tuple[ModuleType | None, str]:
    """(timm, "") or (None, why it is not importable)."""
    try:
        import timm
        import timm.models.efficientnet  # noqa: F401
        return timm, ""
    except ImportError as e:
        return None, f"timm is not importable ({e}); {HOW}"
    except RuntimeError as e:
        if "operator torchvision::" not in str(e):
            return None, f"timm is not importable (RuntimeError: {e}); {HOW}"
    _forget(("timm", "torchvision"))
    _declare_torchvision_schemas()
    try:
        import timm
        import timm.models.efficientnet  # noqa: F401, F811
        return timm, ""
    except Exception as e:  # noqa: BLE001 (any failure is a reason to skip, said in full)
        return None, (f"timm is not importable even with torchvision's operator schemas "
                      f"declared ({type(e).__name__}: {e}); {HOW}")
