"""Whisper log-mel front end in numpy (16 kHz mono float audio → ``[n_mels, 3000]`` float32).

Conventions (OpenAI Whisper ``audio.py``): n_fft 400, hop 160, periodic Hann window, centred STFT with reflect
padding, power spectrum, Slaney-scale mel filters with Slaney area normalisation (librosa's defaults),
``log10(max(x, 1e-10))``, floor at ``max − 8``, then ``(x + 4) / 4``. The audio gets 160 trailing zero samples
and the last STFT frame is dropped, so ``n`` samples give ``n // 160 + 1`` content frames; the result is padded with
zeros (or trimmed) to ``n_frames`` (3000 = 30 s), as faster-whisper and AXERA's Python demo do.
``pad_audio=True`` instead pads the *audio* with zeros to 30 s before the STFT (the OpenAI ``transcribe`` way).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["SAMPLE_RATE", "N_FFT", "HOP_LENGTH", "N_FRAMES", "N_SAMPLES", "MelError", "mel_filters",
           "log_mel_spectrogram"]

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
N_FRAMES = 3000
N_SAMPLES = N_FRAMES * HOP_LENGTH  # 30 s


class MelError(ValueError):
    """The audio or a front-end parameter is not usable (the message names it and its value)."""


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (27 mels per factor 6.4)."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mel = hz / f_sp
    log_region = hz >= min_log_hz
    return np.where(log_region, min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


@lru_cache(maxsize=8)
def mel_filters(n_mels: int = 80, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """Triangular Slaney mel filter bank ``[n_mels, n_fft // 2 + 1]`` float32 spanning 0 Hz .. Nyquist.

    Each triangle is divided by its width in Hz / 2 ("slaney" area normalisation), like
    ``librosa.filters.mel(sr, n_fft, n_mels)`` with its defaults. The returned array is read-only (cached).
    """
    if n_mels <= 0 or n_fft <= 0 or sample_rate <= 0:
        raise MelError(f"mel_filters: n_mels={n_mels}, sample_rate={sample_rate}, n_fft={n_fft} must be > 0")
    fft_hz = np.arange(n_fft // 2 + 1, dtype=np.float64) * sample_rate / n_fft
    edges_hz = _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(sample_rate / 2.0)), n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (fft_hz[None, :] - lower) / (centre - lower)
    falling = (upper - fft_hz[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= 2.0 / (upper - lower)
    out = weights.astype(np.float32)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=2)
def _hann(n_fft: int) -> np.ndarray:
    out = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic Hann
    out.flags.writeable = False
    return out


def _power_spectrum(audio: np.ndarray) -> np.ndarray:
    """``|STFT|²`` ``[n_fft//2+1, frames]`` of a centred, reflect-padded STFT; the last frame is dropped."""
    half = N_FFT // 2
    padded = np.pad(audio, (half, half), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    spec = np.fft.rfft(frames * _hann(N_FFT), axis=-1)
    power = spec.real.astype(np.float32) ** 2 + spec.imag.astype(np.float32) ** 2
    return power[:-1].T


def log_mel_spectrogram(audio: np.ndarray, n_mels: int = 80, *, n_frames: int = N_FRAMES,
                        pad_audio: bool = False) -> np.ndarray:
    """Normalised log-mel ``[n_mels, n_frames]`` float32 of 16 kHz mono ``audio`` (float, about −1..1).

    Audio longer than ``n_frames`` hops is cut to its first ``n_frames`` frames; shorter audio is zero-padded
    (in the normalised mel domain, or in the audio domain with ``pad_audio=True``). Raises :class:`MelError`
    for non-1-D, empty or non-finite audio.
    """
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise MelError(f"audio must be 1-D mono samples, got shape {audio.shape}")
    if audio.size == 0:
        raise MelError("audio is empty (0 samples)")
    if not np.issubdtype(audio.dtype, np.floating):
        raise MelError(f"audio must be float samples in [-1, 1], got dtype {audio.dtype}")
    if n_mels <= 0 or n_frames <= 0:
        raise MelError(f"n_mels={n_mels} and n_frames={n_frames} must be > 0")
    audio = audio.astype(np.float32, copy=False)
    if not np.all(np.isfinite(audio)):
        raise MelError("audio contains NaN or infinite samples")
    max_samples = n_frames * HOP_LENGTH
    if pad_audio:
        # frames 0..n_frames-1 only see samples below n_frames*hop + n_fft/2; pad zeros a bit past that
        target = max_samples + N_FFT
        audio = audio[:target] if audio.size >= target else np.pad(audio, (0, target - audio.size))
    else:
        audio = np.pad(audio[: max_samples + HOP_LENGTH], (0, HOP_LENGTH))
    power = _power_spectrum(audio)[:, :n_frames]
    mel = mel_filters(n_mels) @ power
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    log_spec = (log_spec + 4.0) / 4.0
    out = np.zeros((n_mels, n_frames), dtype=np.float32)
    out[:, : log_spec.shape[1]] = log_spec
    return out
