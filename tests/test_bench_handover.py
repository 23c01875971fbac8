"""bench/bench_handover.py: its verdict, and one small comparison of two strategies end to
end (real searches through search.py on tiny Fashion-MNIST files, then the retraining)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_bench

bench = load_bench("bench_handover")


def test_verdict_needs_three_seeds_and_ranges_apart():
    apart = bench.verdict("reward", "ppo", "random", [0.80, 0.81, 0.82], [0.70, 0.72, 0.75])
    assert "ppo above random, ranges apart (shown" in apart
    over = bench.verdict("reward", "ppo", "random", [0.70, 0.81, 0.82], [0.72, 0.73, 0.75])
    assert over.endswith("(not shown)") and "ppo's mean above random's" in over
    few = bench.verdict("accuracy", "a", "b", [0.5], [0.9])
    assert "b's mean above a's" in few and "fewer than 3 seeds (not shown)" in few


@pytest.mark.slow
def test_two_strategies_hand_over_and_are_retrained(capsys, tiny_fmnist, tmp_path: Path):
    out = tmp_path / "handover"
    sets = [x for kv in ("proxy.epochs=1", "proxy.train_subset=64", "data.val_size=50",
                         f"data.path={tiny_fmnist}") for x in ("--set", kv)]
    assert bench.main(["strategies", "--out", str(out), "--arms", "ppo", "random",
                       "--seeds", "0", "--budget", "2", "--eval-seeds", "2", *sets]) == 0
    printed = capsys.readouterr().out
    assert "| ppo | 0 |" in printed and "| random | 0 |" in printed
    assert "fewer than 3 seeds (not shown)" in printed
    result = json.loads((out / "handover.json").read_text())
    assert result["compare"] == "strategies" and len(result["rows"]) == 2
    for row in result["rows"]:
        assert len(row["retrained"]) == 2 and 0.0 <= row["accuracy"] <= 1.0
        assert (out / f"{row['arm']}-0" / "best.yaml").is_file()
    # a second call reads every finished search and retraining back
    assert bench.main(["strategies", "--out", str(out), "--arms", "ppo", "random",
                       "--seeds", "0", "--budget", "2", "--eval-seeds", "2", *sets]) == 0
    assert json.loads((out / "handover.json").read_text())["rows"] == result["rows"]
