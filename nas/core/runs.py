"""Run folders: what wrote each one, and which folder a command may use.

Every command that writes a run folder (``search``, the one-shot search, ``scale``,
``train``, ``fidelity``, ``pipeline``) records itself in it when it creates it: a marker
file, ``.effnas-run.json``, with the kind of run, the effnas version and the time::

    {"format": 1, "kind": "search", "effnas_version": "0.1.0", "created": "2026-...Z"}

Before anything is written (before Ray starts, before data loads), each command asks
:func:`claim` whether its run folder (``out``) may be used:

* a new or empty folder: yes (an empty folder is adopted);
* a folder of another kind of run: no, one line naming what it is and how to continue it;
* a folder of the same kind: only to resume the run there (a folder of that kind in which no run
  got going, e.g. one that holds nothing but the marker and a ``config.yaml``, may be
  started again);
* a non-empty folder that is no run folder: no (nothing is written among the user's files);
* resuming needs a folder of the same kind.

Run folders written before the marker existed have none; :func:`detect` recognises them by
the files each kind writes (``driver.pt`` of a search, ``scaling.yaml`` of a scale run,
``last.pt`` of a training run, ...), so old runs can still be continued (and are refused to
the other commands as before). A command that continues such a folder adds the marker.

A pipeline's folder holds a search, a scale run and training runs in sub-folders
(``search/``, ``scale/``, ``train/M/seedS/``), each marked with its own kind, so each can be
continued by its own command too; fidelity writes into its own folder (default
``RUN/fidelity``, a sub-folder of the search it measures) and never into the search's files.

:func:`check_path` turns an ``out`` that cannot be a folder (under a regular file, on a
read-only file system, a symlink loop, no permission) into one line. Messages name the
settings as keys (``out='x'``, ``resume=True``) and say how to continue a run as its job
function's call (``nas.run_search(resume=True, out='x')``); the command line says them as
its flags and commands. Torch-free and Ray-free.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from nas.core.errors import ConfigError

MARKER = ".effnas-run.json"
MARKER_FORMAT = 1
KINDS = ("search", "oneshot", "scale", "train", "fidelity", "pipeline")

# How each kind is named in a message, and the job function that continues it (the command
# line says the command that runs it: ``nas.run_scale(...)`` is ``effnas scale ...``).
_NAMES = {"search": "search", "oneshot": "one-shot search", "scale": "scale run",
          "train": "training run", "fidelity": "fidelity run", "pipeline": "pipeline"}
_JOBS = {"search": "search", "oneshot": "search", "scale": "scale", "train": "train",
         "fidelity": "fidelity", "pipeline": "pipeline"}

# The files that show a run of a kind got going (it has results or saved state to lose); a
# folder of the kind without any of them may be started again. Folders end in "/".
STATE = {"search": ("driver.pt", "children.jsonl", "best.yaml"),
         "oneshot": ("supernet/", "driver.pt", "standalone/", "best.yaml"),
         "scale": ("scaling.yaml", "grid/", "compare/", "family-*/"),
         "train": ("last.pt", "metrics.json", "best.pt"),
         "fidelity": ("driver.pt", "fidelity.json", "trainings.jsonl"),
         "pipeline": ("pipeline.json", "search/", "scale/", "train/", "report/")}

def _out(out: Path | str) -> str:
    return f"out={str(out)!r}"


def _new_out() -> str:
    return "a new out="


def continue_call(kind: str, out: Path, run: str | None = None) -> str:
    """How to continue a run of ``kind`` in ``out``, as the job function's call:
    ``nas.run_search(resume=True, out='OUT')`` (a fidelity run names its search's folder
    first, ``run``); the command line says it as its command."""
    first = f"{run!r}, " if kind == "fidelity" else ""
    return f"nas.run_{_JOBS[kind]}({first}resume=True, out={str(out)!r})"


# --------------------------------------------------------------------------- the marker


def _version() -> str:
    """The package's version (the running source tree's: ``nas`` is loaded, being this
    module's package; the installed metadata may be another checkout's)."""
    return str(getattr(sys.modules.get("nas"), "__version__", "unknown"))


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of ``folder`` (None when it has none; a damaged one reads as kind None)."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"kind": None}
    return data if isinstance(data, dict) else {"kind": None}


def mark(folder: Path, kind: str, **info: Any) -> None:
    """Create ``folder`` (with its parents) and record in it that a run of ``kind`` writes it,
    unless it holds a marker already (the first writer's stays: a one-shot search that hands
    over to a multi-trial search in the same folder stays a one-shot search). ``info``: more
    to record (fidelity: the search it measures). Called where each command creates its run
    folder, after every check."""
    assert kind in KINDS, kind
    folder = Path(folder)
    from nas.core.files import write_text_atomic
    data = {"format": MARKER_FORMAT, "kind": kind, "effnas_version": _version(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **info}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / MARKER).exists():
            write_text_atomic(folder / MARKER, json.dumps(data, indent=2) + "\n")
    except OSError as e:  # the folder changed since it was checked (or the disk is full)
        raise ConfigError(f"{_out(folder)}: cannot create the run folder ({e.strerror or e}); "
                          f"choose {_new_out()}") from None


# --------------------------------------------------------------------------- what a folder is


def _has(folder: Path, entry: str) -> str | None:
    """``entry`` (a file name, ``name/`` for a folder, ``prefix-*/`` for folders) if
    ``folder`` holds it."""
    if entry.endswith("*/"):
        found = sorted(p for p in folder.glob(entry[:-1]) if p.is_dir())
        return f"{found[0].name}/" if found else None
    path = folder / entry.rstrip("/")
    hit = path.is_dir() if entry.endswith("/") else path.is_file()
    return entry if hit else None


def _config_kind(folder: Path) -> str | None:
    """The kind of run whose ``config.yaml`` this is, by its settings (None: not a run's)."""
    path = folder / "config.yaml"
    if not path.is_file():
        return None
    try:
        import yaml
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - not YAML: not a run's config
        return None
    if not isinstance(cfg, dict):
        return None
    if isinstance(cfg.get("search"), dict) and isinstance(cfg.get("scale"), dict):
        return "pipeline"
    if "target_flops" in cfg and ("strategy" in cfg or "reward" in cfg):
        return "oneshot" if cfg.get("evaluator") == "oneshot" else "search"
    if "rule" in cfg and "coefficients" in cfg:
        return "scale"
    return None


def _legacy(folder: Path) -> tuple[str, str] | None:
    """A run folder written before the marker existed: its kind, recognised by the files
    that kind writes, and the file that shows it. Order matters: a pipeline folder holds a
    search folder, a one-shot search a multi-trial search's files, a fidelity folder a
    driver state as a search does (but no config.yaml)."""
    config = _config_kind(folder)
    for kind, files in (("pipeline", ("pipeline.json",)),
                        ("train", ("last.pt", "metrics.json")),
                        ("oneshot", ("supernet/",)),
                        # candidates.jsonl: a scale run's grid/ or compare/ folder
                        ("scale", ("scaling.yaml", "grid/", "compare/", "family-*/",
                                   "candidates.jsonl")),
                        ("fidelity", ("fidelity.json", "fidelity.md", "trainings.jsonl"))):
        found = next((hit for f in files if (hit := _has(folder, f))), None)
        if found:
            return kind, found
    for name in ("driver.pt", "children.jsonl"):
        if _has(folder, name):
            return ("oneshot" if config == "oneshot" else "search"), name
    if config is not None:
        return config, "config.yaml"
    return None


def detect(folder: Path) -> tuple[str | None, str] | None:
    """What ``folder`` is: ``(kind, evidence)`` (the marker's name or the file that shows an
    older run's kind); ``(None, MARKER)`` for a damaged marker; None for no run folder."""
    marker = read_marker(folder)
    if marker is not None:
        kind = marker.get("kind")
        return (kind if kind in KINDS else None), MARKER
    return _legacy(folder)


def _content(folder: Path) -> list[str]:
    """What ``folder`` holds, the project's own hidden files left out (its marker, lock
    files)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".effnas"))


def _started(folder: Path, kind: str) -> str | None:
    return next((hit for f in STATE[kind] if (hit := _has(folder, f))), None)


# --------------------------------------------------------------------------- folder checks


def _stat_error(path: Path) -> OSError | None:
    try:
        os.stat(path)
    except OSError as e:
        return e
    return None


def check_path(out: Path | str) -> None:
    """``out`` can be made and written as a folder: it is a folder or can be made one (no
    part of it is a regular file, a symlink loop or a broken link), and the nearest existing
    folder can be written (not read-only, not without permission). One-line
    :class:`ConfigError` naming the path and the fix otherwise."""
    out = Path(out)
    fix = f"choose {_new_out()}"
    for folder in (out, *out.parents):
        try:
            lexists = os.path.lexists(folder)
            err = _stat_error(folder) if lexists else None
        except OSError as e:  # pragma: no cover - lexists does not raise on Linux
            err = e
        if err is not None:
            if err.errno == errno.ELOOP:
                raise ConfigError(f"{_out(out)}: {folder} is a symbolic link loop; {fix}, or "
                                  "fix the link")
            if err.errno == errno.ENOENT:
                raise ConfigError(f"{_out(out)}: {folder} is a symbolic link to a missing "
                                  f"{os.readlink(folder)}; {fix}, or fix the link")
            if err.errno in (errno.EACCES, errno.EPERM):
                raise ConfigError(f"{_out(out)}: cannot reach {folder} (permission denied); "
                                  f"{fix}")
            if err.errno == errno.ENOTDIR:
                continue  # a file above it: reported at that level
            raise ConfigError(f"{_out(out)}: {folder}: {err.strerror}; {fix}")
        if not lexists:
            continue
        if not folder.is_dir():
            raise ConfigError(f"{_out(out)}: {folder} is a file, not a folder; {fix}")
        if not os.access(folder, os.W_OK | os.X_OK):
            try:
                read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
            except OSError:
                read_only = False
            why = "it is on a read-only file system" if read_only else "permission denied"
            raise ConfigError(f"{_out(out)}: cannot write in {folder} ({why}); {fix}")
        return


# --------------------------------------------------------------------------- claim


def claim(out: Path | str, kinds: str | Iterable[str], resume: bool) -> None:
    """May a command that writes runs of ``kinds`` (its kind; for a resumed search, search
    or oneshot) use ``out``? ``resume``: it continues the run there. Raises a one-line
    :class:`ConfigError` naming the folder, what it is and the fix; writes nothing."""
    out = Path(out)
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    want = kinds[0]
    check_path(out)
    content = _content(out) if out.is_dir() else []
    found = detect(out) if out.is_dir() else None
    if found is None:
        if not content:  # new or empty: adopted (resuming finds no state there and says so)
            return
        shown = ", ".join(content[:3]) + (", ..." if len(content) > 3 else "")
        if resume:
            raise ConfigError(f"resume=True: {out} holds no {_NAMES[want]} to continue (it is "
                              f"no effnas run folder: {shown}); check out=")
        raise ConfigError(f"{_out(out)}: the folder is not empty ({shown}) and is no effnas "
                          f"run folder; choose {_new_out()} (or an empty folder), so that "
                          "nothing is written among those files")
    kind, evidence = found
    if kind is None:
        raise ConfigError(f"{out / MARKER} is damaged (it names no kind of run); choose "
                          f"{_new_out()}, or repair the marker")
    if kind not in kinds:
        how = _continue(kind, out)
        if resume:
            raise ConfigError(f"{out} holds a {_NAMES[kind]} ({evidence}), not a "
                              f"{_NAMES[want]}; continue it with {how}")
        raise ConfigError(f"{out} holds a {_NAMES[kind]} ({evidence}), not a "
                          f"{_NAMES[want]}; choose {_new_out()} (it is continued with "
                          f"{how})")
    if resume:
        return
    started = _started(out, kind)
    if started is not None:
        raise ConfigError(f"{out} already holds a {_NAMES[kind]} ({started}); continue it with "
                          f"{_continue(kind, out)}, or choose {_new_out()}")


def _continue(kind: str, out: Path) -> str:
    """How to continue the run of ``kind`` in ``out`` (see :func:`continue_call`)."""
    return continue_call(kind, out, (_fidelity_run(out) or "RUN") if kind == "fidelity" else None)


def _fidelity_run(out: Path) -> str:
    marker = read_marker(out) or {}
    run = marker.get("run")
    return str(run) if isinstance(run, str) else ""
