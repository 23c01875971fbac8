"""Proxy training: strict config, learning on tiny data, determinism, the outcomes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nas.core.errors import ConfigError
from nas.core.files import dump_yaml
from nas.data import DataSplits, ImageData, load_splits, synthetic_splits
from nas.training.optim import lr_at
from nas.training.proxy import ProxyResult, evaluate, train_proxy
from nas.training.recipe import OPTIMIZERS, SCHEDULES, Recipe, load_recipe

FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_cnn(in_ch: int = 1, classes: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_ch, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, classes))


@pytest.fixture(scope="module")
def splits() -> DataSplits:
    return synthetic_splits(n_train=256, n_val=128, num_classes=4, image_size=8)


FAST = Recipe(epochs=3, batch_size=32, lr=0.05, optimizer="sgd", num_threads=1)


# --------------------------------------------------------------------------- config


def test_defaults_round_trip_through_dict_and_yaml(tmp_path):
    for cfg in (Recipe(), FAST, Recipe(train_subset=100, resolution=32, amp="off",
                                                 max_seconds=5.5, num_threads=2,
                                                 bn_momentum=None, augment=True)):
        assert Recipe.from_dict(cfg.to_dict()) == cfg
        p = tmp_path / "c.yaml"
        p.write_text(dump_yaml(cfg.to_dict()))
        assert load_recipe(p) == cfg


def test_bundled_configs_load():
    default = load_recipe("proxy-default")
    smoke = load_recipe("proxy-smoke")
    assert default.width_mult == 0.25 and default.resolution == 32 and default.num_threads == 1
    assert smoke.train_subset < default.train_subset


@pytest.mark.parametrize("key, value, says", [
    ("epochs", 0, "epochs: got 0; use an integer >= 1"),
    ("epochs", 1.5, "expected an integer"),
    ("epochs", True, "expected an integer"),
    ("lr", "3e-3", "YAML reads 3e8 as a string"),
    ("lr", 0, "lr: got 0.0; use a learning rate > 0"),
    ("lr", float("nan"), "expected a finite number"),
    ("batch_size", None, "got null"),
    ("optimizer", "lamb", "use one of sgd, rmsprop, adam, adamw"),
    ("schedule", "poly", "use one of cosine"),
    ("amp", "fp8", "use one of auto"),
    ("augment", "yes", "expected true, false or auto"),
    ("momentum", 1.0, "use a momentum in"),
    ("warmup_epochs", 5, "warm-up"),
    ("label_smoothing", 1.0, "label_smoothing"),
    ("train_subset", 1, "train_subset"),
    ("resolution", 2, "resolution"),
    ("max_seconds", -1, "max_seconds"),
    ("num_threads", 0, "num_threads"),
    ("bn_momentum", 0, "bn_momentum"),
    ("width_mult", 0, "width_mult"),
])
def test_from_dict_is_strict(key, value, says):
    with pytest.raises(ConfigError, match="conf.yaml: " + key) as e:
        Recipe.from_dict({key: value}, source="conf.yaml")
    assert says in str(e.value) and "\n" not in str(e.value)


def test_unknown_key_names_key_and_file(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("epochs: 2\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"p\.yaml: unknown key 'learning_rate'; "
                                          r"did you mean 'decay_rate'\?"):
        load_recipe(p)
    p.write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_recipe(p)
    p.write_text("lr: 3e-3\n")  # YAML 1.2 reads a number (PyYAML alone: a string)
    assert load_recipe(p).lr == 0.003
    p.write_text("lr: '3e-3'\n")  # quoted: a string
    with pytest.raises(ConfigError, match="write 3.0e"):
        load_recipe(p)
    with pytest.raises(ConfigError, match="use an integer >= 2"):
        Recipe(batch_size=1)  # direct construction is validated too
    assert Recipe.from_dict({"lr": 1}).lr == 1.0 and isinstance(
        Recipe.from_dict({"lr": 1}).lr, float)


def test_lr_schedules():
    c = Recipe(epochs=2, lr=1.0, warmup_epochs=0.5, schedule="cosine")
    lrs = [lr_at(c, s, 10) for s in range(20)]
    assert lrs[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert lrs[5] == pytest.approx(1.0) and lrs[-1] < 0.02
    assert lrs[5:] == sorted(lrs[5:], reverse=True)
    step = Recipe(epochs=5, lr=1.0, schedule="step", warmup_epochs=0, decay_rate=0.5,
                       decay_epochs=2)
    assert [lr_at(step, s * 10, 10) for s in range(5)] == [1, 1, 0.5, 0.5, 0.25]
    exp = Recipe(epochs=4, lr=1.0, schedule="exponential", warmup_epochs=0,
                      decay_rate=0.5, decay_epochs=2)
    assert lr_at(exp, 10, 10) == pytest.approx(math.sqrt(0.5))
    assert lr_at(Recipe(schedule="constant", lr=0.3, warmup_epochs=0), 7, 10) == 0.3


# --------------------------------------------------------------------------- training


def test_learns_above_chance_and_is_deterministic(splits):
    r1 = train_proxy(tiny_cnn(), splits, FAST)
    assert isinstance(r1, ProxyResult) and r1.status == "ok" and r1.epochs_done == 3
    assert r1.accuracy > 0.6  # chance is 0.25
    assert r1.train_images == 256 and r1.steps == 24
    assert r1.images_per_second > 0 and 0 < r1.train_seconds <= r1.seconds
    r2 = train_proxy(tiny_cnn(), (splits.train, splits.val), FAST)
    assert (r2.accuracy, r2.val_loss, r2.train_loss) == (r1.accuracy, r1.val_loss, r1.train_loss)
    r3 = train_proxy(tiny_cnn(), splits, FAST.replace(seed=1))
    assert r3.train_loss != r1.train_loss
    d = r1.to_dict()
    assert d["status"] == "ok" and set(d) >= {"accuracy", "val_loss", "train_loss", "epochs_done",
                                              "seconds", "train_seconds", "images_per_second"}


def test_evaluate_matches_result_and_leaves_state_alone(splits):
    model = tiny_cnn()
    bn = model[1]
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    torch.set_num_threads(1)
    r = train_proxy(model, splits, FAST.replace(num_threads=2, bn_momentum=0.2))
    assert torch.equal(torch.rand(3), expected_next)  # the caller's RNG is untouched
    assert torch.get_num_threads() == 1 and bn.momentum == 0.1  # restored
    acc, loss = evaluate(model, splits.val, FAST, stats=splits.train.channel_stats())
    assert acc == pytest.approx(r.accuracy) and loss == pytest.approx(r.val_loss, rel=1e-5)


def test_never_writes_into_the_data(splits):
    images = splits.train.images.copy()  # writable copy: a write would go unnoticed otherwise
    train = ImageData(images, splits.train.labels.copy(), 4, "w:train")
    before = images.copy()
    train_proxy(tiny_cnn(), (train, splits.val),
                FAST.replace(epochs=1, augment=True, resolution=10))
    np.testing.assert_array_equal(images, before)
    assert not splits.train.images.flags.writeable  # and read-only input works


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_optimizer_and_schedule_runs(splits, optimizer, schedule):
    lr = 0.05 if optimizer == "sgd" else 0.01
    cfg = FAST.replace(epochs=1, optimizer=optimizer, schedule=schedule, lr=lr,
                       warmup_epochs=0.25, label_smoothing=0.1, train_subset=128)
    r = train_proxy(tiny_cnn(), splits, cfg)
    assert r.status == "ok" and r.train_images == 128 and math.isfinite(r.val_loss)


@pytest.mark.parametrize("channels_last", [False, True])
def test_augment_resolution_rgb(channels_last):
    s = synthetic_splits(n_train=64, n_val=32, num_classes=3, image_size=8, channels=3)
    cfg = FAST.replace(epochs=1, augment=True, resolution=12, channels_last=channels_last,
                       batch_size=16, amp="off")
    r = train_proxy(tiny_cnn(in_ch=3, classes=3), s, cfg)
    assert r.status == "ok" and 0.0 <= r.accuracy <= 1.0


class NaNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * float("nan")


def test_divergence_is_an_outcome_not_an_exception(splits):
    r = train_proxy(NaNNet(), splits, FAST)
    assert r.status == "diverged" and r.accuracy == 0.0 and math.isnan(r.val_loss)
    assert r.epochs_done == 0 and "non-finite" in r.reason and r.steps <= 10
    # An exploding learning rate on a net without batch norm ends the same way.
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    r = train_proxy(linear, splits, FAST.replace(lr=1e12, optimizer="sgd", schedule="constant"))
    assert r.status == "diverged" and r.accuracy == 0.0


def test_on_epoch_reports_and_can_stop(splits):
    seen = []

    def report(epoch, metrics):
        seen.append((epoch, metrics))
        return epoch == 2

    r = train_proxy(tiny_cnn(), splits, FAST.replace(epochs=4), on_epoch=report)
    assert [e for e, _ in seen] == [1, 2]
    assert r.epochs_done == 2 and r.stopped_early and r.status == "ok"
    assert set(seen[0][1]) >= {"train_loss", "val_accuracy", "val_loss", "lr", "seconds"}
    assert seen[1][1]["val_accuracy"] == r.accuracy


def test_time_cap_gives_timeout(splits):
    r = train_proxy(tiny_cnn(), splits, FAST.replace(epochs=50, max_seconds=1e-6))
    assert r.status == "timeout" and r.epochs_done == 0 and r.steps == 1
    assert 0.0 <= r.accuracy <= 1.0 and "time cap" in r.reason


def test_bad_inputs(splits):
    with pytest.raises(ConfigError, match="fp16 autocast needs a CUDA device"):
        train_proxy(tiny_cnn(), splits, FAST.replace(amp="fp16"))
    with pytest.raises(TypeError, match="DataSplits"):
        train_proxy(tiny_cnn(), splits.train, FAST)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            train_proxy(tiny_cnn(), splits, FAST, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_closely(splits):
    cpu = train_proxy(tiny_cnn(), splits, FAST.replace(amp="off"))
    gpu = train_proxy(tiny_cnn(), splits, FAST.replace(amp="off"), device="cuda")
    assert gpu.status == "ok" and abs(gpu.accuracy - cpu.accuracy) < 0.1
    amp = train_proxy(tiny_cnn(), splits, FAST.replace(augment=True), device="cuda")
    assert amp.status == "ok" and amp.accuracy > 0.5


# --------------------------------------------------------------------------- the real data set


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed")
def test_real_fashion_mnist_one_epoch():
    s = load_splits("fashion-mnist", val_size=2000)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
    cfg = Recipe(epochs=1, train_subset=6000, batch_size=64, optimizer="sgd", lr=0.05,
                      num_threads=1)
    r = train_proxy(model, s, cfg)
    assert r.status == "ok" and r.accuracy > 0.7, r  # chance is 0.1
    test_acc, _ = evaluate(model, s.test, cfg, stats=s.train.channel_stats())
    assert test_acc > 0.7


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed")
def test_smoke_config_trains_a_scaled_b0():
    import nas

    cfg = load_recipe("proxy-smoke")
    s = load_splits("fashion-mnist", val_size=2000)
    spec = nas.scale_spec(nas.load_spec("efficientnet-b0"), width=cfg.width_mult)
    torch.manual_seed(0)
    model = nas.build_model(spec, num_classes=10, in_channels=1)
    r = train_proxy(model, s, cfg)
    assert r.status == "ok" and r.accuracy > 0.2 and r.seconds < 60, r
