"""Stopping what dead local Ray sessions of this project left running, without Ray: fake
sessions in a temporary folder, fake agents as real processes (Linux /proc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas.ray import leftovers

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

AGENT = """
import sys, time
handle = open(sys.argv[1], "a")  # holds a log file of its session, as Ray's agents do
print("ready", flush=True)
time.sleep(120)
"""


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def fake_session(root: Path, name: str, driver_pid: int, driver_start: int | None) -> Path:
    session = root / f"session_{name}"
    (session / "logs").mkdir(parents=True)
    (session / leftovers.MARKER).write_text(json.dumps(
        {"driver_pid": driver_pid, "driver_start": driver_start, "run": "runs/x",
         "stopped": None}))
    return session


def start(argv: list[str]) -> subprocess.Popen:
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


@pytest.fixture
def agent_script(tmp_path: Path) -> Path:
    path = tmp_path / "site" / "ray" / "dashboard" / "agent.py"  # a program of Ray's package
    path.parent.mkdir(parents=True)
    path.write_text(AGENT)
    return path


def test_leftovers_of_dead_sessions_are_stopped_and_logged(tmp_path, agent_script):
    root = tmp_path / "ray"
    me = leftovers._stat(os.getpid())
    dead = fake_session(root, "dead", dead_pid(), None)
    live = fake_session(root, "live", os.getpid(), me[1])  # this process: a live driver
    reused = fake_session(root, "reused", os.getpid(), me[1] + 1)  # same pid, other process
    unmarked = root / "session_unmarked"
    (unmarked / "logs").mkdir(parents=True)  # not started by this project: no marker
    procs = {name: start([sys.executable, str(agent_script), str(s / "logs" / "agent.log")])
             for name, s in (("dead", dead), ("live", live), ("reused", reused),
                             ("unmarked", unmarked))}
    # Not a Ray program, though it holds a file of the dead session (tail -f on a log).
    reader = start([sys.executable, "-c", AGENT, str(dead / "logs" / "raylet.out")])
    try:
        log = tmp_path / "run" / "ray.log"
        cleaned = leftovers.stop_dead_sessions(root, log)
        assert {s.name for s, _ in cleaned} == {"session_dead", "session_reused"}
        for name in ("dead", "reused"):
            assert procs[name].wait(timeout=10) is not None
        for p in (procs["live"], procs["unmarked"], reader):
            assert p.poll() is None  # untouched
        lines = log.read_text().splitlines()
        assert len(lines) == 2 and all("stopped 1 leftover process(es) of the dead local Ray "
                                       "session" in line for line in lines)
        assert str(dead) in log.read_text() and str(procs["dead"].pid) in log.read_text()
        marker = json.loads((dead / leftovers.MARKER).read_text())
        assert marker["stopped"] == [procs["dead"].pid]
        # Done once: the next start finds nothing more to do there.
        assert [s.name for s, _ in leftovers.stop_dead_sessions(root, log)] == []
    finally:
        for p in (*procs.values(), reader):
            if p.poll() is None:
                p.kill()
            p.wait()


def test_record_session_writes_the_marker_and_a_log_line(tmp_path):
    session = tmp_path / "ray" / "session_x"
    session.mkdir(parents=True)
    leftovers.record_session(session, tmp_path / "run" / "ray.log", tmp_path / "run")
    marker = json.loads((session / leftovers.MARKER).read_text())
    assert marker["driver_pid"] == os.getpid()
    assert marker["driver_start"] == leftovers._stat(os.getpid())[1]
    assert f"started local Ray session {session}" in (tmp_path / "run" / "ray.log").read_text()
    # This driver is alive: its session is left alone.
    assert leftovers.stop_dead_sessions(tmp_path / "ray", None) == []


def test_no_proc_or_no_ray_folder_does_nothing(tmp_path, monkeypatch):
    assert leftovers.stop_dead_sessions(tmp_path / "none", None) == []
    monkeypatch.setattr(leftovers, "PROC", tmp_path / "no-proc")
    fake_session(tmp_path / "ray", "dead", dead_pid(), None)
    t0 = time.monotonic()
    assert leftovers.stop_dead_sessions(tmp_path / "ray", None) == []
    assert time.monotonic() - t0 < 1


def test_ray_temp_root_follows_rays_rule(monkeypatch):
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.setenv("TMPDIR", "/var/tmp")
    assert leftovers.ray_temp_root() == Path("/var/tmp/ray")
    monkeypatch.setenv("RAY_TMPDIR", "/scratch")
    assert leftovers.ray_temp_root() == Path("/scratch/ray")
