"""``effnas space [SPACE]``: a search space's decisions, each with its resolved choices, and
how many distinct networks it holds (the space itself is :mod:`search_space.space`)."""

from __future__ import annotations

import sys
from pathlib import Path

from nas.cli.parser import EXIT_BAD_INPUT, OneLineParser
from nas.core.errors import NasError
from nas.core.files import config_path
from search_space import SearchSpace

PROG = "effnas space"
DEFAULT_SPACE = "mnasnet-space"


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog=PROG, description="Print a search space's resolved decisions.")
    p.add_argument("space", nargs="?", default=None,
                   help=f"search-space YAML or bundled space name (default: {DEFAULT_SPACE})")
    args = p.parse_args(argv)
    try:
        space = SearchSpace.from_yaml(_space_path(args.space or DEFAULT_SPACE))
    except (NasError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        print(space.describe())
    except BrokenPipeError:  # piped into head
        pass
    return 0


def _space_path(space: str) -> Path:
    """A file as given, else a bundled space's name (as the search reads ``space``)."""
    return Path(space) if Path(space).is_file() else config_path(space)
