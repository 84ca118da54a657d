"""``device_monitor``: health of the AX650N cards (or of the host CPU) on ``/diagnostics`` and ``~/status``.

Publishes, every ``period_s`` while active:

* ``/diagnostics`` (diagnostic_msgs/DiagnosticArray): one status per card, named ``<node>: card <index>``
  (``<node>: host CPU`` for ``backend: onnxruntime``), ``hardware_id`` ``axcl:<device id>``; level OK, WARN (at or
  above ``temperature_warn_c``, ``memory_warn_percent`` or ``cmm_warn_percent``) or ERROR (at or above
  ``temperature_error_c``, or the library / runtime / card is missing or stopped answering; the values then hold
  ``error`` and ``fix``).
* ``~/status`` (axcl_msgs/DeviceStatus): one message per device; NaN for values the device does not report.

A card that is absent when the node is configured is **not** a configure failure: robots often boot before the
driver is up, so the node configures, reports ERROR with the reason, retries with a back-off (up to 30 s between
tries) and reports OK once the card answers. Only bad parameters make configure fail. When a card stops answering
and no model session in this process uses the runtime, the monitor restarts the runtime on its next try; otherwise
recovery is left to the nodes using the card (cleanup + configure). The monitor only reads telemetry: it never
opens a card (no ``axclrtSetDevice`` / engine init), so it does not change what the card runs.

Sampling runs on the node's own ``telemetry`` thread, every ``period_s``: ``axclrtGetDeviceProperties`` runs several
shell commands on the card per call (tens to hundreds of ms), so it never runs on an executor thread that serves
callbacks, nor on a device's inference worker.

``backend: onnxruntime`` reports the host CPU load, memory and hottest thermal zone from ``/proc`` and
``/sys/class/thermal`` as a single "device" (index 0, device id −1), so a CPU-only pipeline has a status too.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from typing import Any, Dict, List, Optional

from axcl_msgs.msg import DeviceStatus
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter import Parameter

from ..device_report import (
    AxclProbe,
    CpuProbe,
    DeviceSample,
    Evaluation,
    Thresholds,
    diagnostic_values,
    evaluate,
)
from ..runtime.registry import backend_names
from .common import AxclLifecycleNode
from .parameters import ParamSpec
from .process import run_main

THRESHOLD_PARAMS = ("temperature_warn_c", "temperature_error_c", "memory_warn_percent", "cmm_warn_percent")
RETRY_MAX_S = 30.0


def _f32(value: Optional[float]) -> float:
    return math.nan if value is None else float(value)


class DeviceMonitorNode(AxclLifecycleNode):
    """Lifecycle node sampling :class:`~axcl_ros.device_report.AxclProbe` (cards) or
    :class:`~axcl_ros.device_report.CpuProbe` (host CPU)."""

    PARAMS = (
        ParamSpec("backend", "axcl", "axcl = AX650N cards through libaxcl_rt.so; onnxruntime = the host CPU.",
                  choices=backend_names()),
        ParamSpec("device_indices", Parameter.Type.INTEGER_ARRAY,
                  "Card indices into the AXCL device list (not PCIe ids); empty = every card."),
        ParamSpec("period_s", 1.0, "Seconds between samples.", min=0.05, max=3600.0, dynamic=True),
        ParamSpec("temperature_warn_c", 85.0, "WARN at or above this card temperature (°C).", min=-40.0, max=150.0,
                  dynamic=True),
        ParamSpec("temperature_error_c", 95.0, "ERROR at or above this card temperature (°C).", min=-40.0,
                  max=150.0, dynamic=True),
        ParamSpec("memory_warn_percent", 90.0, "WARN at or above this share of system memory in use (%).",
                  min=0.001, max=100.0, dynamic=True),
        ParamSpec("cmm_warn_percent", 90.0, "WARN at or above this share of CMM (NPU memory pool) in use (%).",
                  min=0.001, max=100.0, dynamic=True),
    )

    def __init__(self, node_name: str = "device_monitor", **kwargs) -> None:
        self.probe = None
        self.thresholds = Thresholds()
        self.last_samples: List[DeviceSample] = []
        self._status_pub = None
        self._cards_pub = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._period = 1.0
        self._levels: Dict[str, int] = {}
        self._threshold_changes: Dict[str, Any] = {}  # of the set-parameters call being checked
        super().__init__(node_name, **kwargs)

    # -- parameters ------------------------------------------------------------------------------------------------
    def _thresholds_with(self, changes: Dict[str, Any]) -> Thresholds:
        values = {n: float(changes.get(n, self.param(n))) for n in THRESHOLD_PARAMS}
        return Thresholds(**values)

    def _on_set_parameters(self, params) -> SetParametersResult:
        # thresholds are checked together, so warn and error limits can be moved in one call
        changes = {p.name: p.value for p in params if p.name in THRESHOLD_PARAMS}
        self._threshold_changes = changes
        try:
            return super()._on_set_parameters(params)
        finally:
            self._threshold_changes = {}

    def _threshold_problems(self, changes: Dict[str, Any]) -> List[str]:
        try:
            return self._thresholds_with(changes).problems()
        except (TypeError, ValueError) as exc:
            return [str(exc)]

    def apply_dynamic_parameter(self, name: str, value: Any) -> None:
        if name in THRESHOLD_PARAMS:
            # parameters of one call are applied one by one before any is stored: build on the applied values
            self.thresholds = dataclasses.replace(self.thresholds, **{name: float(value)})
            self.get_logger().info(f"{name} set to {value}")
        elif name == "period_s":
            self._period = float(value)
            self._wake.set()  # the telemetry thread starts the new period now

    def validate_parameter(self, name: str, value: Any) -> Optional[str]:
        if name == "device_indices" and any(int(i) < 0 for i in (value or [])):
            return f"device_indices={list(value)}: card indices must be >= 0 (0 = first card listed)"
        if name in THRESHOLD_PARAMS:
            # the thresholds with the other values of the same call; a set call reports every problem at the first
            # threshold it validates, configure (which validates them one by one) each problem once
            problems = self._threshold_problems({**self._threshold_changes, name: value})
            if self._threshold_changes:
                return "; ".join(problems) or None
            return "; ".join(p for p in problems if p.startswith(f"{name}=")) or None
        return None

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def configure(self) -> None:
        self.thresholds = self._thresholds_with({})  # checked with every parameter before configure
        period = float(self.param("period_s"))
        indices = [int(i) for i in self.param("device_indices") or []]
        if self.param("backend") == "onnxruntime":
            self.probe = CpuProbe()
            what = "host CPU"
        else:
            self.probe = AxclProbe(indices, retry_initial_s=period, retry_max_s=RETRY_MAX_S)
            what = f"AXCL cards {indices or '(all)'}"
        self._status_pub = self.create_lifecycle_publisher(DeviceStatus, "~/status", 10)
        self._cards_pub = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        self._levels.clear()
        self.get_logger().info(f"monitoring {what} every {period:g} s; limits: {self.thresholds.describe()}")

    def activate(self) -> None:
        self._period = float(self.param("period_s"))
        self._stop.clear()
        self._thread = threading.Thread(target=self._telemetry_loop, name="telemetry", daemon=True)
        self._thread.start()

    def deactivate(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._wake.set()
            thread.join(timeout=10.0)  # a sample in flight finishes first; nothing is published afterwards

    def _telemetry_loop(self) -> None:
        """Sample and publish now, then every ``period_s`` until deactivated (own thread; never raises)."""
        while not self._stop.is_set():
            try:
                self.sample_and_publish()
            except Exception as exc:  # noqa: BLE001 - the monitor reports, it never dies
                self.counters["publish_errors"] += 1
                self.get_logger().error(f"telemetry sample failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=30.0)
            self._wake.clear()
            if self._stop.is_set():
                break
            self._wake.wait(self._period)

    def cleanup(self) -> None:
        self.deactivate()
        for pub in (self._status_pub, self._cards_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._status_pub = self._cards_pub = None
        self.probe = None
        self.last_samples = []

    def publish_diagnostics(self) -> None:
        """The per-card statuses published by :meth:`sample_and_publish` replace the base node's status."""

    # -- sampling ------------------------------------------------------------------------------------------------------
    def _sample(self) -> List[DeviceSample]:
        try:
            return self.probe.sample()
        except Exception as exc:  # noqa: BLE001 - the monitor reports, it never dies
            self.counters["probe_errors"] += 1
            return [DeviceSample(index=0, available=False, error=f"sampling failed: {type(exc).__name__}: {exc}",
                                 kind="host" if isinstance(self.probe, CpuProbe) else "axcl")]

    def sample_and_publish(self) -> None:
        """Take one sample of every device and publish ``~/status`` and ``/diagnostics``."""
        if self.probe is None or self._status_pub is None:
            return
        samples = self._sample()
        self.last_samples = samples
        stamp = self.get_clock().now().to_msg()
        diag = DiagnosticArray()
        diag.header.stamp = stamp
        thresholds = self.thresholds
        for s in samples:
            ev = evaluate(s, thresholds)
            self._log_change(s, ev)
            self._status_pub.publish(self._status_msg(s, stamp))
            diag.status.append(self._diag_status(s, ev, thresholds))
        self._cards_pub.publish(diag)
        self.counters["samples"] += 1

    def _status_msg(self, s: DeviceSample, stamp) -> DeviceStatus:
        msg = DeviceStatus(available=s.available, error=s.error, index=max(0, s.index), device_id=s.device_id,
                           name=s.name, firmware=s.firmware, temperature_c=_f32(s.temperature_c),
                           cpu_load_percent=_f32(s.cpu_load_percent), npu_load_percent=_f32(s.npu_load_percent),
                           memory_used_kb=s.memory_used_kb, memory_total_kb=s.memory_total_kb,
                           cmm_used_kb=s.cmm_used_kb, cmm_total_kb=s.cmm_total_kb)
        msg.header.stamp = stamp
        msg.header.frame_id = s.hardware_id
        return msg

    def _status_name(self, s: DeviceSample) -> str:
        what = "host CPU" if s.kind == "host" else f"card {s.index}"
        return f"{self.get_fully_qualified_name()}: {what}"

    def _diag_status(self, s: DeviceSample, ev: Evaluation, thresholds: Thresholds) -> DiagnosticStatus:
        return DiagnosticStatus(level=bytes([ev.level]), name=self._status_name(s), hardware_id=s.hardware_id,
                                message=ev.message,
                                values=[KeyValue(key=k, value=v) for k, v in diagnostic_values(s, thresholds)])

    def _log_change(self, s: DeviceSample, ev: Evaluation) -> None:
        key = self._status_name(s)
        if self._levels.get(key) == ev.level:
            return
        first = key not in self._levels
        self._levels[key] = ev.level
        text = f"{s.label}: {ev.level_name}: {ev.message}" + (f" (fix: {s.fix})" if s.fix else "")
        if ev.level >= 2:
            self.get_logger().error(text)
        elif ev.level == 1:
            self.get_logger().warning(text)
        elif not first:
            self.get_logger().info(text)

    def diagnostic_values(self) -> dict:
        return {"devices": len(self.last_samples)}


def main(args=None) -> int:
    """Run the device monitor alone (``ros2 run axcl_ros device_monitor``)."""
    return run_main(DeviceMonitorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
