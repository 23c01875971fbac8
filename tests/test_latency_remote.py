"""A latency table built on another device: a Ray task on the node that has a custom resource
(:func:`nas.ray.latency.build_table_on`, ``effnas latency --build-table --node-resource``).

The slow tests run a local two-node cluster (``ray.cluster_utils.Cluster``): a head with no
custom resource and a second node with ``{"phone": 1}``; both are one machine, so the
fingerprints agree and the node is told apart by its Ray node id. The quick tests are the
checks that need no Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from nas.cli import effnas
from nas.core.errors import ConfigError
from nas.latency import device, keys
from nas.latency.predict import predict_latency
from nas.latency.table import LatencyTable
from nas.ray.latency import build_table_on
from search_space.space import SearchSpace
from test_latency import FEW, TINY_SPACE


@pytest.fixture(autouse=True)
def no_cluster_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@pytest.fixture(scope="module")
def two_nodes():
    """A head (1 CPU, no custom resource) and a "phone" node (1 CPU), in a Ray temp folder of
    their own (short: Ray's socket paths must fit a Unix socket's 107 bytes), whose workers'
    default latency cache is a folder of the test's. Shut down after the module, with any
    process of its session that outlived the shutdown stopped."""
    from ray.cluster_utils import Cluster

    from nas.ray import leftovers
    ray_tmp = Path(tempfile.mkdtemp(prefix="effnas-", dir="/tmp"))
    names = ("RAY_TMPDIR", device.CACHE_ENV)
    saved = {k: os.environ.get(k) for k in names}
    os.environ["RAY_TMPDIR"] = str(ray_tmp)
    os.environ[device.CACHE_ENV] = str(ray_tmp / "node-cache")  # what the nodes inherit
    cluster = None
    try:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        phone = cluster.add_node(num_cpus=1, resources={"phone": 1})
        cluster.wait_for_nodes()
        yield {"cluster": cluster, "phone": phone, "node_cache": ray_tmp / "node-cache"}
    finally:
        session = Path(cluster.head_node.get_session_dir_path()) if cluster else None
        if cluster is not None:
            cluster.shutdown()
        if session is not None:
            deadline = time.time() + 10
            while leftovers.session_processes(session) and time.time() < deadline:
                time.sleep(0.5)
            for pid, _ in leftovers.session_processes(session):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.slow
def test_a_table_is_built_on_the_node_with_the_resource(two_nodes, tmp_path):
    cluster, phone = two_nodes["cluster"], two_nodes["phone"]
    space = SearchSpace.from_dict(TINY_SPACE)
    here, there = tmp_path / "here", tmp_path / "there"
    lines: list[str] = []
    t0 = time.monotonic()
    report = build_table_on(space, "phone", address=cluster.address, cache=here,
                            remote_cache=str(there), fit_networks=6, timing=FEW,
                            say=lines.append)
    seconds = time.monotonic() - t0
    table = report.table
    # It ran on the phone node, not on the head (nor here: this process joined as a driver).
    assert table.measured_on["node_id"] == phone.node_id != cluster.head_node.node_id
    assert table.measured_on["host"] and table.measured_on["ip"] == phone.node_ip_address
    # Every part of the space, the correction, saved here under the node's fingerprint.
    n = len(keys.space_keys(space))
    assert report.parts == report.measured == len(table) == n and report.networks == 6
    assert report.path == here / f"{device.fingerprint_id(table.fingerprint)}.json"
    saved = LatencyTable.load(report.path)
    assert saved.entries == table.entries and saved.measured_on == table.measured_on
    assert saved.corrections["b1"]["networks"] == 6
    assert (there / report.path.name).is_file()  # the node's own copy
    assert lines[0].startswith("latency table: ") and "the Ray node with 'phone'" in lines[0]
    assert f"saved here as {report.path}" in lines[-1]
    child = space.sample(np.random.default_rng(0))
    assert predict_latency(child, saved).corrected
    # Again: the node's cache has it all. With the node's copy gone, this machine's copy is
    # sent along, so nothing is measured either way.
    again = build_table_on(space, "phone", address=cluster.address, cache=here,
                           remote_cache=str(there), fit_networks=6, timing=FEW)
    assert again.measured == 0 and again.networks == 0
    (there / report.path.name).unlink()
    third = build_table_on(space, "phone", address=cluster.address, cache=here,
                           remote_cache=str(there), fit_networks=6, timing=FEW)
    assert third.measured == 0 and (there / report.path.name).is_file()
    import ray
    assert not ray.is_initialized()  # it left the cluster it joined
    print(f"first build on the node: {seconds:.1f} s")


@pytest.mark.slow
def test_a_resource_no_node_has_is_a_quick_one_line_error(two_nodes, tmp_path):
    cluster = two_nodes["cluster"]
    space = SearchSpace.from_dict(TINY_SPACE)
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"node_resource='tpu': no node of the Ray cluster "
                                          r"at .* has it \(custom resources there: phone\)") as e:
        build_table_on(space, "tpu", address=cluster.address, cache=tmp_path)
    assert "\n" not in str(e.value) and time.monotonic() - t0 < 60
    with pytest.raises(ConfigError, match=r"threads=2: the Ray node with 'phone' offers 1 CPU"):
        build_table_on(space, "phone", address=cluster.address, threads=2, cache=tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_the_command_builds_a_table_on_the_node(two_nodes, tmp_path, capsys):
    cluster = two_nodes["cluster"]
    space = tmp_path / "tiny-space.yaml"
    space.write_text(json.dumps(TINY_SPACE))
    argv = ["latency", "--build-table", "--space", str(space), "--node-resource", "phone",
            "--address", cluster.address, "--cache-dir", str(tmp_path / "c"),
            "--fit-networks", "0", "--runs", "2", "--warmup", "0"]
    assert effnas.main(argv) == 0
    out = capsys.readouterr().out
    n = len(keys.space_keys(SearchSpace.from_dict(TINY_SPACE)))
    assert "the Ray node with 'phone'" in out and f"{n:,} to measure" in out
    assert "correction: none" in out
    # The node's default cache (its environment's) has the node's copy.
    (copy,) = (tmp_path / "c").iterdir()
    assert (two_nodes["node_cache"] / copy.name).is_file()
    assert effnas.main([*argv, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)["table"]
    assert rep["measured"] == 0 and rep["node"]["node_id"] == two_nodes["phone"].node_id
    assert effnas.main(["latency", "--build-table", "--space", str(space), "--node-resource",
                        "tpu", "--address", cluster.address]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--node-resource 'tpu': no node of the Ray cluster" in err


# --------------------------------------------------------------------------- without Ray


@pytest.mark.parametrize("value", ["", " phone", "CPU", 3, None])
def test_a_bad_node_resource_is_one_line(value):
    with pytest.raises(ConfigError, match="node_resource: got") as e:
        build_table_on(SearchSpace.from_dict(TINY_SPACE), value, address="127.0.0.1:1")
    assert "\n" not in str(e.value)


def test_without_a_cluster_the_error_says_to_give_its_address():
    import sys
    with pytest.raises(ConfigError, match=r"node_resource='phone' needs the Ray cluster that "
                                          r"the device joined: give address='HOST:PORT'"):
        build_table_on(SearchSpace.from_dict(TINY_SPACE), "phone")
    if "ray" in sys.modules:  # another test of this process may have imported it
        assert not sys.modules["ray"].is_initialized()


@pytest.mark.parametrize("argv,fragment", [
    (["efficientnet-b0", "--node-resource", "phone"], "--node-resource is for --build-table"),
    (["efficientnet-b0", "--build-table", "--node-resource", "phone"],
     "--node-resource builds a table on another node, but a SPEC is timed here"),
    (["--build-table", "--address", "127.0.0.1:1"], "--address is for --node-resource"),
    (["--build-table", "--node-resource", "phone"],
     "--node-resource 'phone' needs the Ray cluster that the device joined: give --address "
     "'HOST:PORT'"),
    (["--build-table", "--node-resource", ""], "--node-resource: empty value ''"),
    (["--build-table", "--node-resource", "phone", "--address", "127.0.0.1:1"],
     "--address 127.0.0.1:1: no Ray cluster answers there"),
])
def test_bad_node_resource_flags_are_one_line(argv, fragment, capsys):
    assert effnas.main(["latency", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
