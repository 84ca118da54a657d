"""Overload: 30 fps of frames into a model that takes ~100 ms.

Two measurements in the same run:

* executor level: a sleeping 100 ms session on :class:`InferenceExecutor`, frames submitted on a stream
  (latest-only slot, what the nodes do) versus the same frames on the FIFO queue (a plain queue, the baseline);
  latency = completion − submission;
* end to end: the detector node through real DDS on the AXCL stub runtime with a YOLO11-signature model whose
  execute sleeps 100 ms (the host is idle meanwhile, as with the card); latency = output receive time − input stamp.
  The camera runs in its own process; camera and node use reliable QoS so that every frame reaches the node and the
  latest-only slot, not DDS, decides what is dropped (see the multi-camera transport rows for best effort).

Reported: latency percentiles, backlog (executor submissions waiting; sampled every 10 ms), drops (replaced
frames counted by the executor/node; frames lost in DDS = sent − received by the node).
"""

from __future__ import annotations

import tempfile
import threading
import time
from typing import List

import numpy as np
from bench_common import Row, percentiles, ratio, ros_available, sleeping_session, stub_library

TOPIC = "overload"
MODEL_MS = 100.0
FPS = 30.0


def _executor_run(stream: bool, seconds: float):
    from axcl_ros.runtime.executor import InferenceExecutor

    ex = InferenceExecutor(f"bench-overload-{'slot' if stream else 'fifo'}")
    handle = ex.load_session(lambda: sleeping_session(MODEL_MS, (1, 4)), name="sleep100")
    lat: List[float] = []
    lock = threading.Lock()
    backlog: List[int] = []

    def done(t_sub, fut):
        if fut.cancelled() or fut.exception() is not None:
            return
        with lock:
            lat.append(time.perf_counter() - t_sub)

    x = np.zeros((1, 4), np.float32)
    t0 = time.perf_counter()
    k = 0
    last_sample = 0.0
    while True:
        due = t0 + k / FPS
        if due - t0 >= seconds:
            break
        while time.perf_counter() < due:
            now = time.perf_counter()
            if now - last_sample >= 0.01:
                backlog.append(ex.pending())
                last_sample = now
            time.sleep(min(0.005, max(0.0, due - now)))
        t_sub = time.perf_counter()
        fut = ex.submit(handle, {"x": x}, stream="cam" if stream else None)
        fut.add_done_callback(lambda f, t_sub=t_sub: done(t_sub, f))
        k += 1
    time.sleep(2 * MODEL_MS / 1e3)
    stats = ex.stats()["models"]["sleep100"]
    end_backlog = ex.pending()
    ex.shutdown(2.0)
    with lock:
        latencies = list(lat)
    return {"sent": k, "done": len(latencies), "drops": stats["drops"], "latency": latencies,
            "backlog_max": max(backlog) if backlog else 0, "backlog_end": end_backlog}


def _node_run(seconds: float):
    from bench_harness import DetectorRig, camera_counts, yolo_stub_model

    topic = "/ov_cam/image_raw"
    with tempfile.TemporaryDirectory() as tmp:
        model = yolo_stub_model(tmp, MODEL_MS)
        backlog: List[int] = []
        with DetectorRig(model, [topic], backend="axcl", name="bench_overload", input_qos="reliable") as rig:
            rig.start()
            ex = rig.node.model.executor
            report = rig.stream(FPS, seconds, sampler=lambda: backlog.append(ex.pending()), qos="reliable")
            counts = camera_counts(rig.node)[0]
            stats = rig.node.model.stats()
    outs = report["outputs"][topic]
    return {"sent": report["sent"][topic], "counts": counts, "latency": [o[1] for o in outs],
            "inside_ms": [o[2] for o in outs], "backlog_max": max(backlog) if backlog else 0,
            "run_ms": stats.get("model.run_ms_mean", float("nan")), "exec_drops": stats.get("model.drops", 0)}


def run(quick: bool = False) -> List[Row]:
    """Measure and return the rows of this topic."""
    seconds = 5.0 if quick else 12.0
    rows: List[Row] = []
    slot = _executor_run(True, seconds)
    fifo = _executor_run(False, seconds)
    ps = percentiles([x * 1e3 for x in slot["latency"]], (50, 90, 99, 100))
    pf = percentiles([x * 1e3 for x in fifo["latency"]], (50, 90, 99, 100))
    for key in ("p50", "p90", "p99"):
        rows.append(Row(TOPIC, f"executor latency {key}, latest-only slot", ps[key], "ms", pf[key], "FIFO queue",
                        ratio(ps[key], pf[key]), note=f"model {MODEL_MS:.0f} ms, {FPS:.0f} fps for {seconds:.0f} s"))
    rows.append(Row(TOPIC, "executor latency max, latest-only slot", ps["p100"], "ms", MODEL_MS, "model time",
                    ratio(ps["p100"], MODEL_MS), note="bound: one run in progress + own run = 2x model time"))
    rows.append(Row(TOPIC, "executor backlog max (submissions waiting)", slot["backlog_max"], "",
                    fifo["backlog_max"], "FIFO queue", note=f"FIFO still held {fifo['backlog_end']} at the end"))
    rows.append(Row(TOPIC, "executor served / dropped (latest-only)", slot["done"], "frames",
                    note=f"{slot['drops']} dropped (replaced) of {slot['sent']} sent; served+dropped = "
                         f"{slot['done'] + slot['drops']}"))

    reason = ros_available()
    if reason:
        rows.append(Row(TOPIC, "detector node end to end", None, note=f"skipped: {reason}"))
        return rows
    if stub_library() is None:
        rows.append(Row(TOPIC, "detector node end to end", None, note="skipped: AXCL stub cannot be built (no cc)"))
        return rows
    node = _node_run(seconds)
    pn = percentiles([x * 1e3 for x in node["latency"]], (50, 90, 99, 100))
    c = node["counts"]
    for key in ("p50", "p90", "p99", "p100"):
        name = "max" if key == "p100" else key
        rows.append(Row(TOPIC, f"detector node latency {name} (output recv − input stamp)", pn[key], "ms",
                        node["run_ms"], "model run", ratio(pn[key], node["run_ms"]),
                        note=f"AXCL stub, execute sleeps {MODEL_MS:.0f} ms; 640x480 bgr8 at {FPS:.0f} fps, "
                             f"{seconds:.0f} s"))
    pin = percentiles(node["inside_ms"], (50, 100))
    rows.append(Row(TOPIC, "detector node receive→publish p50 / max (node's timing.total_ms)", pin["p50"], "ms",
                    node["run_ms"], "model run", ratio(pin["p50"], node["run_ms"]),
                    note=f"max {pin['p100']:.0f} ms; the rest of the end-to-end latency is DDS in and out"))
    rows.append(Row(TOPIC, "detector node backlog max (executor)", node["backlog_max"], "",
                    note="latest-only slot per camera: never more than 1 waiting"))
    lost = node["sent"] - c["received"]
    rows.append(Row(TOPIC, "detector node frames published", c["published"], "frames",
                    note=f"of {node['sent']} sent: {c['dropped']} replaced in the slot (counted), {lost} not "
                         f"delivered by DDS (reliable, keep last 1), {c['errors']} errors; output rate "
                         f"{c['published'] / seconds:.1f}/s vs model capacity {1e3 / node['run_ms']:.1f}/s"))
    return rows


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
