"""A latency table for another device: the build runs as a Ray task on the node that has a
resource of the user's naming, and the table comes back here.

A device that joins the cluster with a custom resource (``ray start`` with resources
``{"phone": 1}`` on it) is selected by that resource (:func:`build_table_on`; Ray's own
``node:<ip>`` resource selects a node by its address). The task asks for a small share of
it and for as many CPUs as the build uses threads, so no other Ray work of the cluster
runs on those cores meanwhile. On the node it is :func:`nas.latency.build.build_table` as
on any machine: the fingerprint is the node's (its CPU model, CPUs, runtime and versions),
the table is saved in the node's own cache as it goes (a stopped build continues there),
and what this machine already holds for that fingerprint is sent along first. The
finished table, with the node's host name, address and Ray node id, is saved into this
machine's cache under the node's fingerprint, a file that :meth:`LatencyTable.load` reads
for :func:`nas.predict_latency` here.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from typing import Any, Callable

from nas.core.checks import check_int
from nas.core.errors import ConfigError
from nas.latency.build import FIT_NETWORKS, FIT_SEED, BuildReport, build_table
from nas.latency.device import RUNTIMES, cache_dir, fingerprint
from nas.latency.settings import (
    Timing,
    check_batch,
    check_clock,
    check_resolution,
    check_runtime,
    check_threads,
)
from nas.latency.table import LatencyTable
from nas.ray import runtime as ray_runtime

SHARE = 0.01          # of the node resource a build asks for: it selects the node
POLL_S = 2.0          # seconds between looks at the task and its progress
PROGRESS_EVERY_S = 30.0
WAIT_NOTE_S = 15.0    # say that the task waits for CPUs after this long without a start
STOP_GRACE_S = 15.0   # after Ctrl-C: how long the node gets to save what it measured
PROBE_TIMEOUT_S = 120.0  # for the node to start a worker and say its fingerprint

Say = Callable[[str], None]


def build_table_on(space: Any, node_resource: str, *, address: str | None = None,
                   resolution: int | None = None, batch: int = 1, threads: int = 1,
                   runtime: str = "torch", channels_last: bool = True,
                   cache: str | os.PathLike[str] | None = None,
                   remote_cache: str | None = None, fit_networks: int = FIT_NETWORKS,
                   fit_seed: int = FIT_SEED, timing: Timing | None = None,
                   refit: bool = False, clock: str = "wall",
                   say: Say | None = None) -> BuildReport:
    """:func:`nas.latency.build_table` run on the Ray node that has ``node_resource``, in
    the cluster at ``address`` (else ``RAY_ADDRESS``, else the Ray this process already
    joined). The table is the node's, saved there (``remote_cache``: the node's cache
    folder; None, its default) and here (``cache``), each under the node's fingerprint;
    ``report.path`` is the copy here and ``report.table.measured_on`` names the node.
    ``say`` gets a line at the start, every half minute of measuring and at the end.
    A resource no node has, or a node with fewer CPUs than ``threads``, is a one-line
    :class:`ConfigError` before anything is measured."""
    _check(node_resource, resolution, batch, threads, runtime, clock, fit_networks)
    if not (address or os.environ.get("RAY_ADDRESS") or ray_runtime.ray_running()):
        raise ConfigError(f"node_resource={node_resource!r} needs the Ray cluster that the "
                          "device joined: give address='HOST:PORT' of its head (or 'auto' "
                          "for a cluster started on this machine); a fresh local Ray has no "
                          "such resource")
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    started = not ray.is_initialized()
    ray_runtime.init_ray(address)
    try:
        where = address or os.environ.get("RAY_ADDRESS") or "the Ray this process joined"
        picked, n_nodes = _pick_node(node_resource, threads, where)
        # The resource says which device; the node's id keeps both tasks on the one chosen.
        select = {"resources": {node_resource: SHARE}, "scheduling_strategy":
                  NodeAffinitySchedulingStrategy(picked["NodeID"], soft=False)}
        probe = _ask(ray, ray.remote(_probe).options(num_cpus=0, **select).remote(
            runtime, threads, channels_last, clock), picked, node_resource)
        node = {**probe["node"], "ip": picked.get("NodeManagerAddress", "")}
        if "error" in probe:
            raise ConfigError(f"node_resource={node_resource!r}: on node {_name(node)}: "
                              f"{probe['error']}")
        table = LatencyTable(probe["fingerprint"], measured_on=node)
        local = cache_dir(cache) / f"{table.id}.json"
        known = LatencyTable.load(local).to_dict() if local.is_file() else None
        _say(say, f"latency table: {table.describe()}, the Ray node with {node_resource!r}"
                  f"{'' if n_nodes == 1 else f' (the first of {n_nodes} that have it)'}"
                  f"\n  copy here: {local}")
        kwargs = dict(resolution=resolution, batch=batch, threads=threads,
                      runtime=runtime, channels_last=channels_last,
                      fit_networks=fit_networks, fit_seed=fit_seed, timing=timing,
                      refit=refit, clock=clock)
        result = _run(ray, space, kwargs, remote_cache, known, node, select, threads, say)
    finally:
        if started:
            ray_runtime.shutdown_ray()
    report: BuildReport = result["report"]
    got = report.table
    got.path = None
    path = got.save(local)
    _say(say, f"  measured {report.measured:,} parts on {_name(node)} in "
              f"{_duration(report.seconds)}; the table holds {len(got):,}, saved here as "
              f"{path} (the node keeps its own at {result['remote_path']})")
    return dataclasses.replace(report, table=got, path=path)


def _check(node_resource: Any, resolution: Any, batch: Any, threads: Any, runtime: Any,
           clock: Any, fit_networks: Any) -> None:
    """What can be checked here; the runtime's installation and the thread count against
    the node's CPUs are checked on the node."""
    if not isinstance(node_resource, str) or not node_resource.strip() or \
            node_resource != node_resource.strip() or node_resource in ("CPU", "GPU",
                                                                          "memory"):
        raise ConfigError(f"node_resource: got {node_resource!r}; use the name of a custom "
                          "resource that only the device's Ray node has (e.g. 'phone')")
    check_resolution(resolution)
    check_batch(batch)
    check_int(threads, "threads", 1)
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime: unknown runtime {runtime!r}; use one of "
                          f"{', '.join(RUNTIMES)}")
    check_clock(clock, threads)
    check_int(fit_networks, "fit_networks", 0, 10_000)


def _pick_node(node_resource: str, threads: int, where: str) -> tuple[dict[str, Any], int]:
    """The live node with ``node_resource`` to build on (as :func:`ray.nodes` lists it; the
    first by id of those with ``threads`` CPUs for Ray) and how many have it; a one-line
    error when none has it, or none of them has the CPUs (the task would wait for ever)."""
    import ray
    total = ray.cluster_resources()
    if total.get(node_resource, 0) < SHARE:
        custom = sorted(k for k in total if k not in ("CPU", "GPU", "memory",
                                                      "object_store_memory")
                        and not k.startswith(("node:", "accelerator_type:")))
        raise ConfigError(f"node_resource={node_resource!r}: no node of the Ray cluster at "
                          f"{where} has it (custom resources there: "
                          f"{', '.join(custom) or 'none'}); start Ray on the device with the "
                          f"resources {{\"{node_resource}\": 1}} joining that cluster, or "
                          "name one it has")
    nodes = [n for n in ray.nodes() if n.get("Alive")
             and n.get("Resources", {}).get(node_resource, 0) >= SHARE]
    able = sorted((n for n in nodes if n["Resources"].get("CPU", 0) >= threads),
                  key=lambda n: n["NodeID"])
    if not able:
        most = max((n["Resources"].get("CPU", 0) for n in nodes), default=0)
        raise ConfigError(f"threads={threads}: the Ray node with {node_resource!r} offers "
                          f"{most:g} CPU{'s' if most != 1 else ''} to Ray; use threads="
                          f"{max(int(most), 1)} or give the node more CPUs")
    return able[0], len(nodes)


def _ask(ray: Any, ref: Any, picked: dict[str, Any], node_resource: str) -> dict[str, Any]:
    """The probe's answer; a one-line error when the node cannot run the project's code
    (effnas missing there) or starts no worker for it in time."""
    where = picked.get("NodeManagerHostname") or picked.get("NodeManagerAddress") or "?"
    try:
        return ray.get(ref, timeout=PROBE_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        ray.cancel(ref, force=True)
        raise ConfigError(f"node_resource={node_resource!r}: the node {where} ran nothing "
                          f"within {PROBE_TIMEOUT_S:g} s; check that Ray and effnas are "
                          "installed there (the versions of this machine)") from None
    except ray.exceptions.RayError as e:
        raise ConfigError(f"node_resource={node_resource!r}: the node {where} could not run "
                          f"the build ({_cause(e)}); install effnas there, the version of "
                          "this machine") from None


def _run(ray: Any, space: Any, kwargs: dict[str, Any], remote_cache: str | None,
         known: dict[str, Any] | None, node: dict[str, str], select: dict[str, Any],
         threads: int, say: Say | None) -> dict[str, Any]:
    """Run the build on the node, passing its progress lines on; on Ctrl-C the task is
    stopped and the node saves what it measured (the same call continues from it)."""
    sink = ray.remote(num_cpus=0)(_Lines).remote()
    ref = ray.remote(_build_here).options(num_cpus=threads, max_retries=0, **select).remote(
        space, kwargs, remote_cache, known, node.get("ip", ""), sink)
    start, heard, noted = time.monotonic(), False, False
    try:
        while True:
            ready, _ = ray.wait([ref], timeout=POLL_S)
            lines = ray.get(sink.take.remote())
            heard = heard or bool(lines)
            for line in lines:
                _say(say, f"  {line}")
            if ready:
                break
            if not heard and not noted and time.monotonic() - start > WAIT_NOTE_S:
                noted = True
                _say(say, f"  waiting for {threads} free CPU{'s' if threads != 1 else ''} "
                          f"on {_name(node)} (other Ray work holds them)")
        try:
            result = ray.get(ref)
        except ray.exceptions.RayError as e:
            raise ConfigError(f"the build on node {_name(node)} failed: {_cause(e)}; the node "
                              "kept what it measured, so the same call continues") from None
    except KeyboardInterrupt:
        ray.cancel(ref)
        ray.wait([ref], timeout=STOP_GRACE_S)
        raise
    finally:
        ray.kill(sink)
    if "error" in result:
        raise ConfigError(f"on node {_name(result['node'])}: {result['error']}")
    return result


# --------------------------------------------------------------------------- on the node


class _Lines:
    """The progress lines of a build on a node, until the caller takes them."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def put(self, line: str) -> None:
        self.lines.append(line)

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines

    def sync(self) -> None:
        """Returns once the caller's earlier lines are in (an actor runs one caller's
        calls in order), so the last lines are there when the build's result is."""


def _node() -> dict[str, str]:
    """The node this runs on: its host name and Ray node id (the caller adds its address)."""
    import ray
    return {"host": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id()}


def _probe(runtime: str, threads: int, channels_last: bool, clock: str) -> dict[str, Any]:
    """On the node: its fingerprint for these settings, or why they cannot run there."""
    node = _node()
    try:
        check_runtime(runtime)
        check_threads(threads)
    except ConfigError as e:
        return {"node": node, "error": str(e)}
    return {"node": node, "fingerprint": fingerprint(runtime, threads, channels_last, clock)}


def _build_here(space: Any, kwargs: dict[str, Any], remote_cache: str | None,
                known: dict[str, Any] | None, ip: str, sink: Any) -> dict[str, Any]:
    """On the node: what the caller knows merged into the node's table (the node's own
    measurements win), then the build, saving as it goes."""
    from nas.latency.keys import space_keys
    node = {**_node(), "ip": ip}
    try:
        table = LatencyTable.for_device(kwargs["runtime"], kwargs["threads"],
                                        kwargs["channels_last"], remote_cache, kwargs["clock"])
        if known is not None and known.get("fingerprint") == table.fingerprint:
            table.entries = {**known.get("entries", {}), **table.entries}
            table.networks = {**known.get("networks", {}), **table.networks}
            table.corrections = {**known.get("corrections", {}), **table.corrections}
        table.measured_on = node
        table.save()
        parts = space_keys(space, kwargs["resolution"], kwargs["batch"])
        todo = len(table.missing(parts))
        size = kwargs["resolution"] or space.fixed["resolution"]
        sink.put.remote(f"space {space.name!r} at {size} px, batch {kwargs['batch']}: "
                        f"{len(parts):,} distinct parts, {len(parts) - todo:,} in the node's "
                        f"table, {todo:,} to measure")
        last = [time.monotonic()]

        def progress(done: int, total: int, seconds: float) -> None:
            now = time.monotonic()
            if done == total or now - last[0] >= PROGRESS_EVERY_S:
                last[0] = now
                left = seconds / done * (total - done)
                sink.put.remote(f"measured {done:,}/{total:,} parts in {_duration(seconds)} "
                                f"(about {_duration(left)} left)")

        report = build_table(space, cache=remote_cache, progress=progress,
                             say=lambda line: sink.put.remote(line), **kwargs)
    except ConfigError as e:
        return {"node": node, "error": str(e)}
    finally:
        _sync(sink)
    return {"node": node, "report": report, "remote_path": str(report.path)}


# --------------------------------------------------------------------------- helpers


def _sync(sink: Any) -> None:
    import ray
    try:
        ray.get(sink.sync.remote(), timeout=10)
    except Exception:  # noqa: BLE001 - the lines are a courtesy; the table is what counts
        pass


def _name(node: dict[str, str]) -> str:
    host, ip = node.get("host"), node.get("ip")
    return f"{host} ({ip})" if host and ip and host != ip else str(host or ip or "?")


def _cause(e: Exception) -> str:
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        text = str(cause).strip().splitlines()
        return f"{type(cause).__name__}: {text[-1] if text else ''}".rstrip(": ")
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


def _duration(seconds: float) -> str:
    from nas.core.progress import format_duration
    return format_duration(seconds)


def _say(say: Say | None, text: str) -> None:
    if say is not None:
        say(text)
