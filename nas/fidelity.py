"""``python -m nas.fidelity RUN``: how well the proxy ranks a search's children (the command
is :mod:`nas.cli.fidelity`; the measurement :mod:`nas.search.fidelity`)."""

from __future__ import annotations

import sys

from nas.cli.fidelity import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
