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
import os
import tempfile
from typing import List, Optional, Tuple

import numpy as np

from ...runtime.base import Session
from ...runtime.registry import get_backend
from . import layer_chain
from .config import LlmConfig, LlmFiles, ModelFilesError
from .export_onnx import MASK_VALUE
from .layer_chain import chain_name, check_contract, write_chain


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


#: outputs of a post model whose logits come with an error bound (``convert-llm --weights gguf-blocks``)
BOUNDED_POST_OUTPUTS = ("output", "normed", "error_bound")
#: the window recomputed exactly is ``2 * (bound * SLACK + FLOOR)``: room for float32 rounding on top of the bound
ERROR_BOUND_SLACK = 1.1
ERROR_BOUND_FLOOR = 1e-3


def exact_near_top(approx: np.ndarray, hidden: np.ndarray, bound: float, head_rows: np.ndarray) -> np.ndarray:
    """``approx`` logits ``[V]`` (each within ``bound`` of ``head_rows @ hidden``) with every logit within twice the
    bound of the best recomputed in float32 as ``head_rows[i] @ hidden``: the largest exact logit is among them, and
    every logit left approximate is smaller than it, so the argmax is the float32 head's. Changes ``approx`` in
    place and returns it."""
    window = 2.0 * (float(bound) * ERROR_BOUND_SLACK + ERROR_BOUND_FLOOR)
    near = np.flatnonzero(approx >= approx.max() - window)
    approx[near] = np.asarray(head_rows[near], np.float32) @ hidden
    return approx


def causal_mask(past: int, n: int) -> np.ndarray:
    """``[1, n, past+n]`` mask: every new token sees the cache and the new tokens up to itself."""
    mask = np.zeros((1, n, past + n), np.float32)
    mask[0, :, past:] = np.triu(np.full((n, n), MASK_VALUE, np.float32), k=1)
    return mask


class OnnxLayerStack(LayerStack):
    """The contract on onnxruntime: the layer files chained into one session (:mod:`.layer_chain`; several for
    models over :data:`~.layer_chain.MAX_CHAIN_BYTES`), the KV cache in host memory.

    Args:
        files: a checked model set (:func:`.config.find_model_files`) with ``.onnx`` files.
        threads: onnxruntime intra-op threads (0 = onnxruntime's default).
        device: onnxruntime device (``cpu``, ``cuda:0``).
        spinning: let the intra-op workers busy-wait between the operators of a step (they sleep when the step
            ends). Faster on an idle machine, slower when another process keeps a core busy (README "describe").
    """

    def __init__(self, files: LlmFiles, threads: int = 0, device: str = "", spinning: bool = False) -> None:
        self.config = cfg = files.config
        backend = get_backend("onnxruntime", intra_op_num_threads=threads, allow_spinning=spinning,
                              stop_spinning_after_run=True)
        #: (index of the chain's first layer, number of layers, session)
        self._chains: List[Tuple[int, int, Session]] = []
        self._post: Optional[Session] = None
        try:
            first = 0
            for group in layer_chain.group_layer_files(files.layers, layer_chain.MAX_CHAIN_BYTES):
                self._chains.append((first, len(group), _load_chain(backend, group, device)))
                first += len(group)
            self._post = backend.load(files.post, device)
            check_contract(files.post, [t.name for t in self._post.inputs], [t.name for t in self._post.outputs],
                           ("input",), ("output",))
            #: the lm head's rows for :func:`exact_near_top` (the tied embedding table, memory-mapped), when the
            #: post model bounds its logits' error
            self._head_rows: Optional[np.ndarray] = None
            if set(BOUNDED_POST_OUTPUTS) <= {s.name for s in self._post.outputs}:
                self._head_rows = _head_rows(files)
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
        shared = {"indices": np.arange(past, past + n, dtype=np.uint32)[None], "mask": causal_mask(past, n)}
        x = x[None]
        for first, count, chain in self._chains:
            feeds = dict(shared, input=x)
            for j in range(count):
                feeds[chain_name("K_cache", j)] = self._k[first + j, :past][None]
                feeds[chain_name("V_cache", j)] = self._v[first + j, :past][None]
            out = chain.run(feeds)
            for j in range(count):
                self._k[first + j, past:past + n] = out[chain_name("K_cache_out", j)][0]
                self._v[first + j, past:past + n] = out[chain_name("V_cache_out", j)][0]
            x = out["output"]
        return x[0, -1]

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        if self._post is None:
            raise ModelFilesError("the model was released")
        feeds = {"input": np.ascontiguousarray(hidden, np.float32).reshape(1, 1, -1)}
        if self._head_rows is None:
            return self._post.run(feeds, ["output"])["output"].reshape(-1)
        out = self._post.run(feeds, BOUNDED_POST_OUTPUTS)
        return exact_near_top(out["output"].reshape(-1), out["normed"].reshape(-1), out["error_bound"][0],
                              self._head_rows)

    def release(self) -> None:
        for _first, _count, chain in self._chains:
            chain.release()
        self._chains = []
        if self._post is not None:
            self._post.release()
            self._post = None


def _load_chain(backend, paths: List[str], device: str) -> Session:
    """The layer files ``paths`` chained into one session, through a temporary file (see
    :func:`.layer_chain.write_chain`; it is deleted once loaded)."""
    stem = os.path.splitext(os.path.basename(paths[0]))[0]
    try:
        with tempfile.TemporaryDirectory(prefix="axcl_ros_chain_") as tmp:
            path = os.path.join(tmp, f"{stem}-{len(paths)}-layers.onnx")
            with open(path, "wb") as f:
                write_chain(paths, f)
            return backend.load(path, device)
    except OSError as exc:
        size = sum(os.path.getsize(p) for p in paths) / 2**20
        raise ModelFilesError(f"cannot write the chained layers to a temporary file in {tempfile.gettempdir()} "
                              f"({exc}); set TMPDIR to a folder with {size:.0f} MiB free") from exc


def _head_rows(files: LlmFiles) -> np.ndarray:
    """The float32 embedding table as the rows of a tied lm head (memory-mapped)."""
    cfg = files.config
    try:
        rows = np.load(files.embeddings, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise ModelFilesError(f"{files.post} bounds its logits' error, which needs the float32 embedding table as "
                              f"the tied lm head, but {files.embeddings!r} is not a readable .npy: {exc}") from exc
    if rows.dtype != np.float32 or rows.shape != (cfg.vocab_size, cfg.hidden_size):
        raise ModelFilesError(f"{files.embeddings}: a tied lm head must be float32 ({cfg.vocab_size}, "
                              f"{cfg.hidden_size}), not {rows.dtype} {rows.shape}")
    return rows
