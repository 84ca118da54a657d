"""Next-token choice from logits: greedy, or temperature / top-k / top-p sampling with a seeded generator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    """How to pick the next token. ``temperature == 0`` is greedy (argmax, the first index on ties).

    ``top_k`` keeps the k most likely tokens (0 = all); ``top_p`` keeps the smallest set whose probability reaches p
    (1.0 = all); ``seed`` makes sampling repeatable (None = from the OS).
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: Optional[int] = None

    def validate(self) -> None:
        """Raise ``ValueError`` for values outside their ranges."""
        if not (0.0 <= self.temperature <= 10.0) or not np.isfinite(self.temperature):
            raise ValueError(f"temperature must be in [0, 10], got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not (0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        """True when the choice is the argmax (temperature 0 or top_k 1)."""
        return self.temperature == 0.0 or self.top_k == 1


class Sampler:
    """Chooses tokens for one generation; holds the random state so a seed gives one repeatable sequence."""

    def __init__(self, params: SamplingParams) -> None:
        params.validate()
        self.params = params
        self._rng = np.random.default_rng(params.seed)

    def __call__(self, logits: np.ndarray) -> int:
        """The next token id for ``logits`` (1-D, float)."""
        p = self.params
        if p.greedy:
            return int(np.argmax(logits))
        x = logits.astype(np.float64) / p.temperature
        if p.top_k and p.top_k < x.size:
            idx = np.argpartition(-x, p.top_k - 1)[:p.top_k]
        else:
            idx = np.arange(x.size)
        order = idx[np.argsort(-x[idx], kind="stable")]
        probs = np.exp(x[order] - x[order[0]])
        probs /= probs.sum()
        if p.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), p.top_p) + 1)
            order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
        return int(order[self._rng.choice(order.size, p=probs)])
