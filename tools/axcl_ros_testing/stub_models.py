"""Writers of model files for the AXCL stub runtime (``axcl_stub/axcl_stub.c``), and what they compute.

A stub model is a small text file (never an axmodel)::

    AXCLSTUB 1
    op yolo                      # copy | affine | yolo | depth | whisper_encoder | whisper_decoder
    cores 1                      # NPU cores the "compiled" model needs (1..3)
    param score 0.9              # numeric parameters of the operation
    ints seq 5 6 7               # integer list (whisper decoder token sequence)
    input images 4 1 4 1 640 640 3        # name, DataType enum, DataLayout enum, ndim, dims... [pad=N]
    output /model.23/Concat_output_0 15 1 4 1 80 80 144
    groups 2                     # optional: shape groups (AXERA's prefill/decode groups)
    shape 1 input images 4 1 320 320 3    # group g >= 1 dims of a declared tensor (others keep group 0's)
    end

The operations are deterministic functions of the inputs (documented per writer below) so tests can check every
value that crosses the binding. The ``expected_*`` helpers compute the same values in numpy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

PathLike = Union[str, os.PathLike]

#: numpy dtype → AXCL ``axclrtEngineDataType`` value (documented enum)
DTYPE_CODES: Dict[np.dtype, int] = {
    np.dtype(np.int8): 3, np.dtype(np.uint8): 4, np.dtype(np.int16): 5, np.dtype(np.uint16): 6,
    np.dtype(np.int32): 7, np.dtype(np.uint32): 8, np.dtype(np.int64): 9, np.dtype(np.uint64): 10,
    np.dtype(np.float16): 13, np.dtype(np.float32): 15, np.dtype(np.float64): 16,
}
#: extra dtype names without a numpy equivalent
EXTRA_DTYPE_CODES = {"int4": 1, "uint4": 2, "fp4": 11, "fp8": 12, "bf16": 14}
#: layout name → ``axclrtEngineDataLayout`` value
LAYOUT_CODES = {"": 0, "NHWC": 1, "NCHW": 2}

OPS = ("copy", "affine", "yolo", "depth", "whisper_encoder", "whisper_decoder", "llm_layer", "llm_post", "vit")


@dataclass(frozen=True)
class StubTensor:
    """One declared tensor: ``dtype`` is a numpy dtype (or one of ``int4 uint4 fp4 fp8 bf16``); ``pad`` adds bytes
    to the size the runtime reports for it (tests that the binding allocates the reported size)."""

    name: str
    shape: Tuple[int, ...]
    dtype: Union[str, np.dtype, type] = np.float32
    layout: str = ""
    pad: int = 0

    def line(self, kind: str) -> str:
        """The ``input``/``output`` line of this tensor."""
        if isinstance(self.dtype, str) and self.dtype in EXTRA_DTYPE_CODES:
            code = EXTRA_DTYPE_CODES[self.dtype]
        else:
            code = DTYPE_CODES.get(np.dtype(self.dtype))
            if code is None:
                raise ValueError(f"tensor {self.name!r}: dtype {self.dtype!r} has no AXCL DataType code")
        if self.layout not in LAYOUT_CODES:
            raise ValueError(f"tensor {self.name!r}: layout {self.layout!r} not in {list(LAYOUT_CODES)}")
        if any(" " in c for c in self.name) or not self.name:
            raise ValueError(f"tensor name {self.name!r} must be non-empty without spaces")
        dims = " ".join(str(int(d)) for d in self.shape)
        pad = f" pad={int(self.pad)}" if self.pad else ""
        return f"{kind} {self.name} {code} {LAYOUT_CODES[self.layout]} {len(self.shape)} {dims}{pad}"


def write_stub_model(path: PathLike, op: str, inputs: Sequence[StubTensor], outputs: Sequence[StubTensor],
                     params: Optional[Mapping[str, float]] = None, ints: Iterable[int] = (), cores: int = 1,
                     groups: Sequence[Mapping[str, Tuple[int, ...]]] = ()) -> Path:
    """Write a stub model file and return its path (parent folders are created).

    ``groups`` adds shape groups 1…len(groups): each maps a declared tensor name to its dims in that group (tensors
    not named keep group 0's dims, i.e. the ``inputs``/``outputs`` shapes).
    """
    if op not in OPS:
        raise ValueError(f"op {op!r} not in {OPS}")
    lines = ["AXCLSTUB 1", f"op {op}", f"cores {int(cores)}"]
    lines += [f"param {k} {float(v)!r}" for k, v in (params or {}).items()]
    ints = [int(i) for i in ints]
    if ints:
        lines.append("ints seq " + " ".join(str(i) for i in ints))
    lines += [t.line("input") for t in inputs]
    lines += [t.line("output") for t in outputs]
    if groups:
        lines.append(f"groups {len(groups) + 1}")
        kinds = {t.name: "input" for t in inputs}
        kinds.update({t.name: "output" for t in outputs if t.name not in kinds})
        for g, dims in enumerate(groups, start=1):
            for name, shape in dims.items():
                if name not in kinds:
                    raise ValueError(f"group {g}: {name!r} is not a declared tensor")
                lines.append(f"shape {g} {kinds[name]} {name} {len(shape)} " + " ".join(str(int(d)) for d in shape))
    lines.append("end")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------------------------------
# image models
# ---------------------------------------------------------------------------------------------------------------------
YOLO_HEAD_NAMES = ("/model.23/Concat_output_0", "/model.23/Concat_1_output_0", "/model.23/Concat_2_output_0")


@dataclass(frozen=True)
class YoloStubBox:
    """The one detection a YOLO stub emits: class, score, and the box in input-tensor pixels (x0, y0, x1, y1)."""

    class_id: int
    score: float
    box: Tuple[float, float, float, float]


def yolo11_stub(path: PathLike, size: int = 640, classes: int = 80, reg_max: int = 16, head: int = 1,
                score: float = 0.9, ltrb: Tuple[int, int, int, int] = (2, 3, 4, 5), cores: int = 3,
                delay_us: int = 0, exec_us: int = 0) -> Path:
    """YOLO11 stand-in: uint8 NHWC ``images [1,size,size,3]`` → 3 fp32 NHWC heads ``[1,g,g,4*reg_max+classes]``.

    Every cell has DFL logits 0 and class logits −12, except the centre cell ``(g//2, g//2)`` of head ``head``:
    class ``floor(mean of all input bytes) % classes`` with logit ``logit(score)``, and each side k's DFL logits
    12 at bin ``ltrb[k]`` (distances in stride units). :func:`expected_yolo_box` gives the decoded box.
    """
    heads = [StubTensor(YOLO_HEAD_NAMES[i] if i < 3 else f"head{i}", (1, size // s, size // s, 4 * reg_max + classes),
                        np.float32, "NHWC") for i, s in enumerate((8, 16, 32))]
    params = {"reg_max": reg_max, "head": head, "score": score, "left": ltrb[0], "top": ltrb[1], "right": ltrb[2],
              "bottom": ltrb[3], "delay_us": delay_us}
    if exec_us:
        params["exec_us"] = exec_us  # NPU time under the stub's link model (AXCL_STUB_LINK)
    return write_stub_model(path, "yolo", [StubTensor("images", (1, size, size, 3), np.uint8, "NHWC")], heads,
                            params, cores=cores)


def expected_yolo_box(images: np.ndarray, size: int = 640, classes: int = 80, head: int = 1, score: float = 0.9,
                      ltrb: Tuple[int, int, int, int] = (2, 3, 4, 5)) -> YoloStubBox:
    """The detection :func:`yolo11_stub` encodes for input ``images`` (decoded with stride ``8·2^head``)."""
    stride = 8 * 2 ** head
    g = size // stride
    cls = int(np.floor(float(np.asarray(images, dtype=np.float64).mean()))) % classes
    cx = (g // 2 + 0.5) * stride
    cy = (g // 2 + 0.5) * stride
    left, top, right, bottom = (d * stride for d in ltrb)
    return YoloStubBox(cls, float(score), (cx - left, cy - top, cx + right, cy + bottom))


def depth_stub(path: PathLike, size: Union[int, Tuple[int, int]] = 518, weights=(0.5, 0.3, 0.2),
               cores: int = 3, delay_us: int = 0) -> Path:
    """Depth-Anything-V2 stand-in: uint8 NHWC ``input [1,H,W,3]`` → fp32 ``output [1,1,H,W]``.

    ``out[y, x] = (w0·c0 + w1·c1 + w2·c2) / 255`` — channel weights differ so a swapped colour order shows.
    """
    h, w = (size, size) if isinstance(size, int) else size
    params = {"w0": weights[0], "w1": weights[1], "w2": weights[2], "delay_us": delay_us}
    return write_stub_model(path, "depth", [StubTensor("input", (1, h, w, 3), np.uint8, "NHWC")],
                            [StubTensor("output", (1, 1, h, w), np.float32, "NCHW")], params, cores=cores)


def expected_depth(image: np.ndarray, weights=(0.5, 0.3, 0.2)) -> np.ndarray:
    """What :func:`depth_stub` outputs for a ``[1,H,W,3]`` (or ``[H,W,3]``) uint8 input, as ``[1,1,H,W]`` fp32."""
    x = np.asarray(image, dtype=np.float32).reshape(-1, *np.asarray(image).shape[-3:])[0]
    w = np.asarray(weights, dtype=np.float32)
    out = (x[..., 0] * w[0] + x[..., 1] * w[1] + x[..., 2] * w[2]) / np.float32(255.0)
    return out[None, None].astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# generic models
# ---------------------------------------------------------------------------------------------------------------------
def copy_stub(path: PathLike, tensors: Sequence[Tuple[str, Tuple[int, ...], object]], cores: int = 1,
              delay_us: int = 0, pad: int = 0) -> Path:
    """Model whose output ``out_<name>`` is a byte copy of input ``<name>`` (any dtype); ``pad`` extra bytes."""
    ins = [StubTensor(n, tuple(s), d, pad=pad) for n, s, d in tensors]
    outs = [StubTensor(f"out_{n}", tuple(s), d, pad=pad) for n, s, d in tensors]
    return write_stub_model(path, "copy", ins, outs, {"delay_us": delay_us}, cores=cores)


def affine_stub(path: PathLike, shape: Tuple[int, ...], a: float = 2.0, b: float = 1.0, in_name: str = "x",
                out_name: str = "y", cores: int = 1) -> Path:
    """fp32 model ``y = a·x + b`` (for chaining tests: bind one model's output as another's input)."""
    return write_stub_model(path, "affine", [StubTensor(in_name, tuple(shape), np.float32)],
                            [StubTensor(out_name, tuple(shape), np.float32)], {"a": a, "b": b}, cores=cores)


# ---------------------------------------------------------------------------------------------------------------------
# Whisper schema B (encoder + one decoder with self/cross K/V inputs)
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WhisperStub:
    """Paths and dimensions of a Whisper schema-B stub pair."""

    encoder: Path
    decoder: Path
    n_mels: int
    n_frames: int
    n_audio_ctx: int
    n_text_layer: int
    n_text_state: int
    n_text_ctx: int
    n_vocab: int
    sequence: Tuple[int, ...]
    eot: int
    bad: int
    sot_sequence: Tuple[int, ...]


def whisper_stub(folder: PathLike, n_mels: int = 80, n_frames: int = 3000, n_audio_ctx: int = 1500,
                 n_text_layer: int = 2, n_text_state: int = 32, n_text_ctx: int = 448, n_vocab: int = 96,
                 sequence: Sequence[int] = (10, 11, 12, 13, 14), eot: Optional[int] = None, bad: int = 1,
                 sot_sequence: Optional[Sequence[int]] = None, cores: int = 3, name: str = "stub") -> WhisperStub:
    """Write ``{name}-encoder.axmodel`` and ``{name}-decoder.axmodel`` (stub format) into ``folder``.

    Encoder: ``mel [1,n_mels,n_frames]`` → ``cross_k``, ``cross_v`` ``[L,1,A,D]``; layer l holds
    ``c_l = 1 + l + floor(64·mean|mel|)/64`` (cross_v = −c_l).

    Decoder inputs ``tokens [1,1] i32, self_k, self_v [L,1,C,D], cross_k, cross_v [L,1,A,D], offset [1] i32,
    mask [C] i32`` → ``logits [1,1,V]``, ``this_self_k/v [L,1,1,D]`` (D ≥ 3). ``this_self_k[l]`` holds
    ``1 + 64·offset + l`` in every element except element 1, which holds ``token`` (``this_self_v`` is the
    negative; :func:`expected_self_kv`). Before answering it checks the state the caller
    keeps on the device: ``mask[p] == (p >= offset)``, cross K/V as the encoder wrote them, and every self K/V
    row ``p < offset`` of every layer equal to some step's ``this_self_*`` for offset p. The winning logit (30;
    others ``−1 − 0.001·j``) is the successor of ``token`` in ``sequence`` (then ``eot``), ``sequence[0]`` for
    tokens not in it, ``eot`` after ``eot`` — or ``bad`` when any check failed.
    """
    folder = Path(folder)
    L, D, C, A, V = n_text_layer, n_text_state, n_text_ctx, n_audio_ctx, n_vocab
    eot = V - 1 if eot is None else int(eot)
    if sot_sequence is None:
        sot_sequence = (V - 5, V - 4, V - 3, V - 2)
    for tok in (*sequence, eot, bad, *sot_sequence):
        if not 0 <= tok < V:
            raise ValueError(f"token {tok} outside the vocabulary 0..{V - 1}")
    enc = write_stub_model(
        folder / f"{name}-encoder.axmodel", "whisper_encoder",
        [StubTensor("mel", (1, n_mels, n_frames), np.float32)],
        [StubTensor("cross_k", (L, 1, A, D), np.float32), StubTensor("cross_v", (L, 1, A, D), np.float32)],
        cores=cores)
    dec = write_stub_model(
        folder / f"{name}-decoder.axmodel", "whisper_decoder",
        [StubTensor("tokens", (1, 1), np.int32), StubTensor("self_k", (L, 1, C, D), np.float32),
         StubTensor("self_v", (L, 1, C, D), np.float32), StubTensor("cross_k", (L, 1, A, D), np.float32),
         StubTensor("cross_v", (L, 1, A, D), np.float32), StubTensor("offset", (1,), np.int32),
         StubTensor("mask", (C,), np.int32)],
        [StubTensor("logits", (1, 1, V), np.float32), StubTensor("this_self_k", (L, 1, 1, D), np.float32),
         StubTensor("this_self_v", (L, 1, 1, D), np.float32)],
        params={"eot": eot, "bad": bad}, ints=sequence, cores=cores)
    return WhisperStub(enc, dec, n_mels, n_frames, A, L, D, C, V, tuple(int(t) for t in sequence), eot, int(bad),
                       tuple(int(t) for t in sot_sequence))


def expected_cross(mel: np.ndarray, n_text_layer: int) -> np.ndarray:
    """Per-layer value ``c_l`` the encoder stub writes into ``cross_k`` for ``mel``."""
    mean = float(np.abs(np.asarray(mel, dtype=np.float64)).mean())
    return np.array([1.0 + layer + np.floor(mean * 64.0) / 64.0 for layer in range(n_text_layer)], dtype=np.float32)


def expected_self_kv(token: int, offset: int, n_text_layer: int, n_text_state: int) -> np.ndarray:
    """``this_self_k`` ``[L,1,1,D]`` the decoder stub writes for (token, offset); ``this_self_v`` is its negative."""
    out = np.empty((n_text_layer, 1, 1, n_text_state), np.float32)
    out[...] = (1 + 64 * offset + np.arange(n_text_layer, dtype=np.float32))[:, None, None, None]
    out[..., 1] = token
    return out
