"""Number checks, in one place: what counts as an integer and as a finite number.

``True`` is an ``int`` in Python and ``3e8`` is a string in YAML 1.1 (PyYAML; the project's
own files and overrides read YAML 1.2 numbers, see :mod:`nas.core.files`, but a quoted value
or another reader still gives a string), so "is this a number" needs care everywhere a
setting is read; every layer asks these functions.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from nas.core.errors import ConfigError

_YAML_HINT = " (YAML 1.1 reads 3e8 as a string: write 3.0e+8)"


def is_int(v: Any) -> bool:
    """An integer (Python's or numpy's), not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and \
        type(v).__name__ != "bool_"


def is_number(v: Any) -> bool:
    """A finite real number (int or float, Python's or numpy's), not a bool."""
    return (isinstance(v, numbers.Real) and not isinstance(v, bool)
            and type(v).__name__ != "bool_" and math.isfinite(float(v)))


def _hint(v: Any) -> str:
    return _YAML_HINT if isinstance(v, str) else ""


def check_int(v: Any, name: str, lo: int | None = None, hi: int | None = None,
              error: type[Exception] = ConfigError) -> int:
    """``v`` as an ``int`` in ``[lo, hi]``; otherwise a one-line error naming ``name``."""
    if not is_int(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
        if lo is not None and hi is not None:
            want = f"an integer in [{lo}, {hi}]"
        elif lo is not None:
            want = f"an integer >= {lo}"
        elif hi is not None:
            want = f"an integer <= {hi}"
        else:
            want = "an integer"
        raise error(f"{name}: got {v!r}; use {want}{_hint(v)}")
    return int(v)


def check_number(v: Any, name: str, lo: float | None = None, hi: float | None = None,
                 strict: bool = False, error: type[Exception] = ConfigError) -> float:
    """``v`` as a finite ``float`` at least ``lo`` (above it when ``strict``) and at most
    ``hi``; otherwise a one-line error naming ``name``."""
    bad = not is_number(v)
    if not bad and lo is not None:
        bad = float(v) < lo or (strict and float(v) == lo)
    if not bad and hi is not None:
        bad = float(v) > hi
    if bad:
        parts = []
        if lo is not None:
            parts.append(f"{'>' if strict else '>='} {lo:g}")
        if hi is not None:
            parts.append(f"<= {hi:g}")
        want = "a number" + (" " + " and ".join(parts) if parts else "")
        raise error(f"{name}: got {v!r}; use {want}{_hint(v)}")
    return float(v)


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def check_duration(v: Any, name: str) -> float | None:
    """A wall time in seconds from ``v``: a positive number of seconds, or text such as
    ``90s``, ``30m``, ``1.5h``; ``None`` stays ``None`` (no limit). Anything else is a
    one-line error naming ``name``."""
    if v is None:
        return None
    want = "a positive duration such as 30m, 2h or 90s (a bare number is seconds)"
    if is_number(v):
        seconds = float(v)
    elif isinstance(v, str) and v.strip():
        text = v.strip().lower()
        unit = _DURATION_UNITS.get(text[-1])
        try:
            seconds = float(text[:-1] if unit else text) * (unit or 1.0)
        except ValueError:
            raise ConfigError(f"{name}: got {v!r}; use {want}") from None
    else:
        raise ConfigError(f"{name}: got {v!r}; use {want}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{name}: got {v!r}; use {want}")
    return seconds


# A run's seed: numpy's and torch's generators take it (torch's overflows past 2^63).
MAX_SEED = 2**32 - 1


# Input sizes outside these are legal but almost surely typos (100000 for 1000): refused
# unless forced. 8 px is the smallest a spec takes; 4096 px already needs ~200 GB of
# activations for a B0-like network in training.
PLAUSIBLE_RESOLUTION = (8, 4096)


def check_resolution(v: Any, name: str, force: bool = False, minimum: int | None = None) -> int:
    """An image size in pixels: an integer >= 8, refused above 4096 unless ``force`` (a
    one-line error naming ``name`` and the way to insist, ``pass force=True``). ``minimum``
    lowers the 8 (a data set's stored size, which a proxy may resize)."""
    lo, hi = PLAUSIBLE_RESOLUTION
    px = check_int(v, name, lo if minimum is None else minimum)  # no spec takes under 8 px
    if not force and px > hi:
        raise ConfigError(f"{name}={px}: {px} x {px} pixels is over {hi}, almost "
                          "surely a typo (ImageNet is 224, Fashion-MNIST 28); pass force=True "
                          "to use it anyway")
    return px
