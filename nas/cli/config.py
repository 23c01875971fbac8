"""Layered, strict run configuration: bundled defaults, a preset, a YAML file, then flags.

Every layer may only set keys the defaults define (an unknown key is an error naming the
layer and the key). Sections whose values are free-form by design (``strategy_options``)
are merged as a whole. ``proxy`` may be a bundled proxy config's name or a path at any
layer; it is read and merged like a mapping; so may ``oneshot`` (the one-shot evaluator's
settings) and the recipe inside it, ``oneshot.supernet``. The resolved config is written into every
run folder, so a run can always be repeated exactly.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from nas.core.errors import ConfigError
from nas.core.files import config_path, dump_yaml_text, load_yaml_text, read_yaml

FREE_FORM = ("strategy_options",)


def _resolve_file(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.is_file():
        return p
    if os.sep not in name_or_path and not name_or_path.endswith((".yaml", ".yml")):
        return config_path(name_or_path)
    raise ConfigError(f"{name_or_path}: file not found; check the path")


def proxy_mapping(value: Any, source: str) -> dict[str, Any]:
    """A recipe given as a bundled config name, a path or a mapping, as a plain mapping."""
    if isinstance(value, str):
        data = read_yaml(_resolve_file(value))
        if not isinstance(data, Mapping):
            raise ConfigError(f"{value}: a proxy config must be a mapping of settings")
        return dict(data)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: proxy: expected a mapping or the name of a proxy config")
    return dict(value)


def merge(base: dict[str, Any], layer: Mapping[str, Any], source: str,
          prefix: str = "") -> dict[str, Any]:
    """``base`` updated with ``layer``; keys not in ``base`` are errors (except free-form)."""
    out = copy.deepcopy(base)
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if key not in out:
            allowed = ", ".join(sorted(out))
            raise ConfigError(f"{source}: unknown key {dotted!r}; allowed here: {allowed}")
        if dotted == "proxy":
            merged = proxy_mapping(out[key], source)
            merged.update(proxy_mapping(value, source))
            out[key] = merged
        elif dotted == "oneshot":
            out[key] = _merge_oneshot(proxy_mapping(out[key], source),
                                      proxy_mapping(value, source), source)
        elif isinstance(out[key], dict) and dotted not in FREE_FORM:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: {dotted}: expected a mapping")
            out[key] = merge(out[key], value, source, f"{dotted}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_oneshot(base: dict[str, Any], layer: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The one-shot settings: keys strict, and ``supernet`` (a recipe) merged like ``proxy``."""
    out = copy.deepcopy(base)
    for key, value in layer.items():
        if base and key not in base:
            raise ConfigError(f"{source}: unknown key 'oneshot.{key}'; allowed here: "
                              f"{', '.join(sorted(base))}")
        if key == "supernet":
            merged = proxy_mapping(out.get(key), source)
            merged.update(proxy_mapping(value, source))
            out[key] = merged
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_set(items: list[str] | Mapping[str, Any]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> nested dict; values are read as YAML (1.2 numbers: ``1e-3``
    is a float; see :func:`nas.core.files.load_yaml_text`), text that is not YAML as text.

    A mapping (the Python API's ``set=``) is taken as it is, its dotted keys nested:
    ``{"proxy.epochs": 2}`` is ``{"proxy": {"epochs": 2}}``."""
    out: dict[str, Any] = {}
    if isinstance(items, Mapping):
        for key, value in items.items():
            if not isinstance(key, str) or not key.strip():
                raise ConfigError(f"set: got the key {key!r}; use setting names such as "
                                  "'proxy.epochs'")
            node = out
            parts = key.strip().split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"set: {key!r} goes below a value set by another key; "
                                      "set it once")
            value = copy.deepcopy(value)
            if isinstance(node.get(parts[-1]), dict) and isinstance(value, Mapping):
                node[parts[-1]].update(value)
            else:
                node[parts[-1]] = value
        return out
    if isinstance(items, str):
        raise ConfigError(f"set: got {items!r}; give a list of KEY=VALUE items or a mapping")
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set proxy.epochs=2")
        key, raw = item.split("=", 1)
        try:
            value = load_yaml_text(raw) if raw else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def load_layers(defaults: str, preset: str | None, config_file: str | Mapping[str, Any] | None,
                overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Resolve the layers in order and return the merged plain config. ``config_file`` is a
    YAML file's path, or a mapping of settings (the Python API's ``config=``)."""
    base = read_yaml(config_path(defaults))
    for key in ("proxy", "oneshot"):  # a bundled config's name, read as a mapping
        if key in base:
            base[key] = proxy_mapping(base[key], str(config_path(defaults)))
    if isinstance(base.get("oneshot"), dict) and "supernet" in base["oneshot"]:
        base["oneshot"]["supernet"] = proxy_mapping(base["oneshot"]["supernet"],
                                                    str(config_path(defaults)))
    if preset:
        try:
            path = config_path(f"{defaults}-{preset}")
        except ConfigError:
            raise ConfigError(f"--preset {preset!r}: unknown preset; see the {defaults}-*.yaml "
                              "files in configs/") from None
        base = merge(base, read_yaml(path) or {}, str(path))
    if isinstance(config_file, Mapping):  # the Python API's config= mapping
        base = merge(base, config_file, "config")
    elif config_file:
        data = read_yaml(config_file)
        if not isinstance(data, Mapping):
            raise ConfigError(f"{config_file}: expected a mapping of settings")
        base = merge(base, data, str(config_file))
    return merge(base, overrides, "command line")


def dump(config: Mapping[str, Any]) -> str:
    return dump_yaml_text(dict(config), sort_keys=False, default_flow_style=False)
