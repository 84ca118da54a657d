"""io.audio: message bytes -> float32 mono 16 kHz, streaming resampler, continuity, encoding."""

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.signal import resample_poly

from axcl_ros.io.audio import AudioInput, decode_chunk, encode_chunk, parse_chunk
from axcl_ros.io.audio_continuity import ContinuityChecker
from axcl_ros.io.audio_format import FORMAT_F32LE, FORMAT_S16LE, AudioFormatError, rate_ratio
from axcl_ros.io.resample import StreamResampler


def _tone(freq, rate, seconds, amp=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _amplitude_db(x, ref_amp):
    return 20 * np.log10(np.sqrt(2 * np.mean(np.square(x, dtype=np.float64))) / ref_amp)


def _stream(resampler, x, sizes):
    out, i, k = [], 0, 0
    while i < x.size:
        n = sizes[k % len(sizes)]
        out.append(resampler.process(x[i:i + n]))
        i += n
        k += 1
    out.append(resampler.flush())
    return np.concatenate(out)


# -- parsing -------------------------------------------------------------------------------------------------------
def test_s16_values_scale_and_mono_mean():
    data = np.array([0, 16384, -32768, 32767], "<i2").tobytes()
    frames, bad, clipped = parse_chunk(data, FORMAT_S16LE, 1)
    np.testing.assert_allclose(frames[:, 0], [0.0, 0.5, -1.0, 32767 / 32768])
    assert (bad, clipped) == (0, 0)
    stereo = np.array([[16384, -16384], [8192, 16384]], "<i2").tobytes()
    mono = decode_chunk(stereo, FORMAT_S16LE, 2, 16000)
    assert mono.dtype == np.float32
    np.testing.assert_allclose(mono, [0.0, 0.375])


def test_f32_three_channels_mean_and_memoryview_input():
    x = np.array([[0.3, 0.6, 0.0], [-0.3, -0.3, -0.3]], "<f4")
    mono = decode_chunk(memoryview(bytearray(x.tobytes())), FORMAT_F32LE, 3, 16000)
    np.testing.assert_allclose(mono, [0.3, -0.3], atol=1e-7)


def test_list_of_ints_like_ros_uint8_array():
    data = list(np.array([1000, -1000], "<i2").tobytes())  # rclpy may hand uint8[] as a list/array
    np.testing.assert_allclose(decode_chunk(data, FORMAT_S16LE, 1, 16000), [1000 / 32768, -1000 / 32768])


@pytest.mark.parametrize(
    "data, fmt, channels, rate, words",
    [
        (b"\x00\x01", 7, 1, 16000, "sample_format=7"),
        (b"\x00\x01\x02", FORMAT_S16LE, 1, 16000, "3 bytes, not a multiple of the frame size 2"),
        (b"\x00" * 6, FORMAT_S16LE, 2, 16000, "frame size 4"),
        (b"\x00" * 12, FORMAT_F32LE, 2, 16000, "frame size 8"),
        (b"\x00\x01", FORMAT_S16LE, 0, 16000, "channels=0"),
        (b"\x00\x01", FORMAT_S16LE, 1, 0, "sample_rate=0"),
        (b"\x00\x01", FORMAT_S16LE, 1, 50, "sample_rate=50"),
        (b"\x00\x01", FORMAT_S16LE, 1, 10_000_000, "sample_rate=10000000"),
        (b"", FORMAT_S16LE, 1, 16000, "empty"),
    ],
)
def test_bad_chunks_raise_one_error_type_naming_the_field(data, fmt, channels, rate, words):
    with pytest.raises(AudioFormatError, match=words):
        decode_chunk(data, fmt, channels, rate)
    assert issubclass(AudioFormatError, ValueError)


def test_nonfinite_samples_are_zeroed_and_counted_or_rejected():
    x = np.array([0.1, np.nan, np.inf, -np.inf, 2.0, -0.2], "<f4")
    frames, bad, clipped = parse_chunk(x.tobytes(), FORMAT_F32LE, 1)
    np.testing.assert_allclose(frames[:, 0], [0.1, 0.0, 0.0, 0.0, 1.0, -0.2], atol=1e-7)
    assert (bad, clipped) == (3, 1)
    with pytest.raises(AudioFormatError, match="3 non-finite"):
        parse_chunk(x.tobytes(), FORMAT_F32LE, 1, nonfinite="reject")
    audio = AudioInput()
    audio.push(x.tobytes(), FORMAT_F32LE, 1, 16000)
    assert audio.nonfinite_samples == 3 and audio.clipped_samples == 1
    strict = AudioInput(nonfinite="reject")
    with pytest.raises(AudioFormatError):
        strict.push(x.tobytes(), FORMAT_F32LE, 1, 16000)
    assert strict.rejected == 1 and strict.chunks == 0


# -- encoding ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, tol", [(FORMAT_S16LE, 1 / 32768), (FORMAT_F32LE, 1e-7)])
@pytest.mark.parametrize("channels", [1, 2])
def test_encode_decode_roundtrip(fmt, tol, channels):
    x = _tone(440, 16000, 0.1, amp=0.9)
    data = encode_chunk(x, fmt, channels)
    assert len(data) == x.size * channels * (2 if fmt == FORMAT_S16LE else 4)
    frames, _, _ = parse_chunk(data, fmt, channels)
    assert np.array_equal(frames[:, 0], frames[:, -1])
    np.testing.assert_allclose(decode_chunk(data, fmt, channels, 16000), x, atol=tol)


def test_encode_clips_and_rejects_bad_input():
    data = encode_chunk(np.array([1.5, -1.5], np.float32), FORMAT_S16LE)
    assert np.frombuffer(data, "<i2").tolist() == [32767, -32768]
    with pytest.raises(AudioFormatError, match="NaN"):
        encode_chunk(np.array([np.nan], np.float32), FORMAT_F32LE)
    with pytest.raises(AudioFormatError, match="1-D"):
        encode_chunk(np.zeros((2, 2), np.float32), FORMAT_F32LE)


# -- resampling ----------------------------------------------------------------------------------------------------
def test_rate_ratio_is_reduced():
    assert rate_ratio(48000) == (1, 3)
    assert rate_ratio(44100) == (160, 441)
    assert rate_ratio(8000) == (2, 1)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_stream_resampler_chunked_equals_whole_resample_poly(rate):
    rng = np.random.default_rng(rate)
    x = np.clip(0.2 * rng.standard_normal(rate * 2), -1, 1).astype(np.float32)
    up, down = rate_ratio(rate)
    whole = resample_poly(x.astype(np.float64), up, down)
    chunked = _stream(StreamResampler(rate), x, [1, 7, 333, 960, 4410, 2])
    assert chunked.size == whole.size == -(-x.size * up // down)
    np.testing.assert_allclose(chunked, whole, atol=1e-6)
    # and decode_chunk on the whole signal is the same resample_poly
    np.testing.assert_allclose(decode_chunk(x.tobytes(), FORMAT_F32LE, 1, rate), whole, atol=1e-6)


def test_chunked_sine_has_no_boundary_clicks():
    x = _tone(1000, 48000, 3.0)
    y = _stream(StreamResampler(48000), x, [480])  # 10 ms chunks, like a capture driver
    ref = _tone(1000, 16000, 3.0)
    core = slice(200, -200)  # away from the zero-padded stream ends
    assert np.abs(y[core] - ref[core]).max() < 2e-3
    naive = np.concatenate([decode_chunk(x[i:i + 480].tobytes(), FORMAT_F32LE, 1, 48000)
                            for i in range(0, x.size, 480)])
    assert np.abs(naive[core] - ref[core]).max() > 10 * np.abs(y[core] - ref[core]).max()


@pytest.mark.parametrize("rate", [48000, 44100])
def test_antialiasing_keeps_passband_and_suppresses_alias(rate):
    keep = _stream(StreamResampler(rate), _tone(7000, rate, 1.0), [1024])[500:-500]
    alias = _stream(StreamResampler(rate), _tone(12000, rate, 1.0), [1024])[500:-500]
    assert abs(_amplitude_db(keep, 0.5)) < 0.5
    assert _amplitude_db(alias, 0.5) < -40


def test_passthrough_and_invalid_rates():
    rs = StreamResampler(16000)
    x = np.arange(10, dtype=np.float32)
    assert np.array_equal(rs.process(x), x) and rs.flush().size == 0 and rs.latency_samples == 0
    with pytest.raises(AudioFormatError, match="in_rate"):
        StreamResampler(0)


# -- continuity ----------------------------------------------------------------------------------------------------
def test_continuity_checker_gap_overlap_tolerance_and_unstamped():
    cc = ContinuityChecker(tolerance_s=0.005)
    assert cc.check(10.0, 480, 48000) is None
    assert cc.check(10.012, 480, 48000) is None  # 2 ms jitter: within tolerance
    gap = cc.check(10.1, 480, 48000)
    assert gap.kind == "gap" and gap.expected_stamp_s == pytest.approx(10.022)
    assert gap.delta_s == pytest.approx(0.078) and gap.samples == round(0.078 * 48000)
    over = cc.check(10.05, 480, 48000)
    assert over.kind == "overlap" and over.delta_s == pytest.approx(-0.06)
    assert (cc.gaps, cc.overlaps, cc.chunks) == (1, 1, 4)
    assert cc.gap_s == pytest.approx(0.078) and cc.overlap_s == pytest.approx(0.06)
    assert cc.check(0.0, 480, 48000) is None and cc.unstamped == 1
    assert cc.check(99.0, 480, 48000) is None  # first stamp after unstamped: nothing to compare with
    assert cc.check(99.01, 160, 16000) is None  # rate change restarts the expectation
    assert cc.last_event == over


# -- stateful stream -----------------------------------------------------------------------------------------------
def _msg(samples, rate, channels, stamp, fmt=FORMAT_S16LE):
    sec = int(stamp)
    return SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=int(round((stamp - sec) * 1e9)))),
        sample_rate=rate, channels=channels, sample_format=fmt, data=encode_chunk(samples, fmt, channels))


def test_audio_input_stream_equals_whole_and_maps_stamps():
    rate, t0 = 48000, 1000.0
    x = _tone(440, rate, 2.0, amp=0.4)
    audio = AudioInput()
    out = [audio.push_msg(_msg(x[i:i + 960], rate, 2, t0 + i / rate, FORMAT_F32LE)) for i in range(0, x.size, 960)]
    out.append(audio.flush())
    y = np.concatenate(out)
    np.testing.assert_allclose(y, resample_poly(x.astype(np.float64), 1, 3), atol=1e-6)
    assert audio.samples_out == y.size == 32000 and audio.chunks == 100
    assert audio.stamp_of(0) == pytest.approx(t0)
    assert audio.stamp_of(16000) == pytest.approx(t0 + 1.0, abs=1e-6)
    assert audio.stamp_of(16321) == pytest.approx(t0 + 16321 / 16000, abs=1e-6)
    assert audio.continuity.gaps == 0 and audio.continuity.overlaps == 0


def test_audio_input_gap_moves_stamps_not_sample_numbers():
    rate, t0 = 16000, 50.0
    x = _tone(300, rate, 1.0)
    audio = AudioInput()
    audio.push(encode_chunk(x[:8000], FORMAT_S16LE), FORMAT_S16LE, 1, rate, t0)
    # 0.25 s of audio lost before the second chunk
    audio.push(encode_chunk(x[8000:], FORMAT_S16LE), FORMAT_S16LE, 1, rate, t0 + 0.75)
    assert audio.samples_out == 16000
    assert audio.continuity.gaps == 1 and audio.continuity.last_event.kind == "gap"
    assert audio.continuity.last_event.delta_s == pytest.approx(0.25)
    assert audio.stamp_of(7999) == pytest.approx(t0 + 7999 / 16000)
    assert audio.stamp_of(8000) == pytest.approx(t0 + 0.75)
    assert audio.stamp_of(12000) == pytest.approx(t0 + 1.0)


def test_audio_input_format_change_flushes_and_keeps_clock():
    audio = AudioInput()
    a = audio.push(encode_chunk(_tone(200, 48000, 0.5), FORMAT_S16LE, 2), FORMAT_S16LE, 2, 48000, 1.0)
    b = audio.push(encode_chunk(_tone(200, 8000, 0.5), FORMAT_S16LE, 1), FORMAT_S16LE, 1, 8000, 1.5)
    # same rate, other channel count and format: counted, the resampler keeps its state
    c = audio.push(encode_chunk(_tone(200, 8000, 0.1), FORMAT_F32LE, 2), FORMAT_F32LE, 2, 8000, 2.0)
    tail = audio.flush()
    assert a.size + b.size + c.size + tail.size == 8000 + 8000 + 1600
    assert audio.format == (FORMAT_F32LE, 2, 8000) and audio.format_changes == 2
    assert audio.stamp_of(8000) == pytest.approx(1.5)
    assert audio.stamp_of(12000) == pytest.approx(1.75)
    assert audio.stamp_of(16800) == pytest.approx(2.05)
    assert audio.continuity.gaps == 0


def test_audio_input_bad_chunk_is_counted_and_does_not_disturb_stream():
    audio = AudioInput()
    audio.push(encode_chunk(_tone(200, 16000, 0.1), FORMAT_S16LE), FORMAT_S16LE, 1, 16000, 1.0)
    with pytest.raises(AudioFormatError):
        audio.push(b"\x00\x01\x02", FORMAT_S16LE, 1, 16000, 1.1)
    out = audio.push(encode_chunk(_tone(200, 16000, 0.1), FORMAT_S16LE), FORMAT_S16LE, 1, 16000, 1.1)
    assert out.size == 1600 and audio.rejected == 1 and audio.chunks == 2 and audio.samples_out == 3200
    assert audio.continuity.gaps == 0
