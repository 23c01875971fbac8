"""``python -m search_space [SPACE.yaml]``: print a space's resolved decisions."""

from __future__ import annotations

import argparse
import sys

from nas.core.errors import NasError
from nas.core.files import config_path
from search_space.space import SearchSpace


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m search_space", description=__doc__)
    p.add_argument("space", nargs="?", default=None,
                   help="search-space YAML (default: the bundled mnasnet-space)")
    args = p.parse_args(argv)
    try:
        space = SearchSpace.from_yaml(args.space or config_path("mnasnet-space"))
    except NasError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        print(space.describe())
    except BrokenPipeError:  # piped into head
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
