"""Training throughput of our EfficientNet-B0 against torchvision's, measured in the same run.

Both models train with SGD (lr 0.01, momentum 0.9) and cross-entropy on the same random batch:
CPU, 3x64x64 input, batch 32, 1000 classes, train mode (batch norm, dropout and drop path
active). After warm-up steps (not timed), each round times ``--steps`` steps of one model and then
of the other, alternating which goes first, so that drift in the machine's load hits both alike.
The result is the median images/s over the rounds and the ratio ours / torchvision.

torchvision is never a dependency of this project; the benchmark runs in its own environment,
created with::

    python3 -m venv /work/main/.bench-venv && /work/main/.bench-venv/bin/pip install \
        torch==2.14.1 torchvision==0.29.1 pyyaml numpy

and run from the repository root (the project is imported from there, not installed)::

    .bench-venv/bin/python bench/bench_builder.py                 # 2 threads, 7 rounds
    .bench-venv/bin/python bench/bench_builder.py --profile       # plus a per-op profile

It measures the machine: check ``uptime`` first and run it when the load is low.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import nas  # noqa: E402


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


def _timed(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
           steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        _step(model, opt, x, y)
    return steps * x.shape[0] / (time.perf_counter() - t0)


def _profile(name: str, model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
             y: torch.Tensor) -> None:
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            _step(model, opt, x, y)
    print(f"\n--- profile: {name} (3 steps) ---")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


def main(argv: Sequence[str] | None = None) -> int:
    import torchvision
    from torchvision.models import efficientnet_b0

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model")
    p.add_argument("--steps", type=int, default=5, help="timed steps per model per round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--channels-last", action="store_true", help="both models and the input")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours = nas.build_model(nas.load_spec("efficientnet-b0"), num_classes=args.num_classes).train()
    theirs = efficientnet_b0(num_classes=args.num_classes).train()
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, args.num_classes, (args.batch,))
    if args.channels_last:
        ours, theirs = (m.to(memory_format=torch.channels_last) for m in (ours, theirs))
        x = x.contiguous(memory_format=torch.channels_last)
    models = {"ours": ours, "torchvision": theirs}
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in models.items()}

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"EfficientNet-B0 training throughput: batch {args.batch}, 3x{args.size}x{args.size}, "
          f"{args.num_classes} classes, SGD, {args.threads} threads, "
          f"{'channels_last' if args.channels_last else 'contiguous'}")
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, Python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, load {load:.2f} at start")
    for name, m in models.items():
        print(f"  {name:<12} {sum(q.numel() for q in m.parameters()):,} params")

    for name, m in models.items():
        for _ in range(args.warmup):
            _step(m, opts[name], x, y)

    rates: dict[str, list[float]] = {k: [] for k in models}
    for r in range(args.rounds):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for name in order:
            rates[name].append(_timed(models[name], opts[name], x, y, args.steps))
    med = {k: statistics.median(v) for k, v in rates.items()}
    for name, v in rates.items():
        print(f"  {name:<12} median {med[name]:7.1f} images/s  (rounds: "
              f"{', '.join(f'{r:.1f}' for r in v)})")
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"ratio ours / torchvision: {med['ours'] / med['torchvision']:.3f} "
          f"(load {load_end:.2f} at end)")

    if args.profile:
        for name, m in models.items():
            _profile(name, m, opts[name], x, y)
    return 0


if __name__ == "__main__":
    sys.exit(main())
