"""``python -m nas.train SPEC``: train a spec fully (the command is :mod:`nas.cli.train`; the
training itself is :mod:`nas.training.fit` on the engine of :mod:`nas.training.engine`)."""

from __future__ import annotations

import sys
from typing import Any

from nas.cli.train import build_parser, main

__all__ = ["build_parser", "main"]


def __getattr__(name: str) -> Any:
    # The trainer's internals lived here before the training engine; kept for one release.
    import warnings

    from nas import training
    from nas.training import checkpoint, engine, fit
    for module in (fit, engine, checkpoint):
        if hasattr(module, name):
            warnings.warn(f"nas.train.{name} is deprecated and will be removed in 0.3; import it "
                          f"from {module.__name__}", DeprecationWarning, stacklevel=2)
            return getattr(module, name)
    if name == "Trainer":
        warnings.warn("nas.train.Trainer is deprecated; use nas.training.engine.Engine",
                      DeprecationWarning, stacklevel=2)
        return training.engine.Engine
    raise AttributeError(f"module 'nas.train' has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
