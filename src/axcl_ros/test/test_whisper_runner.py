"""Schema-B and schema-A runners on tiny onnx.helper models of the AXERA signatures (onnxruntime backend)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from axcl_ros.models.whisper.config import WhisperConfig
from axcl_ros.models.whisper.runner import (
    SchemaARunner,
    SessionWhisperRunner,
    WhisperInputError,
    WhisperModelError,
    WhisperRunner,
)
from axcl_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend

L, C, D, T, V, M, F = 2, 12, 4, 5, 20, 3, 10  # layers, text ctx, width, audio ctx, vocab, mels, frames
F32, I32 = TensorProto.FLOAT, TensorProto.INT32
RNG = np.random.default_rng(7)
EMB = RNG.standard_normal((V, D)).astype(np.float32)
POS = RNG.standard_normal((C, D)).astype(np.float32)
WOUT = RNG.standard_normal((D, V)).astype(np.float32)
LAYER_SCALE = np.arange(1, L + 1, dtype=np.float32).reshape(L, 1, 1, 1)


def _save(tmp_path, name, nodes, inputs, outputs, inits):
    graph = helper.make_graph(nodes, name, inputs, outputs,
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return str(path)


def _vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def toy_encoder(tmp_path, k_name="cross_k", v_name="cross_v", n_mels=M):
    """cross_k = 0.01 * sum(mel) everywhere, cross_v = 2 * cross_k."""
    nodes = [
        helper.make_node("ReduceSum", ["mel"], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "c001"], ["s1"]),
        helper.make_node("Mul", ["ones", "s1"], [k_name]),
        helper.make_node("Mul", [k_name, "two"], [v_name]),
    ]
    inits = {"c001": np.float32(0.01), "two": np.float32(2.0), "ones": np.ones((L, 1, T, D), np.float32)}
    return _save(tmp_path, f"enc_{k_name}", nodes, [_vi("mel", F32, [1, n_mels, F])],
                 [_vi(k_name, F32, [L, 1, T, D]), _vi(v_name, F32, [L, 1, T, D])], inits)


def _logits_nodes(ctx_sum):
    """logits = (ctx_sum + 0.1*sum(cross_k)) @ WOUT, shaped [1,1,V]."""
    return [
        helper.make_node("ReduceSum", ["xk"], ["xs"], keepdims=0),
        helper.make_node("Mul", ["xs", "c01"], ["xs1"]),
        helper.make_node("Add", [ctx_sum, "xs1"], ["h"]),
        helper.make_node("Reshape", ["h", "shape_1d"], ["h2"]),
        helper.make_node("MatMul", ["h2", "wout"], ["lg"]),
        helper.make_node("Reshape", ["lg", "shape_lg"], ["logits"]),
    ]


def toy_decoder_b(tmp_path, mask_dtype=I32, drop_input=None):
    """k = EMB[token] + POS[offset]; this_k[l] = (l+1)k; h = sum of visible cache rows + this_k over layers."""
    nodes = [
        helper.make_node("Gather", ["emb", "tokens"], ["e"], axis=0),              # [1,1,D]
        helper.make_node("Gather", ["pos", "offset"], ["p"], axis=0),              # [1,D]
        helper.make_node("Add", ["e", "p"], ["k"]),                                 # [1,1,D]
        helper.make_node("Unsqueeze", ["k", "ax0"], ["k4"]),                        # [1,1,1,D]
        helper.make_node("Mul", ["k4", "lscale"], ["this_self_k"]),                 # [L,1,1,D]
        helper.make_node("Mul", ["this_self_k", "half"], ["this_self_v"]),
        helper.make_node("Cast", ["mask"], ["mf"], to=F32),
        helper.make_node("Sub", ["one", "mf"], ["vis"]),
        helper.make_node("Reshape", ["vis", "shape_vis"], ["vis4"]),
        helper.make_node("Mul", ["self_k", "vis4"], ["kv"]),
        helper.make_node("ReduceSum", ["kv", "axes012"], ["cache_sum"], keepdims=0),   # [D]
        helper.make_node("ReduceSum", ["this_self_k", "axes012"], ["self_sum"], keepdims=0),
        helper.make_node("ReduceSum", ["self_v", "axes012"], ["vsum"], keepdims=0),
        helper.make_node("Mul", ["vsum", "zero"], ["vzero"]),                       # consume self_v
        helper.make_node("ReduceSum", ["cross_v"], ["cvs"], keepdims=0),
        helper.make_node("Mul", ["cvs", "zero"], ["cvzero"]),
        helper.make_node("Add", ["cache_sum", "self_sum"], ["c1"]),
        helper.make_node("Add", ["c1", "vzero"], ["c2"]),
        helper.make_node("Add", ["c2", "cvzero"], ["ctx"]),
        helper.make_node("Identity", ["cross_k"], ["xk"]),
    ] + _logits_nodes("ctx")
    inits = {"emb": EMB, "pos": POS, "wout": WOUT, "lscale": LAYER_SCALE, "half": np.float32(0.5),
             "one": np.float32(1.0), "zero": np.float32(0.0), "c01": np.float32(0.1),
             "ax0": np.array([0], np.int64), "axes012": np.array([0, 1, 2], np.int64),
             "shape_vis": np.array([1, 1, C, 1], np.int64), "shape_1d": np.array([1, D], np.int64),
             "shape_lg": np.array([1, 1, V], np.int64)}
    inputs = [_vi("tokens", I32, [1, 1]), _vi("self_k", F32, [L, 1, C, D]), _vi("self_v", F32, [L, 1, C, D]),
              _vi("cross_k", F32, [L, 1, T, D]), _vi("cross_v", F32, [L, 1, T, D]), _vi("offset", I32, [1]),
              _vi("mask", mask_dtype, [C])]
    if drop_input:  # the graph then reads it from a constant
        inputs = [i for i in inputs if i.name != drop_input]
        inits[drop_input] = np.zeros([1], np.int32)
    outputs = [_vi("logits", F32, [1, 1, V]), _vi("this_self_k", F32, [L, 1, 1, D]),
               _vi("this_self_v", F32, [L, 1, 1, D])]
    return _save(tmp_path, f"dec_b_{mask_dtype}_{drop_input}", nodes, inputs, outputs, inits)


def toy_decoder_a(tmp_path):
    """AXERA loop: cache' = cache[:, :, 1:] ++ new; weights exp(mask) (-inf → 0) over cache' rows."""
    nodes = [
        helper.make_node("Gather", ["emb", "tokens"], ["e"], axis=0),              # [1,1,D]
        helper.make_node("Add", ["e", "positional_embedding"], ["k"]),              # [1,1,D]
        helper.make_node("Unsqueeze", ["k", "ax0"], ["k4"]),
        helper.make_node("Mul", ["k4", "lscale"], ["newk"]),                        # [L,1,1,D]
        helper.make_node("Mul", ["newk", "half"], ["newv"]),
        helper.make_node("Slice", ["in_n_layer_self_k_cache", "s1", "sC", "ax2"], ["kt"]),
        helper.make_node("Slice", ["in_n_layer_self_v_cache", "s1", "sC", "ax2"], ["vt"]),
        helper.make_node("Concat", ["kt", "newk"], ["out_n_layer_self_k_cache"], axis=2),
        helper.make_node("Concat", ["vt", "newv"], ["out_n_layer_self_v_cache"], axis=2),
        helper.make_node("Exp", ["mask"], ["w"]),
        helper.make_node("Reshape", ["w", "shape_vis"], ["w4"]),
        helper.make_node("Mul", ["out_n_layer_self_k_cache", "w4"], ["kw"]),
        helper.make_node("ReduceSum", ["kw", "axes012"], ["ctx"], keepdims=0),
        helper.make_node("Mul", ["n_layer_cross_v", "zero"], ["n_layer_cross_v_zero"]),
        helper.make_node("Add", ["n_layer_cross_k", "n_layer_cross_v_zero"], ["xk"]),
    ] + _logits_nodes("ctx")
    inits = {"emb": EMB, "wout": WOUT, "lscale": LAYER_SCALE, "half": np.float32(0.5), "zero": np.float32(0.0),
             "c01": np.float32(0.1), "ax0": np.array([0], np.int64), "axes012": np.array([0, 1, 2], np.int64),
             "s1": np.array([1], np.int64), "sC": np.array([C], np.int64), "ax2": np.array([2], np.int64),
             "shape_vis": np.array([1, 1, C, 1], np.int64), "shape_1d": np.array([1, D], np.int64),
             "shape_lg": np.array([1, 1, V], np.int64)}
    inputs = [_vi("tokens", I32, [1, 1]), _vi("in_n_layer_self_k_cache", F32, [L, 1, C, D]),
              _vi("in_n_layer_self_v_cache", F32, [L, 1, C, D]), _vi("n_layer_cross_k", F32, [L, 1, T, D]),
              _vi("n_layer_cross_v", F32, [L, 1, T, D]), _vi("positional_embedding", F32, [1, D]),
              _vi("mask", F32, [C])]
    outputs = [_vi("logits", F32, [1, 1, V]), _vi("out_n_layer_self_k_cache", F32, [L, 1, C, D]),
               _vi("out_n_layer_self_v_cache", F32, [L, 1, C, D])]
    return _save(tmp_path, "dec_a", nodes, inputs, outputs, inits)


def expected_logits(tokens, mel):
    """h_n = sum_l (l+1) * sum_{j<=n} (EMB[t_j] + POS[j]) + 0.1 * sum(cross_k)."""
    cross_sum = 0.01 * mel.sum() * L * T * D
    acc = np.zeros(D, np.float64)
    out = []
    for j, t in enumerate(tokens):
        acc += EMB[t] + POS[j]
        h = LAYER_SCALE.sum() * acc + 0.1 * cross_sum
        out.append(h @ WOUT)
    return np.array(out)


@pytest.fixture(scope="module")
def backend():
    return OnnxRuntimeBackend(intra_op_num_threads=1)


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("whisper_toy")


@pytest.fixture(scope="module")
def runner_b(backend, toy_dir):
    return SessionWhisperRunner(backend.load(toy_encoder(toy_dir)), backend.load(toy_decoder_b(toy_dir)))


@pytest.fixture(scope="module")
def runner_a(backend, toy_dir):
    enc = backend.load(toy_encoder(toy_dir, "n_layer_cross_k", "n_layer_cross_v"))
    return SchemaARunner(enc, backend.load(toy_decoder_a(toy_dir)), POS.reshape(-1))


MEL = RNG.standard_normal((1, M, F)).astype(np.float32)
TOKENS = [3, 7, 1, 19, 0, 5, 5, 11]


@pytest.mark.parametrize("which", ["b", "a"])
def test_runner_follows_protocol_and_matches_reference(which, runner_a, runner_b):
    runner = runner_b if which == "b" else runner_a
    assert isinstance(runner, WhisperRunner)
    assert (runner.n_text_layer, runner.n_text_ctx, runner.n_vocab, runner.n_mels) == (L, C, V, M)
    runner.encode(MEL)
    np.testing.assert_allclose(runner.cross_k, 0.01 * MEL.sum(), rtol=1e-5)
    want = expected_logits(TOKENS, MEL)
    for _ in range(2):  # reset() really starts over
        runner.reset()
        got = np.array([runner.step(t, j) for j, t in enumerate(TOKENS)])
        assert got.dtype == np.float32 and got.shape == (len(TOKENS), V)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_schema_b_writes_cache_rows_and_mask(runner_b):
    r = runner_b
    r.encode(MEL[0])  # [n_mels, frames] is accepted too
    r.step(TOKENS[0], 0)
    r.step(TOKENS[1], 1)
    np.testing.assert_allclose(r.self_k[:, 0, 1], LAYER_SCALE[:, 0, 0] * (EMB[TOKENS[1]] + POS[1]), rtol=1e-6)
    np.testing.assert_allclose(r.self_v[:, 0, 1], 0.5 * r.self_k[:, 0, 1], rtol=1e-6)
    assert np.all(r.self_k[:, :, 2:] == 0)
    assert r.mask.tolist() == [0] + [1] * (C - 1)  # mask as it was fed for offset 1
    # rewinding to an earlier offset is allowed: rows >= offset are masked again
    np.testing.assert_allclose(r.step(TOKENS[1], 1), expected_logits(TOKENS[:2], MEL)[1], rtol=1e-4, atol=1e-4)
    r.reset()
    assert np.all(r.self_k == 0) and np.all(r.mask == 1)


def test_schema_a_needs_consecutive_offsets(runner_a):
    runner_a.encode(MEL)
    runner_a.step(1, 0)
    with pytest.raises(WhisperInputError, match="consecutive offsets: expected 1, got 3"):
        runner_a.step(1, 3)


@pytest.mark.parametrize("which", ["b", "a"])
def test_bad_calls_raise_input_errors(which, backend, toy_dir):
    if which == "b":
        runner = SessionWhisperRunner(backend.load(toy_encoder(toy_dir)), backend.load(toy_decoder_b(toy_dir)))
    else:
        runner = SchemaARunner(backend.load(toy_encoder(toy_dir, "n_layer_cross_k", "n_layer_cross_v")),
                               backend.load(toy_decoder_a(toy_dir)), POS)
    with pytest.raises(WhisperInputError, match="before encode"):
        runner.step(1, 0)
    with pytest.raises(WhisperInputError, match=r"mel must be \[1,3,10\]"):
        runner.encode(np.zeros((1, M, F + 1), np.float32))
    runner.encode(MEL)
    with pytest.raises(WhisperInputError, match="token 20 out of range 0..19"):
        runner.step(V, 0)
    with pytest.raises(WhisperInputError, match="offset 12 out of range"):
        runner.step(1, C)


def test_signature_errors_list_what_was_found(backend, toy_dir):
    enc = backend.load(toy_encoder(toy_dir))
    with pytest.raises(WhisperModelError) as info:
        SessionWhisperRunner(enc, backend.load(toy_decoder_b(toy_dir, mask_dtype=F32)))
    msg = str(info.value)
    assert "mask has dtype float32, expected int32" in msg and "Found: encoder inputs [mel float32[1,3,10]]" in msg
    with pytest.raises(WhisperModelError, match="decoder input 'offset' missing"):
        SessionWhisperRunner(enc, backend.load(toy_decoder_b(toy_dir, drop_input="offset")))
    with pytest.raises(WhisperModelError, match="encoder output 'cross_k' missing"):
        SessionWhisperRunner(backend.load(toy_encoder(toy_dir, "n_layer_cross_k", "n_layer_cross_v")),
                             backend.load(toy_decoder_b(toy_dir)))
    # a schema-B pair is not a schema-A pair
    with pytest.raises(WhisperModelError, match="schema-A.*in_n_layer_self_k_cache"):
        SchemaARunner(enc, backend.load(toy_decoder_b(toy_dir)), POS)
    enc_a = backend.load(toy_encoder(toy_dir, "n_layer_cross_k", "n_layer_cross_v"))
    with pytest.raises(WhisperModelError, match=r"positional_embedding has shape \(5, 4\), expected \(12, 4\)"):
        SchemaARunner(enc_a, backend.load(toy_decoder_a(toy_dir)), POS[:5])
    assert issubclass(WhisperModelError, ValueError)


def test_config_from_session_specs(backend, toy_dir):
    enc, dec = backend.load(toy_encoder(toy_dir)), backend.load(toy_decoder_b(toy_dir))
    cfg = WhisperConfig.from_specs(enc.inputs, dec.inputs, dec.outputs)
    assert (cfg.n_mels, cfg.n_text_layer, cfg.n_text_ctx, cfg.n_text_state, cfg.n_audio_ctx, cfg.n_vocab) == \
        (M, L, C, D, T, V)
