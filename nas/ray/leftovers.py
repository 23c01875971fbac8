"""What a killed search leaves running of its local Ray, and stopping it at the next start.

Measured (Ray 2.60, Linux): after ``kill -9`` of a driver that started a local Ray, the GCS
server, raylet, monitor, log monitor, dashboard and workers exit, but two children of the
raylet stay alive, re-parented to init: ``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent``
(about 95 MB and 80 MB resident), and they had not exited 8 s after a SIGTERM. They stay
for good. (Tests that saw them gone had another search start beside them, which stopped
them as this module does: it reads every session under the same temp folder.) Their
process titles no longer name their session; their open files do (``<session>/logs/...``).

So when the project starts a fresh local Ray it writes a marker into Ray's session folder
(:data:`MARKER`: the driver's PID and start time, and the run folder). The next fresh start
reads the markers under Ray's temp folder, and for each session whose driver is dead (no
such PID, or a PID reused by a process that started at another time) stops this user's Ray
processes (titled ``ray::...`` or running a program of Ray's package) that still hold files
in, or name, that session's folder: SIGTERM, then SIGKILL after :data:`GRACE` seconds. A
live driver's session, another user's processes, a cluster joined with ``--address`` and
sessions without the marker (not started by this project) are never touched. What was
stopped is logged in the run folder's ``ray.log`` and in the marker, which is then marked
done. Linux only (it reads ``/proc``); elsewhere it does nothing. Ray-free and torch-free.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator

from nas.core.files import write_text_atomic

MARKER = "effnas-driver.json"
GRACE = 3.0  # seconds between SIGTERM and SIGKILL
PROC = Path("/proc")


def ray_temp_root() -> Path:
    """Where a local Ray puts its sessions (Ray's own rule: ``RAY_TMPDIR``, on Linux
    ``TMPDIR``, else ``/tmp``; then ``ray``)."""
    if os.environ.get("RAY_TMPDIR"):
        base = os.environ["RAY_TMPDIR"]
    elif sys.platform.startswith("linux") and os.environ.get("TMPDIR"):
        base = os.environ["TMPDIR"]
    else:
        base = "/tmp"
    return Path(base) / "ray"


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a process, None if there is none."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return fields[0], int(fields[19])


def _alive(pid: int, start: int | None) -> bool:
    """The process ``pid`` runs, is not a zombie and (given ``start``) is the same one."""
    st = _stat(pid)
    return st is not None and st[0] != "Z" and (start is None or st[1] == start)


def _log(log_file: Path | None, line: str) -> None:
    if log_file is None:
        return
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a", encoding="utf-8") as f:
            f.write(f"{datetime.now().isoformat(timespec='seconds')} {line}\n")
    except OSError:
        pass  # the log is a record, not a reason to stop a run


def record_session(session_dir: Path, log_file: Path | None, run_dir: Path | None) -> None:
    """Mark ``session_dir`` as started by this driver (see the module docstring)."""
    pid = os.getpid()
    st = _stat(pid)
    data = {"driver_pid": pid, "driver_start": None if st is None else st[1],
            "run": None if run_dir is None else str(run_dir.resolve()), "stopped": None}
    try:
        write_text_atomic(session_dir / MARKER, json.dumps(data) + "\n")
    except OSError:
        return
    _log(log_file, f"started local Ray session {session_dir} (driver pid {pid})")


def _argv(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _is_ray(argv: list[str], root: str) -> bool:
    """A Ray process: titled ``ray::...`` or running a program of Ray's package (not merely
    reading a file under Ray's temp folder, as ``tail -f`` on a log would)."""
    if not argv:
        return False
    if argv[0].startswith("ray::"):
        return True
    return any("/ray/" in a and not a.startswith(root) for a in argv[:3])


def _holds(pid: int, argv: list[str], session: str) -> bool:
    """Whether process ``pid`` names ``session`` in its arguments or holds a file in it."""
    inside = session + "/"
    if any(a == session or inside in a or a.endswith("=" + session) for a in argv):
        return True
    try:
        for fd in (PROC / str(pid) / "fd").iterdir():
            try:
                if os.readlink(fd).startswith(inside):
                    return True
            except OSError:
                continue
    except OSError:
        return False
    return False


def session_processes(session_dir: Path) -> list[tuple[int, str]]:
    """(pid, name) of this user's live Ray processes that belong to ``session_dir``."""
    session = str(session_dir).rstrip("/")
    root = str(session_dir.parent)
    me, uid = os.getpid(), os.getuid()
    found = []
    for pid in _pids():
        if pid == me:
            continue
        try:
            if (PROC / str(pid)).stat().st_uid != uid:
                continue
        except OSError:
            continue
        argv = _argv(pid)
        if _alive(pid, None) and _is_ray(argv, root) and _holds(pid, argv, session):
            try:
                name = (PROC / str(pid) / "comm").read_text().strip()
            except OSError:
                name = "?"
            found.append((pid, name))
    return found


def ray_processes() -> list[int]:
    """The pids of this user's live Ray processes, of any session (a search that just
    ended stops its cluster over a few seconds)."""
    root = str(ray_temp_root())
    me, uid = os.getpid(), os.getuid()
    found = []
    for pid in _pids():
        try:
            if pid == me or (PROC / str(pid)).stat().st_uid != uid:
                continue
        except OSError:
            continue
        if _alive(pid, None) and _is_ray(_argv(pid), root):
            found.append(pid)
    return found


def _pids() -> Iterator[int]:
    try:
        names = [p.name for p in PROC.iterdir()]
    except OSError:
        return
    for name in names:
        if name.isdigit():
            yield int(name)


def _stop(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL what is still alive after :data:`GRACE` seconds."""
    starts = {p: (_stat(p) or ("", None))[1] for p in pids}
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline and any(_alive(p, starts[p]) for p in pids):
        time.sleep(0.1)
    for p in pids:
        if _alive(p, starts[p]):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass


def stop_dead_sessions(root: Path, log_file: Path | None
                       ) -> list[tuple[Path, list[tuple[int, str]]]]:
    """Stop the leftover processes of every dead local session of this project under
    ``root``; returns (session folder, stopped processes) for each session cleaned."""
    if not PROC.is_dir() or not root.is_dir():
        return []
    cleaned = []
    for marker in sorted(root.glob(f"session_*/{MARKER}")):
        if marker.parent.is_symlink():  # session_latest
            continue
        try:
            data = json.loads(marker.read_text())
            pid, start = int(data["driver_pid"]), data.get("driver_start")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if data.get("stopped") is not None or _alive(pid, start):
            continue
        session = marker.parent
        procs = session_processes(session)
        if procs:
            _stop([p for p, _ in procs])
            names = ", ".join(f"{p} {n}" for p, n in procs)
            run = f", run {data['run']}" if data.get("run") else ""
            _log(log_file, f"stopped {len(procs)} leftover process(es) of the dead local Ray "
                           f"session {session} (driver pid {pid}{run}): {names}")
        data["stopped"] = [p for p, _ in procs]
        try:
            write_text_atomic(marker, json.dumps(data) + "\n")
        except OSError:
            pass
        cleaned.append((session, procs))
    return cleaned
