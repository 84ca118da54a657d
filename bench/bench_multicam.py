"""Four cameras on one model: aggregate throughput against one camera, and how evenly the cameras are served.

One detector node subscribes to N cameras (N = 1, then 4), each publishing 640×480 bgr8 at 30 fps through real DDS;
all cameras share one model instance on the process-wide executor (latest-only slot per camera, round-robin).
Two models: the AXCL stub runtime with a YOLO11-signature model whose execute sleeps 50 ms (device-bound, the host
idle meanwhile, as with the card: capacity 20 frames/s), and NudeNet's real YOLOv8n at 320×320 on onnxruntime
(CPU-bound: the model competes with DDS and the host work for the same 2 cores). QoS: ``sensor_data`` (best effort,
the node's default) and ``reliable`` on both ends (every frame reaches the node, so only its latest-only slots drop
frames, and the node does the host work of every frame). The transport rows first measure what a bare subscriber
(no model, no work) receives from the same camera process with each QoS. The last stub variant lowers Python's GIL
switch interval (``sys.setswitchinterval``, default 5 ms) in the node's process to 0.5 ms: the executor's worker
releases the GIL at every AXCL call and, while the node's other threads convert incoming frames, waits up to one
interval to get it back.

Throughput counts outputs received whose input stamp lies after a 1-s warm-up; the spread is
(max − min) / mean of the per-camera output rates.
"""

from __future__ import annotations

import sys
import tempfile
from typing import Dict, List

from bench_common import Row, ratio, ros_available, stub_library

TOPIC = "multi-camera"
FPS = 30.0
STUB_MS = 50.0
WARMUP_S = 1.0


def _measure(model: str, backend: str, n: int, seconds: float, name: str, qos: str, **params) -> Dict[str, object]:
    from bench_harness import DetectorRig, camera_counts

    topics = [f"/{name}{i}/image_raw" for i in range(n)]
    with DetectorRig(model, topics, backend=backend, name=f"bench_{name}{n}", input_qos=qos, **params) as rig:
        rig.start()
        report = rig.stream(FPS, seconds, qos=qos)
        counts = camera_counts(rig.node)
        run_ms = rig.node.model.stats().get("model.run_ms_mean", float("nan"))
    t0 = report["start"]
    rates = []
    for t in topics:
        kept = [o for o in report["outputs"][t] if o[0] >= t0 + WARMUP_S]
        rates.append(len(kept) / (seconds - WARMUP_S))
    mean = sum(rates) / len(rates)
    spread = (max(rates) - min(rates)) / mean if mean > 0 else float("nan")
    return {"rates": rates, "total": sum(rates), "spread": spread, "counts": counts, "run_ms": run_ms}


def run(quick: bool = False) -> List[Row]:
    """Measure and return the rows of this topic."""
    reason = ros_available()
    if reason:
        return [Row(TOPIC, "all", None, note=f"skipped: {reason}")]
    from bench_harness import transport_delivery

    from axcl_ros import assets

    seconds = 5.0 if quick else 10.0
    rows: List[Row] = []
    for qos in ("sensor_data", "reliable"):
        d = transport_delivery(FPS, seconds, qos)
        rows.append(Row(TOPIC, f"transport: bare rclpy subscriber, 1 camera, {qos}", d["received"], "frames",
                        d["sent"], "frames sent", ratio(d["received"], d["sent"]),
                        note="640x480 bgr8 at 30 fps from another process, no model, no work in the callback"))
    variants = []
    with tempfile.TemporaryDirectory() as tmp:
        if stub_library() is not None:
            from bench_harness import yolo_stub_model

            stub = yolo_stub_model(tmp, STUB_MS)
            variants.append(("AXCL stub 50 ms, sensor_data", stub, "axcl", "stub", "sensor_data", {}))
            variants.append(("AXCL stub 50 ms, reliable", stub, "axcl", "stubr", "reliable", {}))
            variants.append(("AXCL stub 50 ms, reliable, GIL switch interval 0.5 ms", stub, "axcl", "stubg",
                             "reliable", {"switch_interval": 0.0005}))
        else:
            rows.append(Row(TOPIC, "AXCL stub", None, note="skipped: the AXCL stub cannot be built (no cc)"))
        try:
            labels = f"{tmp}/nudenet.txt"
            with open(labels, "w") as f:
                f.write("\n".join(assets.NUDENET_LABELS) + "\n")
            variants.append(("YOLOv8n 320 onnxruntime CPU, sensor_data", str(assets.nudenet_yolov8n_onnx()),
                             "onnxruntime", "ort", "sensor_data", {"input_size": 320, "labels": labels}))
        except assets.AssetNotFoundError as exc:
            rows.append(Row(TOPIC, "onnxruntime", None, note=f"skipped: {exc}"))
        for label, model, backend, short, qos, params in variants:
            params = dict(params)
            default_interval = sys.getswitchinterval()
            sys.setswitchinterval(params.pop("switch_interval", default_interval))
            try:
                one = _measure(model, backend, 1, seconds, f"mc_{short}_", qos, **params)
                four = _measure(model, backend, 4, seconds, f"mc_{short}_", qos, **params)
            finally:
                sys.setswitchinterval(default_interval)
            cap = 1e3 / one["run_ms"] if one["run_ms"] == one["run_ms"] and one["run_ms"] > 0 else None
            rows.append(Row(TOPIC, f"{label}: 1 camera throughput", one["total"], "frames/s", cap,
                            "model capacity (1/run)", ratio(one["total"], cap),
                            note=f"30 fps offered; run {one['run_ms']:.1f} ms"))
            rows.append(Row(TOPIC, f"{label}: 4 cameras aggregate throughput", four["total"], "frames/s",
                            one["total"], "1 camera", ratio(four["total"], one["total"]),
                            note=f"4x30 fps offered; run {four['run_ms']:.1f} ms; per camera "
                                 + " / ".join(f"{r:.1f}" for r in four["rates"])))
            dropped = sum(c["dropped"] for c in four["counts"])
            errors = sum(c["errors"] for c in four["counts"])
            rows.append(Row(TOPIC, f"{label}: 4 cameras rate spread (max−min)/mean", four["spread"] * 100, "%",
                            note="node received per camera "
                                 + " / ".join(str(c["received"]) for c in four["counts"])
                                 + ", published " + " / ".join(str(c["published"]) for c in four["counts"])
                                 + f"; {dropped} replaced in the latest-only slots, {errors} errors"))
    return rows


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
