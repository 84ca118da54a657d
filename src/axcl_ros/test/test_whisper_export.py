"""CT2 reader and CT2 → schema-B ONNX converter on small random Whisper models, against a numpy reference."""

import json
import struct

import numpy as np
import pytest
from scipy.special import erf

from axcl_ros.models.whisper.config import load_config
from axcl_ros.models.whisper.ct2 import Ct2FormatError, read_ct2_model, whisper_dims
from axcl_ros.models.whisper.export_onnx import CONVERTER_VERSION, ExportError, convert_ct2_to_onnx
from axcl_ros.models.whisper.runner import SessionWhisperRunner
from axcl_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend

DTYPE_CODES = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
               np.dtype(np.float16): 4}


def _string(s):
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2(path, variables, aliases=(), spec="WhisperSpec", version=6, bf16=()):
    """Write a CTranslate2 model.bin (format of models.md §7); names in ``bf16`` are stored as bfloat16."""
    out = [struct.pack("<I", version), _string(spec), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, value in variables.items():
        value = np.asarray(value)
        if name in bf16:
            code, raw = 5, (value.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
        else:
            code, raw = DTYPE_CODES[value.dtype], value.tobytes()
        out += [_string(name), struct.pack("<B", value.ndim), struct.pack(f"<{value.ndim}I", *value.shape),
                struct.pack("<B", code), struct.pack("<I", len(raw)), raw]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases:
        out += [_string(alias), _string(target)]
    path.write_bytes(b"".join(out))


def random_whisper(rng, n_mels=8, d=16, heads=2, enc_layers=2, dec_layers=3, n_audio=10, n_text=12, vocab=40):
    """Random fp16 Whisper variables with CT2 names (pre-norm, biases, tied output projection)."""
    def w(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float16)

    def ln(prefix):
        return {f"{prefix}/gamma": (1 + w(d, scale=0.1)).astype(np.float16), f"{prefix}/beta": w(d, scale=0.1)}

    v = {"encoder/conv1/weight": w(d, n_mels, 3), "encoder/conv1/bias": w(d),
         "encoder/conv2/weight": w(d, d, 3, scale=0.15), "encoder/conv2/bias": w(d),
         "encoder/position_encodings/encodings": w(n_audio, d), "encoder/num_heads": np.array(heads, np.int16),
         "decoder/num_heads": np.array(heads, np.int16), "decoder/embeddings/weight": w(vocab, d),
         "decoder/position_encodings/encodings": w(n_text, d), "decoder/scale_embeddings": np.array(0, np.int8)}
    v.update(ln("encoder/layer_norm"))
    v.update(ln("decoder/layer_norm"))
    for i in range(enc_layers):
        p = f"encoder/layer_{i}"
        qkv_bias = w(3 * d)
        qkv_bias[d:2 * d] = 0  # Whisper's key projection has no bias
        v.update({f"{p}/self_attention/linear_0/weight": w(3 * d, d), f"{p}/self_attention/linear_0/bias": qkv_bias,
                  f"{p}/self_attention/linear_1/weight": w(d, d), f"{p}/self_attention/linear_1/bias": w(d),
                  f"{p}/ffn/linear_0/weight": w(4 * d, d), f"{p}/ffn/linear_0/bias": w(4 * d),
                  f"{p}/ffn/linear_1/weight": w(d, 4 * d), f"{p}/ffn/linear_1/bias": w(d)})
        v.update(ln(f"{p}/self_attention/layer_norm"))
        v.update(ln(f"{p}/ffn/layer_norm"))
    for i in range(dec_layers):
        p = f"decoder/layer_{i}"
        qkv_bias = w(3 * d)
        qkv_bias[d:2 * d] = 0
        kv_bias = w(2 * d)
        kv_bias[:d] = 0
        v.update({f"{p}/self_attention/linear_0/weight": w(3 * d, d), f"{p}/self_attention/linear_0/bias": qkv_bias,
                  f"{p}/self_attention/linear_1/weight": w(d, d), f"{p}/self_attention/linear_1/bias": w(d),
                  f"{p}/attention/linear_0/weight": w(d, d), f"{p}/attention/linear_0/bias": w(d),
                  f"{p}/attention/linear_1/weight": w(2 * d, d), f"{p}/attention/linear_1/bias": kv_bias,
                  f"{p}/attention/linear_2/weight": w(d, d), f"{p}/attention/linear_2/bias": w(d),
                  f"{p}/ffn/linear_0/weight": w(4 * d, d), f"{p}/ffn/linear_0/bias": w(4 * d),
                  f"{p}/ffn/linear_1/weight": w(d, 4 * d), f"{p}/ffn/linear_1/bias": w(d)})
        v.update(ln(f"{p}/self_attention/layer_norm"))
        v.update(ln(f"{p}/attention/layer_norm"))
        v.update(ln(f"{p}/ffn/layer_norm"))
    return v


# ----------------------------------------------------------------------------- numpy reference (float64)
def _f(v, name):
    return np.asarray(v[name], np.float64)


def _ln(x, v, prefix):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * _f(v, f"{prefix}/gamma") + _f(v, f"{prefix}/beta")


def _gelu(x):
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def _lin(x, v, prefix):
    return x @ _f(v, f"{prefix}/weight").T + _f(v, f"{prefix}/bias")


def _attn(q, k, v_, heads, causal=False):
    t, d = q.shape
    dh = d // heads
    q, k, v_ = (a.reshape(a.shape[0], heads, dh).transpose(1, 0, 2) for a in (q, k, v_))
    s = q @ k.transpose(0, 2, 1) / np.sqrt(dh)
    if causal:
        s = s + np.triu(np.full((t, k.shape[1]), -np.inf), 1)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (p @ v_).transpose(1, 0, 2).reshape(t, d)


def _conv1d(x, w, b, stride):
    # x [C_in, T], w [C_out, C_in, 3], padding 1
    xp = np.pad(x, ((0, 0), (1, 1)))
    n_out = (x.shape[1] + 2 - 3) // stride + 1
    cols = np.stack([xp[:, i * stride:i * stride + 3] for i in range(n_out)])  # [T_out, C_in, 3]
    return np.einsum("tck,ock->ot", cols, w) + b[:, None]


def ref_encoder(v, mel, heads, n_layers):
    x = _gelu(_conv1d(mel, _f(v, "encoder/conv1/weight"), _f(v, "encoder/conv1/bias"), 1))
    x = _gelu(_conv1d(x, _f(v, "encoder/conv2/weight"), _f(v, "encoder/conv2/bias"), 2)).T
    x = x + _f(v, "encoder/position_encodings/encodings")
    d = x.shape[1]
    for i in range(n_layers):
        p = f"encoder/layer_{i}"
        q, k, vv = np.split(_lin(_ln(x, v, f"{p}/self_attention/layer_norm"), v, f"{p}/self_attention/linear_0"), 3,
                            axis=-1)
        x = x + _lin(_attn(q, k, vv, heads), v, f"{p}/self_attention/linear_1")
        h = _ln(x, v, f"{p}/ffn/layer_norm")
        x = x + _lin(_gelu(_lin(h, v, f"{p}/ffn/linear_0")), v, f"{p}/ffn/linear_1")
    assert x.shape[1] == d
    return _ln(x, v, "encoder/layer_norm")


def ref_decoder(v, tokens, audio, heads, n_layers):
    x = _f(v, "decoder/embeddings/weight")[tokens] + _f(v, "decoder/position_encodings/encodings")[:len(tokens)]
    d = x.shape[1]
    for i in range(n_layers):
        p = f"decoder/layer_{i}"
        q, k, vv = np.split(_lin(_ln(x, v, f"{p}/self_attention/layer_norm"), v, f"{p}/self_attention/linear_0"), 3,
                            axis=-1)
        x = x + _lin(_attn(q, k, vv, heads, causal=True), v, f"{p}/self_attention/linear_1")
        q = _lin(_ln(x, v, f"{p}/attention/layer_norm"), v, f"{p}/attention/linear_0")
        kv = _lin(audio, v, f"{p}/attention/linear_1")
        x = x + _lin(_attn(q, kv[:, :d], kv[:, d:], heads), v, f"{p}/attention/linear_2")
        h = _ln(x, v, f"{p}/ffn/layer_norm")
        x = x + _lin(_gelu(_lin(h, v, f"{p}/ffn/linear_0")), v, f"{p}/ffn/linear_1")
    return _ln(x, v, "decoder/layer_norm") @ _f(v, "decoder/embeddings/weight").T


# ----------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    rng = np.random.default_rng(3)
    src = tmp_path_factory.mktemp("ct2_toy")
    variables = random_whisper(rng)
    write_ct2(src / "model.bin", variables, aliases=[("decoder/projection/weight", "decoder/embeddings/weight")])
    messages = []
    dst = convert_ct2_to_onnx(src, src / "onnx", progress=messages.append)
    return variables, src, dst, messages


def test_reader_reads_variables_dims_and_aliases(toy):
    variables, src, _, _ = toy
    m = read_ct2_model(src)
    assert m.spec == "WhisperSpec" and m.binary_version == 6 and m.revision == 3
    assert m["decoder/embeddings/weight"].dtype == np.float32
    np.testing.assert_array_equal(m["decoder/projection/weight"], variables["decoder/embeddings/weight"])
    assert m.scalar("encoder/num_heads") == 2 and m["decoder/scale_embeddings"].dtype == np.int8
    dims = whisper_dims(m)
    assert (dims.n_mels, dims.n_audio_ctx, dims.n_audio_state, dims.n_audio_layer, dims.n_text_layer,
            dims.n_vocab, dims.n_text_ctx, dims.n_text_head) == (8, 10, 16, 2, 3, 40, 12, 2)


def test_converted_model_matches_numpy_reference(toy):
    variables, _, dst, messages = toy
    assert {p.name for p in dst.iterdir()} >= {"encoder.onnx", "decoder.onnx", "config.json"}
    assert any("decoder layer 3/3" in m for m in messages) and messages[-1].startswith("done")
    cfg = load_config(dst / "config.json")
    assert (cfg.n_mels, cfg.n_text_layer, cfg.n_vocab, cfg.n_text_ctx) == (8, 3, 40, 12)
    assert json.loads((dst / "config.json").read_text())["converter"]["version"] == CONVERTER_VERSION

    backend = OnnxRuntimeBackend(intra_op_num_threads=1)
    runner = SessionWhisperRunner(backend.load(str(dst / "encoder.onnx")), backend.load(str(dst / "decoder.onnx")))
    assert (runner.n_text_layer, runner.n_text_ctx, runner.n_vocab, runner.n_mels) == (3, 12, 40, 8)
    mel = np.random.default_rng(5).standard_normal((8, 20)).astype(np.float32)
    runner.encode(mel)
    audio = ref_encoder(variables, mel.astype(np.float64), heads=2, n_layers=2)
    for i in range(3):
        kv = _lin(audio, variables, f"decoder/layer_{i}/attention/linear_1")
        np.testing.assert_allclose(runner.cross_k[i, 0], kv[:, :16], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(runner.cross_v[i, 0], kv[:, 16:], rtol=1e-4, atol=1e-4)
    tokens = [5, 39, 0, 12, 12, 7, 30, 2, 21, 1, 9, 33]  # fills the 12-token context
    want = ref_decoder(variables, np.array(tokens), audio, heads=2, n_layers=3)
    runner.reset()
    got = np.stack([runner.step(t, j) for j, t in enumerate(tokens)])
    err = float(np.abs(got - want).max())
    print(f"max logit error {err:.3g} (logit range {np.abs(want).max():.3g})")
    assert err < 1e-3 * max(1.0, float(np.abs(want).max()))
    assert [int(a) for a in got.argmax(1)] == [int(a) for a in want.argmax(1)]


def test_reader_bf16_and_errors(tmp_path):
    values = np.array([1.0, -2.5, 3.140625], np.float32)  # exactly representable in bfloat16
    write_ct2(tmp_path / "model.bin", {"x": values, "n": np.array(7, np.int32)}, bf16={"x"})
    m = read_ct2_model(tmp_path)
    np.testing.assert_array_equal(m["x"], values)
    assert m.scalar("n") == 7
    with pytest.raises(KeyError, match="'missing' not found"):
        m["missing"]
    with pytest.raises(Ct2FormatError, match="expected a WhisperSpec"):
        write_ct2(tmp_path / "model.bin", {"x": values}, spec="TransformerSpec")
        whisper_dims(read_ct2_model(tmp_path))
    data = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[:-3])
    with pytest.raises(Ct2FormatError, match="truncated"):
        read_ct2_model(tmp_path)
    write_ct2(tmp_path / "model.bin", {"w": np.ones((2, 2), np.int8), "w_scale": np.ones(2, np.float32)})
    with pytest.raises(Ct2FormatError, match="quantised"):
        read_ct2_model(tmp_path)
    (tmp_path / "model.bin").write_bytes(struct.pack("<I", 2) + b"junk")
    with pytest.raises(Ct2FormatError, match="binary version 2"):
        read_ct2_model(tmp_path)
    with pytest.raises(Ct2FormatError, match="does not exist"):
        read_ct2_model(tmp_path / "nowhere")
    with pytest.raises(ExportError, match="no model.bin"):
        convert_ct2_to_onnx(tmp_path / "nowhere", tmp_path / "out")
    write_ct2(tmp_path / "model.bin", {"encoder/conv1/weight": np.ones((4, 2, 3), np.float16)})
    with pytest.raises(Ct2FormatError, match="Whisper variable missing"):
        convert_ct2_to_onnx(tmp_path, tmp_path / "out")
