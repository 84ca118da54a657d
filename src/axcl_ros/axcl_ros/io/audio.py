"""Audio input conversions: interleaved S16LE/F32LE bytes -> float32 mono at 16 kHz, and back.

The speech pipeline works on float32 mono samples in [-1, 1] at :data:`TARGET_RATE` (16 kHz). This module turns the
``data`` bytes of an audio message (``sample_rate``, ``channels``, ``sample_format``) into that form:

* :func:`parse_chunk` checks and unpacks the bytes into ``float32 [frames, channels]``;
* :func:`decode_chunk` is the stateless one-shot conversion (mono + :func:`scipy.signal.resample_poly`);
* :class:`StreamResampler` and :class:`AudioInput` do the same chunk after chunk with the filter state kept across
  chunks, so chunk boundaries do not click and the output has exactly the length and values of resampling the whole
  stream at once;
* :class:`ContinuityChecker` watches header stamps against sample counts and reports gaps and overlaps;
* :func:`encode_chunk` produces message bytes for publishers.

Non-finite samples (NaN/Inf, only possible in F32LE) are **sanitised by default**: they are replaced by 0.0 and
counted, because dropping the whole chunk would punch a hole in the sample clock. ``nonfinite="reject"`` raises
:class:`AudioFormatError` instead. Finite F32 samples outside [-1, 1] are clipped to [-1, 1] (and counted).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np
from scipy.signal import firwin, resample_poly

from .stamps import stamp_to_seconds

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


def _check_description(sample_format: int, channels: int, sample_rate: Optional[int] = None) -> np.dtype:
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


def parse_chunk(data, sample_format: int, channels: int, nonfinite: str = "zero") -> Tuple[np.ndarray, int, int]:
    """Unpack interleaved little-endian bytes into ``float32 [frames, channels]`` in [-1, 1].

    Returns ``(frames, n_nonfinite, n_clipped)``. S16 is scaled by 1/32768. F32 NaN/Inf samples are set to 0.0
    (``nonfinite="zero"``) or rejected (``"reject"``); finite F32 values outside [-1, 1] are clipped.
    Raises :class:`AudioFormatError` for an unknown format, bad channel count, empty data, or a byte count that is not
    a whole number of frames.
    """
    dtype = _check_description(sample_format, channels)
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


def rate_ratio(in_rate: int, out_rate: int = TARGET_RATE) -> Tuple[int, int]:
    """Reduced ``(up, down)`` with ``in_rate * up / down == out_rate``."""
    g = math.gcd(int(in_rate), int(out_rate))
    return int(out_rate) // g, int(in_rate) // g


def decode_chunk(data, sample_format: int, channels: int, sample_rate: int, nonfinite: str = "zero") -> np.ndarray:
    """Convert one self-contained chunk to float32 mono at 16 kHz (stateless).

    Resampling uses :func:`scipy.signal.resample_poly` with the reduced up/down ratio, treating the chunk as a whole
    signal (zero outside). For a continuous stream use :class:`AudioInput`, which keeps filter state across chunks.
    """
    _check_description(sample_format, channels, sample_rate)
    frames, _, _ = parse_chunk(data, sample_format, channels, nonfinite)
    mono = to_mono(frames)
    up, down = rate_ratio(sample_rate)
    if up == down:
        return mono
    return resample_poly(mono, up, down).astype(np.float32)


def encode_chunk(samples: np.ndarray, sample_format: int, channels: int = 1) -> bytes:
    """Encode mono float samples (clipped to [-1, 1]) as interleaved little-endian bytes, duplicated per channel."""
    dtype = _check_description(sample_format, channels)
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


class StreamResampler:
    """Polyphase FIR resampler that keeps its state across chunks.

    Uses the filter of :func:`scipy.signal.resample_poly` (Kaiser beta 5, ``10 * max(up, down)`` taps per side) and
    the same time alignment: output sample ``m`` sits at input time ``m * in_rate / out_rate`` (no delay). Feeding a
    signal in any chunking through :meth:`process` and then :meth:`flush` gives the same samples, to float rounding,
    as ``resample_poly`` on the whole signal. :meth:`process` holds back the last ``~half filter length`` outputs
    until the input that they need has arrived (latency ``10 * max(up, down) / up`` input samples, i.e. about 0.6 ms
    at 48 kHz and 1.3 ms at 44.1 kHz).
    """

    #: outputs computed per vectorised block (bounds temporary memory)
    BLOCK = 8192

    def __init__(self, in_rate: int, out_rate: int = TARGET_RATE):
        if isinstance(out_rate, bool) or not isinstance(out_rate, (int, np.integer)) \
                or not MIN_RATE <= int(out_rate) <= MAX_RATE:
            raise AudioFormatError(
                f"out_rate={out_rate!r} is invalid; expected an integer in {MIN_RATE}..{MAX_RATE} Hz")
        check_rate(in_rate, "in_rate", int(out_rate))
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self.up, self.down = rate_ratio(self.in_rate, self.out_rate)
        self.passthrough = self.up == self.down
        if not self.passthrough:
            max_rate = max(self.up, self.down)
            self._half = 10 * max_rate
            taps = firwin(2 * self._half + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * self.up
            self._q = -(-taps.size // self.up)  # taps per phase
            padded = np.zeros(self._q * self.up)
            padded[: taps.size] = taps
            # poly[p, j] multiplies x[k_hi - (Q-1) + j] for an output whose newest input is k_hi at phase p
            self._poly = padded.reshape(self._q, self.up).T[:, ::-1].copy()
        self.reset()

    def reset(self) -> None:
        """Forget all input (start a new stream at time zero)."""
        self.n_in = 0
        self.n_out = 0
        if not self.passthrough:
            self._buf = np.zeros(self._q - 1)
            self._base = -(self._q - 1)  # absolute input index of _buf[0]

    @property
    def latency_samples(self) -> int:
        """Input samples :meth:`process` holds back before the outputs that need them are emitted."""
        return 0 if self.passthrough else self._half // self.up + 1

    def _emit(self, m_stop: int) -> np.ndarray:
        """Compute outputs ``n_out .. m_stop-1`` from the buffered input (zeros beyond it)."""
        if m_stop <= self.n_out:
            return np.zeros(0, dtype=np.float32)
        m = np.arange(self.n_out, m_stop, dtype=np.int64)
        t = m * self.down + self._half
        k_hi = t // self.up
        phase = t - k_hi * self.up
        need = int(k_hi[-1]) + 1 - self._base
        buf = self._buf if need <= self._buf.size else np.concatenate([self._buf, np.zeros(need - self._buf.size)])
        windows = np.lib.stride_tricks.sliding_window_view(buf, self._q)
        start = k_hi - (self._q - 1) - self._base
        out = np.empty(m.size, dtype=np.float32)
        for i in range(0, m.size, self.BLOCK):
            sl = slice(i, i + self.BLOCK)
            out[sl] = np.einsum("mq,mq->m", windows[start[sl]], self._poly[phase[sl]])
        self.n_out = m_stop
        # keep what the next output needs
        next_lo = (self.n_out * self.down + self._half) // self.up - (self._q - 1)
        drop = max(0, min(next_lo - self._base, self._buf.size))
        if drop:
            self._buf = self._buf[drop:].copy()
            self._base += drop
        return out

    def process(self, x: np.ndarray) -> np.ndarray:
        """Feed float samples; return every output sample whose input is now complete."""
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        if self.passthrough:
            self.n_in += x.size
            self.n_out += x.size
            return x.copy()
        self._buf = np.concatenate([self._buf, x.astype(np.float64)])
        self.n_in += x.size
        # output m is complete when its newest input index (m*down + half)//up < n_in
        m_stop = max(0, -(-(self.n_in * self.up - self._half) // self.down))
        m_stop = min(m_stop, self._total_out())
        return self._emit(m_stop)

    def _total_out(self) -> int:
        return -(-self.n_in * self.up // self.down)

    def flush(self) -> np.ndarray:
        """Emit the held-back outputs (input taken as zero after the end); the stream then continues from here."""
        if self.passthrough:
            return np.zeros(0, dtype=np.float32)
        return self._emit(self._total_out())


@dataclass(frozen=True)
class ContinuityEvent:
    """A discontinuity between two consecutive chunks.

    ``kind`` is ``"gap"`` (audio missing: the chunk starts later than the previous one ended) or ``"overlap"``
    (the chunk starts earlier, e.g. a duplicated or re-stamped chunk, or time going backwards). ``delta_s`` is
    ``stamp - expected_stamp`` (positive for gaps), ``samples`` the same in input samples.
    """

    kind: str
    stamp_s: float
    expected_stamp_s: float
    delta_s: float
    samples: int


class ContinuityChecker:
    """Check that each chunk's header stamp follows from the previous stamp plus its sample count.

    A stamp is the time of the first sample of the chunk. Stamps of exactly 0.0 mean "unstamped" and are not checked
    (counted in ``unstamped``). A change of sample rate restarts the expectation without an event.
    """

    def __init__(self, tolerance_s: float = 0.01):
        if not tolerance_s >= 0:
            raise ValueError(f"tolerance_s={tolerance_s!r} must be >= 0")
        self.tolerance_s = float(tolerance_s)
        self.reset()

    def reset(self) -> None:
        """Forget the previous chunk and zero the counters."""
        self._expected: Optional[float] = None
        self._rate: Optional[int] = None
        self.chunks = 0
        self.gaps = 0
        self.overlaps = 0
        self.unstamped = 0
        self.gap_s = 0.0
        self.overlap_s = 0.0
        self.last_event: Optional[ContinuityEvent] = None

    def check(self, stamp_s: float, n_samples: int, sample_rate: int) -> Optional[ContinuityEvent]:
        """Record one chunk; return a :class:`ContinuityEvent` when it does not continue the previous one."""
        if n_samples < 0 or sample_rate <= 0:
            raise ValueError(f"n_samples={n_samples} and sample_rate={sample_rate} must be >= 0 and > 0")
        self.chunks += 1
        if stamp_s == 0.0 or not math.isfinite(stamp_s):
            self.unstamped += 1
            self._expected = None
            return None
        event = None
        if self._expected is not None and self._rate == sample_rate:
            delta = stamp_s - self._expected
            if abs(delta) > self.tolerance_s:
                kind = "gap" if delta > 0 else "overlap"
                event = ContinuityEvent(kind, stamp_s, self._expected, delta, int(round(delta * sample_rate)))
                if kind == "gap":
                    self.gaps += 1
                    self.gap_s += delta
                else:
                    self.overlaps += 1
                    self.overlap_s -= delta
                self.last_event = event
        self._rate = sample_rate
        self._expected = stamp_s + n_samples / sample_rate
        return event


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
            _check_description(sample_format, channels, sample_rate)
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
