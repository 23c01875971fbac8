"""Tiny learnable data sets for fast tests (no files)."""

from __future__ import annotations

import numpy as np

from nas.data.images import DataSplits, ImageData, _readonly


def synthetic_data(n: int, num_classes: int = 4, image_size: int = 8, channels: int = 1,
                   seed: int = 0, noise: float = 40.0, name: str = "synthetic",
                   pattern_seed: int = 1234) -> ImageData:
    """``n`` learnable images: a fixed random pattern per class plus pixel noise.

    The class patterns depend only on ``pattern_seed`` (so splits made with different
    ``seed`` share them); ``seed`` draws the labels and the noise.
    """
    patterns = np.random.default_rng(pattern_seed).uniform(
        40, 215, size=(num_classes, channels, image_size, image_size))
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % num_classes
    rng.shuffle(labels)
    x = patterns[labels] + rng.normal(0, noise, size=(n, channels, image_size, image_size))
    images = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return ImageData(_readonly(images), _readonly(labels), num_classes, name)


def synthetic_splits(n_train: int = 256, n_val: int = 128, n_test: int = 0,
                     num_classes: int = 4, image_size: int = 8, channels: int = 1,
                     seed: int = 0, noise: float = 40.0) -> DataSplits:
    """Tiny learnable splits for fast tests (no files)."""
    mk = lambda n, s, part: synthetic_data(n, num_classes, image_size, channels, s, noise,
                                           f"synthetic:{part}")
    return DataSplits(mk(n_train, seed, "train"), mk(n_val, seed + 1, "val"),
                      mk(n_test, seed + 2, "test") if n_test else None)
