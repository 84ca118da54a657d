"""A growing buffer of audio samples on an absolute sample clock (:class:`SampleTape`): the segmenter keeps the
samples of the open segment and its padding here."""

from __future__ import annotations

import numpy as np


class SampleTape:
    """Samples on an absolute clock, appended at the end and trimmed at the front (amortised O(1))."""

    def __init__(self) -> None:
        self._data = np.zeros(1 << 15, dtype=np.float32)
        self._lo = 0  # index in _data of absolute sample `start`
        self._hi = 0
        self.start = 0

    @property
    def end(self) -> int:
        """Absolute index one past the last sample held."""
        return self.start + self._hi - self._lo

    def append(self, x: np.ndarray) -> None:
        """Add samples at the end."""
        n = x.size
        if self._hi + n > self._data.size:
            keep = self._data[self._lo:self._hi]
            size = self._data.size
            while keep.size + n > size // 2:
                size *= 2
            data = np.zeros(size, dtype=np.float32)
            data[: keep.size] = keep
            self._data, self._lo, self._hi = data, 0, keep.size
        self._data[self._hi:self._hi + n] = x
        self._hi += n

    def get(self, a: int, b: int) -> np.ndarray:
        """Copy of absolute samples ``[a, b)`` (must be held)."""
        if a < self.start or b > self.end or a > b:
            raise IndexError(f"samples [{a}, {b}) not held (holding [{self.start}, {self.end}))")
        return self._data[self._lo + a - self.start:self._lo + b - self.start].copy()

    def trim(self, a: int) -> None:
        """Forget samples before absolute index ``a``."""
        a = min(max(a, self.start), self.end)
        self._lo += a - self.start
        self.start = a

    def restart(self, position: int) -> None:
        """Drop everything; the next appended sample is absolute ``position``."""
        self._lo = self._hi = 0
        self.start = position
