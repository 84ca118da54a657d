"""Copy/compute overlap on the AXCL stub's PCIe/NPU link model: serial run() vs pipelined IO sets, same run.

The stub's link model (``AXCL_STUB_LINK=pi5``) gives every copy ``50 us + bytes / bandwidth`` (H2D 375 MB/s, D2H
435 MB/s: derived from published Gen2 x1 stage times, axcl_api.md section 4), every execute the model's ``exec_us``,
with one DMA engine per direction and one NPU queue. YOLO11 at 640x640: 1,228,800 B in, 4,838,400 B out (three fp32
heads). The bound is ``1 / max(upload + download, execute)`` (issue #13); the serial baseline
``1 / (upload + execute + download)`` is measured in the same run. Host CPU per frame is the process CPU time / frames;
it includes the stub's own stand-in compute of the outputs (work the card would do), so it is an upper bound.
The issue's bound counts upload and download on one link; the link model has one DMA engine per direction (as the
issue specifies), so when the execute is shorter than up + down the pipeline can exceed it (ratio > 1): its own
bound is then ``1 / max(upload, download, execute)``.
Measured quiet and with one core kept busy by another process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

import numpy as np
from bench_common import Row, ratio, stub_library

TOPIC = "pipeline"
H2D_MBPS, D2H_MBPS, LAT_US = 375, 435, 50
IN_BYTES, OUT_BYTES, OUT_COPIES = 1_228_800, 4_838_400, 3


def _link_ms() -> float:
    up = (LAT_US + IN_BYTES / H2D_MBPS) / 1000.0
    down = (OUT_COPIES * LAT_US + OUT_BYTES / D2H_MBPS) / 1000.0
    return up + down


def _measure(session, frames: int, mode: str, depth: int = 2) -> dict:
    feeds = {"images": np.full((1, 640, 640, 3), 9, np.uint8)}
    t0, c0 = time.perf_counter(), time.process_time()
    if mode == "serial":
        for _ in range(frames):
            session.run(feeds)
    else:
        for _ in session.run_pipelined((feeds for _ in range(frames)), depth=depth):
            pass
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"fps": frames / wall, "cpu_ms": cpu / frames * 1000.0}


def _executor_fps(path: str, depth: int, seconds: float) -> float:
    """Two cameras that always have a frame pending on one model, through the shared executor: served frames/s."""
    import threading

    from axcl_ros.runtime.executor import InferenceExecutor

    ex = InferenceExecutor(f"bench-pipeline-{depth}", pipeline_depth=depth)
    handle = ex.load(path, backend="axcl")
    feeds = {"images": np.full((1, 640, 640, 3), 9, np.uint8)}
    stop = threading.Event()

    def camera(name):
        while not stop.is_set():
            ex.submit(handle, feeds, stream=name)
            time.sleep(0.002)

    threads = [threading.Thread(target=camera, args=(n,)) for n in ("cam_a", "cam_b")]
    time.sleep(0.2)
    before = ex.stats()["models"][handle.name]["count"]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    time.sleep(seconds)
    served = ex.stats()["models"][handle.name]["count"] - before
    wall = time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join()
    ex.shutdown(5.0)
    return served / wall


def _busy_core():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def run(quick: bool = False) -> List[Row]:
    rows: List[Row] = []
    if stub_library() is None:
        return [Row(TOPIC, "pipelined throughput", None, note="skipped: AXCL stub cannot be built (no cc)")]
    os.environ.update({"AXCL_STUB_LINK": "pi5", "AXCL_STUB_H2D_MBPS": str(H2D_MBPS),
                       "AXCL_STUB_D2H_MBPS": str(D2H_MBPS), "AXCL_STUB_XFER_LATENCY_US": str(LAT_US)})
    from axcl_ros.runtime.axcl import shutdown_runtime
    from axcl_ros.runtime.axcl_backend import AxclBackend
    from axcl_ros_testing import stub_models as sm

    frames = 30 if quick else 120
    link = _link_ms()
    with tempfile.TemporaryDirectory() as tmp:
        for exec_ms, label in ((15.0, "exec 15 ms (= link time, issue #13)"), (3.4, "exec 3.4 ms (YOLO11s published)")):
            path = sm.yolo11_stub(Path(tmp) / f"y{exec_ms}.axmodel", size=640, exec_us=int(exec_ms * 1000))
            session = AxclBackend().load(str(path))
            bound = 1000.0 / max(link, exec_ms)
            serial_model = 1000.0 / (link + exec_ms)
            for load in ("quiet", "one core busy"):
                hog = _busy_core() if load != "quiet" else None
                try:
                    _measure(session, 3, "serial")
                    _measure(session, 3, "pipelined")  # warm-up: allocates the IO sets
                    serial = _measure(session, frames, "serial")
                    piped = {d: _measure(session, frames, "pipelined", d) for d in (2, 3)}
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
                where = f"YOLO11 640, {label}, {load}"
                rows.append(Row(TOPIC, f"serial throughput, {where}", serial["fps"], "fps", bound,
                                "bound 1/max(up+down, exec)", ratio(serial["fps"], bound),
                                note=f"model 1/(up+exec+down) = {serial_model:.1f} fps; link up+down {link:.1f} ms"))
                for d, m in piped.items():
                    rows.append(Row(TOPIC, f"pipelined ({d} IO sets) throughput, {where}", m["fps"], "fps", bound,
                                    "bound 1/max(up+down, exec)", ratio(m["fps"], bound),
                                    note=f"{m['fps'] / serial['fps']:.2f}x the serial run"))
                rows.append(Row(TOPIC, f"host CPU per frame, serial / pipelined(2), {where}", piped[2]["cpu_ms"],
                                "ms", serial["cpu_ms"], "serial", ratio(piped[2]["cpu_ms"], serial["cpu_ms"]),
                                note="includes the stub's stand-in compute of the outputs"))
            session.release()
            if exec_ms == 15.0:
                secs = 2.0 if quick else 6.0
                ser, pipe = _executor_fps(str(path), 1, secs), _executor_fps(str(path), 2, secs)
                rows.append(Row(TOPIC, f"executor, 2 cameras on one model, pipelined, YOLO11 640, {label}", pipe, "fps",
                                bound, "bound 1/max(up+down, exec)", ratio(pipe, bound),
                                note=f"pipeline_depth=1 (serial) in the same run: {ser:.1f} fps; "
                                     f"{pipe / ser:.2f}x"))
    shutdown_runtime()
    return rows


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(f"{r.metric}: {r.value:.2f} {r.unit} (baseline {r.baseline_name} {r.baseline:.2f}, ratio "
              f"{r.ratio:.2f}) {r.note}")
