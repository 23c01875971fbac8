"""The device a latency was measured on, and where its tables are cached (torch-free).

A table is only valid for the conditions it was measured in, so its file is named by a
fingerprint of them: the CPU model, the CPUs this process may use, the thread count, the
runtime and its version, torch's version (it builds the model, and eager torch is the
default runtime), the memory format, the clock (wall, or the thread's CPU time) and whether
freed memory stays in the process while measuring (:mod:`nas.latency.allocator`).
Versions are read from the installed distributions' metadata, so nothing here imports torch
or ONNX Runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from nas.latency.allocator import allocator

RUNTIMES = ("torch", "onnxruntime")
CACHE_ENV = "NAS_LATENCY_CACHE"
ONNX_EXTRA = "pip install 'effnas[onnx]'"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux; else what ``platform`` says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def version_of(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def runtime_version(runtime: str) -> str | None:
    return version_of("torch" if runtime == "torch" else "onnxruntime")


def fingerprint(runtime: str = "torch", threads: int = 1, channels_last: bool = True,
                clock: str = "wall") -> dict[str, Any]:
    """The conditions a latency table holds for (see the module's docstring)."""
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cpus": usable_cpus(),
        "threads": int(threads),
        "runtime": runtime,
        "runtime_version": runtime_version(runtime),
        "torch": version_of("torch"),
        "channels_last": bool(channels_last) if runtime == "torch" else False,
        "clock": clock,
        "allocator": allocator(),
    }


def fingerprint_id(fp: dict[str, Any]) -> str:
    """A file name for the fingerprint: readable start, hash of all of it."""
    digest = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12]
    clock = "" if fp.get("clock", "wall") == "wall" else f"-{fp['clock']}"
    return f"{fp['runtime']}-{fp['runtime_version']}-t{fp['threads']}{clock}-{digest}"


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Where latency tables live: ``override``, else ``$NAS_LATENCY_CACHE``, else
    ``$XDG_CACHE_HOME/effnas/latency``, else ``~/.cache/effnas/latency``."""
    if override is not None and str(override).strip():
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg and os.path.isabs(os.path.expanduser(xdg)) \
        else Path.home() / ".cache"
    return base / "effnas" / "latency"
