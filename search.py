#!/usr/bin/env python
"""Search for a baseline network (``python search.py --help``; the command is
:mod:`nas.cli.search`)."""

import sys

from nas.cli.search import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
