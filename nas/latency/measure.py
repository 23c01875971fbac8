"""Measure inference latency on this machine: a whole network (:func:`measure_latency`) or
one part of it for the latency table (:func:`measure_part`).

How (REFERENCE.md's pitfalls): the model is built from the spec in eval mode, in
channels-last memory format as it is trained (eager torch), and run under
``torch.inference_mode()`` with torch's intra-op thread count set for the measurement and
restored afterwards; freed memory stays in the process (glibc's thresholds set once,
:mod:`nas.latency.allocator`), so no run pays page faults for its activations; it is
warmed up first; Python's garbage collector is off while timing;
each run is timed alone with ``time.perf_counter_ns`` and the result is the median of
enough runs: adaptively, until the median's 95 % interval is within a few per cent of it
(or a fixed number of runs). The spread (inter-quartile range, p10-p90) comes with it, and
the result is flagged ``noisy``, with the reason, when the median could not be pinned down
in the time allowed, the runs spread widely, or the measuring process did not get its CPUs
(other work was running: batch-1 latency needs the cores to itself).

With ``runtime="onnxruntime"`` the network is exported to ONNX in memory and run by an ONNX
Runtime CPU session with the same thread count (NCHW input: ONNX Runtime picks its own
layouts), all graph optimisations on.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import nn

from nas.arch.builder import ConvBN, Layer, build_model
from nas.arch.io import load_spec
from nas.arch.plan import LayerPlan
from nas.arch.spec import ArchSpec, StageSpec
from nas.core.errors import ConfigError
from nas.latency.allocator import keep_freed_memory
from nas.latency.keys import PartKey
from nas.latency.settings import (
    PART_TIMING,
    Timing,
    check_batch,
    check_clock,
    check_resolution,
    check_runtime,
    check_threads,
)
from nas.latency.stats import Summary, summarize

NOISY_IQR = 0.10        # runs whose inter-quartile range is over 10 % of the median
NOISY_CPU_SHARE = 0.85  # the process got under 85 % of one CPU's time while timing


@dataclass(frozen=True)
class Latency:
    """A measured latency (milliseconds per forward pass of one batch)."""

    name: str
    median_ms: float
    p10_ms: float
    p25_ms: float
    p75_ms: float
    p90_ms: float
    low_ms: float    # the median's ~95 % interval
    high_ms: float
    runs: int
    noisy: bool
    reason: str      # why it is noisy ('' when it is not)
    resolution: int
    batch: int
    threads: int
    runtime: str
    channels_last: bool
    seconds: float   # wall time of the timed runs
    cpu_share: float  # CPU time of this process / (wall time x threads) while timing

    @property
    def iqr_ms(self) -> float:
        return self.p75_ms - self.p25_ms

    @property
    def per_image_ms(self) -> float:
        return self.median_ms / self.batch

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["iqr_ms"] = self.iqr_ms
        return d

    def describe(self) -> str:
        """One line: median, spread, runs (and a second line if noisy)."""
        text = (f"median {fmt_ms(self.median_ms)} (95% interval {fmt_ms(self.low_ms)}-"
                f"{fmt_ms(self.high_ms)}; IQR {fmt_ms(self.p25_ms)}-{fmt_ms(self.p75_ms)}, "
                f"p10-p90 {fmt_ms(self.p10_ms)}-{fmt_ms(self.p90_ms)}; {self.runs} runs)")
        if self.noisy:
            text += f"\n  noisy: {self.reason}"
        return text


def fmt_ms(ms: float) -> str:
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    if ms >= 1:
        return f"{ms:.2f} ms"
    return f"{ms * 1000:.0f} us"


# --------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timed:
    summary: Summary
    seconds: float
    cpu_share: float
    capped: bool  # stopped by the time cap before the median was pinned down


def time_runs(fn: Callable[[], Any], timing: Timing, threads: int,
              collect: bool = False) -> Timed:
    """Warm ``fn`` up, then time single calls of it (milliseconds) as ``timing`` says, with
    the garbage collector off (after collecting the young generations if ``collect``: the
    last network's leftovers, in a millisecond; a full collection takes tenths of a second
    with torch loaded)."""
    gc_was_on = gc.isenabled()
    if collect:
        gc.collect(1)
    gc.disable()
    try:
        t0 = time.perf_counter()
        if timing.warmup is not None:
            for _ in range(timing.warmup):
                fn()
        else:
            n = 0
            while n < 3 or (time.perf_counter() - t0 < timing.warmup_seconds and n < 1000):
                fn()
                n += 1
        samples: list[float] = []
        adaptive = timing.runs is None
        target = timing.runs if timing.runs is not None else timing.max_runs
        next_check = timing.min_runs
        capped = False
        clock = time.thread_time_ns if timing.clock == "thread" else time.perf_counter_ns
        cpu0, w0 = time.process_time(), time.perf_counter()
        while len(samples) < target:
            a = clock()
            fn()
            samples.append((clock() - a) / 1e6)
            if not adaptive:
                continue
            n = len(samples)
            if n >= next_check:
                if summarize(samples).rel_interval <= timing.rel:
                    break
                next_check = n + max(1, n // 10)
            if time.perf_counter() - w0 >= timing.max_seconds and n >= min(3, timing.min_runs):
                capped = True
                break
        wall = time.perf_counter() - w0
        cpu = time.process_time() - cpu0
    finally:
        if gc_was_on:
            gc.enable()
    share = cpu / (wall * threads) if wall > 0 else 1.0
    summary = summarize(samples)
    if capped and summary.rel_interval <= timing.rel:
        capped = False
    return Timed(summary, wall, share, capped)


def noise_reason(t: Timed, timing: Timing, threads: int = 1) -> str:
    """Why a measurement should not be trusted ('' if it can be)."""
    s = t.summary
    reasons = []
    if timing.runs is None and t.capped:
        reasons.append(f"the median's 95% interval is +-{s.rel_interval:.1%} after {s.n} runs "
                       f"({t.seconds:.1f} s, the time cap), over the +-{timing.rel:.0%} asked")
    elif timing.runs is not None and s.rel_interval > timing.rel:
        reasons.append(f"the median's 95% interval is +-{s.rel_interval:.1%} after the "
                       f"{s.n} runs asked, over +-{timing.rel:.0%}")
    if s.rel_iqr > NOISY_IQR:
        reasons.append(f"the runs spread widely (IQR {s.rel_iqr:.0%} of the median)")
    # The calling thread computes throughout (alone with 1 thread, with the pool's threads
    # otherwise); less CPU time than wall time means it waited for a core.
    if t.cpu_share * threads < NOISY_CPU_SHARE and timing.clock == "wall":
        reasons.append(f"this process got {t.cpu_share * threads:.0%} of a CPU's time while "
                       "timing: other work is running; measure on an otherwise idle machine")
    return "; ".join(reasons)


class _Threads:
    """Set torch's intra-op thread count inside the block and restore it after."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.before = 0

    def __enter__(self) -> "_Threads":
        self.before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        return self

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.before)


# --------------------------------------------------------------------------- runners


def _input(batch: int, channels: int, size: int, channels_last: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, size, size, generator=g)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _onnx_session(module: nn.Module, x: torch.Tensor, threads: int) -> Callable[[], Any]:
    """An ONNX Runtime CPU session of ``module`` (exported in memory) and its call."""
    import importlib.util

    import onnxruntime as ort
    m = module.eval().to(memory_format=torch.contiguous_format)
    xc = x.contiguous()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # the TorchScript-based exporter: about 10x faster than dynamo per small model
            torch.onnx.export(m, (xc,), buf, input_names=["x"], output_names=["y"],
                              dynamo=False)
        except Exception:  # noqa: BLE001 - a torch without it: the dynamo exporter
            if importlib.util.find_spec("onnxscript") is None:
                raise
            buf = io.BytesIO()
            torch.onnx.export(m, (xc,), buf, input_names=["x"], output_names=["y"],
                              dynamo=True, external_data=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    feed = {name: xc.numpy()}
    return lambda: sess.run(None, feed)


def _timed(module: nn.Module, x: torch.Tensor, runtime: str, threads: int,
           timing: Timing, collect: bool = False) -> Timed:
    keep_freed_memory()  # no page faults from the allocator in the times (nas.latency.allocator)
    with _Threads(threads):
        if runtime == "onnxruntime":
            run = _onnx_session(module, x, threads)
            return time_runs(run, timing, threads, collect)
        with torch.inference_mode():
            return time_runs(lambda: module(x), timing, threads, collect)


def _settings_check(resolution: Any, batch: Any, threads: Any, runtime: Any,
                    channels_last: Any) -> tuple[int | None, int, int, str, bool]:
    res = check_resolution(resolution)
    batch = check_batch(batch)
    threads = check_threads(threads)
    runtime = check_runtime(runtime)
    if not isinstance(channels_last, bool):
        raise ConfigError(f"channels_last: got {channels_last!r}; use True or False")
    return res, batch, threads, runtime, channels_last and runtime == "torch"


def as_spec(spec: Any) -> ArchSpec:
    """``spec``, or the spec a file or bundled name (``"efficientnet-b0"``) holds."""
    if isinstance(spec, ArchSpec):
        return spec
    if isinstance(spec, (str, os.PathLike)) and str(spec).strip():
        return load_spec(spec)
    raise ConfigError(f"spec: got {spec!r}; use an ArchSpec, a spec file or a bundled spec's "
                      "name (e.g. 'efficientnet-b0')")


def measure_latency(spec: ArchSpec | str | os.PathLike[str], *,
                    resolution: int | None = None, batch: int = 1,
                    threads: int = 1, runtime: str = "torch", channels_last: bool = True,
                    warmup: int | None = None, runs: int | None = None,
                    max_seconds: float = 10.0, rel: float = 0.02, min_runs: int = 20,
                    clock: str = "wall", num_classes: int = 1000,
                    in_channels: int = 3) -> Latency:
    """Time inference of ``spec`` (a spec, a spec file or a bundled spec's name) as built,
    on this machine (see the module's docstring).

    ``runs`` None (the default) times adaptively: at least ``min_runs`` runs, until the
    median's 95 % interval is within ``+-rel`` of it, for at most ``max_seconds``; a number
    times exactly that many. ``warmup`` None warms up for at least 3 runs and 0.25 s.
    ``clock="thread"`` times the measuring thread's CPU time instead of the wall clock (one
    thread only): on a machine shared with other work it leaves out the time they took the
    core, though not their use of the caches and memory.
    """
    spec = as_spec(spec)
    res, batch, threads, runtime, cl = _settings_check(resolution, batch, threads, runtime,
                                                       channels_last)
    check_clock(clock, threads)
    timing = Timing(runs=runs, warmup=warmup, min_runs=min_runs, rel=rel,
                    max_seconds=max_seconds, clock=clock)
    size = spec.resolution if res is None else res
    model = build_model(spec, num_classes=num_classes, in_channels=in_channels).eval()
    if cl:
        model = model.to(memory_format=torch.channels_last)
    x = _input(batch, in_channels, size, cl)
    t = _timed(model, x, runtime, threads, timing, collect=True)
    return _latency(spec.name, t, timing, size, batch, threads, runtime, cl)


def _latency(name: str, t: Timed, timing: Timing, size: int, batch: int, threads: int,
             runtime: str, cl: bool) -> Latency:
    s = t.summary
    reason = noise_reason(t, timing, threads)
    return Latency(name=name, median_ms=s.median, p10_ms=s.p10, p25_ms=s.p25, p75_ms=s.p75,
                   p90_ms=s.p90, low_ms=s.lo, high_ms=s.hi, runs=s.n, noisy=bool(reason),
                   reason=reason, resolution=size, batch=batch, threads=threads,
                   runtime=runtime, channels_last=cl, seconds=t.seconds,
                   cpu_share=t.cpu_share if math.isfinite(t.cpu_share) else 0.0)


# --------------------------------------------------------------------------- parts


class _Classifier(nn.Module):
    """What the network runs after its features: global average pool, dropout, linear."""

    def __init__(self, features: int, num_classes: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(x.mean(dim=(2, 3))))


_SKIP_OF_SHORTCUT = {"none": "none", "identity": "identity", "pool": "pool"}


def part_module(key: PartKey) -> nn.Module:
    """The module the builder makes for the part ``key`` names (its own classes)."""
    act = key.activation or "silu"
    spec = ArchSpec(stages=(StageSpec("ds", 3, 1, 16, 1),), activation=act)
    if key.kind == "layer":
        plan = LayerPlan(stage=0, index=0, op=key.op, kernel=key.kernel, stride=key.stride,
                         in_channels=key.c_in, out_channels=key.c_out,
                         expand=key.expand if key.op == "mbconv" else 1, se=key.se,
                         skip=_SKIP_OF_SHORTCUT[key.shortcut], drop_path=0.0)
        layer = Layer(plan, spec)
        want = key.shortcut != "none"
        assert (layer.shortcut is not None) == want, key.text
        return layer
    if key.kind in ("stem", "head"):
        return ConvBN(key.c_in, key.c_out, key.kernel, key.stride, spec)
    if key.kind == "classifier":
        return _Classifier(key.c_in, key.c_out)
    raise ConfigError(f"unknown part kind {key.kind!r}")


def measure_part(key: PartKey, *, threads: int = 1, runtime: str = "torch",
                 channels_last: bool = True, timing: Timing | None = None,
                 clock: str = "wall") -> Latency:
    """Time the part ``key`` names alone, at its input shape (settings already checked):
    adaptively as :data:`PART_TIMING` says unless ``timing`` is given."""
    timing = timing or dataclasses.replace(PART_TIMING, clock=clock)
    cl = channels_last and runtime == "torch"
    module = part_module(key).eval()
    if cl:
        module = module.to(memory_format=torch.channels_last)
    x = _input(key.batch, key.c_in, key.size, cl)
    t = _timed(module, x, runtime, threads, timing)
    return _latency(key.text, t, timing, key.size, key.batch, threads, runtime, cl)
