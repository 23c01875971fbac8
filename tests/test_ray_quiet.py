"""Ray does not talk over the commands: its warnings go to the run folder's ray.log, SIGTERM
stays the command's after ray.init, Tune's Ctrl-C handler is off, and a resumed run with
nothing left to train starts no Ray. (No Ray is started here; the searches that are killed
and resumed for real are in tests/test_search_signals.py.)"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from nas.ray import runtime, searcher


_LOGS = """
import logging, sys
from pathlib import Path
from nas.ray import runtime
folder = Path(sys.argv[1])
logging.getLogger("ray").setLevel(logging.WARNING)  # as ray.init(logging_level=WARNING) sets it
runtime.quiet_ray(folder / "ray.log")
token = logging.getLogger("ray._private.authentication.authentication_token_setup")
token.warning("Token authentication is enabled for this Ray cluster.")
logging.getLogger("ray.tune.tune").warning("Resume experiment with: Tuner.restore(...)")
logging.getLogger("ray.tune").error("a trial crashed")
# A second run in the same process writes its own ray.log; the filter is not doubled.
runtime.quiet_ray(folder / "second" / "ray.log")
token.warning("before the folder exists")  # dropped, not a logging error
(folder / "second").mkdir()
token.warning("second run")
logging.getLogger("ray").error("an error later")
"""


def test_ray_warnings_go_to_the_run_folder_and_errors_stay_on_the_terminal(tmp_path) -> None:
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", _LOGS, str(tmp_path)], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert "Token authentication" not in err and "Tuner.restore" not in err, err
    assert "before the folder exists" not in err and "second run" not in err, err
    assert err.count("a trial crashed") == 1 and err.count("an error later") == 1
    log = (tmp_path / "ray.log").read_text()
    assert "Token authentication is enabled" in log and "Tuner.restore" in log
    assert "second run" not in log
    second = (tmp_path / "second" / "ray.log").read_text()
    assert "second run" in second and "before the folder exists" not in second


def test_a_sigterm_handler_of_the_program_survives_ray_init() -> None:
    def ours(signum, frame):
        raise KeyboardInterrupt

    def rays(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, ours)
    try:
        with runtime._keep_sigterm_handler():
            signal.signal(signal.SIGTERM, rays)  # what ray.init does
        assert signal.getsignal(signal.SIGTERM) is ours
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with runtime._keep_sigterm_handler():  # none of the program's own: Ray's stays
            signal.signal(signal.SIGTERM, rays)
        assert signal.getsignal(signal.SIGTERM) is rays
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_tune_leaves_ctrl_c_to_the_command(monkeypatch) -> None:
    monkeypatch.delenv("TUNE_DISABLE_SIGINT_HANDLER", raising=False)
    monkeypatch.delenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", raising=False)
    monkeypatch.setattr(os, "environ", dict(os.environ))
    searcher._quiet_tune()
    assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
    # A failed or diverged child's last result has no epoch accuracy: not an error of Tune's.
    assert os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] == "1"


def test_a_finished_driver_starts_no_ray(monkeypatch, tmp_path: Path) -> None:
    from nas.search import runner

    class Finished:
        records: list = []
        time_budget = None

        def finished(self):
            return True

        def trained_records(self):
            return []

        def best(self, k):
            return []

    def no_ray(*a, **k):
        raise AssertionError("Ray was started for a run with nothing left to train")

    monkeypatch.setattr(runtime, "init_ray", no_ray)
    monkeypatch.setattr(runner, "run_trials", no_ray)
    written = []
    runner.train_children(Finished(), None, _search_config().trials,
                          tmp_path, 4, lambda tb, final: written.append(final))
    assert written == [True]  # the outputs are still written once at the end


def _search_config():
    from nas.core.settings import load
    from nas.search.settings import SearchSettings
    return load(SearchSettings, preset="smoke", overrides={"target_flops": "400M"})
