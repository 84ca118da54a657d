"""Device status for the monitor node and the ``axcl_ros`` CLI: gather, judge, format, diagnose (no rclpy here).

* :class:`AxclProbe` samples AXCL cards through the process-wide runtime (:mod:`axcl_ros.runtime.axcl`) without
  opening them (no ``axclrtSetDevice``/engine init: monitoring never changes what the card runs). A missing library,
  a failed ``axclInit``, an empty device list or a lost card become *unavailable* samples with the reason and how to
  fix it; they are never raised. After a failure it retries with a back-off and, when no session uses the runtime,
  restarts it so a card that comes back is seen again.
* :class:`HostProbe` samples the host CPU and memory from ``/proc`` (the "device" of the onnxruntime backend).
* :func:`evaluate` turns a sample and :class:`Thresholds` into OK / WARN / ERROR and a message.
* :func:`format_smi_table` prints samples like ``axcl-smi``; :func:`run_card_checks` and friends are the ``doctor``.
"""

from __future__ import annotations

import glob
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = [
    "OK", "WARN", "ERROR", "LEVEL_NAMES", "DeviceSample", "Thresholds", "ThresholdError", "Evaluation", "evaluate",
    "AxclProbe", "HostProbe", "sample_from_properties", "diagnostic_values", "format_smi_table", "Check",
    "check_driver_files", "check_library", "check_runtime", "check_devices", "check_model", "check_onnxruntime",
    "run_card_checks", "format_checks", "doctor_exit_code", "DRIVER_FILES", "DRIVER_FIX",
]

#: diagnostic levels (same byte values as ``diagnostic_msgs/DiagnosticStatus``)
OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR"}

#: device nodes the AXCL host driver creates (udev rule of the axclhost package, mode 0666)
DRIVER_FILES = ("/dev/axcl_host", "/dev/msg_userdev", "/dev/ax_mmb_dev")
DRIVER_FIX = ("install AXERA's axclhost package (deb/rpm): it builds and loads the PCIe driver (ax_pcie_host_dev, "
              "ax_pcie_msg, ax_pcie_mmb, axcl_host) and needs linux-headers-$(uname -r); check that `lspci -d 1f4b:` "
              "lists the card (Axera 1f4b:0650) and `lsmod | grep axcl` shows the modules; in a container pass "
              "--device /dev/axcl_host --device /dev/msg_userdev --device /dev/ax_mmb_dev and mount /usr/lib/axcl")
NO_CARD_FIX = ("check `lspci -d 1f4b:` (Axera 1f4b:0650), that the axcl_host driver is loaded and /dev/axcl_host "
               "exists, and `axcl-smi`; on a Raspberry Pi 5 enable PCIe (dtparam=pciex1) and reboot")
LOST_FIX = ("the card stopped answering: check `dmesg | grep -i axcl`, the card's power and cooling, then restart the "
            "nodes that use it (cleanup + configure) or reboot the host; `axcl-smi` shows whether the card is back")


def _hex_id(device_id: int) -> str:
    return f"0x{device_id:02x}" if device_id >= 0 else "-"


# ---------------------------------------------------------------------------------------------------------------------
# samples, thresholds, evaluation
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class DeviceSample:
    """One device's status at one time; fields mirror ``axcl_msgs/DeviceStatus``.

    ``None`` means "not reported" (e.g. no temperature sensor on the host). ``kind`` is ``"axcl"`` for a card and
    ``"host"`` for the CPU "device" of the onnxruntime backend. ``fix`` says what to do when ``available`` is False.
    """

    index: int
    device_id: int = -1
    available: bool = False
    error: str = ""
    fix: str = ""
    kind: str = "axcl"
    name: str = ""
    firmware: str = ""
    temperature_c: Optional[float] = None
    cpu_load_percent: Optional[float] = None
    npu_load_percent: Optional[float] = None
    memory_used_kb: int = 0
    memory_total_kb: int = 0
    cmm_used_kb: int = 0
    cmm_total_kb: int = 0
    telemetry: bool = True
    notes: List[str] = field(default_factory=list)
    stamp: float = 0.0

    @property
    def memory_percent(self) -> Optional[float]:
        """System memory in use, percent of total (None when the total is unknown)."""
        return 100.0 * self.memory_used_kb / self.memory_total_kb if self.memory_total_kb else None

    @property
    def cmm_percent(self) -> Optional[float]:
        """CMM (the card's NPU memory pool) in use, percent of total (None when unknown)."""
        return 100.0 * self.cmm_used_kb / self.cmm_total_kb if self.cmm_total_kb else None

    @property
    def hardware_id(self) -> str:
        """``axcl:<device id>`` for a card, ``host`` for the CPU, ``axcl:index<i>`` when the id is unknown."""
        if self.kind == "host":
            return "host"
        return f"axcl:{self.device_id}" if self.device_id >= 0 else f"axcl:index{self.index}"

    @property
    def label(self) -> str:
        """Human name: ``card 0 (id 129 / 0x81)`` or ``host CPU``."""
        if self.kind == "host":
            return "host CPU"
        if self.device_id >= 0:
            return f"card {self.index} (id {self.device_id} / {_hex_id(self.device_id)})"
        return f"card index {self.index} (id unknown)"

    def to_dict(self) -> Dict[str, object]:
        """Plain dict (for ``--json``), with the derived percentages and ids."""
        out = asdict(self)
        out.update(memory_percent=self.memory_percent, cmm_percent=self.cmm_percent, hardware_id=self.hardware_id,
                   device_id_hex=_hex_id(self.device_id))
        return out


class ThresholdError(ValueError):
    """A monitoring threshold is out of range or inconsistent; the message names the parameter and value."""


@dataclass(frozen=True)
class Thresholds:
    """Limits that turn a sample into WARN or ERROR."""

    temperature_warn_c: float = 85.0
    temperature_error_c: float = 95.0
    memory_warn_percent: float = 90.0
    cmm_warn_percent: float = 90.0

    def problems(self) -> List[str]:
        """Every reason these thresholds are unusable (empty when fine)."""
        out = []
        for name in ("temperature_warn_c", "temperature_error_c", "memory_warn_percent", "cmm_warn_percent"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                out.append(f"{name}={value!r} must be a finite number")
        if out:
            return out
        for name in ("memory_warn_percent", "cmm_warn_percent"):
            value = getattr(self, name)
            if not 0.0 < value <= 100.0:
                out.append(f"{name}={value} must be in (0, 100]")
        for name in ("temperature_warn_c", "temperature_error_c"):
            value = getattr(self, name)
            if not -40.0 <= value <= 150.0:
                out.append(f"{name}={value} must be in [-40, 150] °C")
        if self.temperature_warn_c >= self.temperature_error_c:
            out.append(f"temperature_warn_c={self.temperature_warn_c} must be below "
                       f"temperature_error_c={self.temperature_error_c}")
        return out

    def describe(self) -> str:
        """``temperature warn 85 °C / error 95 °C, memory warn 90 %, CMM warn 90 %``."""
        return (f"temperature warn {self.temperature_warn_c:g} °C / error {self.temperature_error_c:g} °C, "
                f"memory warn {self.memory_warn_percent:g} %, CMM warn {self.cmm_warn_percent:g} %")

    def validate(self) -> Thresholds:
        """Return self, or raise :class:`ThresholdError` listing every problem."""
        problems = self.problems()
        if problems:
            raise ThresholdError("; ".join(problems))
        return self


@dataclass(frozen=True)
class Evaluation:
    """Level (``OK``/``WARN``/``ERROR``) and a one-line message."""

    level: int
    message: str

    @property
    def level_name(self) -> str:
        """``OK``, ``WARN`` or ``ERROR``."""
        return LEVEL_NAMES[self.level]


def evaluate(sample: DeviceSample, thresholds: Thresholds) -> Evaluation:
    """Judge ``sample``: ERROR when unavailable or at/over the temperature error limit, WARN at/over a warn limit
    (temperature, memory, CMM) or without telemetry, else OK. The message names every limit that was reached."""
    if not sample.available:
        return Evaluation(ERROR, sample.error or "device not available")
    level, reasons = OK, []
    t = sample.temperature_c
    if t is not None and t >= thresholds.temperature_error_c:
        level = ERROR
        reasons.append(f"temperature {t:.1f} °C ≥ error limit {thresholds.temperature_error_c:g} °C")
    elif t is not None and t >= thresholds.temperature_warn_c:
        level = WARN
        reasons.append(f"temperature {t:.1f} °C ≥ warn limit {thresholds.temperature_warn_c:g} °C")
    for what, pct, limit in (("memory", sample.memory_percent, thresholds.memory_warn_percent),
                             ("CMM", sample.cmm_percent, thresholds.cmm_warn_percent)):
        if pct is not None and pct >= limit:
            level = max(level, WARN)
            reasons.append(f"{what} {pct:.1f} % used ≥ warn limit {limit:g} %")
    if not sample.telemetry:
        level = max(level, WARN)
        reasons.append("no telemetry: this libaxcl_rt.so does not export axclrtGetDeviceProperties")
    if reasons:
        return Evaluation(level, "; ".join(reasons))
    return Evaluation(OK, "OK: " + _summary(sample))


def _summary(s: DeviceSample) -> str:
    parts = []
    if s.temperature_c is not None:
        parts.append(f"{s.temperature_c:.1f} °C")
    if s.memory_percent is not None:
        parts.append(f"memory {s.memory_percent:.0f} %")
    if s.cmm_percent is not None:
        parts.append(f"CMM {s.cmm_percent:.0f} %")
    if s.npu_load_percent is not None:
        parts.append(f"NPU {s.npu_load_percent:.0f} %")
    if s.cpu_load_percent is not None:
        parts.append(f"CPU {s.cpu_load_percent:.0f} %")
    return ", ".join(parts) or "available"


def diagnostic_values(sample: DeviceSample, thresholds: Thresholds) -> List[Tuple[str, str]]:
    """Key/value pairs of a ``DiagnosticStatus`` for ``sample`` (strings, stable keys)."""

    def num(v, fmt="{:.1f}"):
        return "" if v is None else fmt.format(v)

    values = [("index", str(sample.index)), ("device_id", str(sample.device_id)),
              ("device_id_hex", _hex_id(sample.device_id)), ("kind", sample.kind), ("name", sample.name),
              ("firmware", sample.firmware), ("available", str(sample.available).lower()),
              ("temperature_c", num(sample.temperature_c)), ("cpu_load_percent", num(sample.cpu_load_percent)),
              ("npu_load_percent", num(sample.npu_load_percent)),
              ("memory_used_kb", str(sample.memory_used_kb)), ("memory_total_kb", str(sample.memory_total_kb)),
              ("memory_percent", num(sample.memory_percent)), ("cmm_used_kb", str(sample.cmm_used_kb)),
              ("cmm_total_kb", str(sample.cmm_total_kb)), ("cmm_percent", num(sample.cmm_percent)),
              ("temperature_warn_c", f"{thresholds.temperature_warn_c:g}"),
              ("temperature_error_c", f"{thresholds.temperature_error_c:g}"),
              ("memory_warn_percent", f"{thresholds.memory_warn_percent:g}"),
              ("cmm_warn_percent", f"{thresholds.cmm_warn_percent:g}")]
    if sample.error:
        values.append(("error", sample.error))
    if sample.fix:
        values.append(("fix", sample.fix))
    values += [(f"note{i}", n) for i, n in enumerate(sample.notes)]
    return values


# ---------------------------------------------------------------------------------------------------------------------
# AXCL cards
# ---------------------------------------------------------------------------------------------------------------------
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


def _default_runtime():
    from .runtime.axcl import get_runtime

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
        self._factory = runtime_factory or _default_runtime
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
        from .runtime.axcl_abi import AxclError
        from .runtime.base import BackendError, BackendUnavailableError

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


class HostProbe:
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


# ---------------------------------------------------------------------------------------------------------------------
# axcl-smi-like table
# ---------------------------------------------------------------------------------------------------------------------
def _mib(used_kb: int, total_kb: int) -> str:
    return f"{used_kb // 1024} / {total_kb // 1024} MiB" if total_kb else "-"


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.1f} %"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Iterable[int] = ()) -> List[str]:
    right = set(right)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells):
        return "|" + "|".join(f" {c.rjust(w) if i in right else c.ljust(w)} "
                              for i, (c, w) in enumerate(zip(cells, widths))) + "|"

    return [rule, line(headers), rule.replace("-", "="), *(line(r) for r in rows), rule]


def format_smi_table(samples: Sequence[DeviceSample], thresholds: Optional[Thresholds] = None,
                     header: str = "") -> str:
    """An ``axcl-smi``-like table of ``samples``, followed by one line per problem with how to fix it."""
    thresholds = thresholds or Thresholds()
    headers = ("Card", "Device ID", "Name", "Firmware", "Temp", "CPU", "NPU", "Memory-Usage", "CMM-Usage", "State")
    rows, problems, notes = [], [], []
    for s in samples:
        ev = evaluate(s, thresholds)
        dev_id = "host" if s.kind == "host" else (f"{s.device_id} ({_hex_id(s.device_id)})" if s.device_id >= 0
                                                  else "-")
        temp = "-" if s.temperature_c is None else f"{s.temperature_c:.1f} C"
        rows.append((str(s.index), dev_id, s.name or "-", s.firmware or "-", temp, _pct(s.cpu_load_percent),
                     _pct(s.npu_load_percent), _mib(s.memory_used_kb, s.memory_total_kb),
                     _mib(s.cmm_used_kb, s.cmm_total_kb), ev.level_name))
        if ev.level != OK:
            problems.append(f"{ev.level_name} {s.label}: {ev.message}")
            if s.fix:
                problems.append(f"    fix: {s.fix}")
        notes += [f"note {s.label}: {n}" for n in s.notes]
    lines = [header] if header else []
    lines += _table(headers, rows, right=(0, 4, 5, 6, 7, 8))
    lines += problems + notes
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# doctor
# ---------------------------------------------------------------------------------------------------------------------
PASS, FAIL, WARNING, SKIP = "PASS", "FAIL", "WARN", "SKIP"


@dataclass
class Check:
    """One doctor check: ``status`` PASS / FAIL / WARN / SKIP, what was found, and how to fix it.

    A FAIL of a ``required`` check makes ``doctor`` exit non-zero; WARN never does.
    """

    name: str
    status: str
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def failed(self) -> bool:
        """True for a FAIL of a required check."""
        return self.required and self.status == FAIL


def check_driver_files(files: Sequence[str] = DRIVER_FILES) -> Check:
    """The device nodes of the AXCL host driver exist and are read/writable by this user."""
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        return Check("kernel driver", FAIL, f"missing {', '.join(missing)}", DRIVER_FIX)
    denied = [f for f in files if not os.access(f, os.R_OK | os.W_OK)]
    if denied:
        return Check("kernel driver", FAIL, f"{', '.join(denied)} not read/writable by uid {os.getuid()}",
                     "the axclhost udev rule makes them mode 0666: reinstall axclhost or `sudo udevadm trigger`; "
                     "in a container pass them with --device")
    return Check("kernel driver", PASS, f"{', '.join(files)} present")


def _loaded_path(lib_path: str) -> str:
    """The file the dynamic loader mapped for ``lib_path`` (resolves bare loader names through /proc/self/maps)."""
    if os.sep in lib_path:
        return os.path.realpath(lib_path)
    stem = os.path.basename(lib_path).split(".so")[0] + ".so"
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and os.path.basename(parts[5].strip()).startswith(stem):
                    return parts[5].strip()
    except OSError:
        pass
    return lib_path


def check_library() -> Check:
    """``libaxcl_rt.so`` loads and has every function the binding needs; says which file and how it was found."""
    from .runtime import axcl_library
    from .runtime.base import BackendUnavailableError

    try:
        lib = axcl_library.open_library()
    except BackendUnavailableError as exc:
        return Check("AXCL library", FAIL, str(exc),
                     f"install AXERA's axclhost package (it puts libaxcl_rt.so into {axcl_library.DEFAULT_LIB_DIR} and "
                     f"registers that folder in /etc/ld.so.conf.d/axcl.conf; run `sudo ldconfig` if the loader still "
                     f"misses it), or set {axcl_library.ENV_LIB_PATH} to the file or its folder")
    env = os.environ.get(axcl_library.ENV_LIB_PATH, "").strip()
    if env:
        how = f"from ${axcl_library.ENV_LIB_PATH}={env}"
    elif os.sep not in lib.path:
        how = "through the dynamic loader (ld.so cache)"
    else:
        how = f"from the default folder {axcl_library.DEFAULT_LIB_DIR}"
    where = _loaded_path(lib.path)
    missing = [n for n in axcl_library.OPTIONAL if not lib.has(n)]
    detail = f"{where} ({how})"
    if missing:
        detail += f"; optional functions not exported: {', '.join(missing)}"
    full = lib.text("axclrtGetFullVersion") if lib.has("axclrtGetFullVersion") else ""
    if "stub" in full.lower():
        return Check("AXCL library", WARNING, f"{detail}; it is the axcl_ros test stub ({full}), not AXERA's runtime",
                     f"unset {axcl_library.ENV_LIB_PATH} to use the installed axclhost runtime")
    return Check("AXCL library", PASS, detail)


def check_runtime(runtime_factory: Optional[Callable[[], object]] = None) -> Tuple[Check, object]:
    """``axclInit`` and ``axclrtGetDeviceList`` succeed; returns the check and the runtime (or None)."""
    from .runtime.axcl_abi import AxclError
    from .runtime.base import BackendError

    try:
        rt = (runtime_factory or _default_runtime)()
    except AxclError as exc:
        return Check("axclInit", FAIL, str(exc), DRIVER_FIX), None
    except BackendError as exc:
        return Check("axclInit", FAIL, str(exc), "fix the AXCL library check first"), None
    version = rt.version()
    config = f"config {rt.config}" if rt.config else "no config file (set AXCL_CONFIG to choose one)"
    return Check("axclInit", PASS, f"runtime initialised{f' (version {version})' if version else ''}; {config}"), rt


def check_devices(rt, thresholds: Optional[Thresholds] = None) -> Check:
    """At least one card is listed; each card's telemetry is readable and within limits."""
    if rt is None:
        return Check("device list", FAIL, "no runtime", "fix the checks above first")
    ids = rt.device_ids
    if not ids:
        return Check("device list", FAIL, "axclrtGetDeviceList lists no AXCL card", NO_CARD_FIX)
    probe = AxclProbe(runtime_factory=lambda: rt)
    samples = probe.sample()
    th = thresholds or Thresholds()
    parts, status, fixes = [], PASS, []
    for s in samples:
        ev = evaluate(s, th)
        parts.append(f"{s.label}{f' {s.name}' if s.name else ''}: {ev.message}")
        if ev.level == ERROR and not s.available:
            status = FAIL
            if s.fix and s.fix not in fixes:
                fixes.append(s.fix)
        elif ev.level != OK and status == PASS:
            status = WARNING
    return Check("device list", status, f"{len(ids)} card(s): " + "; ".join(parts), "; ".join(fixes))


def check_model(path: str, device: str = "", backend: str = "auto", runs: int = 3) -> Check:
    """Load ``path``, run it ``runs`` times on all-zero inputs, report load time and latency."""
    import numpy as np

    from .runtime.base import BackendError
    from .runtime.registry import load_model

    name = f"model {os.path.basename(path)}"
    if not os.path.isfile(path):
        return Check(name, FAIL, f"{path} does not exist", "pass the path of an .axmodel (or .onnx) file")
    t0 = time.perf_counter()
    try:
        session = load_model(path, backend=backend, device=device)
    except BackendError as exc:
        return Check(name, FAIL, f"load failed: {exc}",
                     "check that the file is an AX650 axmodel compiled by Pulsar2 (npu_mode fits the card)")
    load_ms = (time.perf_counter() - t0) * 1e3
    try:
        # dynamic dims: batch 1, the others 320 (a YOLO-style size); the check is that the model loads and runs
        feeds = {s.name: np.zeros(tuple((1 if i == 0 else 320) if d is None else d for i, d in enumerate(s.shape)),
                                  dtype=s.dtype) for s in session.inputs}
        times = []
        for _ in range(max(1, runs)):
            t = time.perf_counter()
            session.run(feeds)
            times.append((time.perf_counter() - t) * 1e3)
    except BackendError as exc:
        return Check(name, FAIL, f"loaded in {load_ms:.0f} ms, inference on zero inputs failed: {exc}",
                     "run `axcl_ros doctor` again after a reboot; check `dmesg` and `axcl-smi`")
    finally:
        session.release()
    ins = ", ".join(s.describe() for s in session.inputs)
    outs = ", ".join(s.describe() for s in session.outputs)
    later = f", then {np.median(times[1:]):.2f} ms median of {len(times) - 1}" if len(times) > 1 else ""
    where = session.device if session.device.startswith(session.backend_name) else \
        f"{session.backend_name}:{session.device}"
    return Check(name, PASS, f"{where} loaded in {load_ms:.0f} ms; inputs {ins}; "
                             f"outputs {outs}; first run {times[0]:.2f} ms{later} (host copies included)")


def check_onnxruntime() -> Check:
    """onnxruntime imports (the CPU backend); lists its execution providers."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return Check("onnxruntime", WARNING, f"not importable ({exc}); the CPU backend is unavailable",
                     "pip install onnxruntime (only needed for .onnx models)", required=False)
    return Check("onnxruntime", PASS, f"{ort.__version__}, providers {', '.join(ort.get_available_providers())}",
                 required=False)


def run_card_checks(model: Optional[str] = None, device: str = "", runs: int = 3,
                    driver_files: Sequence[str] = DRIVER_FILES) -> List[Check]:
    """Driver files, library, ``axclInit``, device list and (when ``model`` is given) one model load + inference.

    Missing driver files are downgraded to WARN when the runtime nevertheless lists cards (a test double, or a
    runtime that reaches the card another way), so the report shows the contradiction without failing.
    """
    checks = [check_driver_files(driver_files), check_library()]
    rt = None
    if checks[1].status == FAIL:
        checks.append(Check("axclInit", SKIP, "library not loadable", "fix the AXCL library check first"))
    else:
        runtime_check, rt = check_runtime()
        checks.append(runtime_check)
    checks.append(check_devices(rt) if rt is not None else
                  Check("device list", SKIP, "no runtime", "fix the checks above first"))
    if checks[0].status == FAIL and rt is not None and rt.device_ids:
        checks[0].status = WARNING
        checks[0].detail += "; yet the runtime lists card(s), so it does not use this driver (test double?)"
    if model:
        if checks[-1].status in (PASS, WARNING) or not model.endswith(".axmodel"):
            checks.append(check_model(model, device, runs=runs))
        else:
            checks.append(Check(f"model {os.path.basename(model)}", SKIP, "no usable card",
                                "fix the checks above first"))
    return checks


def format_checks(checks: Sequence[Check]) -> str:
    """``[PASS] name: detail`` lines, ``fix:`` under each FAIL/WARN/SKIP, and a summary line."""
    lines = []
    for c in checks:
        optional = "" if c.required else " (optional)"
        lines.append(f"[{c.status}] {c.name}{optional}: {c.detail}")
        if c.status != PASS and c.fix:
            lines.append(f"       fix: {c.fix}")
    failed = [c.name for c in checks if c.failed]
    warned = [c.name for c in checks if c.status == WARNING]
    if failed:
        lines.append(f"doctor: {len(failed)} required check(s) failed: {', '.join(failed)}")
    else:
        lines.append("doctor: all required checks passed" + (f" ({len(warned)} warning(s))" if warned else ""))
    return "\n".join(lines)


def doctor_exit_code(checks: Sequence[Check]) -> int:
    """0 when no required check failed or was skipped because of an earlier failure, else 1."""
    return 1 if any(c.failed or (c.required and c.status == SKIP) for c in checks) else 0
