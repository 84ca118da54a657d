"""Convert a CTranslate2 Whisper model directory into AXERA "schema B" ONNX files, with numpy + onnx.helper only.

Output folder:

* ``encoder.onnx``: ``mel f32[1,n_mels,3000]`` → ``cross_k``, ``cross_v`` ``f32[L,1,1500,D]`` (the encoder, then each
  decoder layer's cross-attention key / value projections of the audio features).
* ``decoder.onnx``: ``tokens i32[1,1]``, ``self_k``, ``self_v`` ``f32[L,1,448,D]``, ``cross_k``, ``cross_v``,
  ``offset i32[1]``, ``mask i32[448]`` (1 = masked) → ``logits f32[1,1,V]``, ``this_self_k``, ``this_self_v``
  ``f32[L,1,1,D]``. One token per call; the positional embedding is gathered by ``offset``; cached positions come
  from ``self_k/self_v`` where ``mask == 0`` and the current token attends to itself through a separate term.
* ``config.json`` (AXERA ``{t}_config.json`` keys, see :mod:`.config`) and the source's ``tokenizer.json``.

Weights are stored as float32 (CT2's float16 values are exactly representable). Opset 17, IR version 8.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .config import WhisperConfig
from .ct2 import Ct2Model, read_ct2_model, whisper_dims
from .tokenizer import WhisperTokenizer

__all__ = ["CONVERTER_VERSION", "ExportError", "convert_ct2_to_onnx", "build_encoder", "build_decoder"]

#: bumped whenever the produced graphs change (lets caches of converted models be invalidated)
CONVERTER_VERSION = 1
OPSET = 17
IR_VERSION = 8
LN_EPS = 1e-5
MASK_FILL = -1e9
_EXTERNAL_DATA_LIMIT = 1_800_000_000  # protobuf files must stay < 2 GiB

ProgressFn = Optional[Callable[[str], None]]


class ExportError(ValueError):
    """The source model cannot be converted (the message says what was found)."""


class _Graph:
    """Small helper around onnx.helper: unique names, initialisers, common Whisper blocks."""

    def __init__(self) -> None:
        self.nodes: List[onnx.NodeProto] = []
        self.inits: List[onnx.TensorProto] = []
        self._n = 0
        self._consts: Dict[tuple, str] = {}

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def init(self, hint: str, array: np.ndarray) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def ints(self, values: Sequence[int]) -> str:
        key = ("i64", tuple(int(v) for v in values))
        if key not in self._consts:
            self._consts[key] = self.init("shape", np.asarray(values, dtype=np.int64))
        return self._consts[key]

    def scalar(self, value: float) -> str:
        key = ("f32", float(value))
        if key not in self._consts:
            self._consts[key] = self.init("c", np.asarray(value, dtype=np.float32))
        return self._consts[key]

    def op(self, op_type: str, inputs: Sequence[str], n_out: int = 1, out: Optional[Sequence[str]] = None,
           **attrs) -> Union[str, List[str]]:
        outs = list(out) if out else [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.name(op_type), **attrs))
        return outs[0] if len(outs) == 1 else outs

    # ------------------------------------------------------------------ blocks
    def linear(self, x: str, weight: np.ndarray, bias: Optional[np.ndarray], hint: str) -> str:
        """``x @ weight.T + bias`` (CT2/PyTorch weight layout ``[out, in]``)."""
        y = self.op("MatMul", [x, self.init(f"{hint}_w", weight.T.astype(np.float32))])
        if bias is not None:
            y = self.op("Add", [y, self.init(f"{hint}_b", bias.astype(np.float32))])
        return y

    def layer_norm(self, x: str, gamma: np.ndarray, beta: np.ndarray, hint: str) -> str:
        return self.op("LayerNormalization", [x, self.init(f"{hint}_g", gamma), self.init(f"{hint}_b", beta)],
                       axis=-1, epsilon=LN_EPS)

    def gelu(self, x: str) -> str:
        """Exact GELU ``0.5·x·(1 + erf(x/√2))`` (opset 17 has no Gelu op; onnxruntime fuses this pattern)."""
        e = self.op("Erf", [self.op("Div", [x, self.scalar(np.sqrt(2.0))])])
        return self.op("Mul", [self.op("Mul", [x, self.scalar(0.5)]), self.op("Add", [e, self.scalar(1.0)])])

    def heads(self, x: str, n_head: int, head_dim: int, seq: int, perm: Sequence[int]) -> str:
        """``[1, seq, D]`` → ``[1, seq, H, dh]`` → transpose ``perm``."""
        return self.op("Transpose", [self.op("Reshape", [x, self.ints([1, seq, n_head, head_dim])])],
                       perm=list(perm))

    def merge_heads(self, x: str, seq: int, d_model: int) -> str:
        """``[1, H, seq, dh]`` → ``[1, seq, D]``."""
        return self.op("Reshape", [self.op("Transpose", [x], perm=[0, 2, 1, 3]), self.ints([1, seq, d_model])])

    def ffn(self, x: str, m: Ct2Model, prefix: str) -> str:
        h = self.layer_norm(x, m[f"{prefix}/ffn/layer_norm/gamma"], m[f"{prefix}/ffn/layer_norm/beta"], "ffn_ln")
        h = self.gelu(self.linear(h, m[f"{prefix}/ffn/linear_0/weight"], _get(m, f"{prefix}/ffn/linear_0/bias"),
                                  "fc1"))
        h = self.linear(h, m[f"{prefix}/ffn/linear_1/weight"], _get(m, f"{prefix}/ffn/linear_1/bias"), "fc2")
        return self.op("Add", [x, h])

    def model(self, name: str, inputs, outputs, doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="axcl_ros",
                                  producer_version=str(CONVERTER_VERSION), doc_string=doc)
        model.ir_version = IR_VERSION
        return model


def _get(m: Ct2Model, name: str) -> Optional[np.ndarray]:
    return m[name] if name in m else None


def build_encoder(m: Ct2Model, progress: ProgressFn = None) -> onnx.ModelProto:
    """Encoder graph: conv front end, transformer, ``ln_post``, stacked cross-attention K/V of every decoder layer."""
    dims = whisper_dims(m)
    d, n_head, n_ctx = dims.n_audio_state, dims.n_audio_head, dims.n_audio_ctx
    dh = d // n_head
    n_frames = 2 * n_ctx
    g = _Graph()
    x = g.op("Conv", ["mel", g.init("conv1_w", m["encoder/conv1/weight"]), g.init("conv1_b", m["encoder/conv1/bias"])],
             kernel_shape=[3], pads=[1, 1], strides=[1])
    x = g.gelu(x)
    x = g.op("Conv", [x, g.init("conv2_w", m["encoder/conv2/weight"]), g.init("conv2_b", m["encoder/conv2/bias"])],
             kernel_shape=[3], pads=[1, 1], strides=[2])
    x = g.gelu(x)
    x = g.op("Transpose", [x], perm=[0, 2, 1])
    x = g.op("Add", [x, g.init("enc_pos", m["encoder/position_encodings/encodings"])])
    scale = g.scalar(1.0 / np.sqrt(dh))
    for i in range(dims.n_audio_layer):
        if progress:
            progress(f"encoder layer {i + 1}/{dims.n_audio_layer}")
        p = f"encoder/layer_{i}"
        h = g.layer_norm(x, m[f"{p}/self_attention/layer_norm/gamma"], m[f"{p}/self_attention/layer_norm/beta"],
                         "attn_ln")
        qkv = g.linear(h, m[f"{p}/self_attention/linear_0/weight"], _get(m, f"{p}/self_attention/linear_0/bias"),
                       "qkv")
        q, k, v = g.op("Split", [qkv, g.ints([d, d, d])], n_out=3, axis=-1)
        q = g.op("Mul", [g.heads(q, n_head, dh, n_ctx, [0, 2, 1, 3]), scale])
        k = g.heads(k, n_head, dh, n_ctx, [0, 2, 3, 1])
        v = g.heads(v, n_head, dh, n_ctx, [0, 2, 1, 3])
        w = g.op("Softmax", [g.op("MatMul", [q, k])], axis=-1)
        o = g.merge_heads(g.op("MatMul", [w, v]), n_ctx, d)
        o = g.linear(o, m[f"{p}/self_attention/linear_1/weight"], _get(m, f"{p}/self_attention/linear_1/bias"),
                     "attn_out")
        x = g.op("Add", [x, o])
        x = g.ffn(x, m, p)
    x = g.layer_norm(x, m["encoder/layer_norm/gamma"], m["encoder/layer_norm/beta"], "ln_post")
    # all decoder layers' cross K/V in one MatMul: columns ordered (layer, k|v, d)
    n_layer = dims.n_text_layer
    ws, bs = [], []
    for i in range(n_layer):
        w = m[f"decoder/layer_{i}/attention/linear_1/weight"]  # [2D, D]: key rows then value rows
        b = _get(m, f"decoder/layer_{i}/attention/linear_1/bias")
        ws.append(w)
        bs.append(b if b is not None else np.zeros(w.shape[0], np.float32))
    kv = g.linear(x, np.concatenate(ws, axis=0), np.concatenate(bs), "cross_kv")  # [1, T, L*2*D]
    kv = g.op("Reshape", [kv, g.ints([n_ctx, n_layer, 2, d])])
    kv = g.op("Transpose", [kv], perm=[2, 1, 0, 3])  # [2, L, T, D]
    ck, cv = g.op("Split", [kv, g.ints([1, 1])], n_out=2, axis=0)
    g.op("Reshape", [ck, g.ints([n_layer, 1, n_ctx, d])], out=["cross_k"])
    g.op("Reshape", [cv, g.ints([n_layer, 1, n_ctx, d])], out=["cross_v"])
    f32 = TensorProto.FLOAT
    return g.model(
        "whisper_encoder",
        [helper.make_tensor_value_info("mel", f32, [1, dims.n_mels, n_frames])],
        [helper.make_tensor_value_info("cross_k", f32, [n_layer, 1, n_ctx, d]),
         helper.make_tensor_value_info("cross_v", f32, [n_layer, 1, n_ctx, d])],
        "Whisper encoder + cross-attention K/V (schema B)")


def build_decoder(m: Ct2Model, progress: ProgressFn = None) -> onnx.ModelProto:
    """Single-token decoder graph of schema B (see the module docstring for the signature)."""
    dims = whisper_dims(m)
    d, n_head, n_ctx, n_audio = dims.n_text_state, dims.n_text_head, dims.n_text_ctx, dims.n_audio_ctx
    n_layer, n_vocab = dims.n_text_layer, dims.n_vocab
    dh = d // n_head
    g = _Graph()
    emb = m["decoder/embeddings/weight"]
    emb_name = g.init("tok_emb", emb)
    x = g.op("Gather", [emb_name, "tokens"], axis=0)  # [1,1,D]
    pos = g.op("Gather", [g.init("dec_pos", m["decoder/position_encodings/encodings"]), "offset"], axis=0)  # [1,D]
    x = g.op("Add", [x, pos])
    masked = g.op("Reshape", [g.op("Cast", ["mask"], to=TensorProto.BOOL), g.ints([1, 1, 1, n_ctx])])
    scale = g.scalar(1.0 / np.sqrt(dh))
    fill = g.scalar(MASK_FILL)
    this_k, this_v = [], []
    for i in range(n_layer):
        if progress:
            progress(f"decoder layer {i + 1}/{n_layer}")
        p = f"decoder/layer_{i}"
        layer = g.init("layer", np.asarray(i, dtype=np.int64))
        # ---- self attention over the cache + the current token
        h = g.layer_norm(x, m[f"{p}/self_attention/layer_norm/gamma"], m[f"{p}/self_attention/layer_norm/beta"],
                         "attn_ln")
        qkv = g.linear(h, m[f"{p}/self_attention/linear_0/weight"], _get(m, f"{p}/self_attention/linear_0/bias"),
                       "qkv")
        q, k, v = g.op("Split", [qkv, g.ints([d, d, d])], n_out=3, axis=-1)  # each [1,1,D]
        this_k.append(k)
        this_v.append(v)
        qh = g.op("Mul", [g.heads(q, n_head, dh, 1, [0, 2, 1, 3]), scale])  # [1,H,1,dh]
        kh = g.op("Reshape", [k, g.ints([1, n_head, dh, 1])])
        vh = g.op("Reshape", [v, g.ints([1, n_head, 1, dh])])
        ck = g.heads(g.op("Gather", ["self_k", layer], axis=0), n_head, dh, n_ctx, [0, 2, 3, 1])  # [1,H,dh,448]
        cv = g.heads(g.op("Gather", ["self_v", layer], axis=0), n_head, dh, n_ctx, [0, 2, 1, 3])  # [1,H,448,dh]
        s_cache = g.op("Where", [masked, fill, g.op("MatMul", [qh, ck])])  # [1,H,1,448]
        s_self = g.op("MatMul", [qh, kh])  # [1,H,1,1]
        w = g.op("Softmax", [g.op("Concat", [s_cache, s_self], axis=-1)], axis=-1)
        w_cache, w_self = g.op("Split", [w, g.ints([n_ctx, 1])], n_out=2, axis=-1)
        o = g.op("Add", [g.op("MatMul", [w_cache, cv]), g.op("MatMul", [w_self, vh])])  # [1,H,1,dh]
        o = g.linear(g.merge_heads(o, 1, d), m[f"{p}/self_attention/linear_1/weight"],
                     _get(m, f"{p}/self_attention/linear_1/bias"), "attn_out")
        x = g.op("Add", [x, o])
        # ---- cross attention over the encoder's K/V
        h = g.layer_norm(x, m[f"{p}/attention/layer_norm/gamma"], m[f"{p}/attention/layer_norm/beta"], "xattn_ln")
        q = g.linear(h, m[f"{p}/attention/linear_0/weight"], _get(m, f"{p}/attention/linear_0/bias"), "xq")
        qh = g.op("Mul", [g.heads(q, n_head, dh, 1, [0, 2, 1, 3]), scale])
        xk = g.heads(g.op("Gather", ["cross_k", layer], axis=0), n_head, dh, n_audio, [0, 2, 3, 1])
        xv = g.heads(g.op("Gather", ["cross_v", layer], axis=0), n_head, dh, n_audio, [0, 2, 1, 3])
        w = g.op("Softmax", [g.op("MatMul", [qh, xk])], axis=-1)
        o = g.merge_heads(g.op("MatMul", [w, xv]), 1, d)
        o = g.linear(o, m[f"{p}/attention/linear_2/weight"], _get(m, f"{p}/attention/linear_2/bias"), "xattn_out")
        x = g.op("Add", [x, o])
        x = g.ffn(x, m, p)
    x = g.layer_norm(x, m["decoder/layer_norm/gamma"], m["decoder/layer_norm/beta"], "ln")
    x = g.op("Reshape", [x, g.ints([1, d])])
    proj = emb_name
    if "decoder/projection/weight" in m and m.aliases.get("decoder/projection/weight") != "decoder/embeddings/weight":
        proj = g.init("proj", m["decoder/projection/weight"])
    logits = g.op("Gemm", [x, proj], transB=1)  # [1,V]
    g.op("Reshape", [logits, g.ints([1, 1, n_vocab])], out=["logits"])
    zero = g.ints([0])
    g.op("Concat", [g.op("Unsqueeze", [k, zero]) for k in this_k], out=["this_self_k"], axis=0)
    g.op("Concat", [g.op("Unsqueeze", [v, zero]) for v in this_v], out=["this_self_v"], axis=0)
    f32, i32 = TensorProto.FLOAT, TensorProto.INT32
    inputs = [
        helper.make_tensor_value_info("tokens", i32, [1, 1]),
        helper.make_tensor_value_info("self_k", f32, [n_layer, 1, n_ctx, d]),
        helper.make_tensor_value_info("self_v", f32, [n_layer, 1, n_ctx, d]),
        helper.make_tensor_value_info("cross_k", f32, [n_layer, 1, n_audio, d]),
        helper.make_tensor_value_info("cross_v", f32, [n_layer, 1, n_audio, d]),
        helper.make_tensor_value_info("offset", i32, [1]),
        helper.make_tensor_value_info("mask", i32, [n_ctx]),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", f32, [1, 1, n_vocab]),
        helper.make_tensor_value_info("this_self_k", f32, [n_layer, 1, 1, d]),
        helper.make_tensor_value_info("this_self_v", f32, [n_layer, 1, 1, d]),
    ]
    return g.model("whisper_decoder", inputs, outputs, "Whisper single-token decoder with external KV cache (schema B)")


def _save(model: onnx.ModelProto, path: Path) -> None:
    size = sum(len(t.raw_data) for t in model.graph.initializer)
    if size > _EXTERNAL_DATA_LIMIT:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))


def _config_json(m: Ct2Model, tokenizer: Optional[WhisperTokenizer]) -> dict:
    cfg = WhisperConfig.from_ct2(m).to_dict()
    if tokenizer is not None:
        seq = tokenizer.sot_sequence("en", "transcribe", timestamps=True)
        cfg.update({
            "sot_sequence": seq, "all_language_tokens": list(tokenizer.all_language_tokens),
            "all_language_codes": list(tokenizer.all_language_codes), "sot": tokenizer.sot,
            "sot_index": seq.index(tokenizer.sot), "eot": tokenizer.eot, "blank_id": tokenizer.blank,
            "is_multilingual": int(tokenizer.is_multilingual), "no_speech": tokenizer.no_speech,
            "non_speech_tokens": list(tokenizer.non_speech_tokens), "transcribe": tokenizer.transcribe,
            "translate": tokenizer.translate, "sot_prev": tokenizer.sot_prev, "sot_lm": tokenizer.sot_lm,
            "no_timestamps": tokenizer.no_timestamps,
        })
    cfg["converter"] = {"name": "axcl_ros.models.whisper.export_onnx", "version": CONVERTER_VERSION,
                        "schema": "B"}
    return cfg


def convert_ct2_to_onnx(src_dir: Union[str, Path], dst_dir: Union[str, Path], *,
                        progress: ProgressFn = None) -> Path:
    """Convert the CTranslate2 Whisper directory ``src_dir`` (``model.bin``, ``tokenizer.json``) to schema-B ONNX.

    Writes ``encoder.onnx``, ``decoder.onnx``, ``config.json`` and a copy of ``tokenizer.json`` into ``dst_dir``
    (created if needed) and returns ``dst_dir``. ``progress`` gets short human-readable messages. Raises
    :class:`ExportError` (or :class:`~.ct2.Ct2FormatError`) when the source is not a usable Whisper model.
    """
    src, dst = Path(src_dir), Path(dst_dir)
    say = progress or (lambda _msg: None)
    if not (src / "model.bin").is_file():
        raise ExportError(f"{src}: no model.bin (expected a CTranslate2 Whisper directory)")
    t0 = time.perf_counter()
    say(f"reading {src / 'model.bin'}")
    m = read_ct2_model(src / "model.bin")
    dims = whisper_dims(m)
    if dims.n_audio_state != dims.n_text_state:
        raise ExportError(f"audio and text widths differ ({dims.n_audio_state} vs {dims.n_text_state})")
    tokenizer = None
    if (src / "tokenizer.json").is_file():
        tokenizer = WhisperTokenizer.from_hf_json(src / "tokenizer.json", n_vocab=dims.n_vocab)
    dst.mkdir(parents=True, exist_ok=True)
    say("building encoder")
    enc = build_encoder(m, progress)
    say("writing encoder.onnx")
    _save(enc, dst / "encoder.onnx")
    del enc
    say("building decoder")
    dec = build_decoder(m, progress)
    say("writing decoder.onnx")
    _save(dec, dst / "decoder.onnx")
    del dec
    if tokenizer is not None:
        shutil.copyfile(src / "tokenizer.json", dst / "tokenizer.json")
    (dst / "config.json").write_text(json.dumps(_config_json(m, tokenizer), indent=1))
    say(f"done in {time.perf_counter() - t0:.1f} s")
    return dst


def cached_conversion(src_dir: Union[str, Path], name: str, *, cache: Optional[Union[str, Path]] = None,
                      progress: ProgressFn = None) -> Path:
    """Schema-B ONNX of the CTranslate2 model in ``src_dir``, converted once into the cache and reused.

    The cache folder (default :func:`axcl_ros.assets.cache_dir`) is keyed by ``name``, the converter version and
    ``model.bin``'s size and mtime; a conversion is written to a temporary folder and renamed, so concurrent callers
    never see half a model.
    """
    import os

    from ...assets import cache_dir

    src = Path(src_dir)
    st = (src / "model.bin").stat()
    root = Path(cache) if cache is not None else cache_dir()
    dst = root / f"whisper-{name}-onnx-v{CONVERTER_VERSION}-{st.st_size}-{st.st_mtime_ns}"
    if all((dst / f).is_file() for f in ("config.json", "encoder.onnx", "decoder.onnx", "tokenizer.json")):
        return dst
    tmp = dst.with_name(f"{dst.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    convert_ct2_to_onnx(src, tmp, progress=progress)
    try:
        tmp.rename(dst)
    except OSError:  # another process finished the same conversion first
        shutil.rmtree(tmp, ignore_errors=True)
    return dst
