"""Latency budgets of a scaled family (``effnas scale --budgets 5ms,10ms``): reading a budget
list that may be in MACs or in latency, and how the members are predicted and measured.
Torch-free; the family itself is made by :mod:`nas.scaling.latency`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from nas.core.checks import check_int, check_number
from nas.core.errors import ConfigError
from nas.core.settings import shown
from nas.latency.settings import check_clock, check_runtime
from nas.latency.units import check_plausible_latency, format_latency, parse_latency

# Anything that ends in a latency unit was meant as a latency (``-5ms`` included), so its
# error speaks of latencies rather than of multiply-adds.
_LATENCY_LIKE = re.compile(r"^.*\d\.?\s?(us|µs|ms|s)$", re.IGNORECASE)
_BARE_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_EXAMPLES = "5ms, 10ms, 20ms"


def is_latency(value: Any) -> bool:
    """Whether a budget as written is a latency (``5ms``, ``800us``) rather than MACs."""
    return isinstance(value, str) and bool(_LATENCY_LIKE.match(value.strip()))


def parse_budget_latency(value: Any, key: str = "budgets") -> float:
    """One latency budget in milliseconds; a negative one, zero, a bare number or a word is a
    one-line error naming ``key``."""
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.startswith("-"):
        raise ConfigError(f"{key}={text}: a latency budget must be positive, such as "
                          f"{_EXAMPLES}")
    return parse_latency(text, key)


def read_latency_budgets(value: Any, key: str = "budgets") -> tuple[float, ...] | None:
    """A budget list as milliseconds when it is one of latencies (each with its unit), None
    when it is one of MACs (or None). Mixing the two, a latency that is not positive, and a
    bare number among latencies are one-line errors naming ``key``."""
    if not isinstance(value, (list, tuple)) or not any(is_latency(v) for v in value):
        return None
    first = next(v for v in value if is_latency(v))
    other = next((v for v in value if not is_latency(v)), None)
    if other is not None:
        text = other.strip() if isinstance(other, str) else other
        if isinstance(other, (int, float)) or (isinstance(text, str)
                                               and _BARE_NUMBER.match(text)):
            raise ConfigError(f"{key}={shown(value)}: {text} has no unit; the other budgets "
                              f"are latencies, so write {text}ms or {text}s (all latencies, "
                              f"such as {_EXAMPLES})")
        from nas.arch.units import parse_macs
        try:
            parse_macs(other, key)
        except ConfigError:
            raise ConfigError(f"{key}={shown(value)}: {text!r} is not a latency; write each "
                              f"budget with its unit, such as {_EXAMPLES}") from None
        raise ConfigError(f"{key}={shown(value)}: mixes MACs ({text}) and latencies "
                          f"({first.strip()}); give a family's budgets all in MACs (600M,1.2G) "
                          f"or all in latency ({_EXAMPLES})")
    ms = tuple(parse_budget_latency(v, key) for v in value)
    twice = next((m for i, m in enumerate(ms) if m in ms[:i]), None)
    if twice is not None:
        raise ConfigError(f"{key}={shown(value)}: {format_latency(twice)} is given twice; "
                          "list each budget once")
    return ms


def check_plausible_budgets(ms: tuple[float, ...], given: Any, key: str = "budgets",
                            force: bool = False) -> None:
    """Latency budgets under 10us or over 60s: refused unless ``force`` (likely typos)."""
    for m, v in zip(ms, given):
        check_plausible_latency(m, v, key, force)


PREDICTIONS = ("auto", "calibrated", "raw", "corrected")


@dataclass(frozen=True)
class LatencyBudgetSettings:
    """How a family at latency budgets is predicted and measured (the ``latency`` section of
    ``nas.ScaleSettings``; ``effnas latency``'s flags of the same names).

    ``threads``, ``runtime`` and ``cache_dir`` pick this device's table (as ``effnas
    latency``; channels-last and the wall clock, as networks are trained and used);
    ``prediction`` is what the solver aims with: ``calibrated`` (the plain sum of parts
    times the baseline's measured latency over its own sum), ``raw`` (the plain sum),
    ``corrected`` (the table's correction for batch 1, fitted on a space's children) or
    ``auto`` (``calibrated``; :mod:`nas.scaling.latency` says why); ``max_seconds`` caps the
    timing of each network measured whole; ``clock`` is ``wall`` (latency as a user sees
    it) or ``thread`` (the thread's CPU time, one thread: for a machine that cannot be kept
    quiet; a table of its own); ``reaim`` N: a member measured more than 5 % off its budget
    is solved again with its prediction scaled by its own measured / predicted latency and
    measured again, up to N times (the try measured closest is kept)."""

    threads: int = 1
    runtime: str = "torch"
    cache_dir: str | None = None
    prediction: str = "auto"
    max_seconds: float = 10.0
    clock: str = "wall"
    reaim: int = 0

    def __post_init__(self) -> None:
        check_int(self.threads, "latency.threads", 1)
        try:
            check_runtime(self.runtime)
            check_clock(self.clock, self.threads)
        except ConfigError as e:
            raise ConfigError(f"latency.{e}") from None
        if self.cache_dir is not None and not isinstance(self.cache_dir, (str, os.PathLike)):
            raise ConfigError(f"latency.cache_dir={self.cache_dir!r}: expected a folder path")
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", os.fspath(self.cache_dir))
        if self.prediction not in PREDICTIONS:
            raise ConfigError(f"latency.prediction={self.prediction!r}: use one of "
                              f"{', '.join(PREDICTIONS)}")
        check_number(self.max_seconds, "latency.max_seconds", 0.0, 86_400.0, strict=True)
        check_int(self.reaim, "latency.reaim", 0, 10)
