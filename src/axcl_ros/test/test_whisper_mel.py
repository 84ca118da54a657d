"""Log-mel front end vs faster-whisper's independent numpy FeatureExtractor, on real speech."""

import wave

import numpy as np
import pytest

from axcl_ros import assets
from axcl_ros.models.whisper.mel import N_FRAMES, MelError, log_mel_spectrogram, mel_filters
from axcl_ros_testing.sample_inputs import librivox_utterances

fw_fe = pytest.importorskip("faster_whisper.feature_extractor")


def _read_wav(path):
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0


@pytest.fixture(scope="module")
def speech():
    try:
        wav, _ = librivox_utterances()[0]
    except assets.AssetNotFoundError as exc:
        pytest.skip(str(exc))
    return _read_wav(wav)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_filters_match_faster_whisper(n_mels):
    ours = mel_filters(n_mels)
    ref = fw_fe.FeatureExtractor.get_mel_filters(16000, 400, n_mels=n_mels)
    assert ours.shape == (n_mels, 201) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)
    # Slaney area normalisation: a triangle's area (sum of weights × 40-Hz bin width) is ~1 where it spans many bins
    assert np.all(ours >= 0) and np.all(ours.max(axis=1) > 0)
    np.testing.assert_allclose(ours[-20:-1].sum(axis=1) * 40.0, 1.0, rtol=0.05)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_matches_faster_whisper_on_speech(speech, n_mels):
    ours = log_mel_spectrogram(speech, n_mels)
    ref = fw_fe.FeatureExtractor(feature_size=n_mels)(speech)  # [n_mels, n//160 + 1] content frames
    assert ours.shape == (n_mels, N_FRAMES) and ours.dtype == np.float32
    n = ref.shape[1]
    assert n == speech.size // 160 + 1
    diff = float(np.abs(ours[:, :n] - ref).max())
    print(f"max |ours - faster_whisper| = {diff:.3g} over {n} frames ({n_mels} mels)")
    assert diff < 1e-4
    assert np.all(ours[:, n:] == 0.0)  # padded in the normalised domain, like faster-whisper's pad_or_trim
    assert ours[:, :n].max() == pytest.approx(ref.max(), abs=1e-5)


def test_pad_audio_matches_openai_style_padding(speech):
    ours = log_mel_spectrogram(speech, pad_audio=True)
    ref = fw_fe.FeatureExtractor()(np.pad(speech, (0, 480000)), padding=0)[:, :N_FRAMES]
    assert float(np.abs(ours - ref).max()) < 1e-4
    # the silent tail sits at the floor (max - 8 in log10 units), not at 0
    assert np.allclose(ours[:, -10:], ours.max() - 2.0, atol=1e-5)


def test_long_audio_is_trimmed_short_audio_padded(speech):
    long = np.tile(speech, 6)[: 35 * 16000]
    mel = log_mel_spectrogram(long)
    assert mel.shape == (80, N_FRAMES)
    assert np.all(mel[:, -5:] != 0.0)  # content up to the last frame
    short = log_mel_spectrogram(speech[:1000])
    assert np.all(short[:, 1000 // 160 + 1:] == 0.0)
    tiny = log_mel_spectrogram(np.ones(3, np.float32) * 0.1)
    assert tiny.shape == (80, N_FRAMES) and np.isfinite(tiny).all()


def test_silence_is_finite_and_constant():
    mel = log_mel_spectrogram(np.zeros(16000, np.float32))
    content = mel[:, :101]
    assert np.isfinite(mel).all() and np.allclose(content, (-10.0 + 4.0) / 4.0)


@pytest.mark.parametrize("bad, word", [
    (np.zeros((2, 100), np.float32), "1-D"),
    (np.zeros(0, np.float32), "empty"),
    (np.zeros(100, np.int16), "float"),
    (np.array([0.0, np.nan, 0.0], np.float32), "NaN"),
])
def test_bad_audio_raises_mel_error(bad, word):
    with pytest.raises(MelError, match=word):
        log_mel_spectrogram(bad)
    assert issubclass(MelError, ValueError)
