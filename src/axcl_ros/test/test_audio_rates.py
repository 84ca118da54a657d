"""io.audio: resampler set-up is bounded for every accepted rate; odd rates that need huge filters are refused (#18).

100-ms chunks at 383,999 Hz took 0.8-4.4 s each to accept and pushed peak memory from 464 to 817+ MB (a 7.7 M-tap
filter per rate); they are refused now with a reason, and every standard rate still converts.
"""

import time

import numpy as np
import pytest

from axcl_ros.io.audio import decode_chunk
from axcl_ros.io.audio_format import FORMAT_S16LE, MAX_RATE, MAX_RATIO_TERM, MIN_RATE, AudioFormatError, check_rate
from axcl_ros.io.resample import StreamResampler

STANDARD = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400, 192000, 352800,
            384000]


@pytest.mark.parametrize("rate", [383999, 383993, 7999, 44101, 100003])
def test_rates_needing_huge_filters_are_refused_fast(rate):
    t0 = time.perf_counter()
    with pytest.raises(AudioFormatError, match=f"{rate} Hz converts to 16000 Hz only with the ratio"):
        StreamResampler(rate)
    with pytest.raises(AudioFormatError, match="ratio"):
        decode_chunk(bytes(2 * (rate // 10)), FORMAT_S16LE, 1, rate)
    assert time.perf_counter() - t0 < 0.5


@pytest.mark.parametrize("rate", STANDARD)
def test_every_standard_rate_is_accepted(rate):
    assert check_rate(rate) == rate
    out = StreamResampler(rate).process(np.zeros(rate // 10, np.float32))
    assert abs(out.size - 1600) <= 80


def test_setup_cost_is_bounded_for_every_accepted_rate():
    """Seeded sample of rates across the whole range: accepted ones build a filter of bounded size."""
    rng = np.random.default_rng(18)
    accepted = 0
    for rate in rng.integers(MIN_RATE, MAX_RATE + 1, 400):
        try:
            check_rate(int(rate))
        except AudioFormatError:
            continue
        accepted += 1
        r = StreamResampler(int(rate))
        assert r.passthrough or r._poly.size <= (20 * MAX_RATIO_TERM + 1) + MAX_RATIO_TERM
    assert accepted > 20


def test_bool_and_out_of_range_rates_are_refused():
    for rate in (True, 0, MIN_RATE - 1, MAX_RATE + 1, 16000.0, "16000"):
        with pytest.raises(AudioFormatError):
            check_rate(rate)
