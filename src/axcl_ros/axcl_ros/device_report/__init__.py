"""Device status for the monitor node and the ``axcl_ros`` CLI: gather, judge, format, diagnose (no rclpy here).

* :mod:`.probes`: :class:`AxclProbe` samples AXCL cards through the process-wide runtime without opening them (no
  ``axclrtSetDevice``/engine init: monitoring never changes what the card runs); a missing library, a failed
  ``axclInit``, an empty device list or a lost card become *unavailable* samples with the reason and how to fix it,
  never exceptions; after a failure it retries with a back-off and, when no session uses the runtime, restarts it so
  a card that comes back is seen again. :class:`CpuProbe` samples the host CPU and memory from ``/proc`` (the
  "device" of the onnxruntime backend).
* :mod:`.health`: :func:`evaluate` turns a :class:`DeviceSample` and :class:`Thresholds` into OK / WARN / ERROR and a
  message.
* :mod:`.smi`: :func:`format_smi_table` prints samples like ``axcl-smi``.
* :mod:`.doctor`: :func:`run_card_checks` and friends are ``axcl_ros doctor``.
"""

from .doctor import (
    FAIL,
    PASS,
    SKIP,
    WARNING,
    Check,
    check_devices,
    check_driver_files,
    check_library,
    check_model,
    check_onnxruntime,
    check_runtime,
    doctor_exit_code,
    format_checks,
    run_card_checks,
)
from .health import (
    DRIVER_FILES,
    DRIVER_FIX,
    ERROR,
    LEVEL_NAMES,
    LOST_FIX,
    NO_CARD_FIX,
    OK,
    WARN,
    DeviceSample,
    Evaluation,
    ThresholdError,
    Thresholds,
    diagnostic_values,
    evaluate,
)
from .probes import AxclProbe, CpuProbe, sample_from_properties
from .smi import format_smi_table

__all__ = [
    "OK", "WARN", "ERROR", "LEVEL_NAMES", "DeviceSample", "Thresholds", "ThresholdError", "Evaluation", "evaluate",
    "AxclProbe", "CpuProbe", "sample_from_properties", "diagnostic_values", "format_smi_table", "Check",
    "check_driver_files", "check_library", "check_runtime", "check_devices", "check_model", "check_onnxruntime",
    "run_card_checks", "format_checks", "doctor_exit_code", "DRIVER_FILES", "DRIVER_FIX", "LOST_FIX", "NO_CARD_FIX",
    "PASS", "FAIL", "WARNING", "SKIP",
]
