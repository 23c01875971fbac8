"""Latency on a device: measure a network, and predict it from a per-device table.

==========================  ================================================================
:func:`measure_latency`     time a spec's inference here (eager torch or ONNX Runtime):
                            median, spread, and whether the machine was too noisy to trust
:func:`predict_latency`     a spec's latency from the device's :class:`LatencyTable`: the
                            sum of its parts' entries, corrected by a fit on whole networks
:func:`build_table`         measure every part a search space can produce (cached per
                            device fingerprint, resumable), then fit the correction
==========================  ================================================================

Measuring imports torch (:mod:`nas.latency.measure`); the table, its keys, the fingerprint
and the prediction do not. The command is ``effnas latency``. Another device's table is
built on its Ray node by :func:`nas.ray.latency.build_table_on` (Ray sits floors above).
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "measure_latency": "nas.latency.measure", "Latency": "nas.latency.measure",
    "measure_part": "nas.latency.measure",
    "predict_latency": "nas.latency.predict", "Prediction": "nas.latency.predict",
    "fit_correction": "nas.latency.predict",
    "LatencyTable": "nas.latency.table",
    "build_table": "nas.latency.build", "BuildReport": "nas.latency.build",
    "PartKey": "nas.latency.keys", "network_keys": "nas.latency.keys",
    "space_keys": "nas.latency.keys",
    "fingerprint": "nas.latency.device", "cache_dir": "nas.latency.device",
    "parse_latency": "nas.latency.units", "format_latency": "nas.latency.units",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nas.latency' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(_LAZY)
