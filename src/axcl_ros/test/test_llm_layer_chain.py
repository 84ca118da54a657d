"""The onnxruntime layer stack runs the per-layer files chained into one session (``models/llm/layer_chain.py``):
the chain computes what the files compute one by one, long models are cut into several chains, and a file that is
not a layer of the contract is named. Also the host side of a bounded post model (``exact_near_top``)."""

import io
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from axcl_ros.models.llm import layer_chain
from axcl_ros.models.llm.config import ModelFilesError, find_model_files
from axcl_ros.models.llm.export_onnx import convert_checkpoint
from axcl_ros.models.llm.layers import OnnxLayerStack, causal_mask, exact_near_top
from axcl_ros_testing.llm_models import write_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    src = write_tiny_checkpoint(str(root / "hf"), "qwen2", tie=False, layers=4)
    out = str(root / "onnx")
    convert_checkpoint(src, out, max_context=64, prefill_chunk=8)
    return find_model_files(out)


def _one_by_one(files, embeds: np.ndarray, steps: int):
    """The layer files run one session each, in plain onnxruntime, with a numpy KV cache: the reference."""
    cfg = files.config
    sessions = [ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in files.layers]
    k = np.zeros((cfg.num_layers, 0, cfg.kv_dim), np.float32)
    v = k.copy()
    hidden, pos = [], 0
    for x in [embeds[:-steps]] + [embeds[i:i + 1] for i in range(len(embeds) - steps, len(embeds))]:
        n = len(x)
        feeds = {"indices": np.arange(pos, pos + n, dtype=np.uint32)[None], "mask": causal_mask(pos, n)}
        h = x[None].astype(np.float32)
        new_k, new_v = [], []
        for i, s in enumerate(sessions):
            kk, vv, h = s.run(None, dict(feeds, input=h, K_cache=k[i][None], V_cache=v[i][None]))
            new_k.append(kk[0])
            new_v.append(vv[0])
        k = np.concatenate([k, np.stack(new_k)], 1)
        v = np.concatenate([v, np.stack(new_v)], 1)
        hidden.append(h[0, -1])
        pos += n
    return hidden, k, v


@pytest.mark.parametrize("chain_bytes", [layer_chain.MAX_CHAIN_BYTES, 1], ids=["one-chain", "chains-of-one"])
def test_chained_layers_compute_what_the_files_compute_one_by_one(tiny, monkeypatch, chain_bytes):
    monkeypatch.setattr(layer_chain, "MAX_CHAIN_BYTES", chain_bytes)
    cfg = tiny.config
    rng = np.random.default_rng(3)
    embeds = rng.standard_normal((11, cfg.hidden_size)).astype(np.float32)
    hidden, k, v = _one_by_one(tiny, embeds, steps=3)
    stack = OnnxLayerStack(tiny, threads=1, spinning=chain_bytes == 1)
    try:
        assert len(stack._chains) == (1 if chain_bytes > 1 else cfg.num_layers)
        ours = [stack.forward(embeds[:-3], 0)] + [stack.forward(embeds[i:i + 1], stack.position) for i in range(8, 11)]
        for a, b in zip(ours, hidden):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(stack._k[:, :11], k, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(stack._v[:, :11], v, rtol=1e-5, atol=1e-5)
    finally:
        stack.release()


def test_layer_files_are_grouped_in_order_up_to_the_size_limit(tmp_path):
    paths = []
    for i, size in enumerate([40, 40, 30, 100, 10]):
        p = tmp_path / f"l{i}.onnx"
        p.write_bytes(b"x" * size)
        paths.append(str(p))
    groups = layer_chain.group_layer_files(paths, max_bytes=80)
    assert [[os.path.basename(p) for p in g] for g in groups] == [["l0.onnx", "l1.onnx"], ["l2.onnx"],
                                                                  ["l3.onnx"], ["l4.onnx"]]
    assert sum(groups, []) == paths


def test_a_file_that_is_not_a_layer_is_named(tiny, tmp_path):
    with pytest.raises(ModelFilesError, match=r"post\.onnx: not a layer of the per-layer contract"):
        layer_chain.write_chain([tiny.layers[0], tiny.post], io.BytesIO())
    broken = tmp_path / "broken_l1.onnx"
    broken.write_bytes(open(tiny.layers[1], "rb").read()[:500])
    with pytest.raises(ModelFilesError, match="broken_l1.onnx.*not a readable ONNX model"):
        layer_chain.write_chain([tiny.layers[0], str(broken)], io.BytesIO())


def test_the_written_chain_is_a_valid_onnx_model(tiny):
    """The chain file is the layers' graphs concatenated in protobuf's wire format: onnx reads it back as one model
    whose graph has every layer's nodes and initializers and the chain's inputs and outputs (onnx's checker does not
    know onnxruntime's contrib operators; onnxruntime runs the chain in the test above)."""
    buf = io.BytesIO()
    layer_chain.write_chain(tiny.layers, buf)
    model = onnx.load_from_string(buf.getvalue())
    n = len(tiny.layers)
    layers = [onnx.load(p).graph for p in tiny.layers]
    assert len(model.graph.node) == sum(len(g.node) for g in layers)
    assert len(model.graph.initializer) == sum(len(g.initializer) for g in layers)
    names = {v.name for v in model.graph.input}
    assert names == {"input", "indices", "mask"} | {layer_chain.chain_name(k, j) for k in ("K_cache", "V_cache")
                                                    for j in range(n)}
    assert {v.name for v in model.graph.output} == {"output"} | {
        layer_chain.chain_name(k, j) for k in ("K_cache_out", "V_cache_out") for j in range(n)}


def test_logits_near_the_top_are_recomputed_exactly():
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((500, 16)).astype(np.float32)
    hidden = rng.standard_normal(16).astype(np.float32)
    exact = rows @ hidden
    bound = 0.3
    for _trial in range(50):
        # adversarial errors up to the bound: the best token pushed down, its rivals pushed up
        err = rng.uniform(-bound, bound, exact.shape).astype(np.float32)
        best = int(np.argmax(exact))
        err[best] = -bound
        err[np.argsort(exact)[-6:-1]] = bound
        approx = exact + err
        out = exact_near_top(approx.copy(), hidden, bound, rows)
        assert int(np.argmax(out)) == best
        near = approx >= approx.max() - 2 * bound
        np.testing.assert_allclose(out[near], exact[near], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(out[~near], approx[~near])
        assert near.sum() < len(exact)


def test_no_room_for_the_chain_file_says_what_to_set(tiny, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "not-there"))
    with pytest.raises(ModelFilesError, match="set TMPDIR to a folder with"):
        OnnxLayerStack(tiny, threads=1)
