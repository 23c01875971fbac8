"""Proxy training and full training give the numbers they were recorded with (CPU, one thread,
tiny data): first when the training loops were merged into one engine, last when the
classifier began at zero.

A change to the training step that alters results must change these numbers on purpose.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import write_tiny_fashion_mnist

import nas.cli.train as train
from nas.arch.builder import build_model
from nas.arch.spec import spec_from_dict
from nas.data import synthetic_splits
from nas.training import engine
from nas.training.proxy import train_proxy
from nas.training.recipe import Recipe

TINY = {
    "format_version": 1, "name": "tiny", "resolution": 16, "stem": 8, "stem_stride": 1,
    "head": 32, "dropout": 0.1, "drop_path_rate": 0.1,
    "stages": [{"op": "ds", "kernel": 3, "stride": 1, "se": 0.25, "out": 8, "repeats": 1},
               {"op": "mbconv", "kernel": 3, "stride": 2, "expand": 2, "out": 16, "repeats": 2}],
}

PROXY_CASES = {
    # a fixed training subset, augmentation, label smoothing, resizing, the default optimizer
    # (re-recorded when rmsprop became TF-style RMSProp, at 4x the lr as proxy-default)
    "subset_augment": (
        dict(epochs=3, batch_size=32, train_subset=160, augment=True, label_smoothing=0.1,
             lr=0.04, resolution=12, num_threads=1),
        dict(accuracy=0.25, val_loss=1.378233551979065, train_loss=1.3642935514450074,
             steps=15, epochs_done=3, train_images=160)),
    # SGD with a step schedule and the model's own batch-norm momentum
    "sgd_step": (
        dict(epochs=2, batch_size=32, optimizer="sgd", lr=0.05, schedule="step",
             decay_epochs=1.0, decay_rate=0.5, warmup_epochs=0.0, num_threads=1,
             bn_momentum=None),
        dict(accuracy=0.484375, val_loss=1.355385184288025, train_loss=1.2167697846889496,
             steps=16, epochs_done=2, train_images=256)),
}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("case", sorted(PROXY_CASES))
def test_proxy_run_unchanged(case):
    settings, want = PROXY_CASES[case]
    splits = synthetic_splits(n_train=256, n_val=128, num_classes=4, image_size=8)
    torch.manual_seed(3)
    model = build_model(spec_from_dict(TINY), num_classes=4, in_channels=1)
    r = train_proxy(model, splits, Recipe(**settings))
    assert r.status == "ok"
    for key, value in want.items():
        assert getattr(r, key) == pytest.approx(value, rel=1e-6, abs=1e-9), key


def test_full_training_run_unchanged(tmp_path: Path, capsys, monkeypatch):
    data = write_tiny_fashion_mnist(tmp_path / "data")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(json.dumps(TINY))
    # The recipe as it was recorded (the defaults then: exponential schedule, weight decay
    # 1e-5, no weight average, batch-norm momentum 0.1 on 6-step epochs). Its accuracy is near
    # chance (18 steps), which can end a run as diverged: that check is off here.
    monkeypatch.setattr(engine, "CHANCE_MARGIN", 0.0)
    argv = [str(spec), "--dataset", "fashion-mnist", "--data", str(data), "--val-size", "100",
            "--batch-size", "50", "--optimizer", "adam", "--lr", "0.01", "--threads", "1",
            "--out", str(tmp_path / "out"), "--epochs", "3", "--augment",
            "--train-subset", "300", "--export", "none", "--seed", "1",
            "--schedule", "exponential", "--weight-decay", "1e-5", "--ema", "0",
            "--bn-momentum", "0.1"]
    assert train.main(argv) == 0, capsys.readouterr().err
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    curve = [v for r in m["val_curve"] for v in (r["train_loss"], r["val_accuracy"], r["val_loss"])]
    want = [2.3061452309290567, 0.2, 2.3003573608398438,
            2.2872022787729898, 0.11, 2.294960479736328,
            2.254121025403341, 0.21, 2.255728912353516]
    # CPUs of other instruction sets pick other kernels (measured: curve losses 1e-4 apart, one
    # validation image of 100 flipped), so losses within 1e-3 and accuracies within two
    # images; a change to the recipe moves them much further.
    losses = [v for i, v in enumerate(curve) if i % 3 != 1]
    accs = [v for i, v in enumerate(curve) if i % 3 == 1]
    assert losses == pytest.approx([v for i, v in enumerate(want) if i % 3 != 1], rel=1e-3)
    assert accs == pytest.approx([v for i, v in enumerate(want) if i % 3 == 1], abs=0.021)
    assert m["test_accuracy"] == pytest.approx(0.23, abs=0.021)
    assert m["test_loss"] == pytest.approx(2.2616200256347656, rel=1e-2)  # measured 0.6 % apart
