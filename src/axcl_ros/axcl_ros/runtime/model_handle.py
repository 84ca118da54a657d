"""What the inference executor hands out and counts: :class:`ModelHandle` (a loaded model), :class:`RunResult` (one
run's outputs and timing), the executor's errors and its per-model and per-stream statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Hashable, Optional, Sequence

import numpy as np

from .base import BackendError, Session, TensorSpec

if TYPE_CHECKING:
    from .executor import InferenceExecutor


class ExecutorShutdownError(BackendError):
    """The executor is shut down: set on futures pending at shutdown, raised by calls made after it."""


class ModelReleasedError(BackendError):
    """The model handle was unloaded: raised by ``submit``, set on its futures still pending at unload."""


@dataclass(frozen=True)
class RunResult:
    """Outputs of one submission plus its timing.

    Attributes:
        outputs: ``{output name: array}``; arrays belong to the caller (never overwritten by later runs).
        queue_wait_ms: time from ``submit`` until the worker started the run.
        run_ms: time the backend's ``run`` took (host → device → host for device backends).
        sequence: executor-wide submission number (dropped submissions consume numbers too).
        model: name of the model handle.
        stream: the submission's stream, or ``None`` for FIFO submissions.
    """

    outputs: Dict[str, np.ndarray]
    queue_wait_ms: float
    run_ms: float
    sequence: int
    model: str
    stream: Optional[Hashable] = None


class ModelHandle:
    """A model loaded in an executor. Pass it to :meth:`InferenceExecutor.submit`; call :meth:`release` when done."""

    def __init__(self, executor: InferenceExecutor, session: Session, name: str, handle_id: int) -> None:
        self._executor = executor
        self._session: Optional[Session] = session
        self.name = name
        self.id = handle_id
        self.backend = session.backend_name
        self.device = session.device
        self.path = session.path
        self._inputs = tuple(session.inputs)
        self._outputs = tuple(session.outputs)
        self._released = False

    @property
    def executor(self) -> InferenceExecutor:
        """The executor this model is loaded in."""
        return self._executor

    @property
    def session(self) -> Session:
        """The backend session (for its specs; run it through the executor, never directly)."""
        if self._session is None:
            raise ModelReleasedError(f"model {self.name!r} was unloaded")
        return self._session

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        """Input specs of the model."""
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        """Output specs of the model."""
        return self._outputs

    @property
    def released(self) -> bool:
        """True once :meth:`release` (or the executor's shutdown) has been asked for."""
        return self._released

    def release(self, timeout: Optional[float] = None) -> None:
        """Unload the model from its executor (idempotent)."""
        self._executor.unload(self, timeout=timeout)

    def __enter__(self) -> ModelHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "loaded"
        return f"<ModelHandle {self.name!r} {self.backend}:{self.device or 'default'} {state}>"


class ModelStats:
    """Counters and timing sums of one model's runs (updated by the executor under its lock)."""

    __slots__ = ("submitted", "count", "errors", "drops", "cancelled", "ran", "wait_sum", "wait_max",
                 "run_sum", "run_max", "last_error")

    def __init__(self) -> None:
        self.submitted = self.count = self.errors = self.drops = self.cancelled = self.ran = 0
        self.wait_sum = self.wait_max = self.run_sum = self.run_max = 0.0
        self.last_error = ""

    def as_dict(self) -> dict:
        ran = max(self.ran, 1)
        return {
            "submitted": self.submitted, "count": self.count, "errors": self.errors, "drops": self.drops,
            "cancelled": self.cancelled,
            "queue_wait_ms_mean": self.wait_sum / ran, "queue_wait_ms_max": self.wait_max,
            "run_ms_mean": self.run_sum / ran, "run_ms_max": self.run_max, "last_error": self.last_error,
        }


class StreamStats:
    """Counters of one stream's submissions."""

    __slots__ = ("submitted", "count", "errors", "drops")

    def __init__(self) -> None:
        self.submitted = self.count = self.errors = self.drops = 0

    def as_dict(self) -> dict:
        return {"submitted": self.submitted, "count": self.count, "errors": self.errors, "drops": self.drops}



def error_text(exc: BaseException) -> str:
    """``Type: message`` of an exception, as the statistics report it."""
    return f"{type(exc).__name__}: {exc}"
