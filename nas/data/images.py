"""The records every loader returns: :class:`ImageData` (uint8 images, int64 labels, read-only)
and :class:`DataSplits` (train, val held out of train, and the data set's own test split)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from nas.core.errors import DataError


@dataclass(frozen=True)
class ImageData:
    """One split: ``images`` (uint8, N x C x H x W, square) and ``labels`` (int64, N)."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        im, lb = self.images, self.labels
        if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 4:
            raise DataError(f"{self.name}: images must be a uint8 array N x C x H x W, got "
                            f"{getattr(im, 'dtype', type(im).__name__)} "
                            f"{getattr(im, 'shape', '')}; convert them with np.uint8")
        if im.shape[2] != im.shape[3]:
            raise DataError(f"{self.name}: images are {im.shape[2]}x{im.shape[3]}; only square "
                            "images are supported, resize them (image_size=...)")
        if not isinstance(lb, np.ndarray) or lb.dtype != np.int64 or lb.shape != (im.shape[0],):
            raise DataError(f"{self.name}: labels must be an int64 array of length "
                            f"{im.shape[0]}, got {getattr(lb, 'dtype', type(lb).__name__)} "
                            f"{getattr(lb, 'shape', '')}")
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise DataError(f"{self.name}: num_classes must be a positive integer, got "
                            f"{self.num_classes!r}")
        if len(lb) and (lb.min() < 0 or lb.max() >= self.num_classes):
            raise DataError(f"{self.name}: labels must lie in [0, {self.num_classes}), got "
                            f"[{lb.min()}, {lb.max()}]; the label file is corrupt or "
                            "num_classes is wrong")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise DataError(f"{self.name}: {len(self.class_names)} class names for "
                            f"{self.num_classes} classes")
        if not isinstance(self.class_names, tuple):
            object.__setattr__(self, "class_names", tuple(self.class_names))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        """Side of the (square) images in pixels."""
        return int(self.images.shape[2])

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> "ImageData":
        """A new split holding copies of the images at ``indices`` (read-only)."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.ndim != 1:
            raise DataError(f"{self.name}: subset indices must be one-dimensional")
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise DataError(f"{self.name}: subset index out of range for {len(self)} images")
        return ImageData(_readonly(self.images[idx]), _readonly(self.labels[idx]),
                         self.num_classes, name or self.name, self.class_names)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and standard deviation of the pixels, in [0, 1] units."""
        return channel_stats(self.images)


@dataclass(frozen=True)
class DataSplits:
    """``train`` and ``val`` (held out from the training images) and the data set's ``test``."""

    train: ImageData
    val: ImageData
    test: ImageData | None = None

    def __post_init__(self) -> None:
        parts = [p for p in (self.train, self.val, self.test) if p is not None]
        shapes = {(p.in_channels, p.image_size, p.num_classes) for p in parts}
        if len(shapes) != 1:
            raise DataError("train, val and test must share channels, image size and classes; "
                            f"got {sorted(shapes)}")

    @property
    def name(self) -> str:
        return self.train.name.rsplit(":", 1)[0]

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def in_channels(self) -> int:
        return self.train.in_channels

    @property
    def image_size(self) -> int:
        return self.train.image_size

    def describe(self) -> dict[str, Any]:
        """Plain-data summary for run records."""
        return {"name": self.name, "num_classes": self.num_classes,
                "in_channels": self.in_channels, "image_size": self.image_size,
                "train": len(self.train), "val": len(self.val),
                "test": None if self.test is None else len(self.test)}


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...],
                                                                  tuple[float, ...]]:
    """Per-channel mean and std of uint8 ``N x C x H x W`` images, scaled to [0, 1].

    Works in chunks so that no float copy of the whole set is made.
    """
    n, c = images.shape[:2]
    if n == 0:
        raise DataError("channel_stats: no images")
    s = np.zeros(c, np.float64)
    s2 = np.zeros(c, np.float64)
    for i in range(0, n, chunk):
        x = images[i:i + chunk].reshape(min(chunk, n - i), c, -1).astype(np.float32)
        s += x.sum(axis=(0, 2), dtype=np.float64)
        s2 += np.square(x).sum(axis=(0, 2), dtype=np.float64)
    count = n * images.shape[2] * images.shape[3]
    mean = s / count
    std = np.sqrt(np.maximum(s2 / count - mean * mean, 0.0))
    return tuple(float(m) / 255 for m in mean), tuple(max(float(v) / 255, 1e-3) for v in std)

