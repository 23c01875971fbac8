"""effnas pipeline end to end on tiny data in the Fashion-MNIST file format: every
stage with real Ray workers, --resume skipping what is done, and a run cut off in the middle
of the training stage (Ctrl-C, then kill -9) that continues without training anything twice."""

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
import yaml

import nas

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--preset", "smoke", "--set", "data.val_size=100",
        "--set", "search.proxy.train_subset=256", "--set", "search.proxy.resolution=16",
        "--set", "scale.proxy.train_subset=256", "--set", "scale.proxy.resolution=16",
        "--set", "train.train_subset=256", "--set", "train.resolution=16"]


def pipeline(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nas.cli.effnas", "pipeline", *TINY, "--data", str(data),
            "--out", str(out), *extra]


def resume(out: Path) -> list[str]:
    return [sys.executable, "-m", "nas.cli.effnas", "pipeline", "--resume", "--out", str(out)]


def state(out: Path) -> dict:
    return json.loads((out / "pipeline.json").read_text())


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder`` with its modification time and content."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_whole_pipeline_then_resume_skips_every_stage(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    t0 = time.time()
    # Budgets above anything the space holds (its largest networks are about 1.2G MACs), so
    # whichever child the search finds, both are scale-ups of it.
    proc = subprocess.run(pipeline(tiny_fmnist, out, "--target-flops", "400M", "--budgets",
                                   "1.5G,3G", "--compare", "--references", "mobilenetv2",
                                   "--set", "search.budget=2", "--set", "train.train_subset=128"),
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)
    first = time.time() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # 1. The search: a full search run folder, whose best child is the baseline.
    st = state(out)
    assert [st["stages"][s]["status"] for s in ("search", "scale", "train", "report")] == \
        ["done"] * 4
    for name in ("best.yaml", "children.csv", "summary.json", "driver.pt", "config.yaml"):
        assert (out / "search" / name).is_file(), name
    assert st["stages"]["search"]["baseline"] == str(out / "search" / "best.yaml")
    assert st["stages"]["search"]["summary"]["children_trained"] == 2
    # 2. The coefficients from the grid (re-checked with another seed), 3. the family.
    import scaler
    record = scaler.load_scaling(out / "scale" / "scaling.yaml")
    assert st["stages"]["scale"]["coefficients"] == record.coefficients.to_dict()
    assert record.recheck is not None
    assert (out / "scale" / "compare" / "compare.md").is_file()
    specs = sorted((out / "scale" / "family-budgets").glob("*.yaml"))
    assert len(specs) == 2
    assert yaml.safe_load((out / "scale" / "config.yaml").read_text())["baseline"] == \
        str(out / "search" / "best.yaml")
    # 4. Every model trained, tested once and exported.
    models = {m["id"]: m for m in st["stages"]["scale"]["models"]}
    assert list(models) == ["baseline", "1.50G", "3.00G", "mobilenetv2"]
    assert models["baseline"]["spec"] == str(out / "search" / "best.yaml")
    for model_id, m in models.items():
        folder = out / "train" / model_id / "seed0"
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["status"] == "completed" and metrics["epochs_run"] == 2
        assert metrics["config"]["resolution"] == m["train_resolution"]
        assert 0 <= metrics["test_accuracy"] <= 1 and metrics["test_images"] == 100
        for name in ("best.pt", "last.pt", "model.pt", "train.csv"):
            assert (folder / name).is_file(), (model_id, name)
        assert st["stages"]["train"]["models"][f"{model_id}/seed0"]["status"] == "completed"
        nas.load_spec(m["spec"])
    # 5. The report: every model with its numbers, spec and checkpoint, and the picture.
    report = (out / "report" / "report.md").read_text()
    assert (out / "report" / "accuracy_vs_macs.png").stat().st_size > 10_000
    for model_id, m in models.items():
        assert f"| {model_id} |" in report and f"`{m['spec']}`" in report
        assert str(out / "train" / model_id / "seed0" / "best.pt") in report
    for label in ("width only", "depth only", "resolution only", "compound"):
        assert label in report
    assert "2 epochs over 128 images" in report and "seeds 0" in report
    rows = list(csv.DictReader(open(out / "report" / "results.csv")))
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows)
    for r in rows:
        metrics = json.loads((out / "train" / r["model"] / "seed0" / "metrics.json").read_text())
        assert float(r["test_accuracy"]) == pytest.approx(metrics["test_accuracy"])

    # Again with --resume: every stage is skipped, nothing is rewritten.
    before = snapshot(out / "train") | {f"scale/{k}": v for k, v in snapshot(out / "scale").items()}
    t0 = time.time()
    again = subprocess.run(resume(out), cwd=ROOT, capture_output=True, text=True, timeout=300)
    second = time.time() - t0
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in ("search", "scale", "train", "report"):
        assert f"{stage}: done, skipped" in again.stdout, again.stdout
    assert "training" not in again.stdout and "children" not in again.stdout
    after = snapshot(out / "train") | {f"scale/{k}": v for k, v in snapshot(out / "scale").items()}
    assert after == before
    print(f"\npipeline end to end: {first:.0f} s; resume with every stage done: {second:.1f} s")


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the pipeline ended before {path} appeared"
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def _history(last_pt: Path) -> list[dict]:
    import torch
    return torch.load(last_pt, map_location="cpu", weights_only=True)["history"]


def _csv_rows(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path)))


def test_interrupted_training_resumes_each_model_from_its_last_epoch(tiny_fmnist, tmp_path):
    # No search and no grid here (a given baseline and coefficients): the training stage is
    # what is interrupted. Two models, four epochs each.
    out = tmp_path / "run"
    cmd = pipeline(tiny_fmnist, out, "--baseline", "efficientnet-b0", "--coefficients",
                   "1.2,1.1,1.15", "--budgets", "600M", "--epochs", "4")
    base, member = out / "train" / "baseline" / "seed0", out / "train" / "600.0M" / "seed0"
    t0 = time.time()

    # Ctrl-C in the middle of the first model: it stops after saving, exit 130.
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    _wait_for(base / "last.pt", proc)
    os.kill(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stdout[-2000:] + stderr[-2000:]
    assert f"--resume --out {out}" in stderr
    assert not (base / "metrics.json").exists(), "the first model finished before Ctrl-C"
    cut = _history(base / "last.pt")
    assert 1 <= len(cut) < 4
    assert state(out)["stages"]["train"]["status"] == "running"
    assert state(out)["stages"]["scale"]["status"] == "done"

    # Resume; kill -9 once the second model has a checkpoint (the first one has finished).
    proc = subprocess.Popen(resume(out), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    _wait_for(member / "last.pt", proc)
    os.kill(proc.pid, signal.SIGKILL)
    output, _ = proc.communicate(timeout=60)
    assert "scale: done, skipped" in output
    assert f"continuing from {base / 'last.pt'} (epoch {len(cut)})" in output, output
    assert (base / "metrics.json").is_file() and not (member / "metrics.json").exists()
    # The first model went on from its last epoch: the epochs before Ctrl-C are its own.
    rows = _csv_rows(base / "train.csv")
    assert len(rows) == 4
    for before, row in zip(cut, rows):
        assert float(row["val_accuracy"]) == pytest.approx(before["val_accuracy"], abs=1e-6)
        assert float(row["train_loss"]) == pytest.approx(before["train_loss"], rel=1e-5)
    finished = snapshot(base)
    killed_at = _history(member / "last.pt")
    assert 1 <= len(killed_at) < 4

    # Resume to the end: the finished model is not trained again, the other one continues.
    res = subprocess.run(resume(out), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "train baseline/seed0 (1/2): completed, skipped" in res.stdout
    assert f"continuing from {member / 'last.pt'} (epoch {len(killed_at)})" in res.stdout
    assert snapshot(base) == finished
    rows = _csv_rows(member / "train.csv")
    assert len(rows) == 4
    for before, row in zip(killed_at, rows):
        assert float(row["val_accuracy"]) == pytest.approx(before["val_accuracy"], abs=1e-6)
    st = state(out)
    assert all(st["stages"][s]["status"] == "done" for s in ("search", "scale", "train",
                                                             "report"))
    assert st["stages"]["train"]["sessions"] == 3 and len(st["commands"]) == 3
    for folder in (base, member):
        assert json.loads((folder / "metrics.json").read_text())["epochs_run"] == 4
    report = (out / "report" / "report.md").read_text()
    assert "| baseline |" in report and "| 600.0M |" in report
    print(f"\ninterrupted pipeline, three sessions: {time.time() - t0:.0f} s")
