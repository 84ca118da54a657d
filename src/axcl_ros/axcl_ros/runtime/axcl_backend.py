"""AXCL backend: run ``.axmodel`` files on an AX650N card through :mod:`axcl_ros.runtime.axcl`.

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
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .axcl import AxclRuntime, get_runtime
from .axcl_abi import (
    DTYPE_NAMES,
    LAYOUT_NAMES,
    AxclError,
    AxclLoadError,
    DataType,
    IODims,
    MallocPolicy,
    MemcpyKind,
    decode_error,
)
from .axcl_library import ASYNC_FUNCTIONS, INSTALL_HINT
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

__all__ = ["AxclBackend", "AxclSession", "InvalidDeviceError", "parse_device"]

log = logging.getLogger(__name__)

_H2D = int(MemcpyKind.HOST_TO_DEVICE)
_D2H = int(MemcpyKind.DEVICE_TO_HOST)
_D2D = int(MemcpyKind.DEVICE_TO_DEVICE)


class InvalidDeviceError(BackendError, ValueError):
    """The ``device`` string is not an AXCL card index (``""``, ``"0"``, ``"axcl:1"``)."""


def parse_device(device: Union[str, int, None]) -> int:
    """Card index from ``""``/``None`` (0), an int, ``"1"`` or ``"axcl:1"``."""
    if device is None or (isinstance(device, str) and not device.strip()):
        return 0
    if isinstance(device, int) and not isinstance(device, bool):
        index = device
    else:
        text = str(device).strip().lower()
        if text.startswith("axcl:"):
            text = text[5:]
        if not text.isdigit():
            raise InvalidDeviceError(f"AXCL device {device!r} is not a card index; use '0', '1' or 'axcl:1'")
        index = int(text)
    if index < 0:
        raise InvalidDeviceError(f"AXCL device index {index} must be >= 0")
    return index


@dataclass
class _Buffer:
    spec: TensorSpec
    index: int
    size: int  # bytes the IO info reports (>= spec.nbytes)
    ptr: int = 0  # device address bound to the IO
    own: int = 0  # our allocation (0 when borrowed from another session)
    source: Optional[Tuple[AxclSession, str]] = None
    host: Optional[np.ndarray] = None


@dataclass
class _IOSet:
    """One extra IO set of a session for the pipelined path: device buffers, engine IO, stream, host outputs."""

    ins: List[int] = field(default_factory=list)  # device addresses, in input order
    outs: List[int] = field(default_factory=list)
    io: int = 0
    stream: int = 0
    host: Dict[str, np.ndarray] = field(default_factory=dict)
    feeds: Optional[Mapping[str, np.ndarray]] = None  # kept alive until the stream is synchronized
    names: Tuple[str, ...] = ()
    busy: bool = False


class AxclSession(Session):
    """One loaded ``.axmodel`` on one card, with its device buffers.

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
        self._sets: List[_IOSet] = []
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
        cid = ctypes.c_uint64()
        lib.check("axclrtEngineCreateContext", ctypes.c_uint64(self._model_id), ctypes.byref(cid))
        self._ctx_id = int(cid.value)
        info = ctypes.c_void_p()
        lib.check("axclrtEngineGetIOInfo", ctypes.c_uint64(self._model_id), ctypes.byref(info))
        self._info = int(info.value)
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
        """A count/size getter's value; its error code (returned as the value) becomes an :class:`AxclLoadError`."""
        try:
            return self._rt.lib.count(name, *args, bits=bits)
        except AxclError as exc:
            raise AxclLoadError(name, exc.code, f"reading the IO info of {self.path!r}") from None

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
                    self._memcpy(buf.ptr, host.ctypes.data, host.nbytes, _H2D)
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

    # -- device-resident API ------------------------------------------------------------------------------------------
    def execute(self) -> None:
        """Run the model on what the device buffers hold (no copies)."""
        with self._lock:
            self._ready()
            self._guard(self._execute)

    def read_output(self, name: str) -> np.ndarray:
        """Copy output ``name`` to its reused host array and return it."""
        buf = self._output(name)
        with self._lock:
            self._ready()
            return self._guard(self._read, buf)

    def write_input(self, name: str, array: np.ndarray, byte_offset: int = 0) -> None:
        """H2D-copy ``array`` (the input's dtype, C order) into input ``name`` starting ``byte_offset`` bytes in."""
        buf = self._input(name)
        host = np.ascontiguousarray(array)
        spec = buf.spec
        if host.dtype != spec.dtype:
            raise InputMismatchError(f"write_input {name!r}: array dtype {host.dtype.name}, the input is "
                                     f"{spec.describe()}")
        self._check_range(f"write_input {name!r}", byte_offset, host.nbytes, spec)
        with self._lock:
            self._ready()
            self._guard(self._memcpy, buf.ptr + byte_offset, host.ctypes.data, host.nbytes, _H2D)

    def fill_input(self, name: str, value: int = 0) -> None:
        """Set every byte of input ``name`` on the device to ``value`` (``axclrtMemset``; nothing crosses PCIe)."""
        buf = self._input(name)
        if not 0 <= int(value) <= 255:
            raise InputMismatchError(f"fill_input {name!r}: byte value {value} not in 0..255")
        with self._lock:
            self._ready()
            self._guard(self._rt.lib.check, "axclrtMemset", buf.ptr, int(value), buf.spec.nbytes)

    def copy_output_to_input(self, output_name: str, input_name: str, dst_byte_offset: int = 0,
                             src_byte_offset: int = 0, nbytes: Optional[int] = None) -> None:
        """Device-to-device copy of output ``output_name`` (or ``nbytes`` of it from ``src_byte_offset``) into
        input ``input_name`` at ``dst_byte_offset``."""
        src, dst = self._output(output_name), self._input(input_name)
        count = src.spec.nbytes - src_byte_offset if nbytes is None else int(nbytes)
        self._check_range(f"copy_output_to_input source {output_name!r}", src_byte_offset, count, src.spec)
        self._check_range(f"copy_output_to_input destination {input_name!r}", dst_byte_offset, count, dst.spec)
        with self._lock:
            self._ready()
            self._guard(self._memcpy, dst.ptr + dst_byte_offset, src.ptr + src_byte_offset, count, _D2D)

    def device_buffer(self, name: str, kind: str = "") -> Tuple[int, int]:
        """``(device address, nbytes)`` of input or output ``name`` (``kind`` ``"input"``/``"output"`` when a name
        is both)."""
        if kind not in ("", "input", "output"):
            raise ValueError(f"kind {kind!r} must be '', 'input' or 'output'")
        in_buf = self._in_by_name.get(name) if kind in ("", "input") else None
        out_buf = self._out_by_name.get(name) if kind in ("", "output") else None
        if in_buf is not None and out_buf is not None:
            raise InputMismatchError(f"{name!r} is both an input and an output; pass kind='input' or 'output'")
        buf = in_buf or out_buf
        if buf is None:
            raise InputMismatchError(f"no tensor {name!r}; inputs {list(self._in_by_name)}, outputs "
                                     f"{list(self._out_by_name)}")
        self._ready_state()
        return buf.ptr, buf.spec.nbytes

    def bind_input_to(self, name: str, other: AxclSession, output_name: str) -> None:
        """Use ``other``'s output ``output_name`` device buffer as this session's input ``name`` (zero copy).

        Both sessions must be on the same card and the tensors must have the same shape and dtype. This session's
        own buffer for ``name`` is freed; ``other`` must stay loaded while the binding is used.
        """
        if not isinstance(other, AxclSession):
            raise TypeError(f"bind_input_to needs an AxclSession, got {type(other).__name__}")
        dst, src = self._input(name), other._output(output_name)
        if other._rt is not self._rt or other.device_index != self.device_index:
            raise InputMismatchError(f"cannot bind {name!r} of {self.path} ({self.device}) to {output_name!r} of "
                                     f"{other.path} ({other.device}): different devices")
        if tuple(src.spec.shape) != tuple(dst.spec.shape) or src.spec.dtype != dst.spec.dtype:
            raise InputMismatchError(f"cannot bind input {dst.spec.describe()} to output {src.spec.describe()}")
        if src.size < dst.size:
            raise InputMismatchError(f"cannot bind input {name!r} ({dst.size} bytes on the device) to output "
                                     f"{output_name!r} ({src.size} bytes)")
        other._ready_state()
        with self._lock:
            self._ready()
            lib = self._rt.lib
            self._guard(lib.check, "axclrtEngineSetInputBufferByIndex", self._io, dst.index, src.ptr, dst.size)
            if dst.own:
                own, dst.own = dst.own, 0
                self._guard(lib.check, "axclrtFree", own)
            dst.ptr = src.ptr
            dst.source = (other, output_name)

    def unbind_input(self, name: str) -> None:
        """Give input ``name`` its own zeroed device buffer again (undo :meth:`bind_input_to`)."""
        dst = self._input(name)
        with self._lock:
            if dst.source is None:
                return
            self._ready_state()
            self._rt.ensure_thread_context(self.device_index)
            ptr = self._guard(self._malloc, dst.size)
            try:
                self._guard(self._rt.lib.check, "axclrtEngineSetInputBufferByIndex", self._io, dst.index, ptr,
                            dst.size)
            except AxclError:
                self._rt.lib.call("axclrtFree", ptr)
                raise
            dst.own = dst.ptr = ptr
            dst.source = None

    # -- copy/compute overlap -----------------------------------------------------------------------------------------
    @property
    def supports_pipelining(self) -> bool:
        """True when the library exports the stream API the pipelined path needs."""
        return all(self._rt.lib.has(n) for n in ASYNC_FUNCTIONS)

    @property
    def io_sets(self) -> int:
        """Number of extra IO sets allocated for the pipelined path (0 until it is first used)."""
        return len(self._sets)

    def launch(self, feeds: Mapping[str, np.ndarray], output_names: Optional[Sequence[str]] = None,
               depth: int = 2) -> int:
        """Queue upload → execute → download of one run on the next of ``depth`` IO sets; return its ticket.

        Returns at once (asynchronous API). Every input must be fed; ``feeds`` must stay unchanged until
        :meth:`collect`. Tickets are collected in any order, each once; launching onto a set whose previous run was
        not collected raises :class:`InputMismatchError`.
        """
        check_feeds(self._inputs, feeds, require_all=True)
        outs = self._outputs_named(output_names)
        with self._lock:
            self._ready()
            self._guard(self._ensure_sets, max(1, int(depth)))
            ticket = self._next_set % len(self._sets)
            st = self._sets[ticket]
            if st.busy:
                raise InputMismatchError(f"IO set {ticket} of {self.path!r} still holds an uncollected run; collect() "
                                         f"it before launching more than {len(self._sets)} runs")
            lib = self._rt.lib
            hosts = {name: np.ascontiguousarray(a) for name, a in feeds.items()}
            try:
                for buf in self._in:
                    host = hosts[buf.spec.name]
                    lib.check("axclrtMemcpyAsync", st.ins[buf.index], host.ctypes.data, host.nbytes, _H2D, st.stream)
                lib.check("axclrtEngineExecuteAsync", ctypes.c_uint64(self._model_id), ctypes.c_uint64(self._ctx_id),
                          0, st.io, st.stream, detail=f"model {self.path!r}")
                for buf in outs:
                    host = st.host.get(buf.spec.name)
                    if host is None:
                        host = st.host[buf.spec.name] = np.empty(buf.spec.shape, dtype=buf.spec.dtype)
                    lib.check("axclrtMemcpyAsync", host.ctypes.data, st.outs[buf.index], buf.spec.nbytes, _D2H,
                              st.stream)
            except AxclError as exc:
                self._rt.note_failure(exc)
                self._rt.lib.call("axclrtSynchronizeStream", st.stream)  # nothing may still write to our arrays
                raise
            st.feeds, st.names, st.busy = hosts, tuple(b.spec.name for b in outs), True
            self._next_set = ticket + 1
            return ticket

    def collect(self, ticket: int) -> dict:
        """Wait for the run of :meth:`launch`'s ``ticket`` and return its outputs (arrays reused by the set's next
        run)."""
        with self._lock:
            self._ready_state()
            if not 0 <= ticket < len(self._sets) or not self._sets[ticket].busy:
                raise InputMismatchError(f"ticket {ticket!r} of {self.path!r} has no run to collect")
            st = self._sets[ticket]
            self._rt.ensure_thread_context(self.device_index)
            try:
                self._guard(self._rt.lib.check, "axclrtSynchronizeStream", st.stream)
            finally:
                st.busy, st.feeds = False, None
            return {name: st.host[name] for name in st.names}

    def run_pipelined(self, feeds: Iterable[Mapping[str, np.ndarray]], output_names: Optional[Sequence[str]] = None,
                      depth: int = 2) -> Iterator[dict]:
        """Run every item of ``feeds`` with up to ``depth`` runs in flight; yield outputs in order.

        A yielded dict's arrays are reused ``depth`` runs later: copy what must outlive that. Runs still in flight
        when the generator is closed are collected (waited for) before it returns.
        """
        inflight: Deque[int] = deque()
        try:
            for item in feeds:
                if len(inflight) >= depth:
                    yield self.collect(inflight.popleft())
                inflight.append(self.launch(item, output_names, depth))
            while inflight:
                yield self.collect(inflight.popleft())
        finally:
            while inflight:
                try:
                    self.collect(inflight.popleft())
                except Exception:  # noqa: BLE001 - already failing or closing: only drain
                    pass

    def _ensure_sets(self, depth: int) -> None:  # lock held, context current
        if not self.supports_pipelining:
            missing = [n for n in ASYNC_FUNCTIONS if not self._rt.lib.has(n)]
            raise DeviceError(f"{self._rt.lib.path} lacks {missing}: no pipelined path; use run()")
        while len(self._sets) < depth:
            st = _IOSet()
            try:
                self._build_set(st)
            except AxclError:
                self._free_set(st, lambda name, *args: self._rt.lib.call(name, *args))
                raise
            self._sets.append(st)

    def _build_set(self, st: _IOSet) -> None:  # lock held, context current; _free_set undoes a partial build
        lib = self._rt.lib
        for buf in self._in:
            st.ins.append(self._malloc(buf.size))
        for buf in self._out:
            st.outs.append(self._malloc(buf.size))
        io = ctypes.c_void_p()
        lib.check("axclrtEngineCreateIO", self._info, ctypes.byref(io))
        st.io = int(io.value)
        if lib.has("axclrtEngineSetDynamicBatchSize"):
            lib.call("axclrtEngineSetDynamicBatchSize", st.io, 1)
        for buf in self._in:
            lib.check("axclrtEngineSetInputBufferByIndex", st.io, buf.index, st.ins[buf.index], buf.size)
        for buf in self._out:
            lib.check("axclrtEngineSetOutputBufferByIndex", st.io, buf.index, st.outs[buf.index], buf.size)
        stream = ctypes.c_void_p()
        lib.check("axclrtCreateStream", ctypes.byref(stream))
        st.stream = int(stream.value)

    @staticmethod
    def _free_set(st: _IOSet, attempt) -> None:  # context current
        if st.stream:
            attempt("axclrtSynchronizeStream", st.stream)
            attempt("axclrtDestroyStream", st.stream)
        if st.io:
            attempt("axclrtEngineDestroyIO", st.io)
        for ptr in st.ins + st.outs:
            attempt("axclrtFree", ptr)
        st.stream = st.io = 0
        st.ins, st.outs = [], []

    def _free_sets(self, attempt) -> None:  # context current
        for st in self._sets:
            self._free_set(st, attempt)
        self._sets = []

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
        self._memcpy(buf.host.ctypes.data, buf.ptr, buf.spec.nbytes, _D2H)
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


class AxclBackend(Backend):
    """Backend for ``.axmodel`` files on AXERA AX650N cards via ``libaxcl_rt.so`` (``device`` = card index)."""

    name = "axcl"
    suffixes = (".axmodel",)

    def __init__(self, runtime: Optional[AxclRuntime] = None) -> None:
        self._runtime = runtime

    def runtime(self) -> AxclRuntime:
        """The runtime this backend uses (the process-wide one unless given)."""
        if self._runtime is not None and not self._runtime.closed:
            return self._runtime
        return get_runtime()

    def available(self) -> Tuple[bool, str]:
        """``(True, "")`` when the library loads, ``axclInit`` works and at least one card is listed."""
        try:
            rt = self.runtime()
        except BackendUnavailableError as exc:
            return False, str(exc)
        except AxclError as exc:
            return False, f"AXCL initialisation failed: {exc}; {INSTALL_HINT}"
        if rt.device_count == 0:
            return False, ("axclrtGetDeviceList lists no AXCL card: check `lspci` (Axera 1f4b:0650), that the "
                           "axcl_host driver is loaded and /dev/axcl_host exists, and `axcl-smi`")
        return True, ""

    def load(self, path: str, device: str = "") -> AxclSession:
        """Load ``path`` on card index ``device`` (``""`` → 0, ``"1"``, ``"axcl:1"``)."""
        index = parse_device(device)
        return AxclSession(path, index, runtime=self.runtime())

    def device_properties(self, device: str = "") -> Dict[str, object]:
        """Telemetry of a card (see :meth:`AxclRuntime.device_properties`)."""
        return self.runtime().device_properties(parse_device(device))
