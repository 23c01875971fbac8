"""Hostile and mistaken inputs: each is one line on stderr and exit 2 from the commands (run
in-process through ``effnas``'s main), or one of the project's exceptions naming the keyword
from the Python API, before Ray starts or anything is written. Fast: no Ray, no training."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import nas
from nas.cli import effnas
from nas.core.errors import ConfigError, NasError, SpaceError, SpecError
from nas.core.files import (
    MAX_YAML_BYTES,
    MAX_YAML_DEPTH,
    YamlLimitError,
    configs_dir,
    load_yaml_text,
    read_yaml,
)


class Started(Exception):
    """Raised where Ray would start or training would begin: no hostile input gets there."""


@pytest.fixture(autouse=True)
def nothing_starts(monkeypatch):
    from nas.ray import runtime
    from nas.training import fit

    def refuse(*args, **kwargs):
        raise Started("the command got past its checks")

    monkeypatch.setattr(runtime, "init_ray", refuse)
    monkeypatch.setattr(fit, "fit", refuse)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Hostile files, written once."""
    d = tmp_path_factory.mktemp("hostile")
    stage = ("  - {op: mbconv, kernel: 3, stride: 1, expand: 6, se: 0.25, skip: identity, "
             "out: 16, repeats: 1}\n")
    spec = "format_version: 1\nname: s\nresolution: 224\nstem: 32\nhead: 1280\nstages:\n"
    out = {
        "deep": "[" * 200_000 + "]" * 200_000,
        "deep_block": "".join(" " * i + f"k{i}:\n" for i in range(80)) + " " * 80 + "x: 1\n",
        "stages10k": spec + stage * 10_000,
        "empty": "",
        "list": "- 1\n- 2\n",
        "scalar": "42\n",
        "dup_config": "proxy:\n  epochs: 1\nproxy:\n  epochs: 2\n",
        "dup_spec": spec + stage + "stem: 16\n",
        "dup_space": (configs_dir() / "mnasnet-space.yaml").read_text()
        .replace("  kernel: [3, 5]\n", "  kernel: [3, 5]\n  kernel: [3]\n"),
        "repeated_choice": (configs_dir() / "mnasnet-space.yaml").read_text()
        .replace("  kernel: [3, 5]\n", "  kernel: [3, 5, 3]\n"),
    }
    paths = {}
    for name, text in out.items():
        paths[name] = d / f"{name}.yaml"
        paths[name].write_text(text)
    assert "kernel: [3, 5, 3]" in out["repeated_choice"] and "kernel: [3]" in out["dup_space"]
    paths["binary"] = d / "binary.yaml"
    paths["binary"].write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    paths["huge"] = d / "huge.yaml"
    paths["huge"].write_text("# padding\n" * (MAX_YAML_BYTES // 10 + 1))
    paths["folder"] = d / "a-folder.yaml"
    paths["folder"].mkdir()
    return paths


def one_line(capsys, *argv: str) -> str:
    """Run ``effnas ARGV`` in-process; it must fail with exit 2 and one line on stderr."""
    code = effnas.main(list(argv))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# --------------------------------------------------------------------------- targets (MACs)


@pytest.mark.parametrize("command", ["search", "scale", "pipeline"])
@pytest.mark.parametrize("value,says", [
    ("1e30", "--target-flops '1e30': implausibly large"),
    ("1e28", "--target-flops '1e28': implausibly large"),
    ("9e17", "--target-flops 9e17 is 900000.00T MACs, over 1P (10^15"),
    ("40", "--target-flops 40 is 40 MACs, under 1M (the smallest networks have about 10M); did "
           "you mean 40M? pass --force to use it anyway"),
    ("40K", "did you mean 40M? pass --force"),
    ("nan", "--target-flops 'nan': expected a number of multiply-adds"),
    ("inf", "--target-flops 'inf': expected a number of multiply-adds"),
    ("-5M", "--target-flops '-5M': expected a number of multiply-adds"),
    ("0", "--target-flops '0': expected a positive number"),
    ("400Q", "--target-flops '400Q': expected a number of multiply-adds such as 400M"),
    ("", "--target-flops"),
])
def test_bad_targets_are_one_line(capsys, tmp_path, command, value, says):
    extra = ["--budgets", "600M"] if command == "pipeline" else []
    line = one_line(capsys, command, f"--target-flops={value}", *extra,
                    "--out", str(tmp_path / "run"))
    assert says in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("budgets,says", [
    ("40", "--budgets 40 is 40 MACs, under 1M"),
    ("600M,1e30", "--budgets '1e30': implausibly large"),
    ("400Q", "--budgets '400Q': expected a number"),
    ("600M,,1G", "--budgets '600M,,1G': an empty item"),
    ("600M,0.6G", "--budgets 600M,0.6G: 600.0M is given twice; list each budget once"),
])
def test_scale_budgets_errors_name_budgets(capsys, tmp_path, budgets, says):
    line = one_line(capsys, "scale", "--budgets", budgets, "--out", str(tmp_path / "run"))
    assert says in line and "--target-flops" not in line
    assert not (tmp_path / "run").exists()


def test_forced_tiny_budget_passes_the_check_and_names_budgets_after(capsys, tmp_path):
    # Forced, 40 MACs is taken; the family then says it cannot reach it, naming --budgets.
    line = one_line(capsys, "scale", "--budgets", "40", "--force", "--out",
                    str(tmp_path / "run"))
    assert line.startswith("error: --budgets 40 is below the baseline's")


def test_forced_tiny_target_is_taken(tmp_path):
    from nas.core.settings import load
    from nas.search.settings import SearchSettings

    s = load(SearchSettings, overrides={"target_flops": "40", "out": tmp_path / "run"})
    s.check(force=True)
    assert s.target_macs == 40
    with pytest.raises(ConfigError, match="pass force=True"):
        s.check()


def test_pipeline_budgets_of_40_macs(capsys, tmp_path):
    line = one_line(capsys, "pipeline", "--target-flops", "400M", "--budgets", "40",
                    "--out", str(tmp_path / "run"))
    assert "--budgets 40 is 40 MACs" in line and "did you mean 40M?" in line


# --------------------------------------------------------------------------- resolutions


@pytest.mark.parametrize("argv,says", [
    (["search", "--target-flops", "400M", "--set", "target.resolution=100000"],
     "target.resolution=100000: 100000 x 100000 pixels is over 4096"),
    (["search", "--target-flops", "400M", "--set", "proxy.resolution=100000"],
     "proxy.resolution=100000: 100000 x 100000 pixels is over 4096"),
    (["search", "--target-flops", "400M", "--set", "target.resolution=0"],
     "target.resolution: got 0; use an integer >= 8"),
    (["search", "--target-flops", "400M", "--set", "target.resolution=-3"],
     "target.resolution: got -3"),
    (["pipeline", "--target-flops", "400M", "--budgets", "600M", "--set",
      "train.resolution=100000"], "train.resolution=100000: 100000 x 100000 pixels"),
    (["train", "efficientnet-b0", "--resolution", "100000"],
     "--resolution 100000: 100000 x 100000 pixels is over 4096, almost surely a typo"),
    (["train", "efficientnet-b0", "--resolution", "5"], "--resolution"),
    (["search", "--target-flops", "400M", "--set", "data.image_size=100000"],
     "data.image_size=100000: 100000 x 100000 pixels is over 4096"),
])
def test_implausible_resolutions_are_one_line(capsys, tmp_path, argv, says):
    line = one_line(capsys, *argv, "--out", str(tmp_path / "run"))
    assert says in line
    if "100000" in says:
        assert "pass --force to use it anyway" in line
    assert not (tmp_path / "run").exists()


def test_forced_resolution_passes_the_check(capsys, tmp_path):
    with pytest.raises(Started):  # past every check, at the training itself
        effnas.main(["train", "efficientnet-b0", "--resolution", "5000", "--force",
                     "--out", str(tmp_path / "run")])


@pytest.mark.parametrize("argv", [
    ["search", "--target-flops", "400M", "--config", ""],
    ["search", "--target-flops", "400M", "--space", " "],
    ["search", "--target-flops", "400M", "--preset", ""],
    ["scale", "--baseline", ""],
    ["scale", "--coefficients", ""],
    ["train", "efficientnet-b0", "--dataset", ""],
    ["pipeline", "--target-flops", "400M", "--budgets", ""],
])
def test_empty_values_are_one_line(capsys, tmp_path, argv):
    line = one_line(capsys, *argv, "--out", str(tmp_path / "run"))
    assert "empty value" in line and argv[-2] in line
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- counts and sizes


@pytest.mark.parametrize("extra,says", [
    (["--budget", "0"], "budget: got 0"),
    (["--budget", "-5"], "budget: got -5"),
    (["--workers", "-1"], "workers: got -1"),
    (["--workers", "0"], "workers: got 0"),
    (["--cpus-per-trial", "nan"], "--cpus-per-trial nan: expected a finite number"),
    (["--gpus-per-trial", "inf"], "--gpus-per-trial inf: expected a finite number"),
    (["--seed", "-1"], "seed: got -1"),
    (["--seed", str(10**30)], "seed: got 1000000000000000000000000000000; use an integer in "
                              "[0, 4294967295]"),
    (["--time-budget=-5m"], "--time-budget: got '-5m'"),
    (["--set", "proxy.epochs=0"], "epochs"),
])
def test_bad_counts_are_one_line(capsys, tmp_path, extra, says):
    line = one_line(capsys, "search", "--target-flops", "400M", *extra,
                    "--out", str(tmp_path / "run"))
    assert says in line


@pytest.mark.parametrize("argv,says", [
    (["scale", "--grid", "--step", "1e-9"], "--step 1e-09: finer than 1e-06"),
    (["scale", "--grid", "--alpha-range", "1,1e9"], "grid points over the ranges (limit "
                                                    "1,000,000)"),
    (["train", "efficientnet-b0", "--seed", str(10**27)], "--seed: got 10000000000000"),
    (["pipeline", "--target-flops", "400M", "--budgets", "600M,600M"],
     "--budgets 600M,600M: 600.0M is given twice"),
])
def test_huge_grids_seeds_and_repeated_budgets_are_one_line_and_fast(capsys, tmp_path, argv,
                                                                     says):
    start = time.monotonic()
    line = one_line(capsys, *argv, "--out", str(tmp_path / "run"))
    assert time.monotonic() - start < 5  # a step of 1e-9 listed 10^9 values per axis
    assert says in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("coefficients,says", [
    ("1e300,1,1", "each must be at most 4"),
    ("nan,1,1", "alpha = nan"),
    ("inf,1,1", "alpha = inf"),
    ("0.5,1,1", "alpha, beta, gamma >= 1"),
])
def test_bad_coefficients_are_one_line(capsys, tmp_path, coefficients, says):
    line = one_line(capsys, "scale", "--coefficients", coefficients,
                    "--out", str(tmp_path / "run"))
    assert says in line
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("name,says", [
    ("deep", "line 1: lists or mappings nested more than 50 deep"),
    ("deep_block", "lists or mappings nested more than 50 deep"),
    ("dup_config", "line 3: duplicate key 'proxy' (first at line 1); keep one of them"),
    ("empty", "expected a mapping of settings"),
    ("list", "expected a mapping of settings"),
    ("scalar", "expected a mapping of settings"),
    ("binary", "not UTF-8 text (bad byte at offset 0)"),
    ("huge", f"more than the {MAX_YAML_BYTES:,} a YAML file may have"),
    ("folder", "is a folder, not a file; give the path of a YAML file"),
])
def test_bad_config_files_are_one_line(capsys, tmp_path, files, name, says):
    for command in ("search", "pipeline"):
        extra = ["--budgets", "600M"] if command == "pipeline" else []
        line = one_line(capsys, command, "--target-flops", "400M", *extra,
                        "--config", str(files[name]), "--out", str(tmp_path / "run"))
        assert str(files[name]) in line and says in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name,says", [
    ("stages10k", "line 107: more than 100 entries in one list or mapping; a spec has at most "
                  "100 stages"),
    ("deep", "nested more than 50 deep"),
    ("dup_spec", "line 8: duplicate key 'stem' (first at line 4); keep one of them"),
    ("empty", "top level: the spec is empty"),
    ("list", "top level: expected a mapping, got list"),
    ("scalar", "top level: expected a mapping, got int"),
    ("binary", "not UTF-8 text"),
    ("huge", "a YAML file may have"),
    ("folder", "is a folder, not a file"),
])
def test_bad_spec_files_are_one_line_and_fast(capsys, tmp_path, files, name, says):
    for argv in (["scale", "--baseline", str(files[name])], ["train", str(files[name])],
                 ["inspect", str(files[name])]):
        start = time.monotonic()
        line = one_line(capsys, *argv, "--out", str(tmp_path / "run")) if argv[0] != "inspect" \
            else one_line(capsys, *argv)
        assert time.monotonic() - start < 5, argv  # the 10,000-stage spec took 90 s
        assert str(files[name]) in line and says in line, line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name,says", [
    ("dup_space", "duplicate key 'kernel'"),
    ("repeated_choice", "defaults.kernel: 3 is listed twice in [3, 5, 3]; list each choice once"),
    ("deep", "nested more than 50 deep"),
    ("empty", "top level: expected a mapping"),
    ("list", "top level: expected a mapping"),
    ("folder", "is a folder, not a file"),
])
def test_bad_space_files_are_one_line(capsys, tmp_path, files, name, says):
    line = one_line(capsys, "search", "--target-flops", "400M", "--space", str(files[name]),
                    "--out", str(tmp_path / "run"))
    assert str(files[name]) in line and says in line


# --------------------------------------------------------------------------- the loader itself


def test_bundled_configs_load_within_the_limits():
    for path in sorted(configs_dir().glob("*.yaml")):
        read_yaml(path)


@pytest.mark.parametrize("text,says", [
    ("a: 1\nb: 2\na: 3\n", "line 3: duplicate key 'a' (first at line 1)"),
    ("{a: 1, a: 2}", "line 1: duplicate key 'a'"),
    ("x:\n  - {k: 1, k: 2}\n", "line 2: duplicate key 'k'"),
    ("1: a\n1: b\n", "duplicate key 1"),
    ("[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1), "nested more than 50 deep"),
    ("- " * (MAX_YAML_DEPTH + 1) + "x\n", "nested more than 50 deep"),
])
def test_strict_yaml(text, says):
    with pytest.raises(YamlLimitError, match=says.replace("(", r"\(").replace(")", r"\)")):
        load_yaml_text(text)


def test_strict_yaml_keeps_what_is_legal():
    assert load_yaml_text("[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH) is not None
    assert load_yaml_text("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\n")["d"] == \
        {"x": 3, "y": 2}  # a merge key's values may be overridden
    assert load_yaml_text("a: {b: 1}\nc: {b: 2}\n") == {"a": {"b": 1}, "c": {"b": 2}}
    assert load_yaml_text("lr: 1e-3") == {"lr": 0.001}


def test_deep_brackets_fail_fast():
    start = time.monotonic()
    with pytest.raises(YamlLimitError):
        load_yaml_text("[" * 200_000 + "]" * 200_000)
    assert time.monotonic() - start < 1


@pytest.mark.parametrize("error", [ConfigError, SpecError, SpaceError])
def test_read_yaml_raises_the_callers_error(files, error):
    with pytest.raises(error, match="duplicate key"):
        read_yaml(files["dup_config"], error)


# --------------------------------------------------------------------------- the Python API


def api_error(call, *args, **kwargs) -> str:
    with pytest.raises(NasError) as e:
        call(*args, **kwargs)
    text = str(e.value)
    assert "\n" not in text and "--" not in text, text  # one line, keywords not flags
    return text


@pytest.mark.parametrize("kwargs,says", [
    ({"target_flops": "1e30"}, "target_flops='1e30': implausibly large"),
    ({"target_flops": 1e30}, "target_flops=1e+30: implausibly large"),
    ({"target_flops": 40}, "target_flops=40 is 40 MACs, under 1M (the smallest networks have "
                           "about 10M); did you mean 40M? pass force=True to use it anyway"),
    ({"target_flops": float("nan")}, "target_flops=nan"),
    ({"target_flops": "400M", "workers": "many"}, "workers='many': expected a whole number"),
    ({"target_flops": "400M", "budget": 2.5}, "budget=2.5: expected a whole number"),
    ({"target_flops": "400M", "resume": "yes"}, "resume='yes': expected True or False"),
    ({"target_flops": "400M", "out": 123}, "out=123: expected a path"),
    ({"target_flops": "400M", "proxy": 5}, "proxy: expected a mapping"),
    ({"target_flops": "400M", "preset": 5}, "preset=5: give a preset's name"),
    ({"target_flops": "400M", "config": 5}, "config=5: give a YAML file's path"),
    ({"target_flops": "400M", "space": ""}, "space='': empty; give a value, or leave space out"),
    ({"target_flops": "  "}, "target_flops='  ': empty"),
    ({"target_flops": "400M", "target.resolution": 100000},
     "target.resolution=100000: 100000 x 100000 pixels is over 4096"),
])
def test_api_search_errors_name_keywords(tmp_path, kwargs, says):
    kwargs.setdefault("out", tmp_path / "run")
    assert says in api_error(nas.run_search, **kwargs)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kwargs,says", [
    ({"budgets": ["1e30"]}, "budgets='1e30': implausibly large"),
    ({"budgets": ["40"]}, "budgets=40 is 40 MACs"),
    ({"budgets": [40]}, "budgets=40 is 40 MACs"),
    ({"budgets": ["600M", "1e30"]}, "budgets='1e30': implausibly large"),
    ({"budgets": 40}, "budgets: got 40; give a list"),
    ({"phi": "abc", "grid_search": True}, "phi='abc': expected a finite number"),
    ({"grid_search": "yes"}, "grid_search='yes': expected True or False"),
    ({"target_flops": "2G"}, "unknown key 'target_flops'"),
])
def test_api_scale_errors_name_keywords(tmp_path, kwargs, says):
    assert says in api_error(nas.run_scale, out=tmp_path / "run", **kwargs)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kwargs,says", [
    ({"epochs": "abc"}, "epochs='abc': expected a whole number"),
    ({"epochs": [1]}, "epochs=[1]: expected a whole number"),
    ({"lr": "fast"}, "lr='fast': expected a finite number"),
    ({"out": 123}, "out=123: expected a path"),
    ({"resolution": 100000}, "resolution=100000: 100000 x 100000 pixels is over 4096, almost "
                             "surely a typo (ImageNet is 224, Fashion-MNIST 28); pass force=True"),
    ({"optimizer": "lamb"}, "optimizer: got 'lamb'; use one of"),
])
def test_api_train_errors_name_keywords(tmp_path, kwargs, says):
    kwargs.setdefault("out", tmp_path / "run")
    assert says in api_error(nas.run_train, "efficientnet-b0", **kwargs)
    assert not (tmp_path / "run").exists()


def test_api_values_are_typed_and_force_takes_what_looks_like_a_typo(tmp_path):
    with pytest.raises(Started):  # force=True takes 5000 px
        nas.run_train("efficientnet-b0", epochs=3, resolution=5000, force=True,
                      out=tmp_path / "run")
    # Text is not a number: the settings are typed, as a YAML file's are.
    assert "epochs='3': expected a whole number" in api_error(nas.run_train,
                                                                "efficientnet-b0", epochs="3")
    assert "settings=123" in api_error(nas.run_train, 123)


@pytest.mark.parametrize("path", [None, 5, ""])
def test_load_run_of_no_path(path):
    assert "load_run: got path=" in api_error(nas.load_run, path)


def test_load_run_of_damaged_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "children.jsonl").write_text('{"child": 0, "accuracy": 0.5}\n')
    (run / "summary.json").write_text('{"run": "x", "best": {"acc')  # cut off mid-write
    line = api_error(nas.load_run, run)
    assert line.startswith(f"{run / 'summary.json'}: not JSON") and "resume" in line
    (run / "summary.json").write_bytes(b"\xff\xfe{}")
    assert "not UTF-8 text" in api_error(nas.load_run, run)
    (run / "summary.json").unlink()
    (run / "children.jsonl").write_bytes(b"\xff\n")
    assert "children.jsonl: not UTF-8 text" in api_error(nas.load_run, run)
