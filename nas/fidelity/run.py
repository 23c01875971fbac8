"""Proxy fidelity: does the proxy rank a run's children the way longer training does?

A spread of a finished search's children (evenly over its proxy ranking, plus the reference
network) is trained with a long recipe for several seeds, and with each proxy to compare for
one or more seeds, all on the Ray workers through the search's driver
(:func:`nas.search.runner.train_fixed`, so the runs are seeded, cached and resumable like a
search's children). The report (:mod:`nas.fidelity.report`) gives, per proxy, Kendall's tau
and Spearman's rho against the long schedule's mean accuracy with bootstrap intervals, the
top-k overlap, and the minutes per child; and the long schedule's own seed-to-seed tau,
which bounds what any proxy can reach. Only validation accuracy is used (held out of the
training set); the test split is never looked at.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from nas.arch.spec import ArchSpec
from nas.core import runs
from nas.core.errors import ConfigError
from nas.fidelity.report import make_report, write_report
from nas.fidelity.settings import FidelityPlan, Picked
from nas.search.driver import OK, STATE_FILE, ChildRecord, child_key, load_state
from nas.search.runner import train_fixed


def pick_children(records: Sequence[ChildRecord], k: int) -> list[ChildRecord]:
    """``k`` trained children spread evenly over the run's proxy ranking (best, worst and
    evenly in between), best first."""
    ok = sorted((r for r in records if r.status == OK), key=lambda r: (-r.accuracy, r.child))
    if k >= len(ok):
        return ok
    positions = sorted({round(i * (len(ok) - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]
    return [ok[i] for i in positions]


def plan(s: FidelityPlan, picked: Sequence[Picked]) -> list[tuple[str, ArchSpec, dict]]:
    """Every training as ``(label, spec, recipe overrides)``, network by network."""
    items: list[tuple[str, ArchSpec, dict]] = []
    for p in picked:
        for seed in range(s.seeds):
            items.append((f"long/{p.label}/{seed}", p.spec, {**s.long.to_dict(), "seed": seed}))
        for name, recipe in s.proxies:
            for seed in range(s.proxy_seeds):
                items.append((f"proxy/{name}/{p.label}/{seed}", p.spec,
                              {**recipe.to_dict(), "seed": seed}))
    return items


def trained_so_far(items: Sequence[tuple[str, ArchSpec, dict]], out: Path
                   ) -> dict[str, ChildRecord]:
    """label -> record of the trainings finished in ``out`` (read from its driver state,
    which is only read); empty when nothing was saved yet. A saved training that is not the
    one ``items`` plans at its place (other options than the run's) is a one-line error."""
    state_file = out / STATE_FILE
    if not state_file.is_file():
        return {}
    found = {}
    for d in load_state(state_file)["records"]:
        r = ChildRecord.from_dict(d)
        i = r.tokens[0] if r.tokens else -1
        if not 0 <= i < len(items) or (r.identity and
                                       r.identity != child_key(items[i][1], items[i][2])):
            raise ConfigError(f"{out}: its saved trainings were planned with other options; "
                              "pass the options the run was started with")
        found[items[i][0]] = r
    return found


def finished_networks(s: FidelityPlan, picked: Sequence[Picked],
                      records: dict[str, ChildRecord]) -> list[Picked]:
    """The networks whose every training (long seeds and proxies) has ended."""
    done = []
    for p in picked:
        labels = [label for label, _, _ in plan(s, [p])]
        if all(label in records for label in labels):
            done.append(p)
    return done


def partial_report(s: FidelityPlan, picked: Sequence[Picked], say: Callable[[str], None]
                   ) -> dict[str, Any] | None:
    """The report over the networks finished so far (None below 3 of them), written to
    ``s.out`` with ``partial`` set; nothing is trained."""
    records = trained_so_far(plan(s, picked), s.out)
    done = finished_networks(s, picked, records)
    if len(done) < 3:
        say(f"fidelity: {len(done)} of {len(picked)} networks finished; a report needs 3")
        return None
    report = make_report(s, done, records, math.nan)
    if len(done) < len(picked):
        report["partial"] = {"finished": len(done), "planned": len(picked)}
    write_report(report, s.out)
    say(f"fidelity: wrote a partial report over {len(done)} of {len(picked)} networks")
    return report


def run_fidelity(s: FidelityPlan, picked: Sequence[Picked], resume: bool,
                 say: Callable[[str], None]) -> dict[str, Any]:
    """Train everything (on Ray), write the report files, return the report. Stopped early
    (Ctrl-C), it writes the report over the networks finished so far before it stops."""
    items = plan(s, picked)
    say(f"fidelity: {len(picked)} networks x ({s.seeds} long seeds + {len(s.proxies)} proxies x "
        f"{s.proxy_seeds} seeds) = {len(items)} trainings; out {s.out}")
    t0 = time.time()
    data = s.data.load()
    runs.mark(s.out, "fidelity", run=str(s.run))
    try:
        records = train_fixed(items, s.out, s.trials, data, s.run_seed, resume,
                              f"nas.run_fidelity({str(s.run)!r}, resume=True, "
                              f"out={str(s.out)!r})", table="trainings")
    except KeyboardInterrupt:
        partial_report(s, picked, say)
        raise
    report = make_report(s, picked, records, time.time() - t0)
    write_report(report, s.out)
    return report
