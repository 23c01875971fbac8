"""``effnas inspect SPEC``: what a spec builds, stage by stage, and what it costs.

SPEC is a spec YAML file or the name of a bundled config (``efficientnet-b0``). The table has
one row for the stem, each stage, the head and the classifier: op, kernel, stride, expansion,
squeeze-excite ratio, skip, channels in -> out, repeats, output size, parameters and
multiply-adds (MACs, the papers' "FLOPS"), then the totals. ``--json`` prints the same rows,
the totals and the spec's block strings as JSON; ``--format`` prints block strings:

``timm``  exact timm strings: ``timm.models._efficientnet_builder.decode_arch_def`` and timm's
          ``EfficientNet`` build them into this network (with the constructor arguments of
          ``nas.to_timm``), or one ``error:`` line naming the stage timm cannot express;
``ext``   effnas block strings (timm's notation, this project's meaning: ``pskip``, ``se`` on
          ``cn``; every spec has them; ``search.py`` logs them);
``tf``    the TF reference's strings (no ``conv`` op, no ``pool`` skip).

Counting is the torch-free cost model (:mod:`nas.arch.cost`); this module does not import torch.
Bad input prints one ``error: ...`` line on stderr and exits with status 2.

Examples::

    effnas inspect efficientnet-b0
    effnas inspect runs/best.yaml --resolution 28 --num-classes 10 --in-channels 1
    effnas inspect mnasnet-a1 --format tf
    effnas inspect efficientnet-b0 --format timm
    effnas inspect mobilenetv2 --json
"""

from __future__ import annotations

import json
import sys
from typing import Any

from nas.arch.blockstrings import encode_ext_stages, encode_tf_stages
from nas.arch.cost import StageCost, count, stage_costs
from nas.arch.io import load_spec
from nas.arch.spec import ArchSpec, StageSpec
from nas.arch.timm_export import to_timm
from nas.cli.parser import EXIT_BAD_INPUT, OneLineParser, positive_int
from nas.core.errors import NasError, SpecError

COLUMNS = ("stage", "op", "kernel", "stride", "expand", "SE", "skip", "channels", "repeats",
           "output", "params", "MACs (M)")
_RIGHT = {"kernel", "stride", "expand", "SE", "repeats", "output", "params", "MACs (M)"}


def op_label(stage: StageSpec) -> str:
    """The papers' names: ``MBConv6``, ``DSConv`` (an MBConv1), ``Conv``."""
    return {"mbconv": f"MBConv{stage.expand}", "ds": "DSConv", "conv": "Conv"}[stage.op]


def _row(r: StageCost, spec: ArchSpec) -> dict[str, Any]:
    """One row as plain data (the JSON form); parts without a value carry ``None``."""
    row: dict[str, Any] = {"stage": r.name, "op": None, "kernel": None, "stride": None,
                           "expand": None, "se": None, "skip": None}
    if r.stage is not None:
        s = r.stage
        row.update(op=op_label(s), kernel=s.kernel, stride=s.stride, expand=s.expand,
                   se=float(s.se), skip=s.skip)
        repeats = s.repeats
    elif r.name == "stem":
        row.update(op="Conv", kernel=3, stride=spec.stem_stride)
        repeats = 1
    elif r.name == "head":
        row.update(op="Conv", kernel=1, stride=1)
        repeats = 1
    else:
        row.update(op="Linear")
        repeats = 1
    row.update(in_channels=r.in_channels, out_channels=r.out_channels, repeats=repeats,
               in_size=r.in_size, out_size=r.out_size, params=r.params, macs=r.macs)
    return row


def report(spec: ArchSpec, resolution: int | None = None, num_classes: int = 1000,
           in_channels: int = 3) -> dict[str, Any]:
    """Everything ``--json`` prints: settings, per-part rows, totals and block strings."""
    size = spec.resolution if resolution is None else int(resolution)
    rows = [_row(r, spec) for r in stage_costs(spec, size, num_classes, in_channels)]
    total = count(spec, size, num_classes, in_channels)
    try:
        tf: list[str] | None = encode_tf_stages(spec)
        tf_note = None
    except SpecError as e:
        tf, tf_note = None, str(e)
    try:
        arch = to_timm(spec)
        timm: list[str] | None = arch.block_strings
        timm_kwargs: dict[str, Any] | None = arch.plain()["kwargs"]
        timm_note = None
    except SpecError as e:
        timm, timm_kwargs, timm_note = None, None, str(e)
    return {
        "name": spec.name, "resolution": size, "num_classes": num_classes,
        "in_channels": in_channels, "activation": spec.activation, "stem": spec.stem,
        "head": spec.head, "rows": rows,
        "totals": {"params": total.params, "macs": total.macs, "layers": spec.num_layers},
        "block_strings": {"ext": encode_ext_stages(spec), "timm": timm, "timm_note": timm_note,
                          "timm_kwargs": timm_kwargs, "tf": tf, "tf_note": tf_note},
    }


def _cells(row: dict[str, Any]) -> list[str]:
    def opt(v: Any, fmt: str = "{}") -> str:
        return "-" if v is None else fmt.format(v)

    se = row["se"]
    return [
        row["stage"], row["op"], opt(row["kernel"]), opt(row["stride"]), opt(row["expand"]),
        "-" if not se else f"{se:g}", opt(row["skip"]),
        f"{row['in_channels']}->{row['out_channels']}", str(row["repeats"]),
        f"{row['out_size']}x{row['out_size']}", f"{row['params']:,}",
        f"{row['macs'] / 1e6:,.2f}",
    ]


def format_table(rep: dict[str, Any]) -> str:
    """The per-stage table with a totals line (what ``effnas inspect`` prints)."""
    body = [_cells(r) for r in rep["rows"]]
    widths = [max(len(c), *(len(row[i]) for row in body)) for i, c in enumerate(COLUMNS)]

    def line(cells: list[str] | tuple[str, ...]) -> str:
        out = [c.rjust(w) if name in _RIGHT else c.ljust(w)
               for c, w, name in zip(cells, widths, COLUMNS)]
        return "  ".join(out).rstrip()

    t = rep["totals"]
    title = (f"{rep['name'] or 'spec'}: {rep['resolution']}x{rep['resolution']}x"
             f"{rep['in_channels']} input, {rep['num_classes']} classes, "
             f"{rep['activation']}, {t['layers']} layers")
    rule = "-" * len(line(COLUMNS))
    totals = (f"total: {t['params']:,} params, {t['macs'] / 1e6:,.1f} M MACs "
              f"({t['macs']:,} multiply-adds)")
    return "\n".join([title, line(COLUMNS), rule, *(line(r) for r in body), rule, totals])


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="effnas inspect",
                description="Print a spec's per-stage table: ops, channels, sizes, params, MACs.")
    p.add_argument("spec", help="spec YAML file or bundled config name (e.g. efficientnet-b0)")
    p.add_argument("--resolution", type=positive_int, default=None,
                   help="input side in pixels (default: the spec's own)")
    p.add_argument("--num-classes", type=positive_int, default=1000, help="classifier outputs")
    p.add_argument("--in-channels", type=positive_int, default=3, help="input image channels")
    p.add_argument("--json", action="store_true",
                   help="print rows, totals and block strings as JSON (ignores --format)")
    p.add_argument("--format", choices=("table", "timm", "ext", "tf"), default="table",
                   help="table (default); timm: exact timm block strings (or why timm cannot "
                        "express the spec); ext: effnas block strings; tf: TF-reference strings")
    args = p.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        rep = report(spec, args.resolution, args.num_classes, args.in_channels)
        if args.json:
            text = json.dumps(rep, indent=2)
        elif args.format == "table":
            text = format_table(rep)
        elif args.format == "ext":
            text = "\n".join(rep["block_strings"]["ext"])
        else:  # tf or timm: refused with the reason when the format cannot express the spec
            strings = rep["block_strings"][args.format]
            if strings is None:
                raise SpecError(rep["block_strings"][f"{args.format}_note"])
            text = "\n".join(strings)
    except (NasError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        print(text)
    except BrokenPipeError:  # piped into head
        pass
    return 0

