"""Batches: index arrays in, normalised float tensors out, on any device.

The uint8 arrays may be read-only views of Ray's object store, so they are never written:
each batch is gathered with numpy fancy indexing (a copy of that batch only), turned into a
tensor, scaled to [0, 1], resized to the recipe's resolution if set, augmented if asked
(random crop with zero padding of ``size // 8`` and horizontal flip, per image, on the batch
tensor), and normalised with the training set's per-channel mean/std. On CUDA the images
used are uploaded once as uint8 and batches are gathered on the GPU. The augmentations
themselves are :mod:`nas.training.augment`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nas.data import ImageData
from nas.training.augment import crop_flip, random_erasing, trivial_augment

Stats = tuple[tuple[float, ...], tuple[float, ...]]


class Feeder:
    """Turns index arrays into normalised float batches on ``device``, never writing the source."""

    def __init__(self, data: ImageData, indices: np.ndarray | None, device: torch.device,
                 stats: tuple[tuple[float, ...], tuple[float, ...]], resolution: int | None,
                 channels_last: bool) -> None:
        self.device = device
        self.on_gpu = device.type != "cpu"
        images, labels = data.images, data.labels
        self.index = indices  # batch positions -> rows of the source arrays (None: identity)
        if self.on_gpu:  # one upload of the uint8 images used, then gathers on the device
            if indices is not None:
                images, labels = images[indices], labels[indices]
                self.index = None
            self.images = torch.as_tensor(np.ascontiguousarray(images)).to(device)
            self.labels = torch.as_tensor(np.ascontiguousarray(labels)).to(device)
        else:
            self.images, self.labels = images, labels
        self.n = len(labels) if indices is None else len(indices)
        mean, std = stats
        c = data.in_channels
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, c, 1, 1) * 255
        self.inv_std = 1.0 / (torch.tensor(std, dtype=torch.float32, device=device)
                              .view(1, c, 1, 1) * 255)
        self.size = resolution
        self.native = data.image_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def raw(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if self.on_gpu:
            t = torch.as_tensor(idx, device=self.device)
            return self.images.index_select(0, t), self.labels.index_select(0, t)
        rows = idx if self.index is None else self.index[idx]
        # Fancy indexing copies just this batch, so the tensor owns writable memory.
        return torch.from_numpy(self.images[rows]), torch.from_numpy(self.labels[rows])

    def batch(self, idx: np.ndarray, augment: bool = False,
              gen: torch.Generator | None = None, trivial: bool = False,
              erasing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """The images ``idx`` as a normalised batch; with ``trivial``, TrivialAugment, then
        with ``augment`` a random crop and flip, and with ``erasing`` > 0 random erasing
        (all drawn from ``gen``)."""
        x, y = self.raw(idx)
        x = x.to(self.device, non_blocking=True).float()
        if self.size is not None and self.size != self.native:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=self.size < self.native)
        if trivial:
            x = trivial_augment(x, gen)
        if augment:
            x = crop_flip(x, gen)
        x = (x - self.mean) * self.inv_std
        if erasing > 0:
            x = random_erasing(x, erasing, gen)
        return x.contiguous(memory_format=self.memory_format), y.to(self.device, non_blocking=True)
