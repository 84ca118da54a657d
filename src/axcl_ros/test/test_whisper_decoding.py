"""Host decode loop rules, driven by a scripted WhisperRunner and a small synthetic vocabulary."""

import base64

import numpy as np
import pytest

from axcl_ros.models.whisper.decoding import (
    DecodeError,
    DecodeOptions,
    Segment,
    compression_ratio,
    decode,
    tokens_to_segments,
    transcribe,
)
from axcl_ros.models.whisper.runner import WhisperRunner
from axcl_ros.models.whisper.tokenizer import TokenizerError, WhisperTokenizer

WORDS = [b" hello", b" world", b" again", b" one", b" two", b" three", b" four", b" five"]
N_LANG = 3  # en, zh, de
EOT = 256 + len(WORDS)
N_VOCAB = EOT + 2 + N_LANG + 6 + 1501


def make_tokenizer(tmp_path, multilingual):
    path = tmp_path / "toy-tokens.txt"
    pieces = [bytes([i]) for i in range(256)] + WORDS
    path.write_text("".join(f"{base64.b64encode(p).decode()} {i}\n" for i, p in enumerate(pieces)))
    return WhisperTokenizer.from_tokens_txt(path, n_vocab=N_VOCAB, multilingual=multilingual)


@pytest.fixture
def tok(tmp_path):
    return make_tokenizer(tmp_path, multilingual=False)


@pytest.fixture
def mtok(tmp_path):
    return make_tokenizer(tmp_path, multilingual=True)


def w(word):
    return 256 + WORDS.index(word.encode())


class ScriptedRunner:
    """Logits = ``background`` except the entries ``policy(generated tokens, history)`` returns."""

    def __init__(self, policy, prompt_len, n_text_ctx=448, background=-5.0, sot_logits=None):
        self.n_text_layer, self.n_text_ctx, self.n_vocab, self.n_mels = 4, n_text_ctx, N_VOCAB, 80
        self.policy, self.prompt_len, self.background = policy, prompt_len, background
        self.sot_logits = sot_logits or {}
        self.calls, self.history, self.encoded = [], [], 0

    def encode(self, mel):
        assert mel.shape == (1, 80, 3000) and mel.dtype == np.float32
        self.encoded += 1

    def reset(self):
        self.history = []

    def step(self, token, offset):
        assert offset == len(self.history) < self.n_text_ctx
        self.history.append(int(token))
        self.calls.append((int(token), offset))
        logits = np.full(self.n_vocab, self.background, np.float32)
        prefs = dict(self.sot_logits) if len(self.history) == 1 else {}
        if len(self.history) >= self.prompt_len:
            prefs.update(self.policy(self.history[self.prompt_len:]))
        for t, v in prefs.items():
            logits[t] = v
        return logits


def script(*steps):
    """Policy from a list of per-step preference dicts (the last one repeats)."""
    return lambda gen: steps[min(len(gen), len(steps) - 1)]


MEL = np.zeros((80, 3000), np.float32)


def test_english_prompt_text_and_protocol(tok):
    runner = ScriptedRunner(script({w(" hello"): 10}, {w(" world"): 10}, {EOT: 10}), prompt_len=2)
    assert isinstance(runner, WhisperRunner)
    res = decode(MEL, runner, tok)
    assert runner.calls[:2] == [(tok.sot, 0), (tok.no_timestamps, 1)]
    assert [o for _, o in runner.calls] == list(range(len(runner.calls)))
    assert res.tokens == [w(" hello"), w(" world")] and res.text == "hello world"
    assert res.language == "en" and res.flags == () and res.timing.n_tokens == 4
    assert res.segments == [Segment(0.0, 30.0, "hello world", res.avg_logprob, res.no_speech_prob)]
    assert -0.01 < res.avg_logprob < 0


def test_multilingual_prompt_language_and_task(mtok):
    runner = ScriptedRunner(script({EOT: 10}), prompt_len=4)
    decode(MEL, runner, mtok, DecodeOptions(language="de", task="translate"))
    assert [t for t, _ in runner.calls[:4]] == [mtok.sot, mtok.language_token("de"), mtok.translate,
                                                mtok.no_timestamps]
    with pytest.raises(TokenizerError, match="unknown language 'xx'"):
        decode(MEL, ScriptedRunner(script({EOT: 10}), 4), mtok, DecodeOptions(language="xx"))
    with pytest.raises(DecodeError, match="task must be"):
        decode(MEL, ScriptedRunner(script({EOT: 10}), 4), mtok, DecodeOptions(task="summarise"))


def test_language_detection_looks_only_at_language_tokens(mtok):
    zh, de = mtok.language_token("zh"), mtok.language_token("de")
    sot_logits = {zh: 3.0, de: 2.0, w(" hello"): 9.0}
    runner = ScriptedRunner(script({w(" two"): 10}, {EOT: 10}), prompt_len=4, sot_logits=sot_logits)
    res = decode(MEL, runner, mtok, DecodeOptions(language="auto"))
    assert res.language == "zh" and runner.calls[1] == (zh, 1)
    assert list(res.language_probs)[:2] == ["zh", "de"]
    assert res.language_probs["zh"] == pytest.approx(np.exp(3) / (np.exp(3) + np.exp(2) + np.exp(-5)), rel=1e-4)


def test_english_only_model_refuses_other_languages_and_translation(tok):
    with pytest.raises(DecodeError, match="English-only"):
        decode(MEL, ScriptedRunner(script({EOT: 10}), 2), tok, DecodeOptions(language="de"))
    with pytest.raises(DecodeError, match="only transcribe"):
        decode(MEL, ScriptedRunner(script({EOT: 10}), 2), tok, DecodeOptions(task="translate"))
    res = decode(MEL, ScriptedRunner(script({EOT: 10}), 2), tok, DecodeOptions(language="auto"))
    assert res.language == "en"


def test_suppressions(tok):
    first = {EOT: 20, tok.blank: 15, w(" hello"): 10}  # no eot / blank as the first token
    second = {ord('"'): 20, tok.sot: 19, tok.no_speech: 18, tok.transcribe: 17, tok.language_token("en"): 16,
              tok.timestamp_begin + 5: 15, tok.no_timestamps: 14, w(" world"): 10}
    runner = ScriptedRunner(script(first, second, {EOT: 10}), prompt_len=2)
    res = decode(MEL, runner, tok)
    assert res.tokens == [w(" hello"), w(" world")]
    res = decode(MEL, ScriptedRunner(script(first, second, {EOT: 10}), 2), tok, DecodeOptions(suppress_blank=False))
    assert res.tokens == []  # eot allowed first: nothing transcribed


def test_timestamp_rules_and_segments(tok):
    tb = tok.timestamp_begin
    steps = [
        {w(" hello"): 10, tb + 100: 9, tb + 20: 5},     # first: a timestamp <= 1.0 s → <|0.40|>
        {tb + 10: 10, w(" hello"): 8},                 # after a lone timestamp: text
        {w(" world"): 10},
        {tb + 10: 10, tb + 60: 8, w(" two"): 7},       # no going back in time → <|1.20|>... or text
        {w(" hello"): 10, tb + 60: 5, EOT: 1},          # after an end timestamp: timestamp or eot
        {tb + 70: 10, w(" again"): 8},                 # after a pair: text
        {EOT: 10},
    ]
    runner = ScriptedRunner(script(*steps), prompt_len=1)
    res = decode(MEL, runner, tok, DecodeOptions(timestamps=True), duration=3.0)
    assert runner.calls[0] == (tok.sot, 0) and len([c for c in runner.calls if c[1] == 1]) == 1
    assert res.tokens == [tb + 20, w(" hello"), w(" world"), tb + 60, tb + 60, w(" again")]
    assert [(s.start, s.end, s.text) for s in res.segments] == [(0.4, 1.2, "hello world"), (1.2, 3.0, "again")]
    assert all(s.no_speech_prob == res.no_speech_prob for s in res.segments)


def test_timestamp_forced_when_their_total_probability_wins(tok):
    tb = tok.timestamp_begin
    many = {tb + i: 2.5 for i in range(60, 80)}  # logsumexp = 2.5 + ln 20 ≈ 5.5 > 3.0
    steps = [{tb: 10}, {w(" one"): 10}, {w(" two"): 3.0, **many}, {EOT: 10}]
    res = decode(MEL, ScriptedRunner(script(*steps), 1, background=-30.0), tok, DecodeOptions(timestamps=True))
    assert res.tokens[:3] == [tb, w(" one"), tb + 60]
    steps[2] = {w(" two"): 6.0, **many}
    res = decode(MEL, ScriptedRunner(script(*steps), 1, background=-30.0), tok, DecodeOptions(timestamps=True))
    assert res.tokens[:3] == [tb, w(" one"), w(" two")]


def test_max_initial_timestamp_can_be_disabled(tok):
    tb = tok.timestamp_begin
    steps = [{tb + 200: 10, tb: 5}, {EOT: 10}]
    opts = DecodeOptions(timestamps=True)
    assert decode(MEL, ScriptedRunner(script(*steps), 1), tok, opts).tokens == [tb]
    opts.max_initial_timestamp = None
    assert decode(MEL, ScriptedRunner(script(*steps), 1), tok, opts).tokens == [tb + 200]


def test_tokens_to_segments_clips_to_duration(tok):
    tb = tok.timestamp_begin
    ids = [tb, w(" one"), tb + 100, tb + 100, w(" two"), tb + 400, tb + 400, w(" three")]
    segs = tokens_to_segments(ids, [-0.1] * len(ids), tok, duration=5.0, no_speech_prob=0.2)
    assert [(s.start, s.end, s.text) for s in segs] == [(0.0, 2.0, "one"), (2.0, 5.0, "two"), (5.0, 5.0, "three")]
    assert segs[0].avg_logprob == pytest.approx(-0.1) and segs[0].no_speech_prob == 0.2
    assert tokens_to_segments([w(" one")], [-1.0], tok, 4.0, 0.0) == [Segment(0.0, 4.0, "one", -1.0, 0.0)]


def test_repetition_loop_is_cut_and_dropped(tok):
    cycle = [w(" hello"), w(" world"), w(" again")]
    runner = ScriptedRunner(lambda gen: {cycle[len(gen) % 3]: 10}, prompt_len=2)
    res = decode(MEL, runner, tok)
    assert "repetition" in res.flags and res.tokens == cycle
    assert res.text == "" and res.segments == [] and res.raw_text == "hello world again"
    assert res.timing.n_tokens < 30  # stopped early, not at 448
    res = decode(MEL, ScriptedRunner(lambda gen: {cycle[len(gen) % 3]: 10}, 2), tok,
                 DecodeOptions(drop_hallucinations=False))
    assert res.text == "hello world again" and "repetition" in res.flags


def test_context_end_truncates(tok):
    words = [w(x) for x in (" one", " two", " three", " four", " five", " hello", " world", " again")]
    runner = ScriptedRunner(lambda gen: {words[(len(gen) * 3) % 8]: 10}, prompt_len=2, n_text_ctx=16)
    res = decode(MEL, runner, tok, DecodeOptions(repetition_max_period=0))
    assert "truncated" in res.flags and len(res.tokens) == 16 - 2  # prompt + text fill the context
    assert max(o for _, o in runner.calls) == 14  # the last token has no room for a successor: never fed
    res = decode(MEL, ScriptedRunner(lambda gen: {words[len(gen) % 8]: 10}, 2), tok,
                 DecodeOptions(repetition_max_period=0, max_new_tokens=5))
    assert len(res.tokens) == 5 and "truncated" in res.flags
    with pytest.raises(DecodeError, match="max_new_tokens must be >= 1"):
        decode(MEL, ScriptedRunner(script({EOT: 10}), 2), tok, DecodeOptions(max_new_tokens=0))


@pytest.mark.parametrize("no_speech_logit, text_logit, dropped", [
    (10.0, 10.0, True),    # no_speech_prob ~ 1 > hard threshold 0.9: dropped even with confident text
    (3.33, 10.0, False),   # ~0.7 but confident text (OpenAI rule needs avg_logprob < -1 too)
    (3.33, -3.0, True),    # ~0.7 and unsure text
])
def test_no_speech_guard(tok, no_speech_logit, text_logit, dropped):
    runner = ScriptedRunner(script({w(" hello"): text_logit}, {EOT: 10}), 2,
                            sot_logits={tok.no_speech: no_speech_logit})
    res = decode(MEL, runner, tok)
    assert res.raw_text == "hello"
    assert ("no_speech" in res.flags) == dropped
    assert (res.text == "") == dropped
    if not dropped:
        assert 0.6 < res.no_speech_prob < 0.8


def test_compression_ratio():
    assert compression_ratio("") == 0.0
    assert compression_ratio("Had he married a more amiable woman, he might have been made respectable.") < 1.5
    assert compression_ratio("thank you for watching. " * 20) > 2.4


def test_transcribe_checks_audio_and_fills_timing(tok):
    runner = ScriptedRunner(script({w(" hello"): 10}, {EOT: 10}), 2)
    audio = (0.1 * np.sin(np.arange(32000) * 0.05)).astype(np.float32)
    res = transcribe(audio, runner, tok, "en", options=DecodeOptions(no_speech_threshold=None))
    assert res.text == "hello" and res.duration == 2.0 and runner.encoded == 1
    assert res.timing.mel_ms > 0 and res.timing.decode_ms > 0 and res.rtf > 0
    assert res.segments[0].end == 2.0
    with pytest.raises(DecodeError, match="at most 30 s"):
        transcribe(np.zeros(16000 * 31, np.float32), runner, tok)
    with pytest.raises(DecodeError, match="1-D"):
        transcribe(np.zeros((2, 100), np.float32), runner, tok)
    with pytest.raises(DecodeError, match="16000 Hz"):
        transcribe(audio, runner, tok, sample_rate=8000)
    with pytest.raises(DecodeError, match="does not fit the model"):
        small = ScriptedRunner(script({EOT: 10}), 2)
        small.n_vocab = 100
        decode(MEL, small, tok)
