"""Typed settings, read and written as plain mappings, and the one layered loader.

Every job (search, the one-shot search, scale, train, fidelity, pipeline) has one tree of
frozen dataclasses: its settings. :class:`Settings` gives each tree ``from_mapping`` (strict:
an unknown key is an error naming its path and the nearest valid key; a value of the wrong
type is an error naming the key, ``epochs='abc': expected a whole number``) and
``to_mapping`` (plain data, YAML- and JSON-safe); ``from_mapping(s.to_mapping()) == s``.
A section of a tree is any dataclass: its fields are read by their type hints, recursively;
a class with its own ``from_mapping(mapping, key)`` / ``to_mapping()`` is read and written
by them.

:func:`load` is the one loader of every job's settings, in layers: the settings' defaults
(the dataclass defaults: the one source of truth; the bundled ``configs/JOB.yaml`` documents
them, and a test holds the two equal), a preset (``configs/JOB-NAME.yaml``), a config file
(a YAML path or a mapping), then overrides (a mapping, nested or with dotted keys such as
``{"proxy.epochs": 2}``, or ``KEY=VALUE`` texts). Every layer may only set keys the
settings have. A section that names a bundled file (``proxy: proxy-smoke``) is read and
merged like a mapping; a free-form mapping (``strategy_options``) is replaced as a whole.

Messages name settings as keys (``target_flops=40``, ``resume=True``), never as the command
line's flags: :mod:`nas.cli` maps its flags to these keys and back. Torch-free.
"""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import difflib
import functools
import os
import types
import typing
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence, TypeVar

from nas.core.checks import is_int, is_number
from nas.core.errors import ConfigError

T = TypeVar("T")


# --------------------------------------------------------------------------- messages


def join(prefix: str, key: str) -> str:
    """``proxy`` + ``epochs`` -> ``proxy.epochs``."""
    return f"{prefix}.{key}" if prefix else key


def shown(value: Any) -> str:
    """A value as a message shows it after ``key=``: lists joined with commas (as the
    command line's lists read), paths as text, the rest as ``repr``."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, os.PathLike):
        return repr(os.fspath(value))
    return repr(value)


def unknown_key(dotted: str, allowed: Iterable[str], source: str | None = None) -> ConfigError:
    """The error of an unknown key: its path and the nearest valid key (or the valid keys
    when none is near)."""
    prefix, _, key = dotted.rpartition(".")
    allowed = sorted(str(a) for a in allowed)
    near = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if near:
        hint = f"did you mean {join(prefix, near[0])!r}?"
    else:
        hint = f"allowed here: {', '.join(allowed) or 'nothing'}"
    where = f"{source}: " if source else ""
    return ConfigError(f"{where}unknown key {dotted!r}; {hint}")


# --------------------------------------------------------------------------- reading values


_MAPPINGS = (dict, Mapping, collections.abc.Mapping)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return typing.get_args(tp)
    return None


def section_of(tp: Any) -> type | None:
    """The section class of a field's type (``Recipe``, ``AshaSettings | None``), or None."""
    args = _union_args(tp)
    if args is not None:
        found = [a for a in args if _is_section(a)]
        return found[0] if len(found) == 1 else None
    return tp if _is_section(tp) else None


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fail(key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{key}={value!r}: expected {expected}")


def read_value(tp: Any, value: Any, key: str) -> Any:
    """``value`` read as a ``tp`` (a field's type hint), or a one-line :class:`ConfigError`
    naming ``key``. Numbers are not read from text (a YAML file's ``epochs: "3"`` is an
    error, as is ``epochs="3"``); a path may be a ``str`` or ``os.PathLike``."""
    if tp is Any:
        return copy.deepcopy(value)
    args = _union_args(tp)
    if args is not None:
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key}: got null; this setting needs a value")
        options = [a for a in args if a is not type(None)]
        if set(options) == {int, float}:
            if not is_number(value):
                raise _fail(key, value, "a finite number")
            return int(value) if is_int(value) else float(value)
        if len(options) == 1:
            return read_value(options[0], value, key)
        errors = []
        for option in options:
            try:
                return read_value(option, value, key)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if value is None:
        raise ConfigError(f"{key}: got null; this setting needs a value")
    section = section_of(tp)
    if section is not None:
        return build(section, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(key, value, "True or False")
        return value
    if tp is int:
        if not is_int(value):
            raise _fail(key, value, "a whole number")
        return int(value)
    if tp is float:
        if not is_number(value):
            raise _fail(key, value, "a finite number")
        return float(value)
    if tp is str:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise _fail(key, value, "text")
        if not value.strip():
            raise ConfigError(f"{key}={value!r}: empty; give a value, or leave {key} out")
        return value
    if tp is Path:
        if not isinstance(value, (str, os.PathLike)):
            raise _fail(key, value, "a path (a str or os.PathLike)")
        if not os.fspath(value).strip():
            raise ConfigError(f"{key}={value!r}: empty; give a value, or leave {key} out")
        return Path(value)
    origin = typing.get_origin(tp)
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise _fail(key, value, "a list")
        items = typing.get_args(tp)
        if len(items) == 2 and items[1] is Ellipsis:
            return tuple(read_value(items[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(items) != len(value):
            raise _fail(key, value, f"a list of {len(items)}")
        return tuple(read_value(t, v, f"{key}[{i}]") for i, (t, v) in enumerate(zip(items, value)))
    if origin in (list, Sequence, collections.abc.Sequence):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise _fail(key, value, "a list")
        (item,) = typing.get_args(tp) or (Any,)
        return [read_value(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in _MAPPINGS or tp in _MAPPINGS:
        if not isinstance(value, Mapping):
            raise _fail(key, value, "a mapping")
        return copy.deepcopy(dict(value))
    raise TypeError(f"{key}: no reader for the type {tp!r}")  # a programming error


def build(cls: type[T], mapping: Any, key: str = "") -> T:
    """The section ``cls`` from ``mapping``: its own ``from_mapping`` if it has one, else
    field by field (:func:`fields_from`)."""
    own = getattr(cls, "from_mapping", None)
    if own is not None:
        return own(mapping, key)
    return cls(**fields_from(cls, mapping, key))


def fields_from(cls: type, mapping: Any, key: str = "",
                exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The keyword arguments of ``cls`` read from ``mapping``: strict keys, every value read
    by its field's type hint (or its ``metadata["read"]``, a function of the value and the
    key); fields left out keep their defaults. ``exclude``: fields not read from a mapping
    (derived ones)."""
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{key or 'settings'}: expected a mapping of settings, got "
                          f"{type(mapping).__name__}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)
              if f.init and f.name not in exclude and not f.metadata.get("derived")}
    for k in mapping:
        if k not in fields:
            raise unknown_key(join(key, str(k)), fields)
    out = {}
    for name, value in mapping.items():
        f = fields[name]
        reader = f.metadata.get("read")
        path = join(key, name)
        section = section_of(hints[name])
        if reader is not None:
            out[name] = reader(value, path)
            continue
        if section is not None and value is not None:
            value = _onto_default(f, section, value, path)
        if "exclude" in f.metadata and section is not None:
            out[name] = section(**fields_from(section, value, path, f.metadata["exclude"]))
        else:
            out[name] = read_value(hints[name], value, path)
    return out


def _onto_default(f: dataclasses.Field, section: type, value: Any, path: str) -> Any:
    """A section given in part is read over the field's default (as the layers merge it):
    ``{"proxy": {"epochs": 5}}`` changes the default proxy's epochs only. A section that
    names a bundled file (``NAMED``) may be given as its name or a YAML path."""
    if getattr(section, "NAMED", False) and isinstance(value, (str, os.PathLike)):
        value = named_file(value, path)
    if not isinstance(value, Mapping):
        return value
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        default = f.default_factory()  # type: ignore[misc]
    else:
        return value
    if not dataclasses.is_dataclass(default):
        return value
    base = fields_to(default, f.metadata.get("exclude", ())) if "exclude" in f.metadata \
        else plain(default)
    return merge(section, base, value, "", path)


# --------------------------------------------------------------------------- writing values


def plain(value: Any) -> Any:
    """``value`` as plain data: sections as mappings, paths as text, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        own = getattr(value, "to_mapping", None)
        return own() if own is not None else fields_to(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def fields_to(obj: Any, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """``obj``'s fields as a plain mapping (derived fields and ``exclude`` left out)."""
    out = {}
    for f in dataclasses.fields(obj):
        if not f.init or f.name in exclude or f.metadata.get("derived"):
            continue
        value = getattr(obj, f.name)
        if "exclude" in f.metadata and dataclasses.is_dataclass(value):
            out[f.name] = fields_to(value, f.metadata["exclude"])
        else:
            out[f.name] = plain(value)
    return out


class Settings:
    """What every settings tree has: ``from_mapping``, ``to_mapping`` and ``replace``.

    A subclass is a frozen dataclass. ``PRESETS`` names its bundled presets'
    prefix (``search``: ``configs/search-NAME.yaml``); ``NAMED`` says that a section of this
    class may be given as a bundled file's name or a YAML path (``proxy: proxy-smoke``).
    """

    PRESETS: ClassVar[str | None] = None
    NAMED: ClassVar[bool] = False

    @classmethod
    def from_mapping(cls: type[T], mapping: Any, key: str = "") -> T:
        """The settings from plain data (partial: what it leaves out keeps its default),
        strictly: unknown keys, wrong types and bad ranges are one-line
        :class:`ConfigError`\\ s naming the key (below ``key``, a section's path)."""
        return cls(**fields_from(cls, mapping, key))

    def to_mapping(self) -> dict[str, Any]:
        """Plain data (YAML- and JSON-safe); ``from_mapping`` reads it back as it was."""
        return fields_to(self)

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def setting(default: Any = dataclasses.MISSING, *, read: Callable[[Any, str], Any] | None = None,
            factory: Callable[[], Any] | None = None, **meta: Any) -> Any:
    """A dataclass field with a reader of its own (``read(value, key)``: MACs from
    ``400M``, seconds from ``30m``) or other metadata (``derived``, ``exclude``)."""
    metadata = dict(meta)
    if read is not None:
        metadata["read"] = read
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def read_path(value: Any, key: str) -> str | None:
    """A path (or a bundled name) as text (``str`` or ``os.PathLike`` given); None stays
    None (a field's ``read``)."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise _fail(key, value, "a path (a str or os.PathLike)")
    text = os.fspath(value)
    if not text.strip():
        raise ConfigError(f"{key}={value!r}: empty; give a value, or leave {key} out")
    return text


def read_duration(value: Any, key: str) -> float | None:
    """A wall time (``30m``, ``2h``, ``90s`` or seconds) in seconds; None: no limit."""
    from nas.core.checks import check_duration
    return check_duration(value, key)


# --------------------------------------------------------------------------- the layers


def parse_overrides(items: Any, what: str = "overrides") -> dict[str, Any]:
    """Overrides as one nested mapping: a mapping (nested, or with dotted keys:
    ``{"proxy.epochs": 2}``) or ``KEY=VALUE`` texts (``["proxy.epochs=2"]``, values read as
    YAML 1.2: ``1e-3`` is a number, text that is not YAML is text)."""
    import yaml

    from nas.core.files import load_yaml_text

    out: dict[str, Any] = {}
    if items is None:
        return out
    if isinstance(items, Mapping):
        pairs = list(items.items())
    elif isinstance(items, (str, bytes)) or not isinstance(items, (list, tuple)):
        raise ConfigError(f"{what}: got {items!r}; give a mapping such as "
                          "{'proxy.epochs': 2} or a list of 'KEY=VALUE' texts")
    else:
        pairs = []
        for item in items:
            if not isinstance(item, str) or "=" not in item or not item.split("=", 1)[0].strip():
                raise ConfigError(f"{item!r}: expected KEY=VALUE, e.g. proxy.epochs=2")
            key, raw = item.split("=", 1)
            try:
                value = load_yaml_text(raw) if raw else None
            except yaml.YAMLError:
                value = raw
            pairs.append((key, value))
    for key, value in pairs:
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"{what}: got the key {key!r}; use setting names such as "
                              "'proxy.epochs'")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{what}: {key!r} goes below a value set by another key; "
                                  "set it once")
        value = copy.deepcopy(value)
        if isinstance(node.get(parts[-1]), dict) and isinstance(value, Mapping):
            node[parts[-1]] = _deep_merge(node[parts[-1]], value)
        else:
            node[parts[-1]] = dict(value) if isinstance(value, Mapping) else value
    return out


def _deep_merge(base: Mapping[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in layer.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def named_file(value: str | os.PathLike, key: str) -> dict[str, Any]:
    """A section given as a bundled file's name (``proxy-smoke``) or a YAML path, as a
    mapping."""
    from nas.core.files import config_path, read_yaml

    text = os.fspath(value)
    p = Path(text)
    if not p.is_file() and os.sep not in text and not text.endswith((".yaml", ".yml")):
        p = config_path(text)
    data = read_yaml(p)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{p}: {key} must be a mapping of settings")
    return dict(data)


def _schema(cls: type | None, key: str) -> tuple[type | None, bool]:
    """The section class of ``cls``'s field ``key`` (None: no section), and whether the field
    is a free-form mapping (replaced as a whole)."""
    if cls is None or not dataclasses.is_dataclass(cls):
        return None, False
    hints = _hints(cls)
    if key not in hints:
        return None, False
    tp = hints[key]
    origin = typing.get_origin(tp)
    free = origin in _MAPPINGS or tp in _MAPPINGS or tp is Any
    return section_of(tp), free


def merge(cls: type | None, base: Mapping[str, Any], layer: Any, source: str,
          prefix: str = "", hint: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """``base`` (a full mapping of ``cls``'s settings) updated with ``layer``: a key ``base``
    lacks is an error naming ``source`` (``hint``: a function of the key's path that may
    say more, as a tree's ``key_hint``); a section is merged key by key (and may be given
    as a bundled file's name where its class says ``NAMED``); anything else is replaced."""
    if not isinstance(layer, Mapping):
        raise ConfigError(f"{source}: expected a mapping of settings, got "
                          f"{type(layer).__name__}")
    hint = hint or getattr(cls, "key_hint", None)
    out = copy.deepcopy(dict(base))
    for key, value in layer.items():
        dotted = join(prefix, str(key))
        if key not in out:
            said = hint(dotted) if hint is not None else None
            if said:
                raise ConfigError(f"{source}: {said}")
            raise unknown_key(dotted, out, source)
        section, free = _schema(cls, key)
        if (section is not None and getattr(section, "NAMED", False)
                and isinstance(value, (str, os.PathLike))):
            value = named_file(value, dotted)
        if free or not isinstance(value, Mapping) or not isinstance(out[key], Mapping):
            out[key] = copy.deepcopy(dict(value) if isinstance(value, Mapping) else value)
        else:
            out[key] = merge(section, out[key], value, source, dotted, hint)
    return out


def read_config(config: Any) -> tuple[dict[str, Any], str]:
    """A config layer: a YAML file's path or a mapping; and how messages name it."""
    from nas.core.files import read_yaml

    if isinstance(config, Mapping):
        return dict(config), "config"
    if not isinstance(config, (str, os.PathLike)):
        raise ConfigError(f"config={config!r}: give a YAML file's path or a mapping of settings")
    if not os.fspath(config).strip():
        raise ConfigError(f"config={config!r}: empty; give a YAML file's path, or leave config "
                          "out")
    data = read_yaml(config)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{os.fspath(config)}: expected a mapping of settings")
    return dict(data), os.fspath(config)


def presets(cls: type) -> list[str]:
    """The names of ``cls``'s bundled presets (``smoke``)."""
    from nas.core.files import configs_dir

    prefix = f"{cls.PRESETS}-"  # type: ignore[attr-defined]
    return sorted(p.stem[len(prefix):] for p in configs_dir().glob(f"{prefix}*.yaml")
                  if p.stem[len(prefix):] not in getattr(cls, "NOT_PRESETS", ()))


def read_preset(cls: type, name: Any) -> tuple[dict[str, Any], str]:
    """The preset ``name`` of ``cls`` (``configs/PRESETS-NAME.yaml``) and its path."""
    from nas.core.files import configs_dir, read_yaml

    known = presets(cls)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"preset={name!r}: give a preset's name ({', '.join(known)})")
    if name not in known:
        raise ConfigError(f"preset={name!r}: unknown preset; use one of {', '.join(known)}")
    path = configs_dir() / f"{cls.PRESETS}-{name}.yaml"  # type: ignore[attr-defined]
    data = read_yaml(path)
    return (dict(data) if isinstance(data, Mapping) else {}), str(path)


def layers(cls: type, *, preset: str | None = None, config: Any = None, overrides: Any = None,
           base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The merged mapping of the layers (see :func:`load`)."""
    mapping = dict(base) if base is not None else cls().to_mapping()
    if preset is not None:
        data, source = read_preset(cls, preset)
        mapping = merge(cls, mapping, data, source)
    if config is not None:
        data, source = read_config(config)
        mapping = merge(cls, mapping, data, source)
    over = parse_overrides(overrides)
    if over:
        mapping = merge(cls, mapping, over, "overrides")
    return mapping


def load(cls: type[T], *, preset: str | None = None, config: Any = None,
         overrides: Any = None, base: Mapping[str, Any] | None = None) -> T:
    """The one loader of every job's settings: ``cls``'s defaults (or ``base``, a full
    mapping such as a run's saved settings), the bundled ``preset``, the ``config`` (a YAML
    path or a mapping), then ``overrides`` (a mapping, nested or dotted, or ``KEY=VALUE``
    texts); checked, as ``cls.from_mapping`` reads them."""
    return cls.from_mapping(layers(cls, preset=preset, config=config, overrides=overrides,  # type: ignore[attr-defined]
                                   base=base))


def flat_keys(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{dotted key: value}`` (its leaves)."""
    out: dict[str, Any] = {}
    for k, v in mapping.items():
        if isinstance(v, Mapping) and v:
            out.update(flat_keys(v, join(prefix, str(k))))
        else:
            out[join(prefix, str(k))] = v
    return out


__all__ = ["Settings", "setting", "read_path", "read_duration", "load", "layers", "merge", "parse_overrides", "read_value",
           "build", "fields_from", "fields_to", "plain", "unknown_key", "join", "shown",
           "flat_keys", "named_file", "presets", "read_config", "read_preset", "section_of"]
