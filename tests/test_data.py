"""Data loading: IDX, CIFAR pickles, image folders, the held-out split, real Fashion-MNIST."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from nas.core.errors import DataError
from nas.data import (
    DataSplits,
    ImageData,
    detect_format,
    holdout_split,
    load_splits,
    read_idx,
    synthetic_data,
    synthetic_splits,
    write_idx,
)

FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch):
    for var in ("NAS_DATA_DIR", "NAS_FASHION_MNIST_DIR", "NAS_MNIST_DIR", "NAS_CIFAR10_DIR",
                "NAS_CIFAR100_DIR", "NAS_IMAGEFOLDER_DIR"):
        monkeypatch.delenv(var, raising=False)


def make_idx_dataset(folder: Path, n_train: int = 60, n_test: int = 20, size: int = 6,
                     gz: bool = True, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ext = ".gz" if gz else ""
    tr_x = rng.integers(0, 256, (n_train, size, size), dtype=np.uint8)
    tr_y = (np.arange(n_train) % 10).astype(np.uint8)
    write_idx(folder / f"train-images-idx3-ubyte{ext}", tr_x)
    write_idx(folder / f"train-labels-idx1-ubyte{ext}", tr_y)
    write_idx(folder / f"t10k-images-idx3-ubyte{ext}",
              rng.integers(0, 256, (n_test, size, size), dtype=np.uint8))
    write_idx(folder / f"t10k-labels-idx1-ubyte{ext}", (np.arange(n_test) % 10).astype(np.uint8))
    return tr_x, tr_y


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, gz, dtype):
    a = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    if dtype == np.uint8:
        a = np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    p = write_idx(tmp_path / ("x.idx" + (".gz" if gz else "")), a)
    assert (p.read_bytes()[:2] == b"\x1f\x8b") == gz
    b = read_idx(p)
    assert b.dtype == np.dtype(dtype) and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def test_idx_corrupt_files_raise_data_error(tmp_path):
    good = write_idx(tmp_path / "good", np.zeros((4, 3, 3), np.uint8)).read_bytes()
    cases = {  # name: (content, what the message says)
        "magic": (b"\x01\x02" + good[2:], "bad magic number"),
        "type": (good[:2] + b"\x42" + good[3:], "bad magic number"),
        "truncated": (good[:-5], "but the file has 47 bytes"),
        "trailing": (good + b"\x00", "but the file has 53 bytes"),
        "header": (good[:6], "truncated IDX header"),
        "empty": (b"", "bad magic number empty"),
    }
    for name, (blob, says) in cases.items():
        p = tmp_path / name
        p.write_bytes(blob)
        with pytest.raises(DataError, match=says) as e:
            read_idx(p)
        assert str(p) in str(e.value) and "\n" not in str(e.value)
    bad_gz = tmp_path / "bad.gz"
    bad_gz.write_bytes(gzip.compress(good)[:-10])
    with pytest.raises(DataError, match="gzip"):
        read_idx(bad_gz)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_loads_and_splits(tmp_path, gz):
    tr_x, tr_y = make_idx_dataset(tmp_path, gz=gz)
    s = load_splits("mnist", path=str(tmp_path), val_size=10, seed=3)
    assert (len(s.train), len(s.val), len(s.test)) == (50, 10, 20)
    assert s.train.images.shape[1:] == (1, 6, 6) and s.train.images.dtype == np.uint8
    assert s.train.labels.dtype == np.int64 and s.num_classes == 10
    assert np.bincount(s.val.labels, minlength=10).tolist() == [1] * 10  # stratified
    # Every training image lands in exactly one of train / val.
    rows = {r.tobytes(): int(y) for r, y in zip(tr_x, tr_y)}
    got = [(r[0].tobytes(), int(y)) for part in (s.train, s.val)
           for r, y in zip(part.images, part.labels)]
    assert sorted(got) == sorted(rows.items())
    assert not s.train.images.flags.writeable  # shared data is read-only
    big = load_splits("mnist", path=str(tmp_path), val_size=10, seed=3, image_size=9)
    assert big.train.images.shape[1:] == (1, 9, 9) and big.test.image_size == 9
    np.testing.assert_array_equal(big.val.labels, s.val.labels)


def test_source_as_folder_is_detected(tmp_path):
    make_idx_dataset(tmp_path / "fashion", gz=False)
    assert detect_format(tmp_path / "fashion") == "idx"
    s = load_splits(str(tmp_path / "fashion"), val_size=0.2)
    assert len(s.val) == 12 and s.train.class_names[0] == "T-shirt/top"
    with pytest.raises(DataError, match="cannot tell the data format"):
        detect_format(tmp_path)
    with pytest.raises(DataError, match="unknown data source"):
        load_splits("no-such-thing")


def test_idx_label_and_count_checks(tmp_path):
    make_idx_dataset(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(60, 12, np.uint8))
    with pytest.raises(DataError, match="out of range"):
        load_splits("mnist", path=str(tmp_path))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(59, np.uint8))
    with pytest.raises(DataError, match="60 images but"):
        load_splits("mnist", path=str(tmp_path))
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        load_splits("mnist", path=str(tmp_path))


def test_missing_fashion_mnist_says_how_to_install(tmp_path, monkeypatch):
    with pytest.raises(DataError) as e:
        load_splits("fashion-mnist", path=str(tmp_path / "nowhere"))
    msg = str(e.value)
    assert "\n" not in msg and "nowhere" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "as the data path" in msg
    assert "train-images-idx3-ubyte" in msg and "zalandoresearch" in msg
    monkeypatch.setenv("NAS_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match=r"fashion-mnist \(from \$NAS_DATA_DIR\)"):
        load_splits()


def test_val_size_checks():
    d = synthetic_data(40)
    for bad in (0, 40, 1.0, 0.0, -3, True, "5"):
        with pytest.raises(DataError, match="val_size"):
            holdout_split(d, bad)
    tr, va = holdout_split(d, 0.25, seed=1)
    assert (len(tr), len(va)) == (30, 10)


def test_image_data_validation():
    x = np.zeros((3, 1, 4, 4), np.uint8)
    with pytest.raises(DataError, match="uint8"):
        ImageData(x.astype(np.float32), np.zeros(3, np.int64), 2, "t")
    with pytest.raises(DataError, match="int64"):
        ImageData(x, np.zeros(2, np.int64), 2, "t")
    with pytest.raises(DataError, match=r"\[0, 2\)"):
        ImageData(x, np.array([0, 1, 2]), 2, "t")
    with pytest.raises(DataError, match="square"):
        ImageData(np.zeros((3, 1, 4, 5), np.uint8), np.zeros(3, np.int64), 2, "t")
    d = ImageData(x, np.array([0, 1, 1]), 2, "t")
    assert (len(d), d.in_channels, d.image_size) == (3, 1, 4)
    assert len(d.subset([2, 0])) == 2 and d.subset([2, 0]).labels.tolist() == [1, 0]


def test_synthetic_splits_shapes():
    s = synthetic_splits(n_train=32, n_val=16, n_test=8, num_classes=3, image_size=6, channels=3)
    assert isinstance(s, DataSplits)
    assert s.train.images.shape == (32, 3, 6, 6) and s.test is not None and len(s.test) == 8
    assert s.describe()["val"] == 16


# --------------------------------------------------------------------------- CIFAR


def _pickle_py2_style(path: Path, obj: dict) -> None:
    """Pickle like the published files: protocol 2, bytes keys, numpy.core.multiarray names."""
    blob = pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray\n",
                                                 b"numpy.core.multiarray\n")
    path.write_bytes(blob)


def make_cifar10(root: Path, per_batch: int = 8) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _pickle_py2_style(folder / name, {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [b"x.png"] * per_batch})
    _pickle_py2_style(folder / "batches.meta", {
        b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog",
                         b"horse", b"ship", b"truck"],
        b"num_cases_per_batch": per_batch, b"num_vis": 3072})
    return folder


def test_cifar10_pickle_folder(tmp_path):
    folder = make_cifar10(tmp_path)
    for path in (tmp_path, folder):  # the folder or its parent
        s = load_splits("cifar10", path=str(path), val_size=5)
        assert (len(s.train), len(s.val), len(s.test)) == (35, 5, 8)
        assert s.train.images.shape[1:] == (3, 32, 32) and s.train.class_names[1] == "automobile"
    # Channel planes: the first 1024 bytes of a row are the red plane.
    raw = pickle.loads((folder / "test_batch").read_bytes(), encoding="bytes")
    np.testing.assert_array_equal(s.test.images[0, 0].ravel(), raw[b"data"][0, :1024])
    assert detect_format(tmp_path) == "cifar10"
    assert load_splits(str(tmp_path), val_size=5).num_classes == 10


def test_cifar100_pickle_folder(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 30), ("test", 10)):
        _pickle_py2_style(folder / name, {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"fine_labels": [int(v) for v in rng.integers(0, 100, n)],
            b"coarse_labels": [int(v) for v in rng.integers(0, 20, n)]})
    _pickle_py2_style(folder / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                                        b"coarse_label_names": [b"x"] * 20})
    s = load_splits("cifar100", path=str(tmp_path), val_size=6)
    assert s.num_classes == 100 and (len(s.train), len(s.val), len(s.test)) == (24, 6, 10)
    assert s.train.class_names[7] == "c7"


def test_cifar_corrupt_and_missing(tmp_path):
    folder = make_cifar10(tmp_path)
    _pickle_py2_style(folder / "data_batch_3", {b"data": np.zeros((4, 3072), np.uint8),
                                                b"labels": [0, 1, 2, 10]})
    with pytest.raises(DataError, match="data_batch_3: labels must lie in 0..9"):
        load_splits("cifar10", path=str(folder))
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a CIFAR python pickle"):
        load_splits("cifar10", path=str(folder))
    # A pickle that would run code is refused, not executed.
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": print}, protocol=2))
    with pytest.raises(DataError, match="refusing"):
        load_splits("cifar10", path=str(folder))
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        load_splits("cifar10", path=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="as the data path"):
        load_splits("cifar100")


# --------------------------------------------------------------------------- ImageFolder


def _png_tree(root: Path, classes: dict[str, int], mode: str = "RGB", size=(10, 7)) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, n in classes.items():
        (root / c).mkdir(parents=True)
        for i in range(n):
            shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
                root / c / f"{i}.png")


def test_image_folder_rgb_with_test_split(tmp_path):
    _png_tree(tmp_path / "train", {"cat": 6, "dog": 4})
    _png_tree(tmp_path / "test", {"cat": 2, "dog": 1})
    s = load_splits("imagefolder", path=str(tmp_path), val_size=2, image_size=12)
    assert s.train.images.shape[1:] == (3, 12, 12) and s.num_classes == 2
    assert (len(s.train), len(s.val), len(s.test)) == (8, 2, 3)
    assert s.train.class_names == ("cat", "dog")
    assert sorted(s.val.labels.tolist()) == [0, 1]  # stratified: one of each
    assert detect_format(tmp_path) == "imagefolder"


def test_image_folder_grey_flat_default_size(tmp_path):
    _png_tree(tmp_path, {"a": 3, "b": 3, "c": 3}, mode="L")
    s = load_splits(str(tmp_path), val_size=3)
    assert s.train.images.shape[1:] == (1, 32, 32) and s.test is None


def test_image_folder_errors(tmp_path):
    _png_tree(tmp_path, {"a": 2})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="without images: empty"):
        load_splits("imagefolder", path=str(tmp_path))
    (tmp_path / "empty" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png: cannot read"):
        load_splits("imagefolder", path=str(tmp_path))
    with pytest.raises(DataError, match="needs a folder"):
        load_splits("imagefolder")


# --------------------------------------------------------------------------- the real data set


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed "
                    "(apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist():
    s = load_splits("fashion-mnist", val_size=5000, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (55000, 5000, 10000)
    assert s.train.images.shape[1:] == (1, 28, 28) and s.num_classes == 10
    assert s.val.class_counts().tolist() == [500] * 10
    assert s.train.class_names[-1] == "Ankle boot"
    # val is disjoint from train and together they are the training file (Fashion-MNIST's
    # 60,000 training images are all distinct, so rows can be compared as bytes)
    full = read_idx(FMNIST / "train-images-idx3-ubyte.gz")
    rows = lambda a: np.ascontiguousarray(a.reshape(len(a), -1)).view(
        np.dtype((np.void, 28 * 28))).ravel()
    tr, va = rows(s.train.images), rows(s.val.images)
    assert len(np.intersect1d(tr, va)) == 0
    np.testing.assert_array_equal(np.unique(np.concatenate([tr, va])), np.unique(rows(full)))
    assert len(np.intersect1d(va, rows(s.test.images))) == 0  # never taken from the test set
    # seeded: the same seed gives the same split, another seed a different one
    again = load_splits(val_size=5000, seed=0)
    np.testing.assert_array_equal(again.val.labels, s.val.labels)
    np.testing.assert_array_equal(again.val.images[:50], s.val.images[:50])
    other = load_splits(val_size=5000, seed=1)
    assert not np.array_equal(other.val.images[:50], s.val.images[:50])
    mean, std = s.train.channel_stats()
    assert 0.27 < mean[0] < 0.30 and 0.33 < std[0] < 0.37


def test_a_data_set_with_one_class_is_refused(tmp_path):
    _png_tree(tmp_path / "one", {"cat": 4}, mode="L")
    with pytest.raises(DataError) as e:
        load_splits("imagefolder", path=str(tmp_path / "one"), val_size=1)
    msg = str(e.value)
    assert "\n" not in msg and "one class (cat)" in msg and "at least 2" in msg
    # The same in another format: IDX files whose labels are all one class.
    folder = tmp_path / "idx"
    folder.mkdir()
    for split, n in (("train", 20), ("t10k", 5)):
        write_idx(folder / f"{split}-images-idx3-ubyte", np.zeros((n, 28, 28), np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte", np.full(n, 3, np.uint8))
    with pytest.raises(DataError) as e:
        load_splits(str(folder), val_size=2)
    assert "hold 1 class(es) (3)" in str(e.value) and "\n" not in str(e.value)
