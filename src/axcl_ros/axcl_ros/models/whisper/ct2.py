"""Reader for CTranslate2 ``model.bin`` files (Whisper specs), numpy only.

File layout (little-endian): ``u32 binary_version``, string ``spec`` name, ``u32 spec_revision``, ``u32 n_vars``,
then per variable: string ``name``, ``u8 rank``, ``u32 dims[rank]``, ``u8 dtype``, ``u32 nbytes``, raw data; then
``u32 n_aliases`` and ``(alias, target)`` string pairs. A string is ``u16 length`` + bytes (with a trailing NUL).
dtype codes: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np

__all__ = ["Ct2FormatError", "Ct2Model", "WhisperCt2Dims", "read_ct2_model", "whisper_dims"]


class Ct2FormatError(ValueError):
    """The file is not a CTranslate2 model this reader understands (the message says what was found)."""


_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


@dataclass
class Ct2Model:
    """Variables of a CTranslate2 model; float tensors are float32 numpy arrays, scalars are numpy 0-d arrays."""

    spec: str
    revision: int
    binary_version: int
    variables: Dict[str, np.ndarray]
    aliases: Dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        name = self.aliases.get(name, name)
        try:
            return self.variables[name]
        except KeyError:
            raise KeyError(f"CT2 variable {name!r} not found in the {self.spec} model") from None

    def __contains__(self, name: str) -> bool:
        return self.aliases.get(name, name) in self.variables

    def scalar(self, name: str) -> int:
        """Integer value of a 0-d variable such as ``encoder/num_heads``."""
        return int(np.asarray(self[name]).reshape(-1)[0])


class _Cursor:
    def __init__(self, buf: memoryview, path: Path):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            raise Ct2FormatError(f"{self.path}: truncated at byte {self.pos} (wanted {n} more, size {len(self.buf)})")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> Tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def string(self) -> str:
        (n,) = self.unpack("<H")
        return bytes(self.take(n)).rstrip(b"\0").decode("utf-8", errors="replace")


def _to_float32(raw: np.ndarray, code: int) -> np.ndarray:
    if code == 5:  # bfloat16: the upper half of a float32
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32)


def read_ct2_model(path: Union[str, Path]) -> Ct2Model:
    """Read a CTranslate2 ``model.bin`` (or the directory holding it).

    Float tensors (f16, bf16, f32) come back as float32; integer tensors keep their dtype. int8-quantised weights
    (a ``*_scale`` companion) are refused with :class:`Ct2FormatError`, because their dequantisation is not exact.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise Ct2FormatError(f"{path} does not exist")
    data = path.read_bytes()
    cur = _Cursor(memoryview(data), path)
    (version,) = cur.unpack("<I")
    if version < 5 or version > 6:
        raise Ct2FormatError(f"{path}: CTranslate2 binary version {version} not supported (expected 5 or 6)")
    spec = cur.string()
    (revision,) = cur.unpack("<I")
    (n_vars,) = cur.unpack("<I")
    variables: Dict[str, np.ndarray] = {}
    for _ in range(n_vars):
        name = cur.string()
        (rank,) = cur.unpack("<B")
        dims = cur.unpack(f"<{rank}I") if rank else ()
        (code,) = cur.unpack("<B")
        (nbytes,) = cur.unpack("<I")
        if code not in _DTYPES:
            raise Ct2FormatError(f"{path}: variable {name!r} has unknown dtype code {code}")
        raw_dtype = np.uint16 if code == 5 else _DTYPES[code]
        raw = np.frombuffer(cur.take(nbytes), dtype=raw_dtype)
        if raw.size != int(np.prod(dims, dtype=np.int64)):
            raise Ct2FormatError(f"{path}: variable {name!r} dims {dims} do not match its {nbytes} bytes")
        raw = raw.reshape(dims)
        variables[name] = _to_float32(raw, code) if code in (0, 4, 5) else raw.copy()
    aliases: Dict[str, str] = {}
    if cur.pos < len(cur.buf):
        (n_alias,) = cur.unpack("<I")
        for _ in range(n_alias):
            alias = cur.string()
            aliases[alias] = cur.string()
    scaled = sorted(n for n in variables if n.endswith("_scale"))
    if scaled:
        raise Ct2FormatError(f"{path}: quantised weights ({scaled[0]} …) are not supported; convert with "
                             "ct2-transformers-converter --quantization float16 or float32")
    return Ct2Model(spec=spec, revision=revision, binary_version=version, variables=variables, aliases=aliases)


@dataclass(frozen=True)
class WhisperCt2Dims:
    """Whisper dimensions read from the CT2 variables (OpenAI ``ModelDimensions`` names)."""

    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int


def _count_layers(model: Ct2Model, prefix: str) -> int:
    pattern = re.compile(rf"^{prefix}/layer_(\d+)/")
    found = {int(m.group(1)) for n in model.variables if (m := pattern.match(n))}
    if not found or found != set(range(len(found))):
        raise Ct2FormatError(f"{prefix}: layer indices {sorted(found)} are not 0..N-1")
    return len(found)


def whisper_dims(model: Ct2Model) -> WhisperCt2Dims:
    """Dimensions of a CT2 ``WhisperSpec`` model; raises :class:`Ct2FormatError` for other specs."""
    if model.spec != "WhisperSpec":
        raise Ct2FormatError(f"expected a WhisperSpec model, found {model.spec!r}")
    try:
        conv1 = model["encoder/conv1/weight"]
        enc_pos = model["encoder/position_encodings/encodings"]
        emb = model["decoder/embeddings/weight"]
        dec_pos = model["decoder/position_encodings/encodings"]
        return WhisperCt2Dims(
            n_mels=int(conv1.shape[1]),
            n_audio_ctx=int(enc_pos.shape[0]),
            n_audio_state=int(conv1.shape[0]),
            n_audio_head=model.scalar("encoder/num_heads"),
            n_audio_layer=_count_layers(model, "encoder"),
            n_vocab=int(emb.shape[0]),
            n_text_ctx=int(dec_pos.shape[0]),
            n_text_state=int(emb.shape[1]),
            n_text_head=model.scalar("decoder/num_heads"),
            n_text_layer=_count_layers(model, "decoder"),
        )
    except KeyError as exc:
        raise Ct2FormatError(f"Whisper variable missing: {exc}") from None
