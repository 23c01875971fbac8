"""Strict codecs for two kinds of block strings: the TF reference's and this project's own
("ext", effnas block strings).

TF reference (``efficientnet_builder.py``): ``r2_k3_s22_e6_i16_o24_se0.25`` with an optional
``noskip`` flag. An MBConv with ``e1`` is this project's op ``ds``. TF strings cannot express
a regular ``conv`` op or a ``pool`` skip; encoding such a stage is an error.

ext (effnas block strings): ``ir_r2_k3_s2_e6_c24_se0.25``, in timm's notation but with this
project's meaning, so that every spec has one: block types ``ds`` (depthwise-separable),
``ir`` (inverted residual, expand >= 2) and ``cn`` (conv-BN-act); skip flags ``noskip``
(none) and ``pskip`` (pool); no flag is ``identity`` on every type (``cn`` included); ``se``
on every type, squeezing ``max(1, int(layer input * se))`` channels. timm's own decoder
reads some of these differently (it ignores ``pskip`` and ``se`` on ``cn``, gives a ``cn``
without ``skip`` no shortcut, rounds ``ir`` widths to multiples of 8): the exact timm form
is :func:`nas.arch.timm_export.to_timm`, which refuses what timm cannot express.

Both decoders reject unknown block types, unknown or repeated keys and missing keys, and
``decode(encode(stages)) == stages`` for every stage either format can express.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from nas.arch.spec import ArchSpec, StageSpec
from nas.core.errors import SpecError

# ASCII only: str.isdigit() and int() also accept other scripts' digits ("３", "٣"), and "3³"
# passes isdigit() but makes int() raise a bare ValueError.
_OPTION = re.compile(r"^([a-z]+)(\d.*)$", re.ASCII)
_RATIO = re.compile(r"^\d+(\.\d*)?([eE][-+]?\d+)?$", re.ASCII)


def _fmt_ratio(x: float) -> str:
    return repr(float(x))


def _split(block: str, flags: Sequence[str], keys: Sequence[str],
           body: str | None = None) -> tuple[dict[str, str], set[str]]:
    """Split ``body`` (default: the whole ``block``) into key/value options and flags."""
    if not isinstance(block, str) or not block:
        raise SpecError(f"block string {block!r}: expected a non-empty string")
    options: dict[str, str] = {}
    found_flags: set[str] = set()
    for part in (block if body is None else body).split("_"):
        if part in flags:
            if part in found_flags:
                raise SpecError(f"block string {block!r}: flag {part!r} given twice")
            found_flags.add(part)
            continue
        m = _OPTION.match(part)
        if not m or m.group(1) not in keys:
            allowed = ", ".join(list(keys) + list(flags))
            raise SpecError(f"block string {block!r}: unknown part {part!r}; allowed: {allowed}")
        key, value = m.groups()
        if key in options:
            raise SpecError(f"block string {block!r}: key {key!r} given twice")
        options[key] = value
    return options, found_flags


def _int(block: str, key: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise SpecError(f"block string {block!r}: {key}{value} is not a whole number")
    return int(value)


def _ratio(block: str, value: str) -> float:
    if not _RATIO.match(value):  # float() would also take "٠.٢٥", "0.25\n" and "1_0"
        raise SpecError(f"block string {block!r}: se{value} is not a number")
    return float(value)


def _require(block: str, options: dict[str, str], keys: Iterable[str]) -> None:
    for k in keys:
        if k not in options:
            raise SpecError(f"block string {block!r}: missing key {k!r}")


def _make_stage(block: str, **kwargs: object) -> StageSpec:
    try:
        return StageSpec(**kwargs)  # type: ignore[arg-type]
    except SpecError as e:
        raise SpecError(f"block string {block!r}: {e}") from None


# --------------------------------------------------------------------------- TF reference


def decode_tf(block: str) -> tuple[StageSpec, int]:
    """Decode one TF block string; returns the stage and its declared input channels."""
    options, flags = _split(block, ("noskip",), ("r", "k", "s", "e", "i", "o", "se"))
    _require(block, options, ("r", "k", "s", "e", "i", "o"))
    s = options["s"]
    if len(s) != 2 or s[0] != s[1] or not (s.isascii() and s.isdigit()):
        raise SpecError(f"block string {block!r}: stride s{s} must be two equal digits (s11, s22)")
    expand = _int(block, "e", options["e"])
    stage = _make_stage(
        block, op="ds" if expand == 1 else "mbconv", kernel=_int(block, "k", options["k"]),
        stride=int(s[0]), out=_int(block, "o", options["o"]), repeats=_int(block, "r", options["r"]),
        expand=expand, se=_ratio(block, options["se"]) if "se" in options else 0.0,
        skip="none" if "noskip" in flags else "identity")
    return stage, _int(block, "i", options["i"])


def encode_tf(stage: StageSpec, in_channels: int) -> str:
    if stage.op == "conv":
        raise SpecError("TF block strings cannot express op 'conv'; use the ext form (cn_...)")
    if stage.skip == "pool":
        raise SpecError("TF block strings cannot express skip 'pool'; use the ext form (pskip)")
    parts = [f"r{stage.repeats}", f"k{stage.kernel}", f"s{stage.stride}{stage.stride}",
             f"e{stage.expand}", f"i{in_channels}", f"o{stage.out}"]
    if stage.se > 0:
        parts.append(f"se{_fmt_ratio(stage.se)}")
    if stage.skip == "none":
        parts.append("noskip")
    return "_".join(parts)


def decode_tf_stages(blocks: Sequence[str], stem: int | None = None) -> tuple[tuple[StageSpec, ...], int]:
    """Decode a TF block list; checks that each block's ``i`` is the previous block's ``o``.

    Returns the stages and the stem width (the first block's ``i``).
    """
    if isinstance(blocks, str):
        blocks = blocks.split()
    if not blocks:
        raise SpecError("block strings: the list is empty; give at least one block")
    stages, prev = [], stem
    for b in blocks:
        stage, c_in = decode_tf(b)
        if prev is not None and c_in != prev:
            raise SpecError(f"block string {b!r}: input channels i{c_in} do not match the previous "
                            f"output ({prev}); fix the i or o values")
        stages.append(stage)
        prev = stage.out
    first_in = decode_tf(blocks[0])[1]
    return tuple(stages), first_in


def encode_tf_stages(spec: ArchSpec) -> list[str]:
    return [encode_tf(s, c_in) for s, c_in in zip(spec.stages, spec.stage_inputs())]


# --------------------------------------------------------------------------- ext

_EXT_TYPES = {"ds": "ds", "ir": "mbconv", "cn": "conv"}
_EXT_PREFIX = {v: k for k, v in _EXT_TYPES.items()}


def decode_ext(block: str) -> StageSpec:
    """Decode one effnas block string (``ir_r2_k3_s2_e6_c24_se0.25``, ``cn_r2_k3_s2_c24_pskip``)."""
    if not isinstance(block, str) or "_" not in block:
        raise SpecError(f"block string {block!r}: expected '<type>_r.._k.._s.._c..'")
    kind, rest = block.split("_", 1)
    if kind not in _EXT_TYPES:
        raise SpecError(f"block string {block!r}: unknown block type {kind!r}; use one of "
                        f"{', '.join(_EXT_TYPES)}")
    options, flags = _split(block, ("noskip", "pskip"), ("r", "k", "s", "e", "c", "se"), rest)
    _require(block, options, ("r", "k", "s", "c"))
    if flags == {"noskip", "pskip"}:
        raise SpecError(f"block string {block!r}: noskip and pskip exclude each other")
    op = _EXT_TYPES[kind]
    expand = _int(block, "e", options["e"]) if "e" in options else (6 if op == "mbconv" else 1)
    if op == "mbconv" and "e" not in options:
        raise SpecError(f"block string {block!r}: an 'ir' block needs an expansion (e.g. e6)")
    if op == "mbconv" and expand == 1:
        raise SpecError(f"block string {block!r}: 'ir' with e1 is not supported; write it as a "
                        "'ds' block")
    skip = "none" if "noskip" in flags else "pool" if "pskip" in flags else "identity"
    return _make_stage(
        block, op=op, kernel=_int(block, "k", options["k"]), stride=_int(block, "s", options["s"]),
        out=_int(block, "c", options["c"]), repeats=_int(block, "r", options["r"]), expand=expand,
        se=_ratio(block, options["se"]) if "se" in options else 0.0, skip=skip)


def encode_ext(stage: StageSpec) -> str:
    """One stage as an effnas block string (see the module docstring for what it means)."""
    parts = [_EXT_PREFIX[stage.op], f"r{stage.repeats}", f"k{stage.kernel}", f"s{stage.stride}"]
    if stage.op == "mbconv":
        parts.append(f"e{stage.expand}")
    parts.append(f"c{stage.out}")
    if stage.se > 0:
        parts.append(f"se{_fmt_ratio(stage.se)}")
    if stage.skip == "none":
        parts.append("noskip")
    elif stage.skip == "pool":
        parts.append("pskip")
    return "_".join(parts)


def decode_ext_stages(blocks: Sequence[str] | str) -> tuple[StageSpec, ...]:
    if isinstance(blocks, str):
        blocks = blocks.split()
    if not blocks:
        raise SpecError("block strings: the list is empty; give at least one block")
    return tuple(decode_ext(b) for b in blocks)


def encode_ext_stages(spec: ArchSpec) -> list[str]:
    return [encode_ext(s) for s in spec.stages]


def block_string(spec: ArchSpec) -> str:
    """The compact one-line form used in tables and logs (effnas block strings, space
    separated)."""
    return " ".join(encode_ext_stages(spec))
