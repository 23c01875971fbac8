"""One parser base and one ``main`` wrapper for every command.

A usage error is one line that names the problem and points at ``--help`` (exit 2); an
expected failure (any :class:`~nas.core.errors.NasError`) is one line and exit 2; a run that
finished without a usable result (:class:`~nas.core.errors.NoResultError`: every child
failed) is one line and exit 1; Ctrl-C (``kill -INT``) or ``kill`` (SIGTERM) is a line
saying how to continue (the run folder named, the command as it was typed) and exit 130.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from nas.core.errors import NasError, NoResultError

EXIT_NO_RESULT = 1      # a run that finished without a usable result (every child failed)
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


# The name the user typed for the command (``effnas search``) when it was run through the
# ``effnas`` entry point; None when it was run as ``search.py`` or ``python -m nas.train``.
_INVOKED_AS: contextvars.ContextVar[str | None] = contextvars.ContextVar("invoked_as",
                                                                        default=None)


# The folder of the run in progress, once the command knows it (see note_run_folder).
_RUN_FOLDER: contextvars.ContextVar[Path | None] = contextvars.ContextVar("run_folder",
                                                                          default=None)


def note_run_folder(folder: Path | str) -> None:
    """The command's run folder is ``folder``: an interrupt's hint names it (``DIR`` in the
    resume hint given to :func:`run_main`)."""
    _RUN_FOLDER.set(Path(folder))


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


def other_command(name: str, default: str) -> str:
    """How to run the project's command ``name`` (``scale``) from within another: ``effnas
    scale`` when this one was run through the entry point, else ``default`` (``scale.py``)."""
    invoked = _INVOKED_AS.get()
    return f"{invoked.rsplit(' ', 1)[0]} {name}" if invoked and " " in invoked else default


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

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        """argparse's, but an option given an empty text (``--baseline ""``, a shell
        variable that was not set) is a usage error instead of silently the default."""
        ns, extra = super().parse_known_args(args, namespace)
        for action in self._actions:
            value = getattr(ns, action.dest, None)
            if (action.option_strings and isinstance(value, str) and not value.strip()
                    and value != action.default):
                self.error(f"argument {action.option_strings[-1]}: empty value {value!r}; give "
                           "one or leave the option out")
        return ns, extra


def run_main(run: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser,
             argv: list[str] | None, resume_hint: str | None = None) -> int:
    """Parse, run, and turn every expected failure into one line and a non-zero exit.

    ``resume_hint`` is the command that continues an interrupted run (printed on Ctrl-C or
    SIGTERM); its ``DIR`` is replaced by the run folder (:func:`note_run_folder`, else
    ``--out``), and a hint with ``DIR`` is left out while no run folder exists yet (nothing
    to continue).
    """
    if resume_hint:
        resume_hint = renamed(resume_hint, getattr(parser, "default_prog", ""))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed
        return int(e.code or 0)
    _stop_on_sigint()
    token = _RUN_FOLDER.set(None)
    try:
        with _sigterm_interrupts():
            return run(args)
    except NoResultError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_NO_RESULT
    except NasError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        hint = _resume_hint(resume_hint, args)
        print(f"\ninterrupted{f'; continue with: {hint}' if hint else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        _RUN_FOLDER.reset(token)


def _resume_hint(hint: str | None, args: argparse.Namespace) -> str | None:
    """``hint`` with ``DIR`` replaced by the run folder; None if it names ``DIR`` and no
    run folder exists yet."""
    if not hint or not re.search(r"\bDIR\b", hint):
        return hint
    folder = _RUN_FOLDER.get()
    if folder is None and isinstance(getattr(args, "out", None), str):
        folder = Path(args.out)
    if folder is None or not folder.is_dir():
        return None
    import shlex
    return re.sub(r"\bDIR\b", lambda _: shlex.quote(str(folder)), hint)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM (``kill PID``, a scheduler's stop) stops the command as
    Ctrl-C does: a KeyboardInterrupt, so every finished result is kept and the hint printed.
    (:func:`nas.search.tune_adapter.init_ray` puts this handler back after Ray replaced
    it with its own, which waits up to 30 s to drain the node and logs to the terminal.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


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
