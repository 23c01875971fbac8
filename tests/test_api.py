"""The Python API (nas.run_search, nas.run_scale, nas.run_train, nas.load_run): the same
settings as the commands, errors raised (not printed), result objects, and the command and
the API on one code path."""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
from pathlib import Path

import pytest

import nas
from nas.cli import api
from nas.core.errors import ConfigError, NoResultError

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("function,settings", [
    ("run_search", "SearchSettings"), ("run_scale", "ScaleSettings"),
    ("run_train", "TrainSettings"), ("run_fidelity", "FidelitySettings"),
    ("run_pipeline", "PipelineSettings")])
def test_each_function_takes_its_settings_and_keyword_overrides(function, settings):
    params = inspect.signature(getattr(api, function)).parameters
    assert list(params)[0] == "settings" and "overrides" in params
    assert params["overrides"].kind is inspect.Parameter.VAR_KEYWORD
    assert getattr(nas, settings).from_mapping({}) is not None


@pytest.mark.parametrize("module,settings", [
    ("nas.cli.search", "SearchSettings"), ("nas.cli.scale", "ScaleSettings"),
    ("nas.cli.train", "TrainSettings"), ("nas.cli.fidelity", "FidelitySettings"),
    ("nas.cli.pipeline", "PipelineSettings")])
def test_every_flag_sets_a_key_of_the_settings(module, settings):
    import importlib

    from nas.core.settings import flat_keys
    keys = set(flat_keys(getattr(nas, settings)().to_mapping())) | {
        k for k in getattr(nas, settings)().to_mapping()}
    table = importlib.import_module(module).KEYS
    parser = importlib.import_module(module).build_parser()
    dests = {a.dest for a in parser._actions}
    for dest, key in table.items():
        assert dest in dests, dest
        assert key in keys or key.rsplit(".", 1)[0] in keys, (dest, key)


def test_import_nas_gives_the_api_lazily_and_stays_torch_free():
    code = ("import sys, nas; f = nas.run_search; import nas.cli.api; "
            "assert f is nas.cli.api.run_search and nas.load_run and nas.RunData; "
            "bad = sorted(m for m in ('torch', 'ray', 'pandas') if m in sys.modules); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------- errors are raised


@pytest.mark.parametrize("kwargs,needle", [
    ({}, "target_flops is required, e.g. target_flops=400M"),
    ({"target_flops": "abc"}, "target_flops='abc'"),
    ({"target_flops": "400M", "foo": 1}, "unknown key 'foo'"),
    ({"target_flops": "400M", "reward.bogus": 1}, "unknown key 'reward.bogus'"),
    ({"target_flops": "400M", "config": {"bogus": 2}}, "config: unknown key 'bogus'"),
    ({"target_flops": "400M", "config": {"proxy": {"epoch": 2}}},
     "unknown key 'proxy.epoch'; did you mean 'proxy.epochs'?"),
    ({"target_flops": "400M", "strategy": "annealing"}, "strategy='annealing'"),
    ({"target_flops": "400M", "workers": 0}, "workers"),
    ({"target_flops": "400M", "budget": "many"}, "budget"),
    ({"target_flops": "400M", "tune.scheduler": "hyperband"}, "tune.scheduler"),
    ({"target_flops": "400M", "tune": {"scheduler": "asha"}, "proxy.epochs": 1},
     "tune.asha.grace_period"),
    ({"resume": True}, "resume=True needs out=DIR"),
])
def test_bad_search_settings_raise_one_line_and_print_nothing(capsys, tmp_path, kwargs, needle):
    with pytest.raises(ConfigError) as e:
        nas.run_search(out=tmp_path / "run", **kwargs) if "resume" not in kwargs \
            else nas.run_search(**kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert "--" not in str(e.value), e.value  # keywords, never flags
    cap = capsys.readouterr()
    assert cap.err == "" and cap.out == ""
    assert not (tmp_path / "run").exists()


def test_other_commands_raise_too(capsys, tmp_path):
    with pytest.raises(ConfigError, match="spec is required"):
        nas.run_train(epochs=1)
    with pytest.raises(ConfigError, match="^phi sets the grid search, which runs only with "
                                          "grid_search=True; add grid_search=True"):
        nas.run_scale(phi=2.0, out=tmp_path / "s")
    with pytest.raises(ConfigError, match="^coefficients=1.2,1.1: give three numbers"):
        nas.run_scale(coefficients=[1.2, 1.1], out=tmp_path / "s")
    with pytest.raises(ConfigError, match="unknown key 'no_such_flag'"):
        nas.run_search(target_flops="400M", no_such_flag=1)  # not a setting of the search
    assert capsys.readouterr().err == ""


def test_no_successful_child_raises_no_result(monkeypatch, tmp_path):
    import nas.search.run as run
    from nas.search.run import SearchOutcome
    summary = {"run": "x", "best": None, "children_trained": 2, "children_failed": 2,
               "most_common_error": {"error": "diverged", "children": 2}}
    monkeypatch.setattr(run, "search", lambda s, resume, text: SearchOutcome(s.out, True, summary))
    with pytest.raises(NoResultError, match="no child trained successfully"):
        nas.run_search(target_flops="400M", out=tmp_path / "run")


# --------------------------------------------------------------------------- argument mapping


def _capture_search(monkeypatch):
    import nas.search.run as run
    from nas.search.run import SearchOutcome
    seen = []

    def fake(s, resume, text):
        seen.append((s, resume, text))
        return SearchOutcome(s.out, False, {"run": s.name, "children_trained": 0, "best": None})
    monkeypatch.setattr(run, "search", fake)
    return seen


def test_search_settings_are_the_commands(monkeypatch, tmp_path, capsys):
    import search
    seen = _capture_search(monkeypatch)
    cfg = tmp_path / "my.yaml"
    cfg.write_text("top_k: 2\n")
    out = tmp_path / "run"
    result = nas.run_search(target_flops="0.4G", strategy="evolution", budget=7, config=cfg,
                            **{"proxy.epochs": 3}, reward={"w": -0.1}, workers=3,
                            seed=5, name="n", out=out)
    code = search.main(["--target-flops", "0.4G", "--strategy", "evolution", "--budget", "7",
                        "--config", str(cfg), "--set", "proxy.epochs=3", "--set",
                        "reward.w=-0.1", "--workers", "3", "--seed", "5", "--name", "n",
                        "--out", str(out)])
    assert code == 130 and "--resume --out" in capsys.readouterr().err
    (s_api, resume_api, text_api), (s_cli, resume_cli, text_cli) = seen
    assert text_api == text_cli and s_api == s_cli and resume_api is resume_cli is False
    assert s_api.budget == 7 and s_api.top_k == 2 and s_api.trials.recipe.epochs == 3
    assert s_api.reward.w == -0.1 and s_api.trials.workers == 3 and s_api.seed == 5
    assert s_api.target_macs == 400_000_000 and s_api.out == out
    assert result == api.SearchResult(out=out, name="n", finished=False, best=None,
                                      best_path=None, summary=result.summary)


def test_a_config_mapping_and_override_forms(monkeypatch, tmp_path):
    seen = _capture_search(monkeypatch)
    nas.run_search(target_flops="400M", config={"budget": 9, "proxy": {"epochs": 5}},
                   **{"proxy.lr": 1e-3}, name="a", out=tmp_path / "a")
    s = seen[-1][0]
    assert s.budget == 9 and s.trials.recipe.epochs == 5 and s.trials.recipe.lr == 1e-3
    # Settings built by hand, then overridden: the same settings.
    given = nas.SearchSettings.from_mapping({"target_flops": "400M", "budget": 9,
                                             "proxy": {"epochs": 5, "lr": 1e-3}})
    nas.run_search(given, name="a", out=tmp_path / "b")
    assert seen[-1][0].replace(out=s.out) == s
    with pytest.raises(ConfigError, match="leave out preset= and config="):
        nas.run_search(given, preset="smoke")


def test_the_api_path_never_builds_an_argument_parser(monkeypatch, tmp_path):
    import argparse

    def refuse(*args, **kwargs):
        raise AssertionError("argparse on the API path")
    monkeypatch.setattr(argparse, "ArgumentParser", refuse)
    seen = _capture_search(monkeypatch)
    nas.run_search(target_flops="400M", preset="smoke", budget=3, out=tmp_path / "a")
    assert seen[-1][0].budget == 3
    with pytest.raises(ConfigError, match="target_flops=40 is 40 MACs"):
        nas.run_search(target_flops=40, out=tmp_path / "b")
    lines: list[str] = []
    nas.run_scale(coefficients=(1.2, 1.1, 1.15), rule="paper", out=tmp_path / "c",
                  say=lines.append)
    assert lines and (tmp_path / "c" / "config.yaml").is_file()


def test_train_settings_are_the_commands(monkeypatch, tmp_path):
    from nas.cli import train as command
    from nas.training import fit
    from nas.training.fit import FitResult
    seen = []
    monkeypatch.setattr(fit, "fit", lambda c, spec, ckpt, cmd, say=None:
                        seen.append((c, spec, cmd)) or FitResult("interrupted", None, 0))
    out = tmp_path / "t"
    result = nas.run_train("efficientnet-b0", epochs=3, lr=0.01, ema_decay=0.999,
                           max_epochs_time=60.0, augment=True, out=out)
    assert result == api.TrainResult(out=out, status="interrupted", epoch=0, metrics=None)
    assert result.test_accuracy is None and result.model is None
    argv = ["efficientnet-b0", "--epochs", "3", "--lr", "0.01", "--ema", "0.999",
            "--max-epochs-time", "60", "--augment", "--out", str(out)]
    assert command.main(argv) == 130
    (c_api, spec_api, cmd_api), (c_cli, spec_cli, _) = seen
    assert c_api == c_cli and spec_api == spec_cli
    assert c_api.epochs == 3 and c_api.ema_decay == 0.999 and c_api.augment is True
    assert cmd_api.startswith("nas.run_train('efficientnet-b0', ") and "epochs=3" in cmd_api
    assert f"out={str(out)!r}" in cmd_api


def test_scale_without_training_prints_what_the_command_prints(tmp_path, capsys):
    import scale
    lines: list[str] = []
    result = nas.run_scale(baseline="efficientnet-b0", coefficients=(1.2, 1.1, 1.15),
                           rule="paper", name="a", out=tmp_path / "a", say=lines.append)
    assert scale.main(["--baseline", "efficientnet-b0", "--coefficients", "1.2,1.1,1.15",
                       "--rule", "paper", "--name", "a", "--out", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    assert "\n".join(lines).replace(str(tmp_path / "a"), "OUT") + "\n" == \
        printed.replace(str(tmp_path / "b"), "OUT")
    assert result.coefficients == (1.2, 1.1, 1.15) and result.scaling is None
    assert result.source == "the given coefficients" and result.compare is None
    assert len(result.family) == 7 and all(p.is_file() for p in result.family)
    assert "b7" in result.family_table and result.family_csv.is_file()
    assert nas.load_spec(result.family[0]).resolution > 224


TINY_SPEC = """\
format_version: 1
name: tiny
resolution: 16
stem: 8
stem_stride: 1
head: 32
stages:
  - {op: ds, kernel: 3, stride: 1, out: 8, repeats: 1}
  - {op: mbconv, kernel: 3, stride: 2, expand: 2, out: 16, repeats: 1}
"""


def test_train_runs_for_real(tmp_path, tiny_fmnist):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    lines: list[str] = []
    result = nas.run_train(spec, dataset="fashion-mnist", data=tiny_fmnist, val_size=100,
                           batch_size=50, optimizer="adam", lr=0.01, threads=1, epochs=1,
                           out=tmp_path / "run", say=lines.append)
    assert result.status == "completed" and result.epoch == 1
    assert 0.0 <= result.test_accuracy <= 1.0 and result.model.is_file()
    assert any(line.startswith("epoch   1/1") for line in lines)


# --------------------------------------------------------------------------- load_run


def _finished_run(folder: Path) -> Path:
    """A run folder written by the run log from a driver's records."""
    from controller import make_strategy
    from nas.search.driver import ChildDriver, Target
    from nas.search.reward import RewardConfig
    from nas.search.runlog import pareto_front, save_specs, write_tables
    from search_space import SearchSpace

    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    d = ChildDriver(lambda t: (space.decode(t), {}), make_strategy("random", space.sizes()),
                    budget=4, reward=RewardConfig(target_macs=400_000_000), target=Target())
    outcomes = [{"status": "ok", "accuracy": 0.7}, {"status": "failed", "error": "boom"},
                {"status": "ok", "accuracy": 0.8}, {"status": "stopped", "accuracy": 0.5,
                                                   "error": "stopped"}]
    for i, res in enumerate(outcomes):
        assert isinstance(d.suggest(f"t{i}"), dict)
        d.complete(f"t{i}", res)
    write_tables(d.records, folder)
    best = d.best(1)[0]
    nas.save_spec(d.spec_of(best).replace(name="best"), folder / "best.yaml")
    save_specs([(r, d.spec_of(r)) for r in pareto_front(d.trained_records())], folder / "pareto",
               {})
    return folder


def test_load_run_reads_the_tables_and_specs(tmp_path):
    out = _finished_run(tmp_path / "run")
    data = nas.load_run(out)
    df = data.children
    assert list(df["child"]) == [0, 1, 2, 3] and len(data.trained) == 4
    assert list(df["status"]) == ["ok", "failed", "ok", "stopped"]
    assert math.isnan(df["accuracy"][1]) and df["accuracy"][2] == 0.8
    assert {"reward", "macs", "blocks", "tokens", "identity"} <= set(df.columns)
    assert data.best is not None and data.best.name == "best"
    assert 1 <= len(data.pareto) <= 2 and data.summary is None and data.config is None
    with pytest.raises(ConfigError, match="no search run here"):
        nas.load_run(tmp_path)


def test_dir_of_nas_lists_the_api_lazily_imported_names_too():
    listed = dir(nas)
    for name in nas.__all__:
        assert name in listed, name
        assert getattr(nas, name) is not None, name
    assert {"run_search", "RunData", "count_macs", "build_model", "__version__"} <= set(listed)
    assert listed == sorted(listed)


def test_each_function_names_its_settings_type():
    # The annotations resolve (the settings' modules are imported only for type checkers).
    import typing

    from nas.cli import api
    from nas.search import settings as ss
    from nas.training.settings import TrainSettings
    names = {**vars(api), **vars(ss), "TrainSettings": TrainSettings}
    for fn, cls in ((api.run_search, ss.SearchSettings), (api.run_scale, ss.ScaleSettings),
                    (api.run_train, TrainSettings), (api.run_fidelity, ss.FidelitySettings),
                    (api.run_pipeline, ss.PipelineSettings)):
        hints = typing.get_type_hints(fn, globalns=names)
        assert cls in typing.get_args(hints["settings"]), fn.__name__
        assert any("Mapping" in str(a) for a in typing.get_args(hints["config"]))
