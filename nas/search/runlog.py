"""What a run leaves on disk and prints: tables, specs, TensorBoard events, progress.

Every table is rewritten atomically from the driver's records after each result, so the
files on disk always agree with the driver's checkpoint, whatever interrupts the run.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from nas.arch.io import save_spec
from nas.arch.spec import ArchSpec
from nas.arch.units import format_macs
from nas.core.files import json_text, write_csv, write_text_atomic
from nas.core.progress import Bar, format_duration
from nas.search.driver import CACHED, OK, REFERENCE, STOPPED, TIMEOUT, ChildRecord

COLUMNS = ("child", "trial", "status", "accuracy", "reward", "macs", "params", "seconds",
           "wall_seconds", "policy_version", "blocks", "tokens", "error", "identity", "seed")


def cost(r: ChildRecord, metric: str = "macs") -> float:
    """A record's cost on the x axis: its MACs, or (``latency``) its predicted latency."""
    if metric == "latency":
        return math.inf if r.latency_ms is None else r.latency_ms
    return r.macs


def pareto_front(records: Iterable[ChildRecord], metric: str = "macs") -> list[ChildRecord]:
    """Records no other record beats in both accuracy (higher) and cost (lower): MACs, or
    with ``metric`` ``latency`` the predicted latency."""
    ok = sorted((r for r in records if r.status in (OK, REFERENCE)),
                key=lambda r: (cost(r, metric), -r.accuracy))
    front: list[ChildRecord] = []
    best = -math.inf
    for r in ok:
        if r.accuracy > best:
            front.append(r)
            best = r.accuracy
    return front


def csv_fields(r: ChildRecord) -> dict[str, Any]:
    """A child's fields as ``children.csv`` writes them (a missing accuracy is empty)."""
    d = r.to_dict()
    d["tokens"] = " ".join(map(str, r.tokens))
    d["accuracy"] = "" if math.isnan(r.accuracy) else f"{r.accuracy:.6f}"
    d["reward"] = f"{r.reward:.6f}"
    d["seconds"] = f"{r.seconds:.2f}"
    d["wall_seconds"] = f"{r.wall_seconds:.2f}"
    if r.latency_ms is not None:
        d["latency_ms"] = f"{r.latency_ms:.4f}"
    return d


def write_tables(records: Sequence[ChildRecord], out: Path, stem: str = "children",
                 extra: Sequence[Mapping[str, Any]] | None = None) -> None:
    """``stem.csv`` and ``stem.jsonl``; ``extra`` gives each record more columns (the same
    keys for every record, after the usual ones; a float with 6 decimals, None empty)."""
    extra = list(extra) if extra is not None else [{} for _ in records]
    header = list(COLUMNS)
    if any(r.latency_ms is not None for r in records):  # a latency search's
        header.insert(header.index("macs") + 1, "latency_ms")
    header += list(extra[0]) if extra else []
    rows = []
    for r, more in zip(records, extra):
        d = csv_fields(r)
        d.update({k: "" if v is None else (f"{v:.6f}" if isinstance(v, float) else v)
                  for k, v in more.items()})
        rows.append([d.get(c, "") for c in header])
    write_csv(out / f"{stem}.csv", header, rows)
    lines = [json_text({**r.to_dict(), **more})  # NaN accuracy -> null
             for r, more in zip(records, extra)]
    write_text_atomic(out / f"{stem}.jsonl", "\n".join(lines) + ("\n" if lines else ""))


def save_specs(items: Sequence[tuple[ChildRecord, ArchSpec]], folder: Path,
               provenance: dict[str, Any]) -> list[Path]:
    """Write specs with their metrics as provenance; replaces the folder's previous YAMLs."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.yaml"):
        old.unlink()
    paths = []
    for rank, (rec, spec) in enumerate(items, start=1):
        meta = {**provenance, "metrics": record_metrics(rec)}
        name = f"{rank:02d}-child{rec.child}" if rec.status != REFERENCE else f"{rank:02d}-reference"
        paths.append(save_spec(spec.replace(name=name).with_meta(**meta), folder / f"{name}.yaml"))
    return paths


def record_metrics(r: ChildRecord) -> dict[str, Any]:
    return {"child": r.child, "status": r.status, "accuracy": None if math.isnan(r.accuracy)
            else r.accuracy, "reward": r.reward, "macs": r.macs, "params": r.params,
            "seconds": r.seconds, "blocks": r.blocks, "tokens": list(r.tokens),
            **({} if r.latency_ms is None else {"latency_ms": r.latency_ms})}


def plot_front(records: Sequence[ChildRecord], reference: ChildRecord | None, target_macs: float,
               title: str, metric: str = "macs") -> Any:
    """A matplotlib figure of proxy accuracy against MACs with the Pareto front marked; with
    ``metric`` ``latency``, against the predicted latency (``target_macs`` is then the
    latency target in ms)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = 1.0 if metric == "latency" else 1e6

    def x(r: ChildRecord) -> float:
        return cost(r, metric) / scale

    ok = [r for r in records if r.status == OK and math.isfinite(cost(r, metric))]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    if ok:
        ax.scatter([x(r) for r in ok], [r.accuracy for r in ok], s=14, alpha=0.6,
                   label="children")
    front = pareto_front(ok, metric)
    if front:
        ax.plot([x(r) for r in front], [r.accuracy for r in front], "-o", color="C3",
                ms=4, label="Pareto front")
    if reference is not None and not math.isnan(reference.accuracy) \
            and math.isfinite(cost(reference, metric)):
        ax.scatter([x(reference)], [reference.accuracy], marker="*", s=160, color="k",
                   label="EfficientNet-B0 (same proxy)", zorder=5)
    ax.axvline(target_macs / scale, color="grey", ls="--", lw=1, label="target")
    ax.set_xlabel("predicted latency on the device at the target setting (ms)"
                  if metric == "latency" else "MACs at the target setting (M)")
    ax.set_ylabel("proxy validation accuracy")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


class TensorBoardLog:
    """Scalars per child and per controller update, an hparams entry per child, the figure."""

    def __init__(self, folder: Path):
        from torch.utils.tensorboard import SummaryWriter
        self.folder = folder
        self.writer = SummaryWriter(log_dir=str(folder))
        self.best = -math.inf
        self.updates = 0

    def child(self, r: ChildRecord, step: int) -> None:
        w = self.writer
        if r.status in (CACHED,):
            return
        prefix = "reference" if r.status == REFERENCE else "child"
        w.add_scalar(f"{prefix}/reward", r.reward, step)
        w.add_scalar(f"{prefix}/macs_M", r.macs / 1e6, step)
        w.add_scalar(f"{prefix}/params_M", r.params / 1e6, step)
        if r.latency_ms is not None:
            w.add_scalar(f"{prefix}/latency_ms", r.latency_ms, step)
        w.add_scalar(f"{prefix}/failed",
                     0.0 if r.status in (OK, REFERENCE, TIMEOUT, STOPPED) else 1.0, step)
        w.add_scalar(f"{prefix}/timeout", 1.0 if r.status == TIMEOUT else 0.0, step)
        if r.status == STOPPED:
            w.add_scalar(f"{prefix}/stopped", 1.0, step)
        if not math.isnan(r.accuracy):
            w.add_scalar(f"{prefix}/accuracy", r.accuracy, step)
        if r.status == OK:
            self.best = max(self.best, r.reward)
            w.add_scalar("search/best_reward", self.best, step)
            w.add_hparams({"child": r.child, "blocks": r.blocks},
                          {"hparam/accuracy": r.accuracy, "hparam/macs_M": r.macs / 1e6,
                           "hparam/reward": r.reward}, run_name=f"child{r.child:04d}")

    def diagnostics(self, diags: Iterable[dict[str, float]]) -> None:
        for d in diags:
            self.updates += 1
            for k, v in d.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.writer.add_scalar(f"controller/{k}", v, self.updates)

    def figure(self, fig: Any, step: int) -> None:
        self.writer.add_figure("search/accuracy_vs_macs", fig, step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class Progress:
    """Children done/total, the best so far, failures, time elapsed and left.

    On a terminal or in a notebook a tqdm bar with that text beside it (:mod:`nas.core.progress`);
    elsewhere (a log file) one line per update, the transcript docs/search.md shows. The time
    left is the children still to train times the mean wall time of a child (queueing
    included) over the workers; with ``time_left`` (seconds of a time budget still to go,
    or None) at most that plus one child's, since children in training finish.
    """

    def __init__(self, total: int, workers: int, stream: Any = None, noun: str = "children",
                 metric: str = "reward", time_left: Callable[[], float | None] | None = None):
        self.noun, self.metric = noun, metric
        self.time_left = time_left
        self.total = total
        self.workers = max(1, workers)
        self.stream = stream or sys.stdout
        self.start = time.time()
        self.bar = Bar(total, noun, self.stream)

    def update(self, done: int, best: float | None, best_macs: int | None, failed: int,
               mean_wall: float | None, timeout: int = 0, stopped: int = 0,
               best_ms: float | None = None) -> None:
        elapsed = time.time() - self.start
        left = ""
        if mean_wall and done < self.total:
            seconds = (self.total - done) * mean_wall / self.workers
            budget = self.time_left() if self.time_left is not None else None
            if budget is not None:
                seconds = min(seconds, max(0.0, budget) + mean_wall)
            left = f", ~{format_duration(seconds)} left"
        latency = ""
        if best_ms is not None:  # a latency search's: the best child's predicted latency
            from nas.latency.units import format_latency
            latency = f", {format_latency(best_ms)}"
        best_s = "-" if best is None else \
            f"{best:.4f} ({format_macs(best_macs or 0)} MACs{latency})"
        text = (f"best {self.metric} {best_s}  failed {failed}  "
                f"{f'timeout {timeout}  ' if timeout else ''}"
                f"{f'stopped {stopped}  ' if stopped else ''}"
                f"elapsed {format_duration(elapsed)}{left}")
        if self.bar.drawn:
            self.bar.update(done, text)
        else:
            self.stream.write(f"{self.noun} {done}/{self.total}  {text}\n")
            self.stream.flush()

    def close(self) -> None:
        self.bar.close()
