"""``python -m nas.inspect SPEC``: a spec's per-stage table (the command is :mod:`nas.cli.inspect`)."""

from __future__ import annotations

import sys

from nas.cli.inspect import format_table, main, op_label, report

__all__ = ["format_table", "main", "op_label", "report"]

if __name__ == "__main__":
    sys.exit(main())
