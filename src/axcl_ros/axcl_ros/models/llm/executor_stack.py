"""A :class:`~.layers.LayerStack` on the shared inference executor: one job per prefill chunk and per generated token.

Like Whisper's runner (:mod:`axcl_ros.models.whisper.transcriber`), the real stack (:class:`~.axcl_layers.
AxclLayerStack` on a card, :class:`~.layers.OnnxLayerStack` on the CPU) is built **on the executor's worker thread**
and presented to it as a session (:class:`StackSession`); :class:`ExecutorLayerStack` implements the contract by
submitting each call. Other models on the same device (a detector's frames) are interleaved between the tokens of a
generation instead of waiting for the whole answer, and every device call stays on the thread that holds the
device context. The hidden state between ``forward`` and ``logits`` stays where the stack keeps it (on the card).
The last chunk of a ``forward`` is held back and run together with the ``logits`` call that follows it, so a decode
step is a single job (each job costs thread hand-offs; two jobs per token decoded at 0.79x the direct stack in one
run on a loaded 2-core machine, one job per token within noise of it: ``bench/bench_llm.py``).
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from ...runtime.base import Session, TensorSpec
from .config import LlmConfig, ModelFilesError
from .layers import ContextFullError, LayerStack

#: :class:`StackSession` calls, passed as its ``op`` input
OP_FORWARD, OP_LOGITS, OP_RESET, OP_FORWARD_LOGITS = 0, 1, 2, 3
#: seconds one job may take (queue wait included) before the call fails
JOB_TIMEOUT_S = 120.0


class StackSession(Session):
    """A :class:`~.layers.LayerStack` as a session: inputs ``op i32[1]``, ``embeds f32[n, H]``, ``start i32[1]``;
    output ``logits f32[V]``. :data:`OP_FORWARD` runs ``forward(embeds, start[0])`` and keeps the hidden state,
    :data:`OP_LOGITS` returns the logits of the last forward, :data:`OP_FORWARD_LOGITS` does both, :data:`OP_RESET`
    resets the cache. :meth:`release` frees the stack."""

    backend_name = "host"
    owns_outputs = True

    def __init__(self, stack: LayerStack, path: str = "", device: str = "") -> None:
        self.stack: Optional[LayerStack] = stack
        self.path, self.device = path, device
        cfg = stack.config
        self.chunk = int(getattr(stack, "chunk", 0) or cfg.prefill_chunk)
        self._hidden = None
        self._inputs = [TensorSpec("op", (1,), np.dtype(np.int32)),
                        TensorSpec("embeds", (None, cfg.hidden_size), np.dtype(np.float32)),
                        TensorSpec("start", (None,), np.dtype(np.int32))]
        self._outputs = [TensorSpec("logits", (cfg.vocab_size,), np.dtype(np.float32))]

    def run(self, feeds: Mapping[str, np.ndarray], output_names: Optional[Sequence[str]] = None) -> dict:
        stack = self.stack
        if stack is None:
            raise ModelFilesError("the language model was released")
        op = int(feeds["op"][0])
        if op in (OP_FORWARD, OP_FORWARD_LOGITS):
            self._hidden = stack.forward(feeds["embeds"], int(feeds["start"][0]))
            if op == OP_FORWARD:
                return {}
        if op in (OP_LOGITS, OP_FORWARD_LOGITS):
            if self._hidden is None:
                raise ModelFilesError("logits asked for before any forward")
            return {"logits": np.array(stack.logits(self._hidden), np.float32, copy=True)}
        if op == OP_RESET:
            stack.reset()
            self._hidden = None
            return {}
        raise ModelFilesError(f"unknown layer-stack op {op}")

    def release(self) -> None:
        stack, self.stack, self._hidden = self.stack, None, None
        if stack is not None:
            stack.release()


class ExecutorLayerStack(LayerStack):
    """The contract by executor jobs (see the module docstring). ``forward`` returns ``None``: the hidden state
    stays with the stack on the worker, and ``logits`` takes that of the last ``forward`` (whose last chunk runs in
    the same job as the logits; errors of that chunk are raised by ``logits``).

    Build it with :meth:`load`; :meth:`release` unloads the stack (frees its device memory) on the worker thread.
    """

    def __init__(self, executor, handle, config: LlmConfig, timeout: float = JOB_TIMEOUT_S) -> None:
        self.executor, self.handle, self.config = executor, handle, config
        self.timeout = float(timeout)
        self.chunk = handle.session.chunk
        self._pos = 0
        self._pending = None  # (rows, start) of the chunk held back for the next logits call
        self._no_embeds = np.zeros((0, config.hidden_size), np.float32)
        self._no_start = np.zeros((0,), np.int32)
        self.jobs = 0

    @classmethod
    def load(cls, executor, build: Callable[[], LayerStack], name: str = "llm",
             timeout: float = JOB_TIMEOUT_S) -> ExecutorLayerStack:
        """Run ``build()`` on ``executor``'s worker thread and wrap the stack it returns."""
        handle = executor.load_session(lambda: StackSession(build(), name), name=name)
        return cls(executor, handle, handle.session.stack.config, timeout)

    def _call(self, op: int, embeds: Optional[np.ndarray] = None, start: int = -1, outputs: Sequence[str] = ()):
        feeds = {"op": np.array([op], np.int32), "embeds": self._no_embeds if embeds is None else embeds,
                 "start": self._no_start if start < 0 else np.array([start], np.int32)}
        self.jobs += 1
        return self.executor.submit(self.handle, feeds, output_names=outputs).result(self.timeout).outputs

    @property
    def position(self) -> int:
        return self._pos

    def reset(self) -> None:
        self._pending = None
        self._call(OP_RESET)
        self._pos = 0

    def _flush(self) -> None:
        if self._pending is not None:
            rows, start = self._pending
            self._pending = None
            self._call(OP_FORWARD, rows, start)

    def forward(self, embeds: np.ndarray, start: int) -> None:
        """One job per ``chunk`` rows (a prefill chunk, or the one row of a decode step); the last chunk waits for
        :meth:`logits`."""
        self._flush()
        x = np.ascontiguousarray(embeds, np.float32)
        n = x.shape[0]
        if start > self._pos or start < 0:
            raise ValueError(f"forward at position {start}, but the cache holds {self._pos} positions")
        if start + n > self.config.max_context:
            raise ContextFullError(f"{start + n} positions do not fit the context of {self.config.max_context} "
                                   f"tokens")
        for c0 in range(0, n, self.chunk):
            rows = x[c0:c0 + self.chunk]
            if c0 + self.chunk >= n:
                self._pending = (rows, start + c0)
            else:
                self._call(OP_FORWARD, rows, start + c0)
        self._pos = start + n
        return None

    def logits(self, hidden=None) -> np.ndarray:
        """Logits of the last :meth:`forward`, in the same job as its held-back chunk; ``hidden`` is ignored."""
        if self._pending is not None:
            (rows, start), self._pending = self._pending, None
            return self._call(OP_FORWARD_LOGITS, rows, start, outputs=("logits",))["logits"]
        return self._call(OP_LOGITS, outputs=("logits",))["logits"]

    def release(self) -> None:
        self._pending = None
        self.handle.release()
