"""The search's re-check of its best children before best.yaml (nas.search.recheck)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from nas.core.errors import ConfigError
from nas.search import recheck as rc
from nas.search.driver import ChildRecord
from nas.search.recheck import Rechecked, RecheckDecision, RecheckSettings, decide


def test_settings_default_off_and_parsed():
    assert not RecheckSettings().on
    s = RecheckSettings.from_config({"top": 5, "seeds": 2})
    assert s.on and s.to_dict() == {"top": 5, "seeds": 2}
    assert RecheckSettings.from_config(None) == RecheckSettings()


@pytest.mark.parametrize("cfg, words", [
    ([3, 2], "expected a mapping"),
    ({"top": 3, "seed": 2}, "unknown key 'seed'"),
    ({"top": 0, "seeds": 2}, "recheck.top"),
    ({"top": 3, "seeds": -1}, "recheck.seeds"),
    ({"top": 3, "seeds": 1.5}, "recheck.seeds"),
])
def test_bad_settings_are_one_line_errors(cfg, words):
    with pytest.raises(ConfigError) as e:
        RecheckSettings.from_config(cfg)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_the_best_mean_wins_over_the_best_single_run():
    rows = [Rechecked(7, 300, (0.82, 0.76, 0.77)),   # the luckiest single run
            Rechecked(3, 310, (0.81, 0.80, 0.80)),
            Rechecked(9, 250, (0.80, 0.79, 0.78))]
    d = decide(rows)
    assert d.chosen == 3 and d.first == 7
    assert [r.child for r in d.table] == [3, 9, 7]
    assert d.margin == pytest.approx(rows[1].mean - rows[2].mean)
    assert not d.separated  # child 9's range reaches child 3's lowest run
    assert "replaced child 7" in d.explain() and "not separated" in d.explain()


def test_separated_ties_and_one_child():
    d = decide([Rechecked(1, 300, (0.70, 0.71)), Rechecked(2, 200, (0.80, 0.81))])
    assert d.chosen == 2 and d.separated and "kept the best single run" in d.explain()
    # Equal means: fewer MACs, then the earlier child.
    assert decide([Rechecked(4, 300, (0.8,)), Rechecked(5, 200, (0.8,))]).chosen == 5
    assert decide([Rechecked(6, 200, (0.8,)), Rechecked(5, 200, (0.8,))]).chosen == 5
    one = decide([Rechecked(0, 100, (0.5, 0.6))])
    assert one.chosen == 0 and one.margin == 0.0 and one.separated
    with pytest.raises(ValueError):
        decide([])


def test_decision_round_trips_through_json():
    d = decide([Rechecked(7, 300, (0.82, 0.76), failed=1), Rechecked(3, 310, (0.81, 0.80))])
    again = RecheckDecision.from_dict(json.loads(json.dumps(d.to_dict())))
    assert again == d and again.to_dict() == d.to_dict()


def _record(child: int, identity: str, status: str = "ok", accuracy: float = 0.5) -> dict:
    return ChildRecord(child=child, trial=f"t{child}", status=status, tokens=(child,),
                       blocks="", params=1, macs=1, accuracy=accuracy, reward=accuracy,
                       seconds=1.0, wall_seconds=1.0, identity=identity).to_dict()


def _write(folder: Path, rows: list[dict]) -> None:
    import torch
    folder.mkdir(parents=True)
    torch.save({"records": rows}, folder / "driver.pt")  # as a session's driver state holds them


def test_done_runs_reads_every_session_by_identity(tmp_path):
    folder = tmp_path / "recheck"
    _write(folder / "session0", [_record(0, "a+s1", accuracy=0.4),
                                 _record(1, "b+s1", status="failed", accuracy=math.nan)])
    _write(folder / "session1", [_record(0, "b+s1", accuracy=0.6)])
    _write(folder / "session10", [_record(0, "c+s1", accuracy=0.7)])
    (folder / "sessionx").mkdir()   # not a session folder
    found = rc.done_runs(folder)
    assert sorted(found) == ["a+s1", "b+s1", "c+s1"]
    assert found["b+s1"].status == "ok" and found["b+s1"].accuracy == 0.6  # later session wins
    assert rc.done_runs(tmp_path / "none") == {}


def test_recheck_trains_only_missing_runs_and_keeps_the_search_run_first(tmp_path, monkeypatch):
    import nas.search.driver as driver_module
    import nas.search.run as search_run

    monkeypatch.setattr(driver_module, "identity", lambda spec: spec.name)
    trained_calls: list[list[str]] = []

    def fake_train_fixed(items, folder, trials, data, seed, resume, resume_hint, table):
        assert not resume and table == "children" and seed == 11
        trained_calls.append([label for label, _, _ in items])
        rows = []
        for i, (label, spec, over) in enumerate(items):
            key = driver_module.child_key(spec, over)
            child = int(label[len("child"):label.index("/")])
            acc = {0: 0.5, 1: 0.9}[child] - 0.01 * over["seed"]
            rows.append(_record(i, key, accuracy=acc))
        _write(folder, rows)
        return {}

    monkeypatch.setattr(search_run, "train_fixed", fake_train_fixed)

    class Spec:
        def __init__(self, name):
            self.name = name

    top = [ChildRecord(child=0, trial="", status="ok", tokens=(0,), blocks="", params=1,
                       macs=100, accuracy=0.8, reward=0.8, seconds=1, wall_seconds=1),
           ChildRecord(child=1, trial="", status="ok", tokens=(1,), blocks="", params=1,
                       macs=200, accuracy=0.7, reward=0.7, seconds=1, wall_seconds=1)]
    specs = {0: Spec("net0"), 1: Spec("net1")}
    lines: list[str] = []

    def run(seeds: int) -> RecheckDecision:
        return search_run.recheck_best(top, lambda r: specs[r.child],
                                       RecheckSettings(top=2, seeds=seeds), lambda acc, macs: acc,
                                       tmp_path, None, None, 11, "hint", lines.append)

    d = run(1)
    assert trained_calls == [["child0/seed1", "child1/seed1"]]
    assert d.chosen == 1 and d.first == 0
    assert {r.child: r.rewards for r in d.table} == {0: (0.8, 0.49), 1: (0.7, 0.89)}
    # More seeds later: only the new runs train, in a new session folder.
    d = run(2)
    assert trained_calls[-1] == ["child0/seed2", "child1/seed2"]
    assert sorted(p.name for p in (tmp_path / "recheck").iterdir()) == ["session0", "session1"]
    assert {r.child: len(r.rewards) for r in d.table} == {0: 3, 1: 3}
    # Nothing missing: nothing trains.
    run(2)
    assert len(trained_calls) == 2
    assert "(0 runs to train)" in lines[-1]


def test_search_config_and_resume_accept_recheck(tmp_path):
    from nas.cli import jobs
    from nas.cli import search as command
    from nas.cli.parser import overrides
    from nas.core.files import dump_yaml_text
    from nas.core.settings import load
    from nas.search.settings import SearchSettings

    args = command.build_parser().parse_args(["--target-flops", "400M", "--set",
                                              "recheck.seeds=2"])
    s = load(SearchSettings, overrides=overrides(args, command.KEYS))
    assert s.recheck == RecheckSettings(top=3, seeds=2)
    with pytest.raises(ConfigError, match="recheck.top"):
        s.replace(recheck=RecheckSettings(top=0, seeds=1))
    # A run saved without recheck resumes with the default; resuming may switch it on.
    saved = s.to_mapping()
    saved.pop("recheck")
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text(dump_yaml_text(saved))

    def resumed(over):
        return jobs.saved_settings(SearchSettings, out, ("search", "oneshot"), over,
                                   jobs.SEARCH_RESUMABLE, "search")
    assert resumed({}).recheck.seeds == 0
    assert resumed({"recheck.seeds": 2}).recheck == RecheckSettings(top=3, seeds=2)
