"""The settings of a latency measurement, checked before anything is built (torch-free).

Every bad value is a :class:`~nas.core.errors.ConfigError` of one line that names the
keyword (``threads``, ``batch``, ...); the command maps them to its flags.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from nas.arch.spec import MIN_RESOLUTION
from nas.core.checks import check_int, check_number, is_number
from nas.core.errors import ConfigError
from nas.latency.device import ONNX_EXTRA, RUNTIMES, usable_cpus

MAX_BATCH = 4096
MAX_RESOLUTION = 4096  # pixels, as train's --resolution refuses larger without --force
MAX_RUNS = 1_000_000


@dataclass(frozen=True)
class Timing:
    """How many runs: ``runs`` fixed, or (None) adaptively until the median's 95 % interval
    is within ``+-rel`` of it after at least ``min_runs``, stopping at ``max_seconds``
    (the median is then flagged noisy); ``warmup`` runs first (None: at least 3 runs and
    ``warmup_seconds``)."""

    runs: int | None = None
    warmup: int | None = None
    min_runs: int = 20
    max_runs: int = 100_000
    rel: float = 0.02
    max_seconds: float = 10.0
    warmup_seconds: float = 0.25
    clock: str = "wall"


    def __post_init__(self) -> None:
        if self.runs is not None:
            check_int(self.runs, "runs", 1, MAX_RUNS)
        if self.warmup is not None:
            check_int(self.warmup, "warmup", 0, MAX_RUNS)
        check_int(self.min_runs, "min_runs", 1, MAX_RUNS)
        check_int(self.max_runs, "max_runs", 1, MAX_RUNS)
        check_number(self.rel, "rel", 0.0, 1.0, strict=True)
        check_number(self.max_seconds, "max_seconds", 0.0, 86_400.0, strict=True)
        check_number(self.warmup_seconds, "warmup_seconds", 0.0, 3_600.0)
        check_clock(self.clock)


CLOCKS = ("wall", "thread")


def check_clock(clock: Any, threads: int = 1) -> str:
    """``wall`` (latency as a user sees it), or ``thread``: the measuring thread's CPU time,
    which leaves out the time other work took the core (not the caches and memory bandwidth
    it shares), for a machine that cannot be kept quiet; one thread only."""
    if clock not in CLOCKS:
        raise ConfigError(f"clock: unknown clock {clock!r}; use one of {', '.join(CLOCKS)}")
    if clock == "thread" and threads != 1:
        raise ConfigError(f"clock: 'thread' times one thread, not {threads}; use the wall "
                          "clock")
    return clock


def check_runtime(runtime: Any) -> str:
    """``runtime`` if known and installed; else a one-line error (naming the extra)."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime: unknown runtime {runtime!r}; use one of "
                          f"{', '.join(RUNTIMES)}")
    if runtime == "onnxruntime":
        missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(f"runtime onnxruntime needs {' and '.join(missing)}, not "
                              f"installed: {ONNX_EXTRA}")
    return runtime


def check_threads(threads: Any, name: str = "threads") -> int:
    """``threads`` (the setting ``name``) as an int from 1 to the CPUs this process may use."""
    cpus = usable_cpus()
    check_int(threads, name, 1)
    if threads > cpus:
        raise ConfigError(f"{name}: got {threads}; this machine lets this process use {cpus} "
                          f"CPU{'s' if cpus != 1 else ''}, and more threads than CPUs time the "
                          "scheduler, not the network")
    return int(threads)


def check_batch(batch: Any) -> int:
    return check_int(batch, "batch", 1, MAX_BATCH)


def check_resolution(resolution: Any) -> int | None:
    if resolution is None:
        return None
    return check_int(resolution, "resolution", MIN_RESOLUTION, MAX_RESOLUTION)


def check_seconds(value: Any, name: str) -> float:
    if not is_number(value):
        raise ConfigError(f"{name}: got {value!r}; use a number of seconds > 0")
    return check_number(value, name, 0.0, 86_400.0, strict=True)


# A table's parts: 3 warm-up runs (and 20 ms), then at least 7 runs, until the median is
# within +-3 %, at most 1 s each. A part is small: its buffers and kernels are ready after
# a run, and the default space has over 5,000 of them.
PART_TIMING = Timing(min_runs=7, rel=0.03, max_seconds=1.0, warmup_seconds=0.02)
