"""bench/bench_oneshot.py: a bad space in one line; noise on tiny data (the same networks
trained by the proxy once per seed, a seed already trained reused, and Kendall's tau between
the seeds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_bench

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "bench_oneshot.py"


def test_run_stats_reads_the_picks_and_only_the_last_epochs_samples(tmp_path):
    bench = load_bench("bench_oneshot")
    run = tmp_path / "ppo-0"
    (run / "supernet").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({
        "session_seconds": 12.5, "best": {"reward": 0.8, "accuracy": 0.79},
        "supernet": {"samples": 6}}))
    # Two epochs of 50 steps; samples at steps 40, 60 and 100: the last epoch is 51-100.
    (run / "supernet" / "progress.jsonl").write_text(
        "".join(json.dumps({"epoch": e, "step": 50 * e}) + "\n" for e in (1, 2)))
    (run / "supernet" / "samples.csv").write_text(
        "step,rank,accuracy,reward,macs,policy_version,tokens\n"
        "40,0,0.1,0.1,1,0,0\n60,0,0.5,0.5,1,0,0\n100,0,0.7,0.7,1,0,0\n100,1,0.9,0.9,1,0,0\n")
    children = [{"child": 0, "status": "ok", "reward": 0.8},
                {"child": 1, "status": "ok", "reward": 0.6},
                {"child": 2, "status": "failed", "reward": None}]
    (run / "children.jsonl").write_text("".join(json.dumps(c) + "\n" for c in children))
    stats = bench.run_stats(run)
    assert stats["best"] == 0.8 and stats["best_accuracy"] == 0.79
    assert stats["standalone"] == 2 and stats["standalone_mean"] == pytest.approx(0.7)
    assert stats["last_epoch_reward"] == pytest.approx(0.7)
    assert stats["samples"] == 6 and stats["seconds"] == 12.5


def test_a_summary_line_leaves_out_and_counts_runs_without_a_value():
    bench = load_bench("bench_oneshot")
    line = bench.summary_line("ppo retrained", [0.5, None, 0.7])
    assert line == ("ppo retrained: mean 0.6000, range 0.5000-0.7000 "
                    "(0.5000, 0.7000; 1 without a value)")
    assert bench.summary_line("y", [None]) == "y: no value; 1 without a value"
    assert bench.summary_line("x", [0.25]) == "x: mean 0.2500, range 0.2500-0.2500 (0.2500)"


def test_an_unknown_space_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "noise", "--out", str(tmp_path),
                           "--space", "nosuch"], check=False, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no bundled config named 'nosuch'")


@pytest.mark.slow
def test_noise_trains_each_proxy_seed_once_and_ranks_seeds_against_each_other(tiny_fmnist,
                                                                            tmp_path):
    out = tmp_path / "noise"
    cmd = [sys.executable, str(SCRIPT), "noise", "--out", str(out),
           "--archs", "3", "--proxy-seeds", "0", "1", "--space", "shared-space",
           "--set", f"data.path={tiny_fmnist}", "--set", "data.val_size=100",
           "--set", "proxy.train_subset=256", "--set", "proxy.resolution=16",
           "--set", "proxy.epochs=1", "--set", "workers=2"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "noise.json").read_text())
    assert report["archs"] == 3 and sorted(report["accuracy"]) == ["0", "1"]
    assert all(len(a) == 3 and all(0 <= x <= 1 for x in a) for a in report["accuracy"].values())
    tau = report["kendall"]["0~1"]
    assert -1 <= tau["low"] <= tau["value"] <= tau["high"] <= 1
    assert "Kendall tau between seeds 0~1" in proc.stdout
    assert report["not_ok"] == {"0": [], "1": []}
    seeds = {name: (out / name / "children.jsonl").read_text()
             for name in ("standalone", "standalone-seed1")}
    # Again: both seeds are finished, nothing is trained twice.
    again = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {n: (out / n / "children.jsonl").read_text() for n in seeds} == seeds
    assert json.loads((out / "noise.json").read_text())["accuracy"] == report["accuracy"]


@pytest.mark.slow
def test_fidelity_trains_one_split_supernet_per_seed_and_summarises_the_seeds(tiny_fmnist,
                                                                            tmp_path):
    out = tmp_path / "fidelity"
    cmd = [sys.executable, str(SCRIPT), "fidelity", "--out", str(out), "--archs", "3",
           "--supernet-seeds", "0", "1", "--variant", "split", "--space", "shared-space",
           # --workers: Ray Train workers per supernet; workers=2: children trained at once
           "--score-images", "50", "--workers", "1",
           "--set", f"data.path={tiny_fmnist}", "--set", "data.val_size=100",
           "--set", "proxy.train_subset=256", "--set", "proxy.resolution=16",
           "--set", "proxy.epochs=1", "--set", "workers=2",
           "--set", "oneshot.split=activation", "--set", "oneshot.supernet.epochs=1",
           "--set", "oneshot.supernet.train_subset=128", "--set", "oneshot.supernet.resolution=16",
           "--set", "oneshot.supernet.batch_size=32", "--set", "oneshot.recal_batches=1"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "variants" / "split" / "fidelity.json").read_text())
    assert sorted(report["supernet_seeds"]) == ["0", "1"]
    for one in report["supernet_seeds"].values():
        assert all(len(v) == 3 and all(0 <= x <= 1 for x in v) for v in one["scores"].values())
        k = one["modes"]["batch"]["kendall"]
        if k["value"] is not None:  # undefined when a tiny supernet scores every network alike
            assert -1 <= k["value"] <= 1
    for mode in ("batch", "recalibrate", "running"):
        taus = [one["modes"][mode]["kendall"]["value"]
                for one in report["supernet_seeds"].values()]
        taus = [t for t in taus if t is not None]
        want = ({"mean": pytest.approx(sum(taus) / len(taus)), "low": min(taus),
                 "high": max(taus), "seeds": len(taus)} if taus else
                {"mean": None, "low": None, "high": None, "seeds": 0})
        assert report["summary"][mode] == want
    # One copy of the weights per activation of the space, in each seed's checkpoint.
    import torch
    state = torch.load(out / "variants" / "split" / "supernet-seed1" / "supernet.pt",
                       weights_only=False)
    assert {k.split(".")[1] for k in state["supernet"]} == {"relu", "silu"}
    assert "| mean (range) |" in proc.stdout


def test_a_search_folder_left_by_a_stopped_bench_is_refused_before_anything_runs(tmp_path):
    # A stopped bench leaves best.yaml without wall.txt; rerunning search.py there would fail
    # at once and the bench would record that failure's seconds as the search's wall time.
    bench = load_bench("bench_oneshot")
    run = tmp_path / "proxy-0"
    run.mkdir()
    (run / "best.yaml").write_text("name: x\n")
    with pytest.raises(SystemExit) as e:
        bench.search(run, 0, "ppo", "proxy", [], cap=1.0)
    message = str(e.value)
    assert message.startswith(f"error: {run} holds a search this bench did not finish")
    assert f"rm -r {run} {tmp_path / 'proxy-0.log'}" in message
    assert not (tmp_path / "proxy-0.log").exists()


def test_machine_speed_times_training_steps_and_leaves_the_thread_count_alone():
    import torch
    bench = load_bench("bench_oneshot")
    threads = torch.get_num_threads()
    speed = bench.machine_speed(steps=1)
    assert torch.get_num_threads() == threads
    assert set(speed) == {"images_per_s", "load", "time"}
    assert speed["images_per_s"] > 0 and speed["load"] >= 0
    json.dumps(speed)  # kept in machine-SEED.json
