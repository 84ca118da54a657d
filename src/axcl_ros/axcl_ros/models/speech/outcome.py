"""What the speech pipeline delivers and queues: :class:`SpeechOutcome` (one segment's transcript or error),
:class:`Listener` (a wait for the next one, listen-once) and :class:`SegmentJob` (a segment waiting for recognition)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from ...io.audio_format import TARGET_RATE

FINAL = "final"




@dataclass
class SpeechOutcome:
    """The result for one segment (final) or for the audio of an open segment so far (partial)."""

    segment_id: int
    is_final: bool
    success: bool
    stamp_s: float  #: time of the segment's first sample (speech start, padding included)
    duration_s: float
    start_sample: int
    end_sample: int
    reason: str  #: why the segment ended ("silence", "max_length", "flush", …) or the error kind
    text: str = ""
    language: str = ""
    error: str = ""
    recognition: object = None  #: what ``recognize`` returned (None for errors without recognition)
    queue_wait_ms: float = 0.0  #: time the segment waited in the recognition queue
    latency_ms: float = 0.0  #: from the end of the segment to this outcome


class Listener:
    """A wait for the next final outcome with text, or an error (listen-once)."""

    def __init__(self, language: str = "") -> None:
        self.language = language
        self.outcome: Optional[SpeechOutcome] = None
        self._event = threading.Event()

    @property
    def done(self) -> bool:
        """True once an outcome was delivered."""
        return self._event.is_set()

    def wait(self, timeout: Optional[float] = None) -> Optional[SpeechOutcome]:
        """The outcome, or None when ``timeout`` passed first."""
        self._event.wait(timeout)
        return self.outcome

    def _deliver(self, outcome: SpeechOutcome) -> None:
        self.outcome = outcome
        self._event.set()


@dataclass
class SegmentJob:
    """One segment (final) or open segment (partial) waiting for recognition, with who waits for it."""

    kind: str
    segment_id: int
    audio: Optional[np.ndarray]
    start_sample: int
    end_sample: int
    stamp_s: float
    reason: str
    language: str
    task: str
    t_ready: float
    listeners: List[Listener] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        """Length of the segment's audio in seconds."""
        return (self.end_sample - self.start_sample) / TARGET_RATE
