"""The process-wide AXCL runtime object (:class:`AxclRuntime`): ``axclInit``, device ids, one context per device,
engine init, recovery and teardown.

The ctypes binding lives in :mod:`.axcl_abi` (enums, structs, error codes) and :mod:`.axcl_library` (loading
``libaxcl_rt.so`` and the function signatures); both are written from AXERA's public AXCL documentation, no AXERA
header or library is vendored.

Threading: AXCL binds a context to the calling thread. :meth:`AxclRuntime.ensure_thread_context` must run on a thread
before that thread makes any memory or engine call (sessions do it at the start of every public method). ctypes
releases the GIL during foreign calls, so several threads can keep the card busy.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .axcl_abi import AXCL_MAX_DEVICE_COUNT, AxclError, DeviceList, DeviceProperties, MallocPolicy, VNpuKind
from .axcl_library import ENV_VNPU, AxclLib, default_config, open_library
from .base import BackendUnavailableError

__all__ = ["AxclRuntime", "get_runtime", "shutdown_runtime"]

log = logging.getLogger(__name__)


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
