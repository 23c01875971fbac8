"""bench/bench_gpu.py without a GPU: its arguments, the refusal without CUDA, the checks of
what one GPU can hold, the utilisation sampler, and (slow) every measured run on the CPU, so
that the CUDA runs differ from what is tested here only in the device."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_bench

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "bench_gpu.py"


bench = load_bench("bench_gpu")


def test_defaults_measure_amp_against_fp32_and_one_two_four_children_per_gpu():
    args = bench.build_parser().parse_args([])
    assert args.amp == ["auto", "off"] and args.sharing == [1, 2, 4]
    assert args.gpus_per_trial == 0.25 and args.full_resolution == 224
    args = bench.build_parser().parse_args(["--sharing", "1,8", "--gpus-per-trial", "0.125",
                                            "--amp", "bf16"])
    assert args.sharing == [1, 8] and args.gpus_per_trial == 0.125 and args.amp == ["bf16"]


@pytest.mark.parametrize("argv,needle", [
    (["--gpus-per-trial", "2"], "--gpus-per-trial"),
    (["--gpus-per-trial", "0"], "--gpus-per-trial"),
    (["--sharing", "0"], "--sharing"),
    (["--sharing", "a,b"], "--sharing"),
    (["--amp", "fp8"], "--amp"),
    (["--children", "0"], "--children"),
])
def test_bad_arguments_are_one_line_and_exit_2(capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        bench.build_parser().parse_args(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and needle in err[0]


def test_it_refuses_to_run_without_cuda():
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = subprocess.run([sys.executable, str(SCRIPT)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "CUDA" in lines[0]


def test_what_one_gpu_cannot_hold_is_refused_before_anything_runs():
    parse = bench.build_parser().parse_args
    bench.check_machine(parse([]), True, 1, 16)  # 4 x 0.25 GPU, 4 CPUs: fits
    with pytest.raises(bench.BenchError, match="needs 2 GPUs"):
        bench.check_machine(parse(["--sharing", "1,8"]), True, 1, 16)
    with pytest.raises(bench.BenchError, match="needs 8 CPUs"):
        bench.check_machine(parse(["--cpus-per-trial", "2"]), True, 1, 4)
    bench.check_machine(parse(["--sharing", "8", "--skip-sharing"]), True, 1, 2)
    with pytest.raises(bench.BenchError, match="CUDA"):
        bench.check_machine(parse([]), False, 0, 16)


def test_the_sampler_averages_what_it_reads():
    values = iter([10.0, 30.0, 50.0] + [50.0] * 1000)
    with bench.Sampler(lambda: next(values), interval=0.01) as s:
        import time
        time.sleep(0.1)
    assert len(s.samples) >= 2 and 10.0 <= s.mean <= 50.0
    with bench.Sampler(None) as none:
        pass
    assert none.mean is None and none.samples == []


def test_the_table_reports_rates_and_busy_seconds():
    run = bench.Run("x", n=4, wall=10.0, images=20_000, child_ips=600.0, busy=50.0,
                    peak_memory=1.5)
    assert run.per_hour == pytest.approx(1440) and run.images_per_second == 2000
    row = bench.table([run]).splitlines()[-1]
    assert row == "| x | 4 | 10.0 | 1440 | 2000 | 600 | 50 % | 5.0 | 1.50 |"
    assert "n/a" in bench.table([bench.Run("y", 1, 1.0, 1.0, 1.0, None)])


@pytest.mark.slow
def test_every_run_of_the_benchmark_works_on_the_cpu(tiny_fmnist):
    # The CUDA runs call exactly these functions with device "cuda" and a GPU share.
    data, recipe = bench.load("proxy-smoke", str(tiny_fmnist), "fashion-mnist", 0, 100)
    recipe = recipe.replace(train_subset=128, resolution=16)
    configs = bench.children(2, 0)
    run = bench.proxy_run("cpu", configs, data, recipe.replace(amp="off"), "cpu", None)
    assert run.n == 2 and run.images == pytest.approx(2 * 128, rel=0.3)
    assert run.busy is None and run.peak_memory is None and run.per_hour > 0
    shared = bench.shared_run("ray", configs, data, recipe, 2, 0.0, 1.0, None)
    assert shared.n == 2 and shared.images == pytest.approx(run.images)
    import ray
    ray.shutdown()
    rows, full = bench.full_training(1, 16, 32, "cpu", "auto", str(tiny_fmnist),
                                     "fashion-mnist", None, train_subset=64, val_size=100)
    assert len(rows) == 1 and rows[0]["train_seconds"] > 0 and full.n == 1
    assert "| 1 |" in bench.epoch_table(rows, full)
