"""The controller's policy: an autoregressive LSTM over the decisions of the search space.

As in NASNet/MnasNet: a one-layer LSTM makes one decision per step. The input of step 0 is a
learned start vector; the input of step ``i + 1`` is an embedding of the token chosen at step
``i`` (each decision has its own embedding rows). Each decision has its own linear head from the
hidden state to ``sizes[i]`` logits. All parameters start uniform in ``±init_range`` (0.1 in the
papers).

For speed the per-decision embeddings are rows of one table and the per-decision heads are row
blocks of one linear layer; mathematically they are separate (no row is shared between
decisions). Scoring a batch of known token sequences (:meth:`LSTMPolicy.evaluate`) runs the LSTM
over the whole sequence in one call and the heads over all steps at once; sampling
(:meth:`LSTMPolicy.sample`) is sequential over decisions but vectorised over the batch.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class LSTMPolicy(nn.Module):
    """Distribution over token sequences ``t`` with ``0 <= t[i] < sizes[i]``.

    ``temperature`` divides the logits; ``tanh_constant`` (if set) then squashes them to
    ``c * tanh(logits)``, bounding every choice's probability away from 0 and 1 (ENAS/NASNet
    use 2.5 to keep exploring). Both apply to sampling and scoring alike.
    """

    def __init__(self, sizes: Sequence[int], hidden: int = 100, temperature: float = 1.0,
                 tanh_constant: float | None = None, init_range: float = 0.1,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.sizes = tuple(int(s) for s in sizes)
        self.hidden = int(hidden)
        self.temperature = float(temperature)
        self.tanh_constant = None if tanh_constant is None else float(tanh_constant)
        n = len(self.sizes)
        sizes_t = torch.tensor(self.sizes)
        offsets = torch.zeros(n, dtype=torch.long)
        offsets[1:] = torch.cumsum(sizes_t, 0)[:-1]
        max_size = max(self.sizes)
        # choice_index[i, j]: row of the head output holding choice j of decision i (padded).
        choice = torch.arange(max_size)
        valid = choice[None, :] < sizes_t[:, None]
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("valid", valid, persistent=False)
        self.register_buffer("choice_index", torch.where(valid, offsets[:, None] + choice, 0),
                             persistent=False)

        self.start = nn.Parameter(torch.empty(1, self.hidden))
        # Embedding rows for the tokens of decisions 0 .. n-2 (the last token feeds nothing).
        self.embedding = nn.Embedding(max(1, sum(self.sizes[:-1])), self.hidden)
        self.lstm = nn.LSTM(self.hidden, self.hidden, num_layers=1, batch_first=True)
        self.heads = nn.Linear(self.hidden, sum(self.sizes))
        self.reset_parameters(init_range, generator)

    @property
    def num_decisions(self) -> int:
        return len(self.sizes)

    def reset_parameters(self, init_range: float = 0.1,
                         generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-init_range, init_range, generator=generator)

    def _squash(self, logits: torch.Tensor) -> torch.Tensor:
        if self.temperature != 1.0:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def _head(self, i: int, h: torch.Tensor) -> torch.Tensor:
        lo = int(self.offsets[i])
        hi = lo + self.sizes[i]
        return self._squash(F.linear(h, self.heads.weight[lo:hi], self.heads.bias[lo:hi]))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``n`` sequences: tokens ``[n, T]`` (long) and their per-decision log-probs."""
        T = self.num_decisions
        tokens = torch.empty(n, T, dtype=torch.long)
        logp = torch.empty(n, T)
        x = self.start.expand(n, 1, self.hidden)
        state = None
        for i in range(T):
            out, state = self.lstm(x, state)
            lp = F.log_softmax(self._head(i, out[:, 0]), dim=-1)
            tok = torch.multinomial(lp.exp(), 1, generator=generator)
            tokens[:, i] = tok[:, 0]
            logp[:, i] = lp.gather(1, tok)[:, 0]
            if i + 1 < T:
                x = self.embedding(tok + self.offsets[i])
        return tokens, logp

    def evaluate(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-decision log-probs and entropies ``[n, T]`` of given token sequences ``[n, T]``."""
        n, T = tokens.shape
        if T != self.num_decisions:
            raise ValueError(f"tokens have {T} decisions, the policy has {self.num_decisions}")
        inputs = [self.start.expand(n, 1, self.hidden)]
        if T > 1:
            inputs.append(self.embedding(tokens[:, :-1] + self.offsets[:-1]))
        out, _ = self.lstm(torch.cat(inputs, dim=1))                    # [n, T, H]
        flat = self._squash(self.heads(out))                             # [n, T, sum(sizes)]
        index = self.choice_index.expand(n, T, -1)
        logits = flat.gather(2, index).masked_fill(~self.valid, float("-inf"))
        lp_all = F.log_softmax(logits, dim=-1)                           # [n, T, max_size]
        logp = lp_all.gather(2, tokens[:, :, None])[:, :, 0]
        p_lp = (lp_all.exp() * lp_all.masked_fill(~self.valid, 0.0))
        entropy = -p_lp.sum(-1)
        return logp, entropy

    @torch.no_grad()
    def mode(self) -> tuple[int, ...]:
        """The greedy sequence: the most likely choice at each step given the earlier ones."""
        T = self.num_decisions
        toks = []
        x = self.start.expand(1, 1, self.hidden)
        state = None
        for i in range(T):
            out, state = self.lstm(x, state)
            tok = int(self._head(i, out[:, 0]).argmax(-1))
            toks.append(tok)
            if i + 1 < T:
                x = self.embedding(torch.tensor([[tok]]) + self.offsets[i])
        return tuple(toks)
