"""``axcl_ros convert-llm``: a llama/qwen2 checkpoint → per-layer ONNX files on AXERA's per-layer contract.

Every decoder layer becomes one ONNX file with the tensor names of AXERA's compiled layer axmodels, in float32 and
with the sequence dimensions dynamic (one graph serves prefill chunks and single-token decode, where the card uses
shape groups)::

    input        f32[1, T, H]        hidden states of the T new tokens (the embedding rows for layer 0)
    indices      u32[1, T]           their positions
    K_cache      f32[1, P, kv_dim]   keys of the P cached positions (after RoPE), V_cache likewise
    mask         f32[1, T, P+T]      0 = attend, -65536 = masked (cached positions first, then the new tokens)
    -> K_cache_out, V_cache_out f32[1, T, kv_dim]   keys / values of the new tokens, to append to the cache
    -> output    f32[1, T, H]        hidden states for the next layer

``{prefix}_post.onnx`` is the final RMSNorm + lm head, ``input f32[1,1,H] -> output f32[1,1,V]`` (logits). The token
embedding table is kept on the host (``model.embed_tokens.weight.npy``), as AXERA keeps its bf16 table on the host.
In ``gguf-blocks`` a Q8_0 lm head tied to that table runs with int8 arithmetic, and the post model also gives
``normed f32[1,1,H]`` (the head's input) and ``error_bound f32[1]`` (a bound on any logit's error); the host
recomputes in float32, from the table, every logit within twice the bound of the best (:func:`.layers.exact_near_top`),
so the greedy choice is the float32 head's.
Weights are float32 (quantized GGUF tensors are dequantized) unless a block format is asked for
(:data:`ACCURACY_LEVEL`).
Graphs use numpy + ``onnx.helper`` only. A decode step is memory- and operator-bound on a small CPU, so a layer is kept
to ~40 operators: onnxruntime's contrib ops for RMSNorm (``SimplifiedLayerNormalization``, and
``SkipSimplifiedLayerNormalization`` for the residual add + norm), RoPE (``RotaryEmbedding`` on precomputed tables) and
grouped-query attention that groups the query heads by kv head instead of repeating K/V.
"""

from __future__ import annotations

import os
import re
import time
from typing import Callable, List, Optional

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..whisper.export_onnx import _Graph
from .checkpoint import Checkpoint, CheckpointError, QuantWeight, TokenizerData, read_checkpoint
from .config import EMBED_NPY, LlmConfig

__all__ = ["CONVERTER_VERSION", "MASK_VALUE", "WEIGHT_FORMATS", "build_layer", "build_post", "cached_conversion",
           "convert_checkpoint", "build_tokenizer_json"]

CONVERTER_VERSION = 4
#: the value AXERA's masks use for "do not attend" (bf16 -65536); exp() of it underflows to exactly 0
MASK_VALUE = -65536.0
ProgressFn = Optional[Callable[[str], None]]
#: ``--weights`` formats of the converter and their ``MatMulNBits.accuracy_level``. ``float32``: every matrix
#: dequantized to float32 (the reference path). ``gguf-blocks``: GGUF Q4_0/Q4_1 (and a Q8_0 head's) block codes kept,
#: float32 arithmetic on their exact values (a tied Q8_0 lm head: int8 arithmetic with the logits near the top
#: recomputed in float32 on the host, see the module docstring). ``gguf-blocks-int8``: the same codes (the Q8_0 lm
#: head too), int8 arithmetic (onnxruntime quantizes each 32-value block of the activations to int8 at run time): not
#: exact.
ACCURACY_LEVEL = {"float32": 0, "gguf-blocks": 0, "gguf-blocks-int8": 4}
WEIGHT_FORMATS = tuple(ACCURACY_LEVEL)


class _LlmGraph(_Graph):
    """The Whisper converter's graph helper plus the blocks of a llama/qwen2 decoder layer."""

    def rms_norm(self, x: str, weight: np.ndarray, eps: float, hint: str) -> str:
        """``x / sqrt(mean(x²) + eps) * weight`` over the last axis (onnxruntime's SimplifiedLayerNormalization)."""
        return self.op("SimplifiedLayerNormalization", [x, self.init(f"{hint}_w", weight.astype(np.float32))],
                       axis=-1, epsilon=float(eps), stash_type=1)

    def __init__(self, accuracy_level: int = 0) -> None:
        super().__init__()
        #: ``MatMulNBits.accuracy_level``: 0 = float32 arithmetic on the exact weights, 4 = int8 arithmetic
        self.accuracy_level = int(accuracy_level)
        self._block_sums: dict = {}

    def matmul_nbits(self, x: str, qw: QuantWeight, bias: Optional[np.ndarray], hint: str,
                     accuracy_level: Optional[int] = None) -> str:
        """``x @ W.T (+ bias)`` with W kept as block codes (``com.microsoft.MatMulNBits``, the graph's
        ``accuracy_level`` unless one is given) plus the per-block offsets as ``blocksum(x) @ offset.T`` (the block
        sums of one input are computed once per graph)."""
        n, k = qw.codes.shape
        blocks = k // qw.block
        codes = qw.codes.reshape(n, blocks, qw.block)
        if qw.bits == 4:
            codes = codes[..., 0::2] | (codes[..., 1::2] << 4)
        y = self.op("MatMulNBits", [x, self.init(f"{hint}_q", np.ascontiguousarray(codes, np.uint8)),
                                    self.init(f"{hint}_s", qw.scale.reshape(-1).astype(np.float32))],
                    domain="com.microsoft", K=k, N=n, bits=qw.bits, block_size=qw.block,
                    accuracy_level=self.accuracy_level if accuracy_level is None else int(accuracy_level))
        if qw.offset is not None and np.any(qw.offset):
            key = (x, qw.block)
            if key not in self._block_sums:
                blocked = self.op("Reshape", [x, self.ints([1, -1, blocks, qw.block])])
                self._block_sums[key] = self.op("ReduceSum", [blocked, self.ints([-1])], keepdims=0)
            y = self.op("Add", [y, self.op("MatMul", [self._block_sums[key],
                                                      self.init(f"{hint}_o", qw.offset.T.astype(np.float32))])])
        if bias is not None:
            y = self.op("Add", [y, self.init(f"{hint}_b", bias.astype(np.float32))])
        return y


def build_layer(ck: Checkpoint, i: int, weights: str = "float32", max_positions: int = 2048) -> onnx.ModelProto:
    """The ONNX graph of decoder layer ``i`` (signature in the module docstring) in the format ``weights``
    (:data:`WEIGHT_FORMATS`; the block formats use the checkpoint's kept codes, float32 where it has none), for
    positions below ``max_positions``."""
    h, nh, nkv, dh = ck.hidden_size, ck.num_heads, ck.num_kv_heads, ck.head_dim
    kv_dim, group = nkv * dh, nh // nkv
    p = f"model.layers.{i}."
    w = ck.weight

    def b(name: str) -> Optional[np.ndarray]:
        return ck.weights.get(p + name)

    def lin(x: str, name: str, hint: str) -> str:  # a projection, block-quantized when the checkpoint kept codes
        bias = b(name.replace(".weight", ".bias"))
        qw = ck.quant.get(p + name)
        return g.matmul_nbits(x, qw, bias, hint) if qw is not None else g.linear(x, w(p + name), bias, hint)

    def lin_fused(x: str, names, hints):  # projections of one input as one MatMulNBits + Split, when all are blocks
        qws = [ck.quant.get(p + n) for n in names]
        if any(q is None for q in qws) or len({(q.bits, q.block) for q in qws}) != 1:
            return [lin(x, n, hint) for n, hint in zip(names, hints)]
        biases = [b(n.replace(".weight", ".bias")) for n in names]
        offsets = [q.offset if q.offset is not None else np.zeros_like(q.scale) for q in qws]
        fused = QuantWeight(np.concatenate([q.codes for q in qws]), np.concatenate([q.scale for q in qws]),
                            None if all(q.offset is None for q in qws) else np.concatenate(offsets), qws[0].bits,
                            qws[0].block)
        bias = None if all(v is None for v in biases) else np.concatenate(
            [v if v is not None else np.zeros(q.codes.shape[0], np.float32) for v, q in zip(biases, qws)])
        y = g.matmul_nbits(x, fused, bias, "".join(hints))
        return g.op("Split", [y, g.ints([q.codes.shape[0] for q in qws])], n_out=len(qws), axis=-1)

    g = _LlmGraph(ACCURACY_LEVEL[weights])
    # RoPE tables [positions, dh/2] like Hugging Face's (float32 positions x float32 inverse frequencies), cos/sin
    # rounded once from float64; onnxruntime's RotaryEmbedding (rotate-half layout) reads the rows of `indices`
    inv_freq = (1.0 / (ck.rope_theta ** (np.arange(0, dh, 2, dtype=np.int64).astype(np.float32) / dh))).astype(
        np.float32)
    freqs = (np.arange(max_positions, dtype=np.float32)[:, None] * inv_freq[None]).astype(np.float64)
    cos, sin = g.init("cos_cache", np.cos(freqs).astype(np.float32)), g.init("sin_cache", np.sin(freqs).astype(
        np.float32))
    pos = g.op("Cast", ["indices"], to=TensorProto.INT64)                          # [1, T]

    def rope(t: str, heads: int, out: Optional[List[str]] = None) -> str:        # t [1, T, heads*dh]
        return g.op("RotaryEmbedding", [t, pos, cos, sin], out=out, domain="com.microsoft", interleaved=0,
                    num_heads=heads)

    x = "input"
    a = g.rms_norm(x, w(p + "input_layernorm.weight"), ck.rms_norm_eps, "attn_norm")
    q, k, v = lin_fused(a, ["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"],
                        ["q", "k", "v"])
    q = rope(q, nh)
    rope(k, nkv, out=["K_cache_out"])
    g.op("Identity", [v], out=["V_cache_out"])
    k_all = g.op("Concat", ["K_cache", "K_cache_out"], axis=1)                       # [1, S, kv_dim]
    v_all = g.op("Concat", ["V_cache", "V_cache_out"], axis=1)
    # grouped-query attention without repeating K/V: the query heads are grouped by the kv head they read
    qg = g.op("Transpose", [g.op("Reshape", [q, g.ints([1, -1, nkv, group, dh])])], perm=[0, 2, 3, 1, 4])
    kt = g.op("Transpose", [g.op("Reshape", [k_all, g.ints([1, -1, nkv, 1, dh])])], perm=[0, 2, 3, 4, 1])
    vh = g.op("Transpose", [g.op("Reshape", [v_all, g.ints([1, -1, nkv, 1, dh])])], perm=[0, 2, 3, 1, 4])
    scores = g.op("Mul", [g.op("MatMul", [qg, kt]), g.scalar(1.0 / np.sqrt(dh))])  # [1, nkv, group, T, S]
    scores = g.op("Add", [scores, "mask"])                                           # mask [1, T, S] broadcasts
    attn = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), vh])                  # [1, nkv, group, T, dh]
    attn = g.op("Reshape", [g.op("Transpose", [attn], perm=[0, 3, 1, 2, 4]), g.ints([1, -1, nh * dh])])
    # residual add + post-attention RMSNorm in one op (its 4th output is the residual sum)
    m, res = g.name("ffn_norm"), g.name("residual")
    g.op("SkipSimplifiedLayerNormalization", [x, lin(attn, "self_attn.o_proj.weight", "o"),
                                              g.init("ffn_norm_w", w(p + "post_attention_layernorm.weight"))],
         out=[m, "", "", res], domain="com.microsoft", epsilon=float(ck.rms_norm_eps))
    gate, up = lin_fused(m, ["mlp.gate_proj.weight", "mlp.up_proj.weight"], ["gate", "up"])
    act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up])           # SiLU(gate) * up
    x = g.op("Add", [res, lin(act, "mlp.down_proj.weight", "down")])
    g.op("Identity", [x], out=["output"])
    f32 = TensorProto.FLOAT
    return _model(g, f"{ck.architecture}_l{i}", [
        helper.make_tensor_value_info("input", f32, [1, "T", h]),
        helper.make_tensor_value_info("indices", TensorProto.UINT32, [1, "T"]),
        helper.make_tensor_value_info("K_cache", f32, [1, "P", kv_dim]),
        helper.make_tensor_value_info("V_cache", f32, [1, "P", kv_dim]),
        helper.make_tensor_value_info("mask", f32, [1, "T", "S"]),
    ], [
        helper.make_tensor_value_info("K_cache_out", f32, [1, "T", kv_dim]),
        helper.make_tensor_value_info("V_cache_out", f32, [1, "T", kv_dim]),
        helper.make_tensor_value_info("output", f32, [1, "T", h]),
    ], f"decoder layer {i} of {ck.name} (AXERA per-layer contract, float32, dynamic T/P)")


def build_post(ck: Checkpoint, weights: str = "float32") -> onnx.ModelProto:
    """Final RMSNorm + lm head: ``input f32[1,1,H] -> output f32[1,1,V]`` (+ ``normed``, ``error_bound`` for a tied
    Q8_0 head in ``gguf-blocks``, see the module docstring)."""
    g = _LlmGraph(ACCURACY_LEVEL[weights])
    x = g.rms_norm("input", ck.weight("model.norm.weight"), ck.rms_norm_eps, "norm")
    tied = "lm_head.weight" not in ck.weights
    qw = ck.quant.get("model.embed_tokens.weight" if tied else "lm_head.weight")
    f32 = TensorProto.FLOAT
    outputs = [helper.make_tensor_value_info("output", f32, [1, 1, ck.vocab_size])]
    if qw is not None and (qw.bits == 4 or g.accuracy_level == 4):
        head = g.matmul_nbits(x, qw, None, "lm_head")
    elif qw is not None and tied and weights == "gguf-blocks":
        # onnxruntime 1.32's 8-bit MatMulNBits with float32 arithmetic runs a vocabulary-wide head ~25x slower than
        # float32: int8 arithmetic, plus what the host needs to recompute the logits near the top exactly
        head = g.matmul_nbits(x, qw, None, "lm_head", accuracy_level=4)
        g.op("Identity", [x], out=["normed"])
        g.op("Identity", [_int8_error_bound(g, x, qw)], out=["error_bound"])
        outputs += [helper.make_tensor_value_info("normed", f32, [1, 1, ck.hidden_size]),
                    helper.make_tensor_value_info("error_bound", f32, [1])]
    else:
        head = g.linear(x, ck.lm_head, None, "lm_head")
    g.op("Identity", [head], out=["output"])
    return _model(g, f"{ck.architecture}_post", [helper.make_tensor_value_info("input", f32, [1, 1, ck.hidden_size])],
                  outputs, f"final norm + lm head of {ck.name}")


def _int8_error_bound(g: _LlmGraph, x: str, qw: QuantWeight) -> str:
    """A bound on every logit's error from the int8 arithmetic of ``x @ W.T`` (``x [1,1,K]``, W's codes ``qw``).

    onnxruntime quantizes each block of 32 inputs with the scale ``s_b = max|x_b| / 127`` and rounds to the nearest
    code, so each input moves by at most ``s_b / 2`` and a logit by at most ``sum_b s_b / 2 * max_r |W_r,b|_1``
    (the weights are exact codes; the int32 block sums are exact). Returns a ``[1]`` tensor."""
    n, k = qw.codes.shape
    blocks = k // qw.block
    zero = 1 << (qw.bits - 1)
    l1 = np.abs(qw.codes.astype(np.int32) - zero).reshape(n, blocks, qw.block).sum(-1) * np.abs(qw.scale)
    amax = g.op("ReduceMax", [g.op("Abs", [g.op("Reshape", [x, g.ints([blocks, qw.block])])])], axes=[1],
                keepdims=0)                                                                       # [blocks]
    half_l1 = g.init("lm_head_l1", (l1.max(0) / (2.0 * 127.0)).astype(np.float32))
    return g.op("ReduceSum", [g.op("Mul", [amax, half_l1]), g.ints([0])], keepdims=1)


def _model(g: _LlmGraph, name: str, inputs, outputs, doc: str) -> onnx.ModelProto:
    model = g.model(name, inputs, outputs, doc)
    model.producer_version = f"llm-{CONVERTER_VERSION}"
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))  # onnxruntime's contrib ops
    return model


def build_tokenizer_json(tok: TokenizerData) -> str:
    """A Hugging Face ``tokenizer.json`` (byte-level BPE) from GGUF/HF tokenizer data."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {s: i for i, s in enumerate(tok.tokens) if s}
    merges = [tuple(m.split(" ", 1)) for m in tok.merges]
    t = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if tok.pre == "smollm":  # SmolLM's own tokenizer splits digits one by one before the byte-level step
        t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        t.pre_tokenizer = byte_level
    t.decoder = decoders.ByteLevel()
    t.post_processor = processors.ByteLevel(trim_offsets=False)
    t.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in tok.special])
    return t.to_str()


_SYSTEM_RE = re.compile(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", re.S)


def _config_for(ck: Checkpoint, max_context: int, prefill_chunk: int, source: str) -> LlmConfig:
    tok = ck.tokenizer
    ids = {s: i for i, s in enumerate(tok.tokens)} if tok else {}
    template = tok.chat_template if tok else ""
    eos = [i for i in (tok.eos_id if tok else None, ids.get("<|im_end|>")) if i is not None]
    system = _SYSTEM_RE.search(template)
    return LlmConfig(
        architecture=ck.architecture, num_layers=ck.num_layers, hidden_size=ck.hidden_size, num_heads=ck.num_heads,
        num_kv_heads=ck.num_kv_heads, head_dim=ck.head_dim, vocab_size=ck.vocab_size,
        max_context=min(int(max_context), ck.max_position_embeddings), prefill_chunk=int(prefill_chunk),
        prompt_format="chatml" if "<|im_start|>" in template or "<|im_start|>" in ids else "plain",
        default_system_prompt=system.group(1) if system else "", bos_id=None, eos_ids=sorted(set(eos)),
        converter_version=CONVERTER_VERSION, source=source)


def convert_checkpoint(source: str, out_dir: str, *, max_context: int = 2048, prefill_chunk: int = 128,
                       weights: str = "float32", progress: ProgressFn = None) -> LlmConfig:
    """Convert ``source`` (GGUF file, safetensors file or Hugging Face folder) into ``out_dir``; return the config.

    ``weights`` (:data:`WEIGHT_FORMATS`, see :data:`ACCURACY_LEVEL`): ``float32``, or a block format in which GGUF
    Q4_0 / Q4_1 / Q8_0 matrices stay block-quantized in the graphs (onnxruntime's ``MatMulNBits``; 2-4x smaller
    files, far less memory traffic per token; the projections of one input are one fused ``MatMulNBits``).
    Everything else, and every other source, is float32.

    Raises :class:`~.checkpoint.CheckpointError` for an unreadable or unsupported checkpoint.
    """
    if weights not in ACCURACY_LEVEL:
        raise ValueError(f"unknown weight format {weights!r}; use one of {', '.join(WEIGHT_FORMATS)}")
    say = progress or (lambda _m: None)
    t0 = time.monotonic()
    ck = read_checkpoint(source, keep_quant=weights != "float32")
    if ck.tokenizer is None:
        raise CheckpointError(f"{source!r} carries no tokenizer (GGUF tokenizer.ggml.* or tokenizer.json)")
    say(f"read {ck.name}: {ck.architecture}, {ck.num_layers} layers, hidden {ck.hidden_size}, vocab "
        f"{ck.vocab_size} ({time.monotonic() - t0:.1f} s)")
    os.makedirs(out_dir, exist_ok=True)
    cfg = _config_for(ck, max_context, prefill_chunk, os.path.basename(os.path.normpath(source)))
    cfg.weights = weights if ck.quant else "float32"
    for i in range(ck.num_layers):
        onnx.save_model(build_layer(ck, i, weights, cfg.max_context),
                        os.path.join(out_dir, f"{ck.architecture}_l{i}.onnx"))
        say(f"layer {i + 1}/{ck.num_layers}")
    onnx.save_model(build_post(ck, weights), os.path.join(out_dir, f"{ck.architecture}_post.onnx"))
    np.save(os.path.join(out_dir, EMBED_NPY), ck.weight("model.embed_tokens.weight").astype(np.float32))
    with open(os.path.join(out_dir, "tokenizer.json"), "w") as f:
        f.write(build_tokenizer_json(ck.tokenizer))
    cfg.save(out_dir)
    say(f"wrote {out_dir} ({time.monotonic() - t0:.1f} s)")
    return cfg


def cached_conversion(source: str, *, cache: Optional[str] = None, max_context: int = 2048,
                      weights: str = "float32", progress: ProgressFn = None) -> str:
    """The converted folder of ``source``, converted once into the cache (:func:`axcl_ros.assets.cache_dir`) and
    reused; keyed by the converter version, the source's size and mtime and ``max_context``. A conversion is
    written to a temporary folder and renamed, so concurrent callers never see half a model."""
    import shutil

    from ...assets import cache_dir

    st = os.stat(source)
    root = cache if cache is not None else str(cache_dir())
    stem = os.path.basename(os.path.normpath(source)).replace(".", "_")
    dst = os.path.join(root, f"llm-{stem}-onnx-v{CONVERTER_VERSION}-{st.st_size}-{st.st_mtime_ns}-c{max_context}"
                                     f"{'' if weights == 'float32' else '-' + weights}")
    if os.path.isfile(os.path.join(dst, "config.json")):
        return dst
    tmp = f"{dst}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    convert_checkpoint(source, tmp, max_context=max_context, weights=weights, progress=progress)
    try:
        os.rename(tmp, dst)
    except OSError:  # another process finished the same conversion first
        shutil.rmtree(tmp, ignore_errors=True)
    return dst
