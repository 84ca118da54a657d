"""Loading ``libaxcl_rt.so``: where to find it, its dependency chain, the ctypes signature of every function used
(:class:`AxclLib`), the ``axclInit`` config file, and keeping the library's log lines off stdout."""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import io
import logging
import os
import sys
import threading
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .axcl_abi import AxclError, AxclLoadError, DeviceList, DeviceProperties, IODims, is_error_value
from .base import BackendUnavailableError

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

    def context_and_io_info(self, model_id: int) -> Tuple[int, int]:
        """``(context id, IO info handle)`` of a loaded model: the two handles every session of it needs."""
        cid = ctypes.c_uint64()
        self.check("axclrtEngineCreateContext", ctypes.c_uint64(model_id), ctypes.byref(cid))
        info = ctypes.c_void_p()
        self.check("axclrtEngineGetIOInfo", ctypes.c_uint64(model_id), ctypes.byref(info))
        return int(cid.value), int(info.value)

    def model_count(self, name: str, *args, model_path: str, bits: int = 32) -> int:
        """:meth:`count` for a loaded model's IO getters: a failure is an :class:`AxclLoadError` naming the file."""
        try:
            return self.count(name, *args, bits=bits)
        except AxclError as exc:
            raise AxclLoadError(name, exc.code, f"reading the IO info of {model_path!r}") from None

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
