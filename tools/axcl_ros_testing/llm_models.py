"""Tiny llama/qwen2 checkpoints, a synthetic vision encoder and a plain numpy transformer, for tests and benches.

* :func:`write_tiny_checkpoint` writes a Hugging Face folder (``config.json``, ``model.safetensors``,
  ``tokenizer.json``, ``tokenizer_config.json`` with a ChatML template) of random weights; its tokenizer is
  byte-level BPE over the 256 byte symbols plus special tokens (an image token among them).
* :func:`write_vision_encoder` writes an ONNX vision encoder of the describe node's contract
  (``f32[1,3,S,S]`` → ``f32[1,N,H]``: average-pools the image to a grid and projects each cell's colour).
* :class:`NumpyLlama` runs a :class:`~axcl_ros.models.llm.checkpoint.Checkpoint` with numpy only (its own KV cache),
  written from the Hugging Face formulas: the independent implementation the converter's graphs are checked
  against, and the baseline of the CPU bench.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Dict, List, Sequence

import numpy as np
from onnx import helper

from axcl_ros.models.llm.checkpoint import Checkpoint, TokenizerData
from axcl_ros.models.llm.export_onnx import build_tokenizer_json

from .onnx_builders import make_model, value_info

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<img>", "</img>")
CHATML_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                   "{{ '<|im_start|>system\nYou are a tiny test model.<|im_end|>\n' }}{% endif %}"
                   "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
                   "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def byte_tokenizer_data(merges: Sequence[str] = ("t h", "th e")) -> TokenizerData:
    """Byte-level BPE: the special tokens, the 256 byte symbols, then one token per merge."""
    from tokenizers import pre_tokenizers

    tokens: List[str] = list(SPECIAL_TOKENS) + sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens += ["".join(m.split(" ")) for m in merges]
    return TokenizerData(tokens=tokens, merges=list(merges), special=list(SPECIAL_TOKENS), bos_id=None,
                         eos_id=2, chat_template=CHATML_TEMPLATE)


def write_safetensors(path: str, tensors: Dict[str, np.ndarray]) -> None:
    """Write float32 tensors in the safetensors format."""
    header, offset, blobs = {}, 0, []
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for b in blobs:
            f.write(b)


def write_tiny_checkpoint(folder: str, arch: str = "llama", *, layers: int = 2, hidden: int = 48, heads: int = 4,
                          kv_heads: int = 2, intermediate: int = 96, seed: int = 0, tie: bool = True,
                          rope_theta: float = 10000.0, max_positions: int = 8192) -> str:
    """Write a random-weight Hugging Face checkpoint folder of ``arch`` (``llama`` or ``qwen2``); return it."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    tok = byte_tokenizer_data()
    vocab = len(tok.tokens)
    dh = hidden // heads

    def w(*shape, scale=0.08):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    t: Dict[str, np.ndarray] = {"model.embed_tokens.weight": w(vocab, hidden, scale=0.1),
                                "model.norm.weight": 1.0 + w(hidden, scale=0.1)}
    if not tie:
        t["lm_head.weight"] = w(vocab, hidden, scale=0.2)
    for i in range(layers):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = 1.0 + w(hidden, scale=0.1)
        t[p + "post_attention_layernorm.weight"] = 1.0 + w(hidden, scale=0.1)
        t[p + "self_attn.q_proj.weight"] = w(heads * dh, hidden, scale=0.3)
        t[p + "self_attn.k_proj.weight"] = w(kv_heads * dh, hidden, scale=0.3)
        t[p + "self_attn.v_proj.weight"] = w(kv_heads * dh, hidden)
        t[p + "self_attn.o_proj.weight"] = w(hidden, heads * dh)
        if arch == "qwen2":
            t[p + "self_attn.q_proj.bias"] = w(heads * dh, scale=0.2)
            t[p + "self_attn.k_proj.bias"] = w(kv_heads * dh, scale=0.2)
            t[p + "self_attn.v_proj.bias"] = w(kv_heads * dh, scale=0.2)
        t[p + "mlp.gate_proj.weight"] = w(intermediate, hidden)
        t[p + "mlp.up_proj.weight"] = w(intermediate, hidden)
        t[p + "mlp.down_proj.weight"] = w(hidden, intermediate, scale=0.3)
    write_safetensors(os.path.join(folder, "model.safetensors"), t)
    cfg = {"model_type": arch, "num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": heads,
           "num_key_value_heads": kv_heads, "intermediate_size": intermediate, "vocab_size": vocab,
           "rope_theta": rope_theta, "rms_norm_eps": 1e-6, "max_position_embeddings": max_positions,
           "tie_word_embeddings": tie}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f)
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        f.write(build_tokenizer_json(tok))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"chat_template": CHATML_TEMPLATE, "eos_token": "<|im_end|>"}, f)
    return folder


def write_vision_encoder(path: str, hidden: int, n_tokens: int = 16, size: int = 32, seed: int = 1) -> str:
    """ONNX vision encoder ``image f32[1,3,S,S] -> vision_embeds f32[1,N,H]`` (N a square number)."""
    grid = int(round(n_tokens ** 0.5))
    if grid * grid != n_tokens or size % grid:
        raise ValueError(f"n_tokens {n_tokens} must be a square and size {size} a multiple of its root")
    k = size // grid
    proj = (np.random.default_rng(seed).standard_normal((3, hidden)) * 0.5).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[k, k], strides=[k, k]),
        helper.make_node("Reshape", ["pooled", "shape"], ["cells"]),
        helper.make_node("Transpose", ["cells"], ["rows"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["rows", "proj"], ["vision_embeds"]),
    ]
    model = make_model(nodes, [value_info("image", [1, 3, size, size], np.float32)],
                       [value_info("vision_embeds", [1, n_tokens, hidden], np.float32)],
                       [np.array([1, 3, n_tokens], np.int64), proj], ["shape", "proj"], name="vision")
    import onnx

    onnx.save_model(model, path)
    return path


class NumpyLlama:
    """The llama/qwen2 decoder in plain numpy (float32), with its own KV cache: ``prefill`` then ``step``."""

    def __init__(self, ck: Checkpoint) -> None:
        self.ck = ck
        dh = ck.head_dim
        self.inv_freq = (1.0 / (ck.rope_theta ** (np.arange(0, dh, 2, dtype=np.int64).astype(np.float32) / dh))
                         ).astype(np.float32)
        self.lm_head_t = np.ascontiguousarray(ck.lm_head.T)
        p = "model.layers.{}."
        self.layers = []
        for i in range(ck.num_layers):
            get = ck.weights.get
            q = p.format(i)
            self.layers.append({n: (np.ascontiguousarray(get(q + n).T) if n.endswith("proj.weight") else get(q + n))
                                for n in ("input_layernorm.weight", "post_attention_layernorm.weight",
                                          "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                          "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                                          "self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias",
                                          "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")})
        self.reset()

    def reset(self) -> None:
        """Empty the cache."""
        self.k: List[np.ndarray] = [np.zeros((self.ck.num_kv_heads, 0, self.ck.head_dim), np.float32)
                                    for _ in self.layers]
        self.v: List[np.ndarray] = [a.copy() for a in self.k]

    def _norm(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + np.float32(self.ck.rms_norm_eps)) * w

    def _rope(self, x: np.ndarray, pos: np.ndarray) -> np.ndarray:  # x [heads, T, dh]
        f = pos.astype(np.float32)[:, None] * self.inv_freq[None]
        emb = np.concatenate([f, f], -1)
        half = x.shape[-1] // 2
        rot = np.concatenate([-x[..., half:], x[..., :half]], -1)
        return x * np.cos(emb) + rot * np.sin(emb)

    def forward(self, embeds: np.ndarray) -> np.ndarray:
        """Run ``embeds [T, H]`` after the cached positions; return the logits of the last one."""
        ck = self.ck
        nh, nkv, dh = ck.num_heads, ck.num_kv_heads, ck.head_dim
        t = embeds.shape[0]
        past = self.k[0].shape[1]
        pos = np.arange(past, past + t)
        x = embeds.astype(np.float32)
        causal = np.triu(np.full((t, past + t), -np.inf, np.float32), k=past + 1)
        for i, w in enumerate(self.layers):
            a = self._norm(x, w["input_layernorm.weight"])
            q, k, v = (a @ w[f"self_attn.{n}_proj.weight"] for n in "qkv")
            if w["self_attn.q_proj.bias"] is not None:
                q, k, v = (q + w["self_attn.q_proj.bias"], k + w["self_attn.k_proj.bias"],
                           v + w["self_attn.v_proj.bias"])
            q = self._rope(q.reshape(t, nh, dh).transpose(1, 0, 2), pos)
            k = self._rope(k.reshape(t, nkv, dh).transpose(1, 0, 2), pos)
            self.k[i] = np.concatenate([self.k[i], k], 1)
            self.v[i] = np.concatenate([self.v[i], v.reshape(t, nkv, dh).transpose(1, 0, 2)], 1)
            kk = np.repeat(self.k[i], nh // nkv, axis=0)
            vv = np.repeat(self.v[i], nh // nkv, axis=0)
            s = q @ kk.transpose(0, 2, 1) / np.float32(np.sqrt(dh)) + causal
            s = np.exp(s - s.max(-1, keepdims=True))
            o = (s / s.sum(-1, keepdims=True)) @ vv
            x = x + o.transpose(1, 0, 2).reshape(t, nh * dh) @ w["self_attn.o_proj.weight"]
            m = self._norm(x, w["post_attention_layernorm.weight"])
            g = m @ w["mlp.gate_proj.weight"]
            x = x + ((g / (1 + np.exp(-g))) * (m @ w["mlp.up_proj.weight"])) @ w["mlp.down_proj.weight"]
        return self._norm(x[-1], ck.weight("model.norm.weight")) @ self.lm_head_t

    def greedy(self, ids: Sequence[int], max_new_tokens: int, eos: Sequence[int] = ()) -> List[int]:
        """Greedy continuation of ``ids`` (stops at an ``eos`` id, which is not returned)."""
        self.reset()
        emb = self.ck.weight("model.embed_tokens.weight")
        token = int(np.argmax(self.forward(emb[list(ids)])))
        out: List[int] = []
        while token not in eos and len(out) < max_new_tokens:
            out.append(token)
            if len(out) == max_new_tokens:
                break
            token = int(np.argmax(self.forward(emb[[token]])))
        return out


def _permute_for_gguf(w: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face q/k rows → llama.cpp's interleaved-pair order (what GGUF files of llama models store)."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: str, hf_folder: str, quant: str = "Q4_1") -> str:
    """A GGUF file (``llama`` architecture, matrices quantized to ``quant``: Q4_0, Q4_1, Q8_0 or F32) of the tiny
    Hugging Face checkpoint in ``hf_folder``, written with the ``gguf`` package the way llama.cpp's converter lays it
    out (q/k rows permuted, ``blk.{i}.*`` names, tokenizer in ``tokenizer.ggml.*``)."""
    import gguf

    from axcl_ros.models.llm.checkpoint import read_safetensors

    ck = read_safetensors(hf_folder)
    if ck.architecture != "llama":
        raise ValueError("write_tiny_gguf writes llama checkpoints")
    qtype = gguf.GGMLQuantizationType[quant]
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(ck.num_layers)
    w.add_context_length(ck.max_position_embeddings)
    w.add_embedding_length(ck.hidden_size)
    w.add_feed_forward_length(ck.intermediate_size)
    w.add_head_count(ck.num_heads)
    w.add_head_count_kv(ck.num_kv_heads)
    w.add_rope_freq_base(ck.rope_theta)
    w.add_layer_norm_rms_eps(ck.rms_norm_eps)
    tok = ck.tokenizer
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tok.tokens)
    w.add_token_types([3 if t in tok.special else 1 for t in tok.tokens])
    w.add_token_merges(tok.merges)
    w.add_eos_token_id(tok.eos_id)
    w.add_chat_template(tok.chat_template)

    def add(name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array, np.float32)
        if array.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, array)

    add("token_embd.weight", ck.weight("model.embed_tokens.weight"))
    add("output_norm.weight", ck.weight("model.norm.weight"))
    if "lm_head.weight" in ck.weights:
        add("output.weight", ck.weights["lm_head.weight"])
    names = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
             "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
             "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
             "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
             "mlp.down_proj.weight": "ffn_down.weight"}
    for i in range(ck.num_layers):
        for hf, gg in names.items():
            a = ck.weight(f"model.layers.{i}.{hf}")
            if hf == "self_attn.q_proj.weight":
                a = _permute_for_gguf(a, ck.num_heads)
            elif hf == "self_attn.k_proj.weight":
                a = _permute_for_gguf(a, ck.num_kv_heads)
            add(f"blk.{i}.{gg}", a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
