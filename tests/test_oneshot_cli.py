"""search.py --evaluator: bad settings are refused in one line before Ray starts or anything
is written; the layered config reads the one-shot section; the absolute reward form."""

from __future__ import annotations

import pytest

import search
from nas.core.errors import ConfigError
from nas.search.reward import RewardConfig, compute_reward


def run_main(capsys, *argv: str) -> tuple[int, str]:
    code = search.main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv,needle", [
    (["--evaluator", "bogus"], "--evaluator 'bogus'"),
    (["--evaluator", "oneshot", "--set", "oneshot.bogus=1"], "unknown key 'oneshot.bogus'"),
    (["--evaluator", "oneshot", "--set", "oneshot.supernet.epochs=0"], "epochs"),
    (["--evaluator", "oneshot", "--set", "oneshot.supernet.epoch=3"], "epoch"),
    (["--evaluator", "oneshot", "--set", "oneshot.bn=magic"], "oneshot.bn"),
    (["--evaluator", "oneshot", "--set", "oneshot.warmup=2"], "oneshot.warmup"),
    (["--evaluator", "oneshot", "--set", "oneshot.handoff=topk"], "oneshot.handoff"),
    (["--evaluator", "oneshot", "--time-budget", "30m"], "set oneshot.handoff=search"),
    (["--evaluator", "oneshot", "--set", "recheck.seeds=2"], "does not re-check them"),
    (["--set", "recheck.seeds=-1"], "recheck.seeds"),
    (["--set", "recheck.tops=2"], "unknown key 'recheck.tops'"),
    (["--evaluator", "oneshot", "--gpus-per-worker", "-1"], "--gpus-per-worker: got -1.0"),
    (["--evaluator", "oneshot", "--workers", "3"], "does not split over 3 workers"),
    (["--set", "reward.form=absolute", "--set", "reward.beta=0.1"], "reward.beta"),
])
def test_bad_settings_are_one_line_and_exit_2(capsys, tmp_path, argv, needle):
    out = tmp_path / "run"
    code, err = run_main(capsys, "--target-flops", "400M", "--out", str(out), *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert not out.exists()


def test_a_space_the_supernet_cannot_hold_is_refused_before_ray(capsys, tmp_path, tiny_fmnist):
    import sys
    out = tmp_path / "run"
    code, err = run_main(capsys, "--target-flops", "400M", "--evaluator", "oneshot", "--data",
                         str(tiny_fmnist), "--set", "data.val_size=100", "--out", str(out),
                         "--set", "oneshot.max_params=100000")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "shared parameters, over oneshot.max_params" in err
    assert not out.exists()
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_the_oneshot_section_merges_presets_and_flags():
    from nas.core.settings import load
    from nas.search.settings import SearchSettings
    from nas.supernet.settings import SupernetSettings
    s = load(SearchSettings, preset="smoke", overrides={"oneshot": {"supernet": {"lr": 0.01}}}).oneshot
    assert s.supernet.lr == 0.01 and s.supernet.epochs == 2  # smoke, then the override
    assert s.supernet.optimizer == "rmsprop"  # the default's, kept under the preset
    assert s.bn == "batch"
    assert SupernetSettings.from_mapping(s.to_mapping()) == s
    with pytest.raises(ConfigError):
        load(SearchSettings, overrides={"oneshot": "no-such-config"})


def test_the_settings_defaults_are_the_bundled_configs():
    # A Python caller who builds SupernetSettings by hand gets what search.py reads.
    import dataclasses

    import yaml

    from nas.core.files import config_path
    from nas.supernet.settings import SupernetSettings
    bundled = yaml.safe_load(config_path("oneshot-default").read_text())
    fields = [f for f in dataclasses.fields(SupernetSettings)
              if f.default is not dataclasses.MISSING]
    assert {f.name for f in fields} == set(bundled) - {"supernet"}
    for f in fields:
        assert f.default == bundled[f.name], f.name
    assert SupernetSettings() == SupernetSettings.from_mapping(bundled)


def test_absolute_reward_form():
    cfg = RewardConfig(target_macs=400_000_000, form="absolute", beta=-0.1)
    assert compute_reward(0.9, 400_000_000, cfg).reward == pytest.approx(0.9)
    assert compute_reward(0.9, 800_000_000, cfg).reward == pytest.approx(0.8)
    assert compute_reward(0.9, 200_000_000, cfg).reward == pytest.approx(0.85)
    with pytest.raises(ConfigError):
        RewardConfig(form="absolute", beta=0.0)
