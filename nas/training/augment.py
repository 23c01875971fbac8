"""Augmentation on batches of images already on their device, vectorised over the batch.

Every random number is drawn from a CPU ``torch.Generator`` passed in, so a run on CUDA uses
the same draws as a run on the CPU, and a checkpoint that saves the generator's state
continues exactly.

- :func:`crop_flip`: random crop with zero padding of ``size // 8`` and horizontal flip.
- :func:`trivial_augment`: TrivialAugment (Müller & Hutter, 2021): one operation per image,
  drawn uniformly from 14, at a strength drawn uniformly from its range (the paper's
  standard ranges; translation as a fraction of the image size so that it suits any
  resolution). Works on pixel values in [0, 255].
- :func:`random_erasing`: random erasing (Zhong et al., 2020): with probability ``p``, one
  rectangle of 2-33 % of the image, aspect ratio 0.3-3.3, replaced by Gaussian noise; on
  normalised images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness",
       "color", "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize")
_GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")
_SHEAR, _TRANSLATE, _ROTATE_DEG, _ENHANCE = 0.3, 0.3125, 30.0, 0.9


def crop_flip(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Per-image random crop (zero padding of size // 8) and horizontal flip, vectorised."""
    n, c, h, w = x.shape
    pad = max(1, h // 8)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(h, device=x.device)  # n x h
    cols = dx[:, None] + torch.arange(w, device=x.device)  # n x w
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = padded[torch.arange(n, device=x.device)[:, None, None], :, rows[:, :, None],
                 cols[:, None, :]]  # n x h x w x c (advanced indices first)
    return out.permute(0, 3, 1, 2)


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype)
    return (x * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance: ``b + factor * (a - b)``, clipped to [0, 255]."""
    return (b + factor.view(-1, 1, 1, 1) * (a - b)).clamp(0, 255)


def _geometric(x: torch.Tensor, op: list[str], mag: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    for i, name in enumerate(op):
        m = float(mag[i])
        if name == "shear_x":
            theta[i, 0, 1] = m * _SHEAR
        elif name == "shear_y":
            theta[i, 1, 0] = m * _SHEAR
        elif name == "translate_x":
            theta[i, 0, 2] = 2 * m * _TRANSLATE  # normalised coordinates span 2
        elif name == "translate_y":
            theta[i, 1, 2] = 2 * m * _TRANSLATE
        else:  # rotate
            a = math.radians(m * _ROTATE_DEG)
            theta[i, 0, 0], theta[i, 0, 1] = math.cos(a), -math.sin(a)
            theta[i, 1, 0], theta[i, 1, 1] = math.sin(a), math.cos(a)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per image and channel (PIL's ImageOps.equalize, vectorised)."""
    n, c, h, w = x.shape
    idx = x.round().clamp(0, 255).long().view(n * c, h * w)
    hist = torch.zeros(n * c, 256, device=x.device).scatter_add_(
        1, idx, torch.ones_like(idx, dtype=torch.float32))
    cdf = hist.cumsum(1)
    first = torch.gather(cdf, 1, (hist > 0).float().argmax(1, keepdim=True))  # cdf at the minimum
    denom = (cdf[:, -1:] - first).clamp(min=1)
    lut = ((cdf - first) / denom * 255).clamp(0, 255)
    flat = (hist > 0).sum(1, keepdim=True) <= 1  # one grey level: leave it
    out = torch.gather(lut, 1, idx).to(x.dtype)
    out = torch.where(flat, x.view(n * c, h * w), out)
    return out.view(n, c, h, w)


def trivial_augment(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """TrivialAugment on a batch of pixel values in [0, 255] (float), one op per image."""
    n = x.shape[0]
    choice = torch.randint(0, len(OPS), (n,), generator=gen)
    strength = torch.rand(n, generator=gen)
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    signed = strength * sign
    out = x.clone()
    for k, name in enumerate(OPS):
        rows = (choice == k).nonzero().flatten()
        if name == "identity" or len(rows) == 0:
            continue
        sel = rows.to(x.device)
        img = x.index_select(0, sel)
        if name in _GEOMETRIC:
            res = _geometric(img, [name] * len(rows), signed[rows])
        elif name in ("brightness", "color", "contrast", "sharpness"):
            factor = (1.0 + signed[rows] * _ENHANCE).to(x.device, x.dtype)
            if name == "brightness":
                base = torch.zeros_like(img)
            elif name == "color":
                base = _grey(img).expand_as(img)
            elif name == "contrast":
                base = _grey(img).mean(dim=(1, 2, 3), keepdim=True).expand_as(img)
            else:  # sharpness: blend with PIL's smoothing filter
                kernel = torch.tensor([[1., 1., 1.], [1., 5., 1.], [1., 1., 1.]],
                                      device=x.device, dtype=x.dtype) / 13
                c = img.shape[1]
                base = F.conv2d(F.pad(img, (1, 1, 1, 1), mode="replicate"),
                                kernel.expand(c, 1, 3, 3), groups=c)
            res = _blend(img, base, factor)
        elif name == "posterize":
            bits = (8 - (strength[rows] * 4).floor()).to(x.device, x.dtype)  # 8 .. 4 bits
            step = (2 ** (8 - bits)).view(-1, 1, 1, 1)
            res = torch.floor(img / step) * step
        elif name == "solarize":
            threshold = (256.0 * (1.0 - strength[rows])).to(x.device, x.dtype).view(-1, 1, 1, 1)
            res = torch.where(img >= threshold, 255.0 - img, img)
        elif name == "autocontrast":
            lo = img.amin(dim=(2, 3), keepdim=True)
            hi = img.amax(dim=(2, 3), keepdim=True)
            scale = torch.where(hi > lo, 255.0 / (hi - lo).clamp(min=1e-6), torch.ones_like(hi))
            res = torch.where(hi > lo, (img - lo) * scale, img)
        else:  # equalize
            res = _equalize(img)
        out.index_copy_(0, sel, res.to(out.dtype))
    return out.clamp_(0, 255)


def random_erasing(x: torch.Tensor, p: float, gen: torch.Generator | None) -> torch.Tensor:
    """Random erasing on a batch of *normalised* images: noise in one rectangle per image."""
    n, c, h, w = x.shape
    erase = torch.rand(n, generator=gen) < p
    area = torch.empty(n).uniform_(0.02, 0.33, generator=gen) * h * w
    log_ratio = torch.empty(n).uniform_(math.log(0.3), math.log(1 / 0.3), generator=gen)
    ratio = torch.exp(log_ratio)
    eh = torch.sqrt(area * ratio).round().long().clamp(1, h)
    ew = torch.sqrt(area / ratio).round().long().clamp(1, w)
    y0 = (torch.rand(n, generator=gen) * (h - eh + 1).float()).long()
    x0 = (torch.rand(n, generator=gen) * (w - ew + 1).float()).long()
    noise = torch.randn(n, c, h, w, generator=gen).to(x.device, x.dtype)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    mask = ((rows >= y0.view(-1, 1, 1)) & (rows < (y0 + eh).view(-1, 1, 1))
            & (cols >= x0.view(-1, 1, 1)) & (cols < (x0 + ew).view(-1, 1, 1))
            & erase.view(-1, 1, 1))
    return torch.where(mask.unsqueeze(1).to(x.device), noise, x)
