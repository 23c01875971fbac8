"""Loading a data set by name or folder, and holding out the validation split.

Every loader returns :class:`DataSplits`: ``train`` and ``val`` come from the data set's
*training* images (the validation images are held out, seeded and stratified by class), and
``test`` is the data set's own test split, which the search never looks at. Images are
``uint8`` arrays of shape ``N x C x H x W``; labels are ``int64``. The arrays a loader makes
are read-only: they are shared between children (through Ray's object store, which is
read-only too), so consumers copy what they need per batch.

Sources (``load_splits(source, path=...)``):

``fashion-mnist``, ``mnist``
    The four IDX files (``train-images-idx3-ubyte`` ... ``t10k-labels-idx1-ubyte``,
    gzipped or not). Folder: ``path``, else ``$NAS_FASHION_MNIST_DIR`` / ``$NAS_MNIST_DIR``,
    else ``$NAS_DATA_DIR`` (or its ``fashion-mnist`` / ``mnist`` subfolder), else
    ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``) or
    ``/usr/share/datasets/mnist``.
``cifar10``, ``cifar100``
    The published python-pickle folders ``cifar-10-batches-py`` / ``cifar-100-python``
    (``path`` may be that folder or its parent; else ``$NAS_CIFAR10_DIR`` /
    ``$NAS_CIFAR100_DIR``, else ``$NAS_DATA_DIR``). CIFAR-100 uses the 100 fine labels.
``imagefolder``
    ``root/<class>/<image files>``, or ``root/train/<class>/...`` with an optional
    ``root/test/<class>/...``. Read with PIL, resized to ``image_size`` x ``image_size``
    (default 32; the aspect ratio is not kept), grey (``L``) when every image is grey, else RGB.
a directory
    ``source`` may itself be a folder; its format is detected from the files in it.

The pickles are read with a restricted unpickler that only rebuilds numpy arrays, lists,
dicts and bytes, so a tampered file cannot run code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from nas.core.checks import is_int, is_number
from nas.core.errors import ConfigError, DataError
from nas.data.formats import (
    _IDX_FILES,
    DEFAULT_ROOT,
    MIN_CLASSES,
    _cifar_dir,
    _cifar_missing_message,
    _find_idx,
    _has_idx,
    _idx_missing_message,
    _is_image_tree,
    load_cifar_folder,
    load_idx_folder,
    load_image_folder,
)
from nas.data.images import DataSplits, ImageData, _readonly

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
MNIST_CLASSES = tuple(str(i) for i in range(10))
SOURCES = ("fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder")


# --------------------------------------------------------------------------- splitting


def split_counts(labels: np.ndarray, num_classes: int, val_count: int) -> np.ndarray:
    """Validation images per class, proportional to the class sizes (largest remainder)."""
    counts = np.bincount(labels, minlength=num_classes)
    want = counts * (val_count / max(len(labels), 1))
    per = np.floor(want).astype(np.int64)
    order = np.argsort(-(want - per), kind="stable")
    for c in order[: val_count - int(per.sum())]:
        per[c] += 1
    return np.minimum(per, counts)


def holdout_split(data: ImageData, val_size: int | float, seed: int = 0
                  ) -> tuple[ImageData, ImageData]:
    """Split ``data`` into (train, val), seeded and stratified by class; disjoint."""
    n = len(data)
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float, np.integer)):
        raise DataError(f"val_size must be a count or a fraction, got {val_size!r}")
    if isinstance(val_size, float):
        if not 0.0 < val_size < 1.0:
            raise DataError(f"val_size {val_size!r} as a fraction must lie in (0, 1); "
                            "use an integer for a count")
        count = max(1, int(round(val_size * n)))
    else:
        count = int(val_size)
    if not 1 <= count < n:
        raise DataError(f"val_size {val_size!r}: need 1 <= validation images < {n} training "
                        "images; choose a smaller validation set")
    rng = np.random.default_rng(seed)
    per = split_counts(data.labels, data.num_classes, count)
    is_val = np.zeros(n, dtype=bool)
    for c in range(data.num_classes):
        members = np.flatnonzero(data.labels == c)
        is_val[rng.permutation(members)[: per[c]]] = True
    base = data.name.rsplit(":", 1)[0]
    return (data.subset(np.flatnonzero(~is_val), f"{base}:train"),
            data.subset(np.flatnonzero(is_val), f"{base}:val"))


# --------------------------------------------------------------------------- entry point


def _resize_all(data: ImageData, size: int) -> ImageData:
    if data.image_size == size:
        return data
    from PIL import Image

    n, c = len(data), data.in_channels
    out = np.empty((n, c, size, size), dtype=np.uint8)
    for i in range(n):
        for ch in range(c):
            img = Image.fromarray(data.images[i, ch])
            out[i, ch] = np.asarray(img.resize((size, size), Image.BILINEAR))
    return ImageData(_readonly(out), data.labels, data.num_classes, data.name, data.class_names)


def _env_dir(*names: str) -> Path | None:
    for n in names:
        v = os.environ.get(n)
        if v:
            return Path(v).expanduser()
    return None


def _idx_folder(name: str, path: str | None) -> Path:
    sub = name
    per = "NAS_FASHION_MNIST_DIR" if name == "fashion-mnist" else "NAS_MNIST_DIR"
    if path is not None:
        folder, tried = Path(path).expanduser(), ""
    elif _env_dir(per):
        folder, tried = _env_dir(per), f" (from ${per})"
    elif _env_dir("NAS_DATA_DIR"):
        base = _env_dir("NAS_DATA_DIR")
        folder = base if _has_idx(base) else base / sub
        tried = " (from $NAS_DATA_DIR)"
    else:
        folder, tried = DEFAULT_ROOT / sub, ""
    if not _has_idx(folder):
        if folder.is_dir() and any(_find_idx(folder, s) for s in _IDX_FILES.values()):
            load_idx_folder(folder, name)  # names exactly which file is missing
        raise DataError(_idx_missing_message(name, folder, tried))
    return folder


def _cifar_folder(name: str, path: str | None) -> Path:
    per = "NAS_CIFAR10_DIR" if name == "cifar10" else "NAS_CIFAR100_DIR"
    if path is not None:
        folder, tried = Path(path).expanduser(), ""
    elif _env_dir(per):
        folder, tried = _env_dir(per), f" (from ${per})"
    elif _env_dir("NAS_DATA_DIR"):
        folder, tried = _env_dir("NAS_DATA_DIR"), " (from $NAS_DATA_DIR)"
    else:
        raise DataError(_cifar_missing_message(name, None, " (no data path given)"))
    found = _cifar_dir(folder, name)
    if found is None:
        raise DataError(_cifar_missing_message(name, folder, tried))
    return found


def detect_format(folder: str | os.PathLike[str]) -> str:
    """Which source a folder holds: ``idx``, ``cifar10``, ``cifar100`` or ``imagefolder``."""
    p = Path(folder)
    if not p.is_dir():
        raise DataError(f"{p}: not a directory; pass a data folder or one of {', '.join(SOURCES)}")
    if _has_idx(p):
        return "idx"
    if _cifar_dir(p, "cifar10"):
        return "cifar10"
    if _cifar_dir(p, "cifar100"):
        return "cifar100"
    if _is_image_tree(p):
        return "imagefolder"
    raise DataError(f"{p}: cannot tell the data format (expected the four MNIST-style IDX files, "
                    "cifar-10-batches-py, cifar-100-python, or one subfolder of images per class)")


def load_splits(source: str = "fashion-mnist", path: str | None = None,
                val_size: int | float = 5000, seed: int = 0,
                image_size: int | None = None) -> DataSplits:
    """Load a data set and hold ``val_size`` of its training images out for validation.

    ``val_size`` is a count (int) or a fraction of the training images (float in (0, 1)).
    ``image_size`` resizes every image to that square size at load time (default: native
    size; 32 for ``imagefolder``). The split is seeded and stratified by class, and the data
    set's test split is returned untouched as ``test`` (None when an image folder has none).
    """
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"source must be a name or a folder, got {source!r}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < 4):
        raise DataError(f"image_size must be an integer >= 4 (pixels), got {image_size!r}")
    key = str(source).lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar-100": "cifar100",
           "image-folder": "imagefolder"}.get(key, key)
    if key not in SOURCES:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise DataError(f"unknown data source {source!r}: use one of {', '.join(SOURCES)} "
                            "or the path of a data folder")
        fmt = detect_format(folder)
        if fmt == "idx":
            fashion = "fashion" in str(folder).lower()
            train, test = load_idx_folder(folder, "fashion-mnist" if fashion else folder.name,
                                          FASHION_MNIST_CLASSES if fashion else ())
        elif fmt in ("cifar10", "cifar100"):
            train, test = load_cifar_folder(_cifar_dir(folder, fmt), fmt)
        else:
            train, test = load_image_folder(folder, image_size or 32)
    elif key in ("fashion-mnist", "mnist"):
        names = FASHION_MNIST_CLASSES if key == "fashion-mnist" else MNIST_CLASSES
        train, test = load_idx_folder(_idx_folder(key, path), key, names)
    elif key in ("cifar10", "cifar100"):
        train, test = load_cifar_folder(_cifar_folder(key, path), key)
    else:
        root = path or _env_dir("NAS_IMAGEFOLDER_DIR") or _env_dir("NAS_DATA_DIR")
        if root is None:
            raise DataError("imagefolder needs a folder: give it as the data path "
                            "(root/<class>/<images>, optionally under root/train and root/test)")
        train, test = load_image_folder(Path(root).expanduser(), image_size or 32)
    present = np.unique(train.labels)
    if len(present) < MIN_CLASSES:
        which = ", ".join(train.class_names[int(c)] if int(c) < len(train.class_names)
                          else str(int(c)) for c in present) or "none"
        raise DataError(f"{train.name}: the training images hold {len(present)} class(es) "
                        f"({which}); a classifier needs at least {MIN_CLASSES} (with one, every "
                        "answer is right): use a data set with more classes")
    if image_size is not None:
        train = _resize_all(train, image_size)
        test = _resize_all(test, image_size) if test is not None else None
    tr, va = holdout_split(train, val_size, seed)
    return DataSplits(tr, va, test)



@dataclass(frozen=True)
class DataSettings:
    """Which data set a run trains on and how its validation split is held out (the ``data``
    section of a run config)."""

    source: str = "fashion-mnist"
    path: str | None = None
    val_size: int | float = 5000
    seed: int | None = 0  # None: a run's settings fill in the run's seed (0 when loaded as is)
    image_size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise ConfigError(f"data.source: got {self.source!r}; expected a name such as "
                              f"fashion-mnist ({', '.join(SOURCES)}) or a folder")
        if self.path is not None and not isinstance(self.path, str):
            raise ConfigError(f"data.path: got {self.path!r}; expected a folder path")
        if not is_number(self.val_size) or self.val_size <= 0:
            raise ConfigError(f"data.val_size: got {self.val_size!r}; use an image count >= 1 "
                              "or a fraction in (0, 1)")
        if self.seed is not None and (not is_int(self.seed) or self.seed < 0):
            raise ConfigError(f"data.seed: got {self.seed!r}; use an integer >= 0")
        if self.image_size is not None and (not is_int(self.image_size) or self.image_size < 4):
            raise ConfigError(f"data.image_size: got {self.image_size!r}; use an integer >= 4 "
                              "(pixels), or null for the native size")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DataSettings":
        if not isinstance(d, Mapping):
            raise ConfigError("data: expected a mapping of data settings")
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise ConfigError(f"data.{unknown[0]}: unknown data setting; allowed: "
                              f"{', '.join(known)}")
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def load(self) -> DataSplits:
        return load_splits(self.source, self.path, val_size=self.val_size,
                           seed=0 if self.seed is None else self.seed,
                           image_size=self.image_size)
