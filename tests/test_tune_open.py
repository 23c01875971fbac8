"""The run config's ``tune:`` section: callbacks by import path, ASHA on per-epoch validation
accuracy, and what becomes of a child ASHA stops (status ``stopped``, never ``ok``)."""

from __future__ import annotations

import io
import math
from types import SimpleNamespace

import pytest

import nas
from nas.core.errors import ConfigError
from nas.search.driver import OK, STOPPED, ChildDriver, Target
from nas.search.reward import RewardConfig, compute_reward
from nas.search.settings import AshaSettings, TuneSettings

CSV = "ray.tune.logger.CSVLoggerCallback"


def test_no_section_is_tune_as_it_was():
    assert TuneSettings.from_config(None, 2) == TuneSettings() == \
        TuneSettings.from_config({"callbacks": [], "scheduler": None}, 2)
    assert TuneSettings().scheduler is None and TuneSettings().callbacks == ()


def test_callbacks_by_path_with_or_without_arguments():
    t = TuneSettings.from_config({"callbacks": [CSV, {CSV: None}, {CSV: {"a": 1}}]}, 2)
    assert t.callbacks == ((CSV, {}), (CSV, {}), (CSV, {"a": 1}))


@pytest.mark.parametrize("section,needle", [
    ({"callbacks": CSV}, "tune.callbacks: got"),
    ({"callbacks": ["CSVLoggerCallback"]}, "tune.callbacks[0]: got 'CSVLoggerCallback'"),
    ({"callbacks": [{CSV: 1}]}, "its arguments must be a mapping"),
    ({"callbacks": [{CSV: {}, "a.B": {}}]}, "a mapping names one callback"),
    ({"scheduler": "hyperband"}, "tune.scheduler: got 'hyperband'"),
    ({"scheduler": "asha", "asha": {"grace_period": 4}}, "tune.asha.grace_period 4"),
    ({"scheduler": "asha", "asha": {"grace_period": 0}}, "tune.asha.grace_period: got 0"),
    ({"scheduler": "asha", "asha": {"reduction_factor": 1}}, "tune.asha.reduction_factor"),
    ({"scheduler": "asha", "asha": {"brackets": 2}}, "unknown key 'tune.asha.brackets'"),
    ("asha", "tune: got 'asha'"),
])
def test_bad_sections_are_one_line_errors(section, needle):
    with pytest.raises(ConfigError) as e:
        TuneSettings.from_config(section, 4)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_asha_rungs_sit_below_the_last_epoch():
    t = TuneSettings.from_config({"scheduler": "asha", "asha": {}}, 4)
    assert t.scheduler == AshaSettings(grace_period=1, reduction_factor=2.0)
    assert t.scheduler.rungs(4) == (1, 2)
    assert AshaSettings(1, 3.0).rungs(10) == (1, 3, 9) and AshaSettings(2, 2.0).rungs(3) == (2,)


def test_the_commands_read_the_section(capsys, tmp_path):
    import search
    from nas.core.settings import load
    from nas.search.settings import ScaleSettings, SearchSettings
    s = load(SearchSettings, overrides={"target_flops": "400M", "tune": {
        "scheduler": "asha", "callbacks": [CSV]}, "proxy": {"epochs": 3}})
    assert s.trials.tune == TuneSettings(((CSV, {}),), AshaSettings())
    assert load(ScaleSettings, overrides={"grid_search": True}).trials.tune == TuneSettings()
    assert SearchSettings.from_mapping(s.to_mapping()) == s
    code = search.main(["--target-flops", "400M", "--set", "tune.scheduler=asha", "--set",
                        "proxy.epochs=1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "error: tune.asha.grace_period 1: ASHA stops a child only" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("callbacks,needle", [
    ("[nosuchpackage.Logger]", "tune.callbacks[0]: cannot import nosuchpackage"),
    ("[os.path]", "os.path is a module, not a Callback class"),
    ("[ray.tune.NoSuchCallback]", "ray.tune.NoSuchCallback is nothing"),
    ("[{ray.tune.logger.CSVLoggerCallback: {bogus: 1}}]", "fix its arguments"),
])
def test_a_callback_that_does_not_import_stops_the_search_before_it_starts(
        capsys, tmp_path, callbacks, needle):
    import search
    out = tmp_path / "run"
    code = search.main(["--target-flops", "400M", "--set", f"tune.callbacks={callbacks}",
                        "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not out.exists()


# --------------------------------------------------------------------------- a stopped child


def test_the_last_reported_epoch_becomes_a_stopped_result():
    from nas.ray.searcher import stopped_result
    last = {"epoch": 2, "epoch_val_accuracy": 0.61, "epoch_seconds": 12.5,
            "epoch_val_loss": 1.1, "epoch_train_loss": 1.3, "val_curve": [0.4, 0.61]}
    r = stopped_result(last)
    assert r["status"] == "stopped" and r["accuracy"] == 0.61 and r["epochs"] == 2
    assert r["seconds"] == 12.5 and r["val_curve"] == [0.4, 0.61]
    assert "after epoch 2" in r["error"]
    final = {"status": "ok", "accuracy": 0.7, "final": True}
    assert stopped_result(final) == final  # it finished before the stop took effect
    assert stopped_result({})["status"] == "failed"


def _driver(reward: RewardConfig, strategy: str = "random") -> ChildDriver:
    from controller import make_strategy
    from search_space import SearchSpace
    space = SearchSpace.from_yaml(nas.config_path("mnasnet-space"))
    return ChildDriver(lambda t: (space.decode(t), {}), make_strategy(strategy, space.sizes()),
                       budget=3, reward=reward, target=Target())


@pytest.mark.parametrize("on_stopped", ["partial", "failure"])
def test_a_stopped_child_is_scored_by_its_rule_and_never_the_best(on_stopped):
    cfg = RewardConfig(target_macs=400_000_000, on_stopped=on_stopped)
    d = _driver(cfg)
    for i in range(2):
        assert isinstance(d.suggest(f"t{i}"), dict)
    stopped = d.complete("t0", {"status": "stopped", "accuracy": 0.9, "error": "stopped"})[0]
    ok = d.complete("t1", {"status": "ok", "accuracy": 0.5})[0]
    assert stopped.status == STOPPED and stopped.accuracy == 0.9 and ok.status == OK
    expected = compute_reward(0.9, stopped.macs, cfg).reward if on_stopped == "partial" else 0.0
    assert stopped.reward == expected and stopped.error == "stopped"
    assert d.best(3) == [ok]  # a stopped child is never the best, whatever its reward
    m = d.metrics(stopped)
    assert (m["accuracy"] == 0.9) if on_stopped == "partial" else math.isnan(m["accuracy"])


def test_summary_and_progress_count_stopped_children_apart_from_failures():
    from nas.search.run import summarize, summary_lines
    from nas.search.runlog import Progress
    d = _driver(RewardConfig(target_macs=400_000_000))
    for i, res in enumerate([{"status": "stopped", "accuracy": 0.4},
                             {"status": "ok", "accuracy": 0.5},
                             {"status": "failed", "error": "boom"}]):
        d.suggest(f"t{i}")
        d.complete(f"t{i}", res)
    s = summarize(d, "run", 1.0)
    assert (s["children_stopped"], s["children_failed"]) == (1, 1)
    assert s["most_common_error"] == {"error": "boom", "children": 1}
    from pathlib import Path
    assert "(1 failed, 1 stopped early by the scheduler)" in summary_lines(s, Path("o"))[0]
    stream = io.StringIO()
    Progress(3, 2, stream=stream).update(3, 0.5, 1, 1, 10.0, stopped=1)
    assert "failed 1  stopped 1  elapsed" in stream.getvalue()


def test_the_searcher_records_a_trial_asha_stopped_as_stopped(tmp_path):
    from nas.ray.searcher import _searcher_class
    from nas.ray.tune_options import make_scheduler
    stopped: set[str] = set()
    scheduler = make_scheduler(TuneSettings(scheduler=AshaSettings(1, 2.0)), 4, stopped)
    trials = [SimpleNamespace(trial_id=f"t{i}") for i in range(3)]
    for t in trials:
        scheduler.on_trial_add(None, t)
    decide = scheduler.on_trial_result
    assert decide(None, trials[0], {"epoch": 1, "epoch_val_accuracy": 0.8}) == "CONTINUE"
    assert decide(None, trials[1], {"epoch": 1, "epoch_val_accuracy": 0.3}) == "STOP"
    # The final result comes with the last epoch: stopped there by max_t, but finished.
    assert decide(None, trials[0], {"epoch": 4, "epoch_val_accuracy": 0.9,
                                    "final": True}) == "STOP"
    assert stopped == {"t1"}

    d = _driver(RewardConfig(target_macs=400_000_000))
    searcher = _searcher_class()(d, tmp_path / "driver.pt", None, stopped)
    for t in trials[:2]:
        searcher.suggest(t.trial_id)
    searcher.on_trial_complete("t1", {"epoch": 1, "epoch_val_accuracy": 0.3, "val_curve": [0.3]})
    searcher.on_trial_complete("t0", {"status": "ok", "accuracy": 0.9, "final": True})
    by_trial = {r.trial: r for r in d.records}
    assert by_trial["t1"].status == "stopped" and by_trial["t1"].accuracy == 0.3
    assert by_trial["t1"].proxy["val_curve"] == [0.3]
    assert by_trial["t0"].status == "ok"
    assert (tmp_path / "driver.pt").is_file()


def test_a_run_saved_without_the_section_resumes_with_its_defaults(tmp_path):
    from nas.cli import jobs
    from nas.core.files import dump_yaml_text
    from nas.core.settings import load
    from nas.search.settings import SearchSettings
    cfg = load(SearchSettings, overrides={"target_flops": "400M", "out": str(tmp_path)})
    saved = cfg.to_mapping()
    del saved["tune"]
    saved["reward"].pop("on_stopped")
    (tmp_path / "config.yaml").write_text(dump_yaml_text(saved))
    s = jobs.saved_settings(SearchSettings, tmp_path, ("search", "oneshot"), {},
                            jobs.SEARCH_RESUMABLE, "search")
    assert s.trials.tune == TuneSettings() and s.reward.on_stopped == "partial"
