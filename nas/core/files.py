"""Files: the bundled configs, strict YAML reading, atomic writes, CSV tables."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import yaml

from nas.core.errors import ConfigError

_REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def configs_dir() -> Path:
    """The folder of bundled configs (``configs/`` of the source tree or the installed copy)."""
    if _REPO_CONFIGS.is_dir():
        return _REPO_CONFIGS
    from importlib import resources
    return Path(str(resources.files("nas") / "_configs"))


def config_path(name: str) -> Path:
    """Path of a bundled config by name: ``config_path("efficientnet-b0")``."""
    base = configs_dir()
    path = base / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in base.glob("*.yaml")))
        raise ConfigError(f"no bundled config named {name!r}; known: {known}")
    return path


# YAML 1.2 (core schema) reads every decimal with an exponent as a float: 1e-3, 3e8, 1E5,
# -2.5e-4, 1.5e5. PyYAML implements YAML 1.1, whose floats need a dot and a signed exponent
# (1.0e-3), so it reads all of those as strings; settings such as `--set proxy.lr=1e-3` were
# refused. The loader below adds the YAML 1.2 pattern to PyYAML's safe resolvers (everything
# else reads as before), and the dumper quotes strings that would now read as numbers, so a
# written file reads back as it was.
_YAML12_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$")
_FLOAT_TAG = "tag:yaml.org,2002:float"


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with numbers as YAML 1.2 reads them (``1e-3`` is a float)."""


class YamlDumper(yaml.SafeDumper):
    """PyYAML's safe dumper that quotes strings :class:`YamlLoader` would read as numbers."""


for _cls in (YamlLoader, YamlDumper):
    _cls.add_implicit_resolver(_FLOAT_TAG, _YAML12_FLOAT, list("-+.0123456789"))


def load_yaml_text(text: str) -> Any:
    """Parse YAML text with :class:`YamlLoader` (YAML 1.2 numbers, otherwise safe YAML)."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader subclass


def dump_yaml_text(data: Any, **options: Any) -> str:
    """YAML text of ``data`` that :func:`load_yaml_text` reads back as it was."""
    return yaml.dump(data, Dumper=YamlDumper, **options)


def read_yaml(path: str | os.PathLike[str], error: type[Exception] = ConfigError) -> Any:
    """Read a YAML file, turning missing files and syntax errors into one-line errors.

    Numbers are read as YAML 1.2 reads them (``1e-3`` and ``3e8`` are floats; see
    :class:`YamlLoader`)."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{p}: file not found; check the path")
    try:
        with open(p, encoding="utf-8") as f:
            return load_yaml_text(f.read())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise error(f"{p}: invalid YAML{at}: {problem}; fix the file's syntax") from None
    except UnicodeDecodeError as e:
        raise error(f"{p}: not UTF-8 text (bad byte at offset {e.start}); is this the right "
                    "file?") from None


@contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "w") -> Iterator[Any]:
    """A file that replaces ``path`` only once it is complete: readers see the old or the new
    content, never a partial one (``mode`` "w" for text, "wb" for bytes)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide results from other users
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(text)


def dump_yaml(data: Any) -> str:
    return dump_yaml_text(data, sort_keys=False, default_flow_style=None, width=100)


def json_safe(v: Any) -> Any:
    """``v`` with every non-finite float (NaN, inf) replaced by None, in nested dicts,
    lists and tuples: JSON has no NaN, and ``json.dumps`` would write it anyway."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v


def json_text(data: Any, **options: Any) -> str:
    """Valid JSON for ``data``: non-finite floats become null (see :func:`json_safe`)."""
    return json.dumps(json_safe(data), allow_nan=False, **options)


def write_csv(path: str | os.PathLike[str], header: Sequence[str],
              rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV table atomically (``\n`` line ends): a header row, then ``rows``; values as
    given (format floats first where a table wants fewer digits; None is written empty)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(header))
    w.writerows(list(r) for r in rows)
    write_text_atomic(path, buf.getvalue())
