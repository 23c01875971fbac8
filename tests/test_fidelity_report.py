"""The fidelity report over what has finished: from a results folder's saved driver state,
without training (``effnas fidelity RUN --report`` and a stopped run)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nas.arch.io import load_spec
from nas.data import DataSettings
from nas.core.errors import ConfigError
from nas.search.driver import OK, ChildRecord, child_key
from nas.fidelity.run import finished_networks, partial_report, plan, trained_so_far
from nas.fidelity.settings import FidelityPlan, Picked
from nas.search.settings import TrialSettings
from nas.training.recipe import Recipe

LONG = {"n0": [0.90, 0.91], "n1": [0.80, 0.82], "n2": [0.70, 0.69], "n3": [0.60, 0.61]}
PROXY = {"n0": 0.50, "n1": 0.45, "n2": 0.40, "n3": 0.30}


def settings(out: Path) -> FidelityPlan:
    proxy = Recipe(epochs=1)
    return FidelityPlan(run=out.parent, out=out, children=4, seeds=2, long=Recipe(epochs=3),
                            proxies=(("short", proxy),), proxy_seeds=1, run_seed=0,
                            trials=TrialSettings(recipe=proxy), data=DataSettings())


def picked() -> list[Picked]:
    spec = load_spec("efficientnet-b0")
    return [Picked(name, spec, PROXY[name] - 0.1, 1000, "") for name in LONG]


def save_state(out: Path, items, finished: set[str]) -> None:
    """A driver state whose records are the trainings of ``items`` named in ``finished``."""
    records = []
    for i, (label, _, _) in enumerate(items):
        if label not in finished:
            continue
        kind, *_, name, seed = label.split("/")
        acc = LONG[name][int(seed)] if kind == "long" else PROXY[name]
        records.append(ChildRecord(child=i, trial=f"t{i}", status=OK, tokens=(i,), blocks="",
                                   params=1, macs=1000, accuracy=acc, reward=acc, seconds=60.0,
                                   wall_seconds=61.0,
                                   identity=child_key(items[i][1], items[i][2])).to_dict())
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"records": records}, out / "driver.pt")


def test_plan_lists_each_network_long_seeds_then_proxies(tmp_path):
    items = plan(settings(tmp_path / "f"), picked()[:1])
    assert [label for label, _, _ in items] == ["long/n0/0", "long/n0/1", "proxy/short/n0/0"]
    assert [extra["seed"] for _, _, extra in items] == [0, 1, 0]
    assert items[0][2]["epochs"] == 3 and items[2][2]["epochs"] == 1


def test_report_covers_only_networks_whose_every_training_finished(tmp_path):
    s, nets = settings(tmp_path / "f"), picked()
    items = plan(s, nets)
    # n0..n2 complete, n3 has its long seeds but not its proxy.
    finished = {label for label, _, _ in items if not label.startswith("proxy/short/n3")}
    save_state(s.out, items, finished)
    records = trained_so_far(items, s.out)
    assert set(records) == finished
    assert [p.label for p in finished_networks(s, nets, records)] == ["n0", "n1", "n2"]

    lines: list[str] = []
    report = partial_report(s, nets, lines.append)
    assert report is not None and report["networks"] == 3
    assert report["partial"] == {"finished": 3, "planned": 4}
    short = next(p for p in report["proxies"] if p["proxy"] == "short")
    assert short["kendall"]["value"] == pytest.approx(1.0)  # same order as the long schedule
    assert report["seconds"] is None
    on_disk = json.loads((s.out / "fidelity.json").read_text())  # strict JSON, no NaN
    assert on_disk["partial"]["finished"] == 3
    assert "partial: 3 of the 4 planned networks" in (s.out / "fidelity.md").read_text()
    assert "3 of 4 networks" in lines[-1]


def test_a_complete_folder_gives_a_report_not_marked_partial(tmp_path):
    s, nets = settings(tmp_path / "f"), picked()
    items = plan(s, nets)
    save_state(s.out, items, {label for label, _, _ in items})
    report = partial_report(s, nets, lambda line: None)
    assert report is not None and report["networks"] == 4 and "partial" not in report
    assert math.isclose(report["long"]["seed_tau"], 1.0)


def test_fewer_than_three_finished_networks_write_nothing(tmp_path):
    s, nets = settings(tmp_path / "f"), picked()
    items = plan(s, nets)
    save_state(s.out, items, {label for label, _, _ in items if "/n0/" in label})
    lines: list[str] = []
    assert partial_report(s, nets, lines.append) is None
    assert "1 of 4 networks finished; a report needs 3" in lines[-1]
    assert not (s.out / "fidelity.json").exists()
    assert trained_so_far(items, tmp_path / "nothing") == {}


def test_trainings_saved_with_other_options_are_refused(tmp_path):
    s, nets = settings(tmp_path / "f"), picked()
    save_state(s.out, plan(s, nets), {label for label, _, _ in plan(s, nets)})
    other = plan(replace(s, seeds=1), nets)
    with pytest.raises(ConfigError, match="planned with other options"):
        trained_so_far(other, s.out)
