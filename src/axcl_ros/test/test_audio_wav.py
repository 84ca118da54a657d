"""io.wav: RIFF WAV (PCM 8/16/24/32, float, extensible) and raw S16 reading; clear errors for bad files."""

import shutil
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from axcl_ros.io.audio_format import AudioFormatError
from axcl_ros.io.wav import WavError, read_audio, read_raw_s16, read_wav, write_wav

POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data")
needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed (apt-get install sox)")


@pytest.fixture(scope="module")
def sox_files(tmp_path_factory):
    if shutil.which("sox") is None:
        pytest.skip("sox not installed (apt-get install sox)")
    d = tmp_path_factory.mktemp("sox")
    base = d / "pcm16_stereo.wav"
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", "-b", "16", str(base), "synth", "0.5",
                    "sine", "440", "sine", "660", "vol", "0.5"], check=True)
    variants = {
        "float32": ["-e", "floating-point", "-b", "32"], "pcm24": ["-b", "24"], "pcm32": ["-b", "32"],
        "pcm8": ["-b", "8", "-e", "unsigned"],
    }
    out = {"pcm16": base}
    for name, args in variants.items():
        out[name] = d / f"{name}.wav"
        subprocess.run(["sox", "-D", str(base), *args, str(out[name])], check=True)  # -D: no dither
    return out


def _peak_hz(x, rate):
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return np.argmax(spec) * rate / x.size


def test_pcm16_stereo_content(sox_files):
    w = read_wav(sox_files["pcm16"])
    assert (w.sample_rate, w.channels, w.encoding) == (44100, 2, "pcm16")
    assert w.samples.shape == (22050, 2) and w.samples.dtype == np.float32
    assert w.duration_s == pytest.approx(0.5)
    assert _peak_hz(w.samples[:, 0], 44100) == pytest.approx(440, abs=3)
    assert _peak_hz(w.samples[:, 1], 44100) == pytest.approx(660, abs=3)
    assert 0.45 < np.abs(w.samples).max() <= 0.51


@pytest.mark.parametrize("name, tol", [("float32", 1e-6), ("pcm24", 1e-6), ("pcm32", 1e-6), ("pcm8", 1 / 127)])
def test_other_encodings_match_pcm16(sox_files, name, tol):
    ref = read_wav(sox_files["pcm16"]).samples
    w = read_wav(sox_files[name])
    assert w.encoding == name and w.sample_rate == 44100 and w.samples.shape == ref.shape
    np.testing.assert_allclose(w.samples, ref, atol=tol)


@needs_sox
def test_three_channel_extensible_and_mono16k(tmp_path):
    path = tmp_path / "c3.wav"
    subprocess.run(["sox", "-n", "-r", "48000", "-c", "3", "-b", "16", str(path), "synth", "0.25", "sine", "1000",
                    "vol", "0.3"], check=True)
    raw = path.read_bytes()
    assert struct.unpack_from("<H", raw, 20)[0] == 0xFFFE  # sox writes WAVE_FORMAT_EXTENSIBLE here
    w = read_wav(path)
    assert w.channels == 3 and w.sample_rate == 48000
    mono = w.mono()
    assert mono.dtype == np.float32 and mono.size == 4000
    assert _peak_hz(mono, 16000) == pytest.approx(1000, abs=5)


def test_write_read_roundtrip_and_stdlib_agrees(tmp_path):
    x = (0.25 * np.sin(np.linspace(0, 60, 1600))).astype(np.float32)
    path = tmp_path / "rt.wav"
    write_wav(path, np.stack([x, -x], axis=1), 16000)
    w = read_wav(path)
    np.testing.assert_allclose(w.samples[:, 0], x, atol=1 / 32768)
    np.testing.assert_allclose(w.samples[:, 1], -x, atol=1 / 32768)
    with wave.open(str(path)) as ref:
        assert (ref.getnframes(), ref.getnchannels(), ref.getframerate()) == (1600, 2, 16000)


def test_truncated_file_is_reported_or_read_when_allowed(tmp_path):
    path = tmp_path / "full.wav"
    write_wav(path, np.zeros(1000, np.float32), 16000)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(path.read_bytes()[:-501])  # mid-frame and short of the declared size
    with pytest.raises(WavError, match="truncated: data chunk declares 2000 bytes, file holds 1499"):
        read_wav(cut)
    assert read_wav(cut, allow_truncated=True).samples.shape == (749, 1)
    head_only = tmp_path / "head.wav"
    head_only.write_bytes(path.read_bytes()[:36])
    with pytest.raises(WavError, match="no 'data' chunk"):
        read_wav(head_only)


def _riff(fmt_body, data=b"\x00\x00" * 4, fmt_id=b"fmt "):
    body = b"WAVE" + fmt_id + struct.pack("<I", len(fmt_body)) + fmt_body
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    "blob, words",
    [
        (b"", "not a RIFF/WAVE"),
        (b"ID3\x03" + b"\x00" * 40, "not a RIFF/WAVE"),
        (_riff(struct.pack("<HHIIHH", 0x55, 1, 16000, 2000, 1, 0)), "format tag 0x55"),
        (_riff(struct.pack("<HHIIHH", 1, 0, 16000, 32000, 2, 16)), "channels=0"),
        (_riff(struct.pack("<HHIIHH", 1, 1, 16000, 32000, 4, 16)), "block_align=4"),
        (_riff(struct.pack("<HHIIHH", 3, 1, 16000, 32000, 2, 16)), "float WAV with 16 bits"),
        (_riff(struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16), fmt_id=b"junk"), "no 'fmt ' chunk"),
        (_riff(b"\x01\x00"), "fmt chunk has 2 bytes"),
        (_riff(struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16), data=b"\x00" * 3), "whole number"),
    ],
)
def test_corrupt_headers_raise_wav_error(tmp_path, blob, words):
    path = tmp_path / "bad.wav"
    path.write_bytes(blob)
    with pytest.raises(WavError, match=words):
        read_wav(path)
    assert issubclass(WavError, AudioFormatError)


def test_float_nan_rejected_and_missing_file(tmp_path):
    data = np.array([0.0, np.nan], "<f4").tobytes()
    path = tmp_path / "nan.wav"
    path.write_bytes(_riff(struct.pack("<HHIIHH", 3, 1, 16000, 64000, 4, 32), data=data))
    with pytest.raises(WavError, match="NaN"):
        read_wav(path)
    with pytest.raises(WavError, match="cannot read"):
        read_wav(tmp_path / "nope.wav")


def test_raw_s16(tmp_path):
    path = tmp_path / "x.raw"
    path.write_bytes(np.array([0, 16384, -16384, 32767], "<i2").tobytes())
    w = read_raw_s16(path, 8000, channels=2)
    assert w.samples.shape == (2, 2) and w.sample_rate == 8000 and w.encoding == "raw_s16"
    np.testing.assert_allclose(w.samples[1], [-0.5, 32767 / 32768])
    odd = tmp_path / "odd.raw"
    odd.write_bytes(b"\x00\x01\x02")
    with pytest.raises(WavError, match="3 bytes"):
        read_raw_s16(odd)
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    with pytest.raises(WavError, match="empty"):
        read_raw_s16(empty)


@pytest.mark.skipif(not POCKETSPHINX.is_dir(), reason="apt-get install pocketsphinx-testdata")
def test_real_pocketsphinx_files():
    raw = read_audio(POCKETSPHINX / "goforward.raw")
    assert raw.encoding == "raw_s16" and raw.sample_rate == 16000 and raw.channels == 1
    assert 1.0 < raw.duration_s < 10.0 and np.abs(raw.samples).max() > 0.05
    wav_path = sorted((POCKETSPHINX / "librivox").glob("*.wav"))[0]
    w = read_audio(wav_path)
    with wave.open(str(wav_path)) as ref:
        assert w.samples.shape == (ref.getnframes(), ref.getnchannels())
        pcm = np.frombuffer(ref.readframes(ref.getnframes()), "<i2")
    assert w.sample_rate == 16000
    np.testing.assert_array_equal(w.samples[:, 0], pcm.astype(np.float32) / 32768)
