"""One parser base and one ``main`` wrapper for every command.

A usage error is one line that names the problem and points at ``--help`` (exit 2); an
expected failure (any :class:`~nas.core.errors.NasError`) is one line and exit 2; a run that
finished without a usable result (:class:`~nas.core.errors.NoResultError`: every child
failed) is one line and exit 1; Ctrl-C (or ``kill -INT``) is a
line saying how to continue and exit 130.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import re
import signal
import sys
import threading
from typing import Any, Callable, Iterator

from nas.core.errors import NasError, NoResultError

EXIT_NO_RESULT = 1      # a run that finished without a usable result (every child failed)
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


# The name the user typed for the command (``effnas search``) when it was run through the
# ``effnas`` entry point; None when it was run as ``search.py`` or ``python -m nas.train``.
_INVOKED_AS: contextvars.ContextVar[str | None] = contextvars.ContextVar("invoked_as",
                                                                        default=None)


@contextlib.contextmanager
def invoked_as(name: str) -> Iterator[None]:
    """Within the block, commands name themselves ``name`` (in --help, usage errors and the
    hints they print) instead of the name their parser was given."""
    token = _INVOKED_AS.set(name)
    try:
        yield
    finally:
        _INVOKED_AS.reset(token)


def command_name(default: str) -> str:
    """How to run this command again: ``effnas search`` under the entry point, else
    ``default`` (``python search.py``)."""
    return renamed(default, default)


def renamed(text: str, default_prog: str) -> str:
    """``text`` with the command's default name (``search.py``, ``python search.py``,
    ``python -m nas.train``) replaced by the name it was invoked as, if any."""
    name = _INVOKED_AS.get()
    if not name or not default_prog:
        return text
    bare = re.sub(r"^python3?\s+", "", default_prog)
    return re.sub(r"(?:\bpython3?\s+)?(?<![\w./-])" + re.escape(bare) + r"(?![\w.])", name, text)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem and pointing at --help.

    Run through the ``effnas`` entry point (:func:`invoked_as`), the parser takes the invoked
    name as its ``prog`` and in its description's examples."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        name = _INVOKED_AS.get()
        default = kwargs.get("prog")
        self.default_prog = default or ""
        if name and default and not default.startswith(name):
            kwargs["prog"] = name
            for key in ("description", "epilog"):
                if kwargs.get(key):
                    kwargs[key] = renamed(kwargs[key], default)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"error: {message}; see {self.prog} --help\n")


def run_main(run: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser,
             argv: list[str] | None, resume_hint: str | None = None) -> int:
    """Parse, run, and turn every expected failure into one line and a non-zero exit.

    ``resume_hint`` is the command that continues an interrupted run (printed on Ctrl-C).
    """
    if resume_hint:
        resume_hint = renamed(resume_hint, getattr(parser, "default_prog", ""))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed
        return int(e.code or 0)
    _stop_on_sigint()
    try:
        return run(args)
    except NoResultError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_NO_RESULT
    except NasError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        hint = f"; continue with: {resume_hint}" if resume_hint else ""
        print(f"\ninterrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED


def _stop_on_sigint() -> None:
    """Let SIGINT stop the command as Ctrl-C does, even when the shell that started it in
    the background (``nohup CMD &``, a script) set it to be ignored: ``kill -INT PID`` then
    keeps every finished result and prints how to continue, where it would do nothing."""
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) == signal.SIG_IGN):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def seconds(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h`` as seconds (an argparse type)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([smh]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid time {text!r}; use seconds or 90m / 2h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def count_or_fraction(text: str) -> int | float:
    """An image count (``5000``) or a fraction (``0.1``) (an argparse type)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; use an image count (5000) "
                                         "or a fraction of the training images (0.1)") from None


def positive_int(text: str) -> int:
    """A whole number >= 1 (an argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def described(doc: str | None, stop: str | None = None) -> Any:
    """A module docstring as a parser description (cut before ``stop`` if given)."""
    text = doc or ""
    return text.split(stop)[0] if stop else text
