"""One parser base and one ``main`` wrapper for every command, and the map between flags and
settings' keys.

A command maps each flag to a key of its job's settings (its ``KEYS``: ``target_flops`` for
``--target-flops``, ``data.path`` for ``--data``), layers them as the Python API does
(:func:`overrides`, then :mod:`nas.cli.jobs`), and says the project's messages, which name
keys, with its flags (:func:`flag_message`: ``target_flops=40`` is ``--target-flops 40``).

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
from typing import Any, Callable, Iterable, Iterator, Mapping

from nas.core.errors import NasError, NoResultError

EXIT_NO_RESULT = 1      # a run that finished without a usable result (every child failed)
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


# The name the user typed for the command (``effnas search``) when it was run through the
# ``effnas`` entry point; None when it was run as ``search.py`` or ``scale.py``.
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
    ``effnas train``) replaced by the name it was invoked as, if any."""
    name = _INVOKED_AS.get()
    if not name or not default_prog:
        return text
    bare = re.sub(r"^python3?\s+", "", default_prog)
    return re.sub(r"(?:\bpython3?\s+)?(?<![\w./-])" + re.escape(bare) + r"(?![\w.])", name, text)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem and pointing at --help.

    Run through the ``effnas`` entry point (:func:`invoked_as`), the parser takes the invoked
    name as its ``prog`` and in its description's examples. Flags are taken only spelled
    out: an abbreviation (``--budg``) is an error, so a flag added later cannot change what
    a user's script meant."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
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
        self.exit(EXIT_BAD_INPUT, f"error: {message}{self._did_you_mean(message)}; see "
                                  f"{self.prog} --help\n")

    def _did_you_mean(self, message: str) -> str:
        """For an unrecognized flag, the nearest flag this command has (abbreviations are
        refused, so ``--target-flop`` is one)."""
        if not message.startswith("unrecognized arguments:"):
            return ""
        import difflib
        for word in message.split(":", 1)[1].split():
            if word.startswith("--"):
                flags = {f[2:]: f for f in self._option_string_actions if f.startswith("--")}
                near = difflib.get_close_matches(word.split("=", 1)[0][2:], list(flags), n=1,
                                                 cutoff=0.75)
                if near:
                    return f"; did you mean {flags[near[0]]}?"
        return ""

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


# --------------------------------------------------------------------------- flags and keys


def add_layer_args(p: argparse.ArgumentParser, preset_help: str | None, set_example: str) -> None:
    """The settings' layers: ``--preset`` (where the command has presets), ``--config`` and
    ``--set`` (every command that loads settings; :func:`nas.core.settings.load`)."""
    if preset_help is not None:
        p.add_argument("--preset", help=preset_help)
    p.add_argument("--config", metavar="YAML", help="a YAML file of settings")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override any setting, e.g. --set {set_example} (repeatable)")


def add_run_args(p: argparse.ArgumentParser, set_example: str = "proxy.epochs=2") -> None:
    """Flags of every command that trains children on Ray; ``set_example`` is a ``--set``
    item that this command takes (shown in its help)."""
    add_layer_args(p, "a bundled preset: smoke (a whole run in about a minute)", set_example)
    p.add_argument("--workers", type=int, help="children trained at the same time")
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per child (default 1)")
    p.add_argument("--gpus-per-trial", type=float,
                   help="GPUs per child; fractions share a GPU (e.g. 0.25 = 4 children per GPU)")
    p.add_argument("--address", help="join an existing Ray cluster (or set RAY_ADDRESS); "
                                     "default: a fresh local Ray")
    p.add_argument("--data", metavar="PATH", help="data folder (default: the Fashion-MNIST "
                                                  "install, or NAS_DATA_DIR)")
    p.add_argument("--dataset", help="fashion-mnist (default) | mnist | cifar10 | cifar100 | imagefolder")
    p.add_argument("--seed", type=int, help="the run's seed: the controller, the validation "
                                            "split, and every child's (with its identity)")
    p.add_argument("--name", help="run name (default: derived from the settings and the time)")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/NAME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")


# The options every job function takes beside its settings (nas.cli.api): their flags.
CALL_OPTIONS = {"preset": "preset", "config": "config", "resume": "resume", "force": "force"}
# The command that runs each job function (the hints of the project's messages name them as
# ``nas.run_scale(resume=True, out='DIR')``): its name under ``effnas`` and as a script.
JOB_COMMANDS = {"search": "search.py", "scale": "scale.py", "train": "effnas train",
                "fidelity": "effnas fidelity", "pipeline": "effnas pipeline"}


def flag_table(parser: argparse.ArgumentParser, keys: Mapping[str, str]
               ) -> tuple[dict[str, str], set[str]]:
    """The settings' keys and the flags that set them: ``{key: flag}`` (from ``keys``, a
    parser destination's key; a positional's flag is its metavar), and the keys of switches
    (flags without a value)."""
    flags: dict[str, str] = {}
    switches: set[str] = set()
    for action in parser._actions:
        key = {**CALL_OPTIONS, **keys}.get(action.dest)
        if key is None or key in flags:
            continue
        if action.option_strings:
            flags[key] = next((o for o in action.option_strings if o.startswith("--")),
                              action.option_strings[-1])
        else:
            flags[key] = action.metavar or action.dest.upper()
        if action.nargs == 0:
            switches.add(key)
    return flags, switches


def given_keys(ns: argparse.Namespace, keys: Mapping[str, str],
               switches: Iterable[str] = ()) -> dict[str, Any]:
    """The flags given on the command line as settings: ``{key: value}`` (dotted keys).
    A flag not given is None, or False for a switch (``switches``: their destinations)."""
    switches = set(switches)
    out: dict[str, Any] = {}
    for dest, key in keys.items():
        value = getattr(ns, dest, None)
        if value is None or (value is False and dest in switches):
            continue
        out[key] = value
    return out


def overrides(ns: argparse.Namespace, keys: Mapping[str, str],
              switches: Iterable[str] = ()) -> dict[str, Any]:
    """The command line as the settings' overrides: the flags (``keys``: a destination's
    key; ``switches``: the destinations of flags without a value), then ``--set KEY=VALUE``
    items, as one nested mapping."""
    from nas.core.errors import ConfigError
    from nas.core.settings import parse_overrides

    over = parse_overrides(given_keys(ns, keys, switches))
    try:
        items = parse_overrides(list(getattr(ns, "set", None) or []), "--set")
    except ConfigError as e:
        raise ConfigError(f"--set {e}") from None
    return _merged(over, items)


def _merged(base: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in layer.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merged(dict(out[k]), v)
        else:
            out[k] = v
    return out


_CALL = re.compile(r"nas\.run_(\w+)\(((?:'[^']*'|\"[^\"]*\"|[^()'\"])*)\)")


def _value_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _call_as_command(m: re.Match[str]) -> str:
    """``nas.run_scale(resume=True, out='x')`` as ``scale.py --resume --out x`` (``effnas
    scale ...`` under the entry point)."""
    import ast

    job = m[1]
    if job not in JOB_COMMANDS:
        return m[0]
    try:
        call = ast.parse(f"f({m[2]})", mode="eval").body
        assert isinstance(call, ast.Call)
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = [(k.arg, ast.literal_eval(k.value)) for k in call.keywords]
    except (SyntaxError, ValueError, AssertionError):
        return m[0]
    words = [other_command(job, JOB_COMMANDS[job]), *(_value_text(a) for a in args)]
    for key, value in kwargs:
        flag = "--" + str(key).replace("_", "-")
        if value is True:
            words.append(flag)
        elif value is not False and value is not None:
            words += [flag, _value_text(value)]
    return " ".join(words)


def flag_message(message: str, flags: Mapping[str, str], switches: Iterable[str] = ()) -> str:
    """A message of the project's code, which names settings by their keys, as the command
    line says it, naming the flags that set them: ``target_flops=40`` is ``--target-flops
    40``, ``force=True`` is ``--force``, ``seed: got`` is ``--seed: got``, a dotted key with
    a flag is its flag (``grid.tol``: ``--tol``), and a call such as
    ``nas.run_scale(resume=True, out='x')`` is the command ``scale.py --resume --out x``.
    Keys without a flag stay as they are (they are what ``--set`` takes)."""
    text = _CALL.sub(_call_as_command, message)
    switches = set(switches)
    for key in sorted(flags, key=len, reverse=True):
        flag = flags[key]
        k = re.escape(key)
        before = r"(?<![\w.-])"
        if key in switches:
            text = re.sub(before + k + r"=True\b", flag, text)
            if flag.startswith("--no-"):
                continue
            text = re.sub(before + k + r"=False\b", "--no-" + flag[2:], text)
        text = re.sub(before + k + r"=(?=$|[\s,;)])", flag, text)
        # A path's quotes go (the shell's words show none): out='/x/y' is --out /x/y.
        text = re.sub(before + k + r"='([^'\s]*/[^'\s]*)'", lambda m: f"{flag} {m[1]}", text)
        text = re.sub(before + k + r"=\[([^\]]*)\]", lambda m: f"{flag} " + ",".join(
            x.strip().strip("'\"") for x in m[1].split(",")), text)
        text = re.sub(before + k + r"=", flag + " ", text)
        text = re.sub(before + k + r"(?=: )", flag, text)
        text = re.sub(r"^" + k + r"(?= is required| sets )", flag, text)
        if "." in key:
            text = re.sub(before + k + r"(?![\w.=])", flag, text)
    return text.replace("overrides: ", "--set: ")


def run_main(run: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser,
             argv: list[str] | None, resume_hint: str | None = None,
             keys: Mapping[str, str] | Callable[[argparse.Namespace], Mapping[str, str]]
             | None = None) -> int:
    """Parse, run, and turn every expected failure into one line and a non-zero exit.

    ``resume_hint`` is the command that continues an interrupted run (printed on Ctrl-C or
    SIGTERM); its ``DIR`` is replaced by the run folder (:func:`note_run_folder`, else
    ``--out``), and a hint with ``DIR`` is left out while no run folder exists yet (nothing
    to continue). ``keys`` maps the parser's destinations to the settings' keys (or is a
    function of the parsed flags giving them): an error's keys are said as the flags that
    set them (:func:`flag_message`).
    """
    if resume_hint:
        resume_hint = renamed(resume_hint, getattr(parser, "default_prog", ""))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed
        return int(e.code or 0)
    _stop_on_sigint()
    token = _RUN_FOLDER.set(None)

    def said(e: Exception) -> str:
        table = keys(args) if callable(keys) else (keys or {})
        return flag_message(str(e), *flag_table(parser, table))

    try:
        with _sigterm_interrupts():
            return run(args)
    except NoResultError as e:
        print(f"error: {said(e)}", file=sys.stderr)
        return EXIT_NO_RESULT
    except NasError as e:
        print(f"error: {said(e)}", file=sys.stderr)
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
    (:func:`nas.ray.runtime.init_ray` puts this handler back after Ray replaced
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
