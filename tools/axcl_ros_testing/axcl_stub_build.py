"""Compile the AXCL stub runtime (``axcl_stub/axcl_stub.c``) with the system C compiler, and read its counters.

The library is built once per source hash into ``<cache>/axcl_stub/<hash>/libaxcl_rt.so`` (the file name the binding
looks for, so ``AXCL_LIB_PATH`` may point at the file or its folder). Concurrent builds are safe: each compiles to a
private temporary file and renames it into place.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Union

__all__ = ["StubBuildError", "stub_source", "build_stub", "StubControl", "STUB_LIB_NAME"]

STUB_LIB_NAME = "libaxcl_rt.so"
_CFLAGS = ("-shared", "-fPIC", "-O2", "-std=c11", "-Wall", "-Wextra", "-pthread", "-fvisibility=hidden")


class StubBuildError(RuntimeError):
    """No C compiler was found, or compiling the stub failed (the message holds the compiler output)."""


def stub_source() -> Path:
    """Path of ``axcl_stub.c``."""
    return Path(__file__).resolve().parent / "axcl_stub" / "axcl_stub.c"


def _default_cache() -> Path:
    from axcl_ros.assets import cache_dir

    return cache_dir() / "axcl_stub"


def _find_cc(cc: Optional[str]) -> str:
    for candidate in (cc, os.environ.get("CC"), "cc", "gcc", "clang"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    raise StubBuildError("no C compiler found (tried $CC, cc, gcc, clang): apt-get install gcc")


def build_stub(cache: Optional[Union[str, os.PathLike]] = None, cc: Optional[str] = None) -> Path:
    """Build (or reuse) the stub library and return the path of its ``libaxcl_rt.so``."""
    src = stub_source()
    data = src.read_bytes()
    key = hashlib.sha256(data + " ".join(_CFLAGS).encode()).hexdigest()[:16]
    out_dir = Path(cache) if cache is not None else _default_cache()
    out = out_dir / key / STUB_LIB_NAME
    if out.is_file():
        return out
    compiler = _find_cc(cc)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        proc = subprocess.run([compiler, *_CFLAGS, "-o", tmp, str(src), "-lm"], capture_output=True, text=True,
                              timeout=120, check=False)
        if proc.returncode != 0:
            raise StubBuildError(f"compiling {src} with {compiler} failed ({proc.returncode}):\n{proc.stderr}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


class _Counters(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "h2d_bytes", "d2h_bytes", "d2d_bytes", "h2h_bytes", "h2d_calls", "d2h_calls", "d2d_calls", "h2h_calls",
        "memset_bytes", "memset_calls", "executes", "failed_calls", "total_calls", "calls_since_init")] + \
        [(n, ctypes.c_int64) for n in (
            "outstanding_allocs", "outstanding_bytes", "outstanding_host_allocs", "loaded_models",
            "outstanding_ioinfos", "outstanding_ios", "live_contexts", "reclaimed_at_teardown")] + \
        [("initialized", ctypes.c_int32), ("device_lost", ctypes.c_int32)] + \
        [("outstanding_streams", ctypes.c_int64), ("async_ops", ctypes.c_int64)]


class StubControl:
    """Reads the stub's counters (``axclStub*`` symbols) from the library at ``path`` (same handle as the binding's).

    ``counters()`` returns a dict: bytes and calls per copy kind (``h2d_bytes``, ``d2h_calls`` ...), ``executes``,
    outstanding device allocations/bytes, loaded models, IO infos, IOs, live contexts, ``reclaimed_at_teardown``
    (objects the stub freed because the caller leaked them), ``calls_since_init``, ``device_lost``.
    """

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        self.path = os.fspath(path)
        self._lib = ctypes.CDLL(self.path)
        self._lib.axclStubGetCounters.argtypes = [ctypes.POINTER(_Counters), ctypes.c_uint32]
        self._lib.axclStubGetCounters.restype = ctypes.c_int32
        self._lib.axclStubGetCallCount.argtypes = [ctypes.c_char_p]
        self._lib.axclStubGetCallCount.restype = ctypes.c_uint64
        self._lib.axclStubFunctionCount.restype = ctypes.c_int32
        self._lib.axclStubFunctionName.argtypes = [ctypes.c_int32]
        self._lib.axclStubFunctionName.restype = ctypes.c_char_p
        self._lib.axclStubResetCounters.restype = None
        self._lib.axclStubGetCallLog.argtypes = [ctypes.POINTER(ctypes.c_int32), ctypes.c_int32]
        self._lib.axclStubGetCallLog.restype = ctypes.c_int32
        self._names = [self._lib.axclStubFunctionName(i).decode() for i in range(self._lib.axclStubFunctionCount())]
        size = self._lib.axclStubGetCounters(ctypes.byref(_Counters()), 0)
        if size != ctypes.sizeof(_Counters):
            raise StubBuildError(f"stub counter struct is {size} bytes, this module expects {ctypes.sizeof(_Counters)}")

    def counters(self) -> Dict[str, int]:
        """Snapshot of all counters."""
        c = _Counters()
        self._lib.axclStubGetCounters(ctypes.byref(c), ctypes.sizeof(c))
        return {name: int(getattr(c, name)) for name, _ in _Counters._fields_}

    def calls(self, function: Optional[str] = None):
        """Calls of one AXCL function since the last reset, or ``{name: calls}`` for all of them."""
        if function is not None:
            return int(self._lib.axclStubGetCallCount(function.encode()))
        return {n: int(self._lib.axclStubGetCallCount(n.encode())) for n in self._names}

    def call_log(self, last: int = 1024) -> List[str]:
        """Names of the most recent AXCL calls (at most ``last``, at most 1024 kept), oldest first."""
        buf = (ctypes.c_int32 * 1024)()
        n = self._lib.axclStubGetCallLog(buf, min(int(last), 1024))
        return [self._names[buf[i]] for i in range(n)]

    def reset(self) -> None:
        """Zero byte/call counters (outstanding-object counts are kept)."""
        self._lib.axclStubResetCounters()
