"""What the Python API (:mod:`nas.cli.api`, exported as ``nas.run_search``, ...) returns: one
frozen dataclass per command, and the contents of a search's run folder.

Torch-free and Ray-free; pandas is imported only by :func:`load_run`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from nas.arch.spec import ArchSpec
from nas.core import runs
from nas.core.errors import ConfigError


@dataclass(frozen=True)
class SearchResult:
    """A search session's end.

    ``finished`` is False when it was interrupted (Ctrl-C; continue it with
    ``nas.run_search(resume=True, out=result.out)``). ``best`` is the best child's spec (the
    run folder's ``best.yaml``, with its metrics and provenance in ``best.meta``; None while
    no child has succeeded), ``summary`` what ``summary.json`` holds.
    """

    out: Path
    name: str
    finished: bool
    best: ArchSpec | None
    best_path: Path | None
    summary: Mapping[str, Any]

    def load(self) -> "RunData":
        """The run folder's tables and specs (:func:`load_run`)."""
        return load_run(self.out)


@dataclass(frozen=True)
class ScaleResult:
    """A scaling run's end: the coefficients (alpha, beta, gamma) and where they came from,
    the compare table (when ``compare=True``) and the family's spec files and table."""

    out: Path
    name: str
    baseline: str
    coefficients: tuple[float, float, float]
    source: str
    family: tuple[Path, ...]
    family_table: str
    family_csv: Path
    scaling: Path | None
    compare: str | None


@dataclass(frozen=True)
class TrainResult:
    """A training run's end. ``status`` is completed, early_stopped, time_limit, diverged or
    interrupted (continue with ``nas.run_train(resume=True, out=result.out)``); ``metrics``
    is what ``metrics.json`` holds (None when interrupted).

    ``diverged``: the training loss became non-finite, or the validation loss exceeded 10x
    the first epoch's, or validation accuracy was at chance with a loss above 1.5 ln(classes)
    (confidently wrong); ``reason`` says what and when.
    The accuracies are those of the last good epoch (best.pt), None when there was none
    (``effnas train`` exits with status 3)."""

    out: Path
    status: str
    epoch: int
    metrics: Mapping[str, Any] | None

    @property
    def test_accuracy(self) -> float | None:
        return None if self.metrics is None else self.metrics["test_accuracy"]

    @property
    def reason(self) -> str:
        """Why the run ended as it did, in one line ("" when it completed)."""
        return "" if self.metrics is None else str(self.metrics.get("reason") or "")

    @property
    def best_val_accuracy(self) -> float | None:
        return None if self.metrics is None else self.metrics["best_val_accuracy"]

    @property
    def model(self) -> Path | None:
        """The exported model file (None when nothing was exported)."""
        exported = None if self.metrics is None else self.metrics.get("export")
        return self.out / exported["path"] if exported else None


@dataclass(frozen=True)
class FidelityResult:
    """A fidelity measurement's end: ``report`` (what ``fidelity.json`` holds; None when
    nothing had finished for a report) and its table as Markdown, in ``out``."""

    out: Path
    report: Mapping[str, Any] | None
    markdown: str | None


@dataclass(frozen=True)
class PipelineResult:
    """A pipeline session's end: ``finished``, or stopped in ``stage`` (interrupted:
    continue with ``nas.run_pipeline(resume=True, out=result.out)``); ``report`` is the
    report's Markdown file once written."""

    out: Path
    finished: bool
    stage: str | None
    report: Path | None


@dataclass(frozen=True, eq=False)
class RunData:
    """A search's run folder as data: ``children`` (a pandas DataFrame, one row per record of
    ``children.jsonl``: trained, cached and the reference, told apart by ``status``; the
    proxy details as ``proxy.*`` columns), the best child's spec, the Pareto front's specs
    (fewest MACs first), ``summary.json`` (None while the first session runs) and the
    resolved ``config.yaml``."""

    out: Path
    children: Any
    best: ArchSpec | None
    pareto: tuple[ArchSpec, ...]
    summary: Mapping[str, Any] | None
    config: Mapping[str, Any] | None

    @property
    def trained(self) -> Any:
        """The rows of trained children (no cached repeats, no reference)."""
        df = self.children
        return df[~df["status"].isin(["cached", "reference"])]


def load_run(path: str | os.PathLike) -> RunData:
    """A search's run folder as data (:class:`RunData`): its children as a pandas DataFrame,
    the best child's spec, the Pareto front's specs, ``summary.json`` and the config. Reads
    the folder while a search writes it too (the tables are rewritten atomically)."""
    from nas.arch.io import load_spec
    from nas.core.files import read_yaml

    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ConfigError(f"load_run: got path={path!r}; give a search's run folder (a str or "
                          "os.PathLike, such as 'runs/NAME')")
    out = Path(path)
    table = out / "children.jsonl"
    found = runs.detect(out) if out.is_dir() else None
    if found is not None and found[0] not in ("search", "oneshot"):
        raise ConfigError(f"{out}: a {found[0]} run folder ({found[1]}), not a search's; give "
                          "the folder a search wrote (its --out, or runs/NAME)")
    if not table.is_file():
        raise ConfigError(f"{out}: no search run here (no children.jsonl); give the folder a "
                          "search wrote (its --out, or runs/NAME)")
    try:
        import pandas as pd
    except ImportError:
        raise ConfigError("load_run needs pandas, a dependency of effnas: install it with "
                          "pip install 'pandas>=2.0'") from None
    rows = []
    for n, line in enumerate(_text(table).splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise ConfigError(f"{table}:{n}: not a JSON record; the table is damaged "
                                  "(children.csv holds the same rows)") from None
    children = pd.json_normalize(rows) if rows else pd.DataFrame()
    if "accuracy" in children:
        children["accuracy"] = children["accuracy"].astype(float)
    best = load_spec(out / "best.yaml") if (out / "best.yaml").is_file() else None
    pareto = tuple(load_spec(p) for p in sorted((out / "pareto").glob("*.yaml")))
    summary = None
    if (out / "summary.json").is_file():
        text = _text(out / "summary.json")
        try:
            summary = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"{out / 'summary.json'}: not JSON ({e.msg} at line {e.lineno}); "
                              "the file is damaged or was cut off: resume the search to "
                              "write it again") from None
    config = read_yaml(out / "config.yaml") if (out / "config.yaml").is_file() else None
    return RunData(out=out, children=children, best=best, pareto=pareto, summary=summary,
                   config=config)


def _text(path: Path) -> str:
    """A run folder's text file; bytes that are not UTF-8 are a one-line error."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {e.start}); the file is "
                          "damaged") from None
