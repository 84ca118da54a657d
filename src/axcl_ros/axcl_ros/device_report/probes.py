"""Probes that sample devices without changing what they run: :class:`AxclProbe` (AX650N cards through the
process-wide AXCL runtime, never opening them) and :class:`CpuProbe` (the host CPU and memory from ``/proc``, the
"device" of the onnxruntime backend). Failures become *unavailable* samples with the reason and the fix; they are
never raised."""

from __future__ import annotations

import glob
import os
import platform
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .health import DRIVER_FIX, LOST_FIX, NO_CARD_FIX, DeviceSample


def _temperature(props: Dict[str, object], notes: List[str]) -> Optional[float]:
    """°C from the binding's properties. The binding divides the raw value by 1000 (axcl-smi documents °C × 1000,
    unverified on hardware); a raw value that already looks like whole degrees (|raw| < 200) is taken as °C so a
    unit mismatch cannot silently disable the thermal limits."""
    raw = props.get("temperature_raw")
    if isinstance(raw, int) and raw != 0 and abs(raw) < 200:
        notes.append(f"raw temperature {raw} looks like whole °C (documented as °C × 1000): used as °C")
        return float(raw)
    value = props.get("temperature_c")
    return float(value) if isinstance(value, (int, float)) else None


def sample_from_properties(props: Dict[str, object], name: str = "") -> DeviceSample:
    """A :class:`DeviceSample` from :meth:`AxclRuntime.device_properties` output."""
    index = int(props.get("index", 0))
    device_id = int(props.get("device_id", -1))
    s = DeviceSample(index=index, device_id=device_id, available=True, kind="axcl",
                     name=str(props.get("name") or name or ""), stamp=time.time())
    if not props.get("properties_available", False):
        s.telemetry = False
        return s
    s.firmware = str(props.get("firmware", ""))
    s.temperature_c = _temperature(props, s.notes)
    s.cpu_load_percent = float(props.get("cpu_load_pct", 0.0))
    s.npu_load_percent = float(props.get("npu_load_pct", 0.0))
    s.memory_total_kb = int(props.get("mem_total_kb", 0))
    s.memory_used_kb = max(0, int(props.get("mem_used_kb", 0)))
    s.cmm_total_kb = int(props.get("cmm_total_kb", 0))
    s.cmm_used_kb = max(0, int(props.get("cmm_used_kb", 0)))
    return s


def default_runtime():
    """The process-wide AXCL runtime (imported on first use: the CPU probe needs no AXCL)."""
    from ..runtime.axcl import get_runtime

    return get_runtime()


class AxclProbe:
    """Samples AXCL cards ``indices`` (empty = every listed card) through the process-wide runtime.

    ``sample()`` never raises for runtime problems: each becomes an unavailable :class:`DeviceSample` with ``error``
    and ``fix``. After a failure the runtime is not touched again until a back-off has passed (``retry_initial_s``,
    doubling up to ``retry_max_s``); meanwhile the last error samples are returned. When a card stopped answering and
    no session uses the runtime, the retry restarts the runtime (``AxclRuntime.restart``); with live sessions the
    restart is left to the nodes owning them (their cleanup/configure), because a restart invalidates their sessions.
    """

    def __init__(self, indices: Sequence[int] = (), *, runtime_factory: Optional[Callable[[], object]] = None,
                 retry_initial_s: float = 1.0, retry_max_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        bad = [i for i in indices if not isinstance(i, int) or isinstance(i, bool) or i < 0]
        if bad:
            raise ValueError(f"device indices must be integers >= 0, got {list(indices)}")
        self.indices = tuple(indices)
        self._factory = runtime_factory or default_runtime
        self._retry_initial = max(0.01, float(retry_initial_s))
        self._retry_max = max(self._retry_initial, float(retry_max_s))
        self._clock = clock
        self._backoff = 0.0
        self._next_try = 0.0
        self._last_errors: List[DeviceSample] = []
        self._restart_needed = False
        self.restarts = 0

    def _fail(self, samples: List[DeviceSample]) -> List[DeviceSample]:
        self._backoff = self._retry_initial if self._backoff == 0.0 else min(self._backoff * 2, self._retry_max)
        self._next_try = self._clock() + self._backoff
        self._last_errors = samples
        return samples

    def _error_samples(self, error: str, fix: str, count: int = 0) -> List[DeviceSample]:
        indices = self.indices or tuple(range(max(count, 1)))
        return [DeviceSample(index=i, available=False, error=error, fix=fix, stamp=time.time()) for i in indices]

    def sample(self) -> List[DeviceSample]:
        """One sample per requested card (or one error sample when the runtime itself is unusable)."""
        from ..runtime.axcl_abi import AxclError
        from ..runtime.base import BackendError, BackendUnavailableError

        if self._last_errors and self._clock() < self._next_try:
            wait = self._next_try - self._clock()
            for s in self._last_errors:
                s.stamp = time.time()
                s.notes = [f"next retry in {wait:.1f} s"]
            return self._last_errors
        try:
            rt = self._factory()
        except BackendUnavailableError as exc:
            return self._fail(self._error_samples(f"AXCL runtime library not usable: {exc}", DRIVER_FIX))
        except AxclError as exc:
            return self._fail(self._error_samples(f"AXCL runtime initialisation failed: {exc}", DRIVER_FIX))
        except BackendError as exc:
            return self._fail(self._error_samples(f"AXCL runtime not usable: {exc}", DRIVER_FIX))
        if self._restart_needed:
            if rt.live_sessions:
                return self._fail(self._error_samples(
                    "card(s) stopped answering; the runtime is not restarted by the monitor while "
                    f"{rt.live_sessions} model session(s) use it", LOST_FIX, rt.device_count))
            try:
                rt.restart()
                self.restarts += 1
            except (AxclError, BackendError) as exc:
                return self._fail(self._error_samples(f"AXCL runtime restart failed: {exc}", LOST_FIX,
                                                      rt.device_count))
            self._restart_needed = False
        ids = rt.device_ids
        if not ids:
            return self._fail(self._error_samples("axclrtGetDeviceList lists no AXCL card", NO_CARD_FIX))
        out, failed = [], False
        for index in self.indices or range(len(ids)):
            if index >= len(ids):
                out.append(DeviceSample(index=index, available=False, stamp=time.time(),
                                        error=f"card index {index} not found: {len(ids)} card(s) listed (ids {ids})",
                                        fix="set device_indices to indices 0.." f"{len(ids) - 1} (or [] for all)"))
                continue
            try:
                out.append(sample_from_properties(rt.device_properties(index)))
            except AxclError as exc:
                failed = True
                rt.note_failure(exc)
                out.append(DeviceSample(index=index, device_id=ids[index], available=False, stamp=time.time(),
                                        error=f"card not answering (lost?): {exc}", fix=LOST_FIX))
            except BackendError as exc:
                failed = True
                out.append(DeviceSample(index=index, device_id=ids[index], available=False, stamp=time.time(),
                                        error=f"card not usable: {exc}", fix=LOST_FIX))
        if failed:
            self._restart_needed = True
            return self._fail(out)
        self._backoff, self._last_errors = 0.0, []
        return out


# ---------------------------------------------------------------------------------------------------------------------
# host CPU (onnxruntime backend)
# ---------------------------------------------------------------------------------------------------------------------
def _read_cpu_times(proc: str) -> Tuple[int, int]:
    """``(busy, total)`` jiffies from the aggregate ``cpu`` line of ``/proc/stat``."""
    with open(os.path.join(proc, "stat")) as f:
        for line in f:
            if line.startswith("cpu "):
                fields = [int(x) for x in line.split()[1:]]
                idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
                total = sum(fields[:8])  # user..steal; guest time is already inside user/nice
                return total - idle, total
    raise ValueError(f"{proc}/stat has no aggregate cpu line")


def _read_meminfo(proc: str) -> Dict[str, int]:
    out = {}
    with open(os.path.join(proc, "meminfo")) as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key.strip()] = int(parts[0])
    return out


def _cpu_name(proc: str) -> str:
    try:
        with open(os.path.join(proc, "cpuinfo")) as f:
            text = f.read()
    except OSError:
        text = ""
    name = ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            if line.lower().startswith(key.lower()) and ":" in line:
                name = line.split(":", 1)[1].strip()
                break
        if name:
            break
    return f"{name or platform.machine() or 'CPU'} x{os.cpu_count() or 1}"


class CpuProbe:
    """The host CPU as the onnxruntime backend's "device": load from ``/proc/stat`` deltas (the first sample gives
    the average since boot), memory from ``/proc/meminfo`` (used = MemTotal − MemAvailable), temperature = the
    hottest ``/sys/class/thermal/thermal_zone*/temp`` (None when the host exposes none)."""

    def __init__(self, proc: str = "/proc", thermal: str = "/sys/class/thermal") -> None:
        self.proc = proc
        self.thermal = thermal
        self._prev: Optional[Tuple[int, int]] = None
        self._name = _cpu_name(proc)

    def _temperature(self) -> Optional[float]:
        temps = []
        for path in glob.glob(os.path.join(self.thermal, "thermal_zone*", "temp")):
            try:
                with open(path) as f:
                    temps.append(int(f.read().strip()) / 1000.0)
            except (OSError, ValueError):
                continue
        return max(temps) if temps else None

    def sample(self) -> List[DeviceSample]:
        """One sample (index 0, device id −1, kind ``host``)."""
        s = DeviceSample(index=0, device_id=-1, kind="host", name=self._name, firmware=f"Linux {platform.release()}",
                         stamp=time.time())
        try:
            busy, total = _read_cpu_times(self.proc)
            mem = _read_meminfo(self.proc)
        except (OSError, ValueError) as exc:
            s.error, s.fix = f"cannot read host load from {self.proc}: {exc}", "run on Linux with /proc mounted"
            return [s]
        prev_busy, prev_total = self._prev or (0, 0)
        self._prev = (busy, total)
        d_total = total - prev_total
        s.cpu_load_percent = 100.0 * (busy - prev_busy) / d_total if d_total > 0 else 0.0
        s.memory_total_kb = mem.get("MemTotal", 0)
        available = mem.get("MemAvailable", mem.get("MemFree", 0))
        s.memory_used_kb = max(0, s.memory_total_kb - available)
        s.temperature_c = self._temperature()
        s.available = True
        return [s]
