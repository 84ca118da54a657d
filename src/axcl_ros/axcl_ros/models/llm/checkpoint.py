"""Read a llama- or qwen2-architecture checkpoint (GGUF or Hugging Face safetensors) as float32 numpy arrays.

Weights come out in the Hugging Face layout and naming (``model.layers.{i}.self_attn.q_proj.weight`` ``[out, in]``,
rotate-half RoPE). GGUF files of the ``llama`` architecture store the q/k projections permuted for llama.cpp's
interleaved-pair RoPE; :func:`read_gguf` undoes that permutation. Quantized GGUF tensors are dequantized by the
``gguf`` package.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

ARCHITECTURES = ("llama", "qwen2")


class CheckpointError(ValueError):
    """The checkpoint cannot be read or is not a supported architecture (the message says what was found)."""


@dataclass
class TokenizerData:
    """What a tokenizer is built from: byte-level BPE vocabulary and merges, special tokens, chat template."""

    tokens: List[str]
    merges: List[str]
    special: List[str]
    bos_id: Optional[int] = None
    eos_id: Optional[int] = None
    chat_template: str = ""
    pre: str = ""  #: GGUF ``tokenizer.ggml.pre`` (pre-tokenizer flavour)


@dataclass
class QuantWeight:
    """A GGUF block-quantized matrix ``[N, K]`` kept as its codes: ``w = scale * (code - zero) + offset`` per block of
    32 along K, ``zero`` = 8 (4-bit) or 128 (8-bit) — the layout of onnxruntime's ``MatMulNBits`` plus a per-block
    offset (``None`` when it is 0 everywhere)."""

    codes: np.ndarray  #: uint8 [N, K], 0..15 (4-bit) or 0..255 (8-bit)
    scale: np.ndarray  #: float32 [N, K/32]
    offset: Optional[np.ndarray]  #: float32 [N, K/32] or None
    bits: int
    block: int = 32


@dataclass
class Checkpoint:
    """Hyper-parameters and weights of one decoder-only model."""

    architecture: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    rope_theta: float
    rms_norm_eps: float
    max_position_embeddings: int
    weights: Dict[str, np.ndarray] = field(default_factory=dict)
    tokenizer: Optional[TokenizerData] = None
    name: str = ""
    #: block-quantized copies of some weights (GGUF Q4_0 / Q4_1 / Q8_0), when read with ``keep_quant``
    quant: Dict[str, QuantWeight] = field(default_factory=dict)

    def weight(self, name: str) -> np.ndarray:
        """The float32 array ``name``; raise :class:`CheckpointError` naming it when absent."""
        try:
            return self.weights[name]
        except KeyError:
            raise CheckpointError(f"checkpoint {self.name!r} has no tensor {name!r}") from None

    @property
    def lm_head(self) -> np.ndarray:
        """The output projection ``[vocab, hidden]`` (the token embedding when tied)."""
        return self.weights.get("lm_head.weight", self.weight("model.embed_tokens.weight"))


def read_checkpoint(path: str, keep_quant: bool = False) -> Checkpoint:
    """Read a ``.gguf`` file, a ``.safetensors`` file, or a Hugging Face folder (``config.json`` + safetensors);
    ``keep_quant`` keeps GGUF block-quantized matrices as codes too."""
    path = os.path.expanduser(os.fspath(path))
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    if os.path.isdir(path) or path.endswith(".safetensors"):
        return read_safetensors(path)
    if path.endswith(".gguf"):
        return read_gguf(path, keep_quant)
    raise CheckpointError(f"{path!r} is neither a .gguf file nor a safetensors checkpoint (file or folder)")


# ----------------------------------------------------------------------------------------------------------- GGUF
_GGUF_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.weight": "self_attn.k_proj.weight", "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (interleaved pairs → rotate-half halves)."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _quant_codes(raw: np.ndarray, kind: str) -> Optional[QuantWeight]:
    """The codes of a Q4_0 / Q4_1 / Q8_0 tensor (``raw``: uint8 [rows, bytes]); None for other kinds."""
    rows = raw.shape[0]

    def f16(b: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(b).view(np.float16)[..., 0].astype(np.float32)

    if kind in ("Q4_0", "Q4_1"):
        head = 2 if kind == "Q4_0" else 4
        b = raw.reshape(rows, -1, head + 16)
        d = f16(b[..., 0:2])
        qs = b[..., head:]
        codes = np.concatenate([qs & 15, qs >> 4], -1).reshape(rows, -1)  # low nibbles: elements 0-15
        offset = f16(b[..., 2:4]) + 8 * d if kind == "Q4_1" else None  # d*q + m = d*(q-8) + (m+8d)
        return QuantWeight(codes, d, offset, 4)
    if kind == "Q8_0":
        b = raw.reshape(rows, -1, 34)
        codes = (np.ascontiguousarray(b[..., 2:]).view(np.int8).astype(np.int16) + 128).astype(np.uint8)
        return QuantWeight(codes.reshape(rows, -1), f16(b[..., 0:2]), None, 8)
    return None


def read_gguf(path: str, keep_quant: bool = False) -> Checkpoint:
    """Read a GGUF file (any quantization the ``gguf`` package dequantizes) into a :class:`Checkpoint`; with
    ``keep_quant`` the Q4_0 / Q4_1 / Q8_0 matrices are also kept as codes (:class:`QuantWeight`)."""
    try:
        import gguf
    except ImportError as exc:  # pragma: no cover - gguf is in requirements/runtime.txt
        raise CheckpointError(f"reading GGUF needs the 'gguf' package ({exc}): pip install gguf") from exc
    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # noqa: BLE001 - the gguf package raises many kinds for a corrupt file
        raise CheckpointError(f"{path!r} is not a readable GGUF file: {exc}") from exc

    def field_value(key: str, default=None):
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    arch = field_value("general.architecture", "")
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"{path!r}: architecture {arch!r} is not supported (supported: {list(ARCHITECTURES)})")
    n_head = int(field_value(f"{arch}.attention.head_count"))
    n_kv = int(field_value(f"{arch}.attention.head_count_kv", n_head))
    hidden = int(field_value(f"{arch}.embedding_length"))
    weights: Dict[str, np.ndarray] = {}
    quant: Dict[str, QuantWeight] = {}
    for t in reader.tensors:
        array = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        q = _quant_codes(np.asarray(t.data), t.tensor_type.name) if keep_quant and array.ndim == 2 else None
        if t.name == "token_embd.weight":
            weights["model.embed_tokens.weight"] = array
            if q is not None:
                quant["model.embed_tokens.weight"] = q
        elif t.name == "output_norm.weight":
            weights["model.norm.weight"] = array
        elif t.name == "output.weight":
            weights["lm_head.weight"] = array
            if q is not None:
                quant["lm_head.weight"] = q
        elif t.name.startswith("blk."):
            _, layer, rest = t.name.split(".", 2)
            hf = _GGUF_NAMES.get(rest)
            if hf is None:
                continue  # e.g. rope_freqs: not used by the architectures supported here
            if arch == "llama" and rest in ("attn_q.weight", "attn_k.weight"):
                heads = n_head if rest == "attn_q.weight" else n_kv
                array = _unpermute(array, heads)
                if q is not None:
                    q = QuantWeight(_unpermute(q.codes, heads), _unpermute(q.scale, heads),
                                    None if q.offset is None else _unpermute(q.offset, heads), q.bits)
            weights[f"model.layers.{layer}.{hf}"] = np.ascontiguousarray(array)
            if q is not None:
                quant[f"model.layers.{layer}.{hf}"] = q
    vocab = weights["model.embed_tokens.weight"].shape[0] if "model.embed_tokens.weight" in weights else 0
    tokens = field_value("tokenizer.ggml.tokens")
    tok = None
    if tokens is not None:
        types = field_value("tokenizer.ggml.token_type", [1] * len(tokens))
        tok = TokenizerData(
            tokens=list(tokens), merges=list(field_value("tokenizer.ggml.merges", [])),
            special=[s for s, k in zip(tokens, types) if int(k) == 3],
            bos_id=_opt_int(field_value("tokenizer.ggml.bos_token_id")),
            eos_id=_opt_int(field_value("tokenizer.ggml.eos_token_id")),
            chat_template=field_value("tokenizer.chat_template", "") or "",
            pre=field_value("tokenizer.ggml.pre", "") or "")
        if field_value("tokenizer.ggml.model", "gpt2") != "gpt2":
            raise CheckpointError(f"{path!r}: tokenizer model {field_value('tokenizer.ggml.model')!r} is not "
                                  f"supported (byte-level BPE 'gpt2' only)")
    return Checkpoint(
        architecture=arch, num_layers=int(field_value(f"{arch}.block_count")), hidden_size=hidden,
        intermediate_size=int(field_value(f"{arch}.feed_forward_length")), num_heads=n_head, num_kv_heads=n_kv,
        head_dim=int(field_value(f"{arch}.attention.key_length", hidden // n_head)), vocab_size=vocab,
        rope_theta=float(field_value(f"{arch}.rope.freq_base", 10000.0)),
        rms_norm_eps=float(field_value(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)),
        max_position_embeddings=int(field_value(f"{arch}.context_length", 2048)),
        weights=weights, tokenizer=tok, name=os.path.basename(path), quant=quant)


def _opt_int(v) -> Optional[int]:
    return None if v is None else int(v)


# ---------------------------------------------------------------------------------------------------- safetensors
_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


def read_safetensors_file(path: str) -> Dict[str, np.ndarray]:
    """Read every tensor of one ``.safetensors`` file as float32 (bf16 is widened exactly)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise CheckpointError(f"{path!r} is truncated (no safetensors header)")
        (n,) = struct.unpack("<Q", head)
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path!r} has a corrupt safetensors header: {exc}") from exc
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out: Dict[str, np.ndarray] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = _ST_DTYPES.get(meta["dtype"])
        if dtype is None:
            raise CheckpointError(f"{path!r}: tensor {name!r} has dtype {meta['dtype']}, not one of "
                                  f"{sorted(_ST_DTYPES)}")
        start, end = meta["data_offsets"]
        if end > data.size:
            raise CheckpointError(f"{path!r} is truncated: tensor {name!r} ends at {end}, data holds {data.size}")
        raw = np.frombuffer(data[start:end], dtype=dtype).reshape(meta["shape"])
        if meta["dtype"] == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        out[name] = np.ascontiguousarray(raw, dtype=np.float32)
    return out


def read_safetensors(path: str) -> Checkpoint:
    """Read a Hugging Face checkpoint: a folder with ``config.json`` (+ ``tokenizer.json``) and safetensors."""
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    cfg_path = os.path.join(folder, "config.json")
    if not os.path.isfile(cfg_path):
        raise CheckpointError(f"{folder!r} has no config.json next to the safetensors weights")
    with open(cfg_path) as f:
        cfg = json.load(f)
    model_type = cfg.get("model_type", "")
    if model_type not in ARCHITECTURES:
        raise CheckpointError(f"{cfg_path}: model_type {model_type!r} is not supported (supported: "
                              f"{list(ARCHITECTURES)})")
    files = [path] if not os.path.isdir(path) else sorted(
        os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".safetensors"))
    if not files:
        raise CheckpointError(f"{folder!r} holds no .safetensors file")
    weights: Dict[str, np.ndarray] = {}
    for f in files:
        weights.update(read_safetensors_file(f))
    n_head = int(cfg["num_attention_heads"])
    hidden = int(cfg["hidden_size"])
    tok = _hf_tokenizer(folder)
    return Checkpoint(
        architecture=model_type, num_layers=int(cfg["num_hidden_layers"]), hidden_size=hidden,
        intermediate_size=int(cfg["intermediate_size"]), num_heads=n_head,
        num_kv_heads=int(cfg.get("num_key_value_heads", n_head)), head_dim=int(cfg.get("head_dim") or hidden // n_head),
        vocab_size=int(cfg["vocab_size"]), rope_theta=float(cfg.get("rope_theta", 10000.0)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)), weights=weights, tokenizer=tok,
        name=os.path.basename(os.path.normpath(folder)))


def _hf_tokenizer(folder: str) -> Optional[TokenizerData]:
    """Tokenizer data of a Hugging Face folder (``tokenizer.json`` BPE), or None when it has none."""
    tj = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(tj):
        return None
    with open(tj) as f:
        doc = json.load(f)
    model = doc.get("model", {})
    if model.get("type") != "BPE":
        raise CheckpointError(f"{tj}: tokenizer model {model.get('type')!r} is not supported (BPE only)")
    vocab = model["vocab"]
    tokens = [""] * (max(vocab.values()) + 1)
    for s, i in vocab.items():
        tokens[i] = s
    special = []
    for added in doc.get("added_tokens", []):
        i = int(added["id"])
        if i >= len(tokens):
            tokens.extend([""] * (i + 1 - len(tokens)))
        tokens[i] = added["content"]
        if added.get("special"):
            special.append(added["content"])
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    template, bos, eos = "", None, None
    tc = os.path.join(folder, "tokenizer_config.json")
    if os.path.isfile(tc):
        with open(tc) as f:
            tcfg = json.load(f)
        template = tcfg.get("chat_template") or ""
        ids = {s: i for i, s in enumerate(tokens)}
        bos = ids.get(_token_text(tcfg.get("bos_token")))
        eos = ids.get(_token_text(tcfg.get("eos_token")))
    return TokenizerData(tokens=tokens, merges=merges, special=special, bos_id=bos, eos_id=eos,
                         chat_template=template if isinstance(template, str) else "")


def _token_text(value) -> Optional[str]:
    if isinstance(value, dict):
        return value.get("content")
    return value
