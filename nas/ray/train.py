"""The module that meets Ray Train: the supernet as a data-parallel ``TorchTrainer`` job.

Each Ray Train worker builds the same supernet (same seed), wraps it in DDP with
``find_unused_parameters`` (a path leaves most shared weights unused) and runs its part of
:class:`nas.supernet.train.JointTraining` on its shard of the training images; rank 0 owns
the strategy. On CPU the process group is gloo, and each worker gets ``cpus_per_worker``
CPUs and as many torch threads (Ray sets ``OMP_NUM_THREADS`` to the CPUs it assigns).

Checkpoints do not use Ray Train's storage. Rank 0 sends each epoch's checkpoint (bytes
through the object store) to a small actor pinned to the driver's node, which writes
``supernet/supernet.pt``, ``supernet/samples.csv`` and ``supernet/progress.jsonl`` into the
run folder atomically; so the run folder is the one on the driver's machine whatever node
rank 0 runs on, and ``--resume`` after a kill -9 continues from the last epoch. A job whose
worker dies is started again from that checkpoint by :func:`run_supernet` (``max_failures``).
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from nas.core.errors import ConfigError
from nas.core.files import atomic_file, write_text_atomic
from nas.data import DataSplits
from nas.supernet.settings import SupernetSettings

CHECKPOINT = "supernet.pt"
SAMPLE_COLUMNS = ("step", "rank", "accuracy", "reward", "macs", "policy_version", "tokens")


@dataclass(frozen=True)
class SupernetJob:
    """Everything a Ray Train worker needs: plain data, and ``score``, the search's reward of
    a path (``score(accuracy, tokens) -> (reward, MACs)``, pickled to the workers)."""

    space: Mapping[str, Any]          # the space's definition (SearchSpace.to_dict())
    settings: SupernetSettings
    strategy: str
    strategy_options: Mapping[str, Any]
    score: Callable[[float, Sequence[int]], tuple[float, int]]
    seed: int
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float


class FolderWriter:
    """Writes the supernet's checkpoint and tables into the run folder (a Ray actor on the
    driver's node)."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def save(self, blob: bytes, texts: Mapping[str, str]) -> None:
        with atomic_file(self.folder / CHECKPOINT, "wb") as f:
            f.write(blob)
        for name, text in texts.items():
            write_text_atomic(self.folder / name, text)


def samples_csv(samples: list[dict[str, Any]]) -> str:
    lines = [",".join(SAMPLE_COLUMNS)]
    for s in samples:
        lines.append(f"{s['step']},{s['rank']},{s['accuracy']:.6f},{s['reward']:.6f},"
                     f"{s['macs']},{s['policy_version']},{' '.join(map(str, s['tokens']))}")
    return "\n".join(lines) + "\n"


def _train_worker(config: dict[str, Any]) -> None:
    """Ray Train's ``train_loop_per_worker``: one rank of the supernet job."""
    import ray
    import ray.train
    import ray.train.torch
    import torch

    from controller import make_strategy
    from nas.supernet.model import make_supernet
    from nas.supernet.train import Comm, JointTraining, shard
    from search_space import SearchSpace

    job: SupernetJob = config["job"]
    data: DataSplits = ray.get(config["data"][0])
    writer = config["writer"]
    resume = ray.get(config["resume"][0]) if config["resume"] else None
    comm = Comm()
    rank, world = comm.rank, comm.world
    device = ray.train.torch.get_device() if job.gpus_per_worker > 0 else torch.device("cpu")
    space = SearchSpace.from_dict(job.space)
    r = job.settings.supernet
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(job.seed)  # the same initial weights on every rank
        supernet = make_supernet(space, r.width_mult, r.resolution, data.num_classes,
                                 data.in_channels, job.settings.split,
                                 job.settings.bn_affine)
    supernet.to(device)
    if r.channels_last:
        supernet.to(memory_format=torch.channels_last)
    model = ray.train.torch.prepare_model(
        supernet, move_to_device=False,
        parallel_strategy_kwargs={"find_unused_parameters": True})
    strategy = (make_strategy(job.strategy, space.sizes(), seed=job.seed,
                              **dict(job.strategy_options)) if rank == 0 else None)
    jt = JointTraining(supernet, model, space, job.settings, shard(data.train, rank, world),
                       data.val, data.train.channel_stats(), strategy,
                       job.score, device, job.seed, comm)
    state = None if resume is None else torch.load(io.BytesIO(resume), map_location="cpu",
                                                    weights_only=False)

    def save(checkpoint: dict[str, Any]) -> None:
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        progress = "".join(json.dumps(h) + "\n" for h in checkpoint["history"])
        ray.get(writer.save.remote(buf.getvalue(), {
            "samples.csv": samples_csv(checkpoint["samples"]), "progress.jsonl": progress}))

    jt.run(save=save if rank == 0 else None, state=state)  # a diverged run is left unranked


def check_train_resources(workers: int, cpus_per_worker: float, gpus_per_worker: float) -> None:
    """Refuse a layout the cluster cannot hold (Ray Train would wait for it forever)."""
    import ray
    res = ray.cluster_resources()
    cpus, gpus = res.get("CPU", 0.0), res.get("GPU", 0.0)
    if workers * cpus_per_worker > cpus:
        raise ConfigError(f"workers={workers} x {cpus_per_worker:g} CPUs per worker needs "
                          f"{workers * cpus_per_worker:g} CPUs but the Ray cluster has {cpus:g}; "
                          "use fewer workers= or fewer CPUs per worker")
    if gpus_per_worker > 0 and workers * gpus_per_worker > gpus:
        raise ConfigError(f"workers={workers} x oneshot.gpus_per_worker={gpus_per_worker:g} "
                          f"needs {workers * gpus_per_worker:g} GPUs but the Ray cluster has "
                          f"{gpus:g}; use fewer workers=, oneshot.gpus_per_worker=0, or a "
                          "cluster with GPUs")


def run_supernet(job: SupernetJob, data: DataSplits, folder: Path, max_failures: int,
                 on_progress: Callable[[list[dict[str, Any]]], None]) -> str:
    """Train the supernet as a Ray Train job (from ``folder/supernet.pt`` if there is one)
    until it is ranked; ``on_progress(records)`` gets new epoch records as they are written.
    A job that fails is started again from the last checkpoint, ``max_failures`` times.
    Returns ``"ok"`` or ``"diverged"`` (the training loss became non-finite)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    folder.mkdir(parents=True, exist_ok=True)
    here = ray.get_runtime_context().get_node_id()
    writer = ray.remote(num_cpus=0)(FolderWriter).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote(str(folder))
    data_ref = ray.put(data)
    progress_path = folder / "progress.jsonl"
    seen = len(_read_progress(progress_path))
    attempt = 0
    while True:
        blob = (folder / CHECKPOINT).read_bytes() if (folder / CHECKPOINT).is_file() else None
        if blob is not None and _is_ranked(blob):
            return "ok"
        use_gpu = job.gpus_per_worker > 0
        resources = {"CPU": job.cpus_per_worker, **({"GPU": job.gpus_per_worker} if use_gpu else {})}
        trainer = TorchTrainer(
            _train_worker,
            train_loop_config={"job": job, "data": [data_ref], "writer": writer,
                               "resume": [ray.put(blob)] if blob is not None else None},
            scaling_config=ScalingConfig(num_workers=job.workers, use_gpu=use_gpu,
                                         resources_per_worker=resources),
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            run_config=RunConfig(name=f"supernet-{int(time.time())}",
                                 storage_path=str((folder / "ray_train").resolve()),
                                 failure_config=FailureConfig(max_failures=0)),
        )
        error: list[BaseException] = []
        thread = threading.Thread(target=_fit, args=(trainer, error), daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(timeout=1.0)
            records = _read_progress(progress_path)
            if len(records) > seen:
                on_progress(records[seen:])
                seen = len(records)
        records = _read_progress(progress_path)
        if len(records) > seen:
            on_progress(records[seen:])
            seen = len(records)
        if not error:
            ranked = (folder / CHECKPOINT).is_file() and _is_ranked((folder / CHECKPOINT).read_bytes())
            return "ok" if ranked else "diverged"
        attempt += 1
        if attempt > max_failures:
            raise RuntimeError(f"the supernet job failed {attempt} times; last error: "
                               f"{str(error[0]).splitlines()[0] if str(error[0]) else type(error[0]).__name__}")


def _fit(trainer: Any, error: list[BaseException]) -> None:
    try:
        trainer.fit()
    except BaseException as e:  # noqa: BLE001 - reported to the driver thread
        error.append(e)


def _is_ranked(blob: bytes) -> bool:
    import torch
    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)
    return state.get("ranking") is not None


def _read_progress(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_checkpoint(folder: Path) -> dict[str, Any] | None:
    import torch
    path = folder / CHECKPOINT
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)
