"""``augment: auto``, the default recipe's: crop and flip in runs of at least
``AUGMENT_MIN_STEPS`` optimizer steps, off in shorter ones (docs/results/short-runs.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train_settings import TINY_SPEC

from nas.cli import train
from nas.core.errors import ConfigError
from nas.data.synthetic import synthetic_splits
from nas.training.engine import Engine
from nas.training.recipe import AUGMENT_MIN_STEPS, Recipe, augment_on, load_recipe
from nas.training.settings import TrainSettings


def test_the_rule_counts_the_runs_steps():
    assert not augment_on("auto", 1, 15)
    assert not augment_on("auto", 3, 429)                 # 1,287 steps: measured, off
    assert augment_on("auto", 10, 429)                    # the default 10 epochs: on
    assert augment_on("auto", 1, AUGMENT_MIN_STEPS)
    assert not augment_on("auto", 1, AUGMENT_MIN_STEPS - 1)
    assert augment_on(True, 1, 1) and not augment_on(False, 100, 10_000)


def test_the_default_recipe_and_settings_say_auto_and_round_trip():
    assert load_recipe("train-default").augment == "auto"
    c = TrainSettings()
    assert c.augment == "auto" and c.recipe().augment == "auto"
    assert TrainSettings.from_mapping(c.to_mapping()).augment == "auto"
    assert TrainSettings.from_mapping({"augment": False}).augment is False


@pytest.mark.parametrize("bad", ["yes", "on", 1, None])
def test_other_values_are_one_line_errors(bad):
    with pytest.raises(ConfigError) as e:
        TrainSettings.from_mapping({"augment": bad})
    assert "augment" in str(e.value) and "\n" not in str(e.value)
    assert "true, false or auto" in str(e.value)
    with pytest.raises(ConfigError, match="true, false or auto"):
        Recipe.from_dict({"augment": "sometimes"})


def _engine(epochs: int, subset: int | None, augment: bool | str) -> Engine:
    splits = synthetic_splits(n_train=400, n_val=40)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, splits.num_classes))
    recipe = Recipe(epochs=epochs, batch_size=16, train_subset=subset, augment=augment,
                    resolution=8, channels_last=False)
    return Engine(model, splits.train, splits.val, recipe, torch.device("cpu"))


def test_the_engine_resolves_auto_from_its_steps():
    short = _engine(epochs=2, subset=None, augment="auto")   # 2 x 25 steps
    assert short.steps_per_epoch == 25 and short.augment is False
    assert _engine(epochs=60, subset=None, augment="auto").augment is True  # 1,500 steps
    assert _engine(epochs=2, subset=None, augment=True).augment is True


def test_the_command_maps_its_flags_and_says_what_auto_chose(capsys, tmp_path: Path):
    def settings(*argv: str) -> TrainSettings:
        return train.settings(train.build_parser().parse_args(["efficientnet-b0", *argv]))
    assert settings().augment == "auto"
    assert settings("--augment").augment is True
    assert settings("--no-augment").augment is False
    assert settings("--set", "augment=auto", "--no-augment").augment == "auto"
    assert str(AUGMENT_MIN_STEPS) in f"{train.build_parser().format_help()}".replace(",", "")




def test_a_short_run_says_auto_turned_crop_and_flip_off(capsys, tiny_fmnist, tmp_path: Path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    code = train.main([str(spec), "--data", str(tiny_fmnist), "--val-size", "100",
                       "--batch-size", "50", "--epochs", "1", "--threads", "1",
                       "--resolution", "16", "--export", "none", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0
    assert f"crop and flip off (auto: 10 steps, on from {AUGMENT_MIN_STEPS:,})" in out
