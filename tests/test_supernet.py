"""The supernet: a path's forward equals the exported network's, weights cut and written back
round-trip, the plan counts what the module holds, scoring modes, and joint training through
the engine continued from a checkpoint takes the steps it would have taken."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nas.arch.builder import count_model_params
from nas.arch.cost import count_params
from nas.arch.rounding import as_trained
from nas.core.errors import SpaceError
from nas.core.files import config_path
from nas.supernet.model import Supernet, shrink
from nas.supernet.plan import check_shareable, plan_supernet, shared_params
from search_space import SearchSpace

# A space unlike the bundled one: kernels 3/5/7, expansions 2/4/6, squeeze-excite 0.5, a head
# of 0 (the classifier reads the last block), absolute filters and layers, divisor 4.
ODD_SPACE = {
    "name": "odd", "channel_divisor": 4,
    "fixed": {"resolution": 64, "stem": 12, "stem_stride": 1, "head": 0, "dropout": 0.1,
              "drop_path_rate": 0.3},
    "global": {"activation": ["relu6", "silu", "relu"]},
    "defaults": {"op": ["conv", "ds", "mbconv2", "mbconv4", "mbconv6"], "kernel": [3, 5, 7],
                 "se": [0.0, 0.25, 0.5], "skip": ["pool", "identity", "none"]},
    "blocks": [
        {"out": 8, "repeats": 1, "stride": 1, "filters": [8, 12, 16], "layers": [1, 2]},
        {"out": 20, "repeats": 2, "stride": 2, "filter_multipliers": [0.5, 1.0, 1.5],
         "layer_offsets": [-1, 0, 2]},
        {"out": 24, "repeats": 1, "stride": 2, "op": ["mbconv6", "ds"], "kernel": [7, 3],
         "filters": [12, 24], "layers": [1, 3], "skip": ["pool", "none"]},
    ],
}


def mnasnet() -> SearchSpace:
    return SearchSpace.from_yaml(config_path("mnasnet-space"))


def covering_tokens(space: SearchSpace, rng: np.random.Generator,
                    rounds: int = 2) -> list[tuple[int, ...]]:
    """Token sequences in which every choice of every decision occurs ``rounds`` times, in a
    random order per decision (so choices meet different neighbours each round)."""
    sizes = space.sizes()
    out = []
    for _ in range(rounds):
        orders = [rng.permutation(n) for n in sizes]
        for i in range(max(sizes)):
            out.append(tuple(int(order[i % len(order)]) for order in orders))
    return out


def scrambled(sn: Supernet, rng: np.random.Generator, space: SearchSpace) -> Supernet:
    """Batch-norm affine weights and running statistics that differ from their defaults."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in sn.state_dict().items():
            if name.endswith(("bn.weight", "bn.bias")):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if name.endswith("weight")
                        else torch.randn(t.shape, generator=g) * 0.1)
    sn.train()
    for _ in range(3):
        sn.set_path(space.sample_tokens(rng))
        sn(torch.randn(4, sn.in_channels, 16, 16, generator=g))
    return sn.eval()


@pytest.mark.parametrize("which", ["mnasnet", "odd"])
def test_subnet_forward_equals_the_supernet_path(which):
    space = mnasnet() if which == "mnasnet" else SearchSpace.from_dict(ODD_SPACE)
    width, size, classes, chans = (0.25, 16, 10, 1) if which == "mnasnet" else (1.0, 12, 7, 3)
    rng = np.random.default_rng(1)
    torch.manual_seed(0)
    sn = scrambled(Supernet(space, width, size, classes, chans), rng, space)
    x = torch.randn(3, chans, size, size, generator=torch.Generator().manual_seed(1))
    tokens_list = covering_tokens(space, rng) + [space.sample_tokens(rng) for _ in range(4)]
    for d_idx, d in enumerate(space.decisions()):  # every op, kernel, width, ... occurs
        assert {t[d_idx] for t in tokens_list} == set(range(d.size))
    for tokens in tokens_list:
        sn.set_path(tokens)
        with torch.no_grad():
            path = sn(x)
        model = sn.subnet(tokens).eval()
        with torch.no_grad():
            alone = model(x)
        torch.testing.assert_close(alone, path, atol=1e-5, rtol=1e-5)
        # The standalone network is the builder's, and the cost model counts it.
        spec = as_trained(space.decode(tokens), width=width, resolution=size)
        assert model.spec == spec
        assert count_model_params(model) == count_params(spec, classes, chans)


def test_subnet_forward_in_training_mode_matches_too():
    # Same random draws (dropout, drop path) in the same order: the same output.
    space = SearchSpace.from_dict(ODD_SPACE)
    rng = np.random.default_rng(2)
    sn = Supernet(space, 1.0, 12, 5, 3)
    x = torch.randn(4, 3, 12, 12)
    for tokens in covering_tokens(space, rng, rounds=1)[:6]:
        sn.train()
        sn.set_path(tokens)
        model = sn.subnet(tokens).train()
        torch.manual_seed(5)
        a = sn(x)
        torch.manual_seed(5)
        b = model(x)
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def test_weights_round_trip_through_a_subnet():
    space = SearchSpace.from_dict(ODD_SPACE)
    rng = np.random.default_rng(3)
    sn = Supernet(space, 1.0, 12, 5, 3)
    before = {k: v.clone() for k, v in sn.state_dict().items()}
    tokens = space.sample_tokens(rng)
    model = sn.subnet(tokens)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(1.0)
    sn.absorb(tokens, model)
    again = sn.subnet(tokens)
    for name, t in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], t, rtol=0, atol=0)
    # Exactly the path's slices changed, each by 1; everything else is as it was.
    changed = 0
    for name, t in sn.state_dict().items():
        if not t.is_floating_point():
            continue
        moved = t != before[name]
        assert torch.equal(t[moved], before[name][moved] + 1), name
        changed += int(moved.sum())
    assert changed == sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
    # A network of other tokens is refused.
    other = next(t for t in (space.sample_tokens(rng) for _ in range(50))
                 if not space.decode(t).same_architecture(space.decode(tokens)))
    with pytest.raises(ValueError):
        sn.absorb(other, model)


def test_shrink_takes_the_centre_of_a_kernel_and_the_first_channels():
    w = torch.arange(4 * 3 * 7 * 7, dtype=torch.float32).view(4, 3, 7, 7)
    part = shrink(w, (2, 3, 3, 3))
    assert part.shape == (2, 3, 3, 3)
    torch.testing.assert_close(part, w[:2, :, 2:5, 2:5])
    # A view: writing it writes the shared weight.
    assert part.untyped_storage().data_ptr() == w.untyped_storage().data_ptr()
    assert shrink(torch.arange(10.0), (4,)).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        shrink(w, (5, 3, 7, 7))


@pytest.mark.parametrize("which,width", [("mnasnet", 0.5), ("mnasnet", 1.0), ("odd", 1.0)])
def test_the_plan_counts_what_the_supernet_holds(which, width):
    space = mnasnet() if which == "mnasnet" else SearchSpace.from_dict(ODD_SPACE)
    sn = Supernet(space, width, 32, 10, 1)
    assert shared_params(sn.plan, 10, 1) == sum(p.numel() for p in sn.parameters())
    # The widest path of every block fits its slots.
    plan = plan_supernet(space, width)
    assert [len(b) for b in plan.slots] == [max(b.layers) for b in space.blocks]


def test_a_supernet_too_large_is_refused_in_one_line():
    with pytest.raises(SpaceError) as e:
        check_shareable(mnasnet(), 1.0, 10, 1, max_params=1_000_000)
    msg = str(e.value)
    assert "\n" not in msg and "shared parameters" in msg and "oneshot.max_params" in msg


def test_choices_a_supernet_trains_badly_under_are_named_and_the_shared_space_has_none():
    from nas.supernet.plan import sharing_warnings
    lines = sharing_warnings(mnasnet())
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert "op kinds" in lines[0] and "blocks 1, 2, 3, 4, 5, 6, 7" in lines[0]
    assert "skips" in lines[1] and "space='shared-space'" in lines[1]
    assert sharing_warnings(SearchSpace.from_yaml(config_path("shared-space"))) == []


def test_scoring_modes():
    from nas.supernet.score import Scorer
    from nas.training.feeder import Feeder

    space = SearchSpace.from_dict(ODD_SPACE)
    rng = np.random.default_rng(4)
    torch.manual_seed(0)
    sn = scrambled(Supernet(space, 1.0, 12, 5, 3), rng, space)
    images = np.random.default_rng(0).integers(0, 255, (64, 3, 12, 12), dtype=np.uint8)
    labels = np.random.default_rng(1).integers(0, 5, 64).astype(np.int64)
    from nas.data import ImageData
    data = ImageData(images, labels, 5, "random")
    stats = data.channel_stats()
    feed = Feeder(data, None, torch.device("cpu"), stats, None, False)
    scorer = Scorer(sn, feed, feed, "batch", 2, 16, np.random.default_rng(0))
    rows = np.arange(64)
    tokens = space.sample_tokens(rng)
    running = {k: v.clone() for k, v in sn.state_dict().items() if "running" in k}
    accs = {bn: scorer.accuracy(tokens, rows, bn=bn) for bn in ("batch", "running", "recalibrate")}
    assert all(0.0 <= a <= 1.0 for a in accs.values())
    # Scoring leaves the shared statistics and the selected path alone.
    for k, v in sn.state_dict().items():
        if "running" in k:
            torch.testing.assert_close(v, running[k], rtol=0, atol=0)
    # Batch mode is what a path with batch statistics computes.
    sn.set_path(tokens)
    sn.eval()
    with torch.no_grad(), sn.batch_statistics():
        logits = torch.cat([sn(feed.batch(rows[i:i + 16])[0]) for i in range(0, 64, 16)])
    assert accs["batch"] == pytest.approx(
        (logits.argmax(1) == torch.as_tensor(labels)).float().mean().item())


def test_a_split_supernet_keeps_one_copy_per_activation_and_paths_equal_their_subnets():
    from nas.supernet.model import SplitSupernet, make_supernet
    from nas.supernet.plan import copies
    space = SearchSpace.from_dict(ODD_SPACE)  # three activations
    rng = np.random.default_rng(4)
    torch.manual_seed(0)
    sn = make_supernet(space, 1.0, 12, 5, 3, split="activation")
    assert isinstance(sn, SplitSupernet) and list(sn.parts) == ["relu6", "silu", "relu"]
    one = shared_params(sn.plan, 5, 3)
    assert sum(p.numel() for p in sn.parameters()) == one * copies(space, "activation") == 3 * one
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    for tokens in covering_tokens(space, rng, rounds=1):
        act = space.decode(tokens).activation
        sn.set_path(tokens)
        assert sn.current is sn.parts[act] and sn.spec.activation == act
        sn.train()
        sn.zero_grad(set_to_none=True)
        sn(x).sum().backward()  # a path trains its own activation's copy and nothing else
        for name, p in sn.named_parameters():
            if not name.startswith(f"parts.{act}."):
                assert p.grad is None, name
        sn.eval()
        with torch.no_grad():
            torch.testing.assert_close(sn.subnet(tokens).eval()(x), sn(x), atol=1e-5, rtol=1e-5)


def test_a_split_supernet_saves_each_tensor_once_and_loads_back_whatever_path_was_last():
    from nas.supernet.model import make_supernet
    space = SearchSpace.from_dict(ODD_SPACE)
    rng = np.random.default_rng(7)
    torch.manual_seed(1)
    sn = make_supernet(space, 1.0, 12, 5, 3, split="activation")
    last = next(t for t in iter(lambda: space.sample_tokens(rng), None)
                if space.decode(t).activation != "relu6")  # not the first copy
    sn.set_path(last)
    state = sn.state_dict()
    assert all(k.startswith("parts.") for k in state)
    torch.manual_seed(2)
    fresh = make_supernet(space, 1.0, 12, 5, 3, split="activation")
    fresh.load_state_dict(state)
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, state[k], msg=k)


def test_a_split_supernet_writes_a_subnet_back_into_its_own_copy_only():
    from nas.supernet.model import make_supernet
    space = SearchSpace.from_dict(ODD_SPACE)
    rng = np.random.default_rng(5)
    sn = make_supernet(space, 1.0, 12, 5, 3, split="activation")
    tokens = space.sample_tokens(rng)
    act = space.decode(tokens).activation
    before = {k: v.clone() for k, v in sn.state_dict().items()}
    model = sn.subnet(tokens)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    sn.absorb(tokens, model)
    changed = {k for k, v in sn.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(f"parts.{act}.") for k in changed)
    for name, t in sn.subnet(tokens).state_dict().items():
        torch.testing.assert_close(t, model.state_dict()[name])


def test_a_split_is_checked_and_counted_before_anything_is_built():
    from nas.core.errors import ConfigError
    from nas.supernet.model import make_supernet
    from nas.supernet.settings import SupernetSettings
    from nas.training.recipe import Recipe
    with pytest.raises(ValueError, match="only the activation"):
        make_supernet(mnasnet(), 0.25, 16, 10, 1, split="kernel")
    with pytest.raises(ConfigError) as e:
        SupernetSettings(Recipe(), split="kernel")
    assert "oneshot.split" in str(e.value) and "\n" not in str(e.value)
    space = mnasnet()  # activations relu and silu: a split doubles the weights
    plan, n = check_shareable(space, 0.25, 10, 1, max_params=10 ** 9)
    _, n2 = check_shareable(space, 0.25, 10, 1, max_params=10 ** 9, split="activation")
    assert n == shared_params(plan, 10, 1) and n2 == 2 * n
    with pytest.raises(SpaceError):
        check_shareable(space, 0.25, 10, 1, max_params=n2 - 1, split="activation")


def test_without_bn_affine_a_training_step_leaves_every_scale_and_shift_at_one_and_zero():
    from nas.supernet.model import SuperBN, make_supernet
    from nas.training.optim import make_optimizer
    from nas.training.recipe import Recipe
    space = SearchSpace.from_dict(ODD_SPACE)
    rng = np.random.default_rng(6)
    sn = make_supernet(space, 1.0, 12, 5, 3, split="activation", bn_affine=False)
    norms = [m for m in sn.modules() if isinstance(m, SuperBN)]
    assert norms and not any(m.weight.requires_grad or m.bias.requires_grad for m in norms)
    opt = make_optimizer(sn, Recipe(optimizer="rmsprop", lr=0.1, weight_decay=0.1))
    tokens = space.sample_tokens(rng)
    sn.set_path(tokens)
    sn.train()
    sn(torch.randn(4, 3, 12, 12)).sum().backward()
    opt.step()
    for m in norms:
        assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    model = sn.subnet(tokens)
    for name, t in model.state_dict().items():
        if name.endswith("bn.weight"):
            assert torch.all(t == 1), name
