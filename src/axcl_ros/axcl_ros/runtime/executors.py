"""The process-wide inference executors: one :class:`~axcl_ros.runtime.executor.InferenceExecutor` per device key
(``"axcl:0"``, ``"onnxruntime:cpu"``), shared by every node of the process, shut down at exit."""

from __future__ import annotations

import atexit
import threading
from typing import Callable, Dict, Optional

from .executor import InferenceExecutor

_registry_lock = threading.Lock()
_executors: Dict[str, InferenceExecutor] = {}


def get_executor(key: str = "default", on_thread_start: Optional[Callable[[], None]] = None) -> InferenceExecutor:
    """Return the process-wide executor for ``key`` (one per device, e.g. ``"axcl:0"``), creating it if needed.

    Thread safe. A shut-down executor is replaced by a new one. ``on_thread_start`` only applies when the executor
    is created; passing a different hook for an existing executor raises ``ValueError``.
    """
    with _registry_lock:
        executor = _executors.get(key)
        if executor is None or executor.is_shutdown:
            executor = InferenceExecutor(key, on_thread_start=on_thread_start)
            _executors[key] = executor
        elif on_thread_start is not None and executor.on_thread_start is not on_thread_start:
            raise ValueError(f"executor {key!r} already exists with another on_thread_start hook")
        return executor


def shutdown_all(timeout: Optional[float] = 5.0) -> bool:
    """Shut down every executor made by :func:`get_executor`; True when all their threads exited."""
    with _registry_lock:
        executors = list(_executors.values())
        _executors.clear()
    ok = True
    for executor in executors:
        ok = executor.shutdown(timeout) and ok
    return ok


atexit.register(shutdown_all, 2.0)
