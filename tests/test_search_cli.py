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
    (["--target-flops", "400M", "--budg", "5"], "unrecognized arguments: --budg"),
    (["--target-flop", "400M"], "did you mean --target-flops?"),
    (["--target-flops", "400M", "--budget", "many"], "--budget"),
    (["--target-flops", "400M", "--time-budget", "soon"], "--time-budget: got 'soon'"),
    (["--target-flops", "400M", "--time-budget", "0m"], "--time-budget: got '0m'"),
    (["--target-flops", "400M", "--set", "time_budget=-5"], "--time-budget: got -5"),
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


# --------------------------------------------------------------------------- no child succeeded


def _all_failed_driver():
    import nas
    from controller import make_strategy
    from nas.search.driver import ChildDriver, Target
    from nas.search.reward import RewardConfig
    from search_space import SearchSpace

    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    d = ChildDriver(lambda t: (space.decode(t), {}), make_strategy("random", space.sizes()),
                    budget=3, reward=RewardConfig(target_macs=400_000_000),
                    target=Target(), reference=nas.load_spec("efficientnet-b0"))
    trial = 0
    while d.suggest(f"t{trial}") not in (None, "FINISHED"):
        d.complete(f"t{trial}", {"status": "failed", "error": "SpecError: resolution: got 4"})
        trial += 1
    assert d.finished() and not d.best(1)
    return d


def _strict_json(text: str):
    import json

    def no_constants(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=no_constants)


def test_a_search_where_every_child_failed_writes_valid_json(tmp_path):
    from nas.core.files import json_text
    from nas.search.run import summarize
    from nas.search.runlog import write_tables

    d = _all_failed_driver()
    summary = summarize(d, "run", 1.0)
    loaded = _strict_json(json_text(summary, indent=2))  # the reference's NaN accuracy: null
    assert loaded["best"] is None and loaded["reference"]["accuracy"] is None
    assert loaded["children_failed"] == loaded["children_trained"] == 3
    assert loaded["most_common_error"] == {"error": "SpecError: resolution: got 4", "children": 3}
    write_tables(d.records, tmp_path)
    rows = [_strict_json(line) for line in (tmp_path / "children.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["accuracy"] is None for r in rows)


def test_a_search_where_every_child_failed_exits_1_on_one_line(capsys, tmp_path, monkeypatch):
    import nas.search.run as run
    from nas.search.run import SearchOutcome, summarize

    summary = summarize(_all_failed_driver(), "run", 1.0)
    monkeypatch.setattr(run, "search", lambda s, resume, text: SearchOutcome(s.out, True, summary))
    out = tmp_path / "run"
    code = search.main(["--target-flops", "400M", "--out", str(out)])
    cap = capsys.readouterr()
    assert code == 1 and "best spec" not in cap.out and "best.yaml" not in cap.out + cap.err
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the search finished but no child "
                                                   "trained successfully (3 of 3 failed")
    assert "SpecError: resolution: got 4" in lines[0]
    assert f"error column of {out / 'children.csv'}" in lines[0]


# --------------------------------------------------------------------------- folders, resume, Ray


def _saved_run(folder: Path, command: str) -> Path:
    """A run folder with the config.yaml that command writes (defaults resolved)."""
    from nas.cli.jobs import dump
    from nas.core.settings import load
    from nas.search.settings import ScaleSettings, SearchSettings
    over = {"out": str(folder), "name": "x"}
    if command == "search":
        over["target_flops"] = "400M"
    folder.mkdir(parents=True, exist_ok=True)
    cls = SearchSettings if command == "search" else ScaleSettings
    (folder / "config.yaml").write_text(dump(load(cls, overrides=over)))
    return folder


def _one_line_error(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_out_under_a_regular_file_is_one_line(capsys, tmp_path):
    (tmp_path / "somefile").write_text("x")
    for extra in ([], ["--resume"]):
        code, err = run_main(capsys, "--target-flops", "400M", *extra,
                             "--out", str(tmp_path / "somefile" / "run"))
        line = _one_line_error(code, err)
        assert f"{tmp_path / 'somefile'} is a file, not a folder" in line
    assert (tmp_path / "somefile").read_text() == "x"


@pytest.mark.parametrize("content,says", [(b"", "it is empty"),
                                          (b"garbage", "cannot read the saved state")])
def test_resume_from_an_empty_or_corrupt_state_is_one_line(capsys, tmp_path, content, says):
    out = _saved_run(tmp_path / "run", "search")
    (out / "driver.pt").write_bytes(content)
    before = sorted(p.name for p in out.iterdir())
    code, err = run_main(capsys, "--resume", "--out", str(out))
    line = _one_line_error(code, err)
    assert says in line and str(out / "driver.pt") in line
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written or lost
    assert (out / "driver.pt").read_bytes() == content


def test_resume_from_a_state_of_another_format_is_one_line(capsys, tmp_path):
    import torch
    out = _saved_run(tmp_path / "run", "search")
    torch.save({"format": 99}, out / "driver.pt")
    code, err = run_main(capsys, "--resume", "--out", str(out))
    assert "does not fit this run" in _one_line_error(code, err)


def test_resume_of_a_scale_run_says_which_command(capsys, tmp_path):
    out = _saved_run(tmp_path / "scale-run", "scale")
    (out / "scaling.yaml").write_text("x")
    code, err = run_main(capsys, "--resume", "--out", str(out))
    assert _one_line_error(code, err) == (
        f"error: {out} holds a scale run (scaling.yaml), not a search; continue it with "
        f"scale.py --resume --out {out}")


def test_resume_of_a_scale_run_names_the_command_as_typed(capsys, tmp_path):
    from nas.cli.effnas import main
    out = _saved_run(tmp_path / "scale-run", "scale")
    (out / "scaling.yaml").write_text("x")
    code = main(["search", "--resume", "--out", str(out)])
    assert _one_line_error(code, capsys.readouterr().err).endswith(
        f"continue it with effnas scale --resume --out {out}")


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def test_address_of_a_dead_cluster_fails_fast_on_one_line(capsys, tmp_path):
    import time
    port = _free_port()
    t0 = time.monotonic()
    code, err = run_main(capsys, "--target-flops", "400M", "--address", f"127.0.0.1:{port}",
                         "--out", str(tmp_path / "run"))
    assert time.monotonic() - t0 < 10
    line = _one_line_error(code, err)
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("address,says", [
    ("nohost", "expected HOST:PORT"), ("10.0.0.1:notaport", "expected HOST:PORT"),
    ("ray://127.0.0.1:{port}", "no Ray cluster answers there")])
def test_check_address(address, says, monkeypatch):
    from nas.core.errors import ConfigError
    from nas.ray.runtime import check_address
    with pytest.raises(ConfigError, match=says):
        check_address(address.format(port=_free_port()))
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{_free_port()}")
    with pytest.raises(ConfigError, match="^RAY_ADDRESS 127.0.0.1"):
        check_address(None)
    monkeypatch.delenv("RAY_ADDRESS")
    check_address(None)  # a local Ray: nothing to check
    check_address("local")


def test_proxy_resolution_below_what_a_spec_takes_is_refused(capsys, tmp_path):
    code, err = run_main(capsys, "--target-flops", "400M", "--set", "proxy.resolution=4",
                         "--out", str(tmp_path / "run"))
    line = _one_line_error(code, err)
    assert "resolution: got 4; use an integer >= 8" in line
    assert not (tmp_path / "run").exists()


def test_the_dry_plan_names_what_would_not_build():
    import nas
    from nas.core.errors import ConfigError
    from nas.search.settings import check_proxy_plan
    from nas.training.recipe import Recipe
    b0 = nas.load_spec("efficientnet-b0")
    recipe = Recipe(resolution=8, width_mult=0.5)
    check_proxy_plan(recipe, [("B0", b0, None), ("B0", b0, 9)], "proxy.resolution")
    with pytest.raises(ConfigError) as e:
        check_proxy_plan(recipe, [("B0", b0, None), ("candidate 3", b0, 4)], "data.image_size")
    assert str(e.value).startswith("data.image_size: candidate 3 would fail to build on every "
                                   "worker (")
