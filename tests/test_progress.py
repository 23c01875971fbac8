"""Progress on a terminal (a tqdm bar that updates in place, with the time left) and in a log
file (plain lines, no carriage returns): the search and grid line, nas.train's epochs and the
pipeline's models."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from nas.core.progress import Bar, format_duration, interactive
from nas.search.runlog import Progress

ROOT = Path(__file__).resolve().parent.parent
needs_tqdm = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("tqdm") is None,
    reason="tqdm is not installed (a dependency: run tools/setup.sh)")

SCRIPT = ("import time; from nas.search.runlog import Progress\n"
          "p = Progress(3, 2)\n"
          "for i in range(1, 4):\n"
          "    p.update(i, 0.5 + i / 10, 300_000_000, 0, 10.0)\n"
          "p.close()\n"
          "print('done')\n")


ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_one_readable_line_per_update():
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                          text=True, env=ENV)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "\r" not in done.stdout and len(lines) == 4 and lines[-1] == "done"
    assert lines[0].startswith("children 1/3  best reward 0.6000 (300.0M MACs)  failed 0  "
                               "elapsed 0m00s, ~0m10s left")
    assert lines[2].startswith("children 3/3  best reward 0.8000") and "left" not in lines[2]


def test_a_stream_that_is_not_a_terminal_gets_no_bar():
    stream = io.StringIO()
    assert not interactive(stream) and not Bar(5, "x", stream).drawn
    p = Progress(2, 1, stream=stream, noun="candidates", metric="accuracy")
    p.update(1, None, None, 1, None)
    p.close()
    assert stream.getvalue() == "candidates 1/2  best accuracy -  failed 1  elapsed 0m00s\n"


def test_a_time_budget_caps_the_time_left():
    stream = io.StringIO()
    left = [600.0]
    p = Progress(1000, 2, stream=stream, time_left=lambda: left[0])
    p.update(10, 0.5, 1, 0, 20.0)   # 990 children x 20 s / 2 workers, but 600 s remain
    left[0] = -30.0                 # spent: the children in training still finish
    p.update(11, 0.5, 1, 0, 20.0)
    p.close()
    first, second = stream.getvalue().splitlines()
    assert first.endswith("~10m20s left") and second.endswith("~0m20s left")


@needs_tqdm
def test_a_terminal_gets_a_bar_that_updates_in_place():
    stream = FakeTTY()
    p = Progress(3, 2, stream=stream)
    assert p.bar.drawn
    for i in range(1, 4):
        p.update(i, 0.5, 300_000_000, 0, 30.0, stopped=1)
    p.close()
    out = stream.getvalue()
    assert "\r" in out and out.endswith("\n") and out.count("\n") == 1
    assert "children 3/3 |" in out and "best reward 0.5000 (300.0M MACs)  failed 0  " \
        "stopped 1  elapsed" in out
    assert "children 1/3 |" in out and "~0m30s left" in out  # 2 left * 30 s / 2 workers


@needs_tqdm
def test_a_real_terminal(tmp_path):
    import fcntl
    import pty
    import struct
    import termios
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=ROOT, stdout=follower,
                            stderr=subprocess.PIPE, env=ENV)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(leader)
    out = b"".join(chunks).decode()
    assert proc.returncode == 0
    assert "\r" in out and "children 3/3 |" in out and out.rstrip().endswith("done")


@needs_tqdm
def test_lines_written_through_a_bar_appear_above_it():
    stream = FakeTTY()
    bar = Bar(4, "epochs", stream, lazy=True)
    assert not bar.drawn and stream.getvalue() == ""  # nothing until it starts
    assert bar.start(1)
    bar.write("epoch   2/4  loss 1.0")
    bar.update(2, "val 0.5000, ~0m10s left")
    bar.close()
    out = stream.getvalue()
    assert "epoch   2/4  loss 1.0\n" in out and "epochs 2/4 |" in out
    assert "val 0.5000, ~0m10s left" in out


TINY_SPEC = """\
format_version: 1
name: tiny
resolution: 16
stem: 8
stem_stride: 1
head: 32
stages:
  - {op: ds, kernel: 3, stride: 1, out: 8, repeats: 1}
"""


@needs_tqdm
def test_nas_train_draws_an_epoch_bar_on_a_terminal(monkeypatch, tmp_path, tiny_fmnist):
    import nas
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stdout", tty)
    result = nas.run_train(spec, data=tiny_fmnist, dataset="fashion-mnist", val_size=100,
                           batch_size=50, optimizer="adam", lr=0.01, threads=1, epochs=2,
                           export="none", out=tmp_path / "run")
    monkeypatch.undo()
    out = tty.getvalue()
    assert result.status == "completed"
    assert "epochs 2/2 |" in out and "s per epoch" in out and "\r" in out
    assert out.count("epoch   1/2") >= 1 and "training tiny" in out


def test_nas_train_in_a_log_keeps_its_epoch_lines(tmp_path, tiny_fmnist, capsys):
    import nas
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    nas.run_train(spec, data=tiny_fmnist, dataset="fashion-mnist", val_size=100,
                  batch_size=50, optimizer="adam", lr=0.01, threads=1, epochs=2,
                  export="none", out=tmp_path / "run")
    out = capsys.readouterr().out
    assert "\r" not in out and "epochs 2/2" not in out
    assert [line[:11] for line in out.splitlines() if line.startswith("epoch ")] == [
        "epoch   1/2", "epoch   2/2"]


@needs_tqdm
def test_the_pipeline_draws_a_bar_over_its_models(monkeypatch, tmp_path):
    from nas.pipeline import run as pipeline
    from nas.pipeline.state import PipelineState
    state = PipelineState.new(tmp_path, "p")
    state.stage("scale")["models"] = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    p = SimpleNamespace(train=SimpleNamespace(seeds=(0,)), out=tmp_path)
    monkeypatch.setattr(pipeline, "_train_one", lambda *a: True)
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stdout", tty)
    assert pipeline._train_stage(p, state, False, pipeline._print) is not None
    monkeypatch.undo()
    out = tty.getvalue()
    assert "models 3/3 |" in out and "s per model" in out and "models 1/3 |" in out


def test_durations():
    assert format_duration(65) == "1m05s" and format_duration(3725) == "1h02m"
    assert format_duration(-3) == "0m00s"
