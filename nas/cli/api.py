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
import numbers
import os
import re
from typing import Any, Callable, Iterator, Mapping, Sequence

from nas.cli.results import RunData, ScaleResult, SearchResult, TrainResult, load_run
from nas.core import runs
from nas.core.errors import ConfigError, NasError

Settings = Mapping[str, Any] | Sequence[str] | None


def _namespace(parser: argparse.ArgumentParser, given: Mapping[str, Any]) -> argparse.Namespace:
    """The namespace the command's parser would give for these keyword arguments: its
    defaults for the flags not given (so every flag the command has is there, as None).
    Each value is checked against its flag's type as the parser would check the text
    (``epochs="3"`` is 3; ``epochs="abc"`` and ``out=123`` are one-line errors naming the
    keyword)."""
    ns = parser.parse_args([])
    dests = vars(ns)
    actions = {a.dest: a for a in parser._actions}
    for key, value in given.items():
        if key not in dests:  # the signatures list the flags; this keeps them honest
            raise ConfigError(f"unknown setting {key!r}; use one of {', '.join(sorted(dests))}")
        if key == "set":
            value = [] if value is None else value
            if not isinstance(value, (Mapping, list, tuple)) or (
                    not isinstance(value, Mapping)
                    and not all(isinstance(v, str) for v in value)):
                raise ConfigError(f"set={value!r}: give a mapping such as "
                                  "{'proxy.epochs': 2} or a list of 'KEY=VALUE' texts")
            value = value if isinstance(value, Mapping) else list(value)
        elif key == "config":
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            if value is not None and not isinstance(value, (str, Mapping)):
                raise ConfigError(f"config={value!r}: give a YAML file's path or a mapping of "
                                  "settings")
        else:
            value = _typed(actions[key], key, value)
        setattr(ns, key, value)
    return ns


def _typed(action: argparse.Action, key: str, value: Any) -> Any:
    """``value`` as the parser's ``action`` would give it from text, or a one-line
    :class:`ConfigError` naming the keyword (``epochs='abc': expected a whole number``)."""
    from nas.core.checks import is_int

    if value is None:
        return None
    if isinstance(action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction)):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r}: expected True or False")
        return value
    kind = action.type
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str) and not value.strip():
        raise ConfigError(f"{key}={value!r}: empty; give a value, or leave {key} out")
    if kind is None:
        path = action.metavar in ("DIR", "PATH", "YAML", "SPEC") or key in (
            "out", "data", "spec", "baseline", "scaling", "config", "space")
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not isinstance(value, str) and (path or not number):  # target_flops=4e8 is fine
            what = "a path (a str or os.PathLike)" if path else "a string"
            raise ConfigError(f"{key}={value!r}: expected {what}")
    elif isinstance(value, str):
        try:
            value = kind(value)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
            raise ConfigError(f"{key}={value!r}: {_expected(kind, e)}") from None
    elif kind is int or getattr(kind, "__name__", "") == "positive_int":
        if not is_int(value):
            raise ConfigError(f"{key}={value!r}: {_expected(kind, None)}")
        value = kind(str(int(value)))
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{key}={value!r}: {_expected(kind, None)}")
    if action.choices is not None and value not in action.choices:
        raise ConfigError(f"{key}={value!r}: use one of {', '.join(map(str, action.choices))}")
    return value


def _expected(kind: Any, error: Exception | None) -> str:
    if kind is int or getattr(kind, "__name__", "") == "positive_int":
        return "expected a whole number" + (" >= 1" if kind is not int else "")
    if kind is float:
        return "expected a number"
    return str(error) if error is not None and str(error) else "expected a number"


_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)"
                   r"(?:[ =]('[^']*'|\"[^\"]*\"|[-+]?[.\d][^\s:;,)]*|[/~][^\s:;,)]*|(?:nan|inf|True|False|None)\b|[A-Z]{2,}\b))?")


def keyword_message(message: str, parser: argparse.ArgumentParser) -> str:
    """A command's message with its flags as the Python API's keywords: ``--target-flops 40``
    is ``target_flops=40``, ``--force`` is ``force=True``, ``--ema`` is ``ema_decay``."""
    dest_of = {opt: a for a in parser._actions for opt in a.option_strings}

    def keyword(m: re.Match[str]) -> str:
        action = dest_of.get(f"--{m[1]}")
        name = action.dest if action is not None else m[1].replace("-", "_")
        if m[2] is not None:
            return f"{name}={m[2]}"
        if isinstance(action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction)):
            return f"{name}=True"
        return name

    return _FLAG.sub(keyword, message)


@contextlib.contextmanager
def _keywords(parser: argparse.ArgumentParser) -> Iterator[None]:
    """The project's errors raised in the block name the API's keywords, never flags."""
    try:
        yield
    except NasError as e:
        text = keyword_message(str(e), parser)
        if text == str(e):
            raise
        try:
            again = type(e)(text)
        except TypeError:  # an error class with another signature: leave it as it is
            raise e from None
        raise again from None


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
               gpus_per_worker: float | None = None, force: bool = False) -> SearchResult:
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

    parser = command.build_parser()
    with _keywords(parser):
        ns = _namespace(parser, given)
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
              force: bool = False,
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
    parser = command.build_parser()
    with _keywords(parser):
        ns = _namespace(parser, given)
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
              force: bool = False,
              say: Callable[[str], None] | None = None) -> TrainResult:
    """Train a spec (a YAML path or a bundled name) fully, test it and export it, as
    ``effnas train`` does (see its ``--help``; ``ema_decay`` is ``--ema``,
    ``max_epochs_time`` takes seconds; ``config`` a YAML path or a mapping of settings, ``set``
    a mapping or ``KEY=VALUE`` items). Epoch lines go to ``say`` (default: print). Returns a
    :class:`TrainResult` (``status="interrupted"`` after Ctrl-C: continue with
    ``run_train(resume=True, out=...)``)."""
    given = {k: v for k, v in locals().items() if k != "say"}
    from nas.cli import train as command

    parser = command.build_parser()
    with _keywords(parser):
        ns = _namespace(parser, given)
        shown = ", ".join([*([repr(ns.spec)] if ns.spec is not None else []),
                           *(f"{k}={getattr(ns, k)!r}" for k, v in given.items()
                             if k != "spec" and v is not None and v is not False)])
        with runs.api_names():
            return command.execute(ns, f"nas.run_train({shown})", say)


__all__ = ["run_search", "run_scale", "run_train", "load_run", "SearchResult", "ScaleResult",
           "TrainResult", "RunData"]
