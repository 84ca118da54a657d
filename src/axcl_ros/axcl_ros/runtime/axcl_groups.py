"""Shape groups and caller-owned device memory on an AX650N card: what a per-layer LLM runner needs.

AXCL's variable-length mechanism is the shape group (``axcl_api.md`` §1.5, ``vlm.md``): a compiled model holds
several static shape sets; ``axclrtEngineGetShapeGroupsCount`` says how many, ``Get{Input,Output}{SizeByIndex,Dims}``
take a group, ``axclrtEngineCreateIO`` takes none and ``axclrtEngineExecute`` takes the group to run. AXERA's runner
makes one IO set per group and binds device buffers it owns — at offsets inside larger allocations (a position's
row of the KV cache), the same buffer as one layer's output and the next layer's input.

* :class:`DeviceBuffer` — one ``axclrtMalloc`` allocation: H2D writes, D2H reads, memset, offset pointers.
* :class:`GroupedModel` — a loaded model with every group's tensor shapes and one IO set per group; the caller
  binds device addresses (:meth:`GroupedModel.bind`) and executes a group (:meth:`GroupedModel.execute`).

Both register with the :class:`~.axcl.AxclRuntime` so a runtime restart invalidates them and shutdown frees them.
Every call first makes the device's context current on the calling thread.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from .axcl import AxclRuntime, get_runtime
from .axcl_abi import D2D, D2H, DTYPE_NAMES, H2D, AxclError, AxclLoadError, IODims, MallocPolicy
from .base import DeviceError, InputMismatchError, ModelLoadError

__all__ = ["DeviceBuffer", "GroupTensor", "GroupedModel"]


class DeviceBuffer:
    """``nbytes`` of device memory on card ``device_index`` (zeroed), freed by :meth:`free` (idempotent)."""

    def __init__(self, nbytes: int, device_index: int = 0, runtime: Optional[AxclRuntime] = None) -> None:
        self.nbytes = int(nbytes)
        if self.nbytes <= 0:
            raise ValueError(f"a device buffer needs a positive size, got {nbytes}")
        self.device_index = int(device_index)
        self._rt = runtime if runtime is not None else get_runtime()
        self._gen = self._rt.generation
        self.ptr = 0
        rt = self._rt
        rt.ensure_thread_context(self.device_index)
        ptr = ctypes.c_void_p()
        rt.lib.check("axclrtMalloc", ctypes.byref(ptr), self.nbytes, int(MallocPolicy.HUGE_FIRST))
        try:
            rt.lib.check("axclrtMemset", ptr, 0, self.nbytes)
        except AxclError:
            rt.lib.call("axclrtFree", ptr)
            raise
        self.ptr = int(ptr.value)
        rt.register(self)

    def at(self, byte_offset: int, nbytes: int = 0) -> int:
        """Device address ``byte_offset`` bytes in (``nbytes`` from there must fit)."""
        if byte_offset < 0 or nbytes < 0 or byte_offset + nbytes > self.nbytes:
            raise InputMismatchError(f"{nbytes} bytes at offset {byte_offset} do not fit a {self.nbytes}-byte "
                                     f"device buffer")
        self._ready()
        return self.ptr + int(byte_offset)

    def write(self, array: np.ndarray, byte_offset: int = 0) -> None:
        """H2D-copy ``array`` (C order) to ``byte_offset``."""
        host = np.ascontiguousarray(array)
        dst = self.at(byte_offset, host.nbytes)
        self._rt.ensure_thread_context(self.device_index)
        self._rt.lib.check("axclrtMemcpy", dst, host.ctypes.data, host.nbytes, H2D)

    def read(self, out: np.ndarray, byte_offset: int = 0) -> np.ndarray:
        """D2H-copy ``out.nbytes`` bytes from ``byte_offset`` into the C-contiguous host array ``out``."""
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError("read() needs a writeable C-contiguous host array")
        src = self.at(byte_offset, out.nbytes)
        self._rt.ensure_thread_context(self.device_index)
        self._rt.lib.check("axclrtMemcpy", out.ctypes.data, src, out.nbytes, D2H)
        return out

    def copy_from(self, src: DeviceBuffer, byte_offset: int = 0, src_offset: int = 0,
                  nbytes: Optional[int] = None) -> None:
        """Device-to-device copy of ``nbytes`` (default: all of ``src`` from ``src_offset``) to ``byte_offset``."""
        count = src.nbytes - src_offset if nbytes is None else int(nbytes)
        dst, from_ = self.at(byte_offset, count), src.at(src_offset, count)
        if count:
            self._rt.ensure_thread_context(self.device_index)
            self._rt.lib.check("axclrtMemcpy", dst, from_, count, D2D)

    def fill(self, value: int, byte_offset: int = 0, nbytes: Optional[int] = None) -> None:
        """``axclrtMemset`` ``nbytes`` (default: to the end) from ``byte_offset`` to byte ``value`` (no PCIe)."""
        count = self.nbytes - byte_offset if nbytes is None else int(nbytes)
        dst = self.at(byte_offset, count)
        if count:
            self._rt.ensure_thread_context(self.device_index)
            self._rt.lib.check("axclrtMemset", dst, int(value) & 0xFF, count)

    def free(self) -> None:
        """Free the memory (idempotent; skipped when a runtime restart already dropped it)."""
        if not self.ptr:
            return
        ptr, self.ptr = self.ptr, 0
        rt = self._rt
        rt.unregister(self)
        if self._gen == rt.generation and not rt.closed:
            rt.ensure_thread_context(self.device_index)
            rt.lib.check("axclrtFree", ptr)

    release = free

    @property
    def released(self) -> bool:
        return not self.ptr

    def _ready(self) -> None:
        if not self.ptr:
            raise DeviceError("device buffer was freed")
        if self._gen != self._rt.generation:
            raise DeviceError("device buffer was invalidated by an AXCL runtime restart")

    def _invalidate(self) -> None:
        self.ptr = 0

    def __del__(self) -> None:
        if getattr(self, "ptr", 0) and not sys.is_finalizing():
            try:
                self.free()
            except Exception:  # noqa: BLE001 - never raise from a finalizer
                pass


@dataclass(frozen=True)
class GroupTensor:
    """One input or output: name, index, numpy dtype (bf16 as ``uint16``), and per group its shape and the byte
    size the model reports."""

    name: str
    index: int
    dtype: np.dtype
    shapes: Tuple[Tuple[int, ...], ...]
    sizes: Tuple[int, ...]


class GroupedModel:
    """One loaded ``.axmodel`` with all its shape groups and one engine IO set per group (nothing bound).

    Raises :class:`~.base.ModelLoadError` / :class:`~.axcl_abi.AxclLoadError` when loading fails, and
    :class:`~.axcl_abi.AxclError` when a later call fails (e.g. executing a group with a buffer bound that is
    smaller than the group needs).
    """

    def __init__(self, path: Union[str, os.PathLike], device_index: int = 0,
                 runtime: Optional[AxclRuntime] = None) -> None:
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise ModelLoadError(f"model file {self.path!r} does not exist")
        self.device_index = int(device_index)
        self._rt = runtime if runtime is not None else get_runtime()
        self._lock = threading.Lock()
        self._model_id: Optional[int] = None
        self._ctx_id = 0
        self._info = 0
        self._ios: List[int] = []
        self.inputs: Dict[str, GroupTensor] = {}
        self.outputs: Dict[str, GroupTensor] = {}
        self.n_groups = 0
        rt = self._rt
        with rt._lock:
            rt.prepare_device(self.device_index)
            self._gen = rt.generation
            try:
                self._load()
            except BaseException as exc:
                rt.note_failure(exc)
                self._free(quiet=True)
                raise
            rt.register(self)

    def _load(self) -> None:
        lib = self._rt.lib
        mid = ctypes.c_uint64()
        rc = lib.call("axclrtEngineLoadFromFile", self.path.encode(), ctypes.byref(mid))
        if rc:
            raise AxclLoadError("axclrtEngineLoadFromFile", rc, f"loading {self.path!r}")
        self._model_id = int(mid.value)
        self._ctx_id, self._info = lib.context_and_io_info(self._model_id)
        groups = ctypes.c_int32(1)
        if lib.has("axclrtEngineGetShapeGroupsCount"):
            lib.check("axclrtEngineGetShapeGroupsCount", self._info, ctypes.byref(groups))
        self.n_groups = int(groups.value)
        if self.n_groups < 1:
            raise ModelLoadError(f"{self.path!r} reports {self.n_groups} shape groups")
        for is_input, table in ((True, self.inputs), (False, self.outputs)):
            kind = "Input" if is_input else "Output"
            n = self._count(f"axclrtEngineGetNum{kind}s", self._info)
            for i in range(n):
                t = self._read_tensor(kind, i)
                table[t.name] = t
        if not self.inputs or not self.outputs:
            raise ModelLoadError(f"{self.path!r} reports {len(self.inputs)} inputs and {len(self.outputs)} outputs")
        for _ in range(self.n_groups):  # AXERA's pattern: one IO set per group from the one IO info
            io = ctypes.c_void_p()
            lib.check("axclrtEngineCreateIO", self._info, ctypes.byref(io))
            self._ios.append(int(io.value))
            if lib.has("axclrtEngineSetDynamicBatchSize"):
                lib.call("axclrtEngineSetDynamicBatchSize", self._ios[-1], 1)

    def _read_tensor(self, kind: str, i: int) -> GroupTensor:
        lib, info = self._rt.lib, self._info
        name = lib.text(f"axclrtEngineGet{kind}NameByIndex", info, i) or f"{kind.lower()}{i}"
        dt = ctypes.c_int()
        lib.check(f"axclrtEngineGet{kind}DataType", info, i, ctypes.byref(dt))
        np_name = DTYPE_NAMES.get(dt.value)
        if np_name is None:
            raise ModelLoadError(f"{self.path!r}: {kind.lower()} {name!r} has AXCL data type {dt.value}, which this "
                                 f"backend cannot exchange with numpy")
        shapes, sizes = [], []
        for g in range(self.n_groups):
            dims = IODims()
            lib.check(f"axclrtEngineGet{kind}Dims", info, g, i, ctypes.byref(dims))
            shapes.append(tuple(int(dims.dims[k]) for k in range(max(0, min(int(dims.dimCount), len(dims.dims))))))
            sizes.append(self._count(f"axclrtEngineGet{kind}SizeByIndex", info, g, i, bits=64))
        return GroupTensor(name, i, np.dtype(np_name), tuple(shapes), tuple(sizes))

    def _count(self, name: str, *args, bits: int = 32) -> int:
        return self._rt.lib.model_count(name, *args, model_path=self.path, bits=bits)

    # -- use ----------------------------------------------------------------------------------------------------------
    def tensor(self, name: str) -> GroupTensor:
        """The input or output ``name`` (inputs first when a name is both)."""
        t = self.inputs.get(name) or self.outputs.get(name)
        if t is None:
            raise InputMismatchError(f"{self.path}: no tensor {name!r}; inputs {list(self.inputs)}, outputs "
                                     f"{list(self.outputs)}")
        return t

    def bind(self, group: int, name: str, address: int, nbytes: int, output: bool = False) -> None:
        """Bind device ``address`` (``nbytes`` usable from there) as input (or ``output``) ``name`` of ``group``'s
        IO set (``axclrtEngineSet{Input,Output}BufferByIndex``)."""
        table = self.outputs if output else self.inputs
        t = table.get(name)
        if t is None:
            raise InputMismatchError(f"{self.path}: no {'output' if output else 'input'} {name!r}")
        self._ready()
        fn = "axclrtEngineSetOutputBufferByIndex" if output else "axclrtEngineSetInputBufferByIndex"
        self._rt.lib.check(fn, self._ios[group], t.index, address, int(nbytes), detail=f"{self.path} {name}")

    def execute(self, group: int = 0) -> None:
        """Run ``group`` on what its IO set is bound to (``axclrtEngineExecute``; synchronous)."""
        if not 0 <= group < self.n_groups:
            raise InputMismatchError(f"{self.path}: group {group} not in 0..{self.n_groups - 1}")
        self._ready()
        try:
            self._rt.lib.check("axclrtEngineExecute", ctypes.c_uint64(self._model_id), ctypes.c_uint64(self._ctx_id),
                               group, self._ios[group], detail=f"model {self.path!r} group {group}")
        except AxclError as exc:
            self._rt.note_failure(exc)
            raise

    def release(self) -> None:
        """Destroy the IO sets and the IO info, unload the model (idempotent)."""
        with self._lock:
            if self._model_id is None and not self._info:
                return
            self._rt.unregister(self)
            self._free(quiet=False)

    @property
    def released(self) -> bool:
        return self._model_id is None

    def _ready(self) -> None:
        if self._model_id is None:
            raise DeviceError(f"{self.path!r} was released")
        if self._gen != self._rt.generation:
            raise DeviceError(f"{self.path!r} was invalidated by an AXCL runtime restart; load it again")
        self._rt.ensure_thread_context(self.device_index)

    def _free(self, quiet: bool) -> None:
        rt, lib = self._rt, self._rt.lib
        errors: List[AxclError] = []
        if self._gen == rt.generation and not rt.closed:
            try:
                rt.ensure_thread_context(self.device_index)
                for io in self._ios:
                    rc = lib.call("axclrtEngineDestroyIO", io)
                    if rc:
                        errors.append(AxclError("axclrtEngineDestroyIO", rc))
                if self._info:
                    rc = lib.call("axclrtEngineDestroyIOInfo", self._info)
                    if rc:
                        errors.append(AxclError("axclrtEngineDestroyIOInfo", rc))
                if self._model_id is not None:
                    rc = lib.call("axclrtEngineUnload", ctypes.c_uint64(self._model_id))
                    if rc:
                        errors.append(AxclError("axclrtEngineUnload", rc))
            except AxclError as exc:
                errors.append(exc)
        self._invalidate()
        if errors and not quiet:
            rt.note_failure(errors[0])
            raise errors[0]

    def _invalidate(self) -> None:
        self._ios = []
        self._info = 0
        self._model_id = None

    def __del__(self) -> None:
        if getattr(self, "_model_id", None) is not None and not sys.is_finalizing():
            try:
                self.release()
            except Exception:  # noqa: BLE001 - never raise from a finalizer
                pass
