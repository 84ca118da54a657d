"""A node's model, loaded on the process-wide inference executor of its device."""

from __future__ import annotations

import os
from concurrent.futures import Future
from typing import Mapping, Optional, Sequence

import numpy as np

from ..runtime.base import ModelLoadError
from ..runtime.executor import InferenceExecutor
from ..runtime.executors import get_executor
from ..runtime.model_handle import ModelHandle, RunResult
from ..runtime.registry import resolve_backend


def executor_key(backend: str, device: str) -> str:
    """Key of the executor for ``device`` of ``backend``: every node of a process on that device shares it.

    Spellings of the same device map to one key: ``""``/``"cpu"`` for onnxruntime, ``""``/``"0"``/``"axcl:0"``
    for the first card.
    """
    dev = (device or "").strip().lower()
    if backend == "axcl":
        dev = dev.split(":", 1)[1] if dev.startswith("axcl:") else dev
        dev = dev or "0"
    elif backend == "onnxruntime":
        dev = dev or "cpu"
        dev = "cuda:0" if dev == "cuda" else dev
    return f"{backend}:{dev or 'default'}"


class NodeModel:
    """One loaded model of a node: its handle on the shared executor and what timing messages report."""

    def __init__(self, executor: InferenceExecutor, handle: ModelHandle, backend: str, device: str) -> None:
        self.executor = executor
        self.handle = handle
        self.backend = backend
        self.device = device or "default"
        self.model_name = os.path.basename(handle.path)

    @classmethod
    def load(cls, node, path: str, backend: str, device: str, *, what: str = "model_path",
             cpu_options: Optional[Mapping[str, object]] = None) -> NodeModel:
        """Load ``path`` for ``node``; raise with a message that says which parameter to fix.

        ``cpu_options``: onnxruntime thread budget (``OnnxRuntimeBackend`` keyword arguments, e.g.
        ``intra_op_num_threads``, ``allow_spinning``); ignored by the axcl backend."""
        if not path:
            raise ModelLoadError(f"parameter {what} is empty: set it to an .axmodel (AX650N card) or .onnx file "
                                 f"(see the README, section 'Models')")
        path = os.path.expanduser(path)
        if not os.path.isfile(path):
            raise ModelLoadError(f"{what}={path!r} does not exist or is not a file")
        chosen = resolve_backend(backend, path)
        executor = get_executor(executor_key(chosen.name, device))
        options = dict(cpu_options or {}) if chosen.name == "onnxruntime" else {}
        handle = executor.load(path, backend=chosen.name, device=device, **options)
        node.get_logger().info(f"loaded {path} on {chosen.name}:{device or 'default'} (executor {executor.key})")
        return cls(executor, handle, chosen.name, device)

    def submit(self, feeds: Mapping[str, np.ndarray], stream=None,
               output_names: Optional[Sequence[str]] = None) -> Future:
        """Queue a run on the shared executor (latest-only per ``stream``)."""
        return self.executor.submit(self.handle, feeds, output_names=output_names, stream=stream)

    def run_now(self, feeds: Mapping[str, np.ndarray], timeout: float = 120.0) -> RunResult:
        """Run ``feeds`` and wait for the result (configure-time runs: shape probes, warm-up); raises the run's
        error, or ``TimeoutError``."""
        return self.submit(feeds).result(timeout)

    def stats(self) -> dict:
        """This model's executor statistics, flattened for diagnostics."""
        stats = self.executor.stats()
        mine = stats["models"].get(self.handle.name, {})
        out = {"backend": self.backend, "device": self.device, "model": self.model_name,
               "executor": stats["executor"], "executor_pending": stats["pending"]}
        out.update({f"model.{k}": v for k, v in mine.items() if k not in ("backend", "device", "path")})
        return out

    def describe(self) -> str:
        """``name (backend:device) inputs → outputs`` for logs."""
        s = self.handle.session
        return (f"{self.model_name} ({self.backend}:{self.device}) "
                f"{[t.describe() for t in s.inputs]} -> {[t.describe() for t in s.outputs]}")

    def release(self) -> None:
        """Unload the model (frees device memory); idempotent."""
        self.handle.release()
