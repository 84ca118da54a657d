"""What an audio chunk may be: sample formats, channel counts and sample rates (with the resampling ratio each rate
needs), and :class:`AudioFormatError` for anything else."""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import numpy as np

#: ``sample_format`` values of the audio message
FORMAT_S16LE = 0
FORMAT_F32LE = 1
FORMAT_NAMES = {FORMAT_S16LE: "S16LE", FORMAT_F32LE: "F32LE"}
_DTYPES = {FORMAT_S16LE: np.dtype("<i2"), FORMAT_F32LE: np.dtype("<f4")}

#: sample rate the speech models take
TARGET_RATE = 16000
#: accepted input sample rates (Hz), inclusive
MIN_RATE = 1000
MAX_RATE = 384000
#: largest term of the reduced resampling ratio (up/down to TARGET_RATE) accepted: the polyphase filter has
#: ``20 * max(up, down) + 1`` taps, so this bounds its set-up cost (~ms) and memory. Every standard rate fits
#: (8000, 11025, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000, 352800, 384000 Hz: at most 640/441);
#: odd rates such as 383999 Hz (16000/383999, a 7.7 M-tap filter) are refused.
MAX_RATIO_TERM = 2000
#: ``channels`` is a uint8 in the message
MAX_CHANNELS = 255

NONFINITE_POLICIES = ("zero", "reject")


class AudioFormatError(ValueError):
    """Audio data or its description (format, channels, rate, length, values) is unusable."""


def check_description(sample_format: int, channels: int, sample_rate: Optional[int] = None) -> np.dtype:
    """Validate the format fields; return the sample dtype."""
    try:
        dtype = _DTYPES[int(sample_format)]
    except (KeyError, TypeError, ValueError):
        raise AudioFormatError(
            f"sample_format={sample_format!r} is unknown; expected {FORMAT_S16LE} (S16LE) or {FORMAT_F32LE} (F32LE)"
        ) from None
    if not isinstance(channels, (int, np.integer)) or not 1 <= int(channels) <= MAX_CHANNELS:
        raise AudioFormatError(f"channels={channels!r} is invalid; expected an integer in 1..{MAX_CHANNELS}")
    if sample_rate is not None:
        check_rate(sample_rate, "sample_rate")
    return dtype


def check_rate(rate: Any, name: str = "sample_rate", out_rate: int = TARGET_RATE) -> int:
    """``rate`` as an int if it is in ``MIN_RATE..MAX_RATE`` and resamples to ``out_rate`` with a ratio whose
    reduced terms are at most ``MAX_RATIO_TERM`` (bounded filter set-up); :class:`AudioFormatError` otherwise."""
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not MIN_RATE <= int(rate) <= MAX_RATE:
        raise AudioFormatError(f"{name}={rate!r} is invalid; expected an integer in {MIN_RATE}..{MAX_RATE} Hz")
    up, down = rate_ratio(int(rate), out_rate)
    if max(up, down) > MAX_RATIO_TERM:
        raise AudioFormatError(
            f"{name}={int(rate)} Hz converts to {out_rate} Hz only with the ratio {up}/{down}; accepted rates reduce "
            f"to a ratio with terms <= {MAX_RATIO_TERM} (every standard rate does: 8000, 11025, 22050, 44100, "
            f"48000, 96000, 192000, 384000 Hz ...)")
    return int(rate)


def rate_ratio(in_rate: int, out_rate: int = TARGET_RATE) -> Tuple[int, int]:
    """Reduced ``(up, down)`` with ``in_rate * up / down == out_rate``."""
    g = math.gcd(int(in_rate), int(out_rate))
    return int(out_rate) // g, int(in_rate) // g
