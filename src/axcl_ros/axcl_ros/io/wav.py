"""Read WAV files (PCM 8/16/24/32-bit, IEEE float 32/64, any channel count) and headerless raw S16 audio.

A small RIFF parser (no third-party dependency) that accepts ``WAVE_FORMAT_PCM``, ``WAVE_FORMAT_IEEE_FLOAT`` and
``WAVE_FORMAT_EXTENSIBLE`` with either subformat, and rejects truncated or corrupt files with :class:`WavError`
naming what is wrong. Writing uses the stdlib :mod:`wave` module (PCM16).
"""

from __future__ import annotations

import struct
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from scipy.signal import resample_poly

from .audio import to_mono
from .audio_format import TARGET_RATE, AudioFormatError, rate_ratio

PathLike = Union[str, Path]

_PCM = 1
_FLOAT = 3
_EXTENSIBLE = 0xFFFE
# the GUID tail shared by KSDATAFORMAT_SUBTYPE_PCM / _IEEE_FLOAT
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


class WavError(AudioFormatError):
    """A WAV/raw file is missing, truncated, corrupt or in an unsupported encoding."""


@dataclass
class WavAudio:
    """Decoded audio: ``samples`` float32 ``[frames, channels]`` in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int
    encoding: str  # "pcm8", "pcm16", "pcm24", "pcm32", "float32", "float64", "raw_s16"

    @property
    def channels(self) -> int:
        """Number of channels."""
        return int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.samples.shape[0] / self.sample_rate

    def mono(self, rate: int = TARGET_RATE) -> np.ndarray:
        """Channel mean, resampled to ``rate`` with :func:`scipy.signal.resample_poly` (float32)."""
        x = to_mono(self.samples)
        up, down = rate_ratio(self.sample_rate, rate)
        return x if up == down else resample_poly(x, up, down).astype(np.float32)


def _decode_pcm(raw: bytes, width: int, fmt_tag: int, path: PathLike) -> np.ndarray:
    if fmt_tag == _FLOAT:
        if width == 4:
            x = np.frombuffer(raw, "<f4").astype(np.float32)
        elif width == 8:
            x = np.frombuffer(raw, "<f8").astype(np.float32)
        else:
            raise WavError(f"{path}: float WAV with {8 * width} bits per sample is not supported (32 or 64)")
        if not np.all(np.isfinite(x)):
            raise WavError(f"{path}: float samples hold NaN/Inf values")
        return x
    if width == 1:
        return (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    if width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        return v.astype(np.float32) / float(1 << 23)
    if width == 4:
        return (np.frombuffer(raw, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    raise WavError(f"{path}: PCM WAV with {8 * width} bits per sample is not supported (8, 16, 24, 32)")


def read_wav(path: PathLike, allow_truncated: bool = False) -> WavAudio:
    """Read a RIFF/WAVE file into float32 ``[frames, channels]``.

    Raises :class:`WavError` when the file is missing, is not RIFF/WAVE, lacks a ``fmt `` or ``data`` chunk, uses an
    unsupported encoding, or is shorter than its header says (unless ``allow_truncated``, which keeps the whole
    frames that are present).
    """
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise WavError(f"{path}: cannot read: {exc}") from exc
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise WavError(f"{path}: not a RIFF/WAVE file (starts with {blob[:12]!r})")
    pos = 12
    fmt = None
    data = None
    while pos + 8 <= len(blob):
        cid = blob[pos:pos + 4]
        (size,) = struct.unpack_from("<I", blob, pos + 4)
        body = blob[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            if len(body) < 16:
                raise WavError(f"{path}: fmt chunk has {len(body)} bytes, needs at least 16")
            fmt = body
        elif cid == b"data":
            if len(body) < size:
                if not allow_truncated:
                    raise WavError(f"{path}: truncated: data chunk declares {size} bytes, file holds {len(body)}")
            data = body
            if fmt is not None:
                break
        pos += 8 + size + (size & 1)
    if fmt is None:
        raise WavError(f"{path}: no 'fmt ' chunk before the end of the file")
    if data is None:
        raise WavError(f"{path}: no 'data' chunk (truncated or corrupt file)")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE:
        if len(fmt) < 40:
            raise WavError(f"{path}: WAVE_FORMAT_EXTENSIBLE fmt chunk has {len(fmt)} bytes, needs 40")
        tag = struct.unpack_from("<H", fmt, 24)[0]
        if fmt[26:40] != _GUID_TAIL:
            raise WavError(f"{path}: unsupported WAVE_FORMAT_EXTENSIBLE subformat {fmt[24:40].hex()}")
    if tag not in (_PCM, _FLOAT):
        raise WavError(f"{path}: unsupported WAV format tag {tag:#x} (PCM=1 and IEEE float=3 are supported)")
    if channels < 1 or rate < 1 or bits < 8 or bits % 8:
        raise WavError(f"{path}: corrupt fmt chunk: channels={channels}, sample_rate={rate}, bits={bits}")
    width = bits // 8
    if block_align != width * channels:
        raise WavError(f"{path}: corrupt fmt chunk: block_align={block_align}, expected {width * channels}")
    usable = len(data) - len(data) % block_align
    if usable != len(data) and not allow_truncated:
        raise WavError(f"{path}: data chunk of {len(data)} bytes is not a whole number of {block_align}-byte frames")
    x = _decode_pcm(data[:usable], width, tag, path)
    kind = ("float" if tag == _FLOAT else "pcm") + str(bits)
    return WavAudio(x.reshape(-1, channels), int(rate), kind)


def read_raw_s16(path: PathLike, sample_rate: int = TARGET_RATE, channels: int = 1) -> WavAudio:
    """Read headerless little-endian signed 16-bit interleaved samples (e.g. pocketsphinx ``*.raw``)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise WavError(f"{path}: cannot read: {exc}") from exc
    if channels < 1 or sample_rate < 1:
        raise WavError(f"{path}: invalid description channels={channels}, sample_rate={sample_rate}")
    if not raw:
        raise WavError(f"{path}: file is empty")
    if len(raw) % (2 * channels):
        raise WavError(f"{path}: {len(raw)} bytes is not a whole number of {2 * channels}-byte S16 frames")
    x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    return WavAudio(x.reshape(-1, channels), int(sample_rate), "raw_s16")


def read_audio(path: PathLike, sample_rate: int = TARGET_RATE) -> WavAudio:
    """:func:`read_wav` for a RIFF file, else :func:`read_raw_s16` at ``sample_rate`` mono."""
    with open(path, "rb") as f:
        head = f.read(4)
    return read_wav(path) if head == b"RIFF" else read_raw_s16(path, sample_rate)


def write_wav(path: PathLike, samples: np.ndarray, sample_rate: int) -> None:
    """Write float samples (``[frames]`` or ``[frames, channels]``, clipped to [-1, 1]) as PCM16 WAV."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] < 1:
        raise WavError(f"{path}: samples must be [frames] or [frames, channels], got shape {x.shape}")
    pcm = np.clip(np.rint(np.clip(x, -1.0, 1.0) * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
