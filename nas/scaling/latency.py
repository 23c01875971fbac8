"""A family at latency budgets (``effnas scale --budgets 5ms,10ms,20ms``): each member's phi
solved on its latency predicted from this device's table, then the member measured whole.

The solver is :func:`scaler.solve_budget`, the one that fits MACs budgets, given a
:class:`scaler.Cost` whose value is a predicted latency (:func:`latency_cost`). Scaled
members have widths, depths and resolutions that a search space's table lacks, so the parts
a candidate needs are measured on demand (:func:`nas.latency.build.fill`) into the device's
cached table, where the next candidate, member or run finds them.

How a sum of parts becomes a prediction (``latency.prediction``):

``calibrated`` (what ``auto`` picks)
    the plain sum times the baseline's measured latency over its own plain sum: the
    baseline is measured whole once, and the scaled members, being made of the same blocks,
    are assumed to keep its ratio of network to parts;
``raw``
    the plain sum of parts;
``corrected``
    the table's correction for batch 1 (fitted by ``effnas latency --build-table`` on a
    space's children at one resolution); an error when the table has none.

docs/latency.md ("A family at latency budgets") has the measurement that chose ``auto``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import scaler
from nas.arch.spec import ArchSpec
from nas.core.errors import ConfigError
from nas.latency.budgets import LatencyBudgetSettings
from nas.latency.keys import network_keys
from nas.latency.settings import Timing, check_threads
from nas.latency.table import LatencyTable
from nas.latency.units import format_latency

BATCH = 1  # latency budgets are batch-1 latencies


@dataclass
class _Counter:
    parts: int = 0      # parts measured into the table by this run
    predictions: int = 0


def device_table(s: LatencyBudgetSettings) -> LatencyTable:
    """This device's cached table for ``s`` (channels-last, as members are trained); a
    thread count over this machine's CPUs is a one-line error naming ``latency.threads``."""
    try:
        check_threads(s.threads)
    except ConfigError as e:
        raise ConfigError(f"latency.{e}") from None
    return LatencyTable.for_device(s.runtime, s.threads, True, s.cache_dir, s.clock)


def raw_ms(spec: ArchSpec, table: LatencyTable, *, timing: Timing | None = None,
           counter: _Counter | None = None) -> tuple[float, Any]:
    """The plain sum of ``spec``'s parts at its own resolution, batch 1, measuring the parts
    the table lacks first; and the :class:`~nas.latency.predict.Prediction`."""
    from nas.latency.build import fill
    from nas.latency.predict import predict_latency
    missing = table.missing(dict.fromkeys(network_keys(spec, None, BATCH)))
    if missing:
        n = fill(table, missing, timing=timing)
        if counter is not None:
            counter.parts += n
    p = predict_latency(spec, table, batch=BATCH, correct=True)
    if counter is not None:
        counter.predictions += 1
    return p.raw_ms, p


def latency_cost(table: LatencyTable, prediction: str, *, scale: float = 1.0,
                 timing: Timing | None = None,
                 counter: _Counter | None = None) -> scaler.Cost:
    """The :class:`scaler.Cost` of a spec: its latency predicted from ``table`` as
    ``prediction`` says (the plain sum for ``raw`` and ``calibrated``, the table's
    correction for ``corrected``), times ``scale``, in milliseconds."""
    if prediction == "corrected" and f"b{BATCH}" not in table.corrections:
        raise ConfigError(
            f"latency.prediction=corrected: the latency table ({table.describe()}) has no "
            "correction for batch 1; build one with nas.latency.build_table(space), or use "
            "latency.prediction=auto")

    def of(spec: ArchSpec) -> float:
        raw, p = raw_ms(spec, table, timing=timing, counter=counter)
        return (p.ms if prediction == "corrected" else raw) * scale

    name = {"raw": "plain sum of parts", "corrected": "corrected sum of parts",
            "calibrated": "sum of parts"}[prediction]
    times = f" x {scale:.3f}" if scale != 1.0 else ""
    return scaler.Cost(f"predicted latency, {name}{times}", of, format_latency)


@dataclass(frozen=True)
class LatencyFamily:
    """What :func:`latency_family` made: the members (each spec's ``meta['latency']`` holds
    its measurement), the baseline's own measurement, and how they were predicted."""

    members: tuple[scaler.FamilyMember, ...]
    base: ArchSpec                 # with meta['latency']
    table: LatencyTable
    prediction: str                # raw, calibrated or corrected
    scale: float                   # calibrated: the baseline's measured / sum of parts
    parts_measured: int
    misses: tuple[str, ...]        # members outside the tolerance by prediction
    settings: LatencyBudgetSettings = LatencyBudgetSettings()
    measured: bool = False         # the members measured whole (measure_members)
    coefficients: Any = None       # what re-aiming solves with (measure_members)
    resolution_multiple: int = 4
    tolerance: float = scaler.LATENCY_TOLERANCE
    timing: Timing | None = None

    def summary(self) -> dict[str, Any]:
        """What ``latency.yaml`` records."""
        return {
            "device": self.table.describe(), "fingerprint": self.table.fingerprint,
            "table": None if self.table.path is None else str(self.table.path),
            "batch": BATCH, "prediction": self.prediction, "scale": self.scale,
            "parts_measured": self.parts_measured, "tolerance": self.tolerance,
            "reaim": self.settings.reaim,
            "baseline": {"name": self.base.name, **_without_device(self.base)},
            "members": [{"name": m.spec.name, "phi": m.phi, "resolution": m.spec.resolution,
                         "macs": m.macs, "target_ms": m.target_ms,
                         "predicted_ms": m.predicted_ms, "predicted_error": m.target_error,
                         "within_tolerance": m.spec.meta["family"].get("within_tolerance"),
                         **_without_device(m.spec)} for m in self.members],
            "misses": list(self.misses),
        }


def _without_device(spec: ArchSpec) -> dict[str, Any]:
    return {k: v for k, v in spec.meta.get("latency", {}).items() if k != "device"}


def _measured(lat: Any, target_ms: float | None, predicted_ms: float | None,
              device: str) -> dict[str, Any]:
    out = {"median_ms": round(lat.median_ms, 4), "p25_ms": round(lat.p25_ms, 4),
           "p75_ms": round(lat.p75_ms, 4), "p10_ms": round(lat.p10_ms, 4),
           "p90_ms": round(lat.p90_ms, 4), "runs": lat.runs, "noisy": lat.noisy,
           "device": device}
    if lat.noisy:
        out["reason"] = lat.reason
    if predicted_ms is not None:
        out["predicted_ms"] = round(predicted_ms, 4)
    if target_ms is not None:
        out["target_ms"] = target_ms
        out["error"] = lat.median_ms / target_ms - 1
    return out


def _measure(spec: ArchSpec, s: LatencyBudgetSettings) -> Any:
    from nas.latency.measure import measure_latency
    return measure_latency(spec, batch=BATCH, threads=s.threads, runtime=s.runtime,
                           channels_last=True, max_seconds=s.max_seconds, clock=s.clock)


def latency_family(base: ArchSpec, coefficients: Any, budgets_ms: Sequence[float],
                   s: LatencyBudgetSettings | None = None, *, resolution_multiple: int = 4,
                   tolerance: float = scaler.LATENCY_TOLERANCE,
                   timing: Timing | None = None, measure: bool = True,
                   say: Callable[[str], None] = lambda line: None) -> LatencyFamily:
    """Scale ``base`` into one member per latency budget (milliseconds, batch 1) on this
    machine, as the module says: solve each member's phi on its predicted latency (within
    ``tolerance``, else the closest, with a warning to ``say``), then, with ``measure``,
    measure each member whole (:func:`measure_members`; ``s.max_seconds`` each).
    ``timing``: how the table's missing parts are timed (default
    :data:`nas.latency.settings.PART_TIMING`). Measures (the baseline at least): imports
    torch."""
    s = s or LatencyBudgetSettings()
    table = device_table(s)
    device = table.describe()
    counter = _Counter()
    prediction = "calibrated" if s.prediction == "auto" else s.prediction

    say(f"latency budgets on {device}\n  table: {table.path}")
    base_raw, base_pred = raw_ms(base, table, timing=timing, counter=counter)
    base_lat = _measure(base, s)
    scale = base_lat.median_ms / base_raw if prediction == "calibrated" else 1.0
    base_predicted = (base_pred.ms if prediction == "corrected" else base_raw * scale)
    base = base.with_meta(latency=_measured(base_lat, None, base_predicted, device))
    say(f"  baseline {base.name or 'baseline'} at {base.resolution} px: measured "
        f"{format_latency(base_lat.median_ms)}{' (noisy)' if base_lat.noisy else ''}, plain "
        f"sum of parts {format_latency(base_raw)}"
        + (f"; members are predicted as the sum x {scale:.3f}" if prediction == "calibrated"
           else f"; members are predicted by the {prediction} sum of parts"))
    if base_lat.noisy and prediction == "calibrated":
        say(f"warning: the baseline's measurement is noisy ({base_lat.reason}); every "
            "member is aimed with it, so measure on a quiet machine")
    misses: list[str] = []

    def miss(line: str) -> None:
        misses.append(line)
        say(f"warning: {line}")

    cost = latency_cost(table, prediction, scale=scale, timing=timing, counter=counter)
    members = scaler.fit_latency_budgets(base, coefficients, list(budgets_ms), cost,
                                         resolution_multiple, tolerance=tolerance,
                                         on_miss=miss)
    say(f"  solved {len(members)} member(s) on {counter.predictions} predictions, measuring "
        f"{counter.parts} part(s) the table lacked")
    fam = LatencyFamily(tuple(members), base, table, prediction, scale, counter.parts,
                        tuple(misses), s, False, coefficients, resolution_multiple, tolerance,
                        timing)
    return measure_members(fam, say) if measure else fam


def measure_members(fam: LatencyFamily,
                    say: Callable[[str], None] = lambda line: None) -> LatencyFamily:
    """Each member measured whole; its ``meta['latency']`` holds the median, the spread,
    the noisy flag and the miss against its budget.

    With ``latency.reaim`` N > 0, a member measured more than the tolerance off its budget
    is solved again with its prediction scaled by its own measured / predicted latency (a
    scaled network's ratio of whole to parts need not be the baseline's), and measured
    again, up to N times; ``meta['latency']['aims']`` lists every try (phi, predicted,
    measured) and the member is the try measured closest to its budget."""
    device = fam.table.describe()
    counter = _Counter()
    done, misses = [], list(fam.misses)
    for m in fam.members:
        aims: list[dict[str, Any]] = []
        tries: list[tuple[scaler.FamilyMember, dict[str, Any]]] = []
        scale = fam.scale
        while True:
            lat = _measure(m.spec, fam.settings)
            meta = _measured(lat, m.target_ms, m.predicted_ms, device)
            aims.append({"phi": m.phi, "resolution": m.spec.resolution,
                         "predicted_ms": meta.get("predicted_ms"),
                         "measured_ms": meta["median_ms"], "error": meta["error"]})
            tries.append((m, meta))
            say(f"  {m.name}: phi {m.phi:g}, {m.spec.resolution} px, predicted "
                f"{format_latency(m.predicted_ms or 0.0)} ({m.target_error:+.1%}), measured "
                f"{format_latency(lat.median_ms)} ({meta['error']:+.1%})"
                f"{' noisy' if lat.noisy else ''}")
            if len(aims) > fam.settings.reaim or abs(meta["error"]) <= fam.tolerance:
                break
            scale *= lat.median_ms / (m.predicted_ms or lat.median_ms)
            cost = latency_cost(fam.table, fam.prediction, scale=scale, timing=fam.timing,
                                counter=counter)
            say(f"    re-aiming {m.name}: predictions x "
                f"{lat.median_ms / (m.predicted_ms or lat.median_ms):.3f} (its measured / "
                "predicted)")
            try:
                [m2] = scaler.fit_latency_budgets(fam.base, fam.coefficients, [m.target_ms],
                                                  cost, fam.resolution_multiple,
                                                  tolerance=fam.tolerance,
                                                  on_miss=misses.append)
            except ConfigError as e:  # out of reach with the member's own ratio
                misses.append(f"re-aiming {m.name}: {e}")
                say(f"warning: re-aiming {m.name}: {e}")
                break
            m = replace(m2, name=m.name, spec=m2.spec.replace(name=m.spec.name))
        m, meta = min(tries, key=lambda t: abs(t[1]["error"]))
        if len(aims) > 1:
            meta = {**meta, "aims": aims}
            say(f"    {m.name}: kept phi {m.phi:g} ({meta['error']:+.1%} measured)")
        done.append(replace(m, spec=m.spec.with_meta(latency=meta)))
    return replace(fam, members=tuple(done), measured=True, misses=tuple(misses),
                   parts_measured=fam.parts_measured + counter.parts)
