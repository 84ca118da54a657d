"""Host-side Whisper decode loop over any :class:`~.runner.WhisperRunner` (greedy, one ≤ 30-s window).

Steps: encode the log-mel window; feed ``<|startoftranscript|>`` at offset 0 — its logits give the no-speech
probability and, with ``language="auto"`` on a multilingual model, the language (argmax over the language tokens);
feed the rest of the prompt; then greedy decoding with OpenAI's logit rules until ``<|endoftext|>`` or the end of the
text context (448):

* first sampled step: no blank (``" "``) and no ``eot``;
* always: no non-speech symbols and no special tokens other than ``eot`` and timestamps;
* with timestamps: timestamps come in pairs and never decrease, the first token is a timestamp ≤
  ``max_initial_timestamp``, and a timestamp is forced when their total probability beats every text token;
  without timestamps, timestamp tokens are suppressed.

Quality guards: ``no_speech_prob > no_speech_threshold`` with ``avg_logprob < logprob_threshold`` (OpenAI's rule), or
``no_speech_prob > no_speech_hard_threshold`` alone (catches the classic "you" on silence, whose log-probability is
high) → flag ``no_speech`` and empty result; zlib compression ratio above ``compression_ratio_threshold`` → flag
``compression_ratio``; a phrase repeating back to back → decoding stops, flag ``repetition``; both empty the result
when ``drop_hallucinations`` is set. ``avg_logprob < logprob_threshold`` alone → flag ``low_logprob`` only.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .mel import N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram
from .runner import WhisperRunner
from .tokenizer import TIME_PRECISION, WhisperTokenizer

__all__ = ["DecodeError", "DecodeOptions", "Segment", "Timing", "TranscriptionResult", "decode", "transcribe",
           "compression_ratio", "tokens_to_segments"]


class DecodeError(ValueError):
    """Bad decode arguments (names the field and value): unknown language/task, audio too long, bad option."""


class Segment(NamedTuple):
    """A time-stamped piece of the transcript (seconds from the start of the window)."""

    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float


@dataclass
class Timing:
    """Wall times of one :func:`decode` call."""

    mel_ms: float = 0.0
    encode_ms: float = 0.0
    decode_ms: float = 0.0
    n_tokens: int = 0  #: decoder steps run (prompt + generated)


@dataclass
class TranscriptionResult:
    """Outcome of one window. ``text`` is empty when a guard dropped it (see ``flags``)."""

    text: str
    language: str
    segments: List[Segment]
    tokens: List[int]
    timing: Timing
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    flags: Tuple[str, ...] = ()
    raw_text: str = ""  #: decoded text before any guard emptied it
    language_probs: Dict[str, float] = field(default_factory=dict)
    duration: float = 0.0

    @property
    def rtf(self) -> float:
        """Real-time factor: (mel + encode + decode time) / audio duration."""
        t = self.timing
        return (t.mel_ms + t.encode_ms + t.decode_ms) / 1000.0 / self.duration if self.duration > 0 else 0.0


@dataclass
class DecodeOptions:
    """Greedy decoding options (OpenAI defaults for the thresholds)."""

    language: Optional[str] = "en"  #: language code, or "auto" to detect (English-only models always use "en")
    task: str = "transcribe"  #: or "translate" (multilingual models)
    timestamps: bool = False
    max_initial_timestamp: Optional[float] = 1.0
    suppress_blank: bool = True
    suppress_tokens: Optional[Sequence[int]] = None  #: None → the tokenizer's non-speech symbols
    max_new_tokens: Optional[int] = None  #: None → until the text context (448) is full
    no_speech_threshold: Optional[float] = 0.6
    no_speech_hard_threshold: Optional[float] = 0.9  #: above this, no-speech regardless of the log-probability
    logprob_threshold: Optional[float] = -1.0
    compression_ratio_threshold: Optional[float] = 2.4
    repetition_max_period: int = 24  #: longest repeated phrase (tokens) the loop check looks for
    repetition_min_repeats: int = 5  #: back-to-back occurrences that count as a loop
    drop_hallucinations: bool = True


def compression_ratio(text: str) -> float:
    """``len(utf8) / len(zlib(utf8))``: high (> 2.4) for repetitive text."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = np.max(x)
    return x - (m + np.log(np.sum(np.exp(x - m))))


def _logsumexp(x: np.ndarray) -> float:
    m = np.max(x)
    if not np.isfinite(m):
        return float(m)
    return float(m + np.log(np.sum(np.exp(x - m))))


class _Rules:
    """OpenAI's logit filters for greedy decoding."""

    def __init__(self, tok: WhisperTokenizer, n_vocab: int, opts: DecodeOptions):
        self.tok, self.opts, self.n_vocab = tok, opts, n_vocab
        suppress = list(tok.non_speech_tokens if opts.suppress_tokens is None else opts.suppress_tokens)
        suppress += range(tok.eot + 1, min(tok.timestamp_begin, n_vocab))  # sot, languages, tasks, no_speech, …
        if not opts.timestamps:
            suppress += range(tok.timestamp_begin, n_vocab)
        self.suppress = np.unique(np.asarray([t for t in suppress if 0 <= t < n_vocab], dtype=np.int64))
        self.first = np.asarray([tok.blank, tok.eot], dtype=np.int64)
        self.max_initial = None
        if opts.timestamps and opts.max_initial_timestamp is not None:
            self.max_initial = tok.timestamp_begin + int(round(opts.max_initial_timestamp / TIME_PRECISION))

    def apply(self, logits: np.ndarray, sampled: Sequence[int]) -> None:
        tb, eot = self.tok.timestamp_begin, self.tok.eot
        if self.opts.suppress_blank and not sampled:
            logits[self.first] = -np.inf
        logits[self.suppress] = -np.inf
        if not self.opts.timestamps:
            return
        last_ts = len(sampled) >= 1 and sampled[-1] >= tb
        penultimate_ts = len(sampled) < 2 or sampled[-2] >= tb
        if last_ts:
            if penultimate_ts:
                logits[tb:] = -np.inf  # after a pair (or a lone first timestamp) comes text or eot
            else:
                logits[:eot] = -np.inf  # after a segment's end timestamp: another timestamp or eot
        stamps = [t for t in sampled if t >= tb]
        if stamps:
            last = stamps[-1] if (last_ts and not penultimate_ts) else stamps[-1] + 1
            logits[tb:last] = -np.inf  # never go back in time; segments have non-zero length
        if not sampled:
            logits[:tb] = -np.inf  # the first token is a timestamp
            if self.max_initial is not None:
                logits[self.max_initial + 1:] = -np.inf
        logprobs = _log_softmax(logits)
        if _logsumexp(logprobs[tb:]) > np.max(logprobs[:tb]):
            logits[:tb] = -np.inf


def _repetition(tokens: Sequence[int], timestamp_begin: int, max_period: int, min_repeats: int,
                min_span: int = 8) -> int:
    """Index in ``tokens`` where a back-to-back repeated phrase starts repeating, or -1.

    Timestamp tokens are ignored (they keep increasing in a loop). A loop is ``k`` copies of a ``p``-token phrase
    at the end of the text with ``k >= min_repeats`` and ``k * p >= min_span``; the cut keeps the first copy.
    """
    where = [i for i, t in enumerate(tokens) if t < timestamp_begin]
    text = [tokens[i] for i in where]
    n = len(text)
    for period in range(1, max_period + 1):
        repeats = max(min_repeats, -(-min_span // period))
        span = period * repeats
        if span > n:
            break
        tail = text[n - span:]
        unit = tail[-period:]
        if all(tail[i] == unit[i % period] for i in range(span)):
            return where[n - span + period]
    return -1


def tokens_to_segments(tokens: Sequence[int], logprobs: Sequence[float], tok: WhisperTokenizer, duration: float,
                       no_speech_prob: float) -> List[Segment]:
    """Split sampled tokens at timestamp tokens into segments clipped to ``[0, duration]``.

    Text with no closing timestamp ends at ``duration``; ``avg_logprob`` is the mean over the segment's text tokens
    and closing timestamp.
    """
    segments: List[Segment] = []
    start: Optional[float] = None
    last_end = 0.0
    text_ids: List[int] = []
    lps: List[float] = []

    def emit(end: float) -> None:
        text = tok.decode(text_ids).strip()
        if text:
            begin = min(start if start is not None else last_end, duration)
            segments.append(Segment(begin, max(begin, min(end, duration)), text,
                                    float(np.mean(lps)) if lps else 0.0, no_speech_prob))

    for t, lp in zip(tokens, logprobs):
        if tok.is_timestamp(t):
            sec = tok.timestamp_seconds(t)
            if start is not None and text_ids:
                lps.append(lp)
                emit(sec)
                last_end, start, text_ids, lps = sec, None, [], []
            else:
                start = sec
        else:
            text_ids.append(t)
            lps.append(lp)
    if text_ids:
        emit(duration)
    return segments


def _prompt_and_language(runner: WhisperRunner, tok: WhisperTokenizer, opts: DecodeOptions):
    """Feed SOT, read no-speech prob and (auto) language; feed the rest of the prompt. Returns state."""
    runner.reset()
    logits = runner.step(tok.sot, 0).astype(np.float64)
    probs = np.exp(_log_softmax(logits))
    no_speech_prob = float(probs[tok.no_speech]) if tok.no_speech < probs.size else 0.0
    language = (opts.language or "en").lower()
    language_probs: Dict[str, float] = {}
    if not tok.is_multilingual:
        if language not in ("en", "auto"):
            raise DecodeError(f"language={opts.language!r}: this model is English-only (use 'en' or 'auto')")
        if opts.task != "transcribe":
            raise DecodeError(f"task={opts.task!r}: an English-only model can only transcribe")
        language = "en"
    elif language == "auto":
        ids = np.asarray(tok.all_language_tokens, dtype=np.int64)
        ids = ids[ids < logits.size]
        lp = _log_softmax(logits[ids])
        order = np.argsort(-lp)
        codes = tok.all_language_codes
        language_probs = {codes[i]: float(np.exp(lp[i])) for i in order[:5]}
        language = codes[int(order[0])]
    else:
        tok.language_token(language)  # raises for unknown codes
    prompt = tok.sot_sequence(language, opts.task, timestamps=opts.timestamps)
    for offset, token in enumerate(prompt[1:], start=1):
        logits = runner.step(token, offset)
    return prompt, logits, no_speech_prob, language, language_probs


def decode(mel: np.ndarray, runner: WhisperRunner, tokenizer: WhisperTokenizer,
           options: Optional[DecodeOptions] = None, *, duration: Optional[float] = None) -> TranscriptionResult:
    """Greedy-decode one ``[n_mels, 3000]`` (or ``[1, n_mels, 3000]``) log-mel window.

    ``duration`` (seconds of real audio in the window, default 30) bounds the last open segment.
    """
    opts = options or DecodeOptions()
    if opts.task not in ("transcribe", "translate"):
        raise DecodeError(f"task must be 'transcribe' or 'translate', got {opts.task!r}")
    if opts.max_new_tokens is not None and opts.max_new_tokens < 1:
        raise DecodeError(f"max_new_tokens must be >= 1 (or None), got {opts.max_new_tokens}")
    if tokenizer.eot >= runner.n_vocab:
        raise DecodeError(f"tokenizer (eot={tokenizer.eot}) does not fit the model (n_vocab={runner.n_vocab})")
    duration = float(N_SAMPLES / SAMPLE_RATE if duration is None else duration)
    timing = Timing()
    mel = np.asarray(mel, dtype=np.float32)
    t0 = time.perf_counter()
    runner.encode(mel if mel.ndim == 3 else mel[None])
    t1 = time.perf_counter()
    timing.encode_ms = (t1 - t0) * 1000.0
    prompt, logits, no_speech_prob, language, language_probs = _prompt_and_language(runner, tokenizer, opts)
    rules = _Rules(tokenizer, runner.n_vocab, opts)
    n_ctx = runner.n_text_ctx
    limit = n_ctx - len(prompt) if opts.max_new_tokens is None else min(opts.max_new_tokens, n_ctx - len(prompt))
    offset = len(prompt)
    sampled: List[int] = []
    logprobs: List[float] = []
    flags: List[str] = []
    eot_logprob: Optional[float] = None
    while True:
        work = logits.astype(np.float64)
        rules.apply(work, sampled)
        token = int(np.argmax(work))
        lp = float(_log_softmax(work)[token])
        if token == tokenizer.eot:
            eot_logprob = lp
            break
        sampled.append(token)
        logprobs.append(lp)
        cut = _repetition(sampled, tokenizer.timestamp_begin, opts.repetition_max_period,
                          opts.repetition_min_repeats)
        if cut >= 0:
            del sampled[cut:]
            del logprobs[cut:]
            flags.append("repetition")
            break
        if len(sampled) >= limit or offset >= n_ctx:
            flags.append("truncated")
            break
        logits = runner.step(token, offset)
        offset += 1
    timing.decode_ms = (time.perf_counter() - t1) * 1000.0
    timing.n_tokens = offset
    scored = logprobs + ([eot_logprob] if eot_logprob is not None else [])
    avg_logprob = float(np.mean(scored)) if scored else 0.0  # OpenAI: sum / (text tokens + eot)
    raw_text = tokenizer.decode(sampled).strip()
    ratio = compression_ratio(raw_text)
    if opts.timestamps:
        segments = tokens_to_segments(sampled, logprobs, tokenizer, duration, no_speech_prob)
    else:
        segments = [Segment(0.0, duration, raw_text, avg_logprob, no_speech_prob)] if raw_text else []
    low_logprob = opts.logprob_threshold is not None and avg_logprob < opts.logprob_threshold
    if low_logprob:
        flags.append("low_logprob")
    if opts.compression_ratio_threshold is not None and ratio > opts.compression_ratio_threshold:
        flags.append("compression_ratio")
    no_speech = (opts.no_speech_threshold is not None and no_speech_prob > opts.no_speech_threshold
                 and (opts.logprob_threshold is None or low_logprob))
    no_speech = no_speech or (opts.no_speech_hard_threshold is not None
                              and no_speech_prob > opts.no_speech_hard_threshold)
    if no_speech:
        flags.append("no_speech")
    drop = no_speech or (opts.drop_hallucinations and ("compression_ratio" in flags or "repetition" in flags))
    return TranscriptionResult(
        text="" if drop else raw_text, language=language, segments=[] if drop else segments, tokens=sampled,
        timing=timing, avg_logprob=avg_logprob, no_speech_prob=no_speech_prob, compression_ratio=ratio,
        flags=tuple(flags), raw_text=raw_text, language_probs=language_probs, duration=duration)


def transcribe(audio: np.ndarray, runner: WhisperRunner, tokenizer: WhisperTokenizer, language: Optional[str] = "en",
               task: str = "transcribe", *, timestamps: bool = False, options: Optional[DecodeOptions] = None,
               sample_rate: int = SAMPLE_RATE) -> TranscriptionResult:
    """Transcribe ≤ 30 s of 16 kHz mono float32 audio (callers chunk longer audio, e.g. with a VAD).

    ``language``/``task``/``timestamps`` override the same fields of ``options``. Raises :class:`DecodeError` for
    audio that is not 1-D, not 16 kHz, empty or longer than 30 s.
    """
    if sample_rate != SAMPLE_RATE:
        raise DecodeError(f"sample_rate must be {SAMPLE_RATE} Hz, got {sample_rate}; resample first")
    audio = np.asarray(audio)
    if audio.ndim != 1 or audio.size == 0:
        raise DecodeError(f"audio must be non-empty 1-D mono samples, got shape {audio.shape}")
    if audio.size > N_SAMPLES:
        raise DecodeError(f"audio is {audio.size / SAMPLE_RATE:.2f} s; at most 30 s per call (split it first)")
    opts = DecodeOptions(**{**(options.__dict__ if options else {}), "language": language, "task": task,
                            "timestamps": timestamps})
    t0 = time.perf_counter()
    mel = log_mel_spectrogram(audio.astype(np.float32, copy=False), runner.n_mels)
    mel_ms = (time.perf_counter() - t0) * 1000.0
    duration = audio.size / SAMPLE_RATE
    result = decode(mel, runner, tokenizer, opts, duration=duration)
    result.timing.mel_ms = mel_ms
    return result
