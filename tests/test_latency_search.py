"""A search at a latency target (``--target-latency 15ms``): the reward on latency, the
settings, bad inputs (one line, before anything is written), the table a search predicts
from (built into a temp cache, copied into the run folder), the outputs in latency; and, marked
slow, one smoke search end to end on the tiny space, then resumed from its own table."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import trained
from test_latency import FEW, TINY_SPACE

import nas
import search
from nas.core.errors import ConfigError
from nas.latency import device
from nas.latency.table import LatencyTable
from nas.search import latency_target
from nas.search.driver import OK, REFERENCE, ChildDriver, ChildRecord, Target
from nas.search.reward import RewardConfig, compute_reward
from nas.search.settings import PipelineSettings, SearchSettings
from search_space import SearchSpace

ROOT = Path(__file__).resolve().parent.parent
AT16 = Target(resolution=16)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's latency cache."""
    monkeypatch.setenv(device.CACHE_ENV, str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory) -> Path:
    """This machine's table for the tiny space at 16 px, few runs, as a file."""
    cache = tmp_path_factory.mktemp("latency-cache")
    table = latency_target.device_table(SearchSpace.from_dict(TINY_SPACE), None, AT16, 1,
                                        lambda line: None, timing=FEW, fit_networks=6,
                                        cache=cache)
    return table.save(tmp_path_factory.mktemp("table") / "tiny-table.json")


# --------------------------------------------------------------------------- the reward


def test_the_soft_reward_on_latency_is_mnasnets():
    cfg = RewardConfig(target_ms=15.0)
    r = compute_reward(0.8, 1_000, cfg, latency_ms=30.0)
    assert r.reward == pytest.approx(0.8 * 2.0 ** -0.07)
    assert r.cost_ratio == pytest.approx(2.0) and r.latency_ms == 30.0 and r.macs == 1_000
    assert compute_reward(0.8, 1_000, cfg, 7.5).reward == pytest.approx(0.8 * 0.5 ** -0.07)
    # The MACs play no part: only the latency does.
    assert compute_reward(0.8, 10 ** 12, cfg, 30.0).reward == pytest.approx(r.reward)
    assert cfg.metric == "latency" and RewardConfig().metric == "macs"


def test_the_hard_and_absolute_forms_on_latency():
    hard = RewardConfig(target_ms=10.0, form="hard")
    assert compute_reward(0.9, 1, hard, 9.0).reward == pytest.approx(0.9)
    assert compute_reward(0.9, 1, hard, 10.0).reward == pytest.approx(0.9)
    assert compute_reward(0.9, 1, hard, 20.0).reward == pytest.approx(0.45)
    absolute = RewardConfig(target_ms=10.0, form="absolute", beta=-0.1)
    assert compute_reward(0.9, 1, absolute, 15.0).reward == pytest.approx(0.9 - 0.05)
    assert compute_reward(0.9, 1, absolute, 5.0).reward == pytest.approx(0.9 - 0.05)


def test_a_macs_cap_beside_a_latency_target_is_the_hard_penalty_over_it():
    cfg = RewardConfig(target_macs=400, target_ms=10.0, macs_cap=True)
    under = compute_reward(0.8, 400, cfg, 10.0)
    assert under.reward == pytest.approx(0.8) and under.cap_adjustment == 1.0
    over = compute_reward(0.8, 800, cfg, 10.0)
    assert over.reward == pytest.approx(0.4) and over.cap_adjustment == pytest.approx(0.5)
    soft = compute_reward(0.8, 800, cfg, 20.0)
    assert soft.reward == pytest.approx(0.8 * 0.5 * 2.0 ** -0.07)


def test_the_macs_reward_is_unchanged():
    cfg = RewardConfig(target_macs=400_000_000)
    r = compute_reward(0.9, 800_000_000, cfg)
    assert r.reward == pytest.approx(0.9 * 2 ** -0.07) and r.latency_ms is None
    assert compute_reward(0.9, 800_000_000, cfg, latency_ms=1.0).reward == r.reward


@pytest.mark.parametrize("kwargs,match", [
    ({"target_ms": 0.0}, "reward.target_ms"), ({"target_ms": -1.0}, "reward.target_ms"),
    ({"target_ms": math.nan}, "reward.target_ms"), ({"target_ms": "15ms"}, "reward.target_ms"),
    ({"macs_cap": True}, "reward.macs_cap")])
def test_bad_reward_settings_are_one_line(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        RewardConfig(**kwargs)


def test_a_latency_reward_needs_the_latency():
    with pytest.raises(ValueError, match="latency_ms"):
        compute_reward(0.5, 1, RewardConfig(target_ms=15.0))


# --------------------------------------------------------------------------- settings


def test_settings_round_trip_with_a_latency_target():
    s = SearchSettings.from_mapping({"target_latency": "15ms", "latency_threads": 1})
    assert s.target_ms == 15.0 and s.reward.target_ms == 15.0 and not s.reward.macs_cap
    m = s.to_mapping()
    assert m["target_latency"] == "15ms" and m["target_flops"] is None
    assert "target_ms" not in m["reward"] and "macs_cap" not in m["reward"]  # derived
    assert SearchSettings.from_mapping(yaml.safe_load(yaml.safe_dump(m))) == s
    assert s.resolved().name.startswith("ppo-15ms-") and s.target_text() == "15ms latency"
    both = SearchSettings.from_mapping({"target_latency": "800us", "target_flops": "400M"})
    assert both.reward.macs_cap and both.reward.target_macs == 400_000_000
    assert both.target_ms == pytest.approx(0.8)
    assert both.target_text() == "800us latency, at most 400.0M MACs"
    assert SearchSettings.from_mapping(both.to_mapping()) == both
    # Back to a MACs target: nothing of the latency target stays in the reward.
    macs = both.replace(target_latency=None)
    assert macs.reward.target_ms is None and not macs.reward.macs_cap


def test_a_config_written_before_latency_targets_still_loads():
    old = SearchSettings.from_mapping({"target_flops": "400M"}).to_mapping()
    for key in ("target_latency", "latency_table", "latency_threads"):
        del old[key]
    s = SearchSettings.from_mapping(old)
    assert s.target_ms is None and s.reward.metric == "macs" and s.target_macs == 400_000_000


@pytest.mark.parametrize("value,words", [
    (0, "positive"), ("0", "positive"), ("-5ms", "positive"), ("15", "needs its unit"),
    ("fast", "expected a latency"), (15, "needs its unit"), ("", "expected")])
def test_bad_latency_targets_name_the_key(value, words):
    with pytest.raises(ConfigError) as e:
        SearchSettings.from_mapping({"target_latency": value})
    msg = str(e.value)
    assert msg.startswith("target_latency=") and words in msg and "\n" not in msg


def test_an_implausible_target_is_refused_unless_forced():
    s = SearchSettings.from_mapping({"target_latency": "15s"})
    with pytest.raises(ConfigError, match=r"target_latency=15s is over 10s .*15ms, not 15s"):
        s.check()
    s.check(force=True)
    with pytest.raises(ConfigError, match="under 10us"):
        SearchSettings.from_mapping({"target_latency": "5us"}).check()


@pytest.mark.parametrize("mapping,match", [
    ({"target_latency": "15ms", "evaluator": "oneshot"}, "evaluator=oneshot"),
    ({"target_latency": "15ms", "strategy": "nsga2"}, "strategy=nsga2"),
    ({"target_flops": "400M", "latency_table": "t.json"}, "latency_table='t.json' without"),
    ({"target_latency": "15ms", "latency_threads": 0}, "latency_threads"),
])
def test_what_a_latency_search_cannot_do_is_one_line(mapping, match):
    with pytest.raises(ConfigError, match=match):
        SearchSettings.from_mapping(mapping)


def test_the_pipeline_refuses_a_latency_search():
    with pytest.raises(ConfigError, match=r"search\.target_latency=15ms: the pipeline"):
        PipelineSettings.from_mapping({"target_flops": "400M",
                                       "search": {"target_latency": "15ms"}})


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("value,words", [
    ("0", "positive"), ("-5ms", "positive"), ("15", "needs its unit"),
    ("fast", "expected a latency"), ("15s", "is over 10s")])
def test_the_api_refuses_bad_targets_before_anything_is_written(tmp_path, value, words):
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as e:
        nas.run_search(target_latency=value, out=str(out), preset="smoke")
    assert str(e.value).startswith("target_latency=") and words in str(e.value)
    assert not out.exists()


@pytest.mark.parametrize("value,words", [
    ("0", "positive"), ("-5ms", "positive"), ("15", "write 15ms or 15s"),
    ("fast", "expected a latency"), ("15s", "pass --force")])
def test_the_command_refuses_bad_targets_on_one_line(capsys, tmp_path, value, words):
    out = tmp_path / "run"
    code = search.main([f"--target-latency={value}", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: --target-latency ") and words in err[0], err
    assert not out.exists()


def test_a_missing_table_file_is_one_line_before_the_run_folder(capsys, tmp_path, tiny_fmnist):
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    out = tmp_path / "run"
    code = search.main(["--target-latency", "1ms", "--space", str(space), "--latency-table",
                        str(tmp_path / "none.json"), "--data", str(tiny_fmnist), "--out",
                        str(out), "--set", "target.resolution=16", "--set", "reference=null",
                        "--set", "proxy.resolution=16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--latency-table" in err[0] and "no such file" in err[0]
    assert not out.exists() or not any(out.iterdir())


def test_a_table_without_the_spaces_parts_names_the_build(tiny_table, tmp_path):
    space = SearchSpace.from_dict(TINY_SPACE)
    with pytest.raises(ConfigError, match=r"build_table\(space, resolution=24\)"):
        latency_target.given_table(str(tiny_table), space, None, Target(resolution=24))
    b0 = nas.load_spec("efficientnet-b0")
    with pytest.raises(ConfigError, match="set reference=null"):
        latency_target.given_table(str(tiny_table), space, b0, AT16)


# --------------------------------------------------------------------------- the table


def test_the_device_table_is_built_once_copied_and_read_back(tmp_path):
    space = SearchSpace.from_dict(TINY_SPACE)
    said: list[str] = []
    table = latency_target.device_table(space, None, AT16, 1, said.append, timing=FEW,
                                        fit_networks=6, cache=tmp_path / "c")
    assert any("measuring 9 of the 9 parts" in line for line in said), said
    assert any("correction fitted on 6 networks" in line for line in said), said
    again: list[str] = []
    latency_target.device_table(space, None, AT16, 1, again.append, timing=FEW,
                                fit_networks=6, cache=tmp_path / "c")
    assert len(again) == 1 and "measuring" not in again[0]  # from the cache
    path = latency_target.save_copy(table, space, None, AT16, tmp_path / "run")
    assert path == tmp_path / "run" / latency_target.TABLE_FILE
    copy = latency_target.run_table(tmp_path / "run", space, None, AT16)
    assert copy.corrections == table.corrections and copy.fingerprint == table.fingerprint
    spec = space.sample(np.random.default_rng(0))
    assert latency_target.latency_of(copy, AT16)(spec) == pytest.approx(
        nas.predict_latency(spec, table, resolution=16).ms)
    assert "corrected (fitted on 6 networks)" in latency_target.table_line(copy)
    copy.corrections.clear()
    assert "the plain sum of the parts" in latency_target.table_line(copy)
    with pytest.raises(ConfigError, match="resume=True: .* is missing"):
        latency_target.run_table(tmp_path / "elsewhere", space, None, AT16)


def test_a_stopped_table_build_keeps_its_parts_and_says_how_to_go_on(tmp_path, monkeypatch):
    from nas.latency import measure
    real, calls = measure.measure_part, []

    def stop_at_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(measure, "measure_part", stop_at_the_third)
    said: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        latency_target.device_table(SearchSpace.from_dict(TINY_SPACE), None, AT16, 1,
                                    said.append, timing=FEW, fit_networks=0,
                                    cache=tmp_path / "c")
    assert "the same search started again continues the build" in said[-1]
    assert len(LatencyTable.for_device(cache=tmp_path / "c")) == 2


def test_more_threads_than_cpus_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="latency_threads: got 10000; this machine lets"):
        latency_target.device_table(SearchSpace.from_dict(TINY_SPACE), None, AT16, 10_000,
                                    print, cache=tmp_path)


# --------------------------------------------------------------------------- the driver


class Once:
    """A strategy proposing the tiny space's networks in order."""

    METRICS = ()

    def __init__(self):
        self.n, self.told = 0, []

    def ask(self):
        from controller import Proposal
        self.n += 1
        tokens = [0] * 13  # the tiny space's decisions; op of each block varied
        tokens[1], tokens[7] = self.n % 2, (self.n // 2) % 2
        return Proposal(tuple(tokens))

    def tell(self, proposal, reward, *rest):
        self.told.append(reward)

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, d):
        self.n = d["n"]


def test_the_driver_scores_and_records_the_predicted_latency(tiny_table):
    space = SearchSpace.from_dict(TINY_SPACE)
    table = LatencyTable.load(tiny_table)
    cfg = RewardConfig(target_ms=0.5)
    with pytest.raises(ValueError, match="latency="):
        ChildDriver(lambda t: (space.decode(t), {}), Once(), 2, cfg, AT16)
    latency = latency_target.latency_of(table, AT16)
    d = ChildDriver(lambda t: (space.decode(t), {}), Once(), 2, cfg, AT16, latency=latency)
    job = d.suggest("t0")
    assert isinstance(job, dict)
    [rec] = d.complete("t0", {"status": "ok", "accuracy": 0.6})
    spec = space.decode(rec.tokens)
    assert rec.latency_ms == pytest.approx(latency(spec))
    assert rec.reward == pytest.approx(compute_reward(0.6, rec.macs, cfg, rec.latency_ms).reward)
    assert d.known_reward(rec.tokens) == pytest.approx(
        compute_reward(1.0, rec.macs, cfg, rec.latency_ms).reward)
    assert d.reward_of(0.3, rec) == pytest.approx(
        compute_reward(0.3, rec.macs, cfg, rec.latency_ms).reward)
    assert ChildRecord.from_dict(rec.to_dict()) == rec
    # A MACs search's record is written as it was (no latency key).
    plain = ChildRecord(0, "", OK, (0,), "", 1, 1, 0.5, 0.5, 0.0, 0.0)
    assert "latency_ms" not in plain.to_dict()


def test_the_tables_front_and_plot_are_in_latency(tmp_path):
    from nas.search.runlog import pareto_front, plot_front, record_metrics, write_tables

    def rec(child, acc, macs, ms):
        return ChildRecord(child, "", OK, (child,), "b", 10, macs, acc, acc, 1.0, 1.0,
                           latency_ms=ms)
    rows = [rec(0, 0.5, 100, 3.0), rec(1, 0.6, 300, 2.0), rec(2, 0.7, 200, 4.0)]
    # By MACs child 1 is beaten by child 2 (fewer MACs, more accurate); by latency it is not.
    assert [r.child for r in pareto_front(rows)] == [0, 2]
    assert [r.child for r in pareto_front(rows, "latency")] == [1, 2]
    write_tables(rows, tmp_path)
    header = (tmp_path / "children.csv").read_text().splitlines()[0].split(",")
    assert header[header.index("macs") + 1] == "latency_ms"
    assert json.loads((tmp_path / "children.jsonl").read_text().splitlines()[1])[
        "latency_ms"] == 2.0
    assert record_metrics(rows[0])["latency_ms"] == 3.0
    plain = [ChildRecord(0, "", OK, (0,), "b", 10, 100, 0.5, 0.5, 1.0, 1.0)]
    write_tables(plain, tmp_path, "macs")
    assert "latency_ms" not in (tmp_path / "macs.csv").read_text()
    ref = ChildRecord(-1, "", REFERENCE, (), "b", 10, 150, 0.55, 0.5, 1.0, 1.0, latency_ms=2.5)
    fig = plot_front(rows, ref, 3.0, "t", metric="latency")
    assert fig.axes[0].get_xlabel().startswith("predicted latency")
    assert fig.axes[0].collections[0].get_offsets()[:, 0].tolist() == [3.0, 2.0, 4.0]


def test_the_summary_says_the_latency():
    from nas.search.run import summary_lines
    best = {"child": 1, "reward": 0.5, "accuracy": 0.6, "macs": 10 ** 8, "latency_ms": 12.5,
            "params": 10 ** 6, "blocks": "b"}
    s = {"children_trained": 2, "children_failed": 0, "session_seconds": 3.0, "best": best,
         "reference": None}
    assert "100.0M MACs, 12.5ms predicted" in "\n".join(summary_lines(s, Path("o")))


# --------------------------------------------------------------------------- end to end

SMOKE = ["--preset", "smoke", "--set", "proxy.train_subset=256", "--set", "proxy.resolution=16",
         "--set", "data.val_size=100", "--set", "target.resolution=16", "--set",
         "reference=null", "--set", "strategy_options={batch_size: 2}"]


@pytest.mark.slow
def test_a_smoke_search_at_a_latency_target_and_its_resume(tiny_fmnist, tiny_table, tmp_path):
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    out = tmp_path / "run"
    cache = tmp_path / "no-cache"
    env = {**__import__("os").environ, device.CACHE_ENV: str(cache)}
    proc = subprocess.run([sys.executable, str(ROOT / "search.py"), "--target-latency", "0.5ms",
                           "--space", str(space), "--latency-table", str(tiny_table),
                           "--data", str(tiny_fmnist), "--out", str(out), "--budget", "2",
                           *SMOKE], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "target 500us latency" in proc.stdout and "predicted" in proc.stdout
    rows = trained(out)
    assert len(rows) == 2 and all(r["status"] == "ok" and r["latency_ms"] > 0 for r in rows)
    cfg = RewardConfig(target_ms=0.5, w=-0.07)
    for r in rows:
        assert r["reward"] == pytest.approx(
            compute_reward(r["accuracy"], r["macs"], cfg, r["latency_ms"]).reward, rel=1e-6)
    assert "latency_ms" in (out / "children.csv").read_text().splitlines()[0]
    assert (out / latency_target.TABLE_FILE).is_file()
    assert (out / "accuracy_vs_latency.png").is_file()
    best = nas.load_spec(out / "best.yaml")
    assert best.meta["metrics"]["latency_ms"] > 0
    assert best.meta["search"]["reward"]["target_ms"] == 0.5
    assert "latency_table" in best.meta["search"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["latency_ms"] > 0
    # A resume predicts from the run folder's copy: the table file may be gone, nothing is
    # measured (no cache appears).
    tiny_table.rename(tiny_table.with_suffix(".moved"))
    try:
        res = subprocess.run([sys.executable, str(ROOT / "search.py"), "--resume", "--out",
                              str(out), "--budget", "3"], capture_output=True, text=True,
                             timeout=600, env=env)
    finally:
        tiny_table.with_suffix(".moved").rename(tiny_table)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(trained(out)) == 3 and all(r["latency_ms"] > 0 for r in trained(out))
    assert not cache.exists()
