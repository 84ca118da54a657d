"""Device-agnostic Whisper model runners driven by the host decode loop (:mod:`.decoding`).

:class:`WhisperRunner` is the protocol: ``encode`` once per 30-s window, then ``reset`` and one ``step`` per token
(the SOT prompt first, then each generated token) with ``offset`` = the token's position. Runners here keep every
tensor on the host and work with any :class:`~axcl_ros.runtime.base.Session`:

* :class:`SessionWhisperRunner`: AXERA "schema B" (``encoder`` + single-token ``decoder`` with external KV cache,
  the new AXERA export and :mod:`.export_onnx`'s output).
* :class:`SchemaARunner`: AXERA "schema A" (``encoder`` + ``decoder-loop`` with a shifting cache and an external
  positional embedding). Only the loop model is needed: from zero caches it is a general single-token step, so the
  ``decoder-main`` model (which needs the whole 4-token prompt at once) is not used.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, runtime_checkable

import numpy as np

from ...runtime.base import Session, TensorSpec

__all__ = ["WhisperRunner", "WhisperModelError", "WhisperInputError", "SessionWhisperRunner", "SchemaARunner"]


class WhisperModelError(ValueError):
    """The sessions do not have the tensor signature the runner needs (the message lists what was found)."""


class WhisperInputError(ValueError):
    """Bad argument to a runner call (wrong mel shape, token out of range, offset out of order, no encode yet)."""


@runtime_checkable
class WhisperRunner(Protocol):
    """What the decode loop needs from a Whisper model, wherever its tensors live.

    Attributes: ``n_text_layer``, ``n_text_ctx`` (448), ``n_vocab``, ``n_mels``.
    """

    n_text_layer: int
    n_text_ctx: int
    n_vocab: int
    n_mels: int

    def encode(self, mel: np.ndarray) -> None:
        """Run the encoder on ``mel`` ``[1, n_mels, 3000]``; the cross K/V stay where the backend keeps them."""

    def reset(self) -> None:
        """Start a new token sequence: zero self-K/V rows, mask everything, offset 0."""

    def step(self, token: int, offset: int) -> np.ndarray:
        """Feed ``token`` at position ``offset``; return the logits ``[n_vocab]`` float32 for the next token.

        Writes this token's self K/V into row ``offset`` of the cache.
        """


# ---------------------------------------------------------------------------------------------- helpers
def _describe(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(s.describe() for s in specs) or "(none)"


def _signature(encoder: Session, decoder: Session) -> str:
    return (f"encoder inputs [{_describe(encoder.inputs)}] outputs [{_describe(encoder.outputs)}]; "
            f"decoder inputs [{_describe(decoder.inputs)}] outputs [{_describe(decoder.outputs)}]")


class _SpecChecker:
    """Collects signature problems so the error lists all of them at once."""

    def __init__(self, what: str, signature: str):
        self.what = what
        self.signature = signature
        self.problems: List[str] = []

    def get(self, specs: Sequence[TensorSpec], name: str, role: str) -> Optional[TensorSpec]:
        for s in specs:
            if s.name == name:
                return s
        self.problems.append(f"{role} {name!r} missing")
        return None

    def check(self, spec: Optional[TensorSpec], dtypes: Tuple, rank: int, shape: Sequence[Optional[int]] = ()) -> None:
        if spec is None:
            return
        if np.dtype(spec.dtype) not in [np.dtype(d) for d in dtypes]:
            self.problems.append(f"{spec.name} has dtype {np.dtype(spec.dtype).name}, expected "
                                 f"{'/'.join(np.dtype(d).name for d in dtypes)}")
        if len(spec.shape) != rank:
            self.problems.append(f"{spec.name} has rank {len(spec.shape)} {spec.shape}, expected rank {rank}")
            return
        if not spec.is_static:
            self.problems.append(f"{spec.name} has dynamic dims {spec.shape}; static shapes are required")
            return
        for i, want in enumerate(shape):
            if want is not None and spec.shape[i] != want:
                self.problems.append(f"{spec.name} dim {i} is {spec.shape[i]}, expected {want} (shape {spec.shape})")

    def raise_if_any(self) -> None:
        if self.problems:
            raise WhisperModelError(f"not a {self.what} Whisper model pair: " + "; ".join(self.problems)
                                    + f". Found: {self.signature}")


def _mel_batch(mel: np.ndarray, n_mels: int, n_frames: int) -> np.ndarray:
    mel = np.asarray(mel)
    if mel.ndim == 2:
        mel = mel[None]
    if mel.shape != (1, n_mels, n_frames):
        raise WhisperInputError(f"mel must be [1,{n_mels},{n_frames}] (or [{n_mels},{n_frames}]), got {mel.shape}")
    return np.ascontiguousarray(mel, dtype=np.float32)


# ---------------------------------------------------------------------------------------------- schema B
class SessionWhisperRunner:
    """Schema-B runner over two :class:`Session` objects, with host-side KV buffers.

    Encoder: ``mel f32[1,n_mels,F]`` → ``cross_k``, ``cross_v`` ``f32[L,1,T,D]``. Decoder inputs ``tokens
    i32[1,1]``, ``self_k``, ``self_v`` ``f32[L,1,C,D]``, ``cross_k``, ``cross_v``, ``offset i32[1]``, ``mask
    i32[C]`` (1 = masked) → ``logits f32[1,1,V]``, ``this_self_k``, ``this_self_v`` ``f32[L,1,1,D]``. The signature
    is checked at construction (:class:`WhisperModelError` lists every mismatch and what the sessions have).
    """

    def __init__(self, encoder: Session, decoder: Session):
        self.encoder, self.decoder = encoder, decoder
        chk = _SpecChecker("schema-B", _signature(encoder, decoder))
        mel = chk.get(encoder.inputs, "mel", "encoder input")
        enc_k = chk.get(encoder.outputs, "cross_k", "encoder output")
        enc_v = chk.get(encoder.outputs, "cross_v", "encoder output")
        names = ("tokens", "self_k", "self_v", "cross_k", "cross_v", "offset", "mask")
        ins = {n: chk.get(decoder.inputs, n, "decoder input") for n in names}
        outs = {n: chk.get(decoder.outputs, n, "decoder output") for n in ("logits", "this_self_k", "this_self_v")}
        extra = [s.name for s in decoder.inputs if s.name not in names]
        if extra:
            chk.problems.append(f"decoder has unexpected inputs {extra}")
        chk.check(mel, (np.float32,), 3, (1,))
        chk.check(enc_k, (np.float32,), 4, (None, 1))
        chk.raise_if_any()
        n_layer, _, n_audio, d = enc_k.shape
        chk.check(enc_v, (np.float32,), 4, enc_k.shape)
        chk.check(ins["self_k"], (np.float32,), 4, (n_layer, 1, None, d))
        chk.raise_if_any()
        n_ctx = ins["self_k"].shape[2]
        chk.check(ins["tokens"], (np.int32,), 2, (1, 1))
        chk.check(ins["self_v"], (np.float32,), 4, (n_layer, 1, n_ctx, d))
        chk.check(ins["cross_k"], (np.float32,), 4, enc_k.shape)
        chk.check(ins["cross_v"], (np.float32,), 4, enc_k.shape)
        chk.check(ins["offset"], (np.int32,), 1, (1,))
        chk.check(ins["mask"], (np.int32,), 1, (n_ctx,))
        chk.check(outs["logits"], (np.float32,), 3, (1, 1))
        chk.check(outs["this_self_k"], (np.float32,), 4, (n_layer, 1, 1, d))
        chk.check(outs["this_self_v"], (np.float32,), 4, (n_layer, 1, 1, d))
        chk.raise_if_any()
        self.n_text_layer = int(n_layer)
        self.n_text_ctx = int(n_ctx)
        self.n_text_state = int(d)
        self.n_audio_ctx = int(n_audio)
        self.n_vocab = int(outs["logits"].shape[2])
        self.n_mels = int(mel.shape[1])
        self.n_frames = int(mel.shape[2])
        self.self_k = np.zeros((n_layer, 1, n_ctx, d), np.float32)
        self.self_v = np.zeros_like(self.self_k)
        self.cross_k = np.zeros((n_layer, 1, n_audio, d), np.float32)
        self.cross_v = np.zeros_like(self.cross_k)
        self.mask = np.ones((n_ctx,), np.int32)
        self._tokens = np.zeros((1, 1), np.int32)
        self._offset = np.zeros((1,), np.int32)
        self._encoded = False
        self._feeds: Dict[str, np.ndarray] = {
            "tokens": self._tokens, "self_k": self.self_k, "self_v": self.self_v, "cross_k": self.cross_k,
            "cross_v": self.cross_v, "offset": self._offset, "mask": self.mask}

    def encode(self, mel: np.ndarray) -> None:
        """Run the encoder and keep ``cross_k``/``cross_v`` in the runner's host buffers."""
        mel = _mel_batch(mel, self.n_mels, self.n_frames)
        out = self.encoder.run({"mel": mel}, ["cross_k", "cross_v"])
        self.cross_k[...] = out["cross_k"]
        self.cross_v[...] = out["cross_v"]
        self._encoded = True
        self.reset()

    def reset(self) -> None:
        """Zero the self-attention cache and mask every position."""
        self.self_k.fill(0.0)
        self.self_v.fill(0.0)
        self.mask.fill(1)

    def step(self, token: int, offset: int) -> np.ndarray:
        """Decode one token at ``offset``; positions ``< offset`` of the cache are visible (see protocol)."""
        if not self._encoded:
            raise WhisperInputError("step() before encode(): run the encoder on a mel window first")
        _check_step(token, offset, self.n_vocab, self.n_text_ctx)
        self._tokens[0, 0] = token
        self._offset[0] = offset
        self.mask[:offset] = 0
        self.mask[offset:] = 1
        out = self.decoder.run(self._feeds)
        self.self_k[:, :, offset] = out["this_self_k"][:, :, 0]
        self.self_v[:, :, offset] = out["this_self_v"][:, :, 0]
        return np.array(out["logits"], dtype=np.float32).reshape(self.n_vocab)


def _check_step(token: int, offset: int, n_vocab: int, n_ctx: int) -> None:
    if not 0 <= int(token) < n_vocab:
        raise WhisperInputError(f"token {token} out of range 0..{n_vocab - 1}")
    if not 0 <= int(offset) < n_ctx:
        raise WhisperInputError(f"offset {offset} out of range 0..{n_ctx - 1}")


# ---------------------------------------------------------------------------------------------- schema A
class SchemaARunner:
    """Schema-A runner: ``encoder`` + ``decoder-loop`` sessions and the ``[C, D]`` positional embedding table.

    Encoder: ``mel`` → ``n_layer_cross_k``, ``n_layer_cross_v`` ``f32[L,1,T,D]``. Loop inputs ``tokens
    int[1,1]``, ``in_n_layer_self_k_cache``, ``in_n_layer_self_v_cache`` ``f32[L,1,C,D]``, ``n_layer_cross_k``,
    ``n_layer_cross_v``, ``positional_embedding f32[1,D]``, ``mask f32[C]`` (``-inf`` = masked) → ``logits
    f32[1,1,V]``, ``out_n_layer_self_k_cache``, ``out_n_layer_self_v_cache``. The loop model shifts its cache left and
    appends the new K/V, so tokens must come at consecutive offsets from 0 after :meth:`reset`.
    """

    _IN = ("tokens", "in_n_layer_self_k_cache", "in_n_layer_self_v_cache", "n_layer_cross_k", "n_layer_cross_v",
           "positional_embedding", "mask")
    _OUT = ("logits", "out_n_layer_self_k_cache", "out_n_layer_self_v_cache")

    def __init__(self, encoder: Session, decoder_loop: Session, positional_embedding: np.ndarray):
        self.encoder, self.decoder = encoder, decoder_loop
        chk = _SpecChecker("schema-A", _signature(encoder, decoder_loop))
        mel = chk.get(encoder.inputs, "mel", "encoder input")
        enc_k = chk.get(encoder.outputs, "n_layer_cross_k", "encoder output")
        enc_v = chk.get(encoder.outputs, "n_layer_cross_v", "encoder output")
        ins = {n: chk.get(decoder_loop.inputs, n, "decoder-loop input") for n in self._IN}
        outs = {n: chk.get(decoder_loop.outputs, n, "decoder-loop output") for n in self._OUT}
        chk.check(mel, (np.float32,), 3, (1,))
        chk.check(enc_k, (np.float32,), 4, (None, 1))
        chk.raise_if_any()
        n_layer, _, n_audio, d = enc_k.shape
        chk.check(enc_v, (np.float32,), 4, enc_k.shape)
        chk.check(ins["in_n_layer_self_k_cache"], (np.float32,), 4, (n_layer, 1, None, d))
        chk.raise_if_any()
        n_ctx = ins["in_n_layer_self_k_cache"].shape[2]
        cache = (n_layer, 1, n_ctx, d)
        chk.check(ins["tokens"], (np.int32, np.int64), 2, (1, 1))
        chk.check(ins["in_n_layer_self_v_cache"], (np.float32,), 4, cache)
        chk.check(ins["n_layer_cross_k"], (np.float32,), 4, enc_k.shape)
        chk.check(ins["n_layer_cross_v"], (np.float32,), 4, enc_k.shape)
        chk.check(ins["positional_embedding"], (np.float32,), 2, (1, d))
        chk.check(ins["mask"], (np.float32,), 1, (n_ctx,))
        chk.check(outs["logits"], (np.float32,), 3, (1, 1))
        chk.check(outs["out_n_layer_self_k_cache"], (np.float32,), 4, cache)
        chk.check(outs["out_n_layer_self_v_cache"], (np.float32,), 4, cache)
        pe = np.asarray(positional_embedding, dtype=np.float32)
        if pe.ndim == 1 and pe.size == n_ctx * d:
            pe = pe.reshape(n_ctx, d)
        if pe.shape != (n_ctx, d):
            chk.problems.append(f"positional_embedding has shape {pe.shape}, expected ({n_ctx}, {d})")
        chk.raise_if_any()
        self.n_text_layer, self.n_text_ctx, self.n_text_state = int(n_layer), int(n_ctx), int(d)
        self.n_audio_ctx = int(n_audio)
        self.n_vocab = int(outs["logits"].shape[2])
        self.n_mels, self.n_frames = int(mel.shape[1]), int(mel.shape[2])
        self.positional_embedding = np.ascontiguousarray(pe)
        self.self_k = np.zeros(cache, np.float32)
        self.self_v = np.zeros(cache, np.float32)
        self.cross_k = np.zeros((n_layer, 1, n_audio, d), np.float32)
        self.cross_v = np.zeros_like(self.cross_k)
        self.mask = np.zeros((n_ctx,), np.float32)
        self._tokens = np.zeros((1, 1), np.dtype(ins["tokens"].dtype))
        self._next = 0
        self._encoded = False

    @classmethod
    def from_files(cls, encoder: Session, decoder_loop: Session, positional_embedding_bin: str) -> SchemaARunner:
        """Build with the raw float32 ``{t}-positional_embedding.bin`` file (``[C, D]`` row-major)."""
        return cls(encoder, decoder_loop, np.fromfile(positional_embedding_bin, dtype=np.float32))

    def encode(self, mel: np.ndarray) -> None:
        """Run the encoder; keep the cross K/V on the host."""
        mel = _mel_batch(mel, self.n_mels, self.n_frames)
        out = self.encoder.run({"mel": mel}, ["n_layer_cross_k", "n_layer_cross_v"])
        self.cross_k[...] = out["n_layer_cross_k"]
        self.cross_v[...] = out["n_layer_cross_v"]
        self._encoded = True
        self.reset()

    def reset(self) -> None:
        """Zero the caches; the next step must be at offset 0."""
        self.self_k.fill(0.0)
        self.self_v.fill(0.0)
        self._next = 0

    def step(self, token: int, offset: int) -> np.ndarray:
        """Decode one token; ``offset`` must be the next consecutive position (the cache shifts)."""
        if not self._encoded:
            raise WhisperInputError("step() before encode(): run the encoder on a mel window first")
        _check_step(token, offset, self.n_vocab, self.n_text_ctx)
        if offset != self._next:
            raise WhisperInputError(f"schema-A decoding needs consecutive offsets: expected {self._next}, got {offset}"
                                    " (call reset() to start again)")
        self._tokens[0, 0] = token
        self.mask.fill(0.0)
        self.mask[: self.n_text_ctx - offset - 1] = -np.inf
        feeds: Mapping[str, np.ndarray] = {
            "tokens": self._tokens, "in_n_layer_self_k_cache": self.self_k, "in_n_layer_self_v_cache": self.self_v,
            "n_layer_cross_k": self.cross_k, "n_layer_cross_v": self.cross_v,
            "positional_embedding": self.positional_embedding[offset:offset + 1], "mask": self.mask}
        out = self.decoder.run(feeds)
        self.self_k[...] = out["out_n_layer_self_k_cache"]
        self.self_v[...] = out["out_n_layer_self_v_cache"]
        self._next = offset + 1
        return np.array(out["logits"], dtype=np.float32).reshape(self.n_vocab)
