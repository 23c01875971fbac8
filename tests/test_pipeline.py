"""effnas pipeline: the layered settings, the typed settings, bad input (one line, exit
2, nothing written), what --resume may change, and the pieces of the report."""

from __future__ import annotations

from pathlib import Path

import pytest

import nas
from nas.cli import jobs
from nas.cli import pipeline as cli
from nas.core.errors import ConfigError
from nas.search.settings import PipelineSettings
from nas.pipeline.report import compare_to
from nas.pipeline.run import select_members, train_resolution
from nas.pipeline.settings import TrainPlan
from nas.pipeline.state import PipelineState

BASE = ["--target-flops", "400M", "--budgets", "600M,1.2G"]


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def settings(*argv: str) -> PipelineSettings:
    """The settings the command line asks for (layered, or the run's on --resume)."""
    args = cli.build_parser().parse_args(list(argv))
    over = cli.cli_overrides(args)
    if args.resume:
        return jobs.pipeline_resumed(over)
    return jobs.settings(PipelineSettings, preset=args.preset, config=args.config,
                         overrides=over)


def config(*argv: str) -> dict:
    return settings(*argv).to_mapping()


def test_defaults_take_the_search_and_scale_keys_from_their_own_files():
    cfg = config(*BASE)
    search = nas.config_path("search")
    assert cfg["search"]["strategy"] == "ppo" and cfg["search"]["budget"] == 60
    assert cfg["search"]["proxy"]["epochs"] == 2  # proxy-default, read as a mapping
    assert cfg["scale"]["grid"]["step"] == 0.05 and cfg["scale"]["rule"] == "budget"
    assert cfg["scale"]["compare"] is False and cfg["scale"]["on_miss"] == "closest"
    for sec in ("search", "scale"):  # the keys set once for the pipeline are not repeated
        for key in ("seed", "workers", "data", "out", "name"):
            assert key not in cfg[sec], (sec, key)
    assert search.is_file() and cfg["budgets"] == ["600M", "1.2G"]


def test_preset_config_file_flags_and_set_are_layered_in_order(tmp_path):
    extra = tmp_path / "mine.yaml"
    extra.write_text("search:\n  budget: 7\n  proxy: {epochs: 3}\ntrain:\n  epochs: 4\n")
    cfg = config(*BASE, "--preset", "smoke", "--config", str(extra), "--epochs", "5",
                 "--set", "search.proxy.lr=0.01", "--set",
                 "search.strategy_options={batch_size: 5}", "--workers", "3")
    assert cfg["search"]["budget"] == 7                      # --config over the preset
    proxy = cfg["search"]["proxy"]
    assert proxy["epochs"] == 3 and proxy["lr"] == 0.01      # proxy-smoke, then overlaid
    assert proxy["train_subset"] == 2048                     # from the preset's proxy-smoke
    assert cfg["search"]["strategy_options"] == {"batch_size": 5}  # replaced as a whole
    assert cfg["train"]["epochs"] == 5 and cfg["workers"] == 3      # flags last
    assert cfg["scale"]["proxy"]["width_mult"] == 0.25       # the preset's scale proxy


def test_typed_settings_hand_each_stage_its_own(tmp_path):
    out = tmp_path / "run"
    cfg = config(*BASE, "--out", str(out), "--seeds", "0,1,2", "--references",
                 "mobilenetv2,efficientnet-b0", "--compare", "--family", "paper",
                 "--members", "600M,b2")
    p = jobs.pipeline_plan(PipelineSettings.from_mapping(cfg))
    assert p.out == out and p.search.out == out / "search" and p.scale.out == out / "scale"
    assert p.search.target_macs == 400_000_000 and p.search.budget == 60
    assert p.scale.budget_macs == (600_000_000, 1_200_000_000) and p.scale.rule == "paper"
    assert p.grid and p.compare and p.family and p.scale.trials is not None
    t = p.train
    assert isinstance(t, TrainPlan) and t.seeds == (0, 1, 2) and t.resolution == 32
    assert t.members == ("600.0M", "b2") and t.baseline
    assert [name for name, _ in t.references] == ["mobilenetv2", "efficientnet-b0"]
    assert all(Path(path).is_file() for _, path in t.references)
    assert t.template.epochs == 10 and t.template.optimizer == "adamw" and t.template.lr == 0.002
    assert t.template.dataset == "fashion-mnist" and t.template.val_size == 5000
    assert not out.exists()  # building settings writes nothing
    # Given coefficients skip the grid; a given baseline skips the search.
    p = jobs.pipeline_plan(settings(*BASE, "--coefficients", "1.2,1.1,1.15", "--baseline",
                            "mnasnet-a1", "--out", str(out)))
    assert not p.grid and p.scale.coefficients == (1.2, 1.1, 1.15) and p.scale.trials is None
    assert p.search is None and p.baseline == "mnasnet-a1"


@pytest.mark.parametrize("argv,needle", [
    (["--budgets", "600M"], "--target-flops is required"),
    (["--target-flops", "400M"], "nothing to scale"),
    (["--target-flops", "abc", "--budgets", "600M"], "--target-flops 'abc'"),
    ([*BASE[:2], "--budgets", "600M,zz"], "--budgets 'zz'"),
    ([*BASE, "--coefficients", "1.2,1.1"], "--coefficients 1.2,1.1: give three numbers"),
    ([*BASE, "--coefficients", "0.5,1,1"], "--coefficients 0.5,1.0,1.0: compound scaling"),
    ([*BASE, "--coefficients", "a,b,c"], "--coefficients"),
    ([*BASE, "--family", "magic"], "--family 'magic'"),
    ([*BASE, "--set", "scale.grid.step=0"], "scale.grid.step=0.0: must be a positive grid"),
    ([*BASE, "--set", "search.reward.w=x"], "search.reward.w='x': expected a finite number"),
    ([*BASE, "--set", "search.proxy.epochs=0"], "epochs: got 0"),
    ([*BASE, "--set", "search.strategy=magic"], "search.strategy='magic'"),
    ([*BASE, "--set", "search.nope=1"], "unknown key 'search.nope'"),
    ([*BASE, "--set", "search.workers=4"], "search.workers is set once for the whole "
                                           "pipeline; use workers"),
    ([*BASE, "--set", "nope=1"], "unknown key 'nope'"),
    ([*BASE, "--set", "train.lr=-1"], "train.lr: got -1.0"),
    ([*BASE, "--set", "train.optimizer=magic"], "train.optimizer"),
    ([*BASE, "--set", "train.dropout=2"], "train.dropout"),
    ([*BASE, "--set", "train.export=gif"], "train.export"),
    ([*BASE, "--set", "train.resolution=2"], "train.resolution"),
    ([*BASE, "--set", "train.patience=0"], "train.patience"),
    ([*BASE, "--epochs", "0"], "--epochs: got 0"),
    ([*BASE, "--seeds", "0,0"], "lists a seed twice"),
    ([*BASE, "--seeds", "a"], "--seeds"),
    ([*BASE, "--members", "b1"], "no rule family"),
    ([*BASE, "--members", "700M"], "not one of the budgets"),
    ([*BASE, "--members", "xyz"], "not a member"),
    ([*BASE, "--references", "nope-net"], "nope-net"),
    ([*BASE, "--references", "mobilenetv2,mobilenetv2"], "listed twice"),
    ([*BASE, "--baseline", "/nonexistent.yaml"], "file not found"),
    ([*BASE, "--set", "scale.on_miss=maybe"], "scale.on_miss"),
    ([*BASE, "--set", "budgets=5"], "budgets: got 5"),
    ([*BASE, "--preset", "huge"], "unknown preset"),
    (["--resume"], "holds no pipeline to continue"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, argv, needle):
    out = tmp_path / "run"
    code, _, err = run_main(capsys, *argv, "--out", str(out))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert not out.exists()


def test_a_new_pipeline_needs_an_empty_folder(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "something").write_text("x")
    code, _, err = run_main(capsys, *BASE, "--out", str(out))
    assert code == 2 and "not empty" in err
    PipelineState.new(out, "old").save()
    code, _, err = run_main(capsys, *BASE, "--out", str(out))
    assert code == 2 and "--resume --out" in err


def _saved_run(tmp_path: Path, *started: str) -> Path:
    """A run folder as a first session leaves it: its settings and a state file in which
    ``started`` stages have begun."""
    out = tmp_path / "run"
    p = jobs.pipeline_plan(settings(*BASE, "--out", str(out)))
    out.mkdir()
    (out / "config.yaml").write_text(p.configs["pipeline"])
    state = PipelineState.new(out, p.name)
    for stage in started:
        state.start(stage)
    return out


def test_resume_keeps_the_settings_of_stages_that_have_started(capsys, tmp_path):
    out = _saved_run(tmp_path, "search")
    for argv, needle in [(["--set", "search.budget=5"], "'search.budget' cannot change"),
                         (["--seed", "3"], "'seed' cannot change"),
                         (["--preset", "smoke"], "leave out --preset"),
                         (["--set", "nope=1"], "unknown key 'nope'")]:
        code, _, err = run_main(capsys, "--resume", "--out", str(out), *argv)
        assert code == 2 and needle in err, err
    # What has not started yet may change, and so may the trial resources.
    cfg = config("--resume", "--out", str(out), "--set", "scale.grid.step=0.1", "--epochs",
                 "3", "--workers", "4", "--budgets", "700M")
    assert cfg["scale"]["grid"]["step"] == 0.1 and cfg["train"]["epochs"] == 3
    assert cfg["workers"] == 4 and cfg["budgets"] == ["700M"]


def test_resume_lets_the_budgets_change_until_the_family_is_written(capsys, tmp_path):
    out = _saved_run(tmp_path, "search", "scale")  # e.g. a budget fell in a jump of the MACs
    cfg = config("--resume", "--out", str(out), "--budgets", "650M,1.3G")
    assert cfg["budgets"] == ["650M", "1.3G"]
    code, _, err = run_main(capsys, "--resume", "--out", str(out), "--set",
                            "scale.grid.tol=0.2")
    assert code == 2 and "'scale.grid.tol' cannot change once the scale stage" in err
    state = PipelineState.load(out)
    state.finish("scale", 1.0)
    code, _, err = run_main(capsys, "--resume", "--out", str(out), "--budgets", "700M")
    assert code == 2 and "'budgets' cannot change" in err


def test_resume_of_a_folder_without_a_pipeline(capsys, tmp_path):
    code, _, err = run_main(capsys, "--resume", "--out", str(tmp_path))
    assert code == 2 and "holds no pipeline" in err
    code, _, err = run_main(capsys, "--resume")
    assert code == 2 and "--resume needs --out" in err


def test_members_are_chosen_from_the_emitted_family():
    budgets, family = ["600.0M", "1.20G"], ["b1", "b2", "b3"]
    assert select_members(None, budgets, family) == budgets
    assert select_members(("family",), budgets, family) == family
    assert select_members(("b2", "1.20G"), budgets, family) == ["1.20G", "b2"]
    assert select_members(("budgets", "b1"), budgets, family) == [*budgets, "b1"]
    with pytest.raises(ConfigError, match="not a member"):
        select_members(("b9",), budgets, family)


def test_a_model_is_trained_at_the_baseline_resolution_scaled_by_its_own():
    plan = TrainPlan(template=None, resolution=32, seeds=(0,), members=None, baseline=True,
                     references=())
    assert train_resolution(plan, 224, 224) == 32
    assert train_resolution(plan, 300, 224) == 44     # 42.9 -> the nearest multiple of 4
    assert train_resolution(plan, 600, 224) == 84
    assert train_resolution(plan, 112, 224) == 16


def test_a_difference_is_claimed_only_with_three_seeds_and_separate_ranges():
    def s(*v):
        return {"n": len(v), "mean": sum(v) / len(v), "low": min(v), "high": max(v)}
    assert compare_to(s(0.9, 0.91, 0.92), s(0.8, 0.81, 0.82)).startswith("above")
    assert compare_to(s(0.7, 0.71, 0.72), s(0.8, 0.81, 0.82)).startswith("below")
    assert compare_to(s(0.8, 0.85, 0.9), s(0.82, 0.83, 0.84)).startswith("not shown (ranges")
    assert compare_to(s(0.99), s(0.1)).startswith("not shown (1 seed")
    assert compare_to(None, s(0.1)) == "not measured"
