"""The detector on the CPU through ROS, quiet and with one core kept busy, against a plain baseline in the same run.

Three processes per run, as on a robot: the camera (``bench_camera.py``: publishes a 640×480 bgr8 frame at 10 or
30 Hz, reliable keep-last input, stamps it just before publishing, and receives the detections), the node under test
(``bench_ros_node.py``: our ``DetectorNode`` or the plain baseline node — a minimal rclpy node with onnxruntime's
default session and straightforward numpy pre/post), and, for the busy rows, a process spinning on one core.
Model: NudeNet's YOLOv8n (``320n.onnx``, real weights from PyPI) at 640×640. 0 boxes: a grey frame at confidence
0.25. ~300 boxes: the astronaut photo at confidence 1e-4, IoU 0.7, at most 300 detections (both nodes output 300).
Ours and the baseline alternate within each scenario.

Figures per run: out Hz (detections received ÷ seconds), dropped (1 − received ÷ sent), latency p50/p90/p99
(receive time − input stamp), CPU % of one core and CPU ms per processed frame (the node process's utime + stime over
the camera's run, from ``/proc``), threads and resident memory of the node process at the end. Every row is ours
beside the baseline with the ratio ours ÷ baseline.

    python bench/bench_ros_detector.py                      # all 8 scenarios, 8 s each
    python bench/bench_ros_detector.py --seconds 4 --load busy --fps 10 --boxes 0
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from bench_common import Row, percentiles, ratio, ros_available

HERE = Path(__file__).resolve().parent
TOPIC = "ros detector"
_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15 of stat)


def _proc_status(pid: int) -> Dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "Threads":
            out["threads"] = float(value.split()[0])
        elif key == "VmRSS":
            out["rss_mib"] = float(value.split()[0]) / 1024.0
    return out


def _frames(folder: Path) -> Dict[str, str]:
    import cv2

    from axcl_ros_testing.sample_inputs import skimage_image

    grey = np.full((480, 640, 3), 96, np.uint8)
    photo = grey.copy()
    rgb = skimage_image("astronaut")
    photo[:, 80:560] = cv2.resize(np.ascontiguousarray(rgb[:, :, ::-1]), (480, 480))
    paths = {}
    for name, img in (("grey", grey), ("photo", photo)):
        paths[name] = str(folder / f"{name}.npy")
        np.save(paths[name], img)
    return paths


#: boxes scenario → (frame, confidence, IoU)
BOXES = {0: ("grey", 0.25, 0.45), 300: ("photo", 1e-4, 0.7)}


def run_one(impl: str, model: str, fps: float, seconds: float, boxes: int, frames: Dict[str, str],
            index: int) -> dict:
    """One run: start the node process, stream, measure; returns the figures."""
    from bench_harness import run_cameras

    frame, conf, iou = BOXES[boxes]
    topic = f"/bench{index}_{impl}/image_raw"
    node = subprocess.Popen([sys.executable, str(HERE / "bench_ros_node.py"), "--impl", impl, "--model", model,
                             "--topic", topic, "--conf", str(conf), "--iou", str(iou), "--max-det", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        line = node.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"{impl} node did not start: {node.stderr.read()[-800:]}")
        cpu = {}

        def sampler():
            if "t0" not in cpu:
                cpu["t0"], cpu["c0"] = time.monotonic(), _proc_cpu_s(node.pid)

        report = run_cameras([topic], fps, seconds, sampler=sampler, qos="reliable", image=frames[frame])
        c1, t1 = _proc_cpu_s(node.pid), time.monotonic()
        status = _proc_status(node.pid)
    finally:
        node.terminate()
        try:
            node.wait(timeout=15)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
    outs = report["outputs"][topic]
    sent = report["sent"][topic]
    lat = [o[1] * 1e3 for o in outs]
    pct = percentiles(lat) if lat else {"p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
    cpu_s = c1 - cpu["c0"]
    return {"out_hz": len(outs) / seconds, "drop_pct": 100.0 * (1.0 - len(outs) / max(sent, 1)),
            "p50_ms": pct["p50"], "p90_ms": pct["p90"], "p99_ms": pct["p99"],
            "cpu_pct": 100.0 * cpu_s / max(t1 - cpu["t0"], 1e-9),
            "cpu_ms_per_frame": 1e3 * cpu_s / max(len(outs), 1), "threads": status.get("threads"),
            "rss_mib": status.get("rss_mib"), "sent": sent, "received": len(outs)}


def _busy() -> subprocess.Popen:
    """A process that keeps one core busy (the robot's other software)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


METRICS = (("out_hz", "out Hz", "Hz"), ("drop_pct", "dropped", "%"), ("p50_ms", "latency p50", "ms"),
           ("p90_ms", "latency p90", "ms"), ("p99_ms", "latency p99", "ms"), ("cpu_pct", "CPU", "% of a core"),
           ("cpu_ms_per_frame", "CPU per processed frame", "ms"), ("threads", "threads", ""),
           ("rss_mib", "resident memory", "MiB"))


def run(quick: bool = False, seconds: Optional[float] = None, loads=("quiet", "busy"), rates=(10.0, 30.0),
        box_counts=(0, 300)) -> List[Row]:
    """Measure and return the rows of this topic (``quick``: 4 s per run instead of 8)."""
    reason = ros_available()
    if reason:
        return [Row(TOPIC, "all", None, note=f"skipped: {reason}")]
    from axcl_ros import assets

    seconds = seconds or (4.0 if quick else 8.0)
    model = str(assets.nudenet_yolov8n_onnx())
    rows: List[Row] = []
    index = 0
    with tempfile.TemporaryDirectory() as tmp:
        frames = _frames(Path(tmp))
        for load in loads:
            busy = _busy() if load == "busy" else None
            try:
                for fps in rates:
                    for boxes in box_counts:
                        order = ("baseline", "ours") if index % 2 == 0 else ("ours", "baseline")
                        res = {}
                        for impl in order:
                            res[impl] = run_one(impl, model, fps, seconds, boxes, frames, index)
                            index += 1
                        what = f"{load}, {fps:g} Hz, {boxes} boxes"
                        ours, base = res["ours"], res["baseline"]
                        for key, name, unit in METRICS:
                            rows.append(Row(TOPIC, f"{what}: {name}", ours[key], unit, base[key], "plain node",
                                            ratio(ours[key], base[key]),
                                            note=f"{ours['received']}/{ours['sent']} vs "
                                                 f"{base['received']}/{base['sent']} frames, {seconds:g} s"
                                            if key == "out_hz" else ""))
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--load", nargs="+", choices=("quiet", "busy"), default=["quiet", "busy"])
    p.add_argument("--fps", nargs="+", type=float, default=[10.0, 30.0])
    p.add_argument("--boxes", nargs="+", type=int, choices=sorted(BOXES), default=sorted(BOXES))
    args = p.parse_args(argv)
    for r in run(seconds=args.seconds, loads=args.load, rates=args.fps, box_counts=args.boxes):
        base = "-" if r.baseline is None else f"{r.baseline:.4g}"
        val = "-" if r.value is None else f"{r.value:.4g}"
        rat = "-" if r.ratio is None else f"{r.ratio:.3f}"
        print(f"{r.metric:55s} ours {val:>9s}  plain {base:>9s}  ratio {rat:>6s}  {r.unit} {r.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
