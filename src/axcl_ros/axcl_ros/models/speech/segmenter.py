"""Streaming speech segmentation: 16 kHz samples in, speech segments (with padded audio) out.

:class:`SpeechSegmenter` runs a VAD (:mod:`axcl_ros.models.vad`) on consecutive 512-sample frames of an absolute
sample clock (sample 0 = first sample fed) and emits :class:`SegmentEvent` objects:

* ``speech_start``: a segment is open (confirmed after ``min_speech_ms`` of voiced frames; ``reason`` is
  ``"speech"``, or ``"split"`` for the continuation of a segment cut at ``max_segment_s``);
* ``partial`` (when ``partial_interval_s > 0``): every interval while a segment is open, with the audio so far;
* ``segment_end``: the segment closed, with its audio; ``reason`` is ``"silence"`` (``min_silence_ms`` of
  non-speech), ``"max_length"`` (split), ``"flush"`` or ``"muted"`` (``mute_policy="end"``);
* ``segment_dropped``: an open segment was discarded (``reason`` ``"muted"`` with the default
  ``mute_policy="drop"``, or ``"reset"``); it carries no audio.

Decisions depend only on the frames, never on how the samples were chunked, so any chunking gives the same events.
Speech longer than ``max_segment_s`` is cut at the quietest frame (lowest VAD probability, then lowest energy) of
the last ``split_search_s`` seconds; the two parts are contiguous (no padding at the cut), so all speech is kept.

Muting (self-hearing suppression while the robot speaks): while muted, fed samples advance the clock but are
discarded. Muting drops an open segment by default (a half-heard utterance that may already contain the robot's
own voice is not worth transcribing); the drop is reported as a ``segment_dropped`` event. ``mute_policy="end"``
closes it as ``segment_end`` (reason ``"muted"``) instead.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from ..vad import FRAME_SAMPLES, SAMPLE_RATE
from .sample_tape import SampleTape

SPEECH_START = "speech_start"
PARTIAL = "partial"
SEGMENT_END = "segment_end"
SEGMENT_DROPPED = "segment_dropped"

#: longest segment Whisper takes in one window
MAX_SEGMENT_LIMIT_S = 30.0

_IDLE, _CANDIDATE, _SPEECH, _CONTINUATION = "idle", "candidate", "speech", "continuation"


@dataclass(frozen=True)
class SegmentEvent:
    """One segmentation event; sample positions are on the segmenter's absolute 16 kHz clock.

    ``start_sample`` is the padded segment start. ``end_sample`` (exclusive) is the padded end for
    ``segment_end``, and the position the decision was taken at for ``speech_start``/``partial``/``segment_dropped``.
    ``audio`` (float32) is ``samples[start_sample:end_sample]`` for ``partial`` and ``segment_end``, else None.
    """

    kind: str
    segment_id: int
    start_sample: int
    end_sample: int
    reason: str = ""
    audio: Optional[np.ndarray] = None

    @property
    def start_s(self) -> float:
        """``start_sample`` in seconds."""
        return self.start_sample / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        """``end_sample`` in seconds."""
        return self.end_sample / SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        """``end_s - start_s``."""
        return (self.end_sample - self.start_sample) / SAMPLE_RATE


def _smooth(x: np.ndarray, width: int = 3) -> np.ndarray:
    """Moving average over ``width`` samples, edges repeated."""
    if x.size < 2:
        return x
    half = width // 2
    return np.convolve(np.pad(x, half, mode="edge"), np.full(width, 1.0 / width), mode="valid")


class SpeechSegmenter:
    """Streaming VAD-based segmenter (see the module docstring for the events).

    ``vad`` is any object with ``probability(frame512) -> float`` and ``reset()`` (:mod:`axcl_ros.models.vad`).

    * ``threshold`` (default: the VAD's): a frame at or above it is voiced; frames below ``neg_threshold`` (default
      ``threshold - 0.15``) are silent, frames in between neither (hysteresis).
    * ``min_speech_ms``: voiced time needed before ``speech_start``; shorter blips are rejected
      (``stats["rejected_short"]``).
    * ``min_silence_ms``: silent time that ends a segment (the end-of-utterance latency).
    * ``speech_pad_ms``: audio kept before the first voiced frame and after the last one (never overlapping the
      previous segment, never reaching into muted audio).
    * ``max_segment_s`` (<= 30, Whisper's window): longer speech is split (see :meth:`_split`).
    * ``partial_interval_s``: 0 disables ``partial`` events.
    * ``split_search_s``: how far back a split looks for the quietest point.
    * ``mute_policy``: ``"drop"`` (default) or ``"end"``, see the module docstring.

    :attr:`stats` counts ``samples``, ``frames``, ``speech_frames``, ``segments`` (announced), ``splits``,
    ``partials``, ``rejected_short``, ``dropped``, ``muted_samples`` and the ``max_probability`` seen.
    """

    def __init__(self, vad, threshold: Optional[float] = None, min_speech_ms: float = 250.0,
                 min_silence_ms: float = 500.0, speech_pad_ms: float = 200.0, max_segment_s: float = 20.0,
                 partial_interval_s: float = 0.0, split_search_s: float = 3.0,
                 neg_threshold: Optional[float] = None, mute_policy: str = "drop"):
        if threshold is None:
            threshold = float(getattr(vad, "threshold", 0.5))
        if neg_threshold is None:
            neg_threshold = max(0.01, threshold - 0.15)
        if not 0.0 < threshold < 1.0 or not 0.0 < neg_threshold <= threshold:
            raise ValueError(f"need 0 < neg_threshold ({neg_threshold}) <= threshold ({threshold}) < 1")
        if not 0.0 < max_segment_s <= MAX_SEGMENT_LIMIT_S:
            raise ValueError(f"max_segment_s={max_segment_s} must be in (0, {MAX_SEGMENT_LIMIT_S}]")
        if min(min_speech_ms, min_silence_ms, speech_pad_ms, partial_interval_s) < 0:
            raise ValueError("min_speech_ms, min_silence_ms, speech_pad_ms and partial_interval_s must be >= 0")
        if not 0.0 < split_search_s < max_segment_s:
            raise ValueError(f"split_search_s={split_search_s} must be in (0, max_segment_s={max_segment_s})")
        if min_speech_ms / 1000.0 >= max_segment_s:
            raise ValueError(f"min_speech_ms={min_speech_ms} must be shorter than max_segment_s={max_segment_s}")
        if mute_policy not in ("drop", "end"):
            raise ValueError(f"mute_policy={mute_policy!r}; expected 'drop' or 'end'")
        if int(getattr(vad, "frame_samples", FRAME_SAMPLES)) != FRAME_SAMPLES:
            raise ValueError(f"VAD frame size {vad.frame_samples} != {FRAME_SAMPLES}")
        self.vad = vad
        self.threshold = float(threshold)
        self.neg_threshold = float(neg_threshold)
        ms = SAMPLE_RATE // 1000
        self.min_speech = int(round(min_speech_ms * ms))
        self.min_silence = int(round(min_silence_ms * ms))
        self.pad = int(round(speech_pad_ms * ms))
        self.max_segment = int(round(max_segment_s * SAMPLE_RATE))
        self.partial_interval = int(round(partial_interval_s * SAMPLE_RATE))
        self.split_search = int(round(split_search_s * SAMPLE_RATE))
        self.mute_policy = mute_policy
        self._tape = SampleTape()
        self._frames: deque = deque(maxlen=self.split_search // FRAME_SAMPLES + 1)  # (start, prob, energy)
        self.stats = {
            "samples": 0, "frames": 0, "speech_frames": 0, "segments": 0, "splits": 0, "partials": 0,
            "rejected_short": 0, "dropped": 0, "muted_samples": 0, "max_probability": 0.0,
        }
        self._muted = False
        self._total = 0
        self._segment_id = 0
        self._restart(0)

    # -- public API ------------------------------------------------------------------------------------------------
    @property
    def position(self) -> int:
        """Samples fed so far (the absolute clock)."""
        return self._total

    @property
    def muted(self) -> bool:
        """True while fed audio is discarded."""
        return self._muted

    @property
    def in_speech(self) -> bool:
        """True while an announced segment is open."""
        return self._state == _SPEECH

    @property
    def buffered_samples(self) -> int:
        """Samples currently held (open segment plus pre-roll); bounded by ``max_segment_s`` plus a frame."""
        return self._tape.end - self._tape.start

    def feed(self, samples: np.ndarray) -> List[SegmentEvent]:
        """Feed 16 kHz float32 mono samples (any length); return the events they caused, in order.

        Raises ``ValueError`` (before changing any state) for non-1-D input or NaN/Inf samples.
        """
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"samples must be 1-D mono at 16 kHz, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"samples hold {int(np.count_nonzero(~np.isfinite(x)))} NaN/Inf values")
        self._total += x.size
        self.stats["samples"] += x.size
        if self._muted:
            self.stats["muted_samples"] += x.size
            self._restart(self._total)
            return []
        self._tape.append(x)
        events: List[SegmentEvent] = []
        while self._frame_pos + FRAME_SAMPLES <= self._total:
            self._step(events)
        self._trim()
        return events

    def flush(self) -> List[SegmentEvent]:
        """End an open segment now (``segment_end``, reason ``"flush"``), discard a pending one, reset the VAD."""
        events: List[SegmentEvent] = []
        if self._state == _SPEECH:
            end = self._total if self._silence_start is None else min(self._silence_start + self.pad, self._total)
            self._end(events, end, "flush")
        elif self._state == _CANDIDATE:
            self.stats["rejected_short"] += 1
        self._restart(self._total)
        return events

    def set_muted(self, muted: bool) -> List[SegmentEvent]:
        """Mute or unmute; muting ends or drops an open segment (``mute_policy``) and returns that event."""
        events: List[SegmentEvent] = []
        muted = bool(muted)
        if muted and not self._muted:
            if self._state == _SPEECH:
                if self.mute_policy == "end":
                    self._end(events, self._frame_pos, "muted")
                else:
                    self._drop(events, "muted")
            self._restart(self._total)
        elif not muted and self._muted:
            self._restart(self._total)
        self._muted = muted
        return events

    def reset(self) -> List[SegmentEvent]:
        """Drop an open segment (``segment_dropped``, reason ``"reset"``) and restart the VAD at the current position.

        Call it on a discontinuity of the input (gap, rate change) so one segment never spans it.
        """
        events: List[SegmentEvent] = []
        if self._state == _SPEECH:
            self._drop(events, "reset")
        self._restart(self._total)
        return events

    # -- internals -------------------------------------------------------------------------------------------------
    def _restart(self, position: int) -> None:
        self._state = _IDLE
        self._frame_pos = position
        self._floor = position  # no segment may start before this (previous end, restart point)
        self._seg_start = position
        self._silence_start: Optional[int] = None
        self._voiced = 0
        self._last_partial = position
        self._frames.clear()
        self._tape.restart(position)
        self.vad.reset()

    def _trim(self) -> None:
        if self._state == _IDLE:
            keep = max(self._floor, self._frame_pos - self.pad)
        else:
            keep = self._seg_start
        self._tape.trim(keep)

    def _event(self, kind: str, start: int, end: int, reason: str, audio: bool = False) -> SegmentEvent:
        return SegmentEvent(kind, self._segment_id, start, end, reason, self._tape.get(start, end) if audio else None)

    def _announce(self, events: List[SegmentEvent], reason: str) -> None:
        self._segment_id += 1
        self._state = _SPEECH
        self._last_partial = self._frame_pos
        self.stats["segments"] += 1
        events.append(self._event(SPEECH_START, self._seg_start, self._frame_pos, reason))

    def _end(self, events: List[SegmentEvent], end: int, reason: str) -> None:
        end = min(max(end, self._seg_start), self._seg_start + self.max_segment)
        events.append(self._event(SEGMENT_END, self._seg_start, end, reason, audio=True))
        self._state = _IDLE
        self._floor = end
        self._silence_start = None
        self._voiced = 0

    def _drop(self, events: List[SegmentEvent], reason: str) -> None:
        self.stats["dropped"] += 1
        events.append(self._event(SEGMENT_DROPPED, self._seg_start, self._frame_pos, reason))
        self._state = _IDLE

    def _step(self, events: List[SegmentEvent]) -> None:
        f = self._frame_pos
        frame = self._tape.get(f, f + FRAME_SAMPLES)
        prob = float(self.vad.probability(frame))
        self._frame_pos = end = f + FRAME_SAMPLES
        st = self.stats
        st["frames"] += 1
        st["max_probability"] = max(st["max_probability"], prob)
        voiced = prob >= self.threshold
        silent = prob < self.neg_threshold
        st["speech_frames"] += voiced
        if self._state != _IDLE:
            self._frames.append((f, prob, float(np.dot(frame, frame))))
        if self._state == _IDLE:
            if not voiced:
                return
            self._state = _CANDIDATE
            self._seg_start = max(f - self.pad, self._floor)
            self._voiced = 0
            self._silence_start = None
            self._frames.clear()
            self._frames.append((f, prob, float(np.dot(frame, frame))))
        if voiced:
            self._voiced += FRAME_SAMPLES
            self._silence_start = None
        elif silent and self._silence_start is None:
            self._silence_start = f
        if self._state == _CANDIDATE and self._voiced >= self.min_speech:
            self._announce(events, "speech")
        elif self._state == _CONTINUATION and voiced:
            self._announce(events, "split")
        if self._silence_start is not None and end - self._silence_start >= self.min_silence:
            if self._state == _SPEECH:
                self._end(events, min(self._silence_start + self.pad, end), "silence")
                return
            if self._state == _CANDIDATE:
                st["rejected_short"] += 1
            self._state = _IDLE
            return
        if end - self._seg_start >= self.max_segment:
            if self._state == _SPEECH:
                self._split(events, end)
            else:  # never confirmed / no speech since the split within max_segment: noise
                if self._state == _CANDIDATE:
                    st["rejected_short"] += 1
                self._state = _IDLE
            return
        if self._state == _SPEECH and self.partial_interval and end - self._last_partial >= self.partial_interval:
            self._last_partial = end
            st["partials"] += 1
            events.append(self._event(PARTIAL, self._seg_start, end, "interval", audio=True))

    def _split(self, events: List[SegmentEvent], end: int) -> None:
        """Cut the open segment at the quietest recent point; the rest continues as a new segment.

        Frames of the last ``split_search`` samples are scored by their VAD probability and level (both averaged
        over 3 frames, ~100 ms, so a pause between words wins over a short stop consonant): the cut goes to the
        centre of the lowest-level frame among those whose probability is within 0.05 of the lowest.
        """
        lo = max(self._seg_start + FRAME_SAMPLES, end - self.split_search)
        hi = self._seg_start + self.max_segment - FRAME_SAMPLES // 2
        window = [fr for fr in self._frames if lo <= fr[0] <= hi]
        if not window:
            cut = min(end, self._seg_start + self.max_segment)
        else:
            probs = _smooth(np.array([w[1] for w in window]))
            level = _smooth(10.0 * np.log10(np.array([w[2] for w in window]) / FRAME_SAMPLES + 1e-10))
            near = np.flatnonzero(probs <= probs.min() + 0.05)[::-1]  # latest first: ties keep segments long
            best = int(near[np.argmin(level[near])])
            cut = window[best][0] + FRAME_SAMPLES // 2
        self.stats["splits"] += 1
        self._end(events, cut, "max_length")
        self._seg_start = cut
        self._floor = cut
        after = [fr for fr in self._frames if fr[0] >= cut]
        self._voiced = FRAME_SAMPLES * sum(fr[1] >= self.threshold for fr in after)
        silent_run = None
        for start, prob, _ in after:
            if prob >= self.threshold:
                silent_run = None
            elif prob < self.neg_threshold and silent_run is None:
                silent_run = start
        self._silence_start = silent_run
        self._state = _CONTINUATION
        if self._voiced:
            self._announce(events, "split")
