"""RMSProp as TensorFlow computes it (``tf.compat.v1.train.RMSPropOptimizer``, the optimizer
of the EfficientNet and MnasNet papers), which differs from ``torch.optim.RMSprop`` where it
matters most, at the start of training:

- the running average of squared gradients starts at one (PyTorch's at zero, so that its
  first steps are about ``lr / sqrt(1 - decay)`` per weight, ~3x the learning rate, whatever
  the gradient's size);
- ``eps`` is added inside the square root (``sqrt(ms + eps)``: with eps 1e-3 a floor of
  ~0.032 on the denominator; PyTorch adds it outside, a floor of 1e-3);
- the learning rate is applied inside the momentum buffer (``mom = momentum * mom + lr * g /
  sqrt(ms + eps)``; ``w -= mom``), so a change of learning rate acts on new gradients only;
- weight decay, when given, is the coupled L2 penalty (added to the gradient, as TF's
  regulariser losses are), not decoupled.

Per weight, with gradient ``g`` (plus ``weight_decay * w``)::

    ms  <- ms + (1 - alpha) * (g**2 - ms)          # ms starts at 1
    mom <- momentum * mom + lr * g / sqrt(ms + eps)
    w   <- w - mom                                  # (momentum 0: w - lr * g / sqrt(ms + eps))

Checked against timm's ``RMSpropTF`` (tests/test_rmsprop.py).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from nas.core.errors import ConfigError

_MARK = "tf_style"  # in every parameter group: tells this optimizer's state from PyTorch's


class RMSpropTF(torch.optim.Optimizer):
    """TensorFlow-style RMSProp (see the module docstring).

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        alpha: decay of the squared-gradient average (TF's ``decay``).
        eps: added inside the square root.
        momentum: momentum of the update (0: none).
        weight_decay: coupled L2 penalty.
    """

    def __init__(self, params: Iterable[Any], lr: float = 0.01, alpha: float = 0.9,
                 eps: float = 1e-3, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        if not lr >= 0.0:
            raise ValueError(f"RMSpropTF: learning rate {lr!r} must be >= 0")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"RMSpropTF: alpha {alpha!r} must be in [0, 1)")
        if not eps > 0.0:
            raise ValueError(f"RMSpropTF: eps {eps!r} must be > 0")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"RMSpropTF: momentum {momentum!r} must be in [0, 1)")
        if not weight_decay >= 0.0:
            raise ValueError(f"RMSpropTF: weight decay {weight_decay!r} must be >= 0")
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps, "momentum": momentum,
                                  "weight_decay": weight_decay, _MARK: True})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # torch.optim.RMSprop keeps state under the same names (square_avg, momentum_buffer)
        # with another meaning (its momentum buffer holds no learning rate): continuing from
        # it would take a step of ~1/lr times the intended size.
        groups = state_dict.get("param_groups", [])
        if any(not g.get(_MARK, False) for g in groups):
            raise ConfigError("the checkpoint's optimizer state is torch.optim.RMSprop's (written "
                              "before rmsprop became TF-style RMSProp); it cannot be continued "
                              "with this version: start the run afresh")
        super().load_state_dict(state_dict)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
            momentum, wd = group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("RMSpropTF does not take sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                    if momentum > 0:
                        state["momentum_buffer"] = torch.zeros_like(
                            p, memory_format=torch.preserve_format)
                state["step"] += 1
                g = p.grad if wd == 0 else p.grad.add(p, alpha=wd)
                ms = state["square_avg"]
                ms.add_(g.square().sub_(ms), alpha=1.0 - alpha)
                denom = ms.add(eps).sqrt_()
                if momentum > 0:
                    if "momentum_buffer" not in state:  # momentum switched on later
                        state["momentum_buffer"] = torch.zeros_like(p)
                    buf = state["momentum_buffer"]
                    buf.mul_(momentum).addcdiv_(g, denom, value=lr)
                    p.sub_(buf)
                else:
                    p.addcdiv_(g, denom, value=-lr)
        return loss
