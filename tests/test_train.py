"""nas.train: full training of a spec, every output file, exact resume, early stopping with the
best weights kept, export, and one-line errors for bad input.

Runs are tiny (a 2-stage spec, a few hundred 28x28 images in the real IDX format, a few
epochs, one thread) and go through ``nas.cli.train.main`` in-process, so no run pays for a fresh
``import torch``.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nas.cli.train as train
from nas.arch.builder import build_model
from nas.arch.cost import count_macs, count_params
from nas.arch.io import load_spec
from nas.arch.rounding import scale_spec
from nas.cli.parser import seconds
from nas.training import engine, fit

# torch.jit is deprecated in favour of torch.export, but TorchScript is the format asked for.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")

ROOT = Path(__file__).resolve().parent.parent
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

TINY_SPEC = """\
format_version: 1
name: tiny
resolution: 16
stem: 8
stem_stride: 1
head: 32
dropout: 0.1
drop_path_rate: 0.1
stages:
  - {op: ds, kernel: 3, stride: 1, se: 0.25, out: 8, repeats: 1}
  - {op: mbconv, kernel: 3, stride: 2, expand: 2, out: 16, repeats: 2}
"""


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return path


def args(spec: Path, data: Path, out: Path, *extra: str) -> list[str]:
    """A fast, learnable setting: 500 train / 100 val images, batches of 50, Adam at a constant
    rate after the warm-up, no augmentation or weight average (the default recipe's
    cosine, crop/flip and average learn too slowly for 30 steps of tiny data)."""
    return [str(spec), "--dataset", "fashion-mnist", "--data", str(data), "--val-size", "100",
            "--batch-size", "50", "--optimizer", "adam", "--lr", "0.01", "--threads", "1",
            "--schedule", "exponential", "--no-augment", "--ema", "0",
            "--out", str(out), *extra]


def run_ok(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = train.main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def metrics_of(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def model_from(state: dict, spec_dict: dict) -> torch.nn.Module:
    from nas.arch.spec import spec_from_dict
    model = build_model(spec_from_dict(spec_dict), num_classes=10, in_channels=1)
    model.load_state_dict(state)
    return model.eval()


# --------------------------------------------------------------------------- a whole run


def test_trains_and_writes_every_file(capsys, tiny_spec, tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    stdout = run_ok(capsys, args(tiny_spec, tiny_fmnist, out, "--epochs", "3",
                                 "--width-mult", "1.5"))
    for name in ("last.pt", "best.pt", "metrics.json", "train.csv", "model.pt"):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert stdout.count("epoch ") >= 3 and "test accuracy" in stdout

    m = metrics_of(out)
    assert m["status"] == "completed" and m["epochs_run"] == 3
    assert 0.0 <= m["test_accuracy"] <= 1.0
    assert m["test_accuracy"] > 0.2  # ten classes: chance is 0.1 (0.2 of 100 images: p < 0.001)
    assert m["test_images"] == 100
    # Validation is held out of the 600 training images; the test split is separate.
    assert (m["data"]["train"], m["data"]["val"], m["data"]["test"]) == (500, 100, 100)
    curve = [r["val_accuracy"] for r in m["val_curve"]]
    assert len(curve) == 3 and m["best_val_accuracy"] == max(curve)
    assert m["best_epoch"] == curve.index(max(curve)) + 1

    # Default resolution: the data's native 28 px, not the spec's 16; costs from nas.arch.cost.
    spec = scale_spec(load_spec(tiny_spec), width=1.5)
    assert m["config"]["resolution"] == 28
    assert m["macs"]["at_trained_resolution"] == count_macs(spec, 28, 10, 1)
    assert m["macs"]["at_spec_resolution"] == count_macs(spec, 16, 10, 1)
    assert m["macs"]["at_trained_resolution"] > m["macs"]["at_spec_resolution"]
    assert m["params"] == count_params(spec, 10, 1)
    assert m["seconds"] > 0 and m["images_per_second"] > 0
    assert "nas.cli.effnas train" in m["command"]

    rows = list(csv.DictReader((out / "train.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["val_accuracy"]) for r in rows] == pytest.approx(curve, abs=1e-6)

    best = ckpt(out / "best.pt")
    assert best["epoch"] == m["best_epoch"]
    model = model_from(best["model"], best["spec"])
    assert sum(p.numel() for p in model.parameters()) == m["params"]

    # The export loads, carries its preprocessing, and gives the trained model's logits.
    extra = {"preprocess.json": ""}
    scripted = torch.jit.load(str(out / "model.pt"), _extra_files=extra)
    assert json.loads(extra["preprocess.json"])["resolution"] == 28
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(scripted(x), model(x), atol=1e-5)
    assert m["export"]["format"] == "torchscript" and m["export"]["max_abs_diff"] < 1e-4

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "val/accuracy", "test/accuracy"} <= set(tags)
    assert [e.step for e in events.Scalars("val/accuracy")] == [1, 2, 3]


# --------------------------------------------------------------------------- resume


def _same_run(a: Path, b: Path) -> None:
    la, lb = ckpt(a / "last.pt"), ckpt(b / "last.pt")
    assert la["step"] == lb["step"] and la["epoch"] == lb["epoch"]
    for key in ("model", "best_model"):
        assert la[key].keys() == lb[key].keys()
        for name in la[key]:
            assert torch.equal(la[key][name], lb[key][name]), (key, name)
    for key in ("exp_avg", "exp_avg_sq"):
        for pa, pb in zip(la["optimizer"]["state"].values(), lb["optimizer"]["state"].values()):
            assert torch.equal(pa[key], pb[key])
    ma, mb = metrics_of(a), metrics_of(b)
    for key in ("val_accuracy", "val_loss", "train_loss", "lr"):
        assert [r[key] for r in ma["val_curve"]] == [r[key] for r in mb["val_curve"]], key
    assert (ma["test_accuracy"], ma["test_loss"], ma["best_epoch"]) == \
        (mb["test_accuracy"], mb["test_loss"], mb["best_epoch"])


def test_resume_after_an_interruption_equals_an_uninterrupted_run(
        capsys, tiny_spec, tiny_fmnist, tmp_path, monkeypatch):
    # Dropout, drop path and augmentation are on, so the RNG states must come back too.
    common = ("--epochs", "4", "--augment", "--resolution", "16", "--export", "none")
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    run_ok(capsys, args(tiny_spec, tiny_fmnist, straight, *common))

    real_epoch = engine.Engine.train_epoch

    def interrupt_after_two(self):
        if self.epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(self)

    monkeypatch.setattr(engine.Engine, "train_epoch", interrupt_after_two)
    assert train.main(args(tiny_spec, tiny_fmnist, stopped, *common)) == 130
    assert f"--resume --out {stopped}" in capsys.readouterr().err
    assert ckpt(stopped / "last.pt")["epoch"] == 2 and not (stopped / "metrics.json").exists()
    monkeypatch.setattr(engine.Engine, "train_epoch", real_epoch)

    out = run_ok(capsys, ["--resume", "--out", str(stopped)])
    assert "resumed at epoch 2" in out
    _same_run(straight, stopped)
    rows = list(csv.DictReader((stopped / "train.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]


def test_extending_a_finished_run_equals_training_longer(capsys, tiny_spec, tiny_fmnist,
                                                         tmp_path):
    # The warm-up (which otherwise derives from --epochs) is pinned, and the schedule is one
    # that does not look at --epochs, so 2 + 2 epochs must be exactly 4.
    common = ("--resolution", "16", "--warmup-epochs", "0.5", "--export", "none")
    four, two = tmp_path / "four", tmp_path / "two"
    run_ok(capsys, args(tiny_spec, tiny_fmnist, four, "--epochs", "4", *common))
    run_ok(capsys, args(tiny_spec, tiny_fmnist, two, "--epochs", "2", *common))
    run_ok(capsys, ["--resume", "--out", str(two), "--epochs", "4"])
    _same_run(four, two)


def test_time_limit_stops_between_epochs_and_resume_finishes(capsys, tiny_spec, tiny_fmnist,
                                                             tmp_path):
    out = tmp_path / "run"
    stdout = run_ok(capsys, args(tiny_spec, tiny_fmnist, out, "--epochs", "2", "--resolution",
                                 "16", "--max-epochs-time", "0.001", "--export", "none"))
    m = metrics_of(out)
    assert m["status"] == "time_limit" and m["epochs_run"] == 1
    assert "nas.run_train(resume=True, out=" in m["reason"]  # keys in the file, flags printed
    assert f"continue with effnas train --resume --out {out}" in stdout
    assert "--max-epochs-time 0.001 s" in stdout
    assert m["test_accuracy"] is not None  # the best weights so far are still tested
    run_ok(capsys, ["--resume", "--out", str(out)])
    assert metrics_of(out)["status"] == "completed" and metrics_of(out)["epochs_run"] == 2


# --------------------------------------------------------------------------- early stopping


def test_early_stopping_stops_and_keeps_the_best_weights(capsys, tiny_spec, tiny_fmnist,
                                                         tmp_path, monkeypatch):
    # Scripted validation accuracies (the real ones on tiny data keep rising): the best is
    # epoch 2, so patience 2 stops after epoch 4. Test-set scoring stays real.
    scripted = iter([0.5, 0.8, 0.6, 0.7, 0.95])
    real_evaluate = engine.evaluate_feeder

    def fake_evaluate(model, feeder, *rest):
        if feeder.n == 50:  # the validation split (--val-size 50); the test split has 100
            return next(scripted), 1.0
        return real_evaluate(model, feeder, *rest)

    monkeypatch.setattr(engine, "evaluate_feeder", fake_evaluate)
    out = tmp_path / "run"
    run_ok(capsys, args(tiny_spec, tiny_fmnist, out, "--epochs", "10", "--patience", "2",
                        "--resolution", "16", "--val-size", "50"))
    m = metrics_of(out)
    assert m["status"] == "early_stopped" and m["epochs_run"] == 4 and m["best_epoch"] == 2
    assert m["best_val_accuracy"] == 0.8
    assert len(list(csv.DictReader((out / "train.csv").open()))) == 4

    last, best = ckpt(out / "last.pt"), ckpt(out / "best.pt")
    assert best["epoch"] == 2
    assert all(torch.equal(best["model"][k], last["best_model"][k]) for k in best["model"])
    assert not all(torch.equal(best["model"][k], last["model"][k]) for k in best["model"])
    # What was tested and exported is the epoch-2 model, not the last one.
    kept, final = model_from(best["model"], best["spec"]), model_from(last["model"], last["spec"])
    scripted_model = torch.jit.load(str(out / "model.pt"))
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(scripted_model(x), kept(x), atol=1e-5)
        assert not torch.allclose(scripted_model(x), final(x), atol=1e-5)

    # Resuming with the same patience does not train on.
    run_ok(capsys, ["--resume", "--out", str(out)])
    assert metrics_of(out)["epochs_run"] == 4


def test_divergence_in_the_first_epoch_is_a_result_and_exit_3(capsys, tiny_spec, tiny_fmnist,
                                                                tmp_path):
    out = tmp_path / "run"
    code = train.main(args(tiny_spec, tiny_fmnist, out, "--epochs", "2", "--resolution", "16",
                           "--optimizer", "sgd", "--lr", "1e12", "--export", "none"))
    printed = capsys.readouterr().out.strip().splitlines()
    from nas.cli.train import EXIT_DIVERGED
    assert code == EXIT_DIVERGED == 3
    line = printed[-2]
    assert line.startswith("diverged: training diverged in epoch 1: ") and "lower --lr" in line
    assert "no good epoch to keep" in line
    m = metrics_of(out)
    assert (m["status"], m["epochs_run"], m["best_val_accuracy"]) == ("diverged", 0, None)
    # The file names the settings' keys; the terminal says them as flags.
    assert "lower lr=" in m["reason"] and "--" not in m["reason"]
    assert m["reason"].replace("lr=", "--lr").replace("warmup_epochs=", "--warmup-epochs") \
        == line[len("diverged: "):]
    assert not (out / "best.pt").exists() and not (out / "last.pt").exists()


def test_later_divergence_stops_and_tests_the_last_good_weights(
        capsys, tiny_spec, tiny_fmnist, tmp_path, monkeypatch):
    real_epoch = engine.Engine.train_epoch

    def diverge_in_epoch_two(self):
        if self.epoch == 1:
            raise fit.Diverged("training diverged in epoch 2 (scripted); lower --lr")
        return real_epoch(self)

    monkeypatch.setattr(engine.Engine, "train_epoch", diverge_in_epoch_two)
    out = tmp_path / "run"
    assert train.main(args(tiny_spec, tiny_fmnist, out, "--epochs", "3", "--resolution", "16",
                           "--export", "none")) == 3
    assert "lower --lr" in capsys.readouterr().out
    m = metrics_of(out)
    assert (m["status"], m["epochs_run"], m["best_epoch"]) == ("diverged", 1, 1)
    assert 0.0 <= m["test_accuracy"] <= 1.0


def _poison(monkeypatch, epoch: int, factor: float) -> None:
    """At the start of epoch ``epoch + 1`` (1-based), the weights of the model's layers are
    multiplied by ``factor``: NaN makes the training loss non-finite, 1e6 the loss explode."""
    real_epoch = engine.Engine.train_epoch

    def train_epoch(self, *a, **k):
        if self.epoch == epoch:
            with torch.no_grad():
                for p in self.model.parameters():
                    if p.ndim > 1:
                        p.mul_(factor)
        return real_epoch(self, *a, **k)

    monkeypatch.setattr(engine.Engine, "train_epoch", train_epoch)


def test_a_diverged_epoch_keeps_the_last_good_checkpoint(capsys, tiny_spec, tiny_fmnist,
                                                         tmp_path, monkeypatch):
    out = tmp_path / "run"
    # Two good epochs first (their checkpoints written), then NaN weights in epoch 3.
    _poison(monkeypatch, 2, float("nan"))
    code = train.main(args(tiny_spec, tiny_fmnist, out, "--epochs", "4", "--resolution", "16",
                           "--export", "torchscript"))
    printed = capsys.readouterr().out
    assert code == 3
    m = metrics_of(out)
    assert m["status"] == "diverged" and m["epochs_run"] == 2
    assert "training diverged in epoch 3: non-finite training loss (nan) at step" in m["reason"]
    assert "(epoch 3, step 1 of 10" in m["reason"] and "last.pt keeps epoch 2" in m["reason"]
    assert m["reason"].replace("lr= or raise warmup_epochs=", "--lr or raise --warmup-epochs") \
        in printed
    last, best = ckpt(out / "last.pt"), ckpt(out / "best.pt")
    assert last["epoch"] == 2 and len(last["history"]) == 2
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert best["epoch"] == m["best_epoch"] <= 2
    assert m["test_accuracy"] is not None and np.isfinite(m["test_loss"])
    assert (out / "model.pt").is_file()  # the best good weights, exported


def test_an_exploding_validation_loss_or_chance_accuracy_is_divergence(capsys, tiny_spec,
                                                                        tiny_fmnist, tmp_path,
                                                                        monkeypatch):
    out = tmp_path / "run"
    _poison(monkeypatch, 1, 1e6)  # epoch 2 trains with weights 1e6 times too large
    code = train.main(args(tiny_spec, tiny_fmnist, out, "--epochs", "3", "--resolution", "16",
                           "--export", "none"))
    capsys.readouterr()
    assert code == 3
    m = metrics_of(out)
    assert m["status"] == "diverged" and m["epochs_run"] == 1 and m["best_epoch"] == 1
    assert "training diverged in epoch 2: " in m["reason"]
    assert any(what in m["reason"] for what in ("non-finite training loss", "above 10x the "
                                                "first epoch's", "at chance"))
    assert ckpt(out / "last.pt")["epoch"] == 1


def test_divergence_rules_of_the_engine():
    class Fake:
        chance = 0.1
        history = [{"val_loss": 0.8}]
    exploded = engine.Engine.exploded
    assert exploded(Fake(), 0.5, 0.9) == ""
    assert "above 10x the first epoch's 0.8" in exploded(Fake(), 0.5, 8.5)
    assert exploded(Fake(), 0.5, 7.9) == ""
    assert "non-finite" not in exploded(Fake(), 0.5, float("nan"))
    assert exploded(Fake(), 0.5, float("inf")).startswith("validation loss inf")
    # At chance and confidently wrong (a loss above 1.5 ln 10 = 3.45, under the 10x rule's
    # 8.0 here): diverged. At chance near a uniform guess's loss: not learned yet, not stopped.
    Fake.history = [{"val_loss": 2.3}]
    assert "at chance" in exploded(Fake(), 0.109, 3.6) and exploded(Fake(), 0.111, 3.6) == ""
    assert exploded(Fake(), 0.1, 2.4) == "" and exploded(Fake(), 0.1, 3.4) == ""
    Fake.chance, Fake.history = None, []  # a proxy run: no chance check, no first loss yet
    assert exploded(Fake(), 0.1, 50.0) == ""


def test_api_reports_divergence(tiny_spec, tiny_fmnist, tmp_path):
    import nas
    r = nas.run_train(str(tiny_spec), dataset="fashion-mnist", data=str(tiny_fmnist),
                      val_size=100, batch_size=50, epochs=1, resolution=16, optimizer="sgd",
                      lr=1e12, threads=1, export="none", out=tmp_path / "run",
                      say=lambda line: None)
    assert r.status == "diverged" and r.test_accuracy is None
    assert r.reason.startswith("training diverged in epoch 1: non-finite training loss")


# --------------------------------------------------------------------------- helpers


def test_auto_batch_norm_momentum_follows_the_epoch_length():
    assert fit.auto_bn_momentum(0.01, 10_000) == 0.01  # ImageNet-sized epochs: the spec's
    assert fit.auto_bn_momentum(0.01, 390) == pytest.approx(1 / 39, abs=1e-4)
    assert fit.auto_bn_momentum(0.01, 39) == pytest.approx(1 / 3.9, abs=1e-4)
    assert fit.auto_bn_momentum(0.01, 15) == 0.5  # a 2,000-image epoch: at most 0.5
    assert fit.auto_bn_momentum(0.5, 39) == 0.5  # a spec that asks for more keeps it


def test_time_values():
    assert seconds("90") == 90 and seconds("90m") == 5400
    assert seconds("1.5h") == 5400


# --------------------------------------------------------------------------- bad input


def one_line_error(capsys, argv: list[str]) -> str:
    code = train.main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("extra,needle", [
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "two"], "--epochs"),
    (["--lr", "-1"], "--lr"),
    (["--batch-size", "1"], "--batch-size"),
    (["--optimizer", "lamb"], "--optimizer"),
    (["--schedule", "linear"], "--schedule"),
    (["--dropout", "1.5"], "--dropout"),
    (["--drop-path-rate", "-0.1"], "--drop-path-rate"),
    (["--label-smoothing", "1"], "--label-smoothing"),
    (["--width-mult", "0"], "--width-mult"),
    (["--patience", "0"], "--patience"),
    (["--val-size", "0"], "--val-size"),
    (["--val-size", "1.5"], "--val-size"),
    (["--val-size", "1000000"], "val_size"),
    (["--train-subset", "1"], "--train-subset"),
    (["--resolution", "2"], "--resolution"),
    (["--warmup-epochs", "9"], "--warmup-epochs"),
    (["--max-epochs-time", "soon"], "--max-epochs-time"),
    (["--device", "tpu"], "--device"),
    (["--no-such-flag"], "unrecognized arguments"),
])
def test_bad_options_are_one_line_and_exit_2(capsys, tiny_spec, tiny_fmnist, tmp_path, extra,
                                             needle):
    line = one_line_error(capsys, args(tiny_spec, tiny_fmnist, tmp_path / "run", "--epochs",
                                       "1", *extra))
    assert needle in line
    assert not (tmp_path / "run" / "last.pt").exists()


def test_bad_specs_and_data_are_one_line_and_exit_2(capsys, tiny_spec, tiny_fmnist, tmp_path):
    out = str(tmp_path / "run")
    assert "file not found" in one_line_error(capsys, [str(tmp_path / "missing.yaml")])
    assert "efficientnet-b99" in one_line_error(capsys, ["efficientnet-b99"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_SPEC.replace("head: 32", "head: 32\nheads: 4"))
    assert "unknown key" in one_line_error(capsys, [str(bad), "--out", out])
    bad.write_text(TINY_SPEC.replace("kernel: 3, stride: 1", "kernel: 4, stride: 1"))
    assert "kernel" in one_line_error(capsys, [str(bad), "--out", out])
    bad.write_text("stages: [unclosed")
    assert "invalid YAML" in one_line_error(capsys, [str(bad), "--out", out])
    line = one_line_error(capsys, [str(tiny_spec), "--data", str(tmp_path / "nodata"),
                                   "--out", out])
    assert "apt-get install dataset-fashion-mnist" in line
    assert "cifar-10-python.tar.gz" in one_line_error(
        capsys, [str(tiny_spec), "--dataset", "cifar10", "--data", str(tmp_path), "--out", out])
    assert "SPEC is required" in one_line_error(capsys, ["--epochs", "1"])
    assert not (tmp_path / "run" / "last.pt").exists()


def test_resume_errors_are_one_line_and_exit_2(capsys, tiny_spec, tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    assert "--resume needs --out" in one_line_error(capsys, ["--resume"])
    assert "no checkpoint" in one_line_error(capsys, ["--resume", "--out", str(out)])
    run_ok(capsys, args(tiny_spec, tiny_fmnist, out, "--epochs", "1", "--resolution", "16",
                        "--export", "none"))
    line = one_line_error(capsys, args(tiny_spec, tiny_fmnist, out, "--epochs", "1"))
    assert "already holds a training run" in line
    line = one_line_error(capsys, ["--resume", "--out", str(out), "--lr", "0.5"])
    assert line.startswith("error: --lr:") and "keeps its settings" in line
    other = tmp_path / "other.yaml"
    other.write_text(TINY_SPEC.replace("out: 16", "out: 24"))
    assert "not the spec" in one_line_error(capsys, [str(other), "--resume", "--out", str(out)])
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "last.pt").write_bytes(b"not a checkpoint")
    assert "cannot read" in one_line_error(capsys, ["--resume", "--out", str(tmp_path / "junk")])


@pytest.mark.skipif(importlib.util.find_spec("onnx") is not None, reason="onnx is installed")
def test_onnx_export_without_onnx_says_how_to_install(capsys, tiny_spec, tiny_fmnist, tmp_path):
    line = one_line_error(capsys, args(tiny_spec, tiny_fmnist, tmp_path / "run", "--export",
                                       "onnx"))
    assert "pip install onnx" in line
    assert not (tmp_path / "run").exists()  # refused before any training


def test_command_line_entry_point(tmp_path):
    res = subprocess.run([sys.executable, "-m", "nas.cli.effnas", "train",
                          str(tmp_path / "none.yaml")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: ")
    assert res.stdout == ""


# --------------------------------------------------------------------------- real data


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="Fashion-MNIST is not installed")
def test_one_epoch_on_real_fashion_mnist(capsys, tiny_spec, tmp_path):
    out = tmp_path / "run"
    # The default recipe (configs/train-default.yaml: AdamW), 62 steps.
    run_ok(capsys, [str(tiny_spec), "--epochs", "1", "--train-subset", "2000", "--threads", "1",
                    "--batch-size", "32", "--out", str(out)])
    m = metrics_of(out)
    assert (m["data"]["name"], m["data"]["train"], m["data"]["val"], m["data"]["test"]) == \
        ("fashion-mnist", 55000, 5000, 10000)
    assert m["images_per_epoch"] == 1984  # 62 batches of 32 from the 2000-image subset
    assert m["config"]["resolution"] == 28 and m["test_images"] == 10000
    # a 3,300-parameter net, 62 steps; chance is 0.1. Measured with the default recipe
    # (AdamW): 0.2404 (this test asked for more than 0.25 under the old default, torch's
    # RMSprop with the paper's recipe).
    assert 0.2 < m["test_accuracy"] <= 1.0
    assert (out / "model.pt").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="Fashion-MNIST is not installed")
def test_b0_one_epoch_of_2000_images_with_the_default_recipe(capsys, tmp_path):
    # What the README's example and `effnas train efficientnet-b0 --epochs 1 --train-subset
    # 2000` do: 15 steps of batch 128 at 28 px. Measured: test accuracy 0.16 (seeds 0 and 1;
    # before the batch-norm momentum of short epochs went from 0.1 to 0.5: 0.10, status
    # "completed"). Chance is 0.1; a run at chance now ends as diverged (exit 3).
    out = tmp_path / "run"
    run_ok(capsys, ["efficientnet-b0", "--epochs", "1", "--train-subset", "2000",
                    "--threads", "2", "--export", "none", "--out", str(out)])
    m = metrics_of(out)
    assert m["status"] == "completed" and m["config"]["optimizer"] == "adamw"
    assert m["config"]["bn_momentum"] == 0.5
    assert m["best_val_accuracy"] > 0.13 and m["test_accuracy"] > 0.13


def test_resume_is_exact_with_the_weight_average_and_strong_augmentation(
        capsys, tiny_spec, tiny_fmnist, tmp_path, monkeypatch):
    # The weight average and the TrivialAugment / erasing draws must come back exactly too.
    common = ("--epochs", "3", "--augment", "--auto-augment", "trivial", "--erasing", "0.5",
              "--ema", "0.9", "--resolution", "16", "--export", "none")
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    run_ok(capsys, args(tiny_spec, tiny_fmnist, straight, *common))
    real_epoch = engine.Engine.train_epoch

    def interrupt_after_two(self):
        if self.epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(self)

    monkeypatch.setattr(engine.Engine, "train_epoch", interrupt_after_two)
    assert train.main(args(tiny_spec, tiny_fmnist, stopped, *common)) == 130
    monkeypatch.setattr(engine.Engine, "train_epoch", real_epoch)
    run_ok(capsys, ["--resume", "--out", str(stopped)])
    _same_run(straight, stopped)
    last = ckpt(stopped / "last.pt")
    assert last["ema"] is not None and set(last["ema"]) == set(last["model"])
    # What is validated, kept and exported is the average, not the raw weights.
    assert all(torch.equal(last["best_model"][k], last["ema"][k]) for k in last["ema"]) \
        == (last["best_epoch"] == 3)
    assert not all(torch.equal(last["ema"][k], last["model"][k]) for k in last["ema"])


def test_strong_augmentation_flags_are_checked(capsys, tiny_spec, tiny_fmnist, tmp_path):
    for flags, fragment in ((("--erasing", "1.5"), "--erasing"), (("--ema", "1.0"), "--ema"),
                            (("--ema", "x"), "--ema")):
        line = one_line_error(capsys, args(tiny_spec, tiny_fmnist, tmp_path / "r", *flags))
        assert fragment in line
