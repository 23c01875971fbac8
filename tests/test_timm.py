"""The exact timm form (strings, constructor arguments, refusals) and the state-dict key maps,
without timm. tests/test_timm_real.py builds the same networks with the real timm."""

from __future__ import annotations

import numpy as np
import pytest

import nas
from nas.arch.spec import ArchSpec, StageSpec
from nas.arch.timm_export import (
    TimmArch,
    keep_channels,
    make_divisible,
    timm_state_shapes,
)
from search_space import SearchSpace

# timm's own arch_def for these networks (timm/models/efficientnet.py: _gen_efficientnet,
# _gen_mnasnet_a1, _gen_mobilenet_v2); timm's decoder ignores the "e1" of a ds block.
TIMM_B0 = ["ds_r1_k3_s1_e1_c16_se0.25", "ir_r2_k3_s2_e6_c24_se0.25", "ir_r2_k5_s2_e6_c40_se0.25",
           "ir_r3_k3_s2_e6_c80_se0.25", "ir_r3_k5_s1_e6_c112_se0.25",
           "ir_r4_k5_s2_e6_c192_se0.25", "ir_r1_k3_s1_e6_c320_se0.25"]
TIMM_A1 = ["ds_r1_k3_s1_e1_c16_noskip", "ir_r2_k3_s2_e6_c24", "ir_r3_k5_s2_e3_c40_se0.25",
           "ir_r4_k3_s2_e6_c80", "ir_r2_k3_s1_e6_c112_se0.25", "ir_r3_k5_s2_e6_c160_se0.25",
           "ir_r1_k3_s1_e6_c320"]
TIMM_MOBILENETV2 = ["ds_r1_k3_s1_c16", "ir_r2_k3_s2_e6_c24", "ir_r3_k3_s2_e6_c32",
                    "ir_r4_k3_s2_e6_c64", "ir_r3_k3_s1_e6_c96", "ir_r3_k3_s2_e6_c160",
                    "ir_r1_k3_s1_e6_c320"]


def spec_of(*stages: StageSpec, stem: int = 32, **kw: object) -> ArchSpec:
    return ArchSpec(stages=stages, stem=stem, **kw)  # type: ignore[arg-type]


def refusal(spec: ArchSpec) -> str:
    with pytest.raises(nas.SpecError) as e:
        nas.to_timm(spec)
    text = str(e.value)
    assert "\n" not in text
    return text


# ------------------------------------------------------------------------- strings


@pytest.mark.parametrize("name,strings", [("efficientnet-b0", TIMM_B0), ("mnasnet-a1", TIMM_A1),
                                          ("mobilenetv2", TIMM_MOBILENETV2)])
def test_bundled_specs_are_timms_own_strings(name: str, strings: list[str]) -> None:
    arch = nas.to_timm(nas.load_spec(name))
    assert arch.block_strings == [s.replace("_e1_", "_") for s in strings]
    assert arch.arch_def == tuple((s.replace("_e1_", "_"),) for s in strings)
    assert arch.arch_def_list() == [[s.replace("_e1_", "_")] for s in strings]


def test_constructor_arguments_of_b0() -> None:
    spec = nas.load_spec("efficientnet-b0")
    arch = nas.to_timm(spec)
    assert isinstance(arch, TimmArch)
    assert arch.kwargs == {"stem_size": 32, "fix_stem": True, "num_features": 1280,
                           "act_layer": "silu", "round_chs_fn": keep_channels,
                           "drop_rate": 0.2, "drop_path_rate": 0.2}
    assert (arch.bn_eps, arch.bn_momentum) == (1e-3, 0.01)
    assert keep_channels(1281) == 1281
    assert arch.plain()["kwargs"]["round_chs_fn"] == "identity"
    assert arch.plain()["norm_layer"] == {"eps": 1e-3, "momentum": 0.01}
    a1 = nas.to_timm(nas.load_spec("mnasnet-a1"))
    assert (a1.kwargs["act_layer"], a1.kwargs["drop_path_rate"]) == ("relu", 0.0)
    assert nas.to_timm(nas.load_spec("mobilenetv2")).kwargs["act_layer"] == "relu6"
    with pytest.raises(Exception):
        arch.kwargs = {}  # type: ignore[misc]  # frozen


def test_no_head_and_a_deep_stride_are_written_out() -> None:
    stages = tuple(StageSpec(op="ds", kernel=3, stride=2, out=16, repeats=1) for _ in range(6))
    arch = nas.to_timm(spec_of(*stages, head=0))
    assert arch.kwargs["num_features"] == 0
    # 2 (stem) * 2**6 = 128 > timm's output stride 32, past which timm would dilate instead.
    assert arch.kwargs["output_stride"] == 128
    assert "output_stride" not in nas.to_timm(nas.load_spec("efficientnet-b0")).kwargs


def test_conv_blocks_say_skip_where_this_project_means_identity() -> None:
    same = StageSpec(op="conv", kernel=3, stride=1, out=32, repeats=2, skip="identity")
    assert nas.to_timm(spec_of(same)).block_strings == ["cn_r2_k3_s1_c32_skip"]
    assert nas.to_timm(spec_of(same.replace(skip="none"))).block_strings == ["cn_r2_k3_s1_c32"]
    # pool where the shapes match is the identity shortcut.
    assert nas.to_timm(spec_of(same.replace(skip="pool"))).block_strings == \
        ["cn_r2_k3_s1_c32_skip"]
    # Later layers keep their shape, so identity still matters after a stride-2 first layer.
    down = same.replace(stride=2, out=48)
    assert nas.to_timm(spec_of(down)).block_strings == ["cn_r2_k3_s2_c48_skip"]


def test_ds_and_ir_flags() -> None:
    ds = StageSpec(op="ds", kernel=5, stride=1, out=32, repeats=1, se=0.25)
    assert nas.to_timm(spec_of(ds)).block_strings == ["ds_r1_k5_s1_c32_se0.25"]
    assert nas.to_timm(spec_of(ds.replace(skip="none"))).block_strings == \
        ["ds_r1_k5_s1_c32_se0.25_noskip"]
    assert nas.to_timm(spec_of(ds.replace(skip="pool"))).block_strings == \
        ["ds_r1_k5_s1_c32_se0.25"]
    ir = StageSpec(op="mbconv", kernel=3, stride=2, out=24, repeats=3, expand=4, skip="none")
    assert nas.to_timm(spec_of(ir)).block_strings == ["ir_r3_k3_s2_e4_c24_noskip"]


def test_squeeze_ratio_is_rewritten_where_timm_rounds_differently() -> None:
    # 14 * 0.25 = 3.5: this project squeezes int(3.5) = 3 channels, timm round(3.5) = 4.
    ds = StageSpec(op="ds", kernel=3, stride=1, out=16, repeats=1, se=0.25)
    arch = nas.to_timm(spec_of(ds, stem=14))
    assert arch.block_strings == ["ds_r1_k3_s1_c16_se0.2"]
    assert round(14 * 0.2) == 3 == int(14 * 0.25)
    # An ir block: the ratio is of the block input (timm divides it by e, then multiplies the
    # expanded width); 40 * 0.3 = 12.0 agrees, so the spec's own ratio is kept.
    ir = StageSpec(op="mbconv", kernel=3, stride=1, out=40, repeats=2, expand=6, se=0.3)
    assert nas.to_timm(spec_of(ir, stem=40)).block_strings == ["ir_r2_k3_s1_e6_c40_se0.3"]
    # Both layers of a stage must agree on one ratio: 12 -> int(12*0.3)=3, 20 -> 6.
    ds2 = StageSpec(op="ds", kernel=3, stride=1, out=20, repeats=2, se=0.3)
    text = nas.to_timm(spec_of(ds2, stem=12)).block_strings[0]
    ratio = float(text.split("_se")[1])
    assert (round(12 * ratio), round(20 * ratio)) == (3, 6)


# ------------------------------------------------------------------------- refusals


def test_refusals_are_one_line_and_name_the_stage() -> None:
    b0 = nas.load_spec("efficientnet-b0")
    pooled = b0.replace(stages=b0.stages[:2] + (b0.stages[2].replace(skip="pool"),)
                        + b0.stages[3:])
    text = refusal(pooled)
    assert text.startswith("timm cannot express stage3 (mbconv, 2 layers): skip 'pool'")
    assert "stride 2, 24->40 channels" in text and "use skip identity or none" in text

    conv_se = spec_of(StageSpec(op="conv", kernel=3, stride=1, out=32, repeats=1, se=0.25))
    assert refusal(conv_se).startswith("timm cannot express stage1 (conv, 1 layer): "
                                       "squeeze-excite on a regular conv")

    # 20 * 6 = 120 is a multiple of 8, 12 * 6 = 72 too, 12 * 3 = 36 is not (timm: 40).
    ir = StageSpec(op="mbconv", kernel=3, stride=1, out=20, repeats=2, expand=3)
    text = refusal(spec_of(ir, stem=16))
    assert text.startswith("timm cannot express stage1 (mbconv, 2 layers): timm rounds")
    assert "20x3 = 60 would become 64" in text
    assert make_divisible(60) == 64 and make_divisible(36) == 40 and make_divisible(120) == 120
    assert make_divisible(4) == 8 and make_divisible(20) == 24

    # in 3 -> int(2.7) = 2 and in 100 -> 90: no ratio r has round(3r) = 2 and round(100r) = 90.
    se = StageSpec(op="ds", kernel=3, stride=1, out=100, repeats=2, se=0.9)
    text = refusal(spec_of(se, stem=3))
    assert text.startswith("timm cannot express stage1 (ds, 2 layers): timm squeezes")
    assert "3->2, 100->90" in text

    text = refusal(b0.replace(stem_stride=1))
    assert text == "timm cannot express the stem: timm's EfficientNet stem has stride 2, this " \
                   "spec's stem_stride is 1"


def test_random_children_are_exported_or_refused_for_the_right_reason() -> None:
    """Every child of the default space: exported, or refused exactly when one of its stages
    has a pooled shortcut on a layer that changes shape, or squeeze-excite on a conv."""
    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    rng = np.random.default_rng(7)
    exported = refused = 0
    for _ in range(300):
        child = space.sample(rng)
        bad = [i for i, (s, c) in enumerate(zip(child.stages, child.stage_inputs()))
               if (s.skip == "pool" and not (s.stride == 1 and c == s.out))
               or (s.op == "conv" and s.se > 0)]
        if bad:
            assert refusal(child).startswith(f"timm cannot express stage{bad[0] + 1} ")
            refused += 1
        else:
            arch = nas.to_timm(child)
            assert len(arch.block_strings) == len(child.stages)
            exported += 1
    assert exported > 0 and refused > 0


# ------------------------------------------------------------------------- key maps


def _state_of(spec: ArchSpec, num_classes: int = 10, in_channels: int = 1) -> dict:
    return nas.build_model(spec, num_classes=num_classes, in_channels=in_channels).state_dict()


@pytest.mark.parametrize("name", ["efficientnet-b0", "mnasnet-a1", "mobilenetv2"])
def test_key_map_covers_the_builder_and_round_trips(name: str) -> None:
    spec = nas.load_spec(name)
    ours = _state_of(spec)
    theirs = nas.timm_state_dict(ours, spec)
    shapes = timm_state_shapes(spec, num_classes=10, in_channels=1)
    assert list(theirs) == list(shapes)
    assert {k: tuple(v.shape) for k, v in theirs.items()} == shapes
    assert "conv_stem.weight" in theirs and "blocks.1.0.conv_pwl.weight" in theirs
    back = nas.from_timm_state_dict(theirs, spec)
    assert set(back) == set(ours) and all(back[k] is ours[k] for k in ours)


def test_key_map_of_every_op() -> None:
    spec = spec_of(StageSpec(op="conv", kernel=3, stride=2, out=16, repeats=2),
                   StageSpec(op="ds", kernel=3, stride=1, out=16, repeats=1, se=0.5),
                   StageSpec(op="mbconv", kernel=5, stride=2, out=24, repeats=1, expand=2,
                             se=0.25), stem=8, head=0)
    model = nas.build_model(spec, num_classes=3)
    theirs = nas.timm_state_dict(model, spec)  # a model is taken as its state dict
    for key in ("blocks.0.1.conv.weight", "blocks.0.1.bn1.running_var", "blocks.1.0.conv_dw.weight",
                "blocks.1.0.se.conv_reduce.bias", "blocks.1.0.conv_pw.weight",
                "blocks.1.0.bn2.num_batches_tracked", "blocks.2.0.conv_pw.weight",
                "blocks.2.0.bn3.weight", "blocks.2.0.se.conv_expand.weight", "classifier.bias"):
        assert key in theirs, key
    assert not any(k.startswith(("conv_head", "bn2")) for k in theirs)
    assert tuple(theirs["blocks.1.0.se.conv_reduce.weight"].shape) == (8, 16, 1, 1)


def test_key_map_refuses_what_does_not_fit() -> None:
    b0 = nas.load_spec("efficientnet-b0")
    a1 = nas.load_spec("mnasnet-a1")
    state = _state_of(b0)
    with pytest.raises(nas.SpecError, match="state dict has 72 key.*first .stages.0.0.body.se"):
        nas.timm_state_dict(state, a1)
    with pytest.raises(nas.SpecError, match="lacks 1 key.*'classifier.bias'"):
        nas.timm_state_dict({k: v for k, v in state.items() if k != "classifier.bias"}, b0)
    wide = nas.build_model(b0.replace(head=1024), num_classes=10, in_channels=1).state_dict()
    with pytest.raises(nas.SpecError, match=r"'head.conv.weight' has shape \[1024, 320, 1, 1\]"):
        nas.timm_state_dict(wide, b0)
    with pytest.raises(nas.SpecError, match="timm state dict has no 'conv_stem.weight'"):
        nas.from_timm_state_dict(state, b0)  # our keys where timm's are expected
    with pytest.raises(nas.SpecError, match="expected a model or a state dict"):
        nas.timm_state_dict([1, 2], b0)
    pooled = b0.replace(stages=(b0.stages[0], b0.stages[1].replace(skip="pool")) + b0.stages[2:])
    with pytest.raises(nas.SpecError, match="timm cannot express stage2"):
        nas.timm_state_dict(_state_of(pooled), pooled)


def test_the_string_part_does_not_import_torch() -> None:
    import subprocess
    import sys
    code = ("import sys, nas; nas.to_timm(nas.load_spec('efficientnet-b0')); "
            "import nas.arch.timm_export; sys.exit('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_building_the_timm_model_without_timm_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    for name in [m for m in sys.modules if m.split(".")[0] == "timm"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    with pytest.raises(nas.ConfigError) as e:
        nas.build_timm_model(nas.load_spec("mobilenetv2"))
    assert str(e.value).startswith("building the timm model needs timm: pip install "
                                   "'effnas[timm]' (ModuleNotFoundError")
    assert "\n" not in str(e.value)
    # What timm cannot express is refused before timm is looked for.
    b0 = nas.load_spec("efficientnet-b0")
    with pytest.raises(nas.SpecError, match="timm cannot express the stem"):
        nas.build_timm_model(b0.replace(stem_stride=1))
