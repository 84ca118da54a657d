"""``axcl_ros doctor``: checks of the driver files, the library, the runtime, the cards, a model and onnxruntime,
each PASS / FAIL / WARN / SKIP with what was found and how to fix it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

from .health import DRIVER_FILES, DRIVER_FIX, ERROR, NO_CARD_FIX, OK, Thresholds, evaluate
from .probes import AxclProbe, default_runtime

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
    from ..runtime import axcl_library
    from ..runtime.base import BackendUnavailableError

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
    from ..runtime.axcl_abi import AxclError
    from ..runtime.base import BackendError

    try:
        rt = (runtime_factory or default_runtime)()
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

    from ..runtime.base import BackendError
    from ..runtime.registry import load_model

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
