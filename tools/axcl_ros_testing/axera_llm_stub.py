"""A language model in AXERA's compiled per-layer layout, as AXCL stub models (``axcl_stub.c`` ops ``llm_layer`` and
``llm_post``), for the card path of the ``describe`` node.

The folder looks like AXERA's (``vlm.md``): ``{prefix}_p{chunk}_l{i}_together.axmodel`` decoder layers with shape
groups (group 0 decode ``[1,1,H]`` over a ``kv_len`` cache, groups g >= 1 one ``chunk``-token prefill chunk over a
cache of ``capacity_g`` rows), ``{prefix}_post.axmodel`` (``[1,1,H]`` → bf16 logits, or bf16 values + int32 ids of
the top k), ``model.embed_tokens.weight.bfloat16.bin`` (raw bf16), ``tokenizer.json`` and ``config.json``.

What the stub computes (``axcl_stub.c``, section "LLM layer / post"): a hidden row carries its token id as a tag;
each layer checks the KV cache, mask and positions the caller keeps on the card and counts itself in the row; the
post model answers with the successor of the tag in ``sequence`` — or ``bad`` when any layer saw a wrong state or
was skipped. :func:`expected_tokens` gives the answer a correct runner produces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from axcl_ros.models.llm.config import EMBED_BF16, LlmConfig
from axcl_ros.models.llm.export_onnx import build_tokenizer_json

from .llm_models import byte_tokenizer_data
from .stub_models import StubTensor, write_stub_model


@dataclass(frozen=True)
class AxeraLlmStub:
    """Folder and dimensions of a stub model set."""

    folder: str
    config: LlmConfig
    kv_len: int
    capacities: Tuple[int, ...]
    sequence: Tuple[int, ...]
    eot: int
    bad: int


def embedding_rows(vocab: int, hidden: int, seed: int = 0) -> np.ndarray:
    """bf16 bits ``[vocab, hidden]``: row v carries the tag v (``x[0] + 128·x[3] + 16384·x[4]``), zeros in the
    layer counter ``x[1]`` and the error flag ``x[2]``, and small random values elsewhere."""
    rng = np.random.default_rng(seed)
    table = rng.uniform(-1, 1, (vocab, hidden)).astype(np.float32)
    v = np.arange(vocab)
    table[:, 0], table[:, 3], table[:, 4] = v % 128, (v // 128) % 128, v // 16384
    table[:, 1] = table[:, 2] = 0
    return (table.view(np.uint32) >> 16).astype(np.uint16)


def write_layer(path: str, layer: int, hidden: int, kv_dim: int, kv_len: int, chunk: int,
                capacities: Sequence[int], delay_us: int = 0) -> str:
    """One decoder layer: group 0 decode, group g (1…) a ``chunk``-token prefill over ``capacities[g-1]`` rows;
    every execute sleeps ``delay_us``."""
    bf = "bf16"
    inputs = [StubTensor("input", (1, 1, hidden), bf), StubTensor("indices", (1, 1), np.uint32),
              StubTensor("K_cache", (1, kv_len, kv_dim), bf), StubTensor("V_cache", (1, kv_len, kv_dim), bf),
              StubTensor("mask", (1, 1, kv_len + 1), bf)]
    outputs = [StubTensor("K_cache_out", (1, 1, kv_dim), bf), StubTensor("V_cache_out", (1, 1, kv_dim), bf),
               StubTensor("output", (1, 1, hidden), bf)]
    groups = [{"input": (1, chunk, hidden), "indices": (1, chunk), "K_cache": (1, c, kv_dim),
               "V_cache": (1, c, kv_dim), "mask": (1, chunk, c + chunk), "K_cache_out": (1, chunk, kv_dim),
               "V_cache_out": (1, chunk, kv_dim), "output": (1, chunk, hidden)} for c in capacities]
    return str(write_stub_model(path, "llm_layer", inputs, outputs, {"layer": layer, "delay_us": delay_us},
                                groups=groups, cores=3))


def write_post(path: str, hidden: int, vocab: int, layers: int, sequence: Sequence[int], eot: int, bad: int,
               top_k: int = 0) -> str:
    """The post model: ``input [1,1,H]`` → ``output`` bf16 ``[1,1,V]`` (or, with ``top_k``, bf16 values and
    int32 ``indices`` ``[1,1,k]``)."""
    if top_k:
        outputs = [StubTensor("output", (1, 1, top_k), "bf16"), StubTensor("indices", (1, 1, top_k), np.int32)]
    else:
        outputs = [StubTensor("output", (1, 1, vocab), "bf16")]
    return str(write_stub_model(path, "llm_post", [StubTensor("input", (1, 1, hidden), "bf16")], outputs,
                                {"layers": layers, "eot": eot, "bad": bad, "vocab": vocab}, ints=sequence, cores=3))


def write_vit(path: str, hidden: int, n_tokens: int = 16, size: int = 32) -> str:
    """Vision encoder ``u8 images [1,S,S,3]`` (NHWC RGB, as AXERA's NHWC build) → ``bf16 [1,N,H]``; row n is
    ``{tag, 0, 0, 0, 0, n, n, …}`` with tag = floor(mean input byte) mod 128 (:func:`expected_vit_tag`)."""
    return str(write_stub_model(path, "vit", [StubTensor("images", (1, size, size, 3), np.uint8, "NHWC")],
                                [StubTensor("output", (1, n_tokens, hidden), "bf16")], cores=3))


def expected_vit_tag(model_input: np.ndarray) -> int:
    """The tag :func:`write_vit`'s model writes for the (resized) ``u8`` input it was given."""
    return int(np.floor(np.asarray(model_input, np.float64).mean())) % 128


def axera_llm_stub(folder: str, *, layers: int = 2, hidden: int = 16, kv_dim: int = 8, kv_len: int = 384,
                   chunk: int = 128, capacities: Sequence[int] = (128, 256), sequence: Sequence[int] = (),
                   bad: Optional[int] = None, prefix: str = "qwen2", top_k: int = 0, with_tokenizer: bool = True,
                   vocab: Optional[int] = None, seed: int = 0, vision_tokens: int = 0,
                   delay_us: int = 0) -> AxeraLlmStub:
    """Write the whole folder (byte-level tokenizer of :mod:`.llm_models`: vocab 264, eos ``<|im_end|>`` = 2).

    ``sequence`` (distinct ids) defaults to the ids of " hey!" — the answer a correct runner gives to any prompt
    not ending in one of them is that sequence, then ``<|im_end|>``; ``bad`` defaults to the id of "#".
    ``vision_tokens`` > 0 adds ``{prefix}_vit.axmodel`` (:func:`write_vit`, 32 px) and InternVL's image keys
    (``<img>`` + ``<image>`` x N + ``</img>``) to ``config.json``.
    """
    os.makedirs(folder, exist_ok=True)
    tok = byte_tokenizer_data()
    if with_tokenizer:
        with open(os.path.join(folder, "tokenizer.json"), "w") as f:
            f.write(build_tokenizer_json(tok))
    vocab = len(tok.tokens) if vocab is None else int(vocab)
    eot = int(tok.eos_id)
    from tokenizers import Tokenizer

    encode = Tokenizer.from_str(build_tokenizer_json(tok)).encode
    if not sequence:
        sequence = encode(" hey!", add_special_tokens=False).ids
    sequence = tuple(int(t) for t in sequence)
    if len(set(sequence)) != len(sequence):
        raise ValueError(f"sequence {sequence} must hold distinct token ids")
    bad = encode("#", add_special_tokens=False).ids[0] if bad is None else int(bad)
    cfg = LlmConfig(architecture="qwen2", num_layers=layers, hidden_size=hidden, num_heads=1, num_kv_heads=1,
                    head_dim=kv_dim, vocab_size=vocab, max_context=kv_len, prefill_chunk=chunk,
                    prompt_format="chatml", default_system_prompt="You are a tiny test model.", eos_ids=[eot],
                    source="axcl stub (axcl_ros_testing.axera_llm_stub)")
    if vision_tokens:
        cfg.image_token, cfg.image_prefix, cfg.image_suffix = "<image>", "<img>", "</img>\n"
        cfg.n_image_tokens, cfg.image_size = int(vision_tokens), 32
        write_vit(os.path.join(folder, f"{prefix}_vit.axmodel"), hidden, int(vision_tokens), 32)
    cfg.save(folder)
    for i in range(layers):
        write_layer(os.path.join(folder, f"{prefix}_p{chunk}_l{i}_together.axmodel"), i, hidden, kv_dim, kv_len,
                    chunk, capacities, delay_us)
    write_post(os.path.join(folder, f"{prefix}_post.axmodel"), hidden, vocab, layers, sequence, eot, bad, top_k)
    embedding_rows(vocab, hidden, seed).tofile(os.path.join(folder, EMBED_BF16))
    return AxeraLlmStub(folder, cfg, kv_len, tuple(capacities), sequence, eot, bad)


def expected_tokens(stub: AxeraLlmStub, last_prompt_token: int, max_new_tokens: int) -> list:
    """Tokens a correct runner generates after a prompt ending in ``last_prompt_token`` (eos not included)."""
    seq, out, tok = stub.sequence, [], last_prompt_token
    while len(out) < max_new_tokens:
        tok = seq[seq.index(tok) + 1] if tok in seq[:-1] else (stub.eot if tok in seq or tok == stub.eot else seq[0])
        if tok == stub.eot:
            break
        out.append(tok)
    return out


#: InternVL2/2.5/3-1B's language model as AXERA compiles it (Qwen2-0.5B: 24 layers, hidden 896, 2 KV heads x 64 =
#: kv_dim 128, vocabulary 151,674); the cache length and prefill capacities are this stub's choice (vlm.md: they
#: differ per build)
INTERNVL_1B = dict(layers=24, hidden=896, kv_dim=128, vocab=151674, kv_len=1024,
                   capacities=(128, 256, 384, 512, 640, 768, 896))


def internvl_1b_shaped_files(folder: str, top_k: int = 0, sequence: Sequence[int] = (1000, 1001, 1002),
                             eot: int = 151645, bad: int = 7):
    """Layer and post stub models of InternVL-1B's shapes (no embedding table or tokenizer: the 272 MB table is not
    needed to count bytes), as :class:`~axcl_ros.models.llm.config.LlmFiles` for
    :class:`~axcl_ros.models.llm.axcl_layers.AxclLayerStack`."""
    from axcl_ros.models.llm.config import LlmFiles

    d = INTERNVL_1B
    os.makedirs(folder, exist_ok=True)
    cfg = LlmConfig(architecture="qwen2", num_layers=d["layers"], hidden_size=d["hidden"], num_heads=14,
                    num_kv_heads=2, head_dim=64, vocab_size=d["vocab"], max_context=d["kv_len"], eos_ids=[eot])
    layers = [write_layer(os.path.join(folder, f"qwen2_p128_l{i}_together.axmodel"), i, d["hidden"], d["kv_dim"],
                          d["kv_len"], 128, d["capacities"]) for i in range(d["layers"])]
    post = write_post(os.path.join(folder, f"qwen2_post{f'_top{top_k}' if top_k else ''}.axmodel"), d["hidden"],
                      d["vocab"], d["layers"], sequence, eot, bad, top_k)
    return LlmFiles(folder=folder, config=cfg, layers=layers, post=post, embeddings="", tokenizer="")
