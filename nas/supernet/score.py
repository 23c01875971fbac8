"""Scoring paths of a supernet on held-out validation images, in one of three batch-norm modes.

``batch``        every evaluation batch is normalised with its own statistics (TuNAS: batch
                 norm always uses batch statistics during the search). Costs one forward pass.
``recalibrate``  the path is exported (:meth:`Supernet.subnet`), its running statistics are
                 reset and re-estimated as a plain average over ``recal_batches`` training
                 batches, then it is evaluated as a trained network is (SPOS). Costs the
                 export and the extra forward passes.
``running``      the shared running averages as they are: they mix every path trained
                 lately, so they are a poor match for any one path (measured, see
                 docs/results/oneshot-fidelity.md).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from nas.supernet.model import Supernet
from nas.supernet.settings import BN_MODES
from nas.training.device import autocast
from nas.training.feeder import Feeder


class Scorer:
    """Accuracy of paths on validation images.

    Args:
        supernet: the shared weights (not a DDP wrapper).
        val: the validation images; train: the training images (recalibration draws from them).
        bn: one of :data:`BN_MODES`.
        recal_batches, batch_size: recalibration batches and the batch size of every pass.
        rng: draws the recalibration batches.
    """

    def __init__(self, supernet: Supernet, val: Feeder, train: Feeder, bn: str,
                 recal_batches: int, batch_size: int, rng: np.random.Generator,
                 amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> None:
        if bn not in BN_MODES:
            raise ValueError(f"bn mode {bn!r}; use one of {', '.join(BN_MODES)}")
        self.supernet, self.val, self.train, self.bn = supernet, val, train, bn
        self.recal_batches, self.batch_size, self.rng = recal_batches, batch_size, rng
        self.amp_dtype, self.channels_last = amp_dtype, channels_last

    @property
    def device(self) -> torch.device:
        return self.val.device

    def _correct(self, model: nn.Module, rows: np.ndarray) -> int:
        correct = 0
        for start in range(0, len(rows), self.batch_size):
            x, y = self.val.batch(rows[start:start + self.batch_size])
            with autocast(self.device, self.amp_dtype):
                logits = model(x)
            correct += int((logits.float().argmax(1) == y).sum())
        return correct

    @torch.no_grad()
    def accuracy(self, tokens: Sequence[int], rows: np.ndarray, bn: str | None = None) -> float:
        """Top-1 accuracy of the path ``tokens`` on validation rows ``rows``."""
        bn = bn or self.bn
        sn = self.supernet
        was_training, path = sn.training, sn.tokens
        try:
            if bn == "recalibrate":
                return self._recalibrated(tokens, rows)
            sn.set_path(tokens)
            sn.eval()
            if bn == "batch":
                with sn.batch_statistics():
                    return self._correct(sn, rows) / len(rows)
            return self._correct(sn, rows) / len(rows)
        finally:
            sn.train(was_training)
            if path is not None:
                sn.set_path(path)

    def _recalibrated(self, tokens: Sequence[int], rows: np.ndarray) -> float:
        model = self.supernet.subnet(tokens).to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a plain average over the recalibration batches
        model.eval()
        for m in norms:  # only batch norm in training mode: no dropout, no drop path
            m.train()
        n = self.train.n
        for _ in range(self.recal_batches):
            idx = self.rng.choice(n, size=min(self.batch_size, n), replace=False)
            x, _ = self.train.batch(idx)
            with autocast(self.device, self.amp_dtype):
                model(x)
        model.eval()
        return self._correct(model, rows) / len(rows)
