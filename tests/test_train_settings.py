"""``effnas train --preset NAME --config FILE --set KEY=VALUE``: the same layers as search,
scale and pipeline (the defaults, the preset, the file, the flags, then --set; strict keys),
read by the one loader, :func:`nas.core.settings.load`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas.cli import train
from nas.core.errors import ConfigError

TINY_SPEC = """\
format_version: 1
name: tiny
resolution: 16
stem: 8
stem_stride: 1
head: 16
stages:
  - {op: ds, kernel: 3, stride: 1, se: 0.25, out: 8, repeats: 1}
"""


def config(*argv: str):
    return train.settings(train.build_parser().parse_args(list(argv))).resolved()


def test_the_layers_in_order(tmp_path: Path) -> None:
    f = tmp_path / "run.yaml"
    f.write_text("spec: efficientnet-b0\nepochs: 3\nbatch_size: 32\nlr: 1e-3\n")
    c = config("--preset", "smoke", "--config", str(f))
    # The file is above the preset; the preset above the defaults.
    assert (c.spec, c.epochs, c.batch_size, c.lr) == ("efficientnet-b0", 3, 32, 0.001)
    assert (c.train_subset, c.val_size) == (512, 500)  # the preset's
    # The flags above the file, --set above the flags; SPEC above the file's spec.
    c = config("mnasnet-a1", "--config", str(f), "--epochs", "4", "--set", "epochs=5",
               "--set", "optimizer=sgd")
    assert (c.spec, c.epochs, c.optimizer, c.batch_size) == ("mnasnet-a1", 5, "sgd", 32)
    # Without any of them: TrainSettings's defaults, as before.
    d = train.TrainSettings(spec="efficientnet-b0")
    assert config("efficientnet-b0").epochs == d.epochs


@pytest.mark.parametrize("argv,needle", [
    (["x", "--set", "epoch=2"], "--set: unknown key 'epoch'; did you mean 'epochs'?"),
    (["x", "--set", "epochs"], "--set 'epochs': expected KEY=VALUE"),
    (["x", "--preset", "huge"], "--preset 'huge': unknown preset; use one of smoke"),
    # train-default.yaml is the default recipe, not a preset
    (["x", "--preset", "default"], "--preset 'default': unknown preset; use one of smoke"),
    (["x", "--config", "no/such.yaml"], "no/such.yaml"),
    (["--set", "epochs=2"], "SPEC is required"),
])
def test_bad_layers_are_one_line_errors(argv, needle, capsys) -> None:
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err, err


def test_a_config_file_of_another_shape_is_refused(tmp_path: Path, capsys) -> None:
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    assert train.main(["x", "--config", str(f)]) == 2
    assert "expected a mapping of settings" in capsys.readouterr().err


def test_a_run_from_a_config_file_and_its_resume(tiny_fmnist, tmp_path: Path, capsys) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    out = tmp_path / "run"
    f = tmp_path / "run.yaml"
    f.write_text(f"spec: {spec}\ndataset: fashion-mnist\ndata: {tiny_fmnist}\nval_size: 100\n"
                 f"batch_size: 50\noptimizer: adam\nlr: 0.01\nthreads: 1\nexport: none\n"
                 f"resolution: 16\naugment: false\nema_decay: 0\nout: {out}\n")
    assert train.main(["--config", str(f), "--set", "epochs=1"]) == 0, capsys.readouterr().err
    saved = json.loads((out / "metrics.json").read_text())["config"]
    assert (saved["epochs"], saved["batch_size"], saved["optimizer"]) == (1, 50, "adam")
    capsys.readouterr()
    # --resume keeps the saved settings: --set may change what a flag may change ...
    assert train.main(["--resume", "--out", str(out), "--set", "epochs=2"]) == 0, \
        capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["config"]["epochs"] == 2
    # ... and nothing else; a preset or a file is refused.
    assert train.main(["--resume", "--out", str(out), "--set", "lr=0.5"]) == 2
    assert "keeps its settings" in capsys.readouterr().err
    assert train.main(["--resume", "--out", str(out), "--config", str(f)]) == 2
    assert "leave out --preset and --config" in capsys.readouterr().err


def test_the_api_takes_them_too(tmp_path: Path) -> None:
    import nas
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        nas.run_train("efficientnet-b0", epoch=2, out=tmp_path / "x")
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        nas.run_train("efficientnet-b0", config={"bogus": 1}, out=tmp_path / "x")
