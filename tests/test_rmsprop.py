"""TF-style RMSProp (nas.training.rmsprop): the same parameter trajectory as timm's RMSpropTF,
the update TF's formula gives, a state_dict that continues exactly, and a clear refusal of
torch.optim.RMSprop's state."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nas.core.errors import ConfigError
from nas.training.optim import make_optimizer
from nas.training.recipe import Recipe
from nas.training.rmsprop import RMSpropTF


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 6 * 6, 5))


def _batches(n: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 3, 6, 6, generator=g), torch.randint(0, 5, (16,), generator=g))
            for _ in range(n)]


def _groups(model: nn.Module, wd: float) -> list[dict]:
    return [{"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": wd},
            {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0}]


def _train(model: nn.Module, opt: torch.optim.Optimizer, batches, lrs) -> list[torch.Tensor]:
    """Parameters (flattened) after every step; the learning rate changes every step."""
    out = []
    for (x, y), lr in zip(batches, lrs):
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        out.append(torch.cat([p.detach().flatten() for p in model.parameters()]).clone())
    return out


@pytest.mark.parametrize("momentum,wd", [(0.9, 1e-5), (0.0, 0.0), (0.9, 0.1)])
def test_trajectory_matches_timm(momentum, wd):
    from timm_import import import_timm
    timm, why = import_timm()
    if timm is None:
        pytest.skip(why)
    from timm.optim.rmsprop_tf import RMSpropTF as TimmRMSpropTF

    steps = 40
    batches = _batches(steps)
    # warm-up then decay: the learning rate inside the momentum buffer matters only when it moves
    lrs = [0.01 * min(1.0, (i + 1) / 10) * 0.97 ** i for i in range(steps)]
    ours_model, ref_model = _net(), _net()
    ours = RMSpropTF(_groups(ours_model, wd), lr=lrs[0], alpha=0.9, eps=1e-3, momentum=momentum)
    ref = TimmRMSpropTF(_groups(ref_model, wd), lr=lrs[0], alpha=0.9, eps=1e-3,
                        momentum=momentum, foreach=False)
    a = _train(ours_model, ours, batches, lrs)
    b = _train(ref_model, ref, batches, lrs)
    start = torch.cat([p.detach().flatten() for p in _net().parameters()])
    assert (a[-1] - start).abs().max() > 1e-2  # it moved
    for i, (pa, pb) in enumerate(zip(a, b)):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=f"step {i + 1}")


def test_first_step_is_tf_formula():
    """ms starts at 1, eps inside the sqrt, lr inside the momentum buffer."""
    w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = RMSpropTF([w], lr=0.1, alpha=0.9, eps=1e-3, momentum=0.9)
    g = torch.tensor([0.02, -3.0, 0.0])
    w.grad = g.clone()
    opt.step()
    ms = 1.0 + 0.1 * (g ** 2 - 1.0)
    mom = 0.1 * g / torch.sqrt(ms + 1e-3)
    torch.testing.assert_close(w.detach(), torch.tensor([1.0, -2.0, 0.5]) - mom)
    # a second step at another learning rate: the old momentum keeps the old one
    w.grad = g.clone()
    before = w.detach().clone()
    opt.param_groups[0]["lr"] = 0.0
    opt.step()
    torch.testing.assert_close(w.detach(), before - 0.9 * mom)
    # torch.optim.RMSprop's first step is ~lr / sqrt(1 - alpha) per weight whatever the
    # gradient's size; TF's is about lr * g for small gradients
    v = nn.Parameter(torch.tensor([1.0]))
    v.grad = torch.tensor([0.02])
    torch.optim.RMSprop([v], lr=0.1, alpha=0.9, eps=1e-3, momentum=0.9).step()
    assert 1.0 - v.item() > 0.25 and abs(mom[0].item()) < 0.0022


def test_recipe_rmsprop_is_tf_style():
    opt = make_optimizer(_net(), Recipe(optimizer="rmsprop", lr=0.01, weight_decay=1e-5))
    assert isinstance(opt, RMSpropTF)
    g = opt.param_groups
    assert g[0]["eps"] == 1e-3 and g[0]["alpha"] == 0.9 and g[0]["momentum"] == 0.9
    assert g[0]["weight_decay"] == 1e-5 and g[1]["weight_decay"] == 0.0


def test_state_dict_round_trip_continues_exactly():
    batches = _batches(20, seed=3)
    lrs = [0.02] * 20
    model = _net(1)
    opt = RMSpropTF(_groups(model, 1e-4), lr=0.02, momentum=0.9)
    _train(model, opt, batches[:10], lrs[:10])
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    straight = _train(model, opt, batches[10:], lrs[10:])

    again = _net(7)  # other initial weights: everything comes from the state dicts
    again.load_state_dict(saved_model)
    opt2 = RMSpropTF(_groups(again, 1e-4), lr=0.5, momentum=0.9)
    opt2.load_state_dict(saved_opt)
    assert opt2.state_dict()["state"][0]["step"] == 10
    resumed = _train(again, opt2, batches[10:], lrs[10:])
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)


def test_refuses_torch_rmsprop_state():
    model = _net()
    torch_opt = torch.optim.RMSprop(_groups(model, 0.0), lr=0.01, momentum=0.9)
    _train(model, torch_opt, _batches(2), [0.01, 0.01])
    opt = RMSpropTF(_groups(model, 0.0), lr=0.01, momentum=0.9)
    with pytest.raises(ConfigError, match="torch.optim.RMSprop"):
        opt.load_state_dict(torch_opt.state_dict())
