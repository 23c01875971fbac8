"""The architecture spec: a typed, immutable, fully resolved description of a network.

A spec is data. The builder (:mod:`nas.arch.builder`) interprets it and the cost model
(:mod:`nas.arch.cost`) counts it; neither decides anything a spec does not say. All channel
counts and repeats in a spec are final: scaling and rounding happen once, in
:mod:`nas.arch.rounding`, and produce a new spec.

Ops (each stage repeats one op ``repeats`` times; only the first layer has the stride and
the channel change):

``conv``    regular ``k x k`` convolution, batch norm, activation, optional squeeze-excite.
``ds``      depthwise-separable: depthwise ``k x k``, BN, activation, optional SE, pointwise
            ``1 x 1``, BN (no activation). This is also what an MBConv with expansion 1 is.
``mbconv``  inverted residual: ``1 x 1`` expansion by ``expand`` (>= 2), BN, activation,
            depthwise ``k x k``, BN, activation, optional SE, ``1 x 1`` projection, BN.

Skips: ``identity`` adds the input where the shapes match (stride 1 and equal channels);
``pool`` adds a shortcut on every layer, average-pooled where the stride is 2 and projected
with a ``1 x 1`` conv + BN where the channels differ; ``none`` has no shortcut.

Squeeze-excite squeezes to ``max(1, int(layer_input_channels * se))`` channels (the layer's
input, not its expanded width), as in the reference implementation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

from nas.core.checks import is_int, is_number
from nas.core.errors import SpecError, where

FORMAT_VERSION = 1

OPS = ("conv", "ds", "mbconv")
SKIPS = ("identity", "pool", "none")
ACTIVATIONS = ("relu", "relu6", "silu")
MIN_RESOLUTION = 8  # pixels: the smallest input a spec (and so any training run) may have
MAX_STAGES = 100  # the papers' networks have 7; a spec file's list is cut off at this many


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``repeats`` identical layers of one op."""

    op: str
    kernel: int
    stride: int
    out: int
    repeats: int
    expand: int = 1
    se: float = 0.0
    skip: str = "identity"

    def __post_init__(self) -> None:
        _validate_stage(self, None, "stage")

    def replace(self, **changes: Any) -> "StageSpec":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ArchSpec:
    """A whole network: stem, stages, head and the settings that shape training."""

    stages: tuple[StageSpec, ...]
    stem: int = 32
    head: int = 1280
    activation: str = "silu"
    resolution: int = 224
    dropout: float = 0.2
    drop_path_rate: float = 0.2
    bn_momentum: float = 0.01
    bn_eps: float = 1e-3
    stem_stride: int = 2
    name: str = ""
    # Provenance (how the spec was made, what it scored). Not part of its identity.
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.stages, tuple):
            object.__setattr__(self, "stages", tuple(self.stages))
        _validate_arch(self, None)

    def replace(self, **changes: Any) -> "ArchSpec":
        return dataclasses.replace(self, **changes)

    def with_meta(self, **entries: Any) -> "ArchSpec":
        meta = dict(self.meta)
        meta.update(entries)
        return dataclasses.replace(self, meta=meta)

    def same_architecture(self, other: "ArchSpec") -> bool:
        """True when both describe the same layers (ignores name, resolution, regularisation)."""
        return (self.stages, self.stem, self.stem_stride, self.head, self.activation) == (
            other.stages, other.stem, other.stem_stride, other.head, other.activation)

    @property
    def num_layers(self) -> int:
        return sum(s.repeats for s in self.stages)

    def stage_inputs(self) -> tuple[int, ...]:
        """Input channels of each stage's first layer."""
        ins, c = [], self.stem
        for s in self.stages:
            ins.append(c)
            c = s.out
        return tuple(ins)


# --------------------------------------------------------------------------- identity


def canonical_stage(stage: StageSpec, in_channels: int) -> StageSpec:
    """The stage in its one canonical form among those the builder builds into the same layers.

    A skip choice only matters where it changes a layer: ``identity`` adds a shortcut only
    where the shapes match (stride 1, equal channels), and ``pool`` on a layer whose shapes
    match *is* the identity shortcut. So ``pool`` becomes ``identity`` when the stage's first
    layer keeps its shape (every later layer always does), and ``identity`` becomes ``none``
    on a single layer that changes its shape.
    """
    keeps_shape = stage.stride == 1 and in_channels == stage.out
    if stage.skip == "pool" and keeps_shape:
        return stage.replace(skip="identity")
    if stage.skip == "identity" and not keeps_shape and stage.repeats == 1:
        return stage.replace(skip="none")
    return stage


def canonical(spec: ArchSpec) -> ArchSpec:
    """``spec`` with every stage canonical, no name and no provenance: two specs build the
    same network with the same training settings exactly when their canonical forms are
    equal. Use it (or :func:`identity`) to deduplicate, cache and count networks."""
    stages = tuple(canonical_stage(st, c) for st, c in zip(spec.stages, spec.stage_inputs()))
    return dataclasses.replace(spec, stages=stages, name="", meta={})


def identity(spec: ArchSpec) -> str:
    """A short stable hash of the canonical spec (the network and its training settings)."""
    import hashlib
    import json
    d = spec_to_dict(canonical(spec))
    blob = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------- validation

_STAGE_KEYS = tuple(f.name for f in dataclasses.fields(StageSpec))
_ARCH_KEYS = tuple(f.name for f in dataclasses.fields(ArchSpec))


def _fail(source: str | None, key: str, msg: str) -> None:
    raise SpecError(f"{where(source, key)}: {msg}")


def _validate_stage(s: StageSpec, source: str | None, at: str) -> None:
    if s.op not in OPS:
        _fail(source, f"{at}.op", f"unknown op {s.op!r}; use one of {', '.join(OPS)}")
    if not is_int(s.kernel) or s.kernel < 1 or s.kernel % 2 == 0:
        _fail(source, f"{at}.kernel", f"got {s.kernel!r}; use an odd integer >= 1 (e.g. 3 or 5)")
    if s.stride not in (1, 2) or not is_int(s.stride):
        _fail(source, f"{at}.stride", f"got {s.stride!r}; use 1 or 2")
    if not is_int(s.out) or s.out < 1:
        _fail(source, f"{at}.out", f"got {s.out!r}; use a positive integer channel count")
    if not is_int(s.repeats) or s.repeats < 1:
        _fail(source, f"{at}.repeats", f"got {s.repeats!r}; use an integer >= 1")
    if not is_int(s.expand) or s.expand < 1:
        _fail(source, f"{at}.expand", f"got {s.expand!r}; use an integer >= 1")
    if s.op == "mbconv" and s.expand < 2:
        _fail(source, f"{at}.expand", "an mbconv needs expand >= 2; an MBConv with expand 1 "
              "is op 'ds' (depthwise-separable)")
    if s.op != "mbconv" and s.expand != 1:
        _fail(source, f"{at}.expand", f"op {s.op!r} takes no expansion; set expand: 1 "
              "or use op 'mbconv'")
    if not is_number(s.se) or not 0.0 <= float(s.se) <= 1.0:
        _fail(source, f"{at}.se", f"got {s.se!r}; use a squeeze-excite ratio in [0, 1] (0 = none)")
    if s.skip not in SKIPS:
        _fail(source, f"{at}.skip", f"unknown skip {s.skip!r}; use one of {', '.join(SKIPS)}")


def _validate_arch(a: ArchSpec, source: str | None) -> None:
    if not a.stages:
        _fail(source, "stages", "a spec needs at least one stage")
    if len(a.stages) > MAX_STAGES:
        _fail(source, "stages", f"{len(a.stages):,} stages; a spec has at most {MAX_STAGES} "
              "(repeats makes a stage deeper)")
    for i, s in enumerate(a.stages):
        if not isinstance(s, StageSpec):  # direct construction with plain dicts
            _fail(source, f"stages[{i}]", f"expected a StageSpec, got {type(s).__name__}")
    if not is_int(a.stem) or a.stem < 1:
        _fail(source, "stem", f"got {a.stem!r}; use a positive integer channel count")
    if a.stem_stride not in (1, 2) or not is_int(a.stem_stride):
        _fail(source, "stem_stride", f"got {a.stem_stride!r}; use 1 or 2")
    if not is_int(a.head) or a.head < 0:
        _fail(source, "head", f"got {a.head!r}; use a channel count >= 1, or 0 for no head conv")
    if a.activation not in ACTIVATIONS:
        _fail(source, "activation", f"unknown activation {a.activation!r}; use one of "
              f"{', '.join(ACTIVATIONS)}")
    if not is_int(a.resolution) or a.resolution < MIN_RESOLUTION:
        _fail(source, "resolution",
              f"got {a.resolution!r}; use an integer >= {MIN_RESOLUTION} (pixels)")
    for key in ("dropout", "drop_path_rate"):
        v = getattr(a, key)
        if not is_number(v) or not 0.0 <= float(v) < 1.0:
            _fail(source, key, f"got {v!r}; use a rate in [0, 1)")
    if not is_number(a.bn_momentum) or not 0.0 < float(a.bn_momentum) <= 1.0:
        _fail(source, "bn_momentum", f"got {a.bn_momentum!r}; use a PyTorch batch-norm momentum "
              "in (0, 1] (TF decay 0.99 is momentum 0.01)")
    if not is_number(a.bn_eps) or not float(a.bn_eps) > 0.0:
        _fail(source, "bn_eps", f"got {a.bn_eps!r}; use a small positive number such as 0.001")
    if not isinstance(a.name, str):
        _fail(source, "name", f"got {a.name!r}; use a string")
    if not isinstance(a.meta, Mapping):
        _fail(source, "meta", "use a mapping")


# --------------------------------------------------------------------------- dict form


def stage_to_dict(s: StageSpec) -> dict[str, Any]:
    return {"op": s.op, "kernel": s.kernel, "stride": s.stride, "expand": s.expand,
            "se": float(s.se), "skip": s.skip, "out": s.out, "repeats": s.repeats}


def spec_to_dict(spec: ArchSpec) -> dict[str, Any]:
    """The plain-data form written to YAML/JSON (format_version first)."""
    d: dict[str, Any] = {"format_version": FORMAT_VERSION}
    if spec.name:
        d["name"] = spec.name
    d.update({
        "resolution": spec.resolution,
        "stem": spec.stem,
        "stem_stride": spec.stem_stride,
        "head": spec.head,
        "activation": spec.activation,
        "dropout": float(spec.dropout),
        "drop_path_rate": float(spec.drop_path_rate),
        "bn_momentum": float(spec.bn_momentum),
        "bn_eps": float(spec.bn_eps),
        "stages": [stage_to_dict(s) for s in spec.stages],
    })
    if spec.meta:
        d["meta"] = _plain(spec.meta)
    return d


def _plain(v: Any) -> Any:
    """Deep-copy into YAML-safe plain types (dicts, lists, str, int, float, bool, None)."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, float):
        return float(v)
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return str(v)


def _check_type(source: str | None, key: str, v: Any, kind: str) -> None:
    ok = {"int": is_int(v), "num": is_number(v), "str": isinstance(v, str)}[kind]
    if not ok:
        what = {"int": "an integer", "num": "a number", "str": "a string"}[kind]
        hint = " (YAML reads 3e8 as a string: write 3.0e+8)" if isinstance(v, str) and kind != "str" else ""
        _fail(source, key, f"got {v!r}; expected {what}{hint}")


def _defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


_STAGE_DEFAULTS = _defaults(StageSpec)
_ARCH_DEFAULTS = _defaults(ArchSpec)

_STAGE_TYPES = {"op": "str", "kernel": "int", "stride": "int", "expand": "int", "se": "num",
                "skip": "str", "out": "int", "repeats": "int"}
_ARCH_TYPES = {"name": "str", "resolution": "int", "stem": "int", "stem_stride": "int",
               "head": "int", "activation": "str", "dropout": "num", "drop_path_rate": "num",
               "bn_momentum": "num", "bn_eps": "num"}


def stage_from_dict(d: Any, source: str | None = None, at: str = "stage") -> StageSpec:
    if not isinstance(d, Mapping):
        _fail(source, at, f"expected a mapping of {', '.join(_STAGE_KEYS)}, got {type(d).__name__}")
    unknown = sorted(set(d) - set(_STAGE_KEYS))
    if unknown:
        _fail(source, f"{at}.{unknown[0]}", f"unknown key; allowed keys: {', '.join(_STAGE_KEYS)}")
    for req in ("op", "kernel", "stride", "out", "repeats"):
        if req not in d:
            _fail(source, f"{at}.{req}", "missing required key")
    for k, v in d.items():
        _check_type(source, f"{at}.{k}", v, _STAGE_TYPES[k])
    kwargs = dict(d)
    if "se" in kwargs:
        kwargs["se"] = float(kwargs["se"])
    _validate_stage(SimpleNamespace(**{**_STAGE_DEFAULTS, **kwargs}), source, at)
    return StageSpec(**kwargs)


def spec_from_dict(d: Any, source: str | None = None) -> ArchSpec:
    """Build a spec from its plain-data form, strictly: unknown keys and bad values raise."""
    if d is None:
        _fail(source, "top level", "the spec is empty; a spec is a mapping with stages (see "
              "configs/efficientnet-b0.yaml)")
    if not isinstance(d, Mapping):
        _fail(source, "top level", f"expected a mapping, got {type(d).__name__}")
    allowed = set(_ARCH_KEYS) | {"format_version"}
    unknown = sorted(set(d) - allowed)
    if unknown:
        _fail(source, unknown[0], f"unknown key; allowed keys: {', '.join(sorted(allowed))}")
    version = d.get("format_version", FORMAT_VERSION)
    if not is_int(version) or version != FORMAT_VERSION:  # True == 1 and 1.0 == 1 in Python
        _fail(source, "format_version", f"got {version!r}; this version reads format_version "
              f"{FORMAT_VERSION}")
    if "stages" not in d:
        _fail(source, "stages", "missing required key (a list of stages)")
    stages_raw = d["stages"]
    if not isinstance(stages_raw, Sequence) or isinstance(stages_raw, str):
        _fail(source, "stages", "expected a list of stage mappings")
    if len(stages_raw) > MAX_STAGES:
        _fail(source, "stages", f"{len(stages_raw):,} stages; a spec has at most {MAX_STAGES} "
              "(repeats makes a stage deeper)")
    stages = tuple(stage_from_dict(s, source, f"stages[{i}]") for i, s in enumerate(stages_raw))
    kwargs: dict[str, Any] = {}
    for k, v in d.items():
        if k in ("stages", "format_version"):
            continue
        if k == "meta":
            if not isinstance(v, Mapping):
                _fail(source, "meta", "expected a mapping")
            kwargs[k] = dict(v)
            continue
        _check_type(source, k, v, _ARCH_TYPES[k])
        kwargs[k] = float(v) if _ARCH_TYPES[k] == "num" else v
    kwargs["stages"] = stages
    _validate_arch(SimpleNamespace(**{**_ARCH_DEFAULTS, **kwargs}), source)
    return ArchSpec(**kwargs)
