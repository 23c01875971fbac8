#!/usr/bin/env python
"""Scale a baseline into a model family (``python scale.py --help``; the command is
:mod:`nas.cli.scale`)."""

import sys

from nas.cli.scale import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
