"""AXCL sessions: one ``.axmodel`` on an AX650N card through :mod:`axcl_ros.runtime.axcl`.

A session allocates one device buffer per input and output once (``axclrtMalloc`` + memset 0), binds them to one
engine IO, and per :meth:`AxclSession.run` copies in only the inputs given and copies out only the outputs asked
for, into host arrays it reuses. Extra device-resident calls keep data on the card between models and steps:
:meth:`~AxclSession.bind_input_to` (zero copy), :meth:`~AxclSession.write_input` (partial H2D),
:meth:`~AxclSession.copy_output_to_input` (D2D), :meth:`~AxclSession.execute` and :meth:`~AxclSession.read_output`.
Every public method first makes the device's context current on the calling thread.

Copy/compute overlap: :meth:`~AxclSession.launch` / :meth:`~AxclSession.collect` (and the
:meth:`~AxclSession.run_pipelined` generator built on them) use extra IO sets, each with its own device buffers,
engine IO and stream, and the asynchronous API (``axclrtMemcpyAsync``, ``axclrtEngineExecuteAsync``,
``axclrtSynchronizeStream``): while the NPU executes frame N, frame N+1 is uploaded and frame N-1 downloaded. The
extra sets are allocated on first use and freed with the session.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .axcl import AxclRuntime, get_runtime
from .axcl_abi import (
    D2H,
    DTYPE_NAMES,
    H2D,
    LAYOUT_NAMES,
    AxclError,
    AxclLoadError,
    DataType,
    IODims,
    MallocPolicy,
    decode_error,
)
from .axcl_device_io import DeviceResidentIO
from .axcl_pipelining import IOSet, PipelinedIO
from .base import (
    DeviceError,
    InputMismatchError,
    ModelLoadError,
    Session,
    TensorSpec,
    check_feeds,
)

__all__ = ["AxclSession"]

log = logging.getLogger(__name__)


@dataclass
class _Buffer:
    spec: TensorSpec
    index: int
    size: int  # bytes the IO info reports (>= spec.nbytes)
    ptr: int = 0  # device address bound to the IO
    own: int = 0  # our allocation (0 when borrowed from another session)
    source: Optional[Tuple[AxclSession, str]] = None
    host: Optional[np.ndarray] = None


class AxclSession(DeviceResidentIO, PipelinedIO, Session):
    """One loaded ``.axmodel`` on one card, with its device buffers.

    The device-resident calls come from :class:`~.axcl_device_io.DeviceResidentIO`, the pipelined ones from
    :class:`~.axcl_pipelining.PipelinedIO`.

    Thread-safe (one lock per session). Raises :class:`AxclError` (a :class:`DeviceError`) when the runtime fails,
    :class:`InputMismatchError` for bad feeds, names, offsets or bindings.
    """

    backend_name = "axcl"

    def __init__(self, path: Union[str, os.PathLike], device_index: int = 0,
                 runtime: Optional[AxclRuntime] = None) -> None:
        self.path = os.fspath(path)
        self.device_index = int(device_index)
        self.device = f"axcl:{self.device_index}"
        if not os.path.isfile(self.path):
            raise ModelLoadError(f"model file {self.path!r} does not exist")
        self._released = True  # until the load below succeeds (so a failed __init__ never releases twice)
        self._rt = runtime if runtime is not None else get_runtime()
        self._lock = threading.RLock()
        self._dead = False
        self._gen = -1
        self._model_id: Optional[int] = None
        self._ctx_id = 0
        self._info = 0
        self._io = 0
        self._in: List[_Buffer] = []
        self._out: List[_Buffer] = []
        self._sets: List[IOSet] = []
        self._next_set = 0
        self.npu_cores = 0
        self.compiler_version = ""
        rt = self._rt
        with rt._lock:  # loads never interleave with a runtime restart
            dev = rt.prepare_device(self.device_index)
            self._gen = rt.generation
            self.device_id = dev.device_id
            try:
                self._load(dev)
            except BaseException as exc:
                rt.note_failure(exc)
                self._free_all(quiet=True)
                raise
            self._released = False
            rt.register(self)
        self._in_by_name = {b.spec.name: b for b in self._in}
        self._out_by_name = {b.spec.name: b for b in self._out}
        self._inputs = tuple(b.spec for b in self._in)
        self._outputs = tuple(b.spec for b in self._out)

    # -- loading ----------------------------------------------------------------------------------------------------
    def _load(self, dev) -> None:
        lib = self._rt.lib
        path_b = self.path.encode()
        # no axclrtEngineGetModelType(path) before loading: the real call loads the whole model (a second load);
        # the core count is read from the loaded model below
        mid = ctypes.c_uint64()
        rc = lib.call("axclrtEngineLoadFromFile", path_b, ctypes.byref(mid))
        if rc:
            detail = f"loading {self.path!r} on device id {dev.device_id}"
            if decode_error(rc).errid == 0x04:  # unsupported: typically more cores than the VNPU mode gives
                detail += (f"; if the model was compiled for more NPU cores than VNPU mode {dev.vnpu.name} allows "
                           f"(at most {dev.vnpu.max_cores}), use AXCL_VNPU=disable or a model compiled for fewer "
                           f"cores")
            raise AxclLoadError("axclrtEngineLoadFromFile", rc, detail)
        self._model_id = int(mid.value)
        if lib.has("axclrtEngineGetModelTypeFromModelId"):
            kind = ctypes.c_int()
            if lib.call("axclrtEngineGetModelTypeFromModelId", ctypes.c_uint64(self._model_id),
                        ctypes.byref(kind)) == 0:
                self._check_cores(kind.value + 1, dev)
        self.compiler_version = lib.text("axclrtEngineGetModelCompilerVersion", ctypes.c_uint64(self._model_id))
        self._ctx_id, self._info = lib.context_and_io_info(self._model_id)
        if lib.has("axclrtEngineGetShapeGroupsCount"):
            groups = ctypes.c_int32()
            if lib.call("axclrtEngineGetShapeGroupsCount", self._info, ctypes.byref(groups)) == 0 and groups.value > 1:
                log.info("%s has %d shape groups; group 0 is used", self.path, groups.value)
        n_in = self._count("axclrtEngineGetNumInputs", self._info)
        n_out = self._count("axclrtEngineGetNumOutputs", self._info)
        if n_in == 0 or n_out == 0:
            raise ModelLoadError(f"{self.path!r} reports {n_in} inputs and {n_out} outputs")
        self._in = [self._read_buffer(i, True) for i in range(n_in)]
        self._out = [self._read_buffer(i, False) for i in range(n_out)]
        for buf in self._in + self._out:
            buf.own = buf.ptr = self._malloc(buf.size)
        io = ctypes.c_void_p()
        lib.check("axclrtEngineCreateIO", self._info, ctypes.byref(io))
        self._io = int(io.value)
        if lib.has("axclrtEngineSetDynamicBatchSize"):  # as AXERA's runner does after creating an IO set
            rc = lib.call("axclrtEngineSetDynamicBatchSize", self._io, 1)
            if rc:
                log.debug("%s: %s", self.path, AxclError("axclrtEngineSetDynamicBatchSize", rc, "batch 1"))
        for buf in self._in:
            lib.check("axclrtEngineSetInputBufferByIndex", self._io, buf.index, buf.ptr, buf.size)
        for buf in self._out:
            lib.check("axclrtEngineSetOutputBufferByIndex", self._io, buf.index, buf.ptr, buf.size)

    def _check_cores(self, cores: int, dev) -> None:
        self.npu_cores = cores
        if cores > dev.vnpu.max_cores:
            raise ModelLoadError(f"{self.path!r} was compiled for {cores} NPU cores but the engine on device id "
                                 f"{dev.device_id} runs in VNPU mode {dev.vnpu.name} (at most {dev.vnpu.max_cores}); "
                                 f"use AXCL_VNPU=disable or a model compiled for fewer cores")

    def _read_buffer(self, i: int, is_input: bool) -> _Buffer:
        lib, info = self._rt.lib, self._info
        kind = "Input" if is_input else "Output"
        what = kind.lower()
        name = lib.text(f"axclrtEngineGet{kind}NameByIndex", info, i) or f"{what}{i}"
        size = self._count(f"axclrtEngineGet{kind}SizeByIndex", info, 0, i, bits=64)
        dims = IODims()
        lib.check(f"axclrtEngineGet{kind}Dims", info, 0, i, ctypes.byref(dims))
        shape = tuple(int(dims.dims[k]) for k in range(max(0, min(int(dims.dimCount), len(dims.dims)))))
        if any(d <= 0 for d in shape):
            raise ModelLoadError(f"{self.path!r}: {what} {name!r} has dims {list(shape)}; only static shapes are "
                                 f"supported")
        dt = ctypes.c_int()
        lib.check(f"axclrtEngineGet{kind}DataType", info, i, ctypes.byref(dt))
        np_name = DTYPE_NAMES.get(dt.value)
        if np_name is None:
            label = DataType(dt.value).name if dt.value in DataType._value2member_map_ else str(dt.value)
            raise ModelLoadError(f"{self.path!r}: {what} {name!r} has AXCL data type {label}, which this backend "
                                 f"cannot exchange with numpy")
        layout = ""
        if lib.has(f"axclrtEngineGet{kind}DataLayout"):
            lay = ctypes.c_int()
            if lib.call(f"axclrtEngineGet{kind}DataLayout", info, i, ctypes.byref(lay)) == 0:
                layout = LAYOUT_NAMES.get(lay.value, "")
        spec = TensorSpec(name, shape, np.dtype(np_name), layout)
        if size < spec.nbytes:
            raise ModelLoadError(f"{self.path!r}: {what} {spec.describe()} needs {spec.nbytes} bytes but the model "
                                 f"reports {size}")
        return _Buffer(spec, i, size)

    def _count(self, name: str, *args, bits: int = 32) -> int:
        return self._rt.lib.model_count(name, *args, model_path=self.path, bits=bits)

    def _malloc(self, size: int) -> int:
        lib = self._rt.lib
        ptr = ctypes.c_void_p()
        lib.check("axclrtMalloc", ctypes.byref(ptr), size, int(MallocPolicy.HUGE_FIRST))
        try:
            lib.check("axclrtMemset", ptr, 0, size)
        except AxclError:
            lib.call("axclrtFree", ptr)
            raise
        return int(ptr.value)

    # -- Session interface ----------------------------------------------------------------------------------------
    def run(self, feeds: Mapping[str, np.ndarray], output_names: Optional[Sequence[str]] = None) -> dict:
        """Copy in the given inputs, execute, copy out ``output_names`` (all when None; ``[]`` for none).

        Inputs not in ``feeds`` keep what their device buffer holds (previous feed, a binding or a write).
        Returned arrays are reused by the next call for the same output.
        """
        check_feeds(self._inputs, feeds, require_all=False)
        outs = self._outputs_named(output_names)
        with self._lock:
            self._ready()
            try:
                for name, array in feeds.items():
                    buf = self._in_by_name[name]
                    host = np.ascontiguousarray(array)
                    self._memcpy(buf.ptr, host.ctypes.data, host.nbytes, H2D)
                self._execute()
                return {buf.spec.name: self._read(buf) for buf in outs}
            except AxclError as exc:
                self._rt.note_failure(exc)
                raise

    def release(self) -> None:
        """Free device buffers, IO, IO info and the model, in that order (idempotent; errors are logged)."""
        with self._lock:
            if self._released:
                return
            self._released = True
            self._free_all(quiet=False)
            self._rt.unregister(self)

    @property
    def released(self) -> bool:
        """True after :meth:`release` (or after a runtime restart invalidated the session)."""
        return self._released or self._dead

    # -- internals ----------------------------------------------------------------------------------------------------
    def _input(self, name: str) -> _Buffer:
        buf = self._in_by_name.get(name)
        if buf is None:
            raise InputMismatchError(f"unknown input {name!r}; the model takes {[s.describe() for s in self._inputs]}")
        return buf

    def _output(self, name: str) -> _Buffer:
        buf = self._out_by_name.get(name)
        if buf is None:
            raise InputMismatchError(f"unknown output {name!r}; the model produces "
                                     f"{[s.describe() for s in self._outputs]}")
        return buf

    def _outputs_named(self, names: Optional[Sequence[str]]) -> List[_Buffer]:
        if names is None:
            return list(self._out)
        if isinstance(names, str):
            raise InputMismatchError(f"output_names must be a sequence of names, got the string {names!r}")
        return [self._output(n) for n in names]

    @staticmethod
    def _check_range(what: str, offset: int, count: int, spec: TensorSpec) -> None:
        item = spec.dtype.itemsize
        if offset < 0 or count < 0 or offset + count > spec.nbytes or offset % item or count % item:
            raise InputMismatchError(f"{what}: {count} bytes at byte offset {offset} do not fit {spec.describe()} "
                                     f"({spec.nbytes} bytes, {item}-byte elements)")

    def _ready_state(self) -> None:
        if self._released:
            raise DeviceError(f"AXCL session for {self.path!r} was released")
        if self._dead or self._gen != self._rt.generation:
            raise DeviceError(f"AXCL session for {self.path!r} was invalidated by an AXCL runtime restart; "
                              f"release it and load the model again")

    def _ready(self) -> None:
        self._ready_state()
        try:
            self._rt.ensure_thread_context(self.device_index)
        except AxclError as exc:
            self._rt.note_failure(exc)
            raise
        for buf in self._in:
            if buf.source is not None and buf.source[0].released:
                raise DeviceError(f"input {buf.spec.name!r} of {self.path!r} is bound to output {buf.source[1]!r} "
                                  f"of {buf.source[0].path!r}, which was released; bind it again or unbind_input()")

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except AxclError as exc:
            self._rt.note_failure(exc)
            raise

    def _memcpy(self, dst: int, src: int, count: int, kind: int) -> None:
        self._rt.lib.check("axclrtMemcpy", dst, src, count, kind)

    def _execute(self) -> None:
        self._rt.lib.check("axclrtEngineExecute", ctypes.c_uint64(self._model_id), ctypes.c_uint64(self._ctx_id), 0,
                           self._io, detail=f"model {self.path!r}")

    def _read(self, buf: _Buffer) -> np.ndarray:
        if buf.host is None:
            buf.host = np.empty(buf.spec.shape, dtype=buf.spec.dtype)
        self._memcpy(buf.host.ctypes.data, buf.ptr, buf.spec.nbytes, D2H)
        return buf.host

    def _free_all(self, quiet: bool) -> None:
        rt, lib = self._rt, self._rt.lib
        alive = not self._dead and self._gen == rt.generation and not rt.closed
        errors: List[AxclError] = []

        def attempt(name: str, *args) -> None:
            rc = lib.call(name, *args)
            if rc:
                errors.append(AxclError(name, rc))

        if alive and (self._model_id is not None or self._sets or any(b.own for b in self._in + self._out)):
            try:
                rt.ensure_thread_context(self.device_index)
            except AxclError as exc:
                errors.append(exc)
                alive = False
        if alive:
            self._free_sets(attempt)
            for buf in self._in + self._out:
                if buf.own:
                    attempt("axclrtFree", buf.own)
            if self._io:
                attempt("axclrtEngineDestroyIO", self._io)
            if self._info:
                attempt("axclrtEngineDestroyIOInfo", self._info)
            if self._model_id is not None:
                attempt("axclrtEngineUnload", ctypes.c_uint64(self._model_id))
        self._drop_handles()
        if errors:
            rt.note_failure(errors[0])
            if not quiet:
                log.warning("releasing AXCL session %s: %s", self.path, "; ".join(str(e) for e in errors))

    def _drop_handles(self) -> None:
        self._sets = []
        for buf in self._in + self._out:
            buf.own = buf.ptr = 0
            buf.source = None
        self._io = self._info = 0
        self._model_id = None

    def _invalidate(self) -> None:
        """Called by a runtime restart: the handles belong to a finalized runtime; drop them without C calls."""
        with self._lock:
            self._dead = True
            self._drop_handles()

    def __del__(self) -> None:
        if getattr(self, "_released", True) or sys.is_finalizing():
            return
        try:
            self.release()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    def __repr__(self) -> str:
        state = "released" if self.released else f"model {self._model_id}"
        return f"AxclSession({self.path!r}, {self.device}, {state})"

