"""``python -m nas.pipeline``: search, scale, train and report in one run folder (the command
is :mod:`nas.cli.pipeline`; the orchestration :mod:`nas.search.pipeline`)."""

from __future__ import annotations

import sys

from nas.cli.pipeline import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
