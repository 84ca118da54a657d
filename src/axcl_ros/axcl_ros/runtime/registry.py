"""Find a backend by name or by model file suffix, and load models through it."""

from __future__ import annotations

import importlib
import os
import threading
from typing import Dict, Tuple

from .base import Backend, BackendUnavailableError, ModelLoadError, Session

#: backend name → (module, class); modules are imported only when the backend is asked for
_BACKENDS: Dict[str, Tuple[str, str]] = {
    "onnxruntime": ("axcl_ros.runtime.onnxruntime_backend", "OnnxRuntimeBackend"),
    "axcl": ("axcl_ros.runtime.axcl_backend", "AxclBackend"),
}

#: model file suffix → the backend that loads it (used by ``auto`` and to reject mismatches)
SUFFIX_BACKEND: Dict[str, str] = {".onnx": "onnxruntime", ".axmodel": "axcl"}

AUTO = "auto"
#: what a node's ``backend`` parameter accepts: ``auto`` (chosen by model file suffix) or a backend name
BACKEND_CHOICES: Tuple[str, ...] = (AUTO, *sorted(_BACKENDS))

_lock = threading.Lock()
_instances: Dict[str, Backend] = {}


class UnknownBackendError(BackendUnavailableError, ValueError):
    """The backend name is not one this package knows."""


def backend_names() -> Tuple[str, ...]:
    """Names accepted by :func:`get_backend` (``auto`` is accepted by :func:`resolve_backend` too)."""
    return tuple(sorted(_BACKENDS))


def _import_backend_class(name: str):
    module_name, class_name = _BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise BackendUnavailableError(
                f"backend {name!r} is not part of this build ({module_name} is missing)") from exc
        raise BackendUnavailableError(f"backend {name!r} cannot be imported: {exc}") from exc
    except ImportError as exc:
        raise BackendUnavailableError(f"backend {name!r} cannot be imported: {exc}") from exc
    try:
        return getattr(module, class_name)
    except AttributeError as exc:
        raise BackendUnavailableError(f"{module_name} has no class {class_name}") from exc


def get_backend(name: str, **options) -> Backend:
    """Return the backend called ``name`` (``"onnxruntime"`` or ``"axcl"``).

    Without ``options`` the same shared instance is returned every time; with ``options`` (constructor keyword
    arguments, e.g. ``intra_op_num_threads=2``) a new instance is made. Raises :class:`UnknownBackendError` for an
    unknown name and :class:`BackendUnavailableError` when the backend's module is missing or does not import.
    Availability on this machine is *not* checked here: see ``Backend.available`` / :func:`resolve_backend`.
    """
    key = (name or "").strip().lower()
    if key not in _BACKENDS:
        raise UnknownBackendError(f"unknown backend {name!r}; choose one of {list(BACKEND_CHOICES)}")
    if options:
        return _import_backend_class(key)(**options)
    with _lock:
        backend = _instances.get(key)
        if backend is None:
            backend = _import_backend_class(key)()
            _instances[key] = backend
        return backend


def _suffix(model_path) -> str:
    return os.path.splitext(os.fspath(model_path))[1].lower()


def resolve_backend(name: str, model_path, **options) -> Backend:
    """Pick the backend for ``model_path`` and check that it is usable here.

    ``"auto"`` chooses ``axcl`` for ``.axmodel`` files and ``onnxruntime`` for everything else. An explicit name
    that does not fit a known suffix raises :class:`ModelLoadError` naming the backend the file needs; a backend
    that is not usable here raises :class:`BackendUnavailableError` with the reason.
    """
    key = (name or AUTO).strip().lower()
    suffix = _suffix(model_path)
    needed = SUFFIX_BACKEND.get(suffix)
    if key == AUTO:
        key = needed or "onnxruntime"
    elif key not in _BACKENDS:
        raise UnknownBackendError(f"unknown backend {name!r}; choose one of {list(BACKEND_CHOICES)}")
    elif needed is not None and needed != key:
        raise ModelLoadError(f"{os.fspath(model_path)!r} is a {suffix} file, which the {needed!r} backend loads, "
                             f"not {key!r}; pass backend={needed!r} or backend='auto'")
    backend = get_backend(key, **options)
    ok, reason = backend.available()
    if not ok:
        raise BackendUnavailableError(f"backend {key!r} needed for {os.fspath(model_path)!r} is not available: "
                                      f"{reason}")
    return backend


def load_model(path, backend: str = AUTO, device: str = "", **options) -> Session:
    """Load ``path`` with :func:`resolve_backend` ``(backend, path)`` on ``device`` and return the session."""
    return resolve_backend(backend, path, **options).load(os.fspath(path), device)
