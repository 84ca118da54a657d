"""The speech node's logic without rclpy: audio chunks → 16 kHz mono → VAD segments → bounded recognition queue.

:class:`SpeechPipeline` owns an :class:`~axcl_ros.io.audio.AudioInput` (format checks, resampling, sample clock,
stamp continuity), a :class:`~axcl_ros.models.speech.segmenter.SpeechSegmenter` and one worker thread that recognises
segments with a ``recognize(audio, language, task)`` callable (the Whisper service). Results come out as
:class:`SpeechOutcome` objects through ``on_outcome``; speech activity changes through ``on_activity``.

Accounting rule: every segment the segmenter announces (``speech_start``) yields **exactly one** final outcome,
either a recognised transcript (``success``) or an explicit error:

* ``"queue_full"``: more than ``queue_size`` segments were waiting for recognition; the **oldest** waiting segment
  is given up (its audio freed) and reported at once, so the queue never exceeds its bound and recent speech wins;
* ``"muted"``: mute was set while the segment was open (the segmenter discards it: it may hold the robot's voice);
* ``"reset"``: the input was reset while the segment was open;
* ``"recognition_failed"``: the recogniser raised (bad language code, device error, …);
* ``"stopped"``: the pipeline stopped before the segment was recognised.

Error outcomes are delivered when they happen, so they can arrive before the transcripts of older segments still
being recognised (``segment_id`` orders them). Partial results (``partial_period_s > 0``) are best effort: at most
one waits, a newer one replaces it, and they are skipped while final segments wait.

A gap in the chunk stamps of at least ``gap_flush_s`` ends the open segment (``segment_end`` reason ``"flush"``)
before the audio after the gap is fed, so no segment spans missing audio; every gap and overlap is counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable, Deque, List, Optional

from ...io.audio import AudioInput
from ...io.audio_continuity import ContinuityEvent
from ...io.audio_format import TARGET_RATE
from ...io.stamps import stamp_to_seconds
from .outcome import FINAL, Listener, SegmentJob, SpeechOutcome
from .segmenter import PARTIAL, SEGMENT_DROPPED, SEGMENT_END, SPEECH_START, SegmentEvent, SpeechSegmenter

_log = logging.getLogger(__name__)
class SpeechPipeline:
    """Streaming speech recognition around a ``recognize`` callable (see the module docstring).

    Args:
        recognize: ``recognize(audio_f32_16k, language, task)`` → an object with ``.result.text`` and
            ``.result.language`` (a :class:`~axcl_ros.models.whisper.transcriber.Recognition`); may raise.
        segmenter: the VAD segmenter (its clock must start with this pipeline's audio).
        audio_input: converter for incoming chunks (default: NaN/Inf chunks are rejected).
        queue_size: segments that may wait for recognition (>= 1).
        language, task: defaults for recognition (a listener may override the language).
        on_outcome: called with every :class:`SpeechOutcome` (from the worker or the feeding thread).
        on_activity: called with the new speech activity (bool) when it changes.
        gap_flush_s: a stamp gap at least this long ends the open segment.
        clock: wall clock used for stamps when chunks are unstamped.
    """

    def __init__(self, recognize: Callable, segmenter: SpeechSegmenter, *, audio_input: Optional[AudioInput] = None,
                 queue_size: int = 4, language: str = "en", task: str = "transcribe",
                 on_outcome: Optional[Callable[[SpeechOutcome], None]] = None,
                 on_activity: Optional[Callable[[bool], None]] = None, gap_flush_s: float = 0.5,
                 clock: Callable[[], float] = time.time) -> None:
        if int(queue_size) < 1:
            raise ValueError(f"queue_size={queue_size} must be >= 1")
        self.recognize = recognize
        self.segmenter = segmenter
        self.audio = audio_input if audio_input is not None else AudioInput(nonfinite="reject")
        self.queue_size = int(queue_size)
        self.language = language
        self.task = task
        self.on_outcome = on_outcome
        self.on_activity = on_activity
        self.gap_flush_s = float(gap_flush_s)
        self.clock = clock
        self._lock = threading.RLock()  # audio path state (audio input, segmenter, activity)
        self._cond = threading.Condition()  # queue state
        self._finals: Deque[SegmentJob] = deque()
        self._partial: Optional[SegmentJob] = None
        self._listeners: List[Listener] = []
        self._busy: Optional[SegmentJob] = None
        self._active = False
        self._t0: Optional[float] = None
        self._running = False
        self._thread: Optional[threading.Thread] = None
        self._stats_lock = threading.Lock()
        self.stats = {
            "segments": 0, "finals": 0, "empty_finals": 0, "errors": 0, "dropped_queue_full": 0,
            "dropped_muted": 0, "dropped_reset": 0, "recognition_failed": 0, "stopped_unrecognised": 0,
            "partials": 0, "partials_replaced": 0, "partials_skipped": 0, "queue_max": 0, "gap_flushes": 0,
            "audio_s": 0.0, "recognised_audio_s": 0.0, "recognition_ms": 0.0, "worker_errors": 0,
            "outcome_callback_errors": 0,
        }

    def _count(self, key: str, value=1) -> None:
        with self._stats_lock:
            self.stats[key] += value

    # -- worker ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the recognition worker (idempotent)."""
        with self._cond:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._work, name="speech-recognition", daemon=True)
        self._thread.start()

    def stop(self, drain_timeout: float = 0.0, join_timeout: float = 30.0) -> int:
        """Wait up to ``drain_timeout`` for waiting segments, stop the worker, and report the rest as errors.

        Returns how many segments were given up (reported with reason ``"stopped"``).
        """
        self.drain(drain_timeout)
        with self._cond:
            self._running = False
            left = list(self._finals)
            self._finals.clear()
            self._partial = None
            self._cond.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=join_timeout)
            if thread.is_alive():
                _log.warning("speech pipeline: the recognition worker is still busy after %.0f s", join_timeout)
        self.worker_alive = thread is not None and thread.is_alive()
        for job in left:
            self._count("stopped_unrecognised", 1)
            self._fail(job, "stopped", "the speech node stopped before this segment was recognised")
        return len(left)

    def drain(self, timeout: float) -> bool:
        """Wait until no final segment waits or is being recognised; True when that happened in time."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._finals or (self._busy is not None and self._busy.kind == FINAL):
                left = deadline - time.monotonic()
                if left <= 0 or not self._running:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    @property
    def pending(self) -> int:
        """Final segments waiting for recognition (not counting the one being recognised)."""
        with self._cond:
            return len(self._finals)

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._running and not self._finals and self._partial is None:
                    self._cond.wait()
                if not self._running:
                    return
                if self._finals:
                    job = self._finals.popleft()
                else:
                    job, self._partial = self._partial, None
                self._busy = job
            try:
                self._run_job(job)
            except Exception:  # noqa: BLE001 - the worker must survive anything
                _log.exception("speech pipeline: unexpected error while handling segment %d", job.segment_id)
                self._count("worker_errors", 1)
            finally:
                with self._cond:
                    self._busy = None
                    self._cond.notify_all()

    def _run_job(self, job: SegmentJob) -> None:
        t_start = time.monotonic()
        try:
            rec = self.recognize(job.audio, job.language, job.task)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error outcome
            if job.kind == FINAL:
                self._count("recognition_failed", 1)
                self._fail(job, "recognition_failed", f"recognition failed: {type(exc).__name__}: {exc}",
                           queue_wait_ms=(t_start - job.t_ready) * 1000.0)
            return
        t_done = time.monotonic()
        if job.kind == FINAL:
            self._count("recognised_audio_s", job.duration_s)
            self._count("recognition_ms", (t_done - t_start) * 1000.0)
        result = rec.result
        outcome = SpeechOutcome(job.segment_id, job.kind == FINAL, True, job.stamp_s, job.duration_s,
                                job.start_sample, job.end_sample, job.reason, text=result.text,
                                language=result.language, recognition=rec,
                                queue_wait_ms=(t_start - job.t_ready) * 1000.0,
                                latency_ms=(t_done - job.t_ready) * 1000.0)
        if job.kind == FINAL:
            self._count("finals", 1)
            if not result.text.strip():
                self._count("empty_finals", 1)
        else:
            self._count("partials", 1)
        self._emit(outcome, job)

    def _fail(self, job: SegmentJob, kind: str, message: str, queue_wait_ms: float = 0.0) -> None:
        self._count("errors", 1)
        outcome = SpeechOutcome(job.segment_id, True, False, job.stamp_s, job.duration_s, job.start_sample,
                                job.end_sample, kind, language=job.language, error=message,
                                queue_wait_ms=queue_wait_ms,
                                latency_ms=(time.monotonic() - job.t_ready) * 1000.0)
        self._emit(outcome, job)

    def _emit(self, outcome: SpeechOutcome, job: SegmentJob) -> None:
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception:  # noqa: BLE001 - a failing consumer must not stop the accounting
                _log.exception("speech pipeline: on_outcome failed for segment %d", outcome.segment_id)
                self._count("outcome_callback_errors", 1)
        if outcome.is_final and job.listeners:
            if outcome.success and not outcome.text.strip():
                with self._cond:  # nothing was said after all: wait for the next segment (maybe already queued)
                    waiting = [lst for lst in job.listeners if not lst.done]
                    if self._finals:
                        self._attach(self._finals[0], waiting)
                    else:
                        self._listeners.extend(waiting)
            else:
                for lst in job.listeners:
                    lst._deliver(outcome)

    # -- listeners ---------------------------------------------------------------------------------------------
    def listen(self, language: str = "") -> Listener:
        """Wait for the next segment that ends from now on (its final outcome with text, or its error)."""
        lst = Listener(language)
        with self._cond:
            self._listeners.append(lst)
        return lst

    def cancel(self, listener: Listener) -> None:
        """Stop waiting (idempotent)."""
        with self._cond:
            if listener in self._listeners:
                self._listeners.remove(listener)
            for job in list(self._finals) + ([self._busy] if self._busy is not None else []):
                if listener in job.listeners:
                    job.listeners.remove(listener)

    # -- audio path --------------------------------------------------------------------------------------------
    def push(self, data, sample_format: int, channels: int, sample_rate: int,
             stamp_s: Optional[float] = None) -> Optional[ContinuityEvent]:
        """Feed one chunk; return its continuity event (gap/overlap) or None.

        Raises :class:`~axcl_ros.io.audio.AudioFormatError` for a bad chunk (nothing changes then).
        """
        with self._lock:
            cont = self.audio.continuity
            before = (cont.gaps, cont.overlaps)
            samples = self.audio.push(data, sample_format, channels, sample_rate, stamp_s)
            if self._t0 is None:
                self._t0 = self.clock() if not stamp_s else float(stamp_s)
            self._count("audio_s", samples.size / TARGET_RATE)
            event = cont.last_event if (cont.gaps, cont.overlaps) != before else None
            events: List[SegmentEvent] = []
            if event is not None and event.kind == "gap" and event.delta_s >= self.gap_flush_s:
                self._count("gap_flushes", 1)
                events += self.segmenter.flush()
            events += self.segmenter.feed(samples)
            self._handle(events)
        return event

    def push_msg(self, msg) -> Optional[ContinuityEvent]:
        """:meth:`push` for an ``axcl_msgs/AudioChunk``-like message (``header.stamp`` of 0 = unstamped)."""
        return self.push(msg.data, msg.sample_format, msg.channels, msg.sample_rate,
                         stamp_to_seconds(msg.header.stamp))

    def set_muted(self, muted: bool) -> None:
        """Mute (recognition suppressed; an open segment is discarded and reported) or unmute."""
        with self._lock:
            self._handle(self.segmenter.set_muted(bool(muted)))

    @property
    def muted(self) -> bool:
        """True while muted."""
        return self.segmenter.muted

    @property
    def speech_active(self) -> bool:
        """True while a segment is open."""
        return self._active

    def flush(self) -> None:
        """End the open segment now (it is recognised), e.g. before deactivation."""
        with self._lock:
            events = self.segmenter.feed(self.audio.flush())
            events += self.segmenter.flush()
            self._handle(events)

    def _stamp(self, sample: int) -> float:
        stamp = self.audio.stamp_of(sample)
        if stamp is None:
            stamp = (self._t0 if self._t0 is not None else self.clock()) + sample / TARGET_RATE
        return stamp

    def _handle(self, events: List[SegmentEvent]) -> None:
        now = time.monotonic()
        for ev in events:
            if ev.kind == SPEECH_START:
                self._count("segments", 1)
            elif ev.kind == SEGMENT_END:
                self._enqueue_final(SegmentJob(FINAL, ev.segment_id, ev.audio, ev.start_sample, ev.end_sample,
                                         self._stamp(ev.start_sample), ev.reason, self.language, self.task, now))
            elif ev.kind == PARTIAL:
                self._enqueue_partial(SegmentJob(PARTIAL, ev.segment_id, ev.audio, ev.start_sample, ev.end_sample,
                                           self._stamp(ev.start_sample), ev.reason, self.language, self.task, now))
            elif ev.kind == SEGMENT_DROPPED:
                key = "dropped_muted" if ev.reason == "muted" else "dropped_reset"
                self._count(key, 1)
                job = SegmentJob(FINAL, ev.segment_id, None, ev.start_sample, ev.end_sample,
                           self._stamp(ev.start_sample), ev.reason, self.language, self.task, now)
                with self._cond:
                    if self._partial is not None and self._partial.segment_id == ev.segment_id:
                        self._partial = None
                why = "mute was set" if ev.reason == "muted" else "the audio input was reset"
                self._fail(job, ev.reason, f"segment discarded without recognition: {why} while it was open")
        active = self.segmenter.in_speech
        if active != self._active:
            self._active = active
            if self.on_activity is not None:
                self.on_activity(active)

    @staticmethod
    def _attach(job: SegmentJob, listeners: List[Listener]) -> None:
        """Give ``listeners`` the outcome of ``job`` (not started yet); a listener's language applies to it."""
        if not listeners:
            return
        if not job.listeners:
            chosen = next((lst.language for lst in listeners if lst.language), "")
            if chosen:
                job.language = chosen
        job.listeners.extend(listeners)

    def _enqueue_final(self, job: SegmentJob) -> None:
        dropped: Optional[SegmentJob] = None
        with self._cond:
            if self._listeners:
                self._attach(job, self._listeners)
                self._listeners = []
            if self._partial is not None and self._partial.segment_id == job.segment_id:
                self._partial = None
            if len(self._finals) >= self.queue_size:
                dropped = self._finals.popleft()
                dropped.audio = None
            self._finals.append(job)
            if len(self._finals) > self.stats["queue_max"]:
                self._count("queue_max", len(self._finals) - self.stats["queue_max"])
            self._cond.notify_all()
        if dropped is not None:
            self._count("dropped_queue_full", 1)
            self._fail(dropped, "queue_full",
                       f"recognition queue full ({self.queue_size} segments waiting): the oldest waiting segment "
                       "was given up without recognition")

    def _enqueue_partial(self, job: SegmentJob) -> None:
        with self._cond:
            if self._finals:
                self._count("partials_skipped", 1)
                return
            if self._partial is not None:
                self._count("partials_replaced", 1)
            self._partial = job
            self._cond.notify_all()

    # -- reporting ---------------------------------------------------------------------------------------------
    def summary(self) -> dict:
        """Counters for diagnostics, including the input's and the real-time factor of recognition."""
        with self._stats_lock:
            out = dict(self.stats)
        cont = self.audio.continuity
        out.update({"queue_depth": self.pending, "queue_size": self.queue_size, "muted": self.muted,
                    "speech_active": self._active, "chunks": self.audio.chunks, "rejected_chunks": self.audio.rejected,
                    "gaps": cont.gaps, "overlaps": cont.overlaps, "gap_s": round(cont.gap_s, 3),
                    "overlap_s": round(cont.overlap_s, 3), "unstamped_chunks": cont.unstamped,
                    "format_changes": self.audio.format_changes})
        audio_s = out["recognised_audio_s"]
        out["rtf"] = out["recognition_ms"] / 1000.0 / audio_s if audio_s > 0 else 0.0
        return out
