"""Reading and writing specs as YAML, and finding the bundled configs."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from nas.errors import ConfigError, SpecError
from nas.spec import ArchSpec, spec_from_dict, spec_to_dict

_REPO_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


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


def read_yaml(path: str | os.PathLike[str], error: type[Exception] = ConfigError) -> Any:
    """Read a YAML file, turning missing files and syntax errors into one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{p}: file not found; check the path")
    try:
        with open(p, encoding="utf-8") as f:
            return yaml.safe_load(f)
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
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def load_spec(path: str | os.PathLike[str]) -> ArchSpec:
    """Load a spec from YAML, strictly (unknown keys and bad values raise :class:`SpecError`).

    ``path`` may also be the name of a bundled config (``"efficientnet-b0"``).
    """
    p = Path(path)
    if not p.exists() and not str(path).endswith((".yaml", ".yml")) and os.sep not in str(path):
        try:
            p = config_path(str(path))
        except ConfigError:  # neither a file nor a bundled name: say both
            specs = sorted(q.stem for q in configs_dir().glob("*.yaml")
                           if "stages" in (read_yaml(q) or {}))
            raise SpecError(f"{path}: no such file and no bundled spec of that name; bundled "
                            f"specs: {', '.join(specs)}") from None
    return spec_from_dict(read_yaml(p, SpecError), source=str(p))


def save_spec(spec: ArchSpec, path: str | os.PathLike[str]) -> Path:
    """Write a spec as YAML (atomically); ``load_spec(path) == spec``."""
    p = Path(path)
    write_text_atomic(p, dump_yaml(spec_to_dict(spec)))
    return p
