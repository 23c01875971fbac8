"""The factorized hierarchical search space, defined in YAML.

One :class:`SearchSpace` object is the single source of truth: the controller's heads
(:meth:`decisions`), sampling, ``encode``/``decode``, validation, the space size and the
hash that identifies it are all derived from the resolved definition, walked in one fixed
order: the global decisions, then for every block ``op, kernel, se, skip, filters, layers``.

A definition (see ``configs/mnasnet-space.yaml``)::

    format_version: 1
    name: mnasnet
    fixed: {resolution: 224, stem: 32, head: 1280, dropout: 0.2, ...}   # every child's
    global: {activation: [relu, silu]}
    defaults:                        # per-block choices, unless a block overrides them
      op: [conv, ds, mbconv3, mbconv6]
      kernel: [3, 5]
      se: [0.0, 0.25]
      skip: [pool, identity, none]
      filter_multipliers: [0.75, 1.0, 1.25]   # of the block's skeleton width, rounded
      layer_offsets: [-1, 0, 1]               # added to the block's skeleton repeats
    blocks:
      - {out: 16, repeats: 1, stride: 1}
      - {out: 96, repeats: 3, stride: 1, extra_filters: [112]}

A block may override any default, give absolute ``filters`` or ``layers`` lists instead of
multipliers/offsets, or add ``extra_filters``. Multipliers are rounded with
:func:`nas.arch.rounding.round_filters` (``channel_divisor``, default 8); repeats below 1 are
raised to 1; duplicates that rounding makes are dropped, so a decision may have fewer
choices than listed. A choice listed twice is an error (and so is a key given twice).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from nas.arch.rounding import CHANNEL_DIVISOR, round_filters
from nas.arch.spec import ACTIVATIONS, SKIPS, ArchSpec, StageSpec, canonical_stage
from nas.core.checks import is_int, is_number
from nas.core.errors import SpaceError, SpecError
from nas.core.files import read_yaml

FORMAT_VERSION = 1
BLOCK_KEYS = ("op", "kernel", "se", "skip", "filters", "layers")
GLOBAL_KEYS = ("activation",)
_FIXED_KEYS = ("resolution", "stem", "stem_stride", "head", "dropout", "drop_path_rate",
               "bn_momentum", "bn_eps")
_DEFAULT_KEYS = ("op", "kernel", "se", "skip", "filter_multipliers", "layer_offsets")
_BLOCK_ONLY_KEYS = ("out", "repeats", "stride", "filters", "layers", "extra_filters")


@dataclass(frozen=True)
class Decision:
    """One categorical decision: the controller has one softmax head per decision."""

    name: str                 # e.g. "block3.kernel" or "activation"
    key: str                  # "op", "kernel", ..., or a global key
    block: int | None         # 0-based block index, None for global decisions
    choices: tuple[Any, ...]  # resolved values; ops are names such as "mbconv6"

    @property
    def size(self) -> int:
        return len(self.choices)


@dataclass(frozen=True)
class Block:
    """A skeleton block with its resolved choices."""

    out: int
    repeats: int
    stride: int
    op: tuple[str, ...]
    kernel: tuple[int, ...]
    se: tuple[float, ...]
    skip: tuple[str, ...]
    filters: tuple[int, ...]
    layers: tuple[int, ...]


_OP = re.compile(r"^(conv|ds|mbconv(\d+))$")


def op_choice(name: str) -> tuple[str, int]:
    """``"mbconv6"`` -> ``("mbconv", 6)``; ``"ds"`` -> ``("ds", 1)``."""
    m = _OP.match(name) if isinstance(name, str) else None
    if not m:
        raise SpaceError(f"unknown op choice {name!r}; use conv, ds or mbconv<E> (E >= 2)")
    if m.group(2) is not None:
        expand = int(m.group(2))
        if expand < 2:
            raise SpaceError(f"op choice {name!r}: an mbconv needs expand >= 2; use 'ds' for 1")
        return "mbconv", expand
    return m.group(1), 1


def op_name(stage: StageSpec) -> str:
    return f"mbconv{stage.expand}" if stage.op == "mbconv" else stage.op


def _dedup(values: Sequence[Any]) -> tuple[Any, ...]:
    seen: list[Any] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return tuple(seen)


class SearchSpace:
    """A resolved search space. Build it with :meth:`from_yaml` or :meth:`from_dict`."""

    def __init__(self, name: str, fixed: Mapping[str, Any], global_choices: Mapping[str, tuple],
                 blocks: Sequence[Block], definition: Mapping[str, Any]):
        self.name = name
        self.fixed = dict(fixed)
        self.global_choices = {k: tuple(v) for k, v in global_choices.items()}
        self.blocks = tuple(blocks)
        self._definition = json.loads(json.dumps(definition))
        decisions = [Decision(k, k, None, self.global_choices[k]) for k in GLOBAL_KEYS]
        for i, b in enumerate(self.blocks):
            for key in BLOCK_KEYS:
                decisions.append(Decision(f"block{i + 1}.{key}", key, i, getattr(b, key)))
        self._decisions = tuple(decisions)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> "SearchSpace":
        return cls.from_dict(read_yaml(path, SpaceError), source=str(path))

    @classmethod
    def from_dict(cls, d: Any, source: str | None = None) -> "SearchSpace":
        return _parse(d, source)

    def to_dict(self) -> dict[str, Any]:
        """The definition this space was made from (``from_dict(to_dict())`` is equal)."""
        return json.loads(json.dumps(self._definition))

    def resolved(self) -> dict[str, Any]:
        """Every resolved choice, in decision order (what :meth:`hash` covers)."""
        return {"name": self.name, "fixed": self.fixed,
                "decisions": [{"name": d.name, "choices": list(d.choices)} for d in self._decisions],
                "skeleton": [{"out": b.out, "repeats": b.repeats, "stride": b.stride}
                             for b in self.blocks]}

    def hash(self) -> str:
        """A short stable hash of the resolved space, recorded in every result."""
        blob = json.dumps(self.resolved(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.resolved() == other.resolved()

    def __hash__(self) -> int:
        return hash(self.hash())

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, blocks={len(self.blocks)}, size={self.size():.3g})"

    # ------------------------------------------------------------------ derived views

    def decisions(self) -> tuple[Decision, ...]:
        return self._decisions

    def sizes(self) -> tuple[int, ...]:
        return tuple(d.size for d in self._decisions)

    def size(self) -> int:
        """Number of distinct token sequences (exact integer)."""
        return math.prod(self.sizes())

    def distinct_size(self) -> int:
        """Number of distinct networks (exact integer): token sequences that the builder builds
        into the same network (:func:`nas.arch.spec.canonical`) count once.

        Whether a skip choice matters depends on the block's input channels, which the
        previous block chose, so the count runs block by block over the possible input widths.
        """
        prefixes = {int(self.fixed["stem"]): 1}  # input channels -> distinct networks so far
        for b in self.blocks:
            grown: dict[int, int] = {}
            for c_in, n in prefixes.items():
                stages = {canonical_stage(StageSpec(op=op, kernel=k, stride=b.stride, out=f,
                                                    repeats=r, expand=e, se=se, skip=skip), c_in)
                          for op, e in map(op_choice, b.op) for k in b.kernel for se in b.se
                          for skip in b.skip for f in b.filters for r in b.layers}
                for st in stages:
                    grown[st.out] = grown.get(st.out, 0) + n
            prefixes = grown
        return sum(prefixes.values()) * math.prod(len(v) for v in self.global_choices.values())

    # ------------------------------------------------------------------ tokens <-> specs

    def sample_tokens(self, rng: np.random.Generator) -> tuple[int, ...]:
        return tuple(int(rng.integers(n)) for n in self.sizes())

    def sample(self, rng: np.random.Generator) -> ArchSpec:
        """A uniformly random child (``rng`` is a ``numpy.random.Generator``)."""
        return self.decode(self.sample_tokens(rng))

    def check_tokens(self, tokens: Sequence[int]) -> tuple[int, ...]:
        if len(tokens) != len(self._decisions):
            raise SpaceError(f"{len(tokens)} tokens given; space {self.name!r} has "
                             f"{len(self._decisions)} decisions")
        out = []
        for t, d in zip(tokens, self._decisions):
            if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < d.size:
                raise SpaceError(f"token {t!r} for {d.name} is out of range 0..{d.size - 1}")
            out.append(int(t))
        return tuple(out)

    def decode(self, tokens: Sequence[int]) -> ArchSpec:
        tokens = self.check_tokens(tokens)
        values = [d.choices[t] for d, t in zip(self._decisions, tokens)]
        g = dict(zip(GLOBAL_KEYS, values[:len(GLOBAL_KEYS)]))
        stages, pos = [], len(GLOBAL_KEYS)
        for b in self.blocks:
            v = dict(zip(BLOCK_KEYS, values[pos:pos + len(BLOCK_KEYS)]))
            pos += len(BLOCK_KEYS)
            op, expand = op_choice(v["op"])
            stages.append(StageSpec(op=op, kernel=v["kernel"], stride=b.stride, out=v["filters"],
                                    repeats=v["layers"], expand=expand, se=v["se"], skip=v["skip"]))
        return ArchSpec(stages=tuple(stages), activation=g["activation"], **self.fixed)

    def encode(self, spec: ArchSpec) -> tuple[int, ...]:
        """Tokens of ``spec``; raises :class:`SpaceError` naming the first value not in the space.

        Only the architecture is compared (stages, stem, head, activation); name, resolution and
        regularisation settings of ``spec`` are not part of the space's decisions.
        """
        for key in ("stem", "stem_stride", "head"):
            if getattr(spec, key) != self.fixed[key]:
                raise SpaceError(f"spec not in space {self.name!r}: {key} is {getattr(spec, key)}, "
                                 f"the space fixes it to {self.fixed[key]}")
        if len(spec.stages) != len(self.blocks):
            raise SpaceError(f"spec not in space {self.name!r}: it has {len(spec.stages)} stages, "
                             f"the space has {len(self.blocks)} blocks")
        values: list[Any] = [spec.activation]
        for i, (stage, b) in enumerate(zip(spec.stages, self.blocks)):
            if stage.stride != b.stride:
                raise SpaceError(f"spec not in space {self.name!r}: stage {i + 1} stride is "
                                 f"{stage.stride}, the skeleton fixes {b.stride}")
            values += [op_name(stage), stage.kernel, float(stage.se), stage.skip, stage.out,
                       stage.repeats]
        tokens = []
        for d, v in zip(self._decisions, values):
            matches = [j for j, c in enumerate(d.choices) if c == v]
            if not matches:
                raise SpaceError(f"spec not in space {self.name!r}: {d.name} = {v!r} is not one "
                                 f"of {list(d.choices)}")
            tokens.append(matches[0])
        return tuple(tokens)

    def contains(self, spec: ArchSpec) -> bool:
        try:
            self.encode(spec)
        except SpaceError:
            return False
        return True

    def describe(self) -> str:
        """A human-readable table of every decision and its resolved choices."""
        lines = [f"search space {self.name!r} ({len(self._decisions)} decisions, "
                 f"{self.size():.3e} token sequences, {self.distinct_size():.3e} distinct "
                 f"networks, hash {self.hash()})"]
        for d in self._decisions:
            lines.append(f"  {d.name:<16} {', '.join(str(c) for c in d.choices)}")
        return "\n".join(lines)


# ---------------------------------------------------------------------- parsing


def _err(source: str | None, key: str, msg: str) -> SpaceError:
    return SpaceError(f"{source + ': ' if source else ''}{key}: {msg}")


def _list(source: str | None, key: str, v: Any) -> list[Any]:
    if not isinstance(v, list) or not v:
        raise _err(source, key, f"expected a non-empty list, got {v!r}")
    for i, x in enumerate(v):
        if x in v[:i]:  # a repeated choice: a typo, and a decision weighted towards it
            raise _err(source, key, f"{x!r} is listed twice in {v!r}; list each choice once")
    return v


def _ints(source: str | None, key: str, v: Any, minimum: int = 1) -> list[int]:
    out = _list(source, key, v)
    for x in out:
        if not is_int(x) or x < minimum:
            raise _err(source, key, f"{x!r} is not an integer >= {minimum}")
    return out


def _nums(source: str | None, key: str, v: Any, lo: float, hi: float) -> list[float]:
    out = _list(source, key, v)
    for x in out:
        if not is_number(x) or not lo <= x <= hi:
            hint = " (YAML reads 1e-1 as a string: write 0.1)" if isinstance(x, str) else ""
            raise _err(source, key, f"{x!r} is not a number in [{lo}, {hi}]{hint}")
    return [float(x) for x in out]


def _check_choice_list(source: str | None, key: str, name: str, v: Any) -> tuple[Any, ...]:
    if name == "op":
        ops = _list(source, key, v)
        for o in ops:
            try:
                op_choice(o)
            except SpaceError as e:
                raise _err(source, key, str(e)) from None
        return _dedup(ops)
    if name == "kernel":
        ks = _ints(source, key, v)
        for k in ks:
            if k % 2 == 0:
                raise _err(source, key, f"kernel {k} is even; use odd kernels such as 3, 5, 7")
        return _dedup(ks)
    if name == "se":
        return _dedup(_nums(source, key, v, 0.0, 1.0))
    if name == "skip":
        skips = _list(source, key, v)
        for s in skips:
            if s not in SKIPS:
                raise _err(source, key, f"unknown skip {s!r}; use one of {', '.join(SKIPS)}")
        return _dedup(skips)
    if name == "activation":
        acts = _list(source, key, v)
        for a in acts:
            if a not in ACTIVATIONS:
                raise _err(source, key, f"unknown activation {a!r}; use one of "
                           f"{', '.join(ACTIVATIONS)}")
        return _dedup(acts)
    raise AssertionError(name)


def _unknown(source: str | None, at: str, d: Mapping[str, Any], allowed: Sequence[str]) -> None:
    extra = sorted(set(d) - set(allowed))
    if extra:
        raise _err(source, f"{at}{extra[0]}", f"unknown key; allowed: {', '.join(allowed)}")


def _parse(d: Any, source: str | None) -> SearchSpace:
    if not isinstance(d, Mapping):
        raise _err(source, "top level", "expected a mapping")
    top = ("format_version", "name", "channel_divisor", "fixed", "global", "defaults", "blocks")
    _unknown(source, "", d, top)
    version = d.get("format_version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version != FORMAT_VERSION:
        raise _err(source, "format_version", f"got {d.get('format_version')!r}; this version "
                   f"reads {FORMAT_VERSION}")
    name = d.get("name", "space")
    if not isinstance(name, str):
        raise _err(source, "name", "expected a string")
    divisor = d.get("channel_divisor", CHANNEL_DIVISOR)
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
        raise _err(source, "channel_divisor", f"got {divisor!r}; use a positive integer such as 8")

    # Fixed settings: validated by building a spec from them below.
    fixed_raw = d.get("fixed", {}) or {}
    if not isinstance(fixed_raw, Mapping):
        raise _err(source, "fixed", "expected a mapping")
    _unknown(source, "fixed.", fixed_raw, _FIXED_KEYS)
    defaults_spec = ArchSpec(stages=(StageSpec("ds", 3, 1, 16, 1),))
    fixed = {k: fixed_raw.get(k, getattr(defaults_spec, k)) for k in _FIXED_KEYS}

    g_raw = d.get("global", {}) or {}
    if not isinstance(g_raw, Mapping):
        raise _err(source, "global", "expected a mapping")
    _unknown(source, "global.", g_raw, GLOBAL_KEYS)
    global_choices = {"activation": _check_choice_list(
        source, "global.activation", "activation", g_raw.get("activation", ["silu"]))}

    defaults = d.get("defaults", {}) or {}
    if not isinstance(defaults, Mapping):
        raise _err(source, "defaults", "expected a mapping")
    _unknown(source, "defaults.", defaults, _DEFAULT_KEYS)

    blocks_raw = d.get("blocks")
    if not isinstance(blocks_raw, list) or not blocks_raw:
        raise _err(source, "blocks", "expected a non-empty list of skeleton blocks "
                   "({out, repeats, stride, ...})")
    blocks = []
    for i, braw in enumerate(blocks_raw):
        at = f"blocks[{i}]"
        if not isinstance(braw, Mapping):
            raise _err(source, at, "expected a mapping with out, repeats, stride")
        _unknown(source, f"{at}.", braw, _BLOCK_ONLY_KEYS + _DEFAULT_KEYS)
        for req in ("out", "repeats", "stride"):
            if req not in braw:
                raise _err(source, f"{at}.{req}", "missing required key")
        out = _ints(source, f"{at}.out", [braw["out"]])[0]
        repeats = _ints(source, f"{at}.repeats", [braw["repeats"]])[0]
        stride = braw["stride"]
        if stride not in (1, 2) or isinstance(stride, bool):
            raise _err(source, f"{at}.stride", f"got {stride!r}; use 1 or 2")

        def pick(key: str, default: Any) -> tuple[str, Any]:
            if key in braw:
                return f"{at}.{key}", braw[key]
            if key in defaults:
                return f"defaults.{key}", defaults[key]
            return f"{at}.{key}", default

        choices = {}
        for key, default in (("op", ["mbconv6"]), ("kernel", [3]), ("se", [0.0]),
                             ("skip", ["identity"])):
            where, v = pick(key, default)
            choices[key] = _check_choice_list(source, where, key, v)
        if "filters" in braw:
            filters = _ints(source, f"{at}.filters", braw["filters"])
        else:
            where, mults = pick("filter_multipliers", [1.0])
            mults = _nums(source, where, mults, 1e-3, 1e3)
            filters = [round_filters(out, m, divisor) for m in mults]
        if "extra_filters" in braw:
            filters = sorted(set(filters) | set(_ints(source, f"{at}.extra_filters",
                                                      braw["extra_filters"])))
        if "layers" in braw:
            layers = _ints(source, f"{at}.layers", braw["layers"])
        else:
            where, offsets = pick("layer_offsets", [0])
            offsets = _list(source, where, offsets)
            for o in offsets:
                if isinstance(o, bool) or not isinstance(o, int):
                    raise _err(source, where, f"{o!r} is not an integer offset")
            layers = [max(1, repeats + o) for o in offsets]
        blocks.append(Block(out=out, repeats=repeats, stride=stride, filters=_dedup(filters),
                            layers=_dedup(layers), **choices))

    # Every fixed value must make a valid spec: decode one child to check them now.
    try:
        first = blocks[0]
        op, expand = op_choice(first.op[0])
        ArchSpec(stages=(StageSpec(op, first.kernel[0], first.stride, first.filters[0],
                                   first.layers[0], expand=expand),),
                 activation=global_choices["activation"][0], **fixed)
    except SpecError as e:
        raise _err(source, "fixed", str(e).replace("stage: ", "")) from None
    definition = {k: d[k] for k in top if k in d}
    return SearchSpace(name, fixed, global_choices, blocks, definition)
