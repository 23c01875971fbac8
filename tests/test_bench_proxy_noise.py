"""bench/bench_proxy_noise.py: its statistics, and one small run on the real file format
(a tiny spec, tiny Fashion-MNIST files, two levers, two seeds) through the search's child."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest
from conftest import load_bench
from test_train_settings import TINY_SPEC

bench = load_bench("bench_proxy_noise")


def test_pooled_sd_is_the_within_group_spread():
    assert bench.pooled_sd([[1.0, 3.0], [10.0, 12.0]]) == pytest.approx(math.sqrt(2.0))
    assert math.isnan(bench.pooled_sd([[1.0]]))
    lo, hi = bench.bootstrap_sd([[0.70, 0.72, 0.74, 0.71], [0.80, 0.83, 0.79, 0.81]], reps=200)
    assert 0.0 <= lo <= bench.pooled_sd([[0.70, 0.72, 0.74, 0.71],
                                         [0.80, 0.83, 0.79, 0.81]]) * 1.5 and lo <= hi


def test_refuses_unknown_levers(capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--levers", "default,louder"])
    assert e.value.code == 2 and "use levers of" in capsys.readouterr().err


def test_a_small_run_prints_the_table_and_writes_every_run(capsys, tiny_fmnist, tmp_path: Path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    out = tmp_path / "runs.csv"
    assert bench.main(["--specs", str(spec), "--seeds", "2", "--levers", "default,val10k",
                       "--data", str(tiny_fmnist), "--val-size", "50", "--processes", "1",
                       "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| default |" in printed and "| val10k |" in printed
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    assert sys.modules["bench_proxy_noise"] is bench
