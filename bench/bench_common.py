"""What every benchmark shares: result rows, robust timing, percentiles, the machine header, the AXCL stub.

Benchmarks report ratios against a baseline measured in the same run (these machines are noisy), never absolute
pass/fail thresholds. Times are medians over repeated blocks; the spread (p10–p90 of the blocks) is kept too.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "axcl_ros"
TOOLS = ROOT / "tools"  # the test helpers (axcl_ros_testing), not installed with the package
for _path in (TOOLS, SRC):  # the source tree and the helpers, as pytest.ini does for the tests
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


@dataclass
class Row:
    """One line of the results table.

    ``value`` (in ``unit``) is what we measured; ``baseline`` the reference measured in the same run (``None`` when
    there is none) and ``ratio`` = value / baseline (``None`` when not meaningful). ``note`` says what was compared.
    """

    topic: str
    metric: str
    value: Optional[float]
    unit: str = ""
    baseline: Optional[float] = None
    baseline_name: str = ""
    ratio: Optional[float] = None
    note: str = ""
    extra: Dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def ratio(value: Optional[float], baseline: Optional[float]) -> Optional[float]:
    """value / baseline, None when either is missing or the baseline is 0."""
    if value is None or baseline is None or baseline == 0:
        return None
    return float(value) / float(baseline)


def percentiles(values: Sequence[float], ps: Sequence[float] = (50, 90, 99)) -> Dict[str, float]:
    """``{"p50": ..., "p90": ..., ...}`` of ``values`` (NaN when empty)."""
    arr = np.asarray(list(values), dtype=np.float64)
    out = {}
    for p in ps:
        key = f"p{p:g}"
        out[key] = float(np.percentile(arr, p)) if arr.size else float("nan")
    return out


@dataclass
class Timing:
    """Per-call time of a function: median and p10/p90 over blocks, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    calls: int


def time_per_call(fn: Callable[[], object], *, blocks: int = 15, per_block: int = 10, warmup: int = 3) -> Timing:
    """Median time of one ``fn()`` call, measured as ``blocks`` blocks of ``per_block`` calls (GC off inside)."""
    for _ in range(warmup):
        fn()
    samples = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(blocks):
            t0 = time.perf_counter()
            for _ in range(per_block):
                fn()
            samples.append((time.perf_counter() - t0) * 1e3 / per_block)
    finally:
        if gc_was:
            gc.enable()
    p = percentiles(samples, (10, 50, 90))
    return Timing(p["p50"], p["p10"], p["p90"], blocks * per_block)


def time_interleaved(fns: Dict[str, Callable[[], object]], *, blocks: int = 15, per_block: int = 10,
                     warmup: int = 3, clock: Callable[[], float] = time.perf_counter) -> Dict[str, Timing]:
    """Like :func:`time_per_call` for several functions, alternating them block by block so that a slow phase of
    the machine hits all of them alike (the ratios stay meaningful). ``clock=time.thread_time`` measures the CPU
    time of the calling thread instead of the wall clock: it leaves out the time spent waiting for a core, which on
    a loaded machine hits a longer block more often than a shorter one."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: Dict[str, List[float]] = {k: [] for k in fns}
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(blocks):
            for name, fn in fns.items():
                t0 = clock()
                for _ in range(per_block):
                    fn()
                samples[name].append((clock() - t0) * 1e3 / per_block)
    finally:
        if gc_was:
            gc.enable()
    out = {}
    for name, vals in samples.items():
        p = percentiles(vals, (10, 50, 90))
        out[name] = Timing(p["p50"], p["p10"], p["p90"], blocks * per_block)
    return out


@contextlib.contextmanager
def busy_core(busy: bool = True) -> Iterator[None]:
    """While inside, another process spins on one core (the robot's other software); ``busy=False`` = quiet."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        if proc is not None:
            time.sleep(0.2)  # let it get scheduled before the first block
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def sleeping_session(ms: float, shape: Sequence[int] = (1,)):
    """A fake model: input ``x`` and output ``y`` float32 of ``shape``; each run sleeps ``ms`` (device time without a
    device), returning ``x + 1``."""
    from axcl_ros.runtime.base import Session, TensorSpec

    class Sleeping(Session):
        backend_name, device, path = "fake", "cpu", f"sleep{ms:g}.model"
        owns_outputs = True
        _in = (TensorSpec("x", tuple(shape), np.dtype(np.float32)),)
        _out = (TensorSpec("y", tuple(shape), np.dtype(np.float32)),)

        @property
        def inputs(self):
            return self._in

        @property
        def outputs(self):
            return self._out

        def run(self, feeds, output_names=None):
            time.sleep(ms / 1e3)
            return {"y": feeds["x"] + 1}

        def release(self):
            pass

    return Sleeping()


def ros_available() -> Optional[str]:
    """None when rclpy and the built axcl_msgs import, else the reason (run through ``make bench``)."""
    try:
        import axcl_msgs.msg  # noqa: F401
        import rclpy  # noqa: F401
    except ImportError as exc:
        return f"{exc} (source scripts/env.sh: `make bench` does it)"
    return None


def stub_library() -> Optional[str]:
    """Build (or reuse) the AXCL stub runtime and point ``AXCL_LIB_PATH`` at it; None when it cannot be built."""
    try:
        from axcl_ros_testing.axcl_stub_build import build_stub
    except ImportError:
        return None
    try:
        lib = build_stub()
    except Exception as exc:  # noqa: BLE001 - no compiler: the stub rows say so
        print(f"[bench] AXCL stub unavailable: {exc}", file=sys.stderr)
        return None
    os.environ["AXCL_LIB_PATH"] = str(lib)
    for key in ("AXCL_STUB_FAIL_LOAD", "AXCL_STUB_FAIL_EXECUTE_AFTER", "AXCL_STUB_DEVICE_LOST_AFTER"):
        os.environ.pop(key, None)
    return str(lib)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 ** 2
    except OSError:
        pass
    return float("nan")


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001
        return "-"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "-"
    except (OSError, subprocess.SubprocessError):
        return "-"


def machine_info() -> Dict[str, str]:
    """Date, machine and software versions of this run."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": f"{_mem_gib():.0f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "opencv": _version("opencv-python-headless"),
        "onnxruntime": _version("onnxruntime"),
        "rclpy": _version("rclpy"),
        "faster-whisper": _version("faster-whisper"),
        "commit": _git_commit(),
    }


def fmt(value: Optional[float], digits: int = 3) -> str:
    """A number for the table: 3 significant digits, ``-`` for None/NaN."""
    if value is None:
        return "-"
    value = float(value)
    if value != value:  # NaN
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"
