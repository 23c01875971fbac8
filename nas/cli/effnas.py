"""``effnas COMMAND ...``: the installed command (``pip install .`` puts it on the PATH; from a
clone without installing, ``python -m nas.cli.effnas COMMAND ...``).

Each subcommand is one of the project's commands, with its own options and ``--help``:

    effnas search --target-flops 400M         # also python search.py
    effnas scale --grid --phi 1                # also python scale.py
    effnas train efficientnet-b0 --epochs 30
    effnas inspect efficientnet-b0
    effnas fidelity runs/NAME
    effnas pipeline --target-flops 400M
    effnas space mnasnet-space

A subcommand's module is imported only when it runs (``effnas inspect`` imports neither torch
nor Ray), and it names itself ``effnas COMMAND`` in its help, its usage errors and its hints.
"""

from __future__ import annotations

import importlib
import sys

from nas.cli.parser import EXIT_BAD_INPUT, invoked_as

PROG = "effnas"

# name -> (module with main(argv) -> int, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "search": ("nas.cli.search", "search for a baseline network (RL controller, children on "
                                 "Ray Tune)"),
    "scale": ("nas.cli.scale", "fit alpha, beta, gamma and scale a baseline into a family"),
    "train": ("nas.cli.train", "train a spec fully, test it and export it"),
    "inspect": ("nas.cli.inspect", "a spec's per-stage table, params, MACs and block strings"),
    "fidelity": ("nas.cli.fidelity", "how well the proxy ranks a search's children"),
    "pipeline": ("nas.cli.pipeline", "search, scale, train and report: data to trained models"),
    "space": ("nas.cli.space", "a search space's decisions and their resolved choices"),
    "latency": ("nas.cli.latency", "measure inference latency here; predict it from a "
                                   "per-device table"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items())
    return (f"usage: {PROG} COMMAND [options]   ({PROG} COMMAND --help for a command's options)"
            f"\n       {PROG} --version\n\ncommands:\n{rows}\n")


def version() -> str:
    """The installed distribution's version (``effnas`` is on the PATH only when installed)."""
    from importlib import metadata
    try:
        return metadata.version(PROG)
    except metadata.PackageNotFoundError:
        return "(not installed: pip install . gives the version)"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        sys.stderr.write(f"error: name a command ({', '.join(COMMANDS)}); see {PROG} --help\n")
        return EXIT_BAD_INPUT
    first = args[0]
    if first in ("-h", "--help"):
        sys.stdout.write(usage())
        return 0
    if first in ("-V", "--version"):
        sys.stdout.write(f"{PROG} {version()}\n")
        return 0
    if first not in COMMANDS:
        sys.stderr.write(f"error: unknown command {first!r}; use one of {', '.join(COMMANDS)}; "
                         f"see {PROG} --help\n")
        return EXIT_BAD_INPUT
    module = importlib.import_module(COMMANDS[first][0])
    with invoked_as(f"{PROG} {first}"):
        try:
            return int(module.main(args[1:]) or 0)
        except SystemExit as e:  # a command whose parser exits itself (--help, usage errors)
            if e.code is None or isinstance(e.code, int):
                return int(e.code or 0)
            sys.stderr.write(f"{e.code}\n")
            return 1


if __name__ == "__main__":
    sys.exit(main())
