"""Inference runtime: backends (onnxruntime, axcl), the model registry and the shared executor. No rclpy here."""

from .base import (
    Backend,
    BackendError,
    BackendUnavailableError,
    DeviceError,
    InputMismatchError,
    ModelLoadError,
    Session,
    TensorSpec,
    check_feeds,
)
from .executor import CancelledError, InferenceExecutor
from .executors import get_executor, shutdown_all
from .model_handle import ExecutorShutdownError, ModelHandle, ModelReleasedError, RunResult
from .registry import UnknownBackendError, backend_names, get_backend, load_model, resolve_backend

__all__ = [
    "Backend", "BackendError", "BackendUnavailableError", "CancelledError", "DeviceError", "ExecutorShutdownError",
    "InferenceExecutor", "InputMismatchError", "ModelHandle", "ModelLoadError", "ModelReleasedError", "RunResult",
    "Session", "TensorSpec", "UnknownBackendError", "backend_names", "check_feeds", "get_backend", "get_executor",
    "load_model", "resolve_backend", "shutdown_all",
]
