"""Policy-gradient controllers: PPO (MnasNet) and REINFORCE (Zoph & Le), sharing one LSTM policy,
one result buffer and one moving-average baseline.

The search is an episodic problem with one action per decision and a single reward at the end,
so every decision of an architecture gets the same advantage ``reward - baseline``, where the
baseline is an exponential moving average of the rewards told (decay ``baseline_decay``).

Asynchrony: ``ask`` samples from the current policy and stores each decision's log-probability
in the :class:`~controller.base.Proposal`. ``tell`` buffers the result; every ``batch_size``
results the policy is updated and its version increases. A proposal sampled by an older version
still carries the log-probs of the policy that sampled it, so PPO's per-decision ratio
``pi_new(a_i | a_<i) / pi_sampler(a_i | a_<i)`` is taken against the policy that actually
sampled it, not the one of the last update. That corrects each decision given its earlier
decisions, but not for those earlier decisions having been drawn by the older policy (the
whole architecture's importance weight is the product of its decision ratios); this is PPO's
usual per-step approximation, and the clipping bounds how far a stale sample can push the
policy. Workers never wait for an update. A proposal the policy did not sample (no stored
log-probs) is treated as on-policy. REINFORCE ignores the stored log-probs (plain on-policy
gradient, as in Zoph & Le), so stale samples bias it a little.

Diagnostics after each update use CleanRL's names: ``losses/policy_loss``, ``losses/entropy``
(mean per decision, nats), ``losses/approx_kl`` (from the sampling policies to the updated one,
per decision), ``losses/clipfrac`` (PPO only: share of decision ratios outside the clip range,
averaged over the optimisation steps), ``reward/mean``, ``reward/baseline`` (after the batch),
``policy/version`` (after the update); also ``reward/max``, ``policy/staleness`` (mean number of
updates between sampling and this update) and ``losses/grad_norm`` (before clipping, last step).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from controller.base import (
    Proposal,
    Strategy,
    boolean,
    nonnegative_float,
    optional,
    positive_float,
    positive_int,
    unit_interval,
)
from controller.policy import LSTMPolicy
from nas.core.errors import ConfigError

# Uniform architectures that set prior_reject's threshold.
PRIOR_SAMPLE = 2000
# Architectures sampled per warm-start step.
PRIOR_BATCH = 64
# The warm start's Adam learning rate (its own optimizer, dropped after it).
PRIOR_LR = 1e-2

ADVANTAGES = ("baseline", "zscore", "rank")


def _advantage(name: str, v: Any) -> str:
    if v not in ADVANTAGES:
        raise ConfigError(f"option {name!r} must be one of {', '.join(ADVANTAGES)}, got {v!r}")
    return v


_SHARED_OPTIONS = {
    # NASNet/MnasNet controller: one-layer LSTM of 100 units, init ±0.1.
    "hidden": (100, positive_int),
    "init_range": (0.1, positive_float),
    # Tuned on bench/bench_landscape.py (a rugged landscape with proxy-sized noise; see
    # docs/results/controller-landscape.md): 10 children per update, Adam 1e-3 (PPO; REINFORCE 3e-3), entropy
    # 1e-3. NASNet/MnasNet used 20, 3.5e-4 and 1e-5; with those PPO's pick after 300 children
    # was worse on all 20 held-out landscapes. Moving-average baseline 0.95 as in the papers.
    "batch_size": (10, positive_int),
    "baseline_decay": (0.95, unit_interval),
    "lr": (1e-3, positive_float),
    "entropy_weight": (1e-3, nonnegative_float),
    "normalize_advantages": (False, boolean),
    # How a batch's rewards become advantages: "baseline" (reward - moving average, the
    # papers'), or normalised per update so one lucky child does not steer the policy:
    # "zscore" ((reward - batch mean) / batch std) or "rank" (the batch's ranks, centred and
    # scaled to unit variance). See bench/bench_tabular.py.
    "advantage": ("baseline", _advantage),
    # The reward's known factor (the reward at accuracy 1: its MACs term, told by the driver
    # with set_prior): before the first proposal, prior_steps policy-gradient steps tilt the
    # policy towards known ** prior_weight (a maximum-entropy fit), 0: off. The weight is in
    # the reward's own units: with the soft reward's w = -0.07, prior_weight 30 tilts towards
    # MACs ** -2.1, and a reward with a weaker MACs term is tilted less. prior_reject q: a
    # proposal whose known factor is below the q-quantile of uniform architectures' is
    # resampled (null: off).
    "prior_weight": (0.0, nonnegative_float),
    "prior_steps": (20, positive_int),
    "prior_reject": (None, optional(unit_interval)),
    "max_grad_norm": (1.0, optional(positive_float)),
    "temperature": (1.0, positive_float),
    "tanh_constant": (None, optional(positive_float)),
    # How many proposals one policy forward samples at once; the block is dropped at each update,
    # so every proposal still comes from the current policy. None: batch_size.
    "prefetch": (None, optional(positive_int)),
}


class _PolicyGradient(Strategy):
    OPTIONS = _SHARED_OPTIONS

    def __init__(self, sizes, seed: int = 0, **options: Any) -> None:
        super().__init__(sizes, seed, **options)
        o = self.options
        self._generator = torch.Generator().manual_seed(self.seed)
        self.policy = LSTMPolicy(self.sizes, hidden=o["hidden"], temperature=o["temperature"],
                                 tanh_constant=o["tanh_constant"], init_range=o["init_range"],
                                 generator=self._generator)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=o["lr"])
        self.version = 0
        self._baseline: float | None = None
        self._adv_sq: float | None = None      # moving average of squared advantages
        self._buffer: list[tuple[Proposal, float]] = []
        self._prefetched: list[Proposal] = []
        self._prior: Any = None
        self._threshold: float | None = None   # prior_reject's, once computed
        self._warmed = False

    # -- the known part of the reward --------------------------------------------------------

    def set_prior(self, prior: Any) -> None:
        """``prior(tokens) -> float > 0``: the factor of the reward known before training
        (the driver gives the reward at accuracy 1, i.e. its MACs term). Used only when
        ``prior_weight`` > 0 or ``prior_reject`` is set; not saved with the state (the driver
        sets it again). A policy warm-started before a save stays warm after the load."""
        self._prior = prior
        self._threshold = None

    def _uses_prior(self) -> bool:
        o = self.options
        return self._prior is not None and (o["prior_weight"] > 0 or o["prior_reject"] is not None)

    def _prior_scores(self, tokens: torch.Tensor) -> torch.Tensor:
        """The log of the known factor (a factor at or under 0, e.g. the absolute form's
        far beyond its target, counts as 1e-6)."""
        return torch.tensor([math.log(max(float(self._prior(tuple(t))), 1e-6))
                             for t in tokens.tolist()])

    def _reject_threshold(self) -> float:
        if self._threshold is None:
            # Its own generator: the policy's stream stays what it is without a prior.
            g = torch.Generator().manual_seed(self.seed + 7919)
            sizes = torch.tensor(self.sizes, dtype=torch.float64)
            u = (torch.rand(PRIOR_SAMPLE, len(self.sizes), generator=g, dtype=torch.float64)
                 * sizes).long()
            self._threshold = float(torch.quantile(self._prior_scores(u),
                                                   self.options["prior_reject"]))
        return self._threshold

    def _warm_start(self) -> None:
        """Fit the policy to ``known ** w`` (maximum entropy): a fresh Adam at PRIOR_LR,
        ``prior_steps`` steps of PRIOR_BATCH sampled architectures, the loss
        ``-(w log known(a) - batch mean) log pi(a) - H(pi)`` with the entropy of the whole
        sequence, whose optimum is ``pi(a) ~ exp(w log known(a))``."""
        self._warmed = True
        w = self.options["prior_weight"]
        if w <= 0:
            return
        opt = torch.optim.Adam(self.policy.parameters(), lr=PRIOR_LR)
        for _ in range(self.options["prior_steps"]):
            tokens, _ = self.policy.sample(PRIOR_BATCH, self._generator)
            score = w * self._prior_scores(tokens)
            adv = score - score.mean()
            logp, entropy = self.policy.evaluate(tokens)
            loss = -(adv[:, None] * logp).sum(1).mean() - entropy.sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    # -- asking ------------------------------------------------------------------------------

    def _ask(self) -> Proposal:
        if self._uses_prior() and not self._warmed:
            if self.n_asked == 0 and self.version == 0:
                self._warm_start()
            else:  # a policy that has sampled or learned already (a one-shot handoff)
                self._warmed = True
        if not self._prefetched:
            n = self.options["prefetch"] or self.options["batch_size"]
            tokens, logp = self._sample(n)
            self._prefetched = [
                Proposal(tuple(t), tuple(lp), self.version)
                for t, lp in zip(tokens.tolist(), logp.tolist())]
        return self._prefetched.pop(0)

    def _sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` samples of the policy; with ``prior_reject``, those under the threshold are
        drawn again (up to 50 rounds; then the best of the rest are kept)."""
        tokens, logp = self.policy.sample(n, self._generator)
        if not self._uses_prior() or self.options["prior_reject"] is None:
            return tokens, logp
        threshold = self._reject_threshold()
        keep = self._prior_scores(tokens) >= threshold
        for _ in range(50):
            if bool(keep.all()):
                break
            t2, lp2 = self.policy.sample(n, self._generator)
            ok2 = self._prior_scores(t2) >= threshold
            take = (~keep).nonzero()[:, 0][:int(ok2.sum())]
            tokens[take] = t2[ok2][:len(take)]
            logp[take] = lp2[ok2][:len(take)]
            keep[take] = True
        return tokens, logp

    # -- telling -----------------------------------------------------------------------------

    def _tell(self, proposal: Proposal, reward: float) -> dict[str, float] | None:
        self._buffer.append((proposal, reward))
        if len(self._buffer) < self.options["batch_size"]:
            return None
        batch, self._buffer = self._buffer, []
        return self._update(batch)

    def _advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """``reward - baseline`` with the baseline as it was before this batch, then the moving
        averages take in the batch's rewards in the order they were told; or the batch's own
        z-scores or ranks (``advantage``; the moving averages are still kept, for the
        diagnostics)."""
        mode = self.options["advantage"]
        if mode != "baseline":
            self._track(rewards)
            if len(rewards) < 2:
                return torch.zeros_like(rewards)
            if mode == "rank":
                ranks = rewards.argsort().argsort().to(rewards.dtype)  # ties: order told
                x = ranks
            else:
                x = rewards
            std = float(x.std())
            return (x - x.mean()) / std if std > 0 else torch.zeros_like(rewards)
        decay = self.options["baseline_decay"]
        if self._baseline is None:
            self._baseline = float(rewards.mean())
        adv = rewards - self._baseline
        if self._adv_sq is None:
            self._adv_sq = float(adv.pow(2).mean())
        scale = math.sqrt(self._adv_sq)
        for r in rewards.tolist():
            self._adv_sq = decay * self._adv_sq + (1 - decay) * (r - self._baseline) ** 2
            self._baseline = decay * self._baseline + (1 - decay) * r
        if self.options["normalize_advantages"]:
            # Scale only (no re-centring, so the moving-average baseline keeps its meaning), by a
            # running RMS rather than the batch's own spread: a batch of equal rewards stays a
            # small push, not a division by zero.
            adv = adv / max(scale, 1e-8)
        return adv

    def _track(self, rewards: torch.Tensor) -> None:
        decay = self.options["baseline_decay"]
        if self._baseline is None:
            self._baseline = float(rewards.mean())
        for r in rewards.tolist():
            self._baseline = decay * self._baseline + (1 - decay) * r

    def _batch_tensors(self, batch: list[tuple[Proposal, float]]):
        tokens = torch.tensor([p.tokens for p, _ in batch], dtype=torch.long)
        rewards = torch.tensor([r for _, r in batch], dtype=torch.float32)
        old_logp = torch.empty(tokens.shape)
        missing = [i for i, (p, _) in enumerate(batch) if not p.logp]
        for i, (p, _) in enumerate(batch):
            if p.logp:
                old_logp[i] = torch.tensor(p.logp)
        if missing:
            # A proposal the policy did not sample (a hand-picked seed architecture) is treated
            # as on-policy: its old log-prob is the current policy's.
            with torch.no_grad():
                old_logp[missing] = self.policy.evaluate(tokens[missing])[0]
        staleness = sum(self.version - min(p.version, self.version) for p, _ in batch) / len(batch)
        return tokens, rewards, old_logp, staleness

    def _step(self, loss: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.options["max_grad_norm"]
        if max_norm is None:
            norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in self.policy.parameters()
                                  if p.grad is not None))
        else:
            norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), max_norm)
        self.optimizer.step()
        return float(norm)

    def _update(self, batch: list[tuple[Proposal, float]]) -> dict[str, float]:
        tokens, rewards, old_logp, staleness = self._batch_tensors(batch)
        adv = self._advantages(rewards)
        stats = self._optimise(tokens, old_logp, adv)
        self.version += 1
        self._prefetched = []
        with torch.no_grad():
            new_logp, _ = self.policy.evaluate(tokens)
            logratio = new_logp - old_logp
            approx_kl = float(((logratio.exp() - 1) - logratio).mean())
        return {
            **stats,
            "losses/approx_kl": approx_kl,
            "reward/mean": float(rewards.mean()),
            "reward/max": float(rewards.max()),
            "reward/baseline": float(self._baseline),
            "policy/version": float(self.version),
            "policy/staleness": float(staleness),
        }

    def _optimise(self, tokens: torch.Tensor, old_logp: torch.Tensor,
                  adv: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    # -- state -------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "policy": {k: v.detach().clone() for k, v in self.policy.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self._generator.get_state(),
            "version": self.version,
            "baseline": self._baseline,
            "adv_sq": self._adv_sq,
            "buffer": [[p.to_dict(), r] for p, r in self._buffer],
            "prefetched": [p.to_dict() for p in self._prefetched],
            "warmed": self._warmed,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._generator.set_state(state["generator"])
        self.version = int(state["version"])
        self._baseline = None if state["baseline"] is None else float(state["baseline"])
        self._adv_sq = None if state["adv_sq"] is None else float(state["adv_sq"])
        self._buffer = [(Proposal.from_dict(p), float(r)) for p, r in state["buffer"]]
        self._prefetched = [Proposal.from_dict(p) for p in state["prefetched"]]
        self._warmed = bool(state.get("warmed", False))

    def restart_rewards(self) -> None:
        """The policy and its optimizer stay; the moving-average baseline and advantage scale
        start again from the next batch, and results buffered for an update are dropped (an
        update must not mix the two scales)."""
        self._baseline = None
        self._adv_sq = None
        self._buffer = []

    def greedy(self) -> Proposal:
        """The policy's most likely architecture (step-wise argmax); does not count as an ask."""
        return Proposal(self.policy.mode(), version=self.version)


class PPO(_PolicyGradient):
    """MnasNet's controller: the LSTM policy trained with PPO's clipped surrogate.

    Each decision is one action; its ratio ``pi_new / pi_sampler`` uses the log-prob stored in
    the proposal, and all decisions of an architecture share its advantage.

    Options (defaults): ``hidden`` (100), ``init_range`` (0.1), ``baseline_decay`` (0.95):
    NASNet/MnasNet's controller. ``batch_size`` (10), ``lr`` (1e-3, Adam), ``entropy_weight``
    (1e-3): tuned on the noisy landscape of ``bench/bench_landscape.py`` (the papers' 20, 3.5e-4
    and 1e-5 learn more slowly there; ``docs/results/controller-landscape.md``). ``clip`` (0.2) and ``epochs`` (4)
    as in CleanRL, in ``minibatches`` (1) steps per epoch: the whole batch per step, since small
    minibatches of noisy rewards are noisy gradients.
    ``max_grad_norm`` (1.0) only guards against a rare huge step. ``normalize_advantages``
    (False) would divide advantages by their running RMS; off by default because the entropy
    weight was tuned against raw rewards and the planted objective does not need it.
    ``temperature`` (1.0), ``tanh_constant`` (None: off; ENAS uses 2.5), ``prefetch`` (None =
    ``batch_size``). ``prior_weight`` (10): before its first proposal the policy is fitted to
    ``known ** 10``, where ``known`` is the reward at accuracy 1 (its MACs term, which the
    search's driver tells with :meth:`set_prior`); with the soft reward (w = -0.07) that is
    ``MACs ** -0.7``, and a policy told no prior, or one that has sampled already, is not
    tilted (``prior_steps`` 20; ``advantage`` "baseline", ``prior_reject`` null: measured, not
    better; docs/results/controller-tabular.md). With these defaults (no prior: the planted
    objective has no MACs term) PPO reaches the planted optimum over the 43 MnasNet decisions
    in about 650 children (341 to 1,369 over 5 seeds; ``bench/bench_controller.py``).
    """

    name = "ppo"
    OPTIONS = {
        **_SHARED_OPTIONS,
        # Measured on bench/bench_tabular.py (Channel-Bench-Macro, 1.5 points of proxy noise,
        # 20 seeds): PPO's pick at 60 and 100 children above random search's with 95 %
        # intervals apart on both spaces (off: level with random); on bench_landscape.py's
        # rugged landscape, where accuracy grows with MACs, level with it off at 60 to 300
        # (not shown either way). docs/results/controller-tabular.md.
        "prior_weight": (10.0, nonnegative_float),
        "clip": (0.2, positive_float),
        "epochs": (4, positive_int),
        "minibatches": (1, positive_int),
    }

    def _optimise(self, tokens, old_logp, adv) -> dict[str, float]:
        o = self.options
        n = tokens.shape[0]
        k = min(o["minibatches"], n)
        losses, entropies, clipfracs, norm = [], [], [], 0.0
        for _ in range(o["epochs"]):
            order = torch.randperm(n, generator=self._generator) if k > 1 else torch.arange(n)
            for idx in order.tensor_split(k):
                logp, entropy = self.policy.evaluate(tokens[idx])
                ratio = (logp - old_logp[idx]).exp()
                a = adv[idx, None]
                surrogate = torch.minimum(ratio * a, ratio.clamp(1 - o["clip"], 1 + o["clip"]) * a)
                policy_loss = -surrogate.mean()
                entropy_mean = entropy.mean()
                norm = self._step(policy_loss - o["entropy_weight"] * entropy_mean)
                losses.append(float(policy_loss.detach()))
                entropies.append(float(entropy_mean.detach()))
                clipfracs.append(float(((ratio - 1).abs() > o["clip"]).float().mean()))
        return {
            "losses/policy_loss": sum(losses) / len(losses),
            "losses/entropy": sum(entropies) / len(entropies),
            "losses/clipfrac": sum(clipfracs) / len(clipfracs),
            "losses/grad_norm": norm,
        }


class Reinforce(_PolicyGradient):
    """Zoph & Le's controller: one policy-gradient step per batch with the moving-average baseline.

    Same policy, buffer, baseline and defaults as :class:`PPO` (without ``clip``, ``epochs``,
    ``minibatches``), except ``prior_weight`` (0: not measured for REINFORCE) and ``lr`` (3e-3): one gradient step per batch where PPO takes four,
    tuned on ``bench/bench_landscape.py`` like PPO's.
    """

    name = "reinforce"
    OPTIONS = {**_SHARED_OPTIONS, "lr": (3e-3, positive_float)}

    def _optimise(self, tokens, old_logp, adv) -> dict[str, float]:
        logp, entropy = self.policy.evaluate(tokens)
        policy_loss = -(adv[:, None] * logp).mean()
        entropy_mean = entropy.mean()
        norm = self._step(policy_loss - self.options["entropy_weight"] * entropy_mean)
        return {
            "losses/policy_loss": float(policy_loss.detach()),
            "losses/entropy": float(entropy_mean.detach()),
            "losses/grad_norm": norm,
        }
