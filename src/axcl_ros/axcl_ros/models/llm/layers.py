"""The per-layer runner contract of the host loop, and its onnxruntime implementation.

A :class:`LayerStack` owns the decoder layers, the post model (final norm + lm head) and the KV cache. The host loop
(:mod:`.generate`) only ever gives it embedding rows and asks for logits:

* :meth:`LayerStack.forward` ``(embeds [T, H], start)`` runs positions ``start … start+T-1`` through every layer,
  appends their keys/values to the cache and returns the last row's hidden state;
* :meth:`LayerStack.logits` ``(hidden [H])`` runs the post model.

So per generated token the host hands over one embedding row and gets one logits vector back. The onnxruntime
stack below keeps the cache in host memory and passes each layer the cached slice; the card stack
(:class:`~.axcl_layers.AxclLayerStack`, ``backend: axcl``, AXERA's ``*_l{i}.axmodel`` files) implements the same two
calls with the cache kept on the card and written in place, prefill through the 128-token shape groups and decode
through group 0.
"""

from __future__ import annotations

import abc
from typing import List, Optional

import numpy as np

from ...runtime.base import Session
from ...runtime.registry import get_backend
from .config import LlmConfig, LlmFiles, ModelFilesError
from .export_onnx import MASK_VALUE

LAYER_INPUTS = ("input", "indices", "K_cache", "V_cache", "mask")
LAYER_OUTPUTS = ("K_cache_out", "V_cache_out", "output")


class ContextFullError(ValueError):
    """More positions were asked for than the KV cache holds (``max_context``)."""


class LayerStack(abc.ABC):
    """Decoder layers + post model + KV cache of one model (see the module docstring)."""

    config: LlmConfig

    @property
    @abc.abstractmethod
    def position(self) -> int:
        """Number of positions in the cache (the next token's position)."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget every cached position (a new conversation)."""

    @abc.abstractmethod
    def forward(self, embeds: np.ndarray, start: int) -> np.ndarray:
        """Run ``embeds [T, H]`` at positions ``start…``; cache their K/V; return the last hidden state ``[H]``.

        ``start`` must equal :attr:`position` (or be smaller, to overwrite a tail of the cache).
        """

    @abc.abstractmethod
    def logits(self, hidden: np.ndarray) -> np.ndarray:
        """Logits ``[V]`` (float32) of one hidden state ``[H]``."""

    @abc.abstractmethod
    def release(self) -> None:
        """Free the models and the cache (idempotent)."""


def causal_mask(past: int, n: int) -> np.ndarray:
    """``[1, n, past+n]`` mask: every new token sees the cache and the new tokens up to itself."""
    mask = np.zeros((1, n, past + n), np.float32)
    mask[0, :, past:] = np.triu(np.full((n, n), MASK_VALUE, np.float32), k=1)
    return mask


class OnnxLayerStack(LayerStack):
    """The contract on onnxruntime: one session per layer file, the KV cache in host memory.

    Args:
        files: a checked model set (:func:`.config.find_model_files`) with ``.onnx`` files.
        threads: onnxruntime intra-op threads (0 = onnxruntime's default).
        device: onnxruntime device (``cpu``, ``cuda:0``).
    """

    def __init__(self, files: LlmFiles, threads: int = 0, device: str = "") -> None:
        self.config = cfg = files.config
        # one small session per layer, run one after the other: idle ORT pools must not spin against the running one
        backend = get_backend("onnxruntime", intra_op_num_threads=threads, allow_spinning=False)
        self._layers: List[Session] = []
        self._post: Optional[Session] = None
        try:
            for path in files.layers:
                s = backend.load(path, device)
                _check_contract(s, path, LAYER_INPUTS, LAYER_OUTPUTS)
                self._layers.append(s)
            self._post = backend.load(files.post, device)
            _check_contract(self._post, files.post, ("input",), ("output",))
        except Exception:
            self.release()
            raise
        self._k = np.zeros((cfg.num_layers, cfg.max_context, cfg.kv_dim), np.float32)
        self._v = np.zeros_like(self._k)
        self._pos = 0

    @property
    def position(self) -> int:
        return self._pos

    def reset(self) -> None:
        self._pos = 0

    def forward(self, embeds: np.ndarray, start: int) -> np.ndarray:
        cfg = self.config
        n = int(embeds.shape[0])
        if start > self._pos or start < 0:
            raise ValueError(f"forward at position {start}, but the cache holds {self._pos} positions")
        if start + n > cfg.max_context:
            raise ContextFullError(f"{start + n} positions do not fit the context of {cfg.max_context} tokens")
        hidden = None
        for c0 in range(0, n, cfg.prefill_chunk):
            chunk = np.ascontiguousarray(embeds[c0:c0 + cfg.prefill_chunk], np.float32)
            hidden = self._run_chunk(chunk, start + c0)
        self._pos = start + n
        return hidden

    def _run_chunk(self, x: np.ndarray, past: int) -> np.ndarray:
        n = x.shape[0]
        feeds = {"indices": np.arange(past, past + n, dtype=np.uint32)[None], "mask": causal_mask(past, n)}
        x = x[None]
        for i, layer in enumerate(self._layers):
            feeds.update(input=x, K_cache=self._k[i, :past][None], V_cache=self._v[i, :past][None])
            out = layer.run(feeds, LAYER_OUTPUTS)
            self._k[i, past:past + n] = out["K_cache_out"][0]
            self._v[i, past:past + n] = out["V_cache_out"][0]
            x = out["output"]
        return x[0, -1]

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        if self._post is None:
            raise ModelFilesError("the model was released")
        return self._post.run({"input": np.ascontiguousarray(hidden, np.float32).reshape(1, 1, -1)},
                              ["output"])["output"].reshape(-1)

    def release(self) -> None:
        for s in self._layers:
            s.release()
        self._layers = []
        if self._post is not None:
            self._post.release()
            self._post = None


def _check_contract(session: Session, path: str, inputs, outputs) -> None:
    have_in = {s.name for s in session.inputs}
    have_out = {s.name for s in session.outputs}
    if not set(inputs) <= have_in or not set(outputs) <= have_out:
        raise ModelFilesError(f"{path}: not a layer of the per-layer contract: it has inputs {sorted(have_in)} and "
                              f"outputs {sorted(have_out)}, expected {list(inputs)} -> {list(outputs)}")
