"""search.py's bad-input paths: one line, non-zero exit, nothing started or lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import search

ROOT = Path(__file__).resolve().parent.parent


def run_main(capsys, *argv: str) -> tuple[int, str]:
    code = search.main(list(argv))
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("argv,needle", [
    (["--target-flops", "abc"], "--target-flops"),
    (["--target-flops=-5M"], "--target-flops"),
    (["--target-flops", "400M", "--no-such-flag"], "unrecognized arguments"),
    (["--target-flops", "400M", "--budget", "many"], "--budget"),
    ([], "--target-flops is required"),
    (["--target-flops", "400M", "--set", "foo=1"], "unknown key 'foo'"),
    (["--target-flops", "400M", "--set", "reward.bogus=1"], "unknown key 'reward.bogus'"),
    (["--target-flops", "400M", "--set", "proxy.epochs=two"], "epochs"),
    (["--target-flops", "400M", "--strategy", "annealing"], "--strategy"),
    (["--target-flops", "400M", "--workers", "0"], "workers"),
    (["--target-flops", "400M", "--preset", "nope"], "--preset"),
    (["--target-flops", "400M", "--config", "/nonexistent/x.yaml"], "file not found"),
    (["--resume"], "--resume needs --out"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle):
    code, err = run_main(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err


def test_missing_data_set_names_the_install_command(capsys, tmp_path):
    code, err = run_main(capsys, "--target-flops", "400M", "--data", str(tmp_path / "none"),
                         "--out", str(tmp_path / "run"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "apt-get install dataset-fashion-mnist" in err
    assert not (tmp_path / "run" / "driver.pt").exists()


def test_resume_of_an_empty_folder_and_overwrite_protection(capsys, tmp_path):
    code, err = run_main(capsys, "--resume", "--out", str(tmp_path))
    assert code == 2 and "to continue" in err
    (tmp_path / "driver.pt").write_bytes(b"x")
    code, err = run_main(capsys, "--target-flops", "400M", "--out", str(tmp_path))
    assert code == 2 and "already holds a search" in err
    assert (tmp_path / "driver.pt").read_bytes() == b"x"  # nothing lost


def test_bad_yaml_config_key_names_file_and_key(capsys, tmp_path):
    cfg = tmp_path / "my.yaml"
    cfg.write_text("budget: 3\nproxy:\n  epoch: 2\n")
    code, err = run_main(capsys, "--target-flops", "400M", "--config", str(cfg))
    assert code == 2 and "epoch" in err and len(err.strip().splitlines()) == 1


def test_help_runs_as_a_script():
    out = subprocess.run([sys.executable, str(ROOT / "search.py"), "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--target-flops" in out and "--resume" in out
