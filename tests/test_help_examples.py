"""Every example a command's ``--help`` shows is run or checked here.

The examples are read from the help text itself (as ``effnas COMMAND --help`` prints it):
the indented ``effnas COMMAND ...`` lines of the description (a line ending in ``\\``
continues on the next), and every ``e.g. --set KEY=VALUE`` of the options, which is checked
appended to the command's first example. A new example is checked without a change here.

What "checked" means, per example, so that the fast suite starts no Ray and trains nothing:

* an example that trains (search, scale --grid / --compare, train, pipeline) is parsed and
  its whole config built and validated, exactly as the command does before it writes
  anything (the settings, layered as :mod:`nas.cli.jobs` layers them, and their checks; for
  train the recipe and the spec); ``--out`` is pointed into a temp folder;
* an example that does not train (scale with given coefficients, a rule or budgets) is run,
  except one at latency budgets (what reaches 5ms depends on the machine): its settings are
  built and checked;
* a ``--resume`` example is run against a run folder that does not exist, and must fail
  with the command's one-line error about that folder (so its flags were accepted; a usage
  error would name ``--help``);
* fidelity's examples need a finished search: their recipes (``--long``, ``--proxies``)
  are built and their flags parsed; the run folder part is left to tests/test_fidelity*.

``runs/NAME`` is replaced by a temp folder and ``runs/scale/b2.yaml`` by a spec written
there.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from nas.cli.effnas import COMMANDS, main
from nas.core.errors import ConfigError

CHECKED = ("search", "scale", "train", "fidelity", "pipeline")  # inspect shows no examples


def examples(command: str, text: str) -> list[list[str]]:
    """The example command lines of ``command``'s help, as argument lists (without the
    ``effnas COMMAND`` in front)."""
    lines = text.split("\n")
    description = lines[: next(i for i, line in enumerate(lines)
                               if re.match(r"^(options|positional arguments):", line))]
    joined: list[str] = []
    for line in description:
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + " " + line.strip()
        else:
            joined.append(line)
    found = []
    for line in joined:
        m = re.match(rf"^\s+effnas {command}\b(.*)$", line)
        if m:
            found.append(shlex.split(m.group(1).split("#")[0]))
    flat = " ".join(text.split())
    sets = re.findall(r"e\.g\. --set ([^\s),;]+)", flat)
    first = next((e for e in found if "--resume" not in e), [])
    return found + [[*first, "--set", item] for item in sets]


@pytest.fixture(scope="module")
def help_examples() -> dict[str, list[list[str]]]:
    import contextlib
    import io
    out = {}
    for command in COMMANDS:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main([command, "--help"]) == 0
        out[command] = examples(command, buf.getvalue())
    return out


def test_the_help_of_every_command_that_trains_shows_examples(help_examples) -> None:
    for command in CHECKED:
        assert help_examples[command], f"effnas {command} --help shows no example"
    # Each command's --set example and its description's examples are all found.
    assert sum("--set" in e for e in help_examples["pipeline"]) == 2
    assert len(help_examples["search"]) == 5 and len(help_examples["scale"]) == 8


def _substitute(argv: list[str], tmp: Path) -> list[str]:
    out = []
    for a in argv:
        if a == "runs/scale/b2.yaml":
            from nas.arch.io import load_spec, save_spec
            from nas.arch.rounding import scale_spec
            path = tmp / "runs" / "scale" / "b2.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_spec(scale_spec(load_spec("efficientnet-b0"), 1.1, 1.2, 260), path)
            a = str(path)
        elif a.startswith("runs/"):
            a = str(tmp / a)
        out.append(a)
    return out


def _with_out(argv: list[str], tmp: Path) -> list[str]:
    return argv if "--out" in argv else [*argv, "--out", str(tmp / "out")]


def check_example(command: str, argv: list[str], tmp: Path,
                  capsys: pytest.CaptureFixture[str]) -> None:
    argv = _substitute(argv, tmp)
    if "--resume" in argv and command != "fidelity":
        capsys.readouterr()
        assert main([command, *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "--help" not in err, err  # not a usage error
        assert str(tmp / "runs" / "NAME") in err or "runs/" in err, err
        return
    from nas.cli import jobs
    from nas.cli.parser import overrides
    from nas.search import settings as trees
    if command == "search":
        from nas.cli import search
        args = search.build_parser().parse_args(_with_out(argv, tmp))
        s = jobs.settings(trees.SearchSettings, preset=args.preset, config=args.config,
                          overrides=overrides(args, search.KEYS))
        s.check(args.force)
        assert (s.target_ms or s.target_macs) > 0 and s.budget >= 1
    elif command == "scale":
        from nas.cli import scale
        args = scale.build_parser().parse_args(_with_out(argv, tmp))
        over = overrides(scale._values(args), scale.KEYS, switches=("grid", "compare"))
        s = jobs.settings(trees.ScaleSettings, preset=args.preset, config=args.config,
                          overrides=over)
        jobs.check_grid_keys(s, over)
        if s.trains:  # trains on Ray: its settings only
            s.check(args.force)
            assert s.trials.workers >= 1
        elif s.budget_ms is not None:  # latency budgets are this machine's: settings only
            s.check(args.force)
            assert all(ms > 0 for ms in s.budget_ms)
        else:  # no training: run it
            said: list[str] = []
            result = scale.execute(args, said.append)
            assert result.family and all(p.is_file() for p in result.family)
    elif command == "train":
        from nas.cli import train
        from nas.training.fit import make_spec
        args = train.build_parser().parse_args(_with_out(argv, tmp))
        c, spec = jobs.train_fresh(train.settings(args), args.force)
        c.recipe()
        assert make_spec(c).stages
    elif command == "fidelity":
        from nas.cli import fidelity
        args = fidelity.build_parser().parse_args(argv)
        over = overrides(args, fidelity.KEYS)
        if isinstance(over.get("proxies"), str):
            over["proxies"] = [t.strip() for t in over["proxies"].split(",") if t.strip()]
        f = jobs.settings(trees.FidelitySettings, overrides=over)
        f.long_recipe()
        f.proxy_recipes()
    elif command == "pipeline":
        from nas.cli import pipeline
        args = pipeline.build_parser().parse_args(_with_out(argv, tmp))
        s = jobs.settings(trees.PipelineSettings, preset=args.preset, config=args.config,
                          overrides=pipeline.cli_overrides(args))
        p = jobs.pipeline_plan(s, force=args.force)
        assert p.out == tmp / "out"
    else:
        raise AssertionError(f"no check for effnas {command}'s examples; add one here")


@pytest.mark.parametrize("command", CHECKED)
def test_every_help_example_works(command, help_examples, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no runs/ of the working tree is read or written
    for i, argv in enumerate(help_examples[command]):
        where = tmp_path / f"example{i}"
        where.mkdir()
        try:
            check_example(command, argv, where, capsys)
        except (ConfigError, SystemExit) as e:
            pytest.fail(f"effnas {command} {shlex.join(argv)}: {e}")
    assert "ray" not in sys.modules or not __import__("ray").is_initialized()


def test_a_broken_example_is_caught(tmp_path, capsys) -> None:
    # The check is not a formality: the example pipeline's help once showed fails.
    with pytest.raises(ConfigError, match="unknown key 'proxy'"):
        check_example("pipeline", ["--target-flops", "400M", "--set", "proxy.epochs=2"],
                      tmp_path, capsys)
