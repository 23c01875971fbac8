"""search.py's re-check end to end: real Ray workers, tiny data in the Fashion-MNIST format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import nas

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def search(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "search.py"), *args],
                          capture_output=True, text=True, timeout=600)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_recheck_chooses_best_yaml_and_a_resume_adds_only_new_runs(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    proc = search("--target-flops", "400M", "--preset", "smoke", "--set",
                  "proxy.train_subset=256", "--set", "proxy.resolution=16", "--set",
                  "data.val_size=100", "--set", "reference=null", "--data", str(tiny_fmnist),
                  "--out", str(out), "--budget", "3", "--set", "recheck.top=2", "--set",
                  "recheck.seeds=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "re-checking the best 2 children with 1 more seed(s)" in proc.stdout
    assert "re-check: child" in proc.stdout
    runs = rows(out / "recheck" / "session0" / "children.jsonl")
    children = {r["child"]: r for r in rows(out / "children.jsonl")}
    top2 = sorted(children.values(), key=lambda r: (-r["reward"], r["macs"], r["child"]))[:2]
    # Each of the best two trained once more, with a seed of its own.
    assert len(runs) == 2 and all(r["status"] == "ok" for r in runs)
    assert {r["identity"] for r in runs} == {f'{c["identity"]}+{{"seed": 1}}' for c in top2}
    assert not {r["seed"] for r in runs} & {c["seed"] for c in children.values()}
    summary = json.loads((out / "summary.json").read_text())
    decision = summary["recheck"]
    assert summary["finished"] and decision["first"] == top2[0]["child"]
    assert summary["best"]["child"] == decision["chosen"]
    chosen = next(c for c in decision["candidates"] if c["child"] == decision["chosen"])
    assert chosen["rewards"][0] == children[decision["chosen"]]["reward"]
    assert len(chosen["rewards"]) == 2
    assert all(c["mean"] <= chosen["mean"] for c in decision["candidates"])
    best = nas.load_spec(out / "best.yaml")
    assert best.meta["metrics"]["child"] == decision["chosen"]
    assert best.meta["metrics"]["recheck"]["rewards"] == chosen["rewards"]
    assert nas.count_macs(best) == children[decision["chosen"]]["macs"]

    # A finished search resumed with more seeds trains only the runs it lacks.
    proc = search("--resume", "--out", str(out), "--set", "recheck.seeds=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(2 runs to train)" in proc.stdout
    assert len(rows(out / "recheck" / "session1" / "children.jsonl")) == 2
    assert len(rows(out / "children.jsonl")) == 3  # no new child of the search
    decision = json.loads((out / "summary.json").read_text())["recheck"]
    assert all(len(c["rewards"]) == 3 for c in decision["candidates"])
