"""``effnas inspect``: the table and JSON agree with the cost model; bad input is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import nas
from nas.arch.blockstrings import encode_ext_stages, encode_tf_stages
from nas.arch.cost import count_macs, count_params
from nas.arch.spec import ArchSpec, StageSpec, spec_to_dict
from nas.arch.timm_export import to_timm
from nas.cli.inspect import main, op_label, report
from search_space import SearchSpace

ROOT = Path(__file__).resolve().parent.parent

B0_TF = ["r1_k3_s11_e1_i32_o16_se0.25", "r2_k3_s22_e6_i16_o24_se0.25",
         "r2_k5_s22_e6_i24_o40_se0.25", "r3_k3_s22_e6_i40_o80_se0.25",
         "r3_k5_s11_e6_i80_o112_se0.25", "r4_k5_s22_e6_i112_o192_se0.25",
         "r1_k3_s11_e6_i192_o320_se0.25"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "nas.cli.effnas", "inspect", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


def _odd_spec() -> ArchSpec:
    """Conv op, pool skip with a channel change, no head: nothing TF strings can express."""
    return ArchSpec(stages=(
        StageSpec(op="conv", kernel=3, stride=2, out=24, repeats=2, se=0.5, skip="pool"),
        StageSpec(op="mbconv", kernel=7, stride=1, out=40, repeats=3, expand=4, skip="none"),
    ), stem=16, head=0, activation="relu", name="odd")


# ------------------------------------------------------------------------- as a program


def test_table_for_b0_as_a_subprocess() -> None:
    done = _run("efficientnet-b0")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == "efficientnet-b0: 224x224x3 input, 1000 classes, silu, 16 layers"
    assert lines[1].split()[:4] == ["stage", "op", "kernel", "stride"]
    body = lines[3:-2]
    assert [line.split()[0] for line in body] == (
        ["stem"] + [f"stage{i}" for i in range(1, 8)] + ["head", "classifier"])
    assert body[0].split()[1:4] == ["Conv", "3", "2"]
    assert body[2].split()[1:9] == ["MBConv6", "3", "2", "6", "0.25", "identity", "16->24", "2"]
    assert body[2].split()[9] == "56x56"
    assert body[1].split()[1] == "DSConv"
    assert lines[-1] == "total: 5,288,548 params, 385.8 M MACs (385,814,752 multiply-adds)"


def test_json_as_a_subprocess_matches_the_cost_model() -> None:
    done = _run("mnasnet-a1", "--json", "--resolution", "28", "--num-classes", "10",
                "--in-channels", "1")
    assert done.returncode == 0, done.stderr
    rep = json.loads(done.stdout)
    a1 = nas.load_spec("mnasnet-a1")
    assert rep["totals"] == {"params": count_params(a1, 10, 1),
                             "macs": count_macs(a1, 28, 10, 1), "layers": 16}
    assert sum(r["params"] for r in rep["rows"]) == rep["totals"]["params"]
    assert sum(r["macs"] for r in rep["rows"]) == rep["totals"]["macs"]
    assert (rep["resolution"], rep["num_classes"], rep["in_channels"]) == (28, 10, 1)
    assert rep["rows"][0]["in_channels"] == 1 and rep["rows"][-1]["out_channels"] == 10
    assert rep["rows"][1]["skip"] == "none" and rep["rows"][3]["op"] == "MBConv3"
    assert rep["block_strings"]["tf"] == encode_tf_stages(a1)
    assert rep["block_strings"]["ext"] == encode_ext_stages(a1)
    assert rep["block_strings"]["timm"] == to_timm(a1).block_strings
    assert rep["block_strings"]["timm_kwargs"]["act_layer"] == "relu"


def test_inspect_does_not_import_torch() -> None:
    code = ("import sys\nfrom nas.cli.inspect import main\n"
            "assert main(['efficientnet-b0', '--json']) == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("args,fragment", [
    (["no/such/spec.yaml"], "no/such/spec.yaml: file not found"),
    (["not-a-bundled-name"], "not-a-bundled-name: no such file and no bundled spec of that name"),
    (["configs/mnasnet-space.yaml"], "mnasnet-space.yaml: blocks: unknown key"),
    (["efficientnet-b0", "--resolution", "0"], "--resolution: 0 must be at least 1"),
    (["efficientnet-b0", "--num-classes", "ten"], "--num-classes: 'ten' is not a whole number"),
    (["efficientnet-b0", "--format", "keras"], "--format: invalid choice: 'keras'"),
    ([], "the following arguments are required: spec"),
])
def test_bad_input_exits_2_with_one_line(args: list[str], fragment: str) -> None:
    done = _run(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert fragment in done.stderr, done.stderr


# ------------------------------------------------------------------------- in process


def test_main_in_process_for_random_specs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    rng = np.random.default_rng(0)
    for i in range(20):
        spec = space.sample(rng) if i % 2 else _odd_spec().replace(stem=8 + i)
        path = nas.save_spec(spec, tmp_path / f"child{i}.yaml")
        resolution, classes, channels = (28, 32, 64, 224)[i % 4], (10, 1000)[i % 2], 1 + 2 * (i % 2)
        argv = [str(path), "--resolution", str(resolution), "--num-classes", str(classes),
                "--in-channels", str(channels)]
        assert main(argv + ["--json"]) == 0
        rep = json.loads(capsys.readouterr().out)
        assert rep["totals"]["params"] == count_params(spec, classes, channels)
        assert rep["totals"]["macs"] == count_macs(spec, resolution, classes, channels)
        assert len(rep["rows"]) == len(spec.stages) + 2 + (1 if spec.head else 0)
        assert [r["repeats"] for r in rep["rows"][1:1 + len(spec.stages)]] == [
            s.repeats for s in spec.stages]
        assert main(argv) == 0
        table = capsys.readouterr().out
        assert f"total: {rep['totals']['params']:,} params" in table


def test_block_string_formats(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["efficientnet-b0", "--format", "tf"]) == 0
    assert capsys.readouterr().out.split() == B0_TF
    assert main(["mobilenetv2", "--format", "timm"]) == 0
    assert capsys.readouterr().out.split()[0] == "ds_r1_k3_s1_c16"
    assert main(["mobilenetv2", "--format", "ext"]) == 0
    assert capsys.readouterr().out.split()[0] == "ds_r1_k3_s1_c16"

    odd = nas.save_spec(_odd_spec(), tmp_path / "odd.yaml")
    assert main([str(odd), "--format", "ext"]) == 0
    assert capsys.readouterr().out.split() == ["cn_r2_k3_s2_c24_se0.5_pskip",
                                               "ir_r3_k7_s1_e4_c40_noskip"]
    assert main([str(odd), "--format", "tf"]) == 2
    err = capsys.readouterr().err
    assert err == "error: TF block strings cannot express op 'conv'; use the ext form (cn_...)\n"
    # timm cannot express the pooled shortcut: one line naming the stage, nothing on stdout.
    assert main([str(odd), "--format", "timm"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("error: timm cannot express stage1 (conv, 2 layers): skip 'pool'")
    # JSON still works and says why there are no TF or timm strings.
    assert main([str(odd), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["block_strings"]["tf"] is None and "cannot express" in rep["block_strings"]["tf_note"]
    assert rep["block_strings"]["timm"] is None and rep["block_strings"]["timm_kwargs"] is None
    assert rep["block_strings"]["timm_note"].startswith("timm cannot express stage1")
    assert rep["block_strings"]["ext"] == encode_ext_stages(_odd_spec())
    assert rep["rows"][-1]["stage"] == "classifier" and rep["rows"][-2]["stage"] == "stage2"


def test_bad_spec_file_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = spec_to_dict(nas.load_spec("efficientnet-b0"))
    d["stages"][2]["kernel"] = 4
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(d))
    assert main([str(bad)]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.count("\n") == 1
    assert out.err.startswith(f"error: {bad}: stages[2].kernel: got 4")


def test_report_and_labels() -> None:
    b0 = nas.load_spec("efficientnet-b0")
    rep = report(b0)
    assert rep["resolution"] == 224 and rep["totals"]["params"] == 5_288_548
    assert [r["out_size"] for r in rep["rows"]] == [112, 112, 56, 28, 14, 14, 7, 7, 7, 1]
    assert rep["rows"][-2]["op"] == "Conv" and rep["rows"][-1]["op"] == "Linear"
    json.dumps(rep)  # plain data
    assert [op_label(s) for s in nas.load_spec("mnasnet-a1").stages][:3] == [
        "DSConv", "MBConv6", "MBConv3"]
    assert op_label(StageSpec(op="conv", kernel=3, stride=1, out=8, repeats=1)) == "Conv"
