"""AXCL ABI declarations and error codes: the documented enums, struct layouts and the ``axclError`` encoding.

Written from AXERA's public AXCL documentation; no AXERA header is vendored. :func:`decode_error` turns a return code
into module / sub-module / error names, :class:`AxclError` is what every failing AXCL call raises.
"""

from __future__ import annotations

import ctypes
import enum
from dataclasses import dataclass
from typing import Dict

from .base import DeviceError, ModelLoadError


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


#: the memcpy kinds the sessions pass, as plain ints (ctypes arguments)
H2D, D2H, D2D = int(MemcpyKind.HOST_TO_DEVICE), int(MemcpyKind.DEVICE_TO_HOST), int(MemcpyKind.DEVICE_TO_DEVICE)


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
