"""Backend interface shared by every inference backend (no rclpy here).

A *backend* loads a model file into a *session*. A session exposes the model's own tensor specs
(never hard-coded by callers) and runs named host arrays through the model.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, replace
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np


class BackendError(RuntimeError):
    """Base class of every error raised by the runtime."""


class BackendUnavailableError(BackendError):
    """The backend (library, device or execution provider) is not usable on this machine."""


class ModelLoadError(BackendError):
    """The model file is missing, unreadable or not a model of this backend."""


class InputMismatchError(BackendError, ValueError):
    """An input given to ``Session.run`` has the wrong name, shape or dtype."""


class DeviceError(BackendError):
    """The device failed while running (execute failure, device lost)."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output, as read from the model.

    ``shape`` holds ``None`` for dynamic dimensions. ``layout`` is ``"NHWC"``, ``"NCHW"`` or ``""`` when the model
    does not say.
    """

    name: str
    shape: Tuple[Optional[int], ...]
    dtype: np.dtype
    layout: str = ""

    @property
    def is_static(self) -> bool:
        """True when every dimension is known."""
        return all(d is not None for d in self.shape)

    @property
    def nbytes(self) -> int:
        """Size in bytes of a tensor with this spec (static shapes only)."""
        if not self.is_static:
            raise ValueError(f"tensor {self.name!r} has a dynamic shape {self.shape}")
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def matches(self, array: np.ndarray) -> bool:
        """True when ``array`` has this dtype and a shape compatible with this spec."""
        if np.dtype(array.dtype) != np.dtype(self.dtype) or array.ndim != len(self.shape):
            return False
        return all(d is None or d == a for d, a in zip(self.shape, array.shape))

    def describe(self) -> str:
        """Human-readable ``name dtype[d0,d1,...]`` (``?`` for dynamic dims)."""
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} {np.dtype(self.dtype).name}[{dims}]"


def settle_dynamic_dims(specs: Sequence[TensorSpec],
                        seen: Sequence[Mapping[str, Tuple[int, ...]]]) -> List[TensorSpec]:
    """``specs`` with every dynamic dimension that all runs in ``seen`` gave the same value set to that value.

    ``seen``: the output shapes (``{name: shape}``) of runs on inputs that differ in every dynamic input dimension;
    a dimension that followed the input (anchors, prototype rows) stays dynamic. Exports that leave fixed output
    dimensions symbolic (Ultralytics ``dynamic=True`` ONNX from torch 2.x: ``output0 [batch, ?, anchors]``) become
    readable by checks that need them (a class count).
    """
    settled = []
    for spec in specs:
        shapes = [tuple(run[spec.name]) for run in seen if spec.name in run]
        if not shapes or any(len(shape) != len(spec.shape) for shape in shapes):
            settled.append(spec)
            continue
        dims = tuple(d if d is not None or len({shape[i] for shape in shapes}) != 1 else int(shapes[0][i])
                     for i, d in enumerate(spec.shape))
        settled.append(replace(spec, shape=dims))
    return settled


def check_feeds(specs: Sequence[TensorSpec], feeds: Mapping[str, np.ndarray], *, require_all: bool = True) -> None:
    """Validate ``feeds`` against ``specs``; raise :class:`InputMismatchError` naming the offending tensor."""
    by_name = {s.name: s for s in specs}
    for name, array in feeds.items():
        spec = by_name.get(name)
        if spec is None:
            raise InputMismatchError(f"unknown input {name!r}; the model takes {[s.describe() for s in specs]}")
        if not isinstance(array, np.ndarray) or not spec.matches(array):
            got = f"{array.dtype.name}{list(array.shape)}" if isinstance(array, np.ndarray) else type(array).__name__
            raise InputMismatchError(f"input {name!r} expects {spec.describe()}, got {got}")
    if require_all:
        missing = [s.name for s in specs if s.name not in feeds]
        if missing:
            raise InputMismatchError(f"missing inputs {missing}; the model takes {[s.describe() for s in specs]}")


class Session(abc.ABC):
    """A loaded model. Thread-compatible: callers (the executor) serialise ``run`` per session."""

    backend_name: str = ""
    device: str = ""
    path: str = ""
    #: True when ``run`` returns arrays that no later ``run`` overwrites (the executor then skips its defensive copy)
    owns_outputs: bool = False
    #: specs read from the model by the subclass's loader
    _inputs: Sequence[TensorSpec] = ()
    _outputs: Sequence[TensorSpec] = ()

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        """Input specs in model order (dynamic dims are ``None``)."""
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        """Output specs in model order (dynamic dims are ``None``)."""
        return self._outputs

    @abc.abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray],
            output_names: Optional[Sequence[str]] = None) -> dict:
        """Run the model; return ``{output name: array}`` for ``output_names`` (all outputs when None).

        Raises :class:`InputMismatchError` for bad feeds and :class:`DeviceError` when execution fails.
        Returned arrays may be views of buffers the session reuses: copy them to keep them past the next run.
        """

    @abc.abstractmethod
    def release(self) -> None:
        """Free the model and every buffer it holds (idempotent)."""

    def input_spec(self, name: str) -> TensorSpec:
        """The input spec called ``name``."""
        for s in self.inputs:
            if s.name == name:
                return s
        raise KeyError(name)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Backend(abc.ABC):
    """Factory of sessions for one kind of runtime (``onnxruntime``, ``axcl``)."""

    name: str = ""
    #: file suffixes this backend loads (``auto`` uses them to pick a backend)
    suffixes: Tuple[str, ...] = ()

    @abc.abstractmethod
    def available(self) -> Tuple[bool, str]:
        """``(True, "")`` when usable here, else ``(False, reason with what to do)``."""

    @abc.abstractmethod
    def load(self, path: str, device: str = "") -> Session:
        """Load ``path`` on ``device`` (backend-specific: ``cpu``/``cuda:0``, or a card index for axcl)."""

    def prepare_thread(self, device: str = "") -> None:
        """Bind per-thread state (e.g. the AXCL context) for ``device`` to the calling thread.

        The executor calls this on its worker thread before the first ``load`` of each (backend, device) there, and
        every later ``load``/``run``/``release`` of those sessions happens on that same thread. Default: nothing.
        """
        return None
