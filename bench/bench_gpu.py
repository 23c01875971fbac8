"""GPU throughput of the search and of full training, side by side in one run (CUDA only).

    python bench/bench_gpu.py                                  # 8 children, proxy-default
    python bench/bench_gpu.py --children 12 --sharing 1,2,4 --gpus-per-trial 0.25
    python bench/bench_gpu.py --skip-full --data /path/to/fashion-mnist

Measures, on one GPU and the same list of seeded children of the MnasNet space:

1. proxy training in this process, mixed precision (the recipe's ``amp: auto``: bf16
   autocast where the GPU supports it, else fp16 with loss scaling) against fp32
   (``amp: off``): children per hour, images per second, peak GPU memory;
2. several children sharing the GPU through the search machinery (ChildDriver and the Ray
   Tune adapter, ``--gpus-per-trial`` each): 1, 2 and 4 at a time by default;
3. for every run above, how busy the GPU was: the utilisation NVML reports (the share of
   time a kernel was running), sampled every 0.2 s, as a mean and as busy seconds;
4. full training of EfficientNet-B0 with ``nas.training.fit`` (``--full-epochs`` epochs
   on every training image at ``--full-resolution`` px, mixed precision): seconds per
   epoch and images per second.

A first child (not timed) warms up CUDA and the kernels before (1). Without CUDA the script
refuses to run (exit 2).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nas.cli.parser import positive_int  # noqa: E402 - after the path above

EXIT_BAD_INPUT = 2
SAMPLE_SECONDS = 0.2


class BenchError(Exception):
    """Bad input or a machine that cannot run the benchmark: one line, exit 2."""


# --------------------------------------------------------------------------- arguments


def _positive_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected whole numbers such as 1,2,4") \
            from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected whole numbers >= 1 such as 1,2,4")
    return values


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"{v:g}: use a share of one GPU in (0, 1], e.g. 0.25")
    return v


def _amp_list(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("auto", "off", "bf16", "fp16")]
    if not modes or bad:
        raise argparse.ArgumentTypeError(f"{text!r}: use amp modes among auto, off, bf16, fp16")
    return modes


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bench/bench_gpu.py", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--children", type=positive_int, default=8,
                   help="children in each proxy run (default 8)")
    p.add_argument("--proxy", default="proxy-default",
                   help="the proxy recipe: a bundled name or a YAML path (default proxy-default)")
    p.add_argument("--amp", type=_amp_list, default=["auto", "off"],
                   help="amp modes of the in-process proxy runs, side by side (default auto,off)")
    p.add_argument("--sharing", type=_positive_list, default=[1, 2, 4],
                   help="children trained at once on one GPU through Ray Tune (default 1,2,4)")
    p.add_argument("--gpus-per-trial", type=_fraction, default=0.25,
                   help="GPU share of each child in the sharing runs (default 0.25)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0,
                   help="CPUs of each child in the sharing runs (default 1)")
    p.add_argument("--full-epochs", type=positive_int, default=2,
                   help="epochs of EfficientNet-B0 full training (default 2: the first "
                        "includes CUDA warm-up)")
    p.add_argument("--full-resolution", type=positive_int, default=224,
                   help="input size of the full training, px (default 224, the paper's)")
    p.add_argument("--full-batch-size", type=positive_int, default=128)
    p.add_argument("--skip-proxy", action="store_true", help="leave out the proxy runs")
    p.add_argument("--skip-sharing", action="store_true", help="leave out the sharing runs")
    p.add_argument("--skip-full", action="store_true", help="leave out the full training")
    p.add_argument("--data", metavar="PATH", help="data folder (default: the Fashion-MNIST "
                                                  "install, or NAS_DATA_DIR)")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--val-size", type=positive_int, default=5000,
                   help="training images held out for validation (default 5000)")
    p.add_argument("--seed", type=int, default=0)
    return p


def check_machine(args: argparse.Namespace, cuda_available: bool, gpus: int,
                  cpus: int) -> None:
    """Refuse what this machine cannot run, before anything is loaded."""
    if not cuda_available:
        raise BenchError("bench_gpu.py measures a CUDA GPU and torch sees none here "
                         "(torch.cuda.is_available() is False); run it on a machine with a GPU "
                         "and the CUDA build of torch")
    if not args.skip_sharing:
        most = max(args.sharing)
        if most * args.gpus_per_trial > gpus + 1e-9:
            raise BenchError(f"--sharing {most} x --gpus-per-trial {args.gpus_per_trial:g} "
                             f"needs {most * args.gpus_per_trial:g} GPUs and {gpus} are visible; "
                             f"use --gpus-per-trial {1 / most:g} or fewer children at once")
        if most * args.cpus_per_trial > cpus:
            raise BenchError(f"--sharing {most} x --cpus-per-trial {args.cpus_per_trial:g} "
                             f"needs {most * args.cpus_per_trial:g} CPUs and this machine has "
                             f"{cpus}; lower --cpus-per-trial")


# --------------------------------------------------------------------------- GPU utilisation


def _nvml_reader(index: int) -> Callable[[], float] | None:
    try:
        import torch
        torch.cuda.utilization(index)  # needs pynvml (nvidia-ml-py)
    except Exception:  # noqa: BLE001 - no NVML binding: try nvidia-smi
        return None
    return lambda: float(torch.cuda.utilization(index))


def _smi_reader(index: int) -> Callable[[], float] | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    physical = visible if visible.isdigit() else str(index)
    cmd = [smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", physical]

    def read() -> float:
        return float(subprocess.run(cmd, capture_output=True, text=True, timeout=5,
                                    check=True).stdout.strip().splitlines()[0])
    try:
        read()
    except Exception:  # noqa: BLE001
        return None
    return read


def utilisation_reader(index: int = 0) -> tuple[Callable[[], float] | None, str]:
    """A function returning the GPU's utilisation in percent, and where it comes from."""
    reader = _nvml_reader(index)
    if reader is not None:
        return reader, "NVML (torch.cuda.utilization)"
    reader = _smi_reader(index)
    if reader is not None:
        return reader, "nvidia-smi"
    return None, "not available (neither pynvml nor nvidia-smi)"


class Sampler:
    """Samples ``read()`` every ``interval`` seconds in a thread while in a ``with`` block."""

    def __init__(self, read: Callable[[], float] | None, interval: float = SAMPLE_SECONDS):
        self.read, self.interval = read, interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.read())  # type: ignore[misc]
            except Exception:  # noqa: BLE001 - a failed sample is left out
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> "Sampler":
        if self.read is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


# --------------------------------------------------------------------------- the runs


@dataclass(frozen=True)
class Run:
    """One measured run: ``n`` children (or epochs) in ``wall`` seconds."""

    label: str
    n: int
    wall: float
    images: float            # training images processed, all children together
    child_ips: float         # mean of the children's own training images per second
    busy: float | None       # mean GPU utilisation, percent
    peak_memory: float | None = None  # GiB, in-process runs only

    @property
    def per_hour(self) -> float:
        return self.n * 3600 / self.wall

    @property
    def images_per_second(self) -> float:
        return self.images / self.wall


def children(n: int, seed: int) -> list[dict]:
    """``n`` seeded samples of the MnasNet space as driver configs."""
    import numpy as np

    import nas
    from nas.arch.spec import spec_to_dict
    from search_space import SearchSpace
    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    rng = np.random.default_rng(seed)
    return [{"child": i, "spec": spec_to_dict(space.sample(rng)), "proxy": {}, "seed": seed + i}
            for i in range(n)]


def load(proxy: str, data_path: str | None, dataset: str, seed: int,
         val_size: int = 5000) -> tuple[Any, Any]:
    """The data (loaded once, as a search loads it) and the proxy recipe."""
    from nas.core.settings import load
    from nas.search.settings import SearchSettings
    over: dict[str, Any] = {"proxy": proxy, "seed": seed,
                            "data": {"source": dataset, "path": data_path,
                                     "val_size": val_size, "seed": seed}}
    s = load(SearchSettings, overrides=over)
    return s.data.load(), s.proxy


def _totals(results: list[dict]) -> tuple[float, float]:
    images = sum(r["images_per_second"] * r["train_seconds"] for r in results)
    ips = sum(r["images_per_second"] for r in results) / len(results)
    return images, ips


def proxy_run(label: str, configs: list[dict], data: Any, recipe: Any, device: str,
              read: Callable[[], float] | None) -> Run:
    """Train ``configs`` one after another in this process, as a Tune worker would."""
    import torch

    from nas.training.child import run_child
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    results = []
    with Sampler(read) as sampler:
        t0 = time.perf_counter()
        for c in configs:
            r = run_child(c, data, recipe, device=device)
            if r["status"] != "ok":
                raise BenchError(f"{label}: child {c['child']} ended {r['status']}: {r['error']}")
            results.append(r)
        wall = time.perf_counter() - t0
    images, ips = _totals(results)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return Run(label, len(configs), wall, images, ips, sampler.mean, peak)


def shared_run(label: str, configs: list[dict], data: Any, recipe: Any, workers: int,
               gpus_per_trial: float, cpus_per_trial: float,
               read: Callable[[], float] | None) -> Run:
    """Train ``configs`` through the search machinery, ``workers`` at a time, each on
    ``gpus_per_trial`` of a GPU (0: on the CPU)."""
    from controller import FixedList
    from nas.arch.spec import spec_from_dict
    from nas.ray.runtime import check_resources, init_ray
    from nas.ray.searcher import run_trials
    from nas.search.driver import ChildDriver, Target
    from nas.search.reward import RewardConfig
    from nas.search.settings import TrialSettings

    specs = [spec_from_dict(c["spec"]) for c in configs]
    driver = ChildDriver(lambda t: (specs[t[0]], {}), FixedList(len(specs)), budget=len(specs),
                         reward=RewardConfig(), target=Target())
    init_ray(None)
    check_resources(cpus_per_trial, gpus_per_trial)
    trials = TrialSettings(recipe=recipe, workers=workers, cpus_per_trial=cpus_per_trial,
                           gpus_per_trial=gpus_per_trial, max_failures=0)
    with tempfile.TemporaryDirectory() as tmp, Sampler(read) as sampler:
        t0 = time.perf_counter()
        run_trials(driver, data, trials, Path(tmp), "bench", lambda records: None,
                   state_file=Path(tmp) / "driver.pt")
        wall = time.perf_counter() - t0
    records = driver.trained_records()
    bad = [r for r in records if r.status != "ok"]
    if len(records) != len(specs) or bad:
        raise BenchError(f"{label}: {len(bad)} of {len(records)} children did not train "
                         f"({bad[0].status}: {bad[0].error})" if bad else
                         f"{label}: {len(records)} of {len(specs)} children came back")
    results = [{"images_per_second": r.proxy["images_per_second"],
                "train_seconds": r.proxy["train_seconds"]} for r in records]
    images, ips = _totals(results)
    return Run(label, len(configs), wall, images, ips, sampler.mean)


def full_training(epochs: int, resolution: int, batch_size: int, device: str, amp: str,
                  data_path: str | None, dataset: str, read: Callable[[], float] | None,
                  train_subset: int | None = None, val_size: int | float = 5000
                  ) -> tuple[list[dict], Run]:
    """EfficientNet-B0 trained with ``nas.training.fit``; returns its epoch rows and the run."""
    from nas.training.fit import TrainSettings, check, fit, make_spec, resolve
    with tempfile.TemporaryDirectory() as tmp:
        c = resolve(TrainSettings(spec="efficientnet-b0", dataset=dataset, data=data_path,
                                resolution=resolution, epochs=epochs, batch_size=batch_size,
                                device=device, amp=amp, export="none", out=tmp,
                                train_subset=train_subset, val_size=val_size))
        check(c)
        spec = make_spec(c)
        with Sampler(read) as sampler:
            t0 = time.perf_counter()
            result = fit(c, spec, None, "bench/bench_gpu.py", say=lambda line: None)
            wall = time.perf_counter() - t0
    if result.metrics is None or result.status != "completed":
        raise BenchError(f"full training ended {result.status}")
    rows = result.metrics["val_curve"]
    images = result.metrics["images_per_epoch"] * len(rows)
    run = Run(f"EfficientNet-B0, amp {amp}", len(rows), wall, images,
              result.metrics["images_per_second"], sampler.mean)
    return rows, run


# --------------------------------------------------------------------------- output


def _busy(r: Run) -> str:
    if r.busy is None:
        return "n/a | n/a"
    return f"{r.busy:.0f} % | {r.busy / 100 * r.wall:.1f}"


def table(runs: list[Run]) -> str:
    lines = ["| run | children | wall s | children/hour | images/s (all) | images/s per child "
             "| GPU busy | busy s | peak GiB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        peak = "-" if r.peak_memory is None else f"{r.peak_memory:.2f}"
        lines.append(f"| {r.label} | {r.n} | {r.wall:.1f} | {r.per_hour:.0f} | "
                     f"{r.images_per_second:.0f} | {r.child_ips:.0f} | {_busy(r)} | {peak} |")
    return "\n".join(lines)


def epoch_table(rows: list[dict], run: Run) -> str:
    lines = ["| epoch | train s | eval s | images/s | val accuracy |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['epoch']} | {row['train_seconds']:.1f} | {row['eval_seconds']:.1f} "
                     f"| {row['images_per_second']:.0f} | {row['val_accuracy']:.4f} |")
    busy = ("" if run.busy is None else
            f"; GPU busy {run.busy:.0f} % of it ({run.busy / 100 * run.wall:.1f} s)")
    lines.append(f"\nwall {run.wall:.1f} s for {run.n} epoch(s), data loading, model build and "
                 f"the test pass included{busy}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import torch
        check_machine(args, torch.cuda.is_available(),
                      torch.cuda.device_count() if torch.cuda.is_available() else 0,
                      os.cpu_count() or 1)
        return measure(args)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


def measure(args: argparse.Namespace) -> int:
    import torch

    from nas.core.errors import NasError
    read, source = utilisation_reader(0)
    props = torch.cuda.get_device_properties(0)
    print(f"GPU {props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}, bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}, "
          f"TF32 for fp32 convolutions {torch.backends.cudnn.allow_tf32}, matmuls "
          f"{torch.backends.cuda.matmul.allow_tf32}; {os.cpu_count()} CPUs; GPU utilisation "
          f"from {source}", flush=True)
    try:
        data, recipe = load(args.proxy, args.data, args.dataset, args.seed, args.val_size)
    except NasError as e:
        raise BenchError(str(e)) from None
    configs = children(args.children, args.seed)
    print(f"{args.children} children of the MnasNet space, proxy {args.proxy} "
          f"({recipe.epochs} epochs over {recipe.train_subset or len(data.train)} images at "
          f"{recipe.resolution or data.image_size} px, width x{recipe.width_mult:g}, batch "
          f"{recipe.batch_size}); data {data.name} ({len(data.train)} train / {len(data.val)} "
          "val)", flush=True)
    runs: list[Run] = []
    if not args.skip_proxy:
        from nas.training.child import run_child
        warm = run_child(children(1, args.seed + 10_000)[0], data, recipe, device="cuda")
        print(f"warm-up child: {warm['status']} in {warm['seconds']:.1f} s", flush=True)
        for amp in args.amp:
            label = f"1 process, amp {amp}" + (" (fp32)" if amp == "off" else "")
            runs.append(proxy_run(label, configs, data, recipe.replace(amp=amp), "cuda", read))
            print(table(runs[-1:]).splitlines()[-1], flush=True)
    if not args.skip_sharing:
        torch.cuda.empty_cache()  # the workers get the memory this process no longer uses
        for k in args.sharing:
            label = f"Ray Tune, {k} at a time, {args.gpus_per_trial:g} GPU each"
            runs.append(shared_run(label, configs, data, recipe, k, args.gpus_per_trial,
                                   args.cpus_per_trial, read))
            print(table(runs[-1:]).splitlines()[-1], flush=True)
        import ray
        ray.shutdown()
    if runs:
        print("\n" + table(runs))
    if not args.skip_full:
        rows, run = full_training(args.full_epochs, args.full_resolution, args.full_batch_size,
                                  "cuda", "auto", args.data, args.dataset, read,
                                  val_size=args.val_size)
        print(f"\nEfficientNet-B0 full training (nas.training.fit, amp auto, "
              f"{args.full_resolution} px, batch {args.full_batch_size}, every training "
              "image):\n" + epoch_table(rows, run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
