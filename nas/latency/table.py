"""The per-device latency table: one measured entry per distinct part (stem, layer
configuration at its input shape, head, classifier), as FBNet and Once-for-All keep them,
and the correction that turns a sum of entries into a network's latency.

A table holds for one fingerprint (:mod:`nas.latency.device`: CPU model, CPUs, threads,
runtime and version, torch version, memory format) and lives in the cache folder as
``<cache>/<fingerprint id>.json``; it grows as parts are measured (``effnas latency
--build-table`` measures every part a search space can produce at a resolution; a spec's
missing parts can be filled on demand, :mod:`nas.latency.build`) and is saved every few
seconds while it is built, so an interrupted build continues where it stopped.

The table and the prediction are torch-free; only filling the table measures (and imports
torch, through :mod:`nas.latency.measure`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from nas.core.errors import ConfigError
from nas.core.files import write_text_atomic
from nas.latency.device import cache_dir, fingerprint, fingerprint_id
from nas.latency.keys import PartKey, network_keys
from nas.latency.settings import check_clock, check_runtime, check_threads

FORMAT_VERSION = 1


@dataclass
class LatencyTable:
    """Measured parts (milliseconds, median) for one device fingerprint, and corrections."""

    fingerprint: dict[str, Any]
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    corrections: dict[str, dict[str, Any]] = field(default_factory=dict)  # "b<batch>" -> fit
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)     # fit measurements
    path: Path | None = None
    # Where it was measured, when another machine measured it (host, ip, Ray node id):
    # a record, not part of the fingerprint, so the device finds its own table either way.
    measured_on: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ files

    @property
    def id(self) -> str:
        return fingerprint_id(self.fingerprint)

    @classmethod
    def for_device(cls, runtime: str = "torch", threads: int = 1, channels_last: bool = True,
                   cache: str | os.PathLike[str] | None = None,
                   clock: str = "wall") -> "LatencyTable":
        """This machine's table for these settings: read from the cache if there, else empty
        (its path set, so :meth:`save` writes it there)."""
        threads = check_threads(threads)
        runtime = check_runtime(runtime)
        check_clock(clock, threads)
        fp = fingerprint(runtime, threads, channels_last, clock)
        path = cache_dir(cache) / f"{fingerprint_id(fp)}.json"
        if path.is_file():
            table = cls.load(path)
            if table.fingerprint != fp:  # a hash collision, or a hand-edited file
                raise ConfigError(f"{path}: its fingerprint is not this machine's; move it away")
            return table
        return cls(fp, path=path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "LatencyTable":
        """Read a table file (a one-line :class:`ConfigError` if it is not one)."""
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{p}: not a latency table ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); delete it to "
                              "rebuild") from None
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION or \
                not isinstance(data.get("fingerprint"), dict) or \
                not isinstance(data.get("entries"), dict):
            raise ConfigError(f"{p}: not a latency table of format {FORMAT_VERSION}; delete it "
                              "to rebuild")
        entries = {k: v for k, v in data["entries"].items()
                   if isinstance(v, dict) and _finite(v.get("ms"))}
        measured_on = data.get("measured_on")
        return cls(data["fingerprint"], entries, dict(data.get("corrections") or {}),
                   dict(data.get("networks") or {}), path=p,
                   measured_on=dict(measured_on) if isinstance(measured_on, dict) else {})

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "fingerprint": self.fingerprint,
                **({"measured_on": self.measured_on} if self.measured_on else {}),
                "corrections": self.corrections, "networks": self.networks,
                "entries": dict(sorted(self.entries.items()))}

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the table (atomically), merged with what another process may have saved
        to the same file meanwhile (entries measured here win)."""
        p = Path(path) if path is not None else self.path
        if p is None:
            raise ConfigError("this latency table has no file; give save() a path")
        if p.is_file():
            try:
                other = LatencyTable.load(p)
            except ConfigError:
                other = None
            if other is not None and other.fingerprint == self.fingerprint:
                self.entries = {**other.entries, **self.entries}
                self.networks = {**other.networks, **self.networks}
                self.corrections = {**other.corrections, **self.corrections}
                self.measured_on = self.measured_on or other.measured_on
        p.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(p, json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n")
        self.path = p
        return p

    # ------------------------------------------------------------------ entries

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: PartKey | str) -> bool:
        return _text(key) in self.entries

    def ms(self, key: PartKey | str) -> float:
        return float(self.entries[_text(key)]["ms"])

    def missing(self, keys: Iterable[PartKey]) -> list[PartKey]:
        return [k for k in keys if k.text not in self.entries]

    def put(self, key: PartKey, latency: Any) -> None:
        """Record a measured part (a :class:`nas.latency.measure.Latency`)."""
        self.entries[key.text] = {
            "ms": round(latency.median_ms, 6), "p25": round(latency.p25_ms, 6),
            "p75": round(latency.p75_ms, 6), "runs": latency.runs,
            **({"noisy": True} if latency.noisy else {})}

    @property
    def threads(self) -> int:
        return int(self.fingerprint["threads"])

    @property
    def runtime(self) -> str:
        return str(self.fingerprint["runtime"])

    @property
    def channels_last(self) -> bool:
        return bool(self.fingerprint["channels_last"])

    @property
    def clock(self) -> str:
        return str(self.fingerprint.get("clock", "wall"))

    def describe(self) -> str:
        fp = self.fingerprint
        torch = "" if fp["runtime"] == "torch" else f", torch {fp['torch']}"
        return (f"{fp['runtime']} {fp['runtime_version']}, {fp['threads']} thread"
                f"{'s' if fp['threads'] != 1 else ''}, {fp['cpu']} ({fp['cpus']} CPUs){torch}"
                f"{', channels-last' if fp['channels_last'] else ''}"
                f"{', thread CPU time' if fp.get('clock') == 'thread' else ''}"
                f"{', the system allocator' if fp.get('allocator') == 'system' else ''}"
                f"{self._where()}")

    def _where(self) -> str:
        host, ip = self.measured_on.get("host"), self.measured_on.get("ip")
        if not host and not ip:
            return ""
        return f"; measured on {host or ip}{f' ({ip})' if host and ip else ''}"


def _text(key: PartKey | str) -> str:
    return key if isinstance(key, str) else key.text


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def network_record_key(spec: Any, resolution: int | None, batch: int) -> str:
    from nas.arch.spec import identity
    size = spec.resolution if resolution is None else resolution
    return f"{identity(spec)}_r{size}_b{batch}"


def missing_for(table: LatencyTable, specs: Iterable[Any], resolution: int | None = None,
                batch: int = 1) -> list[PartKey]:
    keys: dict[PartKey, None] = {}
    for spec in specs:
        keys.update(dict.fromkeys(network_keys(spec, resolution, batch)))
    return table.missing(keys)
