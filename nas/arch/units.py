"""Multiply-add counts as people write them: ``400M``, ``0.4G``, ``4e8``; and back.

The papers' "FLOPS" are multiply-adds (MACs), so a target of ``400M`` means 400 million
MACs, the unit :func:`nas.arch.cost.count_macs` returns. Torch-free.

Accepted: a plain decimal or scientific number (``400000000``, ``4e8``, ``400e6``,
``0.4e9``), optionally followed by one suffix: ``K``/``k`` (10^3), ``M`` (10^6), ``G`` or
``B`` (10^9), ``T`` (10^12). Nothing else: no sign, no spaces inside the number, no
lower-case ``m`` (milli or mega?), no ``MACs``/``FLOPs`` words, no ``inf``/``nan``. The result
must be at least one multiply-add.
"""

from __future__ import annotations

import math
import re
from typing import Any
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext

from nas.core.errors import ConfigError

_SUFFIXES = {"": 1, "K": 10**3, "k": 10**3, "M": 10**6, "G": 10**9, "B": 10**9, "T": 10**12}
_NUMBER = re.compile(r"^(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(?P<suffix>[KkMGBT]?)$")
_EXAMPLES = "such as 400M, 0.4G or 4e8"


def parse_macs(value: str | int | float, option: str = "target_flops") -> int:
    """Parse a count of multiply-adds; bad input raises a one-line :class:`ConfigError`.

    ``option`` names the setting in the message (``target_flops='abc': expected ...``).
    Integers and floats (e.g. from YAML) are accepted when positive and finite.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{option}={value!r}: expected a number of multiply-adds {_EXAMPLES}")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{option}={value!r}: expected a number of multiply-adds {_EXAMPLES}")
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        m = _NUMBER.match(value.strip())
        if m is None:
            raise ConfigError(f"{option}={value!r}: expected a number of multiply-adds {_EXAMPLES}")
        try:
            amount = Decimal(m["num"]) * _SUFFIXES[m["suffix"]]
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
            raise ConfigError(f"{option}={value!r}: expected a number of multiply-adds "
                              f"{_EXAMPLES}") from None
    else:
        raise ConfigError(f"{option}={value!r}: expected a number of multiply-adds {_EXAMPLES}")
    if amount.adjusted() >= 18:  # 10^18 MACs: a million times the largest network trained
        raise ConfigError(f"{option}={value!r}: implausibly large (10^18 multiply-adds "
                          f"or more); expected a number of multiply-adds {_EXAMPLES}")
    with localcontext() as ctx:  # the default 28 digits cannot quantize 10^28 to units
        ctx.prec = 60
        macs = int(amount.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    if macs < 1:
        raise ConfigError(f"{option}={value!r}: expected a positive number of multiply-adds "
                          f"{_EXAMPLES}")
    return macs


# Targets outside these are legal but almost surely typos (40 for 40M, 4e18 for 4e8):
# refused unless forced. The papers' networks span about 10M (tiny MobileNets) to 40G
# (EfficientNet-B7 at 37G).
MIN_PLAUSIBLE_MACS = 10**6
MAX_PLAUSIBLE_MACS = 10**15


def _shown(value: Any) -> str:
    return value.strip() if isinstance(value, str) else repr(value)


def check_plausible_macs(macs: int, value: Any, option: str = "target_flops",
                         force: bool = False) -> int:
    """``macs`` (parsed from ``value``) when it lies in [1M, 1P] or ``force``; otherwise a
    one-line :class:`ConfigError` with the likely fix (``target_flops=40 is 40 MACs; did
    you mean 40M?``) and the way to insist (``pass force=True``)."""
    if force or MIN_PLAUSIBLE_MACS <= macs <= MAX_PLAUSIBLE_MACS:
        return macs
    shown = _shown(value)
    if macs < MIN_PLAUSIBLE_MACS:
        m = _NUMBER.match(shown)
        guess = f"; did you mean {m['num']}M?" if m else ""
        raise ConfigError(f"{option}={shown} is {macs:,} MACs, under 1M (the smallest "
                          f"networks have about 10M){guess} pass force=True to use it anyway")
    raise ConfigError(f"{option}={shown} is {format_macs(macs)} MACs, over 1P (10^15; "
                      "EfficientNet-B7 has 37G); check the unit (400M, 2G), or pass force=True "
                      "to use it anyway")


def format_macs(macs: int | float) -> str:
    """Short human form: ``385.8M``, ``1.83G``, ``37.75G``, ``12.5K``, ``950``.

    One decimal for K and M, two for G and T; the unit is chosen after rounding, so
    999,960,000 prints as ``1.00G``, not ``1000.0M``. ``parse_macs`` reads every result.
    """
    n = float(macs)
    if not math.isfinite(n) or n < 0:
        raise ValueError(f"format_macs: expected a non-negative count, got {macs!r}")
    if round(n) < 1000:
        return str(int(round(n)))
    for scale, suffix, digits in ((1e3, "K", 1), (1e6, "M", 1), (1e9, "G", 2)):
        shown = round(n / scale, digits)
        if shown < 1000:
            return f"{shown:.{digits}f}{suffix}"
    return f"{n / 1e12:.2f}T"
