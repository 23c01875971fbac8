"""End to end with real Ray on tiny data: a smoke search through the Python API, and ASHA
stopping children through the command (statuses, curves, a user's callback, no Tune logs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import nas

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TINY = {"proxy.train_subset": 256, "proxy.resolution": 16, "data.val_size": 100}


def test_a_smoke_search_through_the_api(tiny_fmnist, tmp_path, capsys):
    from nas.ray.runtime import ray_running
    out = tmp_path / "run"
    result = nas.run_search(target_flops="400M", preset="smoke", budget=3, out=out,
                            **{"data.path": tiny_fmnist}, **TINY,
                            strategy_options={"batch_size": 2})
    printed = capsys.readouterr().out
    assert "children 3/3" in printed and "run folder:" in printed
    assert "done:" not in printed  # the summary is the command's to print, not the API's
    assert result.finished and result.out == out and result.best_path == out / "best.yaml"
    assert result.summary["children_trained"] == 3 and result.summary["finished"]
    assert result.best == nas.load_spec(out / "best.yaml") and result.name.startswith("ppo-")
    assert not ray_running()  # the Ray this call started is stopped again

    data = result.load()
    assert len(data.trained) == 3 and sorted(data.trained["child"]) == [0, 1, 2]
    assert (data.children["status"] == "reference").sum() == 1
    assert data.best == result.best and data.summary == json.loads(
        (out / "summary.json").read_text())
    assert data.pareto and data.config["budget"] == 3
    assert data.trained["reward"].max() == pytest.approx(result.best.meta["metrics"]["reward"])

    again = nas.run_search(resume=True, out=out)  # nothing left to train
    assert again.finished and again.summary["children_trained"] == 3


def test_asha_stops_children_and_they_are_recorded_as_stopped(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "search.py"), "--target-flops", "400M", "--preset",
           "smoke", "--strategy", "random", "--set", "strategy_options={}", "--budget", "5",
           "--workers", "1", "--set", "reference=null", "--set", "proxy.epochs=2",
           "--set", "tune.scheduler=asha", "--set", "tune.asha.reduction_factor=100",
           "--set", "tune.callbacks=[ray.tune.logger.CSVLoggerCallback]",
           "--data", str(tiny_fmnist), "--out", str(out),
           *(f"--set={k}={v}" for k, v in TINY.items())]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Could not fetch metrics" not in proc.stderr and "Failed to fetch" not in proc.stderr
    rows = [json.loads(line) for line in (out / "children.jsonl").read_text().splitlines()]
    stopped = [r for r in rows if r["status"] == "stopped"]
    ok = [r for r in rows if r["status"] == "ok"]
    # A tiny child can diverge (seen: validation loss 2.3 after epoch 1, 40 after epoch 2);
    # it is recorded as diverged and counted among the failed.
    diverged = [r for r in rows if r["status"] == "diverged"]
    assert len(stopped) + len(ok) + len(diverged) == 5 and stopped and ok
    for r in diverged:
        assert "diverged in epoch" in r["error"] and r["reward"] == 0.0
    for r in stopped:  # stopped after the first epoch, with that epoch's accuracy
        assert r["proxy"]["val_curve"] == [r["accuracy"]] and r["proxy"]["epochs"] == 1
        assert r["error"].startswith("stopped by the trial scheduler (ASHA) after epoch 1")
    for r in ok:
        assert len(r["proxy"]["val_curve"]) == 2 and r["accuracy"] == r["proxy"]["val_curve"][-1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["children_stopped"] == len(stopped)
    assert summary["children_failed"] == len(diverged)
    assert summary["best"]["child"] in {r["child"] for r in ok}
    assert f"{len(stopped)} stopped early by the scheduler" in proc.stdout
    # The user's callback wrote its file per trial; Tune's own loggers wrote nothing.
    trials = [d for d in (out / "tune" / "session0").iterdir() if d.is_dir()]
    assert len(trials) == 5 and all((d / "progress.csv").is_file() for d in trials)
    assert not list((out / "tune").rglob("result.json"))
    assert not list((out / "tune").rglob("events.out.tfevents.*"))
