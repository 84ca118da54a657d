"""models.speech.segmenter on real speech: espeak-ng sentences and LibriVox readings, Silero VAD and energy fallback."""

import shutil
import subprocess

import numpy as np
import pytest

from axcl_ros import assets
from axcl_ros.io.audio import AudioInput, encode_chunk
from axcl_ros.io.audio_format import FORMAT_S16LE
from axcl_ros.io.wav import read_wav
from axcl_ros.models.speech.segmenter import SEGMENT_END, SPEECH_START, SpeechSegmenter
from axcl_ros.models.vad import SileroVad, create_vad
from axcl_ros_testing.sample_inputs import librivox_utterances

SR = 16000
SENTENCE_A = "The quick brown fox jumps over the lazy dog."
SENTENCE_B = "Please bring me the red cup from the kitchen table."

pytestmark = pytest.mark.realweights


def _espeak(folder, name, text):
    """``(native-rate float32, its rate, 16 kHz float32 converted by sox)`` for ``text``."""
    raw, s16 = folder / f"{name}_raw.wav", folder / f"{name}_16k.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(s16)], check=True)
    native = read_wav(raw)
    return native.mono(native.sample_rate), native.sample_rate, read_wav(s16).mono()


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox needed (apt-get install espeak-ng sox)")
    d = tmp_path_factory.mktemp("espeak_seg")
    both_native, rate, both = _espeak(d, "both", f"{SENTENCE_A} {SENTENCE_B}")
    _, _, a = _espeak(d, "a", SENTENCE_A)
    _, _, b = _espeak(d, "b", SENTENCE_B)

    def sil(seconds, sr=SR):
        return np.zeros(int(seconds * sr), np.float32)

    return {
        "one": np.concatenate([sil(1.0), both, sil(1.0)]),
        "one_native": np.concatenate([sil(1.0, rate), both_native, sil(1.0, rate)]),
        "native_rate": rate,
        "two": np.concatenate([sil(1.0), a, sil(1.5), b, sil(1.0)]),
        "two_bounds": (1.0, 1.0 + a.size / SR, 2.5 + a.size / SR),
    }


@pytest.fixture(scope="module")
def silero_path():
    try:
        return assets.silero_vad_onnx()
    except assets.AssetNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def reading():
    """LibriVox utterances back to back (and the first two again): > 30 s of fluent reading."""
    try:
        utts = librivox_utterances()
    except assets.AssetNotFoundError as exc:
        pytest.skip(str(exc))
    parts = [read_wav(path).mono() for path, _ in utts]
    x = np.concatenate(parts + parts[:2])
    assert x.size / SR > 30.0
    return x


def _segments(seg, x, chunks=None):
    events = []
    if chunks is None:
        events += seg.feed(x)
    else:
        i, k = 0, 0
        while i < x.size:
            n = chunks[k % len(chunks)]
            events += seg.feed(x[i:i + n])
            i, k = i + n, k + 1
    events += seg.flush()
    return events, [e for e in events if e.kind == SEGMENT_END]


def _loud_bounds(x, lo=0.0, hi=None):
    """First and last sample (seconds) above -40 dBFS between ``lo`` and ``hi`` seconds."""
    a, b = int(lo * SR), x.size if hi is None else int(hi * SR)
    idx = np.flatnonzero(np.abs(x[a:b]) > 0.01) + a
    return idx[0] / SR, idx[-1] / SR


def _assert_covers(segment, start_s, end_s, slack_before=0.4, slack_after=0.5):
    assert segment.start_s <= start_s and segment.end_s >= end_s, (segment.start_s, segment.end_s, start_s, end_s)
    assert segment.start_s >= start_s - slack_before and segment.end_s <= end_s + slack_after


def test_one_utterance_gives_one_segment_around_the_speech(speech, silero_path):
    x = speech["one"]
    events, ends = _segments(SpeechSegmenter(SileroVad(silero_path)), x)
    assert [e.kind for e in events] == [SPEECH_START, SEGMENT_END]
    assert ends[0].reason == "silence"
    _assert_covers(ends[0], *_loud_bounds(x))
    # models.md 4.2: Silero p > 0.5 from 1.06 s to 7.46 s; the segment is that, padded by 0.2 s
    assert ends[0].start_s == pytest.approx(1.06 - 0.2, abs=0.07)
    assert ends[0].end_s == pytest.approx(7.46 + 0.2, abs=0.1)
    np.testing.assert_array_equal(ends[0].audio, x[ends[0].start_sample:ends[0].end_sample])


def test_two_sentences_with_a_pause_give_two_segments(speech, silero_path):
    x = speech["two"]
    a0, a1, b0 = speech["two_bounds"]
    _, ends = _segments(SpeechSegmenter(SileroVad(silero_path)), x)
    assert len(ends) == 2
    _assert_covers(ends[0], *_loud_bounds(x, a0, a1))
    _assert_covers(ends[1], *_loud_bounds(x, b0))
    assert ends[0].end_s < ends[1].start_s  # the 1.5 s pause separates them
    assert ends[0].end_s < a1 + 0.75 and ends[1].start_s > b0 - 0.75


def test_odd_chunk_sizes_give_the_same_segments(speech, silero_path):
    x = speech["two"]
    whole, _ = _segments(SpeechSegmenter(SileroVad(silero_path), partial_interval_s=1.0), x)
    streamed, _ = _segments(SpeechSegmenter(SileroVad(silero_path), partial_interval_s=1.0), x,
                            chunks=[37, 1001, 160, 4096, 511, 3])
    assert [(e.kind, e.start_sample, e.end_sample, e.reason) for e in streamed] == \
        [(e.kind, e.start_sample, e.end_sample, e.reason) for e in whole]
    for a, b in zip(whole, streamed):
        if a.audio is not None:
            np.testing.assert_array_equal(a.audio, b.audio)
    assert sum(e.kind == "partial" for e in whole) >= 4


@pytest.mark.parametrize("max_segment_s", [10.0, 20.0])
def test_long_reading_is_split_at_quiet_points_and_covers_all_speech(reading, silero_path, max_segment_s):
    x = reading
    vad = SileroVad(silero_path)
    probs = np.array([vad.probability(x[i:i + 512]) for i in range(0, x.size - 511, 512)])
    seg = SpeechSegmenter(SileroVad(silero_path), max_segment_s=max_segment_s)
    _, ends = _segments(seg, x)
    assert all(0 < e.duration_s <= max_segment_s for e in ends)
    assert seg.stats["splits"] >= 1 and seg.stats["splits"] == sum(e.reason == "max_length" for e in ends)
    covered = np.zeros(x.size, bool)
    for e in ends:
        covered[e.start_sample:e.end_sample] = True
    voiced = np.flatnonzero(probs >= 0.5)
    assert covered[voiced * 512 + 256].all(), "a voiced frame fell outside every segment"
    for e in ends:
        if e.reason != "max_length":
            continue
        c = e.end_sample
        level = 10 * np.log10(np.mean(x[c - 768:c + 768] ** 2) + 1e-10)
        seg_frames = e.audio[: e.audio.size // 512 * 512].reshape(-1, 512)
        median = np.median(10 * np.log10(np.mean(seg_frames ** 2, axis=1) + 1e-10))
        assert level < median - 10, f"cut at {c / SR:.2f} s is only {median - level:.1f} dB below the speech"


def test_silence_and_low_noise_give_no_segment(silero_path):
    rng = np.random.default_rng(3)
    white = 10 ** (-50 / 20) * rng.standard_normal(10 * SR)
    brown = np.cumsum(rng.standard_normal(10 * SR))
    brown = 10 ** (-45 / 20) * (brown - np.convolve(brown, np.ones(801) / 801, mode="same")) / 30
    # noise from the start, as from a real microphone (the energy VAD learns its floor from it), then zeros
    x = np.concatenate([white, brown, np.zeros(5 * SR)]).astype(np.float32)
    for vad in (SileroVad(silero_path), create_vad(None)):
        seg = SpeechSegmenter(vad)
        events, _ = _segments(seg, x)
        assert events == [], (vad.kind, events)
        assert seg.stats["segments"] == 0


def test_energy_fallback_finds_the_espeak_speech(speech):
    vad = create_vad(None)
    assert vad.kind == "energy" and vad.reason.startswith("energy fallback")
    x = speech["one"]
    _, ends = _segments(SpeechSegmenter(vad), x)
    assert len(ends) == 1
    _assert_covers(ends[0], *_loud_bounds(x))
    _, ends = _segments(SpeechSegmenter(create_vad(None)), speech["two"])
    assert len(ends) == 2


def test_message_path_at_native_rate_matches_sox_path(speech, silero_path):
    """espeak's 22.05 kHz audio as stereo S16 messages of 20 ms -> AudioInput -> segmenter."""
    rate, x = speech["native_rate"], speech["one_native"]
    step, t0 = rate // 50, 1234.5
    audio = AudioInput()
    seg = SpeechSegmenter(SileroVad(silero_path))
    events = []
    for i in range(0, x.size, step):
        data = encode_chunk(x[i:i + step], FORMAT_S16LE, channels=2)
        events += seg.feed(audio.push(data, FORMAT_S16LE, 2, rate, stamp_s=t0 + i / rate))
    events += seg.feed(audio.flush()) + seg.flush()
    ends = [e for e in events if e.kind == SEGMENT_END]
    _, ref = _segments(SpeechSegmenter(SileroVad(silero_path)), speech["one"])
    assert len(ends) == 1
    assert ends[0].start_s == pytest.approx(ref[0].start_s, abs=0.05)
    assert ends[0].end_s == pytest.approx(ref[0].end_s, abs=0.05)
    assert audio.stamp_of(ends[0].start_sample) == pytest.approx(t0 + ends[0].start_s, abs=1e-3)
    assert audio.continuity.gaps == 0 and audio.chunks == -(-x.size // step)
