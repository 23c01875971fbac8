"""Search throughput on this machine, side by side in one run.

    .venv/bin/python bench/bench_search.py [--children 6] [--proxy proxy-default]

Trains the same list of children (seeded samples of the MnasNet space, Fashion-MNIST proxy)
four ways and prints children per hour:

1. one plain process, no Ray (the work alone);
2. two plain independent processes taking children from one shared queue, as the search's
   workers take the next child when free (the machine's ceiling for two workers: on 2
   cores less than 2x one process, since memory bandwidth is shared);
3. the search machinery (ChildDriver + Ray Tune) with 1 worker;
4. the search machinery with 2 workers.

The search runs first; Ray is shut down before the plain processes run, so they do not
share the machine with Ray's own processes. Goals: (4) >= 0.95 of (2); the search's wall
time over the children's own time (each child's seconds on its worker: build, training,
evaluation; summed, over the workers) under 1.1. The data set is loaded once per process
before timing starts, as the search loads it once and shares it through Ray's object store.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def children(n: int, seed: int = 0) -> list[dict]:
    import numpy as np

    import nas
    from nas.arch.spec import spec_to_dict
    from search_space import SearchSpace
    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    rng = np.random.default_rng(seed)
    return [{"child": i, "spec": spec_to_dict(space.sample(rng)), "proxy": {}} for i in range(n)]


def _load(proxy_name: str):
    from nas.core.settings import load
    from nas.search.settings import SearchSettings
    s = load(SearchSettings, overrides={"proxy": proxy_name})
    # data.seed null: the run's seed, as a search resolves it
    return s.data_settings().load(), s.proxy.replace(num_threads=1)


def _worker(work, proxy_name: str, barrier, out) -> None:
    from nas.training.child import run_child
    data, proxy = _load(proxy_name)
    barrier.wait()
    t0 = time.perf_counter()
    train = 0.0
    while True:  # take the next child when free, as Tune hands work to a free worker
        c = work.get()  # blocking: get_nowait() may find the queue empty while it is not
        if c is None:   # one stop mark per process after the children
            break
        r = run_child(c, data, proxy)
        assert r["status"] == "ok", r
        train += r["seconds"]
    out.put((time.perf_counter() - t0, train))


def plain(configs: list[dict], processes: int, proxy_name: str) -> tuple[float, float]:
    """Wall seconds and summed training seconds of ``processes`` independent processes that
    take children from one shared queue (work stealing, like the search's workers)."""
    ctx = mp.get_context("spawn")
    barrier, out, work = ctx.Barrier(processes + 1), ctx.Queue(), ctx.Queue()
    for c in configs:
        work.put(c)
    for _ in range(processes):
        work.put(None)
    procs = [ctx.Process(target=_worker, args=(work, proxy_name, barrier, out))
             for _ in range(processes)]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    results = [out.get() for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    return wall, sum(r[1] for r in results)


def tune(configs: list[dict], workers: int, proxy_name: str) -> tuple[float, float]:
    from controller import FixedList
    from nas.arch.spec import spec_from_dict
    from nas.ray.runtime import init_ray
    from nas.ray.searcher import run_trials
    from nas.search.driver import ChildDriver, Target
    from nas.search.reward import RewardConfig
    from nas.search.settings import TrialSettings
    data, proxy = _load(proxy_name)
    specs = [spec_from_dict(c["spec"]) for c in configs]
    driver = ChildDriver(lambda t: (specs[t[0]], {}), FixedList(len(specs)), budget=len(specs),
                         reward=RewardConfig(), target=Target())
    init_ray(None)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        trials = TrialSettings(recipe=proxy, workers=workers, cpus_per_trial=1, max_failures=0)
        run_trials(driver, data, trials, Path(tmp), "bench", lambda r: None,
                   state_file=Path(tmp) / "driver.pt")
        wall = time.perf_counter() - t0
    recs = driver.trained_records()
    assert len(recs) == len(specs) and all(r.status == "ok" for r in recs), recs
    return wall, sum(r.seconds for r in recs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--children", type=int, default=6)
    p.add_argument("--proxy", default="proxy-default")
    args = p.parse_args()
    configs = children(args.children)
    print(f"{args.children} children, proxy {args.proxy}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    rows = {}
    # Tune first while the machine is fresh for Ray; plain runs need no warm-up.
    rows["search, 1 worker"] = tune(configs, 1, args.proxy)
    rows["search, 2 workers"] = tune(configs, 2, args.proxy)
    import ray
    ray.shutdown()  # the plain processes run on a machine without Ray's processes
    rows["1 plain process"] = plain(configs, 1, args.proxy)
    rows["2 plain processes (ceiling)"] = plain(configs, 2, args.proxy)
    n = args.children
    rate = {k: n * 3600 / w for k, (w, _) in rows.items()}
    one = rate["1 plain process"]
    print("\n| run | wall s | children/hour | vs 1 process | wall / (training s / workers) |")
    print("|---|---|---|---|---|")
    for k, (wall, train) in rows.items():
        workers = 2 if "2" in k else 1
        print(f"| {k} | {wall:.1f} | {rate[k]:.0f} | {rate[k] / one:.2f}x | "
              f"{wall / (train / workers):.3f} |")
    ceiling = rate["2 plain processes (ceiling)"]
    print(f"\nsearch with 2 workers reaches {rate['search, 2 workers'] / ceiling:.3f} of the "
          f"ceiling (goal >= 0.95); the ceiling is {ceiling / one:.2f}x one process.")


if __name__ == "__main__":
    main()
