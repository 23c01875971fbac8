"""bench/bench_claims.py without training: which models each claim compares, which comparisons
get more seeds, the verdicts, and the refusal to mix runs of another protocol into a table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_bench

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "bench_claims.py"


bench = load_bench("bench_claims")
GROUPS = ["baselines", "scaling", "family"]


@pytest.fixture(scope="module")
def todo():
    # MnasNet-A1 stands in for a searched baseline; the paper's coefficients scale it.
    return bench.models(str(ROOT / "configs" / "mnasnet-a1.yaml"), None, GROUPS)


def test_each_claim_compares_ours_with_theirs(todo):
    assert bench.comparisons(todo, "baselines") == [
        ("searched baseline", "efficientnet-b0"), ("searched baseline", "mnasnet-a1"),
        ("searched baseline", "mobilenetv2")]
    scaling = bench.comparisons(todo, "scaling")
    assert len(scaling) == 6
    assert ("2x compound", "2x resolution only") in scaling
    assert ("4x compound", "4x width only") in scaling
    assert not any(a[:2] != b[:2] for a, b in scaling)  # 2x against 2x, 4x against 4x
    assert bench.comparisons(todo, "family") == [("searched b1", "efficientnet b1"),
                                                 ("searched b2", "efficientnet b2")]


def _r(group, label, seed, val):
    return {"group": group, "label": label, "seed": seed, "val": val, "test": val,
            "macs": 1e8, "params": 1000, "resolution": 32, "minutes": 1.0}


def test_only_comparisons_under_the_gap_get_more_seeds(todo):
    results = [_r("baselines", "searched baseline", 0, 0.880),
               _r("baselines", "efficientnet-b0", 0, 0.875),   # 0.5 points: close
               _r("baselines", "mnasnet-a1", 0, 0.850),        # 3 points: not close
               _r("baselines", "mobilenetv2", 0, 0.8899)]      # 0.99 points: close
    close = bench.close_pairs(results, todo, ["baselines"], 0.01)
    assert close == {("baselines", "searched baseline"), ("baselines", "efficientnet-b0"),
                     ("baselines", "mobilenetv2")}


def test_verdicts_follow_the_seed_rule(todo):
    one = [_r("baselines", "searched baseline", 0, 0.90), _r("baselines", "mnasnet-a1", 0, 0.80)]
    text = bench.markdown(one, todo, ["baselines"], "test protocol")
    assert "| searched baseline vs mnasnet-a1 | not shown (1 seed(s)" in text
    three = [_r("baselines", "searched baseline", s, 0.90 + s / 1000) for s in range(3)]
    three += [_r("baselines", "mnasnet-a1", s, 0.80 + s / 1000) for s in range(3)]
    three += [_r("baselines", "efficientnet-b0", s, 0.899 + s / 500) for s in range(3)]
    text = bench.markdown(three, todo, ["baselines"], "test protocol")
    assert "| searched baseline vs mnasnet-a1 | above (+0.1000" in text
    assert "| searched baseline vs efficientnet-b0 | not shown (ranges overlap" in text
    assert "| searched baseline vs mobilenetv2 | not measured |" in text
    assert "0.9010 (0.9000-0.9020)" in text


def test_plot_draws_every_group(todo, tmp_path):
    results = [_r(m["group"], m["label"], s, 0.8 + s / 100) for m in todo for s in range(2)]
    bench.plot(results, todo, GROUPS, tmp_path / "claims.png")
    assert (tmp_path / "claims.png").stat().st_size > 10_000


def test_a_run_of_another_protocol_is_refused_not_mixed_in(tmp_path):
    folder = tmp_path / "searched-baseline" / "seed0"
    folder.mkdir(parents=True)
    config = {"epochs": 3, "width_mult": 0.5, "resolution": 32, "seed": 0,
              "train_subset": None, "optimizer": "rmsprop"}
    (folder / "metrics.json").write_text(json.dumps({"config": config}))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--baseline", str(ROOT / "configs" / "mnasnet-a1.yaml"),
         "--groups", "baselines", "--epochs", "5", "--out", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "another protocol (epochs 3, here 5)" in last and "--out" in last
    assert not (tmp_path / "efficientnet-b0").exists()  # nothing started


def test_protocol_mismatch_names_the_recipe_field():
    job = {"epochs": 5, "width": 0.5, "resolution": 32, "seed": 1,
           "recipe": {"optimizer": "adamw", "lr": 0.002}}
    config = {"epochs": 5, "width_mult": 0.5, "resolution": 32, "seed": 1,
              "train_subset": None, "optimizer": "adamw", "lr": 0.002}
    assert bench.protocol_mismatch(config, job) is None
    assert bench.protocol_mismatch({**config, "lr": 0.01}, job) == "lr 0.01, here 0.002"


def test_unknown_group_is_refused_in_one_line():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--baseline", "x.yaml",
                           "--groups", "baseline"], check=False, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "unknown group baseline; choose from baselines, scaling, family" in proc.stderr


def test_finished_runs_of_other_seeds_are_found(tmp_path):
    for name in ("seed0", "seed2", "seed7", "seedx"):
        (tmp_path / name).mkdir()
    for name in ("seed0", "seed2", "seedx"):
        (tmp_path / name / "metrics.json").write_text("{}")
    assert bench.finished_seeds(tmp_path) == [0, 2]  # seed7 is unfinished
    assert bench.finished_seeds(tmp_path / "missing") == []


def test_seeds_already_trained_are_counted_once(tmp_path):
    """Seeds 1 and 2 found on disk and asked for again by --more-seeds: each run once."""
    recipe = {"optimizer": "adamw"}
    labels = ["searched-baseline", "efficientnet-b0", "mnasnet-a1", "mobilenetv2"]
    for i, label in enumerate(labels):
        for seed in (0, 1, 2):
            folder = tmp_path / label / f"seed{seed}"
            folder.mkdir(parents=True)
            config = {"epochs": 5, "width_mult": 0.5, "resolution": 32, "seed": seed,
                      "train_subset": None, "optimizer": "adamw"}
            (folder / "metrics.json").write_text(json.dumps({
                "config": config, "best_val_accuracy": 0.8 + i / 1000 + seed / 10000,
                "test_accuracy": 0.8, "macs": {"at_spec_resolution": 1e8}, "params": 1000,
                "train_seconds": 60}))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--baseline", str(ROOT / "configs" / "mnasnet-a1.yaml"),
         "--groups", "baselines", "--epochs", "5", "--seeds", "0", "--more-seeds", "1,2",
         "--recipe", json.dumps(recipe), "--processes", "1", "--out", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "claims.json").read_text())
    keys = [(r["label"], r["seed"]) for r in results]
    assert len(keys) == len(set(keys)) == 12
    assert all(r["reused"] for r in results)
    assert "| searched baseline | 100.0M | 1,000 | 32 | 0.8001 (0.8000-0.8002) |" in (
        tmp_path / "claims.md").read_text()


def test_a_missing_baseline_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--baseline", str(tmp_path / "no.yaml"),
                           "--groups", "baselines", "--out", str(tmp_path)], check=False,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'no.yaml'}: file not found; check the path"]


def test_models_narrow_the_groups_by_label(todo):
    kept = bench.select(todo, ["searched baseline", "efficientnet-b0"])
    assert [(m["group"], m["label"]) for m in kept] == [
        ("baselines", "searched baseline"), ("baselines", "efficientnet-b0"),
        ("family", "efficientnet-b0")]
    assert bench.comparisons(kept, "baselines") == [("searched baseline", "efficientnet-b0")]
    assert bench.select(todo, []) == todo
    with pytest.raises(ValueError, match="unknown model b0 in these groups; choose from "
                                         "searched baseline, efficientnet-b0"):
        bench.select(todo, ["b0"])


def test_an_unknown_model_is_refused_in_one_line():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--baseline",
                           str(ROOT / "configs" / "mnasnet-a1.yaml"), "--groups", "baselines",
                           "--models", "searched baseline,b0"], check=False,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "bench_claims.py: error: unknown model b0 in these groups; choose from searched "
        "baseline, efficientnet-b0, mnasnet-a1, mobilenetv2")
