"""Whisper tokenizer: tokenizer.json and AXERA tokens.txt loaders agree with each other and with `tokenizers`."""

import base64
import json

import pytest

from axcl_ros import assets
from axcl_ros.models.whisper.config import ConfigError, WhisperConfig, load_config
from axcl_ros.models.whisper.tokenizer import TokenizerError, WhisperTokenizer

tokenizers = pytest.importorskip("tokenizers")

SENTENCES = [
    "And Mr. John Dashwood had then leisure to consider how much there might be prudently in his power.",
    "It's 2024! Café—naïve ♪♪ 你好，世界 <<quoted>> __x__   spaces\n\nnew line",
]


def _model_dir(which):
    try:
        return assets.whisper_tiny_en_ct2() if which == "tiny.en" else assets.whisper_base_ct2()
    except assets.AssetNotFoundError as exc:
        pytest.skip(str(exc))


MODELS = {"tiny.en": 51864, "base": 51865}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    folder = _model_dir(request.param)
    n_vocab = MODELS[request.param]
    hf = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok = WhisperTokenizer.from_hf_json(folder / "tokenizer.json", n_vocab=n_vocab)
    ct2_config = json.loads((folder / "config.json").read_text())
    return request.param, folder, n_vocab, hf, tok, ct2_config


def _write_tokens_txt(tok, path):
    with open(path, "w") as f:
        for i, piece in enumerate(tok.token_bytes):
            f.write(f"{base64.b64encode(piece).decode()} {i}\n")


def test_special_ids_from_vocabulary(model):
    name, _, n_vocab, hf, tok, ct2 = model
    assert tok.n_vocab == n_vocab
    assert tok.eot == hf.token_to_id("<|endoftext|>")
    assert tok.sot == hf.token_to_id("<|startoftranscript|>")
    assert tok.no_timestamps == hf.token_to_id("<|notimestamps|>")
    assert tok.no_speech == hf.token_to_id("<|nocaptions|>")
    assert tok.timestamp_begin == tok.no_timestamps + 1
    assert n_vocab - tok.timestamp_begin == 1501  # <|0.00|> .. <|30.00|>
    assert tok.blank == hf.token_to_id("Ġ") == 220
    assert tok.is_multilingual == (name == "base")
    # CTranslate2's config lists the same specials among its suppressed ids
    specials = sorted(i for i in ct2["suppress_ids"] if i >= tok.eot)
    assert specials == sorted([tok.sot, tok.translate, tok.transcribe, tok.sot_lm, tok.sot_prev, tok.no_speech])
    assert ct2["suppress_ids_begin"] == [tok.blank, tok.eot]
    if name == "base":
        assert list(tok.all_language_tokens) == ct2["lang_ids"]
        assert tok.language_token("en") == tok.sot + 1 and tok.language_code(tok.sot + 2) == "zh"
        assert tok.sot_sequence("de", "translate") == [tok.sot, tok.language_token("de"), tok.translate,
                                                         tok.no_timestamps]
    else:
        assert tok.sot_sequence("en", timestamps=True) == [tok.sot]
    assert tok.language_token("he") == tok.language_token("iw")  # old/new code for Hebrew


def test_non_speech_tokens_equal_ctranslate2_suppress_ids(model):
    _, _, _, _, tok, ct2 = model
    assert list(tok.non_speech_tokens) == [i for i in ct2["suppress_ids"] if i < tok.eot]


def test_decode_and_encode_match_tokenizers(model):
    name, _, _, hf, tok, _ = model
    for text in SENTENCES:
        ids = hf.encode(text, add_special_tokens=False).ids
        assert tok.decode(ids) == hf.decode(ids) == text
        ours = tok.encode(text)
        assert tok.decode(ours) == text
        if name == "tiny.en":  # GPT-2 vocabulary: merge order == id order, so rank-based BPE == HF's merges
            assert ours == ids
        else:  # HF's multilingual merges split e.g. " then" into " " + "then"; rank-based BPE (tiktoken) does not
            assert len(ours) <= len(ids)
    # every token whose bytes are valid UTF-8 decodes like `tokenizers`
    mismatched = [i for i in range(0, tok.eot, 7) if _utf8(tok.token_bytes[i]) is not None
                  and _utf8(tok.token_bytes[i]) != hf.decode([i])]
    assert mismatched == []
    # special and timestamp ids are skipped by decode and shown by decode_with_timestamps
    ids = hf.encode(" hello", add_special_tokens=False).ids
    assert tok.decode([tok.sot, *ids, tok.timestamp_begin + 50, tok.eot]) == " hello"
    assert tok.decode_with_timestamps([tok.timestamp_begin, *ids, tok.timestamp_begin + 50]) == \
        "<|0.00|> hello<|1.00|>"


def _utf8(b):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_tokens_txt_loader_agrees_with_tokenizer_json(model, tmp_path):
    _, _, n_vocab, hf, tok, _ = model
    path = tmp_path / "t-tokens.txt"
    _write_tokens_txt(tok, path)
    txt = WhisperTokenizer.from_tokens_txt(path, n_vocab=n_vocab)
    for key in ("eot", "sot", "translate", "transcribe", "sot_lm", "sot_prev", "no_speech", "no_timestamps",
                "timestamp_begin", "blank", "n_vocab", "is_multilingual", "all_language_tokens"):
        assert getattr(txt, key) == getattr(tok, key), key
    ids = [tok.sot, *hf.encode(SENTENCES[1], add_special_tokens=False).ids, tok.eot]
    assert txt.decode(ids) == tok.decode(ids) == SENTENCES[1]
    assert txt.non_speech_tokens == tok.non_speech_tokens
    # broken UTF-8 (half of a multi-byte character) decodes with a replacement character, not an exception
    half = [i for i, b in enumerate(tok.token_bytes) if len(b) == 1 and b[0] >= 0xC2][0]
    assert txt.decode([half]) == "\ufffd"


def test_tokens_txt_with_axera_config(model, tmp_path):
    _, _, n_vocab, _, tok, _ = model
    path = tmp_path / "t-tokens.txt"
    _write_tokens_txt(tok, path)
    cfg = {"n_vocab": n_vocab, "eot": tok.eot, "sot": tok.sot, "translate": tok.translate,
           "transcribe": tok.transcribe, "sot_lm": tok.sot_lm, "sot_prev": tok.sot_prev, "no_speech": tok.no_speech,
           "no_timestamps": tok.no_timestamps, "is_multilingual": int(tok.is_multilingual),
           "all_language_tokens": ",".join(map(str, tok.all_language_tokens)),
           "all_language_codes": ",".join(tok.all_language_codes)}
    (tmp_path / "t_config.json").write_text(json.dumps(cfg))
    wc = load_config(tmp_path / "t_config.json")
    txt = WhisperTokenizer.from_tokens_txt(path, config=wc.token_config())
    assert txt.n_vocab == n_vocab and txt.language_tokens == tok.language_tokens
    assert txt.sot_sequence("en") == tok.sot_sequence("en")
    assert WhisperTokenizer.from_dir(tmp_path, config=wc.token_config()).eot == tok.eot


def test_tokens_txt_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("IQ== 0\nIg== 2\n")
    with pytest.raises(TokenizerError, match="without gaps"):
        WhisperTokenizer.from_tokens_txt(bad)
    bad.write_text("IQ== 0 extra\n")
    with pytest.raises(TokenizerError, match="bad.txt:1"):
        WhisperTokenizer.from_tokens_txt(bad)
    bad.write_text("not*base64 0\n")
    with pytest.raises(TokenizerError, match="bad token line"):
        WhisperTokenizer.from_tokens_txt(bad)
    with pytest.raises(TokenizerError, match="expected tokenizer.json"):
        WhisperTokenizer.from_dir(tmp_path / "nowhere")


def test_unknown_language_and_task(model):
    tok = model[4]
    with pytest.raises(TokenizerError, match="unknown language 'xx'"):
        tok.language_token("xx")
    with pytest.raises(TokenizerError, match="task"):
        tok.sot_sequence("en", "summarise")


def test_config_dict_and_errors(tmp_path):
    cfg = WhisperConfig.from_dict({"n_mels": "80", "n_vocab": 51865, "n_text_layer": 4, "sot_sequence": "1,2,3",
                                   "is_multilingual": "1", "all_language_codes": "en,zh"})
    assert cfg.n_mels == 80 and cfg.multilingual and cfg.tokens["sot_sequence"] == [1, 2, 3]
    assert cfg.tokens["all_language_codes"] == ["en", "zh"] and cfg.n_text_ctx == 448
    with pytest.raises(ConfigError, match="n_audio_state"):
        cfg.require("n_mels", "n_audio_state")
    with pytest.raises(ConfigError, match="'n_mels' must be an integer"):
        WhisperConfig.from_dict({"n_mels": "eighty"})
    with pytest.raises(ConfigError, match="n_vocab differs"):
        cfg.merge(WhisperConfig(n_vocab=51864))
    assert cfg.merge(WhisperConfig(n_audio_state=384)).n_audio_state == 384
    (tmp_path / "c.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="json object"):
        load_config(tmp_path / "c.json")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.json")
