"""ONNX Runtime backend: runs ``.onnx`` models on the host CPU (or CUDA when onnxruntime-gpu is installed)."""

from __future__ import annotations

import os
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .base import (
    Backend,
    BackendUnavailableError,
    DeviceError,
    InputMismatchError,
    ModelLoadError,
    Session,
    TensorSpec,
    check_feeds,
)

try:  # imported lazily by the registry; a missing onnxruntime only disables this backend
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state
except ImportError as exc:  # pragma: no cover - onnxruntime is a hard dependency of the dev venv
    ort = None
    _ort_state = None
    _IMPORT_ERROR: Optional[ImportError] = exc
else:
    _IMPORT_ERROR = None

#: ONNX Runtime type strings → numpy dtypes (``tensor(string)`` maps to object arrays, as ORT returns them)
ORT_TYPE_TO_DTYPE: Dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(string)": np.dtype(object),
}

_CUDA_RE = re.compile(r"^cuda(?::(\d+))?$")


def parse_device(device: str) -> Tuple[str, Dict[str, str]]:
    """Map a device string to ``(execution provider, provider options)``.

    ``""``/``"cpu"`` → CPU; ``"cuda"``/``"cuda:N"`` → CUDA device N. Anything else raises
    :class:`BackendUnavailableError`.
    """
    text = (device or "").strip().lower()
    if text in ("", "cpu"):
        return "CPUExecutionProvider", {}
    match = _CUDA_RE.match(text)
    if match:
        return "CUDAExecutionProvider", {"device_id": match.group(1) or "0"}
    raise BackendUnavailableError(
        f"onnxruntime: unknown device {device!r}; use '' or 'cpu' for the host CPU, 'cuda' or 'cuda:N' for a GPU")


def _spec_from_node_arg(arg, path: str) -> TensorSpec:
    dtype = ORT_TYPE_TO_DTYPE.get(arg.type)
    if dtype is None:
        raise ModelLoadError(
            f"{path}: tensor {arg.name!r} has type {arg.type}, which has no numpy equivalent here "
            f"(supported: {sorted(ORT_TYPE_TO_DTYPE)}); re-export the model with one of those types")
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (arg.shape or ()))
    return TensorSpec(name=arg.name, shape=shape, dtype=dtype)


class OnnxRuntimeSession(Session):
    """A model loaded in an ``onnxruntime.InferenceSession``. ``run`` returns fresh arrays on every call."""

    backend_name = "onnxruntime"
    owns_outputs = True

    def __init__(self, sess, path: str, device: str) -> None:
        self._sess = sess
        self.path = path
        self.device = device
        self._inputs: List[TensorSpec] = [_spec_from_node_arg(a, path) for a in sess.get_inputs()]
        self._outputs: List[TensorSpec] = [_spec_from_node_arg(a, path) for a in sess.get_outputs()]
        self._output_names = [s.name for s in self._outputs]

    @property
    def providers(self) -> List[str]:
        """Execution providers the session actually uses."""
        if self._sess is None:
            return []
        return list(self._sess.get_providers())

    def run(self, feeds: Mapping[str, np.ndarray],
            output_names: Optional[Sequence[str]] = None) -> dict:
        """Run the model; see :meth:`Session.run`."""
        sess = self._sess
        if sess is None:
            raise DeviceError(f"onnxruntime session for {self.path} was released; load the model again")
        check_feeds(self._inputs, feeds)
        names = list(self._output_names if output_names is None else output_names)
        unknown = [n for n in names if n not in self._output_names]
        if unknown:
            raise InputMismatchError(f"unknown output names {unknown}; the model has outputs {self._output_names}")
        try:
            values = sess.run(names, dict(feeds))
        except _ort_state.InvalidArgument as exc:
            # shapes that pass the spec (dynamic dims) but that the graph cannot combine
            raise InputMismatchError(f"onnxruntime rejected the inputs of {self.path}: {exc}") from exc
        except Exception as exc:
            raise DeviceError(f"onnxruntime failed to run {self.path} on {self.device or 'cpu'}: {exc}") from exc
        return dict(zip(names, values))

    def release(self) -> None:
        """Drop the ONNX Runtime session (idempotent)."""
        self._sess = None


#: Measured defaults of the thread budget (README "Performance"; NudeNet YOLOv8n 640×640 on 2 cores, 2026-12-04):
#: ORT's own default (one spinning thread per core) took 57 ms wall / 90 ms CPU per run on a quiet machine and
#: 114 ms wall with one core kept busy; two intra-op threads that do not spin took 40 / 51 ms quiet and 87 / 55 ms
#: busy (spinning: 34 / 62 quiet but 201 / 94 busy; one thread: 50 / 48 quiet, 133 / 47 busy).
DEFAULT_INTRA_OP_THREADS = min(2, os.cpu_count() or 1)
DEFAULT_INTER_OP_THREADS = 1
DEFAULT_ALLOW_SPINNING = False
#: ORT's memory pattern (``SessionOptions.enable_mem_pattern``): after the first run ORT plans one arena block for
#: all of a run's intermediate tensors. Measured (README "Detector on the CPU", random-weight YOLO11n 640×640, 2-core
#: VM, 7 paired rounds): off keeps 31–38 MiB less resident (138–143 vs 173–176 MiB), costs 0.90–1.06× the CPU per
#: run, but ran 1.14–1.98× slower in 5 of 7 pairs with one core busy; kept on, the detector's ``cpu_memory_pattern``.
DEFAULT_MEMORY_PATTERN = True


def session_options(intra_op_num_threads: int = DEFAULT_INTRA_OP_THREADS,
                    inter_op_num_threads: int = DEFAULT_INTER_OP_THREADS,
                    allow_spinning: bool = DEFAULT_ALLOW_SPINNING, affinity: str = "",
                    log_severity_level: int = 3, memory_pattern: bool = DEFAULT_MEMORY_PATTERN,
                    stop_spinning_after_run: bool = False):
    """The one place that builds ``onnxruntime.SessionOptions`` in this package (detector, depth, speech, VAD).

    ``intra_op_num_threads`` / ``inter_op_num_threads``: 0 keeps ORT's default (one thread per core).
    ``allow_spinning``: ORT's worker threads busy-wait for work between operators when True (lower latency on an
    idle machine, a stolen core on a busy one). ``affinity``: ORT's ``session.intra_op_thread_affinities`` string
    (e.g. ``"1"`` pins the one extra intra-op thread to core 1; ``""`` = unpinned); it needs
    ``intra_op_num_threads`` >= 2 and is rejected by ORT otherwise. ``memory_pattern``: ORT's
    ``enable_mem_pattern`` (one preplanned block for a run's intermediate tensors; off = each tensor allocated from
    the arena as the run goes, which keeps less memory resident). ``stop_spinning_after_run``: spinning workers go
    to sleep when a run ends (ORT's ``session.force_spinning_stop``) instead of spinning on for a while, waiting for
    the next run: for sessions that run one after another, whose idle pools must not spin against the running one.
    """
    if ort is None:
        raise BackendUnavailableError(f"onnxruntime is not installed ({_IMPORT_ERROR}): pip install onnxruntime")
    if intra_op_num_threads < 0 or inter_op_num_threads < 0:
        raise ValueError(f"thread counts must be >= 0, got intra={intra_op_num_threads} "
                         f"inter={inter_op_num_threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(intra_op_num_threads)
    opts.inter_op_num_threads = int(inter_op_num_threads)
    opts.log_severity_level = int(log_severity_level)
    opts.enable_mem_pattern = bool(memory_pattern)
    spin = "1" if allow_spinning else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    if allow_spinning and stop_spinning_after_run:
        opts.add_session_config_entry("session.force_spinning_stop", "1")
    if affinity:
        opts.add_session_config_entry("session.intra_op_thread_affinities", str(affinity))
    return opts


class OnnxRuntimeBackend(Backend):
    """Loads ``.onnx`` files with ONNX Runtime.

    Args:
        intra_op_num_threads: threads ORT uses inside one operator; 0 = ORT's default (one per core).
        inter_op_num_threads: threads across operators (only used by parallel execution mode); 0 = default.
        allow_spinning: let ORT's threads busy-wait between operators (see :func:`session_options`).
        affinity: ORT intra-op thread affinity string ('' = not pinned).
        log_severity_level: ORT log level for new sessions (0 verbose … 4 fatal); 3 shows errors only.
        memory_pattern: ORT's ``enable_mem_pattern`` (see :func:`session_options`).
        stop_spinning_after_run: spinning workers sleep when a run ends (see :func:`session_options`).
    The defaults are the measured thread budget (:data:`DEFAULT_INTRA_OP_THREADS` …).
    """

    name = "onnxruntime"
    suffixes = (".onnx",)

    def __init__(self, intra_op_num_threads: int = DEFAULT_INTRA_OP_THREADS,
                 inter_op_num_threads: int = DEFAULT_INTER_OP_THREADS,
                 allow_spinning: bool = DEFAULT_ALLOW_SPINNING, affinity: str = "",
                 log_severity_level: int = 3, memory_pattern: bool = DEFAULT_MEMORY_PATTERN,
                 stop_spinning_after_run: bool = False) -> None:
        if intra_op_num_threads < 0 or inter_op_num_threads < 0:
            raise ValueError(f"thread counts must be >= 0, got intra={intra_op_num_threads} "
                             f"inter={inter_op_num_threads}")
        self.intra_op_num_threads = int(intra_op_num_threads)
        self.inter_op_num_threads = int(inter_op_num_threads)
        self.allow_spinning = bool(allow_spinning)
        self.affinity = str(affinity or "")
        self.log_severity_level = int(log_severity_level)
        self.memory_pattern = bool(memory_pattern)
        self.stop_spinning_after_run = bool(stop_spinning_after_run)

    def available(self) -> Tuple[bool, str]:
        """ORT is usable when the ``onnxruntime`` package imports."""
        if ort is None:
            return False, f"onnxruntime is not installed ({_IMPORT_ERROR}): pip install onnxruntime"
        return True, ""

    def _session_options(self):
        return session_options(self.intra_op_num_threads, self.inter_op_num_threads, self.allow_spinning,
                               self.affinity, self.log_severity_level, self.memory_pattern,
                               self.stop_spinning_after_run)

    def load(self, path: str, device: str = "") -> OnnxRuntimeSession:
        """Load the ONNX file ``path`` on ``device`` (``""``/``"cpu"``, ``"cuda"``, ``"cuda:N"``)."""
        ok, reason = self.available()
        if not ok:
            raise BackendUnavailableError(reason)
        provider, options = parse_device(device)
        if provider not in ort.get_available_providers():
            raise BackendUnavailableError(
                f"onnxruntime: device {device!r} needs {provider}, but this onnxruntime build only has "
                f"{ort.get_available_providers()}; install onnxruntime-gpu (with a matching CUDA) or use device 'cpu'")
        path = os.fspath(path)
        if not os.path.exists(path):
            raise ModelLoadError(f"model file {path!r} does not exist; check the path (absolute, or relative to "
                                 f"{os.getcwd()}) or export the model there")
        if not os.path.isfile(path):
            raise ModelLoadError(f"model path {path!r} is not a file; pass the .onnx file itself")
        providers = [(provider, options)] if options else [provider]
        try:
            sess = ort.InferenceSession(path, sess_options=self._session_options(), providers=providers)
        except Exception as exc:
            raise ModelLoadError(f"onnxruntime cannot load {path!r} (corrupt, truncated or not an ONNX model, or an "
                                 f"unsupported opset/operator): {exc}") from exc
        if provider not in sess.get_providers():
            raise BackendUnavailableError(
                f"onnxruntime could not start {provider} for {path!r} (session uses {sess.get_providers()}); "
                "check the CUDA/cuDNN install or use device 'cpu'")
        return OnnxRuntimeSession(sess, path, (device or "cpu").strip().lower())
