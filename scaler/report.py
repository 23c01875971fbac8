"""Writing a family and the grid's outcome: spec YAMLs, ``family.md``, ``family.csv`` and
``scaling.yaml`` (read back strictly by :func:`load_scaling`). Every write is atomic."""

from __future__ import annotations

import datetime as _dt
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from nas.arch.cost import count
from nas.arch.io import save_spec
from nas.arch.spec import ArchSpec
from nas.arch.units import format_macs
from nas.core.errors import ConfigError
from nas.core.files import dump_yaml, read_yaml, write_csv, write_text_atomic
from scaler.compound import Coefficients, GridConfig, GridResult, select_best
from scaler.family import EFFICIENTNET, NUM_CLASSES, FamilyMember
from scaler.recheck import Decision

SCALING_FORMAT_VERSION = 1


# --------------------------------------------------------------------------- the family


@dataclass(frozen=True)
class FamilyFiles:
    """What :func:`write_family` wrote."""

    specs: tuple[Path, ...]
    markdown: Path
    csv: Path

    def all(self) -> tuple[Path, ...]:
        return self.specs + (self.markdown, self.csv)


_COLUMNS = ("model", "rule", "method", "phi", "width", "depth", "resolution",
            "resolution_multiple", "dropout", "params", "macs",
            "ratio_to_b0", "target_macs", "target_error", "published", "published_width",
            "published_depth", "published_resolution", "published_dropout", "published_params",
            "published_macs", "published_ratio_to_b0")


# A family at latency budgets adds these (``meta['family']``: the budget and the prediction;
# ``meta['latency']``: the member measured whole, :mod:`nas.scaling.latency`).
_LATENCY_COLUMNS = ("target_ms", "predicted_ms", "predicted_error", "measured_ms",
                    "measured_p25_ms", "measured_p75_ms", "measured_runs", "measured_error",
                    "noisy")


def _latency_cols(spec: ArchSpec) -> dict[str, Any]:
    f, lat = spec.meta.get("family", {}), spec.meta.get("latency") or {}
    target, measured = f.get("target_ms"), lat.get("median_ms")
    return {"target_ms": target, "predicted_ms": f.get("predicted_ms", lat.get("predicted_ms")),
            "predicted_error": f.get("target_error") if target is not None else None,
            "measured_ms": measured, "measured_p25_ms": lat.get("p25_ms"),
            "measured_p75_ms": lat.get("p75_ms"), "measured_runs": lat.get("runs"),
            "measured_error": (measured / target - 1) if target and measured else None,
            "noisy": lat.get("noisy")}


def _is_latency(members: Sequence[FamilyMember]) -> bool:
    return any(m.target_ms is not None for m in members)


def _rows(members: Sequence[FamilyMember], base: ArchSpec | None,
          base_name: str) -> list[dict[str, Any]]:
    b0 = EFFICIENTNET["b0"]
    if base is not None:
        base_cost = count(base, num_classes=NUM_CLASSES)
        base_macs = base_cost.macs
    elif members:
        base_macs = members[0].spec.meta["family"]["base"]["macs"]
    else:
        base_macs = b0.macs
    rows = []
    if base is not None:
        rows.append({"model": base.name or f"{base_name}-b0", "rule": "baseline",
                     "method": None, "phi": 0.0, "width": 1.0, "depth": 1.0,
                     "resolution": base.resolution, "resolution_multiple": None,
                     "dropout": float(base.dropout), "params": base_cost.params,
                     "macs": base_cost.macs, "ratio_to_b0": 1.0, "target_macs": None,
                     "target_error": None, **_published_cols(b0, b0),
                     **_latency_cols(base)})
    for m in members:
        f = m.spec.meta.get("family", {})
        rows.append({
            "model": m.spec.name, "rule": m.rule, "method": f.get("method"), "phi": m.phi,
            "width": f.get("width"), "depth": f.get("depth"), "resolution": m.spec.resolution,
            "resolution_multiple": f.get("resolution_multiple"),
            "dropout": float(m.spec.dropout), "params": m.params, "macs": m.macs,
            "ratio_to_b0": m.macs / base_macs, "target_macs": m.target_macs,
            "target_error": m.target_error,
            **(_published_cols(m.published, b0) if m.published else
               {k: None for k in _COLUMNS if k.startswith("published")}),
            **_latency_cols(m.spec),
        })
    return rows


def _published_cols(p: Any, b0: Any) -> dict[str, Any]:
    return {"published": p.name, "published_width": p.width, "published_depth": p.depth,
            "published_resolution": p.resolution, "published_dropout": p.dropout,
            "published_params": p.params, "published_macs": p.macs,
            "published_ratio_to_b0": p.macs / b0.macs}


def _csv_cells(r: dict[str, Any], columns: Sequence[str] = _COLUMNS) -> list[Any]:
    return ["" if r[k] is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k])
            for k in columns]


def _g(v: Any, fmt: str = "{:.4g}") -> str:
    return "" if v is None else fmt.format(v)


def _markdown(rows: list[dict[str, Any]], members: Sequence[FamilyMember], title: str) -> str:
    rules = sorted({m.rule for m in members})
    coeffs = sorted({(m.spec.meta["family"]["alpha"], m.spec.meta["family"]["beta"],
                      m.spec.meta["family"]["gamma"]) for m in members if m.rule != "official"})
    lines = [f"# {title}", ""]
    lines.append(f"Made by rule{'s' if len(rules) > 1 else ''} {', '.join(rules)}"
                 + (" with " + "; ".join(f"alpha {a:g}, beta {b:g}, gamma {c:g}"
                                         for a, b, c in coeffs) if coeffs else "")
                 + f". Params and MACs are counted for {NUM_CLASSES} classes at each model's own "
                 "resolution (multiply-adds of convolutions and linear layers).")
    lines.append("`budget`: phi chosen so the counted MACs match the published model's MACs "
                 "ratio to B0; `paper`: phi = 1..7; `official`: the published (width, depth, "
                 "resolution) row. The published table is not alpha^phi, beta^phi, gamma^phi. "
                 "Method `compound`: depth, width and resolution are alpha^phi, beta^phi, "
                 "gamma^phi; where no phi lands within 3 % that way, `compound, depth rounded "
                 "to nearest` rounds each stage's repeats to nearest instead of up, and "
                 "`compound, depth kept` / `compound, width kept` hold that multiplier (at "
                 "the value shown) while the other two follow phi. The resolution is rounded "
                 "to the multiple shown.")
    lines.append("")
    head = ["model", "rule", "method", "phi", "width", "depth", "res", "res multiple",
            "dropout", "params", "MACs",
            "x B0", "vs target", "published", "pub. width", "pub. depth", "pub. res",
            "pub. dropout", "pub. params", "pub. MACs", "pub. x B0"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        cells = [r["model"], r["rule"], r["method"] or "", _g(r["phi"], "{:g}"),
                 _g(r["width"]), _g(r["depth"]), str(r["resolution"]),
                 _g(r["resolution_multiple"], "{}"), _g(r["dropout"], "{:.2f}"),
                 f"{r['params']:,}",
                 format_macs(r["macs"]), _g(r["ratio_to_b0"], "{:.2f}"),
                 _g(r["target_error"], "{:+.1%}"), r["published"] or "",
                 _g(r["published_width"], "{:g}"), _g(r["published_depth"], "{:g}"),
                 _g(r["published_resolution"], "{}"), _g(r["published_dropout"], "{:.1f}"),
                 _g(r["published_params"], "{:,}"),
                 "" if r["published_macs"] is None else format_macs(r["published_macs"]),
                 _g(r["published_ratio_to_b0"], "{:.2f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_family(members: Sequence[FamilyMember], out_dir: str | os.PathLike[str],
                 base_name: str | None = None, base: ArchSpec | None = None) -> FamilyFiles:
    """Write ``<base_name>-<member>.yaml`` per member (the spec is renamed to match), and
    ``family.md`` / ``family.csv`` setting each beside the published EfficientNet of the same
    name. With ``base``, the tables start with the baseline's row. ``base_name`` defaults to
    each member's own spec name (no renaming)."""
    if not members:
        raise ConfigError("write_family: no members to write; make a family first")
    out = Path(out_dir)
    names = []
    specs = []
    for m in members:
        stem = f"{base_name}-{m.name}" if base_name else (m.spec.name or m.name)
        if stem in names:
            raise ConfigError(f"write_family: two members would both be written as {stem}.yaml; "
                              "give the members distinct names")
        names.append(stem)
        specs.append(m.spec.replace(name=stem))
    renamed = [replace(m, spec=s) for m, s in zip(members, specs)]
    paths = tuple(save_spec(s, out / f"{stem}.yaml") for s, stem in zip(specs, names))
    title_base = (base_name or (base.name if base is not None else "")
                  or members[0].spec.meta.get("family", {}).get("base", {}).get("name", ""))
    rows = _rows(renamed, base, title_base)
    md = out / "family.md"
    title = f"{title_base or 'Scaled'} family"
    latency = _is_latency(renamed)
    write_text_atomic(md, _latency_markdown(rows, renamed, title) if latency
                      else _markdown(rows, renamed, title))
    table = out / "family.csv"
    columns = _COLUMNS + _LATENCY_COLUMNS if latency else _COLUMNS
    write_csv(table, columns, (_csv_cells(r, columns) for r in rows))
    return FamilyFiles(paths, md, table)


def _ms(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.0f} ms" if v >= 100 else f"{v:.1f} ms" if v >= 10 else f"{v:.2f} ms"


def _latency_markdown(rows: list[dict[str, Any]], members: Sequence[FamilyMember],
                      title: str) -> str:
    """The table of a family at latency budgets: each member's budget, its predicted latency
    (what phi was solved on) and its latency measured whole, with the misses."""
    fam = members[0].spec.meta["family"]
    lat = next((m.spec.meta.get("latency") for m in members if m.spec.meta.get("latency")),
               None) or {}
    lines = [f"# {title}", ""]
    lines.append(
        f"Latency budgets with alpha {fam['alpha']:g}, beta {fam['beta']:g}, gamma "
        f"{fam['gamma']:g}: each member's phi is solved so that its latency predicted from "
        f"the device's table ({fam.get('cost', 'predicted latency')}) lies within "
        f"{fam.get('tolerance', 0.05):.0%} of its budget (`vs budget`), or is the closest "
        "reachable where rounding steps jump over the budget; then it is measured whole "
        "(`measured`: the median, with the inter-quartile range; `measured vs budget`). "
        f"{lat.get('device', '')}".rstrip())
    lines.append("")
    head = ["model", "method", "phi", "width", "depth", "res", "params", "MACs", "budget",
            "predicted", "vs budget", "measured (IQR)", "measured vs budget", "noisy"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        measured = "" if r["measured_ms"] is None else (
            f"{_ms(r['measured_ms'])} ({_ms(r['measured_p25_ms'])}-"
            f"{_ms(r['measured_p75_ms'])})")
        cells = [r["model"], r["method"] or r["rule"], _g(r["phi"], "{:g}"), _g(r["width"]),
                 _g(r["depth"]), str(r["resolution"]), f"{r['params']:,}",
                 format_macs(r["macs"]), _ms(r["target_ms"]), _ms(r["predicted_ms"]),
                 _g(r["predicted_error"], "{:+.1%}"), measured,
                 _g(r["measured_error"], "{:+.1%}"),
                 "" if r["noisy"] is None else ("noisy" if r["noisy"] else "no")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- scaling.yaml


@dataclass(frozen=True)
class ScalingRecord:
    """The content of ``scaling.yaml``: the coefficients and how they were found."""

    coefficients: Coefficients
    phi: float
    grid: GridConfig | None
    baseline_name: str
    baseline_path: str | None
    results: tuple[GridResult, ...]
    grid_points: int | None
    distinct: int | None
    best: GridResult | None
    started: str | None
    finished: str | None
    written: str
    recheck: Decision | None = None  # the re-trained best candidates and why these coefficients

    @property
    def evaluated(self) -> int:
        return len(self.results)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.ok)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": SCALING_FORMAT_VERSION,
            "coefficients": self.coefficients.to_dict(),
            "product": round(self.coefficients.product(), 10),
            "phi": self.phi,
            "grid": None if self.grid is None else self.grid.to_dict(),
            "baseline": {"name": self.baseline_name, "path": self.baseline_path},
            "summary": {"grid_points": self.grid_points, "distinct": self.distinct,
                        "evaluated": self.evaluated, "failed": self.failed,
                        "best": None if self.best is None else self.best.to_dict()},
            "results": [r.to_dict() for r in self.results],
            "started": self.started, "finished": self.finished, "written": self.written,
            **({} if self.recheck is None else {"recheck": self.recheck.to_dict()}),
        }


def _timestamp(v: Any, key: str) -> str | None:
    if v is None:
        return None
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=_dt.timezone.utc)
        return v.isoformat(timespec="seconds")
    if isinstance(v, str) and v:
        return v
    raise ConfigError(f"{key}: got {v!r}; expected an ISO timestamp or nothing")


def write_scaling(coefficients: Coefficients, results_table: Sequence[GridResult],
                  path: str | os.PathLike[str], *, phi: float = 1.0,
                  grid: GridConfig | None = None, baseline_name: str = "",
                  baseline_path: str | os.PathLike[str] | None = None,
                  grid_points: int | None = None, distinct: int | None = None,
                  started: str | _dt.datetime | None = None,
                  finished: str | _dt.datetime | None = None,
                  recheck: Decision | None = None) -> Path:
    """Write ``scaling.yaml`` atomically: the chosen coefficients, the grid and phi they were
    searched at, the baseline, every candidate's result and a summary (grid points, distinct
    networks, evaluated, failed, best by :func:`select_best`), and timestamps.

    ``grid_points`` defaults to the number of points ``grid`` makes.
    """
    if not isinstance(coefficients, Coefficients):
        raise ConfigError(f"write_scaling: coefficients must be Coefficients, got "
                          f"{type(coefficients).__name__}")
    results = tuple(results_table)
    for r in results:
        if not isinstance(r, GridResult):
            raise ConfigError(f"write_scaling: results must be GridResult records, got {r!r}")
    if grid_points is None and grid is not None:
        grid_points = len(grid.candidates())
    best = select_best(results) if any(r.ok for r in results) else None
    record = ScalingRecord(
        coefficients, float(phi), grid, str(baseline_name),
        None if baseline_path is None else str(baseline_path), results, grid_points, distinct,
        best, _timestamp(started, "started"), _timestamp(finished, "finished"),
        _timestamp(_dt.datetime.now(_dt.timezone.utc), "written") or "", recheck)
    return save_scaling(record, path)


def save_scaling(record: ScalingRecord, path: str | os.PathLike[str]) -> Path:
    """Write a :class:`ScalingRecord` as YAML (atomically); ``load_scaling`` reads it back equal."""
    p = Path(path)
    write_text_atomic(p, "# Compound-scaling coefficients (EfficientNet section 3.3, step 1).\n"
                      + dump_yaml(record.to_dict()))
    return p


_TOP_KEYS = ("format_version", "coefficients", "product", "phi", "grid", "baseline", "summary",
             "results", "started", "finished", "written")


def load_scaling(path: str | os.PathLike[str]) -> ScalingRecord:
    """Read ``scaling.yaml`` strictly: unknown or missing keys, wrong types and a summary that
    disagrees with the results raise a one-line :class:`ConfigError`."""
    p = Path(path)
    d = read_yaml(p)
    src = str(p)
    if not isinstance(d, Mapping):
        raise ConfigError(f"{src}: expected a mapping; is this a scaling.yaml?")
    extra = sorted(set(d) - set(_TOP_KEYS) - {"recheck"})
    if extra:
        raise ConfigError(f"{src}: {extra[0]}: unknown key; allowed keys: {', '.join(_TOP_KEYS)}")
    missing = [k for k in _TOP_KEYS if k not in d]
    if missing:
        raise ConfigError(f"{src}: {missing[0]}: missing; rewrite the file with write_scaling")
    if d["format_version"] != SCALING_FORMAT_VERSION:
        raise ConfigError(f"{src}: format_version: got {d['format_version']!r}; this version "
                          f"reads {SCALING_FORMAT_VERSION}")
    c = Coefficients.from_dict(d["coefficients"], f"{src}: coefficients")
    if (not _num(d["product"])) or abs(float(d["product"]) - c.product()) > 1e-6:
        raise ConfigError(f"{src}: product: {d['product']!r} is not alpha*beta^2*gamma^2 = "
                          f"{c.product():.6g}; fix the coefficients or the product")
    if not _num(d["phi"]):
        raise ConfigError(f"{src}: phi: got {d['phi']!r}; expected a number")
    grid = None if d["grid"] is None else GridConfig.from_dict(d["grid"], f"{src}: grid")
    baseline = d["baseline"]
    if (not isinstance(baseline, Mapping) or set(baseline) != {"name", "path"}
            or not isinstance(baseline["name"], str)
            or not (baseline["path"] is None or isinstance(baseline["path"], str))):
        raise ConfigError(f"{src}: baseline: expected {{name: <str>, path: <str or null>}}")
    if not isinstance(d["results"], list):
        raise ConfigError(f"{src}: results: expected a list of candidate results")
    results = tuple(GridResult.from_dict(r, f"{src}: results[{i}]")
                    for i, r in enumerate(d["results"]))
    summary = d["summary"]
    keys = ("grid_points", "distinct", "evaluated", "failed", "best")
    if not isinstance(summary, Mapping) or set(summary) != set(keys):
        raise ConfigError(f"{src}: summary: expected the keys {', '.join(keys)}")
    for k in ("grid_points", "distinct"):
        v = summary[k]
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise ConfigError(f"{src}: summary.{k}: got {v!r}; expected a count or null")
    best = None if summary["best"] is None else GridResult.from_dict(summary["best"],
                                                                      f"{src}: summary.best")
    expected_best = select_best(results) if any(r.ok for r in results) else None
    if best != expected_best:
        raise ConfigError(f"{src}: summary.best does not match the best of results; the file "
                          "was edited by hand: fix or rewrite it")
    n_failed = sum(1 for r in results if not r.ok)
    if summary["evaluated"] != len(results) or summary["failed"] != n_failed:
        raise ConfigError(f"{src}: summary: evaluated/failed ({summary['evaluated']!r}/"
                          f"{summary['failed']!r}) disagree with results ({len(results)}/"
                          f"{n_failed}); fix or rewrite the file")
    stamps = {k: _timestamp(d[k], f"{src}: {k}") for k in ("started", "finished", "written")}
    if stamps["written"] is None:
        raise ConfigError(f"{src}: written: missing timestamp; rewrite the file with write_scaling")
    recheck = (None if d.get("recheck") is None
               else Decision.from_dict(d["recheck"], f"{src}: recheck"))
    if recheck is not None and recheck.chosen != c:
        raise ConfigError(f"{src}: coefficients differ from recheck.chosen; the file was edited "
                          "by hand: fix or rewrite it")
    return ScalingRecord(c, float(d["phi"]), grid, baseline["name"], baseline["path"], results,
                         summary["grid_points"], summary["distinct"], best, stamps["started"],
                         stamps["finished"], stamps["written"], recheck)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


__all__ = ["FamilyFiles", "write_family", "ScalingRecord", "write_scaling", "save_scaling", "load_scaling",
           "SCALING_FORMAT_VERSION"]
