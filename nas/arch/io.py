"""Reading and writing specs as YAML (strict; bundled specs by name)."""

from __future__ import annotations

import os
from pathlib import Path

from nas.arch.spec import MAX_STAGES, ArchSpec, spec_from_dict, spec_to_dict
from nas.core.errors import ConfigError, SpecError
from nas.core.files import (
    config_path,
    configs_dir,
    dump_yaml,
    read_yaml,
    write_text_atomic,
)


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
    return spec_from_dict(read_yaml(p, SpecError, max_items=MAX_STAGES,
                                    items_hint=f"; a spec has at most {MAX_STAGES} stages"),
                          source=str(p))


def save_spec(spec: ArchSpec, path: str | os.PathLike[str]) -> Path:
    """Write a spec as YAML (atomically); ``load_spec(path) == spec``."""
    p = Path(path)
    write_text_atomic(p, dump_yaml(spec_to_dict(spec)))
    return p
