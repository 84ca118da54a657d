"""Speech outcomes → ``axcl_msgs/Transcript`` (with its ``InferenceTiming``)."""

from __future__ import annotations

from typing import Optional

from axcl_msgs.msg import InferenceTiming, Transcript, TranscriptSegment

from ..models.speech.outcome import SpeechOutcome
from .stamps import seconds_to_stamp


def timing_message(whisper, rec, queue_ms: float, total_ms: float) -> InferenceTiming:
    """Where the time of one outcome went; ``whisper`` names the model (None before configure), ``rec`` is its
    :class:`~axcl_ros.models.whisper.transcriber.Recognition` (None for errors without recognition)."""
    w = whisper
    timing = InferenceTiming(model=w.model_name if w else "", backend=w.backend if w else "",
                             device=w.device if w else "", queue_ms=float(queue_ms), total_ms=float(total_ms))
    if rec is not None:
        timing.preprocess_ms = float(rec.mel_ms)
        timing.queue_ms = float(queue_ms + rec.queue_ms)
        timing.inference_ms = float(rec.run_ms)
        timing.postprocess_ms = float(rec.host_ms)
    return timing


def transcript_message(outcome: SpeechOutcome, frame_id: str, whisper: Optional[object]) -> Transcript:
    """The Transcript of ``outcome``: stamp = the segment's first sample, timed segments when recognised."""
    msg = Transcript(segment_id=int(outcome.segment_id), is_final=outcome.is_final, success=outcome.success,
                     error=outcome.error, text=outcome.text, language=outcome.language,
                     duration=float(outcome.duration_s))
    seconds_to_stamp(outcome.stamp_s, msg.header.stamp)
    msg.header.frame_id = frame_id
    rec = outcome.recognition
    if rec is not None:
        msg.segments = [TranscriptSegment(start=float(s.start), end=float(s.end), text=s.text,
                                          avg_logprob=float(s.avg_logprob),
                                          no_speech_prob=float(s.no_speech_prob)) for s in rec.result.segments]
    msg.timing = timing_message(whisper, rec, outcome.queue_wait_ms, outcome.latency_ms)
    return msg
