"""bench/bench_crn.py: its statistics, and one small run on the real file format (tiny
Fashion-MNIST files, three networks, two replicates) through the proxy's own training."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from conftest import load_bench

bench = load_bench("bench_crn")


def test_only_the_common_condition_shares_a_data_seed():
    common = {bench.data_seed("common", n, 1) for n in range(5)}
    independent = {bench.data_seed("independent", n, r) for n in range(5) for r in range(3)}
    assert len(common) == 1 and len(independent) == 15 and not common & independent


def test_tau_and_spreads():
    # two replicates that rank three networks the same way, one that reverses them
    acc = {(0, 0): 0.1, (1, 0): 0.2, (2, 0): 0.3,
           (0, 1): 0.2, (1, 1): 0.3, (2, 1): 0.4,
           (0, 2): 0.3, (1, 2): 0.2, (2, 2): 0.1}
    assert bench.taus(acc, [0, 1, 2], 2) == pytest.approx(1.0)
    assert bench.taus(acc, [0, 1, 2], 3) == pytest.approx((1.0 - 1.0 - 1.0) / 3)
    one, diff = bench.spreads({(0, 0): 0.5, (0, 1): 0.7, (1, 0): 0.4, (1, 1): 0.6}, 2, 2)
    assert one == pytest.approx(math.sqrt(0.02)) and diff == pytest.approx(0.0)


def test_a_small_run_prints_both_conditions(capsys, tiny_fmnist, tmp_path: Path):
    out = tmp_path / "crn.csv"
    assert bench.main(["--networks", "3", "--replicates", "2", "--data", str(tiny_fmnist),
                       "--val-size", "50", "--set", "epochs=1", "--set", "train_subset=64",
                       "--processes", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| independent |" in printed and "| common |" in printed
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 12 and {r["status"] for r in rows} == {"ok"}
    for r in rows:  # the same initial weights in both conditions, the data seed differs
        twin = next(t for t in rows if t["network"] == r["network"]
                    and t["replicate"] == r["replicate"] and t is not r)
        assert twin["init_seed"] == r["init_seed"] and twin["data_seed"] != r["data_seed"]
