"""Old module paths, kept for one release: ``import nas.spec`` still works, warns, and gives
``nas.arch.spec`` (the same module object, so attributes and patches agree). Modules whose
names now live in several places (``nas.io``, ``nas.proxy``) forward each name to where it
is. All of them go in 0.3. No file stands for them: a finder on ``sys.meta_path`` (installed
by ``nas/__init__.py``) answers for exactly the names below.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

MOVED: dict[str, tuple[str, ...]] = {
    "nas.errors": ("nas.core.errors",),
    "nas.spec": ("nas.arch.spec",),
    "nas.units": ("nas.arch.units",),
    "nas.blockstrings": ("nas.arch.blockstrings",),
    "nas.rounding": ("nas.arch.rounding",),
    "nas.cost": ("nas.arch.cost",),
    "nas.builder": ("nas.arch.builder",),
    "nas.io": ("nas.arch.io", "nas.core.files"),
    "nas.reward": ("nas.search.reward",),
    "nas.driver": ("nas.search.driver", "controller"),
    "nas.child": ("nas.search.child",),
    "nas.runlog": ("nas.search.runlog",),
    "nas.tune_adapter": ("nas.search.tune_adapter",),
    "nas.config": ("nas.cli.config",),
    "nas.proxy": ("nas.training.proxy", "nas.training.recipe", "nas.training.engine",
                  "nas.training.feeder", "nas.training.device", "nas.training.optim"),
}


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: Any) -> ModuleType | None:
        return None  # a plain module; exec_module decides what the name stands for

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__
        targets = MOVED[name]
        warnings.warn(f"{name} is deprecated and will be removed in 0.3; import from "
                      f"{' or '.join(targets)}", DeprecationWarning, stacklevel=2)
        if len(targets) == 1:
            sys.modules[name] = importlib.import_module(targets[0])
            return
        modules = [importlib.import_module(t) for t in targets]

        def forward(attr: str) -> Any:
            for m in modules:
                if hasattr(m, attr):
                    return getattr(m, attr)
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")

        module.__getattr__ = forward  # type: ignore[method-assign]


def install() -> None:
    if not any(isinstance(f, _OldPaths) for f in sys.meta_path):
        sys.meta_path.append(_OldPaths())
