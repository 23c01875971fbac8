"""No command damages another run: every run folder says what wrote it (nas.core.runs), a
command refuses a folder of another kind or a user's non-empty folder before writing
anything, and an --out that cannot be a folder is one line and exit 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import nas
from nas.cli import fidelity as fidelity_cli
from nas.cli import pipeline as pipeline_cli
from nas.cli import scale as scale_cli
from nas.cli import search as search_cli
from nas.cli import train as train_cli
from nas.cli.effnas import main as effnas_main
from nas.core import runs
from nas.core.errors import ConfigError

SEARCH = ["--target-flops", "400M"]
SCALE = ["--coefficients", "1.2,1.1,1.15", "--baseline", "efficientnet-b0"]
TRAIN = ["efficientnet-b0", "--epochs", "1"]
PIPELINE = ["--target-flops", "400M", "--budgets", "600M,1.2G"]
COMMANDS = {"search": (search_cli, SEARCH), "scale": (scale_cli, SCALE),
            "train": (train_cli, TRAIN), "pipeline": (pipeline_cli, PIPELINE)}


def one_line(capsys, code: int) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (folders as empty entries)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"/")
            for p in sorted(folder.rglob("*"))}


def search_folder(folder: Path, marked: bool) -> Path:
    """A finished search's folder as the search writes it (the files load_run and
    --resume read), with or without the marker (a run written before it existed)."""
    from nas.cli.jobs import dump
    from nas.core.files import config_path
    from nas.core.settings import load
    from nas.search.settings import SearchSettings
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(dump(load(
        SearchSettings, overrides={"target_flops": "400M", "out": str(folder), "name": "s"})))
    (folder / "driver.pt").write_bytes(b"saved driver state")
    row = {"child": 0, "status": "ok", "accuracy": 0.5, "reward": 0.4, "macs": 3.9e8,
           "params": 5e6, "blocks": "b", "tokens": [0, 1]}
    (folder / "children.jsonl").write_text(json.dumps(row) + "\n")
    (folder / "summary.json").write_text(json.dumps({"run": "s", "finished": True}))
    (folder / "best.yaml").write_text(config_path("efficientnet-b0").read_text())
    if marked:
        runs.mark(folder, "search")
    return folder


# --------------------------------------------------------------------------- other kinds


@pytest.mark.parametrize("marked", [True, False], ids=["marked", "before-markers"])
def test_scale_on_a_search_folder_is_refused_and_the_search_stays_whole(capsys, tmp_path,
                                                                         marked):
    run = search_folder(tmp_path / "search", marked)
    before = snapshot(run)
    line = one_line(capsys, scale_cli.main([*SCALE, "--out", str(run)]))
    evidence = runs.MARKER if marked else "driver.pt"
    assert line == (f"error: {run} holds a search ({evidence}), not a scale run; choose a new "
                    f"--out (it is continued with search.py --resume --out {run})")
    line = one_line(capsys, scale_cli.main(["--resume", "--out", str(run)]))
    assert f"continue it with search.py --resume --out {run}" in line
    assert snapshot(run) == before  # config.yaml of the search is not replaced
    data = nas.load_run(run)
    assert data.config["target_flops"] == "400M" and len(data.children) == 1


def test_search_on_a_scale_folder_is_refused_and_the_scale_run_stays_whole(capsys, tmp_path):
    run = tmp_path / "scale"
    assert scale_cli.main([*SCALE, "--out", str(run)]) == 0
    capsys.readouterr()
    assert json.loads((run / runs.MARKER).read_text())["kind"] == "scale"
    before = snapshot(run)
    line = one_line(capsys, search_cli.main([*SEARCH, "--out", str(run)]))
    assert line.startswith(f"error: {run} holds a scale run ({runs.MARKER}), not a search; "
                           "choose a new --out")
    line = one_line(capsys, search_cli.main(["--resume", "--out", str(run)]))
    assert f"continue it with scale.py --resume --out {run}" in line
    assert snapshot(run) == before
    # The scale run is still its own: it continues, and a new one there is refused.
    line = one_line(capsys, scale_cli.main([*SCALE, "--out", str(run)]))
    assert "already holds a scale run" in line and "--resume --out" in line
    assert snapshot(run) == before
    assert scale_cli.main(["--resume", "--out", str(run)]) == 0


@pytest.mark.parametrize("command", ["search", "scale", "train", "pipeline"])
def test_a_folder_of_another_kind_is_refused_by_every_command(capsys, tmp_path, command):
    other = {"search": "train", "scale": "pipeline", "train": "search",
             "pipeline": "scale"}[command]
    folder = tmp_path / "run"
    runs.mark(folder, other)
    (folder / "config.yaml").write_text("theirs: 1\n")
    before = snapshot(folder)
    module, argv = COMMANDS[command]
    line = one_line(capsys, module.main([*argv, "--out", str(folder)]))
    assert f"{folder} holds a" in line and "choose a new --out" in line
    line = one_line(capsys, module.main(["--resume", "--out", str(folder)]))
    assert f"{folder} holds a" in line and "continue it with" in line
    assert snapshot(folder) == before


def test_under_effnas_the_hint_names_the_effnas_command(capsys, tmp_path):
    run = search_folder(tmp_path / "search", marked=True)
    one = one_line(capsys, effnas_main(["train", "--resume", "--out", str(run)]))
    assert one.endswith(f"not a training run; continue it with effnas search --resume --out "
                        f"{run}")


# --------------------------------------------------------------------------- a user's folder


@pytest.mark.parametrize("command", ["search", "scale", "train", "pipeline"])
def test_a_non_empty_folder_that_is_no_run_is_left_untouched(capsys, tmp_path, command):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    (folder / "config.yaml").write_text("mine: true\n")
    before = snapshot(folder)
    module, argv = COMMANDS[command]
    line = one_line(capsys, module.main([*argv, "--out", str(folder)]))
    assert line == (f"error: --out {folder}: the folder is not empty (config.yaml, notes.txt) "
                    "and is no effnas run folder; choose a new --out (or an empty folder), so "
                    "that nothing is written among those files")
    one_line(capsys, module.main(["--resume", "--out", str(folder)]))
    assert snapshot(folder) == before


def test_an_empty_folder_is_adopted_and_marked(capsys, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    assert scale_cli.main([*SCALE, "--out", str(folder)]) == 0
    marker = json.loads((folder / runs.MARKER).read_text())
    assert marker["kind"] == "scale" and marker["effnas_version"] and marker["created"]


def test_fidelity_writes_only_into_its_own_folder(capsys, tmp_path):
    run = search_folder(tmp_path / "search", marked=True)
    before = snapshot(run)
    line = one_line(capsys, fidelity_cli.main([str(run), "--out", str(run)]))
    assert f"{run} holds a search" in line and "not a fidelity run" in line
    scale = tmp_path / "scale"
    runs.mark(scale, "scale")
    line = one_line(capsys, fidelity_cli.main([str(run), "--out", str(scale)]))
    assert "holds a scale run" in line
    assert snapshot(run) == before
    # RUN/fidelity (the default) is a folder of its own kind inside the search's.
    runs.mark(run / "fidelity", "fidelity", run=str(run))
    line = one_line(capsys, search_cli.main(["--resume", "--out", str(run / "fidelity")]))
    assert f"continue it with effnas fidelity {run} --resume --out {run / 'fidelity'}" \
        in line


def test_a_pipeline_folder_holds_runs_of_their_own_kinds(capsys, tmp_path):
    pipe = tmp_path / "pipe"
    runs.mark(pipe, "pipeline")
    (pipe / "pipeline.json").write_text("{}")
    search_folder(pipe / "search", marked=False)
    runs.mark(pipe / "search", "search")
    runs.mark(pipe / "scale", "scale")
    runs.mark(pipe / "train" / "b1" / "seed0", "train")
    assert runs.detect(pipe) == ("pipeline", runs.MARKER)
    before = snapshot(pipe)
    for module, argv in (COMMANDS["scale"], COMMANDS["search"], COMMANDS["train"]):
        assert "holds a pipeline" in one_line(capsys, module.main([*argv, "--out", str(pipe)]))
    # Its stages are refused to the other commands and continued by their own.
    line = one_line(capsys, scale_cli.main(["--resume", "--out", str(pipe / "search")]))
    assert f"continue it with search.py --resume --out {pipe / 'search'}" in line
    line = one_line(capsys, search_cli.main(["--resume", "--out", str(pipe / "search")]))
    assert "cannot read the saved state" in line  # past the folder check, to the state
    line = one_line(capsys, train_cli.main(["--resume", "--out", str(pipe / "scale")]))
    assert "holds a scale run" in line
    assert "no effnas run folder" in one_line(
        capsys, train_cli.main([*TRAIN, "--out", str(pipe / "train")]))
    assert snapshot(pipe) == before


@pytest.mark.parametrize("files,kind,evidence", [
    ({"pipeline.json": "{}", "search/driver.pt": ""}, "pipeline", "pipeline.json"),
    ({"last.pt": "", "train.csv": ""}, "train", "last.pt"),
    ({"supernet/supernet.pt": "", "driver.pt": ""}, "oneshot", "supernet/"),
    ({"config.yaml": "x: 1\n", "grid/driver.pt": ""}, "scale", "grid/"),
    ({"family-budgets/b1.yaml": ""}, "scale", "family-budgets/"),
    ({"driver.pt": "", "trainings.jsonl": ""}, "fidelity", "trainings.jsonl"),
    ({"driver.pt": "", "children.jsonl": ""}, "search", "driver.pt"),
    ({"config.yaml": "target_flops: 400M\nstrategy: ppo\nevaluator: oneshot\n"}, "oneshot",
     "config.yaml"),
    ({"config.yaml": "rule: budget\ncoefficients: null\n"}, "scale", "config.yaml"),
    ({"notes.txt": "mine"}, None, None),
    ({"config.yaml": "- not a run's\n"}, None, None),
])
def test_folders_written_before_markers_are_recognised_by_their_files(tmp_path, files, kind,
                                                                       evidence):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert runs.detect(tmp_path) == (None if kind is None else (kind, evidence))


# --------------------------------------------------------------------------- odd --out paths


def _odd(tmp_path: Path, case: str) -> tuple[Path, str]:
    """An --out that cannot be a run folder, and what its one line must say."""
    if case == "under-a-file":
        (tmp_path / "somefile").write_text("x")
        return tmp_path / "somefile" / "run", f"{tmp_path / 'somefile'} is a file, not a folder"
    if case == "a-file":
        (tmp_path / "somefile").write_text("x")
        return tmp_path / "somefile", f"{tmp_path / 'somefile'} is a file, not a folder"
    if case == "symlink-loop":
        os.symlink(tmp_path / "loop", tmp_path / "loop")
        return tmp_path / "loop", f"{tmp_path / 'loop'} is a symbolic link loop"
    if case == "under-a-symlink-loop":
        os.symlink(tmp_path / "loop", tmp_path / "loop")
        return tmp_path / "loop" / "run", f"{tmp_path / 'loop'} is a symbolic link loop"
    if case == "broken-link":
        os.symlink(tmp_path / "gone", tmp_path / "link")
        return tmp_path / "link", f"{tmp_path / 'link'} is a symbolic link to a missing"
    assert case == "not-writable"  # refused to root too: /proc/sys takes no new folders
    assert not os.access("/proc/sys", os.W_OK)
    return Path("/proc/sys/effnas-run"), "cannot write in /proc/sys (permission denied)"


ODD = ["under-a-file", "a-file", "symlink-loop", "under-a-symlink-loop", "broken-link",
       "not-writable"]


@pytest.mark.parametrize("command", ["search", "scale", "train", "pipeline"])
@pytest.mark.parametrize("case", ODD)
def test_an_out_that_cannot_be_a_folder_is_one_line_and_exit_2(capsys, tmp_path, command,
                                                                case):
    out, says = _odd(tmp_path, case)
    before = snapshot(tmp_path)
    module, argv = COMMANDS[command]
    for extra in ([], ["--resume"]):
        line = one_line(capsys, module.main([*argv, *extra, "--out", str(out)]))
        assert f"--out {out}" in line or str(out) in line, line
        assert says in line and "choose a new --out" in line, line
    assert snapshot(tmp_path) == before


def test_a_read_only_file_system_is_named(monkeypatch, tmp_path):
    # Root may write anywhere but on a read-only mount; one is simulated.
    real_access, real_statvfs = os.access, os.statvfs
    ro = os.statvfs_result((0,) * 8 + (os.ST_RDONLY, 255))
    monkeypatch.setattr(os, "access", lambda p, m, **k: False if Path(p) == tmp_path
                        else real_access(p, m, **k))
    monkeypatch.setattr(os, "statvfs", lambda p: ro if Path(p) == tmp_path else real_statvfs(p))
    with pytest.raises(ConfigError) as e:
        runs.check_path(tmp_path / "run")
    assert str(e.value) == (f"out={str(tmp_path / 'run')!r}: cannot write in {tmp_path} (it is "
                            "on a read-only file system); choose a new out=")


def test_the_python_api_names_the_keyword(tmp_path):
    (tmp_path / "somefile").write_text("x")
    bad = tmp_path / "somefile" / "run"
    for call in (lambda: nas.run_train("efficientnet-b0", epochs=1, out=bad),
                 lambda: nas.run_scale(coefficients=(1.2, 1.1, 1.15), out=bad),
                 lambda: nas.run_search(target_flops="400M", out=bad)):
        with pytest.raises(ConfigError) as e:
            call()
        assert str(e.value).startswith(f"out={str(bad)!r}: ") and "--out" not in str(e.value)
        assert "choose a new out=" in str(e.value)
    run = search_folder(tmp_path / "search", marked=True)
    with pytest.raises(ConfigError) as e:
        nas.run_search(target_flops="400M", out=run)
    assert str(e.value) == (f"{run} already holds a search ({'driver.pt'}); continue it with "
                            f"nas.run_search(resume=True, out={str(run)!r}), or choose a new "
                            "out=")


# --------------------------------------------------------------------------- a real search


@pytest.mark.slow
def test_a_real_search_survives_the_other_commands_and_still_resumes(capsys, tiny_fmnist,
                                                                      tmp_path):
    import subprocess
    import sys
    root = Path(__file__).resolve().parent.parent
    run = tmp_path / "search"
    cmd = [sys.executable, str(root / "search.py"), "--target-flops", "400M", "--preset",
           "smoke", "--set", "proxy.train_subset=256", "--set", "proxy.resolution=16",
           "--set", "data.val_size=100", "--set", "reference=null", "--data",
           str(tiny_fmnist), "--out", str(run), "--budget", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads((run / runs.MARKER).read_text())["kind"] == "search"
    before = snapshot(run)
    assert "holds a search" in one_line(capsys, scale_cli.main([*SCALE, "--out", str(run)]))
    assert "holds a search" in one_line(capsys, train_cli.main([*TRAIN, "--out", str(run)]))
    assert "holds a search" in one_line(capsys, pipeline_cli.main([*PIPELINE, "--out",
                                                                   str(run)]))
    assert "holds a search" in one_line(capsys, fidelity_cli.main([str(run), "--out",
                                                                   str(run)]))
    assert "already holds a search" in one_line(capsys, search_cli.main(
        ["--target-flops", "400M", "--out", str(run)]))
    assert snapshot(run) == before
    assert len(nas.load_run(run).children) == 2
    more = subprocess.run([sys.executable, str(root / "search.py"), "--resume", "--out", str(run),
                           "--budget", "3"], capture_output=True, text=True, timeout=600)
    assert more.returncode == 0, more.stderr
    assert len(nas.load_run(run).children) == 3


@pytest.mark.slow
def test_a_real_pipeline_marks_its_stages_with_their_own_kinds(capsys, tiny_fmnist, tmp_path):
    import subprocess
    import sys
    root = Path(__file__).resolve().parent.parent
    pipe = tmp_path / "pipe"
    cmd = [sys.executable, "-m", "nas.cli.effnas", "pipeline", "--preset", "smoke", "--set",
           "data.val_size=100", "--set", "train.train_subset=128", "--set",
           "train.resolution=16", "--set", "train.epochs=1", "--data", str(tiny_fmnist),
           "--baseline", "efficientnet-b0", "--coefficients", "1.2,1.1,1.15", "--budgets",
           "600M", "--out", str(pipe)]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    kinds = {str(p.parent.relative_to(pipe)): json.loads(p.read_text())["kind"]
             for p in pipe.rglob(runs.MARKER)}
    trained = [k for k in kinds if k.startswith("train/")]
    assert kinds == {".": "pipeline", "scale": "scale", **{k: "train" for k in trained}}
    assert trained and all(k.endswith("/seed0") for k in trained)  # the member, the baseline
    before = snapshot(pipe)
    # Each stage is refused to the other commands; the pipeline folder to all of them.
    line = one_line(capsys, search_cli.main([*SEARCH, "--out", str(pipe / "scale")]))
    assert "holds a scale run" in line
    line = one_line(capsys, scale_cli.main([*SCALE, "--out", str(pipe / trained[0])]))
    assert "holds a training run" in line
    assert "holds a pipeline" in one_line(capsys, train_cli.main([*TRAIN, "--out", str(pipe)]))
    assert snapshot(pipe) == before
    # A finished training stage continued by its own command: nothing left to train.
    again = subprocess.run([sys.executable, "-m", "nas.cli.effnas", "pipeline", "--resume",
                            "--out", str(pipe)], cwd=root, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr


def test_load_run_names_what_another_run_folder_is(tmp_path):
    runs.mark(tmp_path / "scale", "scale")
    with pytest.raises(ConfigError) as e:
        nas.load_run(tmp_path / "scale")
    assert str(e.value).startswith(f"{tmp_path / 'scale'}: a scale run folder ({runs.MARKER}), "
                                   "not a search's")


def test_a_folder_that_cannot_be_made_after_the_checks_is_one_line(tmp_path):
    (tmp_path / "somefile").write_text("x")
    with pytest.raises(ConfigError) as e:
        runs.mark(tmp_path / "somefile" / "run", "train")
    assert str(e.value).startswith(f"out={str(tmp_path / 'somefile' / 'run')!r}: cannot create "
                                   "the run folder (")
    assert (tmp_path / "somefile").read_text() == "x"
