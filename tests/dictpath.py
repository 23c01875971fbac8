"""Test helper: a copy of a plain-data dict with one value at a dotted path replaced."""

from __future__ import annotations

import copy
from typing import Any

class _Delete:
    """The type of :data:`DELETE`; its repr is stable, so test ids are the same in every
    process (pytest-xdist's workers must collect the same ids)."""

    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()  # as the value: remove the key instead


def replaced(d: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``replaced(spec, "stages.2.kernel", 4)``: digits index lists, other parts are keys."""
    d = copy.deepcopy(d)
    parts = path.split(".")
    target: Any = d
    for p in parts[:-1]:
        target = target[int(p)] if p.isdigit() else target[p]
    last: Any = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return d
