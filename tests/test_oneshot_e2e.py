"""search.py --evaluator oneshot end to end: a two-worker Ray Train job on CPU (gloo), the
standalone stage on Ray Tune, every output, and --resume after kill -9 in either stage."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nas

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--target-flops", "400M", "--preset", "smoke", "--evaluator", "oneshot",
        "--set", "proxy.train_subset=256", "--set", "proxy.resolution=16",
        "--set", "data.val_size=100"]


def cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "search.py"), *FAST, "--data", str(data), "--out",
            str(out), *extra]


def rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def trained(folder: Path) -> list[dict]:
    return [r for r in rows(folder / "children.jsonl") if r["status"] not in ("cached", "reference")]


def test_two_worker_search_writes_every_output(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(cmd(tiny_fmnist, out, "--workers", "2", "--cpus-per-trial", "1"),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 Ray Train worker(s)" in proc.stdout and "best child" in proc.stdout
    # The standalone stage ranks its children by accuracy while they train, and says so.
    assert "best accuracy" in proc.stdout and "best reward" not in proc.stdout
    for name in ("config.yaml", "children.csv", "children.jsonl", "best.yaml", "summary.json",
                 "accuracy_vs_macs.png", "supernet/supernet.pt", "supernet/samples.csv",
                 "supernet/progress.jsonl"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    sn = summary["supernet"]
    # smoke: 2 epochs of 256 images, 2 x 16 per step -> 16 steps, a quarter of them warm-up;
    # each later step is one sample per worker.
    assert sn["workers"] == 2 and sn["steps"] == 16 and sn["samples"] == 2 * 12
    with open(out / "supernet" / "samples.csv") as f:
        samples = list(csv.DictReader(f))
    assert len(samples) == 24 and {s["rank"] for s in samples} == {"0", "1"}
    children = trained(out)
    assert len(children) == 5 and summary["reference"]["macs"] == 385_814_752
    for r in children:
        assert r["status"] == "ok" and r["supernet_accuracy"] is not None
    assert sorted(r["supernet_rank"] for r in children) == [1, 2, 3, 4, 5]
    header = (out / "children.csv").read_text().splitlines()[0].split(",")
    assert {"accuracy", "reward", "supernet_accuracy", "supernet_reward"} <= set(header)
    best = nas.load_spec(out / "best.yaml")
    assert best.meta["metrics"]["reward"] == max(r["reward"] for r in children)
    assert best.meta["search"]["evaluator"] == "oneshot"
    nas.build_model(best, num_classes=10, in_channels=1)
    assert list((out / "top").glob("*.yaml")) and list((out / "pareto").glob("*.yaml"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    for tag in ("supernet/train_loss", "supernet/reward_mean", "supernet/samples_per_hour",
                "child/reward", "controller/losses/policy_loss"):
        assert tag in scalars, (tag, scalars)


def _wait(pred, proc, seconds=600.0) -> None:
    deadline = time.time() + seconds
    while not pred() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)


def _kill(proc) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_resume_after_kill_in_either_stage(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    args = ("--workers", "2", "--set", "oneshot.supernet.epochs=4", "--set", "proxy.epochs=3")
    proc = subprocess.Popen(cmd(tiny_fmnist, out, *args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    progress = out / "supernet" / "progress.jsonl"
    _wait(lambda: len(rows(progress)) >= 2, proc)
    _kill(proc)
    epochs_before = [r["epoch"] for r in rows(progress)]
    assert 2 <= len(epochs_before) < 4, "the supernet finished before it could be killed"
    samples_before = (out / "supernet" / "samples.csv").read_text().splitlines()

    resume = [sys.executable, str(ROOT / "search.py"), "--resume", "--out", str(out)]
    proc = subprocess.Popen(resume, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    standalone = out / "standalone"
    _wait(lambda: len(trained(standalone)) >= 2, proc, 900)
    _kill(proc)
    assert [r["epoch"] for r in rows(progress)] == [1, 2, 3, 4]
    samples_after = (out / "supernet" / "samples.csv").read_text().splitlines()
    assert samples_after[:len(samples_before)] == samples_before  # nothing trained twice
    assert len(samples_after) - 1 == 2 * (4 * 8 - 8)  # 8 steps an epoch, a quarter warm-up
    done_before = {r["trial"]: r for r in trained(standalone)}
    assert 2 <= len(done_before) < 6, "the standalone stage finished before it could be killed"

    res = subprocess.run(resume, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    after = trained(standalone)
    assert len(after) == 6  # the top five and the reference, each trained once
    by_trial = {r["trial"]: r for r in after}
    for trial, r in done_before.items():  # finished children were kept, not trained again
        assert by_trial[trial]["accuracy"] == r["accuracy"]
    assert len(trained(out)) == 5 and (out / "best.yaml").is_file()


def test_a_handoff_search_goes_on_from_the_supernets_strategy(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    args = ("--set", "oneshot.handoff=search", "--set", "budget=2", "--set", "reference=null",
            "--time-budget", "1h")
    proc = subprocess.run(cmd(tiny_fmnist, out, *args), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ppo goes on for 2 children" in proc.stdout and "best child" in proc.stdout
    from nas.ray import train as ray_train
    state = ray_train.load_checkpoint(out / "supernet")
    version = state["strategy"]["state"]["version"]
    assert version > 0  # the supernet's samples updated the policy
    children = trained(out)
    # Every child comes from the policy the supernet trained (a fresh one starts at 0).
    assert len(children) == 2 and all(r["policy_version"] >= version for r in children)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["supernet"]["handoff"] == "search" and summary["children_trained"] == 2
    # The supernet's training counts toward the time budget of the whole search.
    assert summary["supernet"]["seconds"] <= summary["time_budget"]["spent"]
    assert not summary["time_budget"]["reached"]
    best = nas.load_spec(out / "best.yaml")
    assert best.meta["search"]["evaluator"] == "oneshot"
    assert best.meta["metrics"]["reward"] == max(r["reward"] for r in children)
    assert (out / "driver.pt").is_file() and not (out / "standalone").exists()
    # Resuming the finished run trains neither stage again; switching the re-check on
    # trains the best two children once more each, and the best mean becomes best.yaml.
    checkpoint = (out / "supernet" / "supernet.pt").stat().st_mtime_ns
    res = subprocess.run([sys.executable, str(ROOT / "search.py"), "--resume", "--out", str(out),
                          "--set", "recheck.top=2", "--set", "recheck.seeds=1"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(trained(out)) == 2
    assert (out / "supernet" / "supernet.pt").stat().st_mtime_ns == checkpoint
    assert "re-checking the best 2 children with 1 more seed(s)" in res.stdout
    assert "re-check: child" in res.stdout
    runs = [json.loads(line) for line in
            (out / "recheck" / "session0" / "children.jsonl").read_text().splitlines()]
    # Each child trained once more, with a seed of its own.
    assert len(runs) == 2 and all(r["status"] == "ok" for r in runs)
    assert {r["identity"] for r in runs} == {f'{c["identity"]}+{{"seed": 1}}' for c in children}
    assert not {r["seed"] for r in runs} & {c["seed"] for c in children}
    summary = json.loads((out / "summary.json").read_text())
    decision = summary["recheck"]
    assert summary["finished"] and summary["best"]["child"] == decision["chosen"]
    assert decision["first"] == max(children, key=lambda c: (c["reward"], -c["macs"]))["child"]
    chosen = next(c for c in decision["candidates"] if c["child"] == decision["chosen"])
    assert chosen["rewards"][0] == next(c["reward"] for c in children
                                        if c["child"] == decision["chosen"])
    assert len(chosen["rewards"]) == 2
    assert all(c["mean"] <= chosen["mean"] for c in decision["candidates"])
    best = nas.load_spec(out / "best.yaml")
    assert best.meta["metrics"]["child"] == decision["chosen"]
    assert best.meta["metrics"]["recheck"]["rewards"] == chosen["rewards"]


def test_workers_above_the_cluster_are_refused(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    res = subprocess.run(cmd(tiny_fmnist, out, "--workers", "8"), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "needs 8 CPUs but the Ray cluster has" in lines[0]
    assert not (out / "config.yaml").exists()
