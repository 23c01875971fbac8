"""The ``effnas`` entry point: one command with subcommands, each naming itself ``effnas NAME``
in its help, usage errors and hints; ``search.py`` and ``scale.py`` keep their own names."""

from __future__ import annotations

import argparse
import importlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli import effnas
from nas.cli.parser import (
    OneLineParser,
    command_name,
    invoked_as,
    note_run_folder,
    other_command,
    renamed,
    run_main,
)

ROOT = Path(__file__).resolve().parent.parent


def test_every_subcommand_is_a_command_module_with_main() -> None:
    assert list(effnas.COMMANDS) == ["search", "scale", "train", "inspect", "fidelity",
                                    "pipeline", "space", "latency"]
    for name, (module, summary) in effnas.COMMANDS.items():
        assert callable(importlib.import_module(module).main), name
        assert summary and "\n" not in summary


@pytest.mark.parametrize("name", list(effnas.COMMANDS))
def test_subcommand_help_names_itself(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert effnas.main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: effnas {name} ")
    # The description's examples are written with the invoked name too.
    assert "python -m nas." not in out and "python search.py" not in out
    assert "python scale.py" not in out


@pytest.mark.parametrize("argv,fragment", [
    (["search", "--budget", "x"], "error: argument --budget: invalid int value: 'x'; "
                                  "see effnas search --help"),
    (["scale", "--bogus"], "error: unrecognized arguments: --bogus; see effnas scale --help"),
    (["train", "efficientnet-b0", "--epochs", "x"], "; see effnas train --help"),
    (["inspect"], "; see effnas inspect --help"),
    (["fidelity"], "; see effnas fidelity --help"),
    (["space", "a", "b"], "; see effnas space --help"),
])
def test_usage_errors_name_the_subcommand(argv: list[str], fragment: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert effnas.main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


def test_top_level_help_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert effnas.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: effnas COMMAND")
    for name in effnas.COMMANDS:
        assert f"\n  {name} " in out
    assert effnas.main([]) == 2
    assert capsys.readouterr().err == ("error: name a command (search, scale, train, inspect, "
                                       "fidelity, pipeline, space, latency); see effnas "
                                       "--help\n")
    assert effnas.main(["serch"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown command 'serch'; use one of search")


def test_the_name_is_restored_after_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    effnas.main(["inspect", "--help"])
    capsys.readouterr()
    assert OneLineParser(prog="search.py").prog == "search.py"
    assert command_name("python search.py") == "python search.py"


def test_renaming_rules() -> None:
    with invoked_as("effnas search"):
        assert command_name("python search.py") == "effnas search"
        assert renamed("  python search.py --resume --out runs/x", "search.py") == \
            "  effnas search --resume --out runs/x"
        assert renamed(".venv/bin/python search.py --budget 2", "search.py") == \
            ".venv/bin/effnas search --budget 2"
        # Only the command's own name: other files and longer names stay.
        assert renamed("research.py and scale.py and search.pyc", "search.py") == \
            "research.py and scale.py and search.pyc"
    with invoked_as("effnas train"):
        assert renamed("python -m nas.train x --resume", "python -m nas.train") == \
            "effnas train x --resume"
        assert renamed("python -m nas.training", "python -m nas.train") == \
            "python -m nas.training"


def test_resume_hint_is_renamed_and_names_the_run_folder(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run_dir = tmp_path / "my run"
    run_dir.mkdir()

    def interrupted(_: argparse.Namespace) -> int:
        note_run_folder(run_dir)
        raise KeyboardInterrupt

    with invoked_as("effnas scale"):
        parser = OneLineParser(prog="scale.py")
        assert run_main(interrupted, parser, [], "python scale.py --resume --out DIR") == 130
    assert capsys.readouterr().err.endswith(
        f"continue with: effnas scale --resume --out '{run_dir}'\n")
    parser = OneLineParser(prog="scale.py")
    assert run_main(interrupted, parser, [], "python scale.py --resume --out DIR") == 130
    assert capsys.readouterr().err.endswith(
        f"continue with: python scale.py --resume --out '{run_dir}'\n")


def test_resume_hint_takes_out_else_is_left_out(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    def interrupted(_: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    parser = OneLineParser(prog="search.py")
    parser.add_argument("--out")
    hint = "python search.py --resume --out DIR"
    assert run_main(interrupted, parser, ["--out", str(tmp_path)], hint) == 130
    assert capsys.readouterr().err == f"\ninterrupted; continue with: python search.py " \
                                      f"--resume --out {tmp_path}\n"
    # No run folder yet (interrupted before anything was written): nothing to continue.
    assert run_main(interrupted, parser, ["--out", str(tmp_path / "not-yet")], hint) == 130
    assert capsys.readouterr().err == "\ninterrupted\n"
    assert run_main(interrupted, parser, [], hint) == 130
    assert capsys.readouterr().err == "\ninterrupted\n"


def test_other_commands_are_named_as_typed() -> None:
    assert other_command("scale", "scale.py") == "scale.py"
    with invoked_as("effnas search"):
        assert other_command("scale", "scale.py") == "effnas scale"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import tomllib
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for flag in ("--version", "-V"):
        assert effnas.main([flag]) == 0
        assert capsys.readouterr().out == f"effnas {version}\n"
    done = subprocess.run([sys.executable, "-m", "nas.cli.effnas", "--version"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert (done.returncode, done.stdout) == (0, f"effnas {version}\n"), done.stderr
    import nas
    assert nas.__version__ == version  # the package's own, kept in step with pyproject


# A command whose run waits to be stopped (the child of the test below).
_WAITS = """
import sys, time
from nas.cli.parser import OneLineParser, run_main
def run(_):
    print("running", flush=True)
    time.sleep(60)
    return 0
sys.exit(run_main(run, OneLineParser(prog="x.py"), [], "x.py --resume"))
"""


def test_sigint_stops_a_command_whose_shell_ignored_it() -> None:
    # A non-interactive shell starts background jobs (nohup CMD &) with SIGINT ignored; a
    # Python started so keeps ignoring it, and kill -INT would do nothing.
    proc = subprocess.Popen([sys.executable, "-c", _WAITS], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.stdout is not None and proc.stdout.readline() == "running\n"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.endswith("interrupted; continue with: x.py --resume\n")


def test_sigterm_stops_a_command_as_ctrl_c_does() -> None:
    # kill PID (a scheduler's stop, a closed terminal's session manager): the same one line
    # and exit as Ctrl-C, the finished work kept; not Python's silent death (or Ray's).
    proc = subprocess.Popen([sys.executable, "-c", _WAITS], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "running\n"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err == "\ninterrupted; continue with: x.py --resume\n"


@pytest.mark.parametrize("script", ["search.py", "scale.py"])
def test_clone_wrappers_keep_their_names(script: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {script} ")


def test_effnas_inspect_imports_neither_torch_nor_ray() -> None:
    code = ("import sys\nfrom nas.cli.effnas import main\n"
            "assert main(['inspect', 'efficientnet-b0', '--format', 'timm']) == 0\n"
            "bad = [m for m in ('torch', 'ray') if m in sys.modules]\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "ds_r1_k3_s1_c16_se0.25"


def test_effnas_space_prints_a_space_and_refuses_a_missing_one(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert effnas.main(["space"]) == 0  # the bundled mnasnet-space
    assert "distinct networks" in capsys.readouterr().out
    assert effnas.main(["space", str(ROOT / "configs" / "mnasnet-space.yaml")]) == 0
    assert "distinct networks" in capsys.readouterr().out
    assert effnas.main(["space", str(tmp_path / "none.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
