"""Audio stamp continuity: :class:`ContinuityChecker` compares each chunk's header stamp with the previous stamp plus
its sample count and reports gaps and overlaps as :class:`ContinuityEvent` objects."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ContinuityEvent:
    """A discontinuity between two consecutive chunks.

    ``kind`` is ``"gap"`` (audio missing: the chunk starts later than the previous one ended) or ``"overlap"``
    (the chunk starts earlier, e.g. a duplicated or re-stamped chunk, or time going backwards). ``delta_s`` is
    ``stamp - expected_stamp`` (positive for gaps), ``samples`` the same in input samples.
    """

    kind: str
    stamp_s: float
    expected_stamp_s: float
    delta_s: float
    samples: int


class ContinuityChecker:
    """Check that each chunk's header stamp follows from the previous stamp plus its sample count.

    A stamp is the time of the first sample of the chunk. Stamps of exactly 0.0 mean "unstamped" and are not checked
    (counted in ``unstamped``). A change of sample rate restarts the expectation without an event.
    """

    def __init__(self, tolerance_s: float = 0.01):
        if not tolerance_s >= 0:
            raise ValueError(f"tolerance_s={tolerance_s!r} must be >= 0")
        self.tolerance_s = float(tolerance_s)
        self.reset()

    def reset(self) -> None:
        """Forget the previous chunk and zero the counters."""
        self._expected: Optional[float] = None
        self._rate: Optional[int] = None
        self.chunks = 0
        self.gaps = 0
        self.overlaps = 0
        self.unstamped = 0
        self.gap_s = 0.0
        self.overlap_s = 0.0
        self.last_event: Optional[ContinuityEvent] = None

    def check(self, stamp_s: float, n_samples: int, sample_rate: int) -> Optional[ContinuityEvent]:
        """Record one chunk; return a :class:`ContinuityEvent` when it does not continue the previous one."""
        if n_samples < 0 or sample_rate <= 0:
            raise ValueError(f"n_samples={n_samples} and sample_rate={sample_rate} must be >= 0 and > 0")
        self.chunks += 1
        if stamp_s == 0.0 or not math.isfinite(stamp_s):
            self.unstamped += 1
            self._expected = None
            return None
        event = None
        if self._expected is not None and self._rate == sample_rate:
            delta = stamp_s - self._expected
            if abs(delta) > self.tolerance_s:
                kind = "gap" if delta > 0 else "overlap"
                event = ContinuityEvent(kind, stamp_s, self._expected, delta, int(round(delta * sample_rate)))
                if kind == "gap":
                    self.gaps += 1
                    self.gap_s += delta
                else:
                    self.overlaps += 1
                    self.overlap_s -= delta
                self.last_event = event
        self._rate = sample_rate
        self._expected = stamp_s + n_samples / sample_rate
        return event
