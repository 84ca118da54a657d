"""Device-resident Whisper schema-B runner on the AXCL stub: decoding, bytes per token, state checks, errors."""

import numpy as np
import pytest

from axcl_ros.assets import AssetNotFoundError, whisper_tiny_en_ct2
from axcl_ros.models.whisper.axcl_runner import AxclWhisperRunner
from axcl_ros.models.whisper.decoding import DecodeOptions, decode
from axcl_ros.models.whisper.runner import SessionWhisperRunner, WhisperInputError, WhisperModelError, WhisperRunner
from axcl_ros.models.whisper.tokenizer import WhisperTokenizer
from axcl_ros.runtime.axcl_backend import AxclBackend
from axcl_ros.runtime.base import DeviceError
from axcl_ros_testing import stub_models as sm


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return sm.whisper_stub(tmp_path_factory.mktemp("whisper"), n_text_layer=3, n_text_state=32, n_vocab=96,
                           sequence=(10, 11, 12, 13, 14, 15, 16))


MEL = np.random.default_rng(0).standard_normal((80, 3000)).astype(np.float32)


def greedy(runner, pair, max_tokens: int = 40):
    offset = 0
    for tok in pair.sot_sequence:
        logits = runner.step(tok, offset)
        offset += 1
    out = []
    nxt = int(np.argmax(logits))
    while nxt != pair.eot and len(out) < max_tokens:
        out.append(nxt)
        logits = runner.step(nxt, offset)
        offset += 1
        nxt = int(np.argmax(logits))
    return out


def test_dimensions_from_specs(stub, pair):
    r = AxclWhisperRunner.from_files(str(pair.encoder), str(pair.decoder))
    assert (r.n_text_layer, r.n_text_ctx, r.n_vocab, r.n_mels) == (3, 448, 96, 80)
    assert (r.n_text_state, r.n_audio_ctx, r.n_frames) == (32, 1500, 3000)
    # cross K/V are the encoder's own output buffers (zero copy)
    assert r.decoder.device_buffer("cross_k") == r.encoder.device_buffer("cross_k")
    assert r.decoder.device_buffer("cross_v") == r.encoder.device_buffer("cross_v")
    r.release()


def test_decodes_the_sequence_with_minimal_traffic(stub, pair):
    r = AxclWhisperRunner.from_files(str(pair.encoder), str(pair.decoder))
    stub.reset()
    r.encode(MEL)
    c = stub.counters()
    assert c["h2d_bytes"] == MEL.nbytes  # the mel only: the mask is already all ones since construction
    assert c["d2h_bytes"] == 0 and c["d2d_bytes"] == 0
    for _ in range(2):  # a second utterance after reset works the same
        offset = len(pair.sot_sequence)
        for tok in pair.sot_sequence:
            r.step(tok, pair.sot_sequence.index(tok))
        stub.reset()
        tokens = []
        logits = r.step(pair.sot_sequence[-1], offset - 1)  # re-run the last prompt position: same state
        nxt = int(np.argmax(logits))
        while nxt != pair.eot:
            tokens.append(nxt)
            logits = r.step(nxt, offset)
            offset += 1
            nxt = int(np.argmax(logits))
        steps = len(tokens) + 1
        assert tokens == list(pair.sequence)
        c = stub.counters()
        L, D, V = r.n_text_layer, r.n_text_state, r.n_vocab
        # per token: token (4 B) + offset (4 B) + one mask element (4 B), except re-running offset-1 (no mask change)
        assert c["h2d_bytes"] == steps * 8 + (steps - 1) * 4
        assert c["d2d_bytes"] == steps * 2 * L * D * 4 and c["d2d_calls"] == steps * 2 * L
        assert c["d2h_bytes"] == steps * V * 4 and c["d2h_calls"] == steps
        assert c["executes"] == steps
        r.reset()
    r.release()


def test_bytes_per_token_in_order(stub, pair):
    r = AxclWhisperRunner.from_files(str(pair.encoder), str(pair.decoder))
    r.encode(MEL)
    greedy(r, pair)
    r.reset()
    stub.reset()
    tokens = greedy(r, pair)
    steps = len(pair.sot_sequence) + len(tokens)
    c = stub.counters()
    L, D, V = r.n_text_layer, r.n_text_state, r.n_vocab
    per_token = {k: c[k] / steps for k in ("h2d_bytes", "d2d_bytes", "d2h_bytes", "h2d_calls")}
    # offset 0 changes no mask element, every later step exactly one
    assert c["h2d_bytes"] == 8 * steps + 4 * (steps - 1)
    assert per_token["d2d_bytes"] == 2 * L * D * 4 and per_token["d2h_bytes"] == V * 4
    # reset(): self_k/self_v zeroed on the device (memset), the visible prefix of the mask masked again
    stub.reset()
    r.reset()
    c = stub.counters()
    assert c["memset_calls"] == 2 and c["h2d_calls"] == 1 and c["h2d_bytes"] == 4 * (steps - 1)
    r.release()


def test_matches_host_runner_logits(stub, pair):
    """The device-resident runner gives the same logits as the host-buffer runner over the same stub models."""
    backend = AxclBackend()
    dev = AxclWhisperRunner.from_files(str(pair.encoder), str(pair.decoder), backend=backend)
    enc2, dec2 = backend.load(str(pair.encoder)), backend.load(str(pair.decoder))
    host = SessionWhisperRunner(enc2, dec2)
    dev.encode(MEL)
    host.encode(MEL)
    stub.reset()
    seq = [*pair.sot_sequence, *pair.sequence]
    for offset, tok in enumerate(seq):
        a = dev.step(tok, offset)
        b = host.step(tok, offset)
        np.testing.assert_array_equal(a, b)
        assert int(np.argmax(a)) != pair.bad
    dev.release()
    enc2.release()
    dec2.release()


def test_stub_detects_a_missing_kv_row(stub, pair):
    """The decoder stub checks the KV rows; a row that was not written makes it answer the `bad` token."""
    r = AxclWhisperRunner.from_files(str(pair.encoder), str(pair.decoder))
    r.encode(MEL)
    for offset, tok in enumerate(pair.sot_sequence):
        logits = r.step(tok, offset)
    assert int(np.argmax(logits)) == pair.sequence[0]
    row = r.n_text_state * 4
    r.decoder.write_input("self_k", np.zeros(r.n_text_state, np.float32), (1 * r.n_text_ctx + 2) * row)  # layer 1
    logits = r.step(pair.sequence[0], len(pair.sot_sequence))
    assert int(np.argmax(logits)) == pair.bad
    r.release()


def test_stub_detects_missing_cross_kv(stub, pair):
    backend = AxclBackend()
    enc, dec = backend.load(str(pair.encoder)), backend.load(str(pair.decoder))
    r = AxclWhisperRunner(enc, dec)
    r._encoded = True  # skip encode(): the encoder's output buffers are still zero
    assert int(np.argmax(r.step(pair.sot_sequence[0], 0))) == pair.bad
    r.encode(MEL)
    assert int(np.argmax(r.step(pair.sot_sequence[0], 0))) == pair.sequence[0]
    r.release()


def test_offsets_out_of_order_rewrite_the_mask(stub, pair):
    r = AxclWhisperRunner.from_files(str(pair.encoder), str(pair.decoder))
    r.encode(MEL)
    for offset, tok in enumerate(pair.sot_sequence):
        r.step(tok, offset)
    # jump back to offset 1: mask positions 1.. must become masked again (the stub checks mask[p] == (p >= 1))
    assert int(np.argmax(r.step(pair.sot_sequence[1], 1))) != pair.bad
    assert int(np.argmax(r.step(pair.sot_sequence[2], 2))) != pair.bad
    r.release()


def test_bad_arguments(stub, pair):
    r = AxclWhisperRunner.from_files(str(pair.encoder), str(pair.decoder))
    with pytest.raises(WhisperInputError, match="before encode"):
        r.step(1, 0)
    with pytest.raises(WhisperInputError, match="mel must be \\[1,80,3000\\]"):
        r.encode(np.zeros((80, 100), np.float32))
    r.encode(MEL[None])
    with pytest.raises(WhisperInputError, match="token 96 out of range"):
        r.step(96, 0)
    with pytest.raises(WhisperInputError, match="offset 448 out of range"):
        r.step(1, 448)
    r.encoder.release()
    with pytest.raises(DeviceError, match="released"):
        r.step(1, 0)
    r.release()


def test_signature_mismatch_lists_what_was_found(stub, pair, tmp_path):
    backend = AxclBackend()
    enc = backend.load(str(pair.encoder))
    img = backend.load(str(sm.depth_stub(tmp_path / "d.axmodel", size=8)))
    with pytest.raises(WhisperModelError, match="decoder input 'tokens' missing.*Found: encoder inputs \\[mel"):
        AxclWhisperRunner(enc, img)
    other = sm.whisper_stub(tmp_path / "w2", n_text_state=16)
    dec16 = backend.load(str(other.decoder))
    with pytest.raises(WhisperModelError, match="self_k has shape"):
        AxclWhisperRunner(enc, dec16)
    with pytest.raises(WhisperModelError, match="two AxclSession"):
        AxclWhisperRunner(enc, object())
    for s in (enc, img, dec16):
        s.release()


def test_host_decode_loop_over_the_device_runner(stub, tmp_path):
    """The shared greedy decode loop drives the AXCL runner (protocol check) and gets the stub's token sequence."""
    try:
        tok = WhisperTokenizer.from_dir(whisper_tiny_en_ct2())
    except AssetNotFoundError as exc:
        pytest.skip(str(exc))
    words = tok.encode(" hello world from the card")
    pair = sm.whisper_stub(tmp_path, n_text_layer=4, n_text_state=64, n_vocab=len(tok), sequence=words, eot=tok.eot,
                           bad=tok.encode(" corrupt")[0])
    r = AxclWhisperRunner.from_files(str(pair.encoder), str(pair.decoder))
    assert isinstance(r, WhisperRunner)
    stub.reset()
    result = decode(MEL, r, tok, DecodeOptions(language="en", timestamps=False))
    assert result.text == "hello world from the card"
    assert result.tokens == words
    c = stub.counters()
    steps = c["executes"] - 1  # minus the encoder
    L, D, V = 4, 64, len(tok)
    assert steps == len(tok.sot_sequence("en")) + len(words)
    # the mel once, then per token: token + offset + one mask element (none at offset 0)
    assert c["h2d_bytes"] == MEL.nbytes + 8 * steps + 4 * (steps - 1)
    assert c["d2d_bytes"] == steps * 2 * L * D * 4 and c["d2h_bytes"] == steps * V * 4
    r.release()


def test_stub_values_match_the_documented_formulas(stub, pair):
    r = AxclWhisperRunner.from_files(str(pair.encoder), str(pair.decoder))
    r.encode(MEL)
    cross = r.encoder.read_output("cross_k")
    np.testing.assert_array_equal(cross[:, 0, 0, 0], sm.expected_cross(MEL, r.n_text_layer))
    np.testing.assert_array_equal(r.encoder.read_output("cross_v"), -cross)
    r.step(pair.sot_sequence[0], 0)
    r.step(pair.sot_sequence[1], 1)
    want = sm.expected_self_kv(pair.sot_sequence[1], 1, r.n_text_layer, r.n_text_state)
    np.testing.assert_array_equal(r.decoder.read_output("this_self_k"), want)
    np.testing.assert_array_equal(r.decoder.read_output("this_self_v"), -want)
    r.release()
