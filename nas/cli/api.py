"""The commands as Python functions, for notebooks and scripts: ``nas.run_search``,
``nas.run_scale``, ``nas.run_train`` and ``nas.load_run``.

Each function takes the settings its command takes: a keyword argument per flag (the flag's
name with ``_`` for ``-``: ``--target-flops 400M`` is ``target_flops="400M"``), ``config=``
(a YAML file's path, or a mapping of settings, as ``--config``) and ``set=`` (overrides, as
``--set``: a mapping such as ``{"proxy.epochs": 2}`` or a list of ``"KEY=VALUE"``). It runs
the command's own code path (the command is: parse the flags, call it, print), raises the
project's exceptions (:class:`~nas.core.errors.ConfigError` and the other
:class:`~nas.core.errors.NasError` subclasses, one line, before anything is written) instead
of printing them and exiting, and returns a result object (:mod:`nas.cli.results`). Progress
still goes to the output, as in the commands.

The names differ from the commands' (``run_search``, not ``search``): ``nas.search`` and
``nas.train`` are the package's modules.

    import nas
    run = nas.run_search(target_flops="400M", preset="smoke", set={"budget": 4})
    run.best                      # the best child's spec (an ArchSpec)
    data = nas.load_run(run.out)  # data.children: a pandas DataFrame

A local Ray that a call starts is stopped when it returns; a Ray already running (your own
``ray.init()``, or a cluster) is used and left running. Torch-free at import (``import nas``
stays so); each function imports what it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from nas.cli.results import RunData, ScaleResult, SearchResult, TrainResult
from nas.core import runs
from nas.core.errors import ConfigError

Settings = Mapping[str, Any] | Sequence[str] | None


def _namespace(parser: argparse.ArgumentParser, given: Mapping[str, Any]) -> argparse.Namespace:
    """The namespace the command's parser would give for these keyword arguments: its
    defaults for the flags not given (so every flag the command has is there, as None)."""
    ns = parser.parse_args([])
    dests = vars(ns)
    for key, value in given.items():
        if key not in dests:  # the signatures list the flags; this keeps them honest
            raise ConfigError(f"unknown setting {key!r}; use one of {', '.join(sorted(dests))}")
        if key == "set":
            value = [] if value is None else value
        elif isinstance(value, os.PathLike):
            value = os.fspath(value)
        setattr(ns, key, value)
    return ns


@contextlib.contextmanager
def _ray_of_this_call() -> Iterator[None]:
    """A local Ray that the call starts is stopped when it returns, as a command's ends with
    its process; a Ray that was running before (``ray.init`` in the notebook, a cluster)
    is left as it was."""
    from nas.search import tune_adapter as ta
    before = ta.ray_running()
    try:
        yield
    finally:
        if not before and ta.ray_running():
            ta.shutdown_ray()


def _joined(value: Any, name: str) -> Any:
    """A list of numbers or budgets as the comma-separated text its flag takes."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return ",".join(str(v) for v in value)
    raise ConfigError(f"{name}: got {value!r}; give a list such as [1.2, 1.1, 1.15] or the "
                      "text the flag takes")


def run_search(target_flops: str | float | None = None, *, strategy: str | None = None,
               budget: int | None = None, time_budget: str | float | None = None,
               space: str | None = None, preset: str | None = None,
               config: str | os.PathLike | Mapping | None = None,
               set: Settings = None, workers: int | None = None,
               cpus_per_trial: float | None = None, gpus_per_trial: float | None = None,
               address: str | None = None, data: str | os.PathLike | None = None,
               dataset: str | None = None, seed: int | None = None, name: str | None = None,
               out: str | os.PathLike | None = None, resume: bool = False,
               evaluator: str | None = None,
               gpus_per_worker: float | None = None) -> SearchResult:
    """Search for a baseline network, as ``effnas search`` does (see its ``--help``).
    ``evaluator="oneshot"`` trains a weight-sharing supernet first, then its top-k as proxies.

    Returns a :class:`SearchResult` (``finished=False`` after Ctrl-C: continue with
    ``run_search(resume=True, out=...)``). Raises :class:`~nas.core.errors.ConfigError` on
    bad input (before Ray starts or anything is written) and
    :class:`~nas.core.errors.NoResultError` when the search finished without a successful
    child.
    """
    given = dict(locals())
    from nas.arch.io import load_spec
    from nas.cli import search as command

    ns = _namespace(command.build_parser(), given)
    with _ray_of_this_call(), runs.api_names():
        outcome = command.execute(ns)
    best_path = outcome.out / "best.yaml"
    best_path = best_path if best_path.is_file() else None
    return SearchResult(out=outcome.out, name=outcome.summary.get("run", ""),
                        finished=outcome.finished,
                        best=None if best_path is None else load_spec(best_path),
                        best_path=best_path, summary=outcome.summary)


def run_scale(*, baseline: str | os.PathLike | None = None, grid: bool = False,
              phi: float | None = None, step: float | None = None, tol: float | None = None,
              alpha_range: Sequence[float] | str | None = None,
              beta_range: Sequence[float] | str | None = None,
              gamma_range: Sequence[float] | str | None = None,
              coefficients: Sequence[float] | str | None = None,
              scaling: str | os.PathLike | None = None, rule: str | None = None,
              target_flops: str | float | None = None,
              budgets: Sequence[str | float] | str | None = None,
              resolution_multiple: int | None = None, compare: bool = False,
              preset: str | None = None, config: str | os.PathLike | Mapping | None = None,
              set: Settings = None, workers: int | None = None,
              cpus_per_trial: float | None = None, gpus_per_trial: float | None = None,
              address: str | None = None, data: str | os.PathLike | None = None,
              dataset: str | None = None, seed: int | None = None, name: str | None = None,
              out: str | os.PathLike | None = None, resume: bool = False,
              say: Callable[[str], None] | None = None) -> ScaleResult:
    """Fit alpha, beta, gamma (``grid=True``) or take them, and scale a baseline into a
    family, as ``effnas scale`` does (see its ``--help``). Ranges and coefficients may be
    lists (``alpha_range=(1, 2)``, ``coefficients=(1.2, 1.1, 1.15)``), budgets a list
    (``budgets=["600M", "1.2G"]``). The lines the command prints go to ``say`` (default:
    print). Returns a :class:`ScaleResult`."""
    given = {k: v for k, v in locals().items() if k != "say"}
    from nas.cli import scale as command

    for key in ("alpha_range", "beta_range", "gamma_range", "coefficients", "budgets"):
        given[key] = _joined(given[key], key)
    ns = _namespace(command.build_parser(), given)
    with _ray_of_this_call(), runs.api_names():
        return command.execute(ns) if say is None else command.execute(ns, say)


def run_train(spec: str | os.PathLike | None = None, *, dataset: str | None = None,
              data: str | os.PathLike | None = None, resolution: int | None = None,
              val_size: int | float | None = None, train_subset: int | None = None,
              augment: bool | None = None, auto_augment: str | None = None,
              erasing: float | None = None, width_mult: float | None = None,
              dropout: float | None = None, drop_path_rate: float | None = None,
              bn_momentum: float | None = None, epochs: int | None = None,
              batch_size: int | None = None, optimizer: str | None = None,
              lr: float | None = None, momentum: float | None = None,
              weight_decay: float | None = None, schedule: str | None = None,
              decay_rate: float | None = None, decay_epochs: float | None = None,
              warmup_epochs: float | None = None, label_smoothing: float | None = None,
              ema_decay: float | None = None, patience: int | None = None,
              max_epochs_time: float | None = None, seed: int | None = None,
              threads: int | None = None, device: str | None = None,
              export: str | None = None, out: str | os.PathLike | None = None,
              resume: bool = False, preset: str | None = None,
              config: str | os.PathLike | Mapping | None = None, set: Settings = None,
              say: Callable[[str], None] | None = None) -> TrainResult:
    """Train a spec (a YAML path or a bundled name) fully, test it and export it, as
    ``effnas train`` does (see its ``--help``; ``ema_decay`` is ``--ema``,
    ``max_epochs_time`` takes seconds; ``config`` a YAML path or a mapping of settings, ``set``
    a mapping or ``KEY=VALUE`` items). Epoch lines go to ``say`` (default: print). Returns a
    :class:`TrainResult` (``status="interrupted"`` after Ctrl-C: continue with
    ``run_train(resume=True, out=...)``)."""
    given = {k: v for k, v in locals().items() if k != "say"}
    from nas.cli import train as command

    ns = _namespace(command.build_parser(), given)
    shown = ", ".join([*([repr(ns.spec)] if ns.spec is not None else []),
                       *(f"{k}={getattr(ns, k)!r}" for k, v in given.items()
                         if k != "spec" and v is not None and v is not False)])
    with runs.api_names():
        return command.execute(ns, f"nas.run_train({shown})", say)


def load_run(path: str | os.PathLike) -> RunData:
    """A search's run folder as data (:class:`RunData`): its children as a pandas DataFrame,
    the best child's spec, the Pareto front's specs, ``summary.json`` and the config. Reads
    the folder while a search writes it too (the tables are rewritten atomically)."""
    from nas.arch.io import load_spec
    from nas.core.files import read_yaml

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
        raise ConfigError("load_run needs pandas: pip install pandas (ray[tune] brings it)") \
            from None
    rows = []
    for n, line in enumerate(table.read_text().splitlines(), start=1):
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
    summary = json.loads((out / "summary.json").read_text()) \
        if (out / "summary.json").is_file() else None
    config = read_yaml(out / "config.yaml") if (out / "config.yaml").is_file() else None
    return RunData(out=out, children=children, best=best, pareto=pareto, summary=summary,
                   config=config)


__all__ = ["run_search", "run_scale", "run_train", "load_run", "SearchResult", "ScaleResult",
           "TrainResult", "RunData"]
