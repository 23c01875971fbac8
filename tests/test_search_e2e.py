"""search.py end to end with real Ray workers on tiny data in the Fashion-MNIST file format."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import trained

import nas

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--target-flops", "400M", "--preset", "smoke", "--set", "proxy.train_subset=256",
        "--set", "proxy.resolution=16", "--set", "data.val_size=100"]


def search_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "search.py"), *FAST, "--data", str(data), "--out",
            str(out), *extra]


@pytest.fixture(scope="module")
def seeded_runs(tiny_fmnist, tmp_path_factory) -> list[tuple[Path, str]]:
    """Two searches with one seed (4 children, PPO batches of 2): (run folder, stdout) each.
    The first is also the run whose outputs test_search_writes_every_output reads."""
    runs = []
    for name in ("a", "b"):
        out = tmp_path_factory.mktemp("seeded") / name
        proc = subprocess.run(search_cmd(tiny_fmnist, out, "--budget", "4", "--seed", "3",
                                         "--set", "strategy_options={batch_size: 2}"),
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append((out, proc.stdout))
    return runs


def test_search_writes_every_output(seeded_runs):
    out, stdout = seeded_runs[0]
    assert "children 4/4" in stdout and "best child" in stdout
    for name in ("config.yaml", "children.csv", "children.jsonl", "best.yaml", "summary.json",
                 "driver.pt", "accuracy_vs_macs.png"):
        assert (out / name).is_file(), name
    rows = trained(out)
    assert sorted(r["child"] for r in rows) == list(range(4))
    assert all(r["status"] == "ok" and 0 <= r["accuracy"] <= 1 for r in rows)
    header = (out / "children.csv").read_text().splitlines()[0].split(",")
    for col in ("trial", "tokens", "blocks", "params", "macs", "accuracy", "reward", "seconds",
                "status", "error"):
        assert col in header
    # The best child is a spec that builds, with its provenance.
    best = nas.load_spec(out / "best.yaml")
    meta = best.meta
    assert meta["search"]["space_hash"] and meta["search"]["reward"]["target_macs"] == 400_000_000
    assert meta["metrics"]["reward"] == max(r["reward"] for r in rows)
    assert nas.count_macs(best) == meta["metrics"]["macs"]
    nas.build_model(best, num_classes=10, in_channels=1)
    assert list((out / "top").glob("*.yaml")) and list((out / "pareto").glob("*.yaml"))
    # The reference B0 was trained on the same proxy.
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"]["macs"] == 385_814_752 and summary["finished"]
    # TensorBoard event files hold the search's scalars, the controller's diagnostics, the figure.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    for tag in ("child/reward", "child/accuracy", "child/macs_M", "search/best_reward",
                "controller/losses/policy_loss", "controller/losses/entropy",
                "controller/losses/approx_kl", "controller/losses/clipfrac"):
        assert tag in scalars, (tag, scalars)
    assert "search/accuracy_vs_macs" in acc.Tags()["images"]
    assert list((out / "tensorboard").glob("child*/**/events.out.tfevents.*"))  # hparams


def test_a_time_budget_stops_new_children_and_a_resume_may_extend_it(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    # One second is gone before Ray has started: the first child trains, no other starts.
    proc = subprocess.run(search_cmd(tiny_fmnist, out, "--budget", "20", "--time-budget", "1s",
                                     "--set", "reference=null"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "20 children or 1 s" in proc.stdout
    assert "stopped by the time budget (1 s)" in proc.stdout and "best child" in proc.stdout
    assert [r["child"] for r in trained(out)] == [0] and (out / "best.yaml").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["time_budget"]["reached"]
    assert summary["time_budget"]["spent"] >= 1.0
    # A resume with more time and a budget of 2 trains exactly one more child.
    res = subprocess.run([sys.executable, str(ROOT / "search.py"), "--resume", "--out", str(out),
                          "--time-budget", "1h", "--budget", "2"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(r["child"] for r in trained(out)) == [0, 1]
    again = json.loads((out / "summary.json").read_text())["time_budget"]
    assert not again["reached"] and again["seconds"] == 3600
    assert again["spent"] > summary["time_budget"]["spent"]


KILL_BUDGET = 6


@pytest.fixture(scope="module")
def killed_and_resumed(tiny_fmnist, tmp_path_factory):
    """One search killed with kill -9 on its driver only (as a user's kill -9 would) once
    three children have finished, then resumed to the end. What the tests read: the children
    finished before the kill, the kill's leftover processes of the Ray session, and the
    resume's result and what it left running.

    Both runs keep their Ray sessions in a temp folder of their own (``RAY_TMPDIR``): any
    fresh local start stops the leftovers of every dead session under its temp folder, so
    with the shared one, a search of a test running beside this one stopped them first
    (two CI runs on two pytest workers, one run on three)."""
    from nas.ray import leftovers
    out = tmp_path_factory.mktemp("killed") / "run"
    # Short: Ray's socket paths under it must fit the 107 bytes of a Unix socket's name.
    ray_tmp = Path(tempfile.mkdtemp(prefix="effnas-", dir="/tmp"))
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    proc = subprocess.Popen(search_cmd(tiny_fmnist, out, "--budget", str(KILL_BUDGET)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    session, left = None, []
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            log = out / "ray.log"
            if session is None and log.exists() and "started local Ray session" in log.read_text():
                session = Path(log.read_text().split("started local Ray session ")[1].split()[0])
            if session is not None and len(trained(out)) >= 3:
                break
            time.sleep(0.2)
        assert session is not None and proc.poll() is None, "the search ended too soon"
        assert session.parent == ray_tmp / "ray", session
        os.kill(proc.pid, signal.SIGKILL)  # the driver only, as a user's kill -9 would
        proc.wait()
        before = {r["child"]: r for r in trained(out)}
        time.sleep(10)  # what dies with the driver has died by now
        left = leftovers.session_processes(session)

        res = subprocess.run([sys.executable, str(ROOT / "search.py"), "--resume", "--out",
                              str(out)], capture_output=True, text=True, timeout=600, env=env)
        yield {"out": out, "before": before, "session": session, "left": left, "resume": res,
               "left_after_resume": leftovers.session_processes(session)}
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid, _ in left:  # whatever the test left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_resume_after_kill_loses_and_repeats_nothing(killed_and_resumed):
    out, before = killed_and_resumed["out"], killed_and_resumed["before"]
    budget = KILL_BUDGET
    assert 3 <= len(before) < budget, "the search ended before it could be killed"
    res = killed_and_resumed["resume"]
    assert res.returncode == 0, res.stderr[-3000:]
    after = trained(out)
    assert sorted(r["child"] for r in after) == list(range(budget))  # none lost, none twice
    by_child = {r["child"]: r for r in after}
    for child, r in before.items():  # finished children were kept, not trained again
        assert by_child[child]["trial"] == r["trial"]
        assert by_child[child]["accuracy"] == r["accuracy"]
    assert len({tuple(r["tokens"]) for r in after}) == budget


def test_resume_refuses_to_change_the_search(tiny_fmnist, tmp_path, capsys):
    import search
    out = tmp_path / "run"
    out.mkdir()
    (out / "driver.pt").write_bytes(b"")
    (out / "config.yaml").write_text("strategy: ppo\n")
    code = search.main(["--resume", "--out", str(out), "--strategy", "random"])
    assert code == 2 and "cannot change" in capsys.readouterr().err


def test_search_survives_losing_a_node(tiny_fmnist, tmp_path):
    from ray.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        worker = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        out = tmp_path / "run"
        env = {**os.environ, "RAY_ADDRESS": cluster.address}
        proc = subprocess.Popen(search_cmd(tiny_fmnist, out, "--budget", "6", "--workers", "2"),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env)
        deadline = time.time() + 300
        while len(trained(out)) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        cluster.remove_node(worker)
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output[-3000:]
        rows = trained(out)
        assert sorted(r["child"] for r in rows) == list(range(6))
    finally:
        cluster.shutdown()


def test_gpu_request_without_gpu_is_refused(tiny_fmnist, tmp_path):
    res = subprocess.run(search_cmd(tiny_fmnist, tmp_path / "run", "--gpus-per-trial", "0.5"),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert "--gpus-per-trial 0.5 but the Ray cluster has 0 GPUs" in res.stderr


def test_same_seed_same_children_and_fidelity_of_the_run(seeded_runs):
    # Two searches with one seed train every child they share to the same accuracy (seeded
    # children: initial weights, data order, augmentation), whatever worker trains which.
    # Which children they share depends on the order results come back in (an asynchronous
    # controller learns from them in that order), but the first batch is the seed's.
    runs = [out for out, _ in seeded_runs]
    a, b = ({r["identity"]: r for r in trained(out)} for out in runs)
    shared = a.keys() & b.keys()
    assert len(a) == len(b) == 4 and len(shared) >= 2
    for key in shared:
        assert a[key]["accuracy"] == b[key]["accuracy"] and a[key]["seed"] == b[key]["seed"]
    refs = [json.loads((out / "summary.json").read_text())["reference"] for out in runs]
    assert refs[0]["accuracy"] == refs[1]["accuracy"]

    # Proxy fidelity on that run: a tiny "long" schedule, two seeds, one extra proxy.
    out = runs[0] / "fidelity"
    proc = subprocess.run(
        [sys.executable, "-m", "nas.cli.effnas", "fidelity", str(runs[0]), "--children", "3",
         "--seeds", "2", "--long", "proxy-smoke+epochs=2+resolution=16+train_subset=256",
         "--proxies", "run,proxy-smoke+resolution=16+train_subset=128"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "fidelity.json").read_text())
    assert report["networks"] == 4  # three children and the reference
    assert [p["proxy"] for p in report["proxies"]] == [
        "run", "proxy-smoke+resolution=16+train_subset=128"]
    for p in report["proxies"]:
        assert -1 <= p["kendall"]["value"] <= 1 and -1 <= p["spearman"]["value"] <= 1
    assert all(len(v) == 2 for v in report["long"]["accuracy"].values())
    for name in ("fidelity.md", "fidelity.csv", "fidelity.png", "trainings.csv", "driver.pt"):
        assert (out / name).is_file(), name
    assert "Kendall tau" in proc.stdout
    # A finished measurement is not trained again; --resume only rewrites the report.
    again = subprocess.run(
        [sys.executable, "-m", "nas.cli.effnas", "fidelity", str(runs[0]), "--children", "3",
         "--seeds", "2", "--long", "proxy-smoke+epochs=2+resolution=16+train_subset=256",
         "--proxies", "run,proxy-smoke+resolution=16+train_subset=128"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--resume" in again.stderr
    # --report rewrites the report from the saved trainings and trains nothing.
    (out / "fidelity.json").unlink()
    rep = subprocess.run(
        [sys.executable, "-m", "nas.cli.effnas", "fidelity", str(runs[0]), "--children", "3",
         "--seeds", "2", "--long", "proxy-smoke+epochs=2+resolution=16+train_subset=256",
         "--proxies", "run,proxy-smoke+resolution=16+train_subset=128", "--report"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert rep.returncode == 0, rep.stderr[-3000:]
    again_report = json.loads((out / "fidelity.json").read_text())
    assert again_report["networks"] == 4 and "partial" not in again_report
    assert again_report["proxies"] == report["proxies"]


def test_a_search_where_every_child_fails_exits_1(tiny_fmnist, tmp_path):
    """A learning rate of 1e30 makes every child (and the reference) diverge."""
    out = tmp_path / "run"
    res = subprocess.run(search_cmd(tiny_fmnist, out, "--budget", "2", "--set",
                                    "proxy.lr=1e30"),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 1, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("error: the search finished but no child trained successfully "
                                "(2 of 2 failed"), res.stderr[-2000:]
    assert f"error column of {out / 'children.csv'}" in lines[-1]
    assert "best spec" not in res.stdout and not (out / "best.yaml").exists()

    def no_constants(name):
        raise ValueError(f"not JSON: {name}")
    summary = json.loads((out / "summary.json").read_text(), parse_constant=no_constants)
    assert summary["best"] is None and summary["children_failed"] == 2
    assert summary["reference"]["accuracy"] is None
    rows = trained(out)
    assert len(rows) == 2 and all(r["status"] != "ok" and r["error"] for r in rows)


def test_leftovers_of_a_killed_search_are_stopped_at_the_next_start(killed_and_resumed):
    out, session = killed_and_resumed["out"], killed_and_resumed["session"]
    left = killed_and_resumed["left"]
    names = {name for _, name in left}
    assert any(n.startswith("ray::") for n in names), names  # what stays (Ray 2.60)
    res = killed_and_resumed["resume"]
    assert res.returncode == 0, res.stderr[-3000:]
    assert killed_and_resumed["left_after_resume"] == []
    log = (out / "ray.log").read_text()
    assert f"leftover process(es) of the dead local Ray session {session}" in log
    for pid, _ in left:
        assert str(pid) in log
