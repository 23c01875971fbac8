"""Augmentation: shapes, ranges, determinism from the generator, and what each op does."""

from __future__ import annotations

import torch

from nas.training import augment


def _batch(n=64, c=1, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), generator=g).float()


def test_trivial_augment_is_seeded_keeps_shape_and_range():
    x = _batch()
    a = augment.trivial_augment(x, torch.Generator().manual_seed(3))
    b = augment.trivial_augment(x, torch.Generator().manual_seed(3))
    c = augment.trivial_augment(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 255


def test_trivial_augment_changes_some_images_and_keeps_others():
    x = _batch(n=256, c=3)
    out = augment.trivial_augment(x, torch.Generator().manual_seed(0))
    changed = (out - x).abs().flatten(1).amax(1) > 1e-3
    assert 0.5 < changed.float().mean() < 1.0  # identity is one op of 14


def test_geometric_op_at_zero_strength_is_the_identity():
    x = _batch(n=4)
    out = augment._geometric(x, ["rotate", "shear_x", "translate_y", "shear_y"],
                             torch.zeros(4))
    assert torch.allclose(out, x, atol=1e-3)


def test_equalize_spreads_a_narrow_histogram():
    x = torch.linspace(100, 120, 256).view(1, 1, 16, 16)
    out = augment._equalize(x)
    assert out.min() < 10 and out.max() > 245


def test_random_erasing_probability_and_one_rectangle():
    x = torch.zeros(200, 1, 16, 16)
    none = augment.random_erasing(x, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(none, x)
    all_ = augment.random_erasing(x, 1.0, torch.Generator().manual_seed(0))
    erased = all_ != 0
    assert erased.flatten(1).any(1).all()
    rows, cols = erased.any(3).squeeze(1), erased.any(2).squeeze(1)
    # the erased pixels of each image are exactly the product of one row band and one column band
    assert torch.equal(erased.squeeze(1), rows[:, :, None] & cols[:, None, :])
    frac = erased.flatten(1).float().mean(1)
    assert frac.min() > 0 and frac.max() <= 0.5


def test_crop_flip_moves_pixels_but_keeps_shape():
    x = _batch(n=8)
    out = augment.crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)
