"""ctypes binding to AXERA's AXCL runtime (``libaxcl_rt.so``) and the process-wide :class:`AxclRuntime`.

Declarations are written from AXERA's public AXCL documentation (types, enums, struct layouts, signatures, error
encoding); no AXERA header or library is vendored. Only the standard library and numpy-free ctypes are used here.

Threading: AXCL binds a context to the calling thread. :meth:`AxclRuntime.ensure_thread_context` must run on a thread
before that thread makes any memory or engine call (sessions do it at the start of every public method). ctypes
releases the GIL during foreign calls, so several threads can keep the card busy.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import enum
import glob
import io
import logging
import os
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .base import BackendUnavailableError, DeviceError, ModelLoadError

__all__ = [
    "AxclError", "AxclLoadError", "AxclErrorInfo", "AxclLib", "AxclRuntime", "DataType", "DataLayout", "DeviceList",
    "DeviceProperties", "IODims", "MemcpyKind", "ModelKind", "VNpuKind", "decode_error", "library_candidates",
    "open_library", "get_runtime", "shutdown_runtime",
]

log = logging.getLogger(__name__)

LIB_NAME = "libaxcl_rt.so"
DEFAULT_LIB_DIR = "/usr/lib/axcl"
ENV_LIB_PATH = "AXCL_LIB_PATH"
ENV_CONFIG = "AXCL_CONFIG"
ENV_VNPU = "AXCL_VNPU"
#: config files AXERA's tools pass to ``axclInit`` (first that exists is used; ``AXCL_CONFIG`` overrides, "" = none)
DEFAULT_CONFIGS = ("/usr/bin/axcl/axcl.json", "/usr/local/axcl/axcl.json")
#: dependency chain of libaxcl_rt.so in load order (for hosts whose loader cache lacks /usr/lib/axcl)
PRELOAD_CHAIN = ("libspdlog.so*", "libaxcl_logger.so", "libaxcl_token.so", "libaxcl_pcie_msg.so",
                 "libaxcl_pcie_dma.so", "libaxcl_comm.so", "libaxcl_pkg.so")
INSTALL_HINT = ("install AXERA's axclhost package (deb/rpm; libraries in /usr/lib/axcl), check that the card is "
                f"listed by `axcl-smi`, or set {ENV_LIB_PATH} to libaxcl_rt.so or its folder")


# ---------------------------------------------------------------------------------------------------------------------
# documented enums and structs
# ---------------------------------------------------------------------------------------------------------------------
class MemcpyKind(enum.IntEnum):
    """``axclrtMemcpyKind``."""

    HOST_TO_HOST = 0
    HOST_TO_DEVICE = 1
    DEVICE_TO_HOST = 2
    DEVICE_TO_DEVICE = 3
    HOST_PHY_TO_DEVICE = 4
    DEVICE_TO_HOST_PHY = 5


class MallocPolicy(enum.IntEnum):
    """``axclrtMemMallocPolicy`` (documented as currently unused by the runtime)."""

    HUGE_FIRST = 0
    HUGE_ONLY = 1
    NORMAL_ONLY = 2
    SIZE_ALIGN = 3


class VNpuKind(enum.IntEnum):
    """``axclrtEngineVNpuKind``: how the 3 NPU core groups are split into virtual NPUs."""

    DISABLE = 0
    ENABLE = 1
    BIG_LITTLE = 2
    LITTLE_BIG = 3

    @property
    def max_cores(self) -> int:
        """Largest core count a model may be compiled for in this mode (DISABLE 3, ENABLE 1, 2+1 / 1+2 → 2)."""
        return {VNpuKind.DISABLE: 3, VNpuKind.ENABLE: 1}.get(self, 2)

    @classmethod
    def parse(cls, value) -> VNpuKind:
        """Accept a member, its value or its name (case-insensitive, ``std`` = ENABLE)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, int):
            return cls(value)
        key = str(value).strip().upper().replace("-", "_")
        if key in ("", "DEFAULT"):
            return cls.DISABLE
        if key == "STD":
            return cls.ENABLE
        if key.isdigit():
            return cls(int(key))
        try:
            return cls[key]
        except KeyError:
            raise ValueError(f"VNPU kind {value!r} not in {[m.name.lower() for m in cls]}") from None


class ModelKind(enum.IntEnum):
    """``axclrtEngineModelKind``: the number of NPU cores a model was compiled for, minus one."""

    CORE1 = 0
    CORE2 = 1
    CORE3 = 2


class DataType(enum.IntEnum):
    """``axclrtEngineDataType``."""

    NONE = 0
    INT4 = 1
    UINT4 = 2
    INT8 = 3
    UINT8 = 4
    INT16 = 5
    UINT16 = 6
    INT32 = 7
    UINT32 = 8
    INT64 = 9
    UINT64 = 10
    FP4 = 11
    FP8 = 12
    FP16 = 13
    BF16 = 14
    FP32 = 15
    FP64 = 16


class DataLayout(enum.IntEnum):
    """``axclrtEngineDataLayout`` (NHWC = 1, NCHW = 2)."""

    NONE = 0
    NHWC = 1
    NCHW = 2


#: DataType → numpy dtype name; BF16 is exposed as raw ``uint16`` bits (numpy has no bfloat16)
DTYPE_NAMES: Dict[int, str] = {
    DataType.INT8: "int8", DataType.UINT8: "uint8", DataType.INT16: "int16", DataType.UINT16: "uint16",
    DataType.INT32: "int32", DataType.UINT32: "uint32", DataType.INT64: "int64", DataType.UINT64: "uint64",
    DataType.FP16: "float16", DataType.BF16: "uint16", DataType.FP32: "float32", DataType.FP64: "float64",
}
LAYOUT_NAMES: Dict[int, str] = {DataLayout.NHWC: "NHWC", DataLayout.NCHW: "NCHW"}

AXCL_MAX_DEVICE_COUNT = 256
AXCLRT_ENGINE_MAX_DIM_CNT = 32


class DeviceList(ctypes.Structure):
    """``axclrtDeviceList`` (1028 bytes)."""

    _fields_ = [("num", ctypes.c_uint32), ("devices", ctypes.c_int32 * AXCL_MAX_DEVICE_COUNT)]


class IODims(ctypes.Structure):
    """``axclrtEngineIODims`` (132 bytes)."""

    _fields_ = [("dimCount", ctypes.c_int32), ("dims", ctypes.c_int32 * AXCLRT_ENGINE_MAX_DIM_CNT)]


class DeviceProperties(ctypes.Structure):
    """``axclrtDeviceProperties`` (natural alignment, uid at offset 64, 240 bytes)."""

    _fields_ = [
        ("swVersion", ctypes.c_char * 64), ("uid", ctypes.c_uint64), ("pciDomain", ctypes.c_uint32),
        ("pciBusID", ctypes.c_uint32), ("pciDeviceID", ctypes.c_uint32), ("temperature", ctypes.c_int32),
        ("totalMemSize", ctypes.c_uint32), ("freeMemSize", ctypes.c_uint32), ("totalCmmSize", ctypes.c_uint32),
        ("freeCmmSize", ctypes.c_uint32), ("cpuLoading", ctypes.c_uint32), ("npuLoading", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 32),
    ]


# ---------------------------------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------------------------------
MODULE_NAMES = {0: "runtime", 1: "native", 2: "lite"}
RUNTIME_SUBMODULE_NAMES = {1: "device", 2: "context", 3: "stream", 4: "task", 5: "memory", 6: "config", 7: "engine",
                           8: "syslog", 9: "sysctrl", 0x0A: "latency", 0x0B: "p2p", 0x0C: "user work"}
ERRID_NAMES = {
    0x01: "failure", 0x02: "null pointer", 0x03: "illegal parameter", 0x04: "not supported", 0x05: "timeout",
    0x06: "busy", 0x07: "out of memory", 0x08: "encode failed", 0x09: "decode failed", 0x0A: "unexpected response",
    0x0B: "open failed", 0x0C: "execute failed",
}
#: module-specific error ids (sub-module, errid) of the runtime module (V3.10.2 headers, axcl_api.md §1.9)
SPECIFIC_ERRID_NAMES = {
    (1, 0x80): "query device failed", (1, 0x81): "no connection", (1, 0x82): "probe failed",
    (1, 0x83): "device not active", (1, 0x84): "invalid device id", (1, 0x85): "no active device",
    (1, 0x86): "port allocation failed", (1, 0x87): "device rebooting", (1, 0x88): "port destroy failed",
    (2, 0x81): "context create failed", (2, 0x82): "context destroy failed", (2, 0x83): "bind context to thread failed",
    (2, 0x84): "no current context on the calling thread",
    (3, 0x81): "stream create failed", (3, 0x82): "stream destroy failed", (3, 0x83): "synchronize timed out",
    (5, 0x81): "not device memory",
    (7, 0x81): "invalid index",
}


def is_error_value(value: int, bits: int = 32) -> bool:
    """True when a getter's return ``value`` (``bits`` wide, as ctypes returned it) is an ``axclError``.

    The real library's count, size and index getters return the error code itself on failure (``0x80300702``, seen
    as ``0xFFFFFFFF80300702`` through a 64-bit return, or negative through ``int32``): the runtime module's pattern
    ``0x80000000 | module<<24 | 0x30<<16`` in the low 32 bits, with the high bits all ones or all zeros.
    """
    value = int(value) & ((1 << bits) - 1)
    low, high = value & 0xFFFFFFFF, value >> 32
    if high not in (0, (1 << (bits - 32)) - 1 if bits > 32 else 0):
        return False
    return bool(low & 0x80000000) and ((low >> 16) & 0xFF) == 0x30


@dataclass(frozen=True)
class AxclErrorInfo:
    """Fields of an ``axclError`` value (``0x80000000 | module<<24 | 0x30<<16 | sub<<8 | errid``)."""

    code: int
    module: int
    module_name: str
    submodule: int
    submodule_name: str
    errid: int
    errid_name: str
    passthrough: bool  # True when byte 2 is not 0x30: a device-side AX SDK error passed through

    def describe(self) -> str:
        """``module/sub-module: error`` text."""
        if self.passthrough:
            return f"device-side AX SDK error 0x{self.code:08X}"
        return f"{self.module_name}/{self.submodule_name}: {self.errid_name}"


def decode_error(code: int) -> AxclErrorInfo:
    """Split an ``axclError`` into module, sub-module and error id with their documented names."""
    code &= 0xFFFFFFFF
    module = (code >> 24) & 0x7F
    marker = (code >> 16) & 0xFF
    sub = (code >> 8) & 0xFF
    errid = code & 0xFF
    module_name = MODULE_NAMES.get(module, f"module {module}")
    if module == 0:
        sub_name = RUNTIME_SUBMODULE_NAMES.get(sub, f"sub-module {sub}")
    else:
        sub_name = f"sub-module {sub}"
    if errid in ERRID_NAMES:
        errid_name = ERRID_NAMES[errid]
    elif module == 0 and (sub, errid) in SPECIFIC_ERRID_NAMES:
        errid_name = SPECIFIC_ERRID_NAMES[(sub, errid)]
    elif errid >= 0x80:
        errid_name = f"module-specific error 0x{errid:02X}"
    else:
        errid_name = f"error 0x{errid:02X}"
    return AxclErrorInfo(code, module, module_name, sub, sub_name, errid, errid_name,
                         passthrough=bool(code) and marker != 0x30)


class AxclError(DeviceError):
    """An AXCL call returned a non-zero ``axclError``; ``.function``, ``.code`` and ``.info`` say which and why."""

    def __init__(self, function: str, code: int, detail: str = "") -> None:
        self.function = function
        self.code = code & 0xFFFFFFFF
        self.info = decode_error(self.code)
        self.detail = detail
        text = f"{function} failed with 0x{self.code:08X} ({self.info.describe()})"
        super().__init__(f"{text}: {detail}" if detail else text)

    @property
    def is_context_error(self) -> bool:
        """True for context errors (``0x80300284``: no current context on this thread) and "no active device"."""
        return self.info.submodule == 2 or (self.info.submodule == 1 and self.info.errid == 0x85)


class AxclLoadError(AxclError, ModelLoadError):
    """Loading a model failed inside AXCL (also a :class:`ModelLoadError`)."""


# ---------------------------------------------------------------------------------------------------------------------
# library loading and signatures
# ---------------------------------------------------------------------------------------------------------------------
_E = ctypes.c_int32  # axclError
_P = ctypes.c_void_p
_U32, _U64, _I32 = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int32
_PP = ctypes.POINTER(ctypes.c_void_p)
_PI32 = ctypes.POINTER(ctypes.c_int32)
_PU64 = ctypes.POINTER(ctypes.c_uint64)

#: name → (restype, argtypes); every function this package calls
REQUIRED: Dict[str, Tuple[object, Sequence[object]]] = {
    "axclInit": (_E, [ctypes.c_char_p]),
    "axclFinalize": (_E, []),
    "axclrtGetDeviceList": (_E, [ctypes.POINTER(DeviceList)]),
    "axclrtSetDevice": (_E, [_I32]),
    "axclrtResetDevice": (_E, [_I32]),
    "axclrtCreateContext": (_E, [_PP, _I32]),
    "axclrtDestroyContext": (_E, [_P]),
    "axclrtSetCurrentContext": (_E, [_P]),
    "axclrtMalloc": (_E, [_PP, ctypes.c_size_t, ctypes.c_int]),
    "axclrtFree": (_E, [_P]),
    "axclrtMemset": (_E, [_P, ctypes.c_uint8, ctypes.c_size_t]),
    "axclrtMemcpy": (_E, [_P, _P, ctypes.c_size_t, ctypes.c_int]),
    "axclrtEngineInit": (_E, [ctypes.c_int]),
    "axclrtEngineFinalize": (_E, []),
    "axclrtEngineLoadFromFile": (_E, [ctypes.c_char_p, _PU64]),
    "axclrtEngineUnload": (_E, [_U64]),
    "axclrtEngineCreateContext": (_E, [_U64, _PU64]),
    "axclrtEngineGetIOInfo": (_E, [_U64, _PP]),
    "axclrtEngineDestroyIOInfo": (_E, [_P]),
    "axclrtEngineGetNumInputs": (_U32, [_P]),
    "axclrtEngineGetNumOutputs": (_U32, [_P]),
    "axclrtEngineGetInputSizeByIndex": (_U64, [_P, _U32, _U32]),
    "axclrtEngineGetOutputSizeByIndex": (_U64, [_P, _U32, _U32]),
    "axclrtEngineGetInputNameByIndex": (ctypes.c_char_p, [_P, _U32]),
    "axclrtEngineGetOutputNameByIndex": (ctypes.c_char_p, [_P, _U32]),
    "axclrtEngineGetInputDims": (_E, [_P, _U32, _U32, ctypes.POINTER(IODims)]),
    "axclrtEngineGetOutputDims": (_E, [_P, _U32, _U32, ctypes.POINTER(IODims)]),
    "axclrtEngineGetInputDataType": (_E, [_P, _U32, ctypes.POINTER(ctypes.c_int)]),
    "axclrtEngineGetOutputDataType": (_E, [_P, _U32, ctypes.POINTER(ctypes.c_int)]),
    "axclrtEngineCreateIO": (_E, [_P, _PP]),
    "axclrtEngineDestroyIO": (_E, [_P]),
    "axclrtEngineSetInputBufferByIndex": (_E, [_P, _U32, _P, _U64]),
    "axclrtEngineSetOutputBufferByIndex": (_E, [_P, _U32, _P, _U64]),
    "axclrtEngineExecute": (_E, [_U64, _U64, _U32, _P]),
}
#: probed: used when the library exports them (the API moves between SDK releases)
OPTIONAL: Dict[str, Tuple[object, Sequence[object]]] = {
    "axclSetLogLevel": (_E, [_I32]),
    "axclrtGetVersion": (_E, [_PI32, _PI32, _PI32]),
    "axclrtGetFullVersion": (ctypes.c_char_p, []),
    "axclrtGetSocName": (ctypes.c_char_p, []),
    "axclrtGetDeviceCount": (_E, [ctypes.POINTER(ctypes.c_uint32)]),
    "axclrtGetCurrentContext": (_E, [_PP]),
    "axclrtGetDeviceProperties": (_E, [_I32, ctypes.POINTER(DeviceProperties)]),
    "axclrtSynchronizeDevice": (_E, []),
    "axclrtEngineGetVNpuKind": (_E, [ctypes.POINTER(ctypes.c_int)]),
    "axclrtEngineGetModelType": (_E, [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]),
    "axclrtEngineGetModelTypeFromModelId": (_E, [_U64, ctypes.POINTER(ctypes.c_int)]),
    "axclrtEngineGetModelCompilerVersion": (ctypes.c_char_p, [_U64]),
    "axclrtEngineGetShapeGroupsCount": (_E, [_P, _PI32]),
    "axclrtEngineGetInputDataLayout": (_E, [_P, _U32, ctypes.POINTER(ctypes.c_int)]),
    "axclrtEngineGetOutputDataLayout": (_E, [_P, _U32, ctypes.POINTER(ctypes.c_int)]),
    "axclrtEngineGetInputIndexByName": (_I32, [_P, ctypes.c_char_p]),
    "axclrtEngineGetOutputIndexByName": (_I32, [_P, ctypes.c_char_p]),
    "axclrtEngineSetDynamicBatchSize": (_E, [_P, _U32]),
    "axclrtCreateStream": (_E, [_PP]),
    "axclrtDestroyStream": (_E, [_P]),
    "axclrtSynchronizeStream": (_E, [_P]),
    "axclrtMemcpyAsync": (_E, [_P, _P, ctypes.c_size_t, ctypes.c_int, _P]),
    "axclrtEngineExecuteAsync": (_E, [_U64, _U64, _U32, _P, _P]),
}
#: what the pipelined (copy/compute overlap) path of a session needs
ASYNC_FUNCTIONS = ("axclrtCreateStream", "axclrtDestroyStream", "axclrtSynchronizeStream", "axclrtMemcpyAsync",
                   "axclrtEngineExecuteAsync")


class AxclLib:
    """A loaded ``libaxcl_rt.so`` with ``argtypes``/``restype`` set for every function used.

    ``check(name, *args)`` calls a function returning ``axclError`` and raises :class:`AxclError` when it is not 0;
    ``call(name, *args)`` returns the raw result; ``has(name)`` tells whether an optional symbol exists.
    """

    def __init__(self, cdll: ctypes.CDLL, path: str, preloaded: Sequence[ctypes.CDLL] = ()) -> None:
        self.cdll = cdll
        self.path = path
        self._preloaded = list(preloaded)  # keep the dependency handles alive
        self._fns: Dict[str, Callable] = {}
        missing = []
        for name, (restype, argtypes) in REQUIRED.items():
            fn = getattr(cdll, name, None)
            if fn is None:
                missing.append(name)
                continue
            fn.restype, fn.argtypes = restype, list(argtypes)
            self._fns[name] = fn
        if missing:
            raise BackendUnavailableError(f"{path} lacks AXCL functions {missing}; is it libaxcl_rt.so of an "
                                          f"AXCL SDK with the Runtime engine API (V2.x/V3.x)?")
        for name, (restype, argtypes) in OPTIONAL.items():
            fn = getattr(cdll, name, None)
            if fn is not None:
                fn.restype, fn.argtypes = restype, list(argtypes)
                self._fns[name] = fn

    def has(self, name: str) -> bool:
        """True when ``name`` is bound (required, or optional and exported)."""
        return name in self._fns

    def call(self, name: str, *args):
        """Call ``name`` and return its raw result."""
        return self._fns[name](*args)

    def check(self, name: str, *args, error: type = AxclError, detail: str = "") -> None:
        """Call ``name`` (returns ``axclError``); raise ``error`` (default :class:`AxclError`) if it is not 0."""
        rc = self._fns[name](*args)
        if rc:
            raise error(name, rc, detail)

    def count(self, name: str, *args, bits: int = 32, detail: str = "") -> int:
        """Call a count/size/index getter and return its value; raise :class:`AxclError` when the value is an
        error code (the real library returns the code itself, see :func:`is_error_value`)."""
        raw = int(self._fns[name](*args))
        if is_error_value(raw, bits) or raw < 0:
            raise AxclError(name, raw & 0xFFFFFFFF, detail or "the getter returned an error code instead of a value")
        return raw

    def text(self, name: str, *args) -> str:
        """Call a ``const char*`` getter; ``""`` when missing or NULL."""
        if name not in self._fns:
            return ""
        raw = self._fns[name](*args)
        return raw.decode("utf-8", "replace") if raw else ""


_stdout_guarded = False
_stdout_lock = threading.Lock()


def keep_vendor_stdout_off_stdout() -> None:
    """Point file descriptor 1 at stderr for the rest of the process, keeping Python's ``sys.stdout`` on the
    original stdout.

    ``libaxcl_rt.so`` writes its log lines to stdout (also from its own threads, and ``axclSetLogLevel`` does not
    stop it), which would corrupt JSON printed by the CLI and anything a launcher reads from a node's stdout. After
    this call the library's lines still reach the user, on stderr. Idempotent; called before the library is loaded.
    When ``sys.stdout`` is not the process's fd 1 (a test harness capturing it), only fd 1 is redirected.
    """
    global _stdout_guarded
    with _stdout_lock:
        if _stdout_guarded:
            return
        _stdout_guarded = True
        try:
            fd = sys.stdout.fileno() if sys.stdout is not None else -1
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            fd = -1
        try:
            if fd == 1:
                sys.stdout.flush()
                saved = os.dup(1)
                os.dup2(2, 1)
                sys.stdout = open(saved, "w", buffering=1 if os.isatty(saved) else -1,  # noqa: SIM115
                                  encoding=sys.stdout.encoding, errors=sys.stdout.errors)
            else:
                os.dup2(2, 1)
        except OSError as exc:  # no stderr (daemon): leave stdout as it is
            log.debug("could not redirect fd 1 to stderr: %s", exc)


def default_config() -> Optional[str]:
    """The ``axclInit`` config file: ``$AXCL_CONFIG`` when set (``""`` = none), else the first of
    :data:`DEFAULT_CONFIGS` that exists, else None (the library's built-in defaults)."""
    env = os.environ.get(ENV_CONFIG)
    if env is not None:
        return env.strip() or None
    return next((p for p in DEFAULT_CONFIGS if os.path.isfile(p)), None)


def library_candidates() -> List[str]:
    """Paths (or loader names) tried in order: ``$AXCL_LIB_PATH`` alone when set, else the loader's
    ``find_library("axcl_rt")``, ``/usr/lib/axcl/libaxcl_rt.so`` and versioned files there."""
    override = os.environ.get(ENV_LIB_PATH, "").strip()
    if override:
        return [os.path.join(override, LIB_NAME) if os.path.isdir(override) else override]
    out: List[str] = []
    found = ctypes.util.find_library("axcl_rt")
    if found:
        out.append(found)
    default = os.path.join(DEFAULT_LIB_DIR, LIB_NAME)
    out.append(default)
    out += sorted(p for p in glob.glob(default + ".*") if p not in out)
    return out


def _preload_chain(folder: str) -> List[ctypes.CDLL]:
    handles = []
    for pattern in PRELOAD_CHAIN:
        for path in sorted(glob.glob(os.path.join(folder, pattern))):
            try:
                handles.append(ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL))
            except OSError as exc:
                log.debug("preloading %s failed: %s", path, exc)
    return handles


def open_library(path: Optional[str] = None) -> AxclLib:
    """Load ``libaxcl_rt.so`` (``path`` or :func:`library_candidates`) and bind it.

    When loading fails because dependencies are not in the loader path, the documented dependency chain is
    pre-loaded with ``RTLD_GLOBAL`` from the library's folder and the load retried. Raises
    :class:`BackendUnavailableError` listing every attempt.
    """
    keep_vendor_stdout_off_stdout()
    candidates = [path] if path else library_candidates()
    errors = []
    for cand in candidates:
        is_file = os.sep in cand
        if is_file and not os.path.exists(cand):
            errors.append(f"{cand}: not found")
            continue
        try:
            return AxclLib(ctypes.CDLL(cand), cand)
        except OSError as exc:
            first = str(exc)
        if is_file:
            pre = _preload_chain(os.path.dirname(os.path.abspath(cand)))
            if pre:
                try:
                    return AxclLib(ctypes.CDLL(cand), cand, pre)
                except OSError as exc:
                    first = f"{first}; after preloading {len(pre)} dependencies: {exc}"
        errors.append(f"{cand}: {first}")
    where = f"{ENV_LIB_PATH}={os.environ[ENV_LIB_PATH]!r}" if os.environ.get(ENV_LIB_PATH) else "the default places"
    raise BackendUnavailableError(f"cannot load {LIB_NAME} from {where} ({'; '.join(errors)}); {INSTALL_HINT}")


# ---------------------------------------------------------------------------------------------------------------------
# runtime singleton
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class _Device:
    index: int
    device_id: int
    context: int  # axclrtContext value
    vnpu: VNpuKind
    engine_owned: bool  # True when we called axclrtEngineInit successfully (so we finalize it)


class AxclRuntime:
    """Process-wide AXCL state: library, ``axclInit``, device ids, one context per device, engine init, teardown.

    Use :func:`get_runtime` (or :meth:`instance`) rather than constructing it. Devices are addressed by *index* into
    ``axclrtGetDeviceList`` (ids are PCIe bus numbers such as 129). Every method is thread-safe.

    Recovery: any :class:`AxclError` reported through :meth:`note_failure` marks the runtime suspect; the next
    :meth:`prepare_device` probes the device (small alloc + free) and, when the probe fails, restarts the whole
    runtime (teardown ignoring errors, ``axclInit`` again). Sessions of the previous generation become invalid.
    """

    _instance: Optional[AxclRuntime] = None
    _instance_lock = threading.Lock()
    _atexit_registered = False

    def __init__(self, lib: Optional[AxclLib] = None, config: Optional[str] = None,
                 vnpu: Optional[object] = None) -> None:
        self._lock = threading.RLock()
        self._tls = threading.local()
        self.lib = lib if lib is not None else open_library()
        self.config = config if config is not None else default_config()
        self.requested_vnpu = VNpuKind.parse(vnpu if vnpu is not None else os.environ.get(ENV_VNPU, ""))
        self.generation = 0
        self._devices: Dict[int, _Device] = {}
        self._device_ids: List[int] = []
        self._sessions: weakref.WeakValueDictionary[int, object] = weakref.WeakValueDictionary()
        self._soc_names: Dict[int, str] = {}
        self._suspect = False
        self._initialised = False
        self._closed = False
        self.restarts = 0
        self._init()

    # -- construction / singleton ---------------------------------------------------------------------------------
    @classmethod
    def instance(cls) -> AxclRuntime:
        """The shared runtime, created (library loaded, ``axclInit``) on first use."""
        with cls._instance_lock:
            if cls._instance is None or cls._instance._closed:
                cls._instance = cls()
                if not cls._atexit_registered:
                    atexit.register(shutdown_runtime)
                    cls._atexit_registered = True
            return cls._instance

    def _init(self) -> None:
        self.lib.check("axclInit", self.config.encode() if self.config else None)
        self._initialised = True
        try:
            lst = DeviceList()
            self.lib.check("axclrtGetDeviceList", ctypes.byref(lst))
            self._device_ids = [int(lst.devices[i]) for i in range(min(int(lst.num), AXCL_MAX_DEVICE_COUNT))]
        except AxclError:
            self._finalize_quietly()
            raise

    # -- devices and contexts ---------------------------------------------------------------------------------------
    @property
    def device_ids(self) -> List[int]:
        """Ids from ``axclrtGetDeviceList`` (PCIe bus numbers), in index order."""
        return list(self._device_ids)

    @property
    def device_count(self) -> int:
        """Number of cards."""
        return len(self._device_ids)

    def _check_index(self, index: int) -> int:
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError(f"AXCL device index must be an int, got {index!r}")
        if not 0 <= index < len(self._device_ids):
            raise BackendUnavailableError(f"AXCL device index {index} out of range: {len(self._device_ids)} card(s) "
                                          f"found (ids {self._device_ids})")
        return self._device_ids[index]

    def open_device(self, index: int = 0) -> _Device:
        """Set up device ``index`` once: ``axclrtSetDevice``, own context, ``axclrtEngineInit``."""
        with self._lock:
            if self._closed:
                raise BackendUnavailableError("the AXCL runtime was shut down")
            dev = self._devices.get(index)
            if dev is not None:
                return dev
            device_id = self._check_index(index)
            self.lib.check("axclrtSetDevice", device_id)
            ctx = ctypes.c_void_p()
            try:
                self.lib.check("axclrtCreateContext", ctypes.byref(ctx), device_id)
                self.lib.check("axclrtSetCurrentContext", ctx)
                self._tls.current = (self.generation, ctx.value)
                vnpu, owned = self._engine_init(device_id)
            except AxclError:
                self._tls.current = None
                if ctx.value:
                    self._quiet("axclrtDestroyContext", ctx)
                self._quiet("axclrtResetDevice", device_id)
                raise
            dev = _Device(index, device_id, int(ctx.value), vnpu, owned)
            self._devices[index] = dev
            log.debug("AXCL device %d (id %d) ready, VNPU %s", index, device_id, vnpu.name)
            return dev

    def _engine_init(self, device_id: int) -> Tuple[VNpuKind, bool]:
        try:
            self.lib.check("axclrtEngineInit", int(self.requested_vnpu))
            return self.requested_vnpu, True
        except AxclError as exc:
            if self.lib.has("axclrtEngineGetVNpuKind"):
                kind = ctypes.c_int()
                if self.lib.call("axclrtEngineGetVNpuKind", ctypes.byref(kind)) == 0:
                    log.info("AXCL engine on device %d was already initialised (VNPU %s)", device_id,
                             VNpuKind(kind.value).name)
                    return VNpuKind(kind.value), False
            raise AxclError(exc.function, exc.code, f"engine init on device id {device_id} with VNPU "
                                                    f"{self.requested_vnpu.name}") from exc

    def ensure_thread_context(self, index: int = 0) -> _Device:
        """Make device ``index``'s context current on the calling thread (``axclrtSetCurrentContext``)."""
        dev = self._devices.get(index)
        if dev is None:
            dev = self.open_device(index)
        want = (self.generation, dev.context)
        if getattr(self._tls, "current", None) != want:
            self.lib.check("axclrtSetCurrentContext", ctypes.c_void_p(dev.context))
            self._tls.current = want
        return dev

    def device(self, index: int) -> _Device:
        """The opened device ``index`` (opens it when needed)."""
        return self._devices.get(index) or self.open_device(index)

    # -- sessions, health, recovery ---------------------------------------------------------------------------------
    def register(self, session) -> None:
        """Track a live session (weakly; released at shutdown)."""
        with self._lock:
            self._sessions[id(session)] = session

    def unregister(self, session) -> None:
        """Forget a released session."""
        with self._lock:
            self._sessions.pop(id(session), None)

    @property
    def live_sessions(self) -> int:
        """Number of sessions not yet released."""
        return len(self._sessions)

    def note_failure(self, exc: BaseException) -> None:
        """Record that an AXCL call failed; the next :meth:`prepare_device` probes the device first."""
        if isinstance(exc, AxclError):
            self._suspect = True

    def probe(self, index: int = 0) -> Optional[AxclError]:
        """Check that device ``index`` answers (context, 64-byte alloc + free); return the error or None."""
        try:
            self.ensure_thread_context(index)
            ptr = ctypes.c_void_p()
            self.lib.check("axclrtMalloc", ctypes.byref(ptr), 64, int(MallocPolicy.HUGE_FIRST))
            self.lib.check("axclrtFree", ptr)
            return None
        except AxclError as exc:
            return exc

    def prepare_device(self, index: int = 0) -> _Device:
        """Open device ``index`` for a new session; probe it after failures and restart the runtime if needed."""
        with self._lock:
            if self._suspect:
                err = self.probe(index)
                if err is not None:
                    log.warning("AXCL device %d does not answer (%s); restarting the AXCL runtime", index, err)
                    self.restart()
                    err = self.probe(index)
                    if err is not None:
                        raise AxclError(err.function, err.code, "device still failing after a runtime restart")
                self._suspect = False
            dev = self.open_device(index)
            self.ensure_thread_context(index)
            return dev

    def restart(self) -> None:
        """Tear everything down (errors ignored), invalidate live sessions, and ``axclInit`` again."""
        with self._lock:
            for session in list(self._sessions.values()):
                invalidate = getattr(session, "_invalidate", None)
                if invalidate is not None:
                    invalidate()
            self._sessions.clear()
            self._teardown()
            self.generation += 1
            self.restarts += 1
            self._closed = False
            self._init()

    # -- telemetry --------------------------------------------------------------------------------------------------
    def device_properties(self, index: int = 0) -> Dict[str, object]:
        """Telemetry of card ``index`` from ``axclrtGetDeviceProperties`` (when exported) and ``GetSocName``.

        Keys: ``index, device_id, name, firmware, uid, pci_bus, temperature_c`` (raw ÷ 1000: the axcl-smi docs say
        the value is °C × 1000 — **unverified on hardware**, also given as ``temperature_raw``), ``mem_total_kb,
        mem_used_kb, cmm_total_kb, cmm_used_kb, cpu_load_pct, npu_load_pct`` (0.01 % units ÷ 100),
        ``properties_available``.
        """
        with self._lock:
            device_id = self._check_index(index)
            out: Dict[str, object] = {"index": index, "device_id": device_id, "properties_available": False}
            out["name"] = self.soc_name(index)
            if not self.lib.has("axclrtGetDeviceProperties"):
                return out
            p = DeviceProperties()
            self.lib.check("axclrtGetDeviceProperties", device_id, ctypes.byref(p))
            out.update({
                "properties_available": True,
                "firmware": p.swVersion.decode("utf-8", "replace"),
                "uid": int(p.uid),
                "pci_bus": int(p.pciBusID),
                "temperature_raw": int(p.temperature),
                "temperature_c": p.temperature / 1000.0,
                "temperature_unit_verified": False,
                "mem_total_kb": int(p.totalMemSize),
                "mem_used_kb": int(p.totalMemSize) - int(p.freeMemSize),
                "cmm_total_kb": int(p.totalCmmSize),
                "cmm_used_kb": int(p.totalCmmSize) - int(p.freeCmmSize),
                "cpu_load_pct": p.cpuLoading / 100.0,
                "npu_load_pct": p.npuLoading / 100.0,
            })
            return out

    def soc_name(self, index: int = 0) -> str:
        """Chip name of card ``index`` (``axclrtGetSocName``; ``""`` when unknown), read once and cached.

        The real call needs a current context (without one it logs and answers ``UNKNOWN``). An opened device's
        context is used; otherwise a temporary context is created and destroyed (no ``axclrtSetDevice``, no engine
        init: reading telemetry never opens a card).
        """
        with self._lock:
            device_id = self._check_index(index)
            if device_id in self._soc_names:
                return self._soc_names[device_id]
            if not self.lib.has("axclrtGetSocName"):
                return ""
            if index in self._devices:
                self.ensure_thread_context(index)
                name = self.lib.text("axclrtGetSocName")
            else:
                ctx = ctypes.c_void_p()
                self.lib.check("axclrtCreateContext", ctypes.byref(ctx), device_id)
                self._tls.current = None  # the thread's current context changes below
                try:
                    self.lib.check("axclrtSetCurrentContext", ctx)
                    name = self.lib.text("axclrtGetSocName")
                finally:
                    self._quiet("axclrtDestroyContext", ctx)
            if name and name != "UNKNOWN":
                self._soc_names[device_id] = name
                return name
            return ""

    def version(self) -> str:
        """``major.minor.patch`` of the runtime library (or its full version string), ``""`` when unknown."""
        full = self.lib.text("axclrtGetFullVersion")
        if full:
            return full
        if self.lib.has("axclrtGetVersion"):
            v = [ctypes.c_int32() for _ in range(3)]
            if self.lib.call("axclrtGetVersion", *(ctypes.byref(x) for x in v)) == 0:
                return ".".join(str(x.value) for x in v)
        return ""

    # -- teardown -------------------------------------------------------------------------------------------------
    def _quiet(self, name: str, *args) -> None:
        try:
            rc = self.lib.call(name, *args)
            if rc:
                log.debug("%s during teardown: %s", name, AxclError(name, rc))
        except Exception as exc:  # noqa: BLE001 - teardown must go on
            log.debug("%s during teardown raised %s", name, exc)

    def _finalize_quietly(self) -> None:
        if self._initialised:
            self._quiet("axclFinalize")
            self._initialised = False

    def _teardown(self) -> None:
        for session in list(self._sessions.values()):
            try:
                session.release()
            except Exception as exc:  # noqa: BLE001
                log.warning("releasing %r during AXCL shutdown failed: %s", session, exc)
        self._sessions.clear()
        for dev in list(self._devices.values()):
            self._quiet("axclrtSetCurrentContext", ctypes.c_void_p(dev.context))
            if dev.engine_owned:
                self._quiet("axclrtEngineFinalize")
            self._quiet("axclrtDestroyContext", ctypes.c_void_p(dev.context))
            self._quiet("axclrtResetDevice", dev.device_id)
        self._devices.clear()
        self._soc_names.clear()
        self._tls = threading.local()
        self._finalize_quietly()

    def shutdown(self) -> None:
        """Release every session, finalize engines, reset devices, ``axclFinalize`` (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._teardown()
            self.generation += 1
            self._closed = True

    @property
    def closed(self) -> bool:
        """True after :meth:`shutdown`."""
        return self._closed


def get_runtime() -> AxclRuntime:
    """The process-wide :class:`AxclRuntime` (created on first use)."""
    return AxclRuntime.instance()


def shutdown_runtime() -> None:
    """Shut the process-wide runtime down if it exists (registered with ``atexit``); the next use re-initialises."""
    with AxclRuntime._instance_lock:
        rt = AxclRuntime._instance
        AxclRuntime._instance = None
    if rt is not None:
        rt.shutdown()
