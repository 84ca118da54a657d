"""Device health: what a sample holds (:class:`DeviceSample`), the limits (:class:`Thresholds`), the judgement
(:func:`evaluate`: OK / WARN / ERROR and a message) and the ``/diagnostics`` key-values, plus the fixes the probes and
the doctor print."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

__all__ = [
    "OK", "WARN", "ERROR", "LEVEL_NAMES", "DeviceSample", "Thresholds", "ThresholdError", "Evaluation", "evaluate",
    "diagnostic_values", "DRIVER_FILES", "DRIVER_FIX", "LOST_FIX", "NO_CARD_FIX",
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


def hex_id(device_id: int) -> str:
    """``0x81`` for a device id, ``-`` for none."""
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
            return f"card {self.index} (id {self.device_id} / {hex_id(self.device_id)})"
        return f"card index {self.index} (id unknown)"

    def to_dict(self) -> Dict[str, object]:
        """Plain dict (for ``--json``), with the derived percentages and ids."""
        out = asdict(self)
        out.update(memory_percent=self.memory_percent, cmm_percent=self.cmm_percent, hardware_id=self.hardware_id,
                   device_id_hex=hex_id(self.device_id))
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
              ("device_id_hex", hex_id(sample.device_id)), ("kind", sample.kind), ("name", sample.name),
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
