"""models.speech.segmenter state machine, driven by a scripted VAD (probability = frame mean), so bounds are exact."""

import numpy as np
import pytest

from axcl_ros.models.speech.segmenter import (
    PARTIAL,
    SEGMENT_DROPPED,
    SEGMENT_END,
    SPEECH_START,
    SpeechSegmenter,
)

F = 512  # samples per VAD frame


class ScriptedVad:
    """Probability = mean of the frame (times ``gain``, capped at 1): the test signal scripts the VAD."""

    frame_samples = F
    threshold = 0.5

    def __init__(self, gain=1.0):
        self.gain = gain
        self.resets = 0

    def probability(self, frame):
        assert frame.shape == (F,) and frame.dtype == np.float32
        return min(1.0, float(frame.mean()) * self.gain)

    def reset(self):
        self.resets += 1


def sig(*pieces):
    """Concatenate ``(value, n_frames)`` pieces into a float32 signal."""
    return np.concatenate([np.full(n * F, v, np.float32) for v, n in pieces])


def run(seg, x, chunks=None):
    events = []
    if chunks is None:
        events += seg.feed(x)
    else:
        i, k = 0, 0
        while i < x.size:
            events += seg.feed(x[i:i + chunks[k % len(chunks)]])
            i += chunks[k % len(chunks)]
            k += 1
    return events


def kinds(events):
    return [e.kind for e in events]


def test_single_segment_bounds_padding_and_audio():
    seg = SpeechSegmenter(ScriptedVad())
    x = sig((0.0, 40), (0.9, 60), (0.0, 40))
    ev = run(seg, x)
    assert kinds(ev) == [SPEECH_START, SEGMENT_END]
    start, end = ev
    first_voiced = 40 * F
    assert start.start_sample == first_voiced - seg.pad
    confirm_frames = -(-seg.min_speech // F)
    assert start.end_sample == first_voiced + confirm_frames * F  # confirmed after min_speech of voiced frames
    assert start.audio is None and start.reason == "speech"
    silence_start = 100 * F
    assert end.reason == "silence" and end.start_sample == start.start_sample
    assert end.end_sample == silence_start + seg.pad
    assert end.segment_id == start.segment_id == 1
    np.testing.assert_array_equal(end.audio, x[end.start_sample:end.end_sample])
    assert end.duration_s == pytest.approx((end.end_sample - end.start_sample) / 16000)
    assert seg.stats["segments"] == 1 and seg.stats["speech_frames"] == 60 and seg.stats["frames"] == 140


def test_blip_shorter_than_min_speech_is_rejected():
    seg = SpeechSegmenter(ScriptedVad(), min_speech_ms=250)
    assert run(seg, sig((0.0, 20), (0.9, 5), (0.0, 40))) == []
    assert seg.stats["rejected_short"] == 1 and seg.stats["segments"] == 0


def test_pause_shorter_than_min_silence_keeps_one_segment_longer_splits():
    one = run(SpeechSegmenter(ScriptedVad()), sig((0, 20), (0.9, 30), (0.0, 10), (0.9, 30), (0, 40)))
    assert kinds(one) == [SPEECH_START, SEGMENT_END]
    two = run(SpeechSegmenter(ScriptedVad()), sig((0, 20), (0.9, 30), (0.0, 20), (0.9, 30), (0, 40)))
    assert kinds(two) == [SPEECH_START, SEGMENT_END, SPEECH_START, SEGMENT_END]
    assert [e.segment_id for e in two] == [1, 1, 2, 2]


def test_padding_never_overlaps_previous_segment():
    seg = SpeechSegmenter(ScriptedVad(), speech_pad_ms=400, min_silence_ms=300)
    ev = run(seg, sig((0, 30), (0.9, 30), (0.0, 12), (0.9, 30), (0, 40)))
    ends = [e for e in ev if e.kind == SEGMENT_END]
    assert len(ends) == 2
    # the first end is clamped to where the decision was taken, the second start to the first end
    assert ends[0].end_sample == 60 * F + -(-seg.min_silence // F) * F
    assert ends[1].start_sample == ends[0].end_sample


def test_hysteresis_between_thresholds_does_not_end_speech():
    seg = SpeechSegmenter(ScriptedVad(), threshold=0.5)
    assert seg.neg_threshold == pytest.approx(0.35)
    ev = run(seg, sig((0, 20), (0.9, 20), (0.4, 40), (0.9, 20), (0, 40)))
    assert kinds(ev) == [SPEECH_START, SEGMENT_END]
    assert ev[1].end_sample == 100 * F + seg.pad
    ev = run(SpeechSegmenter(ScriptedVad()), sig((0, 20), (0.9, 20), (0.2, 40), (0.9, 20), (0, 40)))
    assert kinds(ev) == [SPEECH_START, SEGMENT_END, SPEECH_START, SEGMENT_END]


def test_long_speech_is_split_at_the_pause_and_keeps_everything():
    # 25 s of speech with one short pause 18.6 s in: max 20 s -> cut inside the pause
    pause = (580, 586)
    x = sig((0, 30), (0.9, pause[0] - 30), (0.1, pause[1] - pause[0]), (0.9, 830 - pause[1]), (0, 40))
    seg = SpeechSegmenter(ScriptedVad(), max_segment_s=20.0, min_silence_ms=500)
    ev = run(seg, x)
    assert kinds(ev) == [SPEECH_START, SEGMENT_END, SPEECH_START, SEGMENT_END]
    first, second = ev[1], ev[3]
    assert first.reason == "max_length" and ev[2].reason == "split"
    assert pause[0] * F <= first.end_sample < pause[1] * F
    assert second.start_sample == first.end_sample  # contiguous: nothing lost at the cut
    assert first.duration_s <= 20.0 and second.duration_s <= 20.0
    assert first.start_sample <= 30 * F and second.end_sample >= 830 * F
    assert seg.stats["splits"] == 1 and seg.stats["segments"] == 2


def test_split_without_pause_uses_energy_and_respects_max():
    # VAD saturated at 1.0 everywhere; a quieter stretch (0.6 vs 0.9) is where the cut goes
    x = sig((0, 10), (0.9, 250), (0.6, 6), (0.9, 300), (0, 40))
    seg = SpeechSegmenter(ScriptedVad(gain=2.0), max_segment_s=10.0, split_search_s=3.0)
    ends = [e for e in run(seg, x) if e.kind == SEGMENT_END]
    assert 260 * F <= ends[0].end_sample < 266 * F  # frames 260..265 are the quieter ones
    assert all(e.duration_s <= 10.0 for e in ends)
    covered = sum(e.end_sample - e.start_sample for e in ends)
    assert ends[-1].end_sample - ends[0].start_sample == covered  # back to back
    assert ends[0].start_sample <= 10 * F and ends[-1].end_sample >= 566 * F


def test_continuous_speech_over_many_windows():
    seg = SpeechSegmenter(ScriptedVad(), max_segment_s=5.0, split_search_s=2.0)
    ends = [e for e in run(seg, sig((0, 10), (0.9, 1000), (0, 40))) if e.kind == SEGMENT_END]
    # no quieter point anywhere: cut as late as allowed, so 32 s make 7 segments of at most 5 s
    assert len(ends) == 7 and all(e.duration_s <= 5.0 for e in ends)
    assert all(a.end_sample == b.start_sample for a, b in zip(ends, ends[1:]))


@pytest.mark.parametrize("chunks", [[1, 7, 100], [511, 513], [4000], [160, 320, 1601]])
def test_chunking_does_not_change_events(chunks):
    x = sig((0, 30), (0.9, 100), (0.0, 25), (0.9, 400), (0.2, 4), (0.9, 300), (0, 40), (0.9, 5), (0, 30))
    params = dict(max_segment_s=10.0, partial_interval_s=1.0)
    whole = run(SpeechSegmenter(ScriptedVad(), **params), x)
    streamed = run(SpeechSegmenter(ScriptedVad(), **params), x, chunks)
    assert [(e.kind, e.segment_id, e.start_sample, e.end_sample, e.reason) for e in streamed] == \
        [(e.kind, e.segment_id, e.start_sample, e.end_sample, e.reason) for e in whole]
    for a, b in zip(whole, streamed):
        assert (a.audio is None) == (b.audio is None)
        if a.audio is not None:
            np.testing.assert_array_equal(a.audio, b.audio)
    assert {SPEECH_START, PARTIAL, SEGMENT_END} == set(kinds(whole))


def test_partials_grow_from_segment_start():
    seg = SpeechSegmenter(ScriptedVad(), partial_interval_s=0.5)
    x = sig((0, 20), (0.9, 94), (0, 40))  # ~3 s of speech
    ev = run(seg, x)
    parts = [e for e in ev if e.kind == PARTIAL]
    start = ev[0]
    assert len(parts) == seg.stats["partials"] >= 5
    assert all(p.start_sample == start.start_sample and p.segment_id == start.segment_id for p in parts)
    ends = [p.end_sample for p in parts]
    assert all(b - a >= seg.partial_interval for a, b in zip(ends, ends[1:]))
    np.testing.assert_array_equal(parts[-1].audio, x[parts[-1].start_sample:parts[-1].end_sample])
    assert ev[-1].kind == SEGMENT_END


def test_mute_drops_open_segment_and_discards_audio():
    vad = ScriptedVad()
    seg = SpeechSegmenter(vad)
    ev = run(seg, sig((0, 20), (0.9, 30)))
    assert kinds(ev) == [SPEECH_START]
    dropped = seg.set_muted(True)
    assert kinds(dropped) == [SEGMENT_DROPPED] and dropped[0].reason == "muted"
    assert dropped[0].segment_id == ev[0].segment_id and dropped[0].audio is None
    muted_at = seg.position
    assert run(seg, sig((0.9, 100))) == [] and seg.position == muted_at + 100 * F
    assert seg.stats["muted_samples"] == 100 * F and seg.muted
    assert seg.set_muted(True) == []
    assert seg.set_muted(False) == [] and vad.resets >= 2
    unmuted_at = seg.position
    ev = run(seg, sig((0.9, 30), (0, 40)))
    assert kinds(ev) == [SPEECH_START, SEGMENT_END]
    assert ev[0].start_sample == unmuted_at  # no padding reaches back into muted audio
    assert seg.stats["dropped"] == 1


def test_mute_policy_end_closes_segment_with_audio():
    seg = SpeechSegmenter(ScriptedVad(), mute_policy="end")
    run(seg, sig((0, 20), (0.9, 30)))
    ev = seg.set_muted(True)
    assert kinds(ev) == [SEGMENT_END] and ev[0].reason == "muted"
    assert ev[0].end_sample == 50 * F and ev[0].audio.size == ev[0].end_sample - ev[0].start_sample


def test_flush_and_reset():
    seg = SpeechSegmenter(ScriptedVad())
    x = sig((0, 20), (0.9, 30))
    run(seg, np.concatenate([x, np.full(100, 0.9, np.float32)]))  # 100 samples short of a frame
    ev = seg.flush()
    assert kinds(ev) == [SEGMENT_END] and ev[0].reason == "flush"
    assert ev[0].end_sample == seg.position == x.size + 100
    assert seg.flush() == []
    run(seg, sig((0.9, 30)))
    ev = seg.reset()
    assert kinds(ev) == [SEGMENT_DROPPED] and ev[0].reason == "reset"
    run(seg, sig((0.9, 3)))  # candidate not yet confirmed
    assert seg.flush() == [] and seg.stats["rejected_short"] == 1


def test_memory_stays_bounded():
    seg = SpeechSegmenter(ScriptedVad(), max_segment_s=4.0, split_search_s=1.0)
    for _ in range(60):
        run(seg, sig((0, 31)))
    assert seg.buffered_samples <= seg.pad + F
    for _ in range(30):
        run(seg, sig((0.9, 31)))
        assert seg.buffered_samples <= seg.max_segment + F


def test_bad_samples_rejected_without_side_effects():
    seg = SpeechSegmenter(ScriptedVad())
    with pytest.raises(ValueError, match="1 NaN/Inf"):
        seg.feed(np.array([0.0, np.nan], np.float32))
    with pytest.raises(ValueError, match="1-D"):
        seg.feed(np.zeros((512, 2), np.float32))
    assert seg.position == 0 and seg.stats["samples"] == 0


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"max_segment_s": 31}, "max_segment_s"),
        ({"max_segment_s": 0}, "max_segment_s"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": 0.5, "neg_threshold": 0.6}, "neg_threshold"),
        ({"min_silence_ms": -1}, "min_silence_ms"),
        ({"split_search_s": 25}, "split_search_s"),
        ({"mute_policy": "ignore"}, "mute_policy"),
        ({"min_speech_ms": 30000, "max_segment_s": 20}, "min_speech_ms"),
    ],
)
def test_invalid_parameters(kwargs, words):
    with pytest.raises(ValueError, match=words):
        SpeechSegmenter(ScriptedVad(), **kwargs)
