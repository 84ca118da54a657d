"""Device-resident Whisper schema-B runner for the AXCL backend (implements :class:`.runner.WhisperRunner`).

Everything the decoder reads stays on the card:

* ``cross_k``/``cross_v``: the decoder's inputs are bound to the encoder's output buffers (zero copy), so they are
  never sent again after :meth:`AxclWhisperRunner.encode`.
* ``self_k``/``self_v`` ``[L,1,C,D]``: after each step the ``this_self_k/v`` outputs ``[L,1,1,D]`` are copied
  device-to-device into row ``offset`` of each layer (byte offset ``((l·C)+offset)·D·4``).
* ``mask`` ``[C]``: only the elements whose visibility changes are written (one int32 per token in order).

Per token the host sends ``tokens`` (4 B), ``offset`` (4 B) and one mask element (4 B), and reads the logits
(``V·4`` B); the device does ``2·L`` copies of ``D·4`` B.
"""

from __future__ import annotations

from typing import List, Optional, Union

import numpy as np

from ...runtime.axcl_backend import AxclBackend
from ...runtime.axcl_session import AxclSession
from .runner import WhisperInputError, WhisperModelError

__all__ = ["AxclWhisperRunner"]

_DEC_INPUTS = ("tokens", "self_k", "self_v", "cross_k", "cross_v", "offset", "mask")
_DEC_OUTPUTS = ("logits", "this_self_k", "this_self_v")


def _signature(encoder: AxclSession, decoder: AxclSession) -> str:
    def desc(specs) -> str:
        return ", ".join(s.describe() for s in specs) or "(none)"

    return (f"encoder inputs [{desc(encoder.inputs)}] outputs [{desc(encoder.outputs)}]; "
            f"decoder inputs [{desc(decoder.inputs)}] outputs [{desc(decoder.outputs)}]")


class AxclWhisperRunner:
    """Schema-B Whisper (``encoder`` + single-token ``decoder`` with external KV cache) kept on an AXCL card.

    Attributes ``n_text_layer``, ``n_text_ctx``, ``n_vocab``, ``n_mels`` (and ``n_text_state``, ``n_audio_ctx``,
    ``n_frames``) come from the sessions' tensor specs; a pair that does not fit raises :class:`WhisperModelError`
    listing every problem and what was found.
    """

    def __init__(self, encoder: AxclSession, decoder: AxclSession) -> None:
        if not isinstance(encoder, AxclSession) or not isinstance(decoder, AxclSession):
            raise WhisperModelError(f"AxclWhisperRunner needs two AxclSession objects, got "
                                    f"{type(encoder).__name__} and {type(decoder).__name__}")
        self.encoder, self.decoder = encoder, decoder
        self._check_signature()
        decoder.bind_input_to("cross_k", encoder, "cross_k")
        decoder.bind_input_to("cross_v", encoder, "cross_v")
        self._row_bytes = self.n_text_state * 4
        self._token = np.zeros((1, 1), np.int32)
        self._offset = np.zeros((1,), np.int32)
        self._zero = np.zeros((self.n_text_ctx,), np.int32)
        self._ones = np.ones((self.n_text_ctx,), np.int32)
        self._visible = self.n_text_ctx  # mask[:_visible] == 0, mask[_visible:] == 1 on the device (memset 0)
        self._encoded = False
        self.reset()

    def _check_signature(self) -> None:
        enc, dec = self.encoder, self.decoder
        problems: List[str] = []

        def spec(session: AxclSession, name: str, output: bool, role: str):
            specs = session.outputs if output else session.inputs
            for s in specs:
                if s.name == name:
                    return s
            problems.append(f"{role} {name!r} missing")
            return None

        def expect(s, dtype, shape) -> None:
            if s is None:
                return
            if s.dtype != np.dtype(dtype):
                problems.append(f"{s.name} has dtype {s.dtype.name}, expected {np.dtype(dtype).name}")
            if len(s.shape) != len(shape) or any(w is not None and w != d for w, d in zip(shape, s.shape)):
                want = ",".join("?" if w is None else str(w) for w in shape)
                problems.append(f"{s.name} has shape {list(s.shape)}, expected [{want}]")

        mel = spec(enc, "mel", False, "encoder input")
        ck = spec(enc, "cross_k", True, "encoder output")
        cv = spec(enc, "cross_v", True, "encoder output")
        ins = {n: spec(dec, n, False, "decoder input") for n in _DEC_INPUTS}
        outs = {n: spec(dec, n, True, "decoder output") for n in _DEC_OUTPUTS}
        extra = [s.name for s in dec.inputs if s.name not in _DEC_INPUTS]
        if extra:
            problems.append(f"decoder has unexpected inputs {extra}")
        expect(mel, np.float32, (1, None, None))
        expect(ck, np.float32, (None, 1, None, None))
        if ck is not None and ins["self_k"] is not None and not problems:
            n_layer, _, n_audio, d = ck.shape
            n_ctx = ins["self_k"].shape[2] if len(ins["self_k"].shape) == 4 else None
            expect(cv, np.float32, ck.shape)
            expect(ins["tokens"], np.int32, (1, 1))
            expect(ins["self_k"], np.float32, (n_layer, 1, None, d))
            expect(ins["self_v"], np.float32, (n_layer, 1, n_ctx, d))
            expect(ins["cross_k"], np.float32, ck.shape)
            expect(ins["cross_v"], np.float32, ck.shape)
            expect(ins["offset"], np.int32, (1,))
            expect(ins["mask"], np.int32, (n_ctx,))
            expect(outs["logits"], np.float32, (1, 1, None))
            expect(outs["this_self_k"], np.float32, (n_layer, 1, 1, d))
            expect(outs["this_self_v"], np.float32, (n_layer, 1, 1, d))
        if problems:
            raise WhisperModelError("not a schema-B Whisper model pair for AXCL: " + "; ".join(problems)
                                    + f". Found: {_signature(enc, dec)}")
        self.n_text_layer = int(ck.shape[0])
        self.n_audio_ctx = int(ck.shape[2])
        self.n_text_state = int(ck.shape[3])
        self.n_text_ctx = int(ins["self_k"].shape[2])
        self.n_vocab = int(outs["logits"].shape[2])
        self.n_mels = int(mel.shape[1])
        self.n_frames = int(mel.shape[2])

    @classmethod
    def from_files(cls, encoder_path: str, decoder_path: str, device: Union[str, int] = "",
                   backend: Optional[AxclBackend] = None) -> AxclWhisperRunner:
        """Load both ``.axmodel`` files on card ``device`` and build the runner (sessions released on failure)."""
        backend = backend or AxclBackend()
        encoder = backend.load(encoder_path, str(device))
        try:
            decoder = backend.load(decoder_path, str(device))
        except BaseException:
            encoder.release()
            raise
        try:
            return cls(encoder, decoder)
        except BaseException:
            decoder.release()
            encoder.release()
            raise

    # -- WhisperRunner protocol -------------------------------------------------------------------------------------
    def encode(self, mel: np.ndarray) -> None:
        """Run the encoder on ``mel`` ``[1,n_mels,n_frames]`` (or ``[n_mels,n_frames]``); cross K/V stay on the card."""
        mel = np.asarray(mel)
        if mel.ndim == 2:
            mel = mel[None]
        if mel.shape != (1, self.n_mels, self.n_frames):
            raise WhisperInputError(f"mel must be [1,{self.n_mels},{self.n_frames}] (or [{self.n_mels},"
                                    f"{self.n_frames}]), got {list(mel.shape)}")
        self.encoder.run({"mel": np.ascontiguousarray(mel, dtype=np.float32)}, [])
        self._encoded = True
        self.reset()

    def reset(self) -> None:
        """Zero the self K/V caches on the card (memset) and mask every position."""
        self.decoder.fill_input("self_k", 0)
        self.decoder.fill_input("self_v", 0)
        self._set_visible(0)

    def step(self, token: int, offset: int) -> np.ndarray:
        """Decode ``token`` at position ``offset`` (positions ``< offset`` visible); return logits ``[n_vocab]``."""
        if not self._encoded:
            raise WhisperInputError("step() before encode(): run the encoder on a mel window first")
        token, offset = int(token), int(offset)
        if not 0 <= token < self.n_vocab:
            raise WhisperInputError(f"token {token} out of range 0..{self.n_vocab - 1}")
        if not 0 <= offset < self.n_text_ctx:
            raise WhisperInputError(f"offset {offset} out of range 0..{self.n_text_ctx - 1}")
        dec = self.decoder
        self._token[0, 0] = token
        self._offset[0] = offset
        dec.write_input("tokens", self._token)
        dec.write_input("offset", self._offset)
        self._set_visible(offset)
        dec.execute()
        logits = dec.read_output("logits")
        row = self._row_bytes
        for layer in range(self.n_text_layer):
            dst = (layer * self.n_text_ctx + offset) * row
            dec.copy_output_to_input("this_self_k", "self_k", dst, layer * row, row)
            dec.copy_output_to_input("this_self_v", "self_v", dst, layer * row, row)
        return np.array(logits, dtype=np.float32).reshape(self.n_vocab)

    def _set_visible(self, offset: int) -> None:
        """Make ``mask[:offset] = 0`` and ``mask[offset:] = 1`` writing only the elements that change."""
        if offset > self._visible:
            self.decoder.write_input("mask", self._zero[: offset - self._visible], self._visible * 4)
        elif offset < self._visible:
            self.decoder.write_input("mask", self._ones[: self._visible - offset], offset * 4)
        self._visible = offset

    def release(self) -> None:
        """Release the decoder, then the encoder it borrows cross K/V buffers from."""
        self.decoder.release()
        self.encoder.release()
