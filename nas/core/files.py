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
    if Path(name).is_dir():
        raise ConfigError(f"{name}: is a folder, not a file; give the path of a YAML file")
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


# Limits of every YAML file and text the project reads, checked before or while the text is
# composed, so that a hostile or mistaken file (200,000 nested brackets, a 10,000-stage spec,
# a log passed as --config) is a one-line error in well under a second instead of a
# RecursionError or minutes in the scanner. The bundled configs are far inside them.
MAX_YAML_BYTES = 4 * 1024 * 1024  # a config, spec or space is a few KB; scaling.yaml grows
MAX_YAML_DEPTH = 50               # nested lists and mappings; the bundled configs nest 4 deep
MAX_YAML_ITEMS = 100_000          # entries of one list or mapping (callers may ask for fewer)


class YamlLimitError(yaml.YAMLError):
    """A YAML text beyond a limit (size, nesting, entries) or with a duplicate key; its
    message is one line: where (line) and what to change."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with numbers as YAML 1.2 reads them (``1e-3`` is a float), made
    strict: a key given twice in one mapping is an error (not "the last one wins"), and
    nesting deeper than :data:`MAX_YAML_DEPTH` or a list or mapping of more than
    ``max_items`` entries stops the reading at once (:class:`YamlLimitError`)."""

    max_items = MAX_YAML_ITEMS
    items_hint = ""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if parent is not None and len(parent.value) >= self.max_items:
            line = self.peek_event().start_mark.line + 1
            raise YamlLimitError(f"line {line}: more than {self.max_items:,} entries in one "
                                 f"list or mapping{self.items_hint}", line)
        if self._depth >= MAX_YAML_DEPTH:
            line = self.peek_event().start_mark.line + 1
            raise YamlLimitError(f"line {line}: lists or mappings nested more than "
                                 f"{MAX_YAML_DEPTH} deep; is this the right file?", line)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` merges; its keys may be overridden on purpose
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in first:
                        raise YamlLimitError(f"line {line}: duplicate key {key!r} (first at "
                                             f"line {first[key]}); keep one of them", line)
                    first[key] = line
                except TypeError:  # an unhashable key: SafeConstructor says so below
                    continue
        return super().construct_mapping(node, deep=deep)


class YamlDumper(yaml.SafeDumper):
    """PyYAML's safe dumper that quotes strings :class:`YamlLoader` would read as numbers."""


for _cls in (YamlLoader, YamlDumper):
    _cls.add_implicit_resolver(_FLOAT_TAG, _YAML12_FLOAT, list("-+.0123456789"))


_BRACKETS = re.compile(r"[\[\]{}]")


def _check_brackets(text: str) -> None:
    """Flow brackets nested deeper than :data:`MAX_YAML_DEPTH`, found by a scan of the
    brackets alone before parsing (PyYAML's scanner takes seconds on 200,000 of them before
    the composer's own depth check is reached). Brackets in quotes or comments count too;
    only 50 unclosed ones in a row would be taken for nesting."""
    depth = 0
    for m in _BRACKETS.finditer(text):
        if m.group() in "[{":
            depth += 1
            if depth > MAX_YAML_DEPTH:
                line = text.count("\n", 0, m.start()) + 1
                raise YamlLimitError(f"line {line}: lists or mappings nested more than "
                                     f"{MAX_YAML_DEPTH} deep; is this the right file?", line)
        elif depth:
            depth -= 1


def load_yaml_text(text: str, max_items: int | None = None, items_hint: str = "") -> Any:
    """Parse YAML text with :class:`YamlLoader` (YAML 1.2 numbers, otherwise safe YAML;
    duplicate keys, deep nesting and more than :data:`MAX_YAML_BYTES` characters raise
    :class:`YamlLimitError`). ``max_items`` lowers the entries one list or mapping may hold
    (``items_hint`` is added to that error: what the limit is for)."""
    if len(text) > MAX_YAML_BYTES:
        raise YamlLimitError(f"{len(text):,} characters, more than the {MAX_YAML_BYTES:,} a "
                             "YAML text may have; is this the right file?")
    _check_brackets(text)
    loader = YamlLoader(text)
    if max_items is not None:
        loader.max_items = max_items
        loader.items_hint = items_hint
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def dump_yaml_text(data: Any, **options: Any) -> str:
    """YAML text of ``data`` that :func:`load_yaml_text` reads back as it was."""
    return yaml.dump(data, Dumper=YamlDumper, **options)


def read_yaml(path: str | os.PathLike[str], error: type[Exception] = ConfigError,
              max_items: int | None = None, items_hint: str = "") -> Any:
    """Read a YAML file, turning missing files, folders, files too big, too deeply nested or
    with duplicate keys, and syntax errors into one-line errors (``error``), checked before
    the text is parsed where they can be. ``max_items``/``items_hint``: see
    :func:`load_yaml_text`.

    Numbers are read as YAML 1.2 reads them (``1e-3`` and ``3e8`` are floats; see
    :class:`YamlLoader`)."""
    p = Path(path)
    if p.is_dir():
        raise error(f"{p}: is a folder, not a file; give the path of a YAML file")
    if not p.is_file():
        raise error(f"{p}: file not found; check the path")
    size = p.stat().st_size
    if size > MAX_YAML_BYTES:
        raise error(f"{p}: {size:,} bytes, more than the {MAX_YAML_BYTES:,} a YAML file may "
                    "have; is this the right file?")
    try:
        with open(p, encoding="utf-8") as f:
            return load_yaml_text(f.read(MAX_YAML_BYTES + 1), max_items, items_hint)
    except YamlLimitError as e:
        raise error(f"{p}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise error(f"{p}: invalid YAML{at}: {problem}; fix the file's syntax") from None
    except UnicodeDecodeError as e:
        raise error(f"{p}: not UTF-8 text (bad byte at offset {e.start}); is this the right "
                    "file?") from None
    except OSError as e:
        raise error(f"{p}: cannot read it ({e.strerror or e}); check the path and its "
                    "permissions") from None


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
