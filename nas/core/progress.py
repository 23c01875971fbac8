"""Progress that suits where it is written: a tqdm bar on a terminal or in a notebook, plain
lines in a log file.

On a terminal (the stream is a TTY) or in a Jupyter notebook, :class:`Bar` draws a tqdm bar
that updates in place, with the caller's own text beside it (its best result, failures and
the time left it estimates); lines written through :meth:`Bar.write` appear above the bar.
Anywhere else (output redirected to a file, a pipe, a CI log) nothing is drawn: the caller
writes its transcript lines, one per update, so a log holds readable lines rather than
thousands of carriage returns (tqdm's own ``disable=None`` would print nothing at all
there). Without tqdm installed, the bar falls back to those lines too.

tqdm is imported only when a bar is drawn.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any, TextIO


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (its output is shown as rich text)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - any failure means: not a notebook
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def interactive(stream: Any) -> bool:
    """Whether progress written to ``stream`` is seen live: a terminal, or a notebook's
    output (its stdout and stderr)."""
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError, OSError):
        return False
    return in_notebook() and stream in (sys.stdout, sys.stderr, sys.__stdout__,
                                        sys.__stderr__)


def _columns(stream: Any) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return 0


def _tqdm_class(notebook: bool) -> type | None:
    try:
        if notebook:
            from tqdm.auto import tqdm
        else:
            from tqdm import tqdm
    except ImportError:
        return None

    class TextBar(tqdm):  # type: ignore[misc, valid-type]
        """tqdm with the caller's text as ``{text}`` in the bar format."""

        text = ""

        @property
        def format_dict(self) -> dict[str, Any]:
            d = super().format_dict
            d["text"] = self.text
            return d

    return TextBar


class Bar:
    """A progress bar of ``total`` steps labelled ``desc`` on ``stream``, or nothing when
    ``stream`` is not seen live (then :attr:`drawn` is False and the caller writes lines).

    ``position`` stacks bars (0 the outer one); ``leave`` keeps a finished bar on screen.
    """

    FORMAT = "{desc} {n}/{total} |{bar}| {text}"

    def __init__(self, total: int, desc: str, stream: TextIO | None = None,
                 leave: bool = True, position: int | None = None, force: bool | None = None,
                 lazy: bool = False):
        self.stream = stream or sys.stdout
        self.total = int(total)
        self.desc, self.leave, self.position = desc, leave, position
        self.live = interactive(self.stream) if force is None else force
        self._bar: Any = None
        if not lazy:
            self.start(0)

    def start(self, done: int = 0) -> bool:
        """Draw the bar at ``done`` (a lazy bar waits for this, e.g. until its inputs are
        checked, so an error does not leave an empty bar behind). Returns :attr:`drawn`."""
        if self._bar is None and self.live:
            cls = _tqdm_class(in_notebook() and not self._is_tty())
            if cls is not None:
                # A terminal's own width, followed as it changes; 100 columns where none is
                # known (a notebook, or a terminal that reports 0 columns).
                dynamic = self._is_tty() and _columns(self.stream) > 0
                self._bar = cls(total=self.total, initial=min(int(done), self.total),
                                desc=self.desc, file=self.stream, bar_format=self.FORMAT,
                                dynamic_ncols=dynamic, ncols=None if dynamic else 100,
                                mininterval=0.2,
                                leave=self.leave, position=self.position, disable=False)
        return self.drawn

    def _is_tty(self) -> bool:
        try:
            return bool(self.stream.isatty())
        except (AttributeError, ValueError, OSError):
            return False

    @property
    def drawn(self) -> bool:
        return self._bar is not None

    def update(self, done: int, text: str) -> None:
        """Show ``done`` of ``total`` with ``text`` beside the bar (no-op when not drawn)."""
        if self._bar is None:
            return
        self._bar.text = text
        self._bar.n = min(int(done), self.total)
        self._bar.refresh()

    def write(self, line: str) -> None:
        """A line above the bar (or on its own when no bar is drawn)."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def format_duration(seconds: float) -> str:
    """``1h05m`` or ``4m09s``: the durations of the progress lines."""
    s = int(max(0, seconds))
    h, m = divmod(s, 3600)
    m, sec = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"
