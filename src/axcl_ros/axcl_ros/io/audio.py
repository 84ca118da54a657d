"""Audio input conversions: interleaved S16LE/F32LE bytes -> float32 mono at 16 kHz, and back.

The speech pipeline works on float32 mono samples in [-1, 1] at :data:`TARGET_RATE` (16 kHz). This module turns the
``data`` bytes of an audio message (``sample_rate``, ``channels``, ``sample_format``) into that form:

* :func:`parse_chunk` checks and unpacks the bytes into ``float32 [frames, channels]``;
* :func:`decode_chunk` is the stateless one-shot conversion (mono + :func:`scipy.signal.resample_poly`);
* :class:`AudioInput` does the same chunk after chunk with the filter state kept across chunks
  (:class:`~.resample.StreamResampler`), so chunk boundaries do not click and the output has exactly the length and
  values of resampling the whole stream at once, and watches header stamps against sample counts
  (:class:`~.audio_continuity.ContinuityChecker`);
* :mod:`.audio_format` says which formats, channel counts and rates are accepted;
* :func:`encode_chunk` produces message bytes for publishers.

Non-finite samples (NaN/Inf, only possible in F32LE) are **sanitised by default**: they are replaced by 0.0 and
counted, because dropping the whole chunk would punch a hole in the sample clock. ``nonfinite="reject"`` raises
:class:`AudioFormatError` instead. Finite F32 samples outside [-1, 1] are clipped to [-1, 1] (and counted).
"""

from __future__ import annotations

from collections import deque
from typing import Optional, Tuple

import numpy as np
from scipy.signal import resample_poly

from .audio_continuity import ContinuityChecker
from .audio_format import (
    FORMAT_NAMES,
    NONFINITE_POLICIES,
    TARGET_RATE,
    AudioFormatError,
    check_description,
    rate_ratio,
)
from .resample import StreamResampler
from .stamps import stamp_to_seconds


def parse_chunk(data, sample_format: int, channels: int, nonfinite: str = "zero") -> Tuple[np.ndarray, int, int]:
    """Unpack interleaved little-endian bytes into ``float32 [frames, channels]`` in [-1, 1].

    Returns ``(frames, n_nonfinite, n_clipped)``. S16 is scaled by 1/32768. F32 NaN/Inf samples are set to 0.0
    (``nonfinite="zero"``) or rejected (``"reject"``); finite F32 values outside [-1, 1] are clipped.
    Raises :class:`AudioFormatError` for an unknown format, bad channel count, empty data, or a byte count that is not
    a whole number of frames.
    """
    dtype = check_description(sample_format, channels)
    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite={nonfinite!r}; expected one of {NONFINITE_POLICIES}")
    try:
        raw = memoryview(data).cast("B")
    except TypeError:
        raw = memoryview(bytes(data))
    frame_bytes = dtype.itemsize * int(channels)
    if len(raw) == 0:
        raise AudioFormatError("audio chunk is empty (data has 0 bytes)")
    if len(raw) % frame_bytes:
        raise AudioFormatError(
            f"data has {len(raw)} bytes, not a multiple of the frame size {frame_bytes} "
            f"({FORMAT_NAMES[int(sample_format)]} x {int(channels)} channels)"
        )
    samples = np.frombuffer(raw, dtype=dtype).reshape(-1, int(channels))
    n_nonfinite = n_clipped = 0
    if dtype.kind == "i":
        out = samples.astype(np.float32) * np.float32(1.0 / 32768.0)
    else:
        out = samples.astype(np.float32)
        bad = ~np.isfinite(out)
        n_nonfinite = int(np.count_nonzero(bad))
        if n_nonfinite:
            if nonfinite == "reject":
                raise AudioFormatError(f"F32LE data holds {n_nonfinite} non-finite samples (NaN/Inf)")
            out[bad] = 0.0
        over = np.abs(out) > 1.0
        n_clipped = int(np.count_nonzero(over))
        if n_clipped:
            np.clip(out, -1.0, 1.0, out=out)
    return out, n_nonfinite, n_clipped


def to_mono(frames: np.ndarray) -> np.ndarray:
    """Average the channels of ``[frames, channels]`` into a contiguous float32 vector."""
    if frames.ndim == 1:
        return np.ascontiguousarray(frames, dtype=np.float32)
    if frames.shape[1] == 1:
        return np.ascontiguousarray(frames[:, 0], dtype=np.float32)
    return frames.mean(axis=1, dtype=np.float32)


def decode_chunk(data, sample_format: int, channels: int, sample_rate: int, nonfinite: str = "zero") -> np.ndarray:
    """Convert one self-contained chunk to float32 mono at 16 kHz (stateless).

    Resampling uses :func:`scipy.signal.resample_poly` with the reduced up/down ratio, treating the chunk as a whole
    signal (zero outside). For a continuous stream use :class:`AudioInput`, which keeps filter state across chunks.
    """
    check_description(sample_format, channels, sample_rate)
    frames, _, _ = parse_chunk(data, sample_format, channels, nonfinite)
    mono = to_mono(frames)
    up, down = rate_ratio(sample_rate)
    if up == down:
        return mono
    return resample_poly(mono, up, down).astype(np.float32)


def encode_chunk(samples: np.ndarray, sample_format: int, channels: int = 1) -> bytes:
    """Encode mono float samples (clipped to [-1, 1]) as interleaved little-endian bytes, duplicated per channel."""
    dtype = check_description(sample_format, channels)
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise AudioFormatError(f"samples must be 1-D mono, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise AudioFormatError("samples hold NaN/Inf values; cannot encode")
    x = np.clip(x, -1.0, 1.0)
    if dtype.kind == "i":
        x = np.clip(np.rint(x * 32768.0), -32768, 32767)
    out = np.repeat(x.astype(dtype)[:, None], int(channels), axis=1)
    return out.tobytes()


class AudioInput:
    """Stateful converter for one audio stream: message fields -> float32 mono 16 kHz, with a sample clock.

    Output samples are numbered from 0 for the life of the object (``samples_out``). :meth:`stamp_of` maps such a
    sample index back to a time using the stamps of the chunks it came from (so gaps in the input move the stamps,
    not the sample numbering). A change of sample rate flushes the resampler and starts a new one; a change of
    format or channel count just counts in ``format_changes``.
    Counters: ``chunks``, ``rejected``, ``nonfinite_samples``, ``clipped_samples``, ``format_changes``, plus the
    :class:`ContinuityChecker` in ``continuity``.
    """

    def __init__(self, target_rate: int = TARGET_RATE, nonfinite: str = "zero", continuity_tolerance_s: float = 0.01,
                 max_anchors: int = 4096):
        if nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite={nonfinite!r}; expected one of {NONFINITE_POLICIES}")
        self.target_rate = int(target_rate)
        self.nonfinite = nonfinite
        self.continuity = ContinuityChecker(continuity_tolerance_s)
        self._anchors: deque = deque(maxlen=max_anchors)
        self._resampler: Optional[StreamResampler] = None
        self._format: Optional[Tuple[int, int, int]] = None
        self._out_base = 0  # samples_out when the current resampler started
        self.samples_out = 0
        self.chunks = 0
        self.rejected = 0
        self.nonfinite_samples = 0
        self.clipped_samples = 0
        self.format_changes = 0

    @property
    def format(self) -> Optional[Tuple[int, int, int]]:
        """``(sample_format, channels, sample_rate)`` of the current stream, None before the first chunk."""
        return self._format

    def push(self, data, sample_format: int, channels: int, sample_rate: int,
             stamp_s: Optional[float] = None) -> np.ndarray:
        """Convert one chunk; return the 16 kHz samples that became available (may be empty or span chunks).

        ``stamp_s`` is the header stamp (time of the chunk's first sample), used for :meth:`stamp_of` and the
        continuity check. Raises :class:`AudioFormatError` (and counts it in ``rejected``) for bad chunks; the stream
        state is left unchanged then.
        """
        try:
            check_description(sample_format, channels, sample_rate)
            frames, n_bad, n_clip = parse_chunk(data, sample_format, channels, self.nonfinite)
        except AudioFormatError:
            self.rejected += 1
            raise
        out = []
        fmt = (int(sample_format), int(channels), int(sample_rate))
        if self._format is not None and fmt != self._format:
            self.format_changes += 1
            if fmt[2] != self._format[2]:  # new rate: finish the old resampler, start a new one
                out.append(self.flush())
                self._resampler = None
        if self._resampler is None:
            self._resampler = StreamResampler(fmt[2], self.target_rate)
            self._out_base = self.samples_out
        self._format = fmt
        self.chunks += 1
        self.nonfinite_samples += n_bad
        self.clipped_samples += n_clip
        rs = self._resampler
        if stamp_s is not None:
            self.continuity.check(float(stamp_s), frames.shape[0], fmt[2])
            if stamp_s != 0.0:
                position = self._out_base + rs.n_in * self.target_rate / fmt[2]
                self._anchors.append((position, float(stamp_s)))
        out.append(rs.process(to_mono(frames)))
        result = np.concatenate(out) if len(out) > 1 else out[0]
        self.samples_out += result.size
        return result

    def push_msg(self, msg) -> np.ndarray:
        """:meth:`push` for a message with ``header.stamp``, ``sample_rate``, ``channels``, ``sample_format``, ``data``.

        ``stamp`` may be a ``builtin_interfaces/Time`` (``sec``, ``nanosec``); a zero stamp counts as unstamped.
        """
        stamp = getattr(getattr(msg, "header", None), "stamp", None)
        stamp_s = None if stamp is None else stamp_to_seconds(stamp)
        return self.push(msg.data, msg.sample_format, msg.channels, msg.sample_rate, stamp_s)

    def flush(self) -> np.ndarray:
        """Emit the samples the resampler still holds (end of stream, or before a pause)."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        tail = self._resampler.flush()
        self.samples_out += tail.size
        return tail

    def stamp_of(self, sample_index: float) -> Optional[float]:
        """Time of output sample ``sample_index``, from the latest chunk stamp at or before it (None if unknown)."""
        best = None
        for position, stamp in reversed(self._anchors):
            if position <= sample_index:
                best = (position, stamp)
                break
        if best is None:
            if not self._anchors:
                return None
            best = self._anchors[0]
        return best[1] + (sample_index - best[0]) / self.target_rate
