"""Latencies as people write them: ``15ms``, ``800us``, ``0.2s``; and back. Torch-free.

Accepted: a positive decimal or scientific number followed by one unit, ``us`` (or ``µs``),
``ms`` or ``s``, with no space inside the number (one space before the unit is fine).
A bare number is refused: ``15`` could be seconds or milliseconds. Values are returned in
milliseconds, the unit :mod:`nas.latency` reports in.
"""

from __future__ import annotations

import math
import re
from typing import Any

from nas.core.errors import ConfigError

_UNITS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}
_LATENCY = re.compile(r"^(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?) ?(?P<unit>us|µs|ms|s)$")
_EXAMPLES = "such as 15ms, 800us or 0.2s"

# Targets outside these are legal but almost surely typos (15s for 15ms): refused unless
# forced. One inference of the smallest network takes tens of microseconds on a fast CPU.
MIN_PLAUSIBLE_MS = 0.01
MAX_PLAUSIBLE_MS = 60_000.0


def parse_latency(value: Any, option: str = "target_latency") -> float:
    """Milliseconds from ``15ms``/``800us``/``0.2s``; bad input raises a one-line
    :class:`ConfigError` naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{option}={value!r}: expected a latency with its unit {_EXAMPLES}")
    if isinstance(value, (int, float)):
        if not value > 0:
            raise ConfigError(f"{option}={value!r}: expected a positive latency {_EXAMPLES}")
        raise ConfigError(f"{option}={value!r}: a latency needs its unit; write {value}ms "
                          f"or {value}s ({_EXAMPLES})")
    text = value.strip()
    m = _LATENCY.match(text)
    if m is None:
        number = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
        if re.fullmatch(rf"-\s*{number} ?(?:us|µs|ms|s)?|0*\.?0*(?:[eE][+-]?\d+)?", text) \
                and text.strip("-"):
            raise ConfigError(f"{option}={text}: expected a positive latency {_EXAMPLES}")
        if re.fullmatch(number, text):
            raise ConfigError(f"{option}={text}: a latency needs its unit; write {text}ms or "
                              f"{text}s ({_EXAMPLES})")
        raise ConfigError(f"{option}={value!r}: expected a latency with its unit {_EXAMPLES}")
    ms = float(m["num"]) * _UNITS[m["unit"]]
    if not math.isfinite(ms) or ms <= 0:
        raise ConfigError(f"{option}={text}: expected a positive latency {_EXAMPLES}")
    return ms


def check_plausible_latency(ms: float, value: Any, option: str = "target_latency",
                            force: bool = False, most_ms: float = MAX_PLAUSIBLE_MS) -> float:
    """``ms`` (parsed from ``value``) when it lies in [10us, ``most_ms``] (60s) or
    ``force``; otherwise a one-line :class:`ConfigError` with the likely fix and the way to
    insist."""
    if force or MIN_PLAUSIBLE_MS <= ms <= most_ms:
        return ms
    shown = value.strip() if isinstance(value, str) else repr(value)
    if ms < MIN_PLAUSIBLE_MS:
        raise ConfigError(f"{option}={shown} is under 10us (a whole network's inference takes "
                          "longer); check the unit (15ms, 800us), or pass force=True to use it "
                          "anyway")
    most = f"{most_ms / 1e3:g}s" if most_ms >= 1e3 else format_latency(most_ms)
    raise ConfigError(f"{option}={shown} is over {most} for one inference; "
                      "check the unit (15ms, not 15s?), or pass force=True to use it anyway")


def format_latency(ms: float) -> str:
    """Short form that :func:`parse_latency` reads back: ``850us``, ``15.2ms``, ``1.50s``."""
    if not math.isfinite(ms) or ms < 0:
        raise ValueError(f"format_latency: expected a non-negative latency, got {ms!r}")
    if ms < 1.0:
        return f"{ms * 1e3:.0f}us"
    if ms < 1000.0:
        return f"{ms:.3g}ms" if ms < 100 else f"{ms:.0f}ms"
    return f"{ms / 1e3:.2f}s"
