"""Predict a network's latency from the device's table (torch-free).

The raw prediction is the sum of the table's entries for the network's parts (stem, every
layer, head, pooling and classifier). A network is more than its parts timed alone: in
eager torch each module call costs dispatch time that a part timed in a tight loop hides
partly, caches are warm in a loop and colder between different layers, and a runtime that
fuses kernels (ONNX Runtime) fuses across a layer's boundary too (nn-Meter's lesson). The
correction is a linear model of the measured latency, fitted on whole networks measured on
the same device (random children of the space, seeded apart from any evaluation), minimising
the *relative* error:

    latency = a * (sum of entries) + b * (number of parts) + c

``b`` is the per-part cost the isolated timings miss or double count, ``c`` the network's
own fixed cost (module calls around the stages). Kept in the table per batch size, with
its fit's error.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

from nas.arch.io import load_spec
from nas.arch.spec import ArchSpec, identity
from nas.core.errors import ConfigError
from nas.latency.keys import PartKey, network_keys
from nas.latency.table import LatencyTable, network_record_key

FEATURES = ("sum_ms", "parts", "one")


@dataclass(frozen=True)
class Prediction:
    """A predicted latency in milliseconds (``ms``) and how it was made."""

    ms: float
    raw_ms: float            # the sum of the table's entries
    corrected: bool          # whether the table's correction was applied
    parts: tuple[tuple[str, float], ...]  # (part key, ms) in running order

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, ms in self.parts:
            kind = key.split(":", 1)[0]
            out[kind] = out.get(kind, 0.0) + ms
        return out


def _parts(spec: ArchSpec, table: LatencyTable, resolution: int | None, batch: int,
           num_classes: int, in_channels: int) -> list[tuple[PartKey, float]]:
    keys = network_keys(spec, resolution, batch, num_classes, in_channels)
    missing = table.missing(dict.fromkeys(keys))
    if missing:
        size = spec.resolution if resolution is None else resolution
        raise ConfigError(
            f"the latency table ({table.describe()}) has no entry for {len(missing)} of "
            f"{spec.name or 'this network'}'s parts at {size} px, batch {batch} (first: "
            f"{missing[0].text}); build the space's table at that size with "
            f"nas.latency.build_table(space, resolution={size})")
    return [(k, table.ms(k)) for k in keys]


def features(parts: Sequence[tuple[PartKey, float]]) -> list[float]:
    return [sum(ms for _, ms in parts), float(len(parts)), 1.0]


def predict_latency(spec: ArchSpec | str | os.PathLike[str], table: LatencyTable, *,
                    resolution: int | None = None,
                    batch: int = 1, num_classes: int = 1000, in_channels: int = 3,
                    correct: bool = True) -> Prediction:
    """The latency ``table`` predicts for ``spec`` at ``resolution`` (None: the spec's) and
    ``batch``: the sum of its parts' entries, corrected by the table's fit for this batch
    when it has one (and ``correct``). A part the table lacks is a one-line error."""
    if isinstance(spec, (str, os.PathLike)) and str(spec).strip():
        spec = load_spec(spec)
    if not isinstance(spec, ArchSpec):
        raise ConfigError(f"spec: got {spec!r}; use an ArchSpec, a spec file or a bundled "
                          "spec's name")
    if not isinstance(table, LatencyTable):
        raise ConfigError(f"table: got {type(table).__name__}; use a LatencyTable "
                          "(nas.latency.LatencyTable.for_device(), or "
                          "nas.latency.build_table(space))")
    parts = _parts(spec, table, resolution, batch, num_classes, in_channels)
    raw = sum(ms for _, ms in parts)
    fit = table.corrections.get(f"b{batch}") if correct else None
    ms = raw
    if fit is not None:
        ms = sum(c * x for c, x in zip(fit["coef"], features(parts)))
        ms = max(ms, 0.5 * raw)  # a fit extrapolated far below its networks: stay sane
    return Prediction(ms, raw, fit is not None, tuple((k.text, v) for k, v in parts))


def _solve(rows: list[list[float]], ys: list[float]) -> list[float]:
    """Least squares of the relative error: minimise sum(((X b - y) / y)^2)."""
    import numpy as np
    x = np.asarray(rows, dtype=float) / np.asarray(ys, dtype=float)[:, None]
    coef, *_ = np.linalg.lstsq(x, np.ones(len(ys)), rcond=None)
    return [float(c) for c in coef]


def fit_correction(table: LatencyTable, specs: Sequence[ArchSpec], *,
                   resolution: int | None = None, batch: int = 1,
                   space: Any = None) -> dict[str, Any]:
    """Fit the correction on ``specs`` whose whole-network latencies ``table.networks`` holds
    (:func:`nas.latency.table.measure_networks`); every part must be in the table."""
    rows, ys, noisy = [], [], []
    for spec in specs:
        rec = table.networks.get(network_record_key(spec, resolution, batch))
        if rec is None:
            raise ConfigError(f"no measured latency of {spec.name or 'a network'} to fit on; "
                              "measure it first (measure_networks)")
        rows.append(features(_parts(spec, table, resolution, batch, 1000, 3)))
        ys.append(float(rec["ms"]))
        noisy.append(bool(rec.get("noisy")))
    need = 2 * len(FEATURES)
    if len(ys) < need:
        raise ConfigError(f"the correction needs at least {need} measured networks; "
                          f"got {len(ys)}")
    # Networks measured while the machine was busy are left out when enough others remain.
    keep = [i for i in range(len(ys)) if not noisy[i]]
    if len(keep) < need:
        keep = list(range(len(ys)))
    rows_k, ys_k = [rows[i] for i in keep], [ys[i] for i in keep]
    coef = _solve(rows_k, ys_k)
    form = "a * sum_ms + b * parts + c"
    if coef[0] <= 0:  # nonsense from noisy measurements: a plain scale of the sum instead
        coef = _solve([[r[0]] for r in rows_k], ys_k) + [0.0, 0.0]
        form = "a * sum_ms (the full fit gave a <= 0)"
    errors = [sum(c * x for c, x in zip(coef, row)) / y - 1 for row, y in zip(rows_k, ys_k)]
    raw = [row[0] / y - 1 for row, y in zip(rows_k, ys_k)]
    return {
        "form": form,
        "features": list(FEATURES), "coef": coef, "networks": len(ys_k),
        "noisy_left_out": len(ys) - len(ys_k),
        "resolution": resolution, "batch": batch,
        "space": getattr(space, "name", None), "space_hash": space.hash() if space else None,
        "fit_rms_rel_error": math.sqrt(sum(e * e for e in errors) / len(errors)),
        "fit_max_rel_error": max(abs(e) for e in errors),
        "raw_mean_rel_error": sum(raw) / len(raw),
        "fitted_on": [identity(spec) for spec in specs],  # an evaluation leaves these out
    }
