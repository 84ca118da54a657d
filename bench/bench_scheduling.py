"""Camera frames vs a continuous speech decode on one device executor: queue wait and drops, two policies, same run.

Synthetic device work (sessions that sleep for their run time, so the numbers are about scheduling, not CPU):
a detector at 30 fps (``DET_MS`` per frame, latest-only stream slot) and a Whisper-like decoder that submits one
step (``STEP_MS``) at a time through the FIFO queue, with ``HOST_MS`` of host work between steps, plus a second FIFO
client (a service call every ``SERVICE_PERIOD_S``, ``SERVICE_MS``) so FIFO jobs also wait in line as they do in a
process hosting several nodes. Baseline: the detector alone. Goal (issue #13): detector queue wait p95 <= one decoder
step + one frame's execute time, and no more executor drops than the detector alone.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Dict, List

import numpy as np
from bench_common import Row, percentiles, ratio, sleeping_session

TOPIC = "scheduling"
FPS, DET_MS, STEP_MS, HOST_MS, SERVICE_MS, SERVICE_PERIOD_S = 30.0, 12.0, 8.0, 1.0, 8.0, 0.05


def _scenario(policy: str, speech: bool, seconds: float) -> Dict[str, float]:
    from axcl_ros.runtime.executor import InferenceExecutor

    ex = InferenceExecutor(f"bench-sched-{policy}-{speech}", policy=policy)
    det = ex.load_session(lambda: sleeping_session(DET_MS), name="detector")
    dec = ex.load_session(lambda: sleeping_session(STEP_MS), name="decoder")
    svc = ex.load_session(lambda: sleeping_session(SERVICE_MS), name="service")
    stop = threading.Event()
    x = np.zeros((1,), np.float32)
    steps = [0]

    def decode():
        while not stop.is_set():
            ex.submit(dec, {"x": x}).result(10)
            steps[0] += 1
            time.sleep(HOST_MS / 1e3)

    def service():
        while not stop.is_set():
            ex.submit(svc, {"x": x})
            stop.wait(SERVICE_PERIOD_S)

    threads = [threading.Thread(target=decode), threading.Thread(target=service)] if speech else []
    for t in threads:
        t.start()
    waits: List[float] = []
    lock = threading.Lock()

    def done(fut):
        if not fut.cancelled() and fut.exception() is None:
            with lock:
                waits.append(fut.result().queue_wait_ms)

    t0 = time.perf_counter()
    k = 0
    while time.perf_counter() - t0 < seconds:
        due = t0 + k / FPS
        time.sleep(max(0.0, due - time.perf_counter()))
        ex.submit(det, {"x": x}, stream="camera").add_done_callback(done)
        k += 1
    stop.set()
    for t in threads:
        t.join(10)
    time.sleep(0.1)
    drops = ex.stats()["models"]["detector"]["drops"]
    ex.shutdown(5.0)
    with lock:
        p = percentiles(waits, (50, 95))
    return {"p50": p["p50"], "p95": p["p95"], "drops": drops, "frames": k, "steps": steps[0] / seconds}


def run(quick: bool = False) -> List[Row]:
    seconds = 4.0 if quick else 12.0
    alone = _scenario("streams_first", False, seconds)
    bound = STEP_MS + DET_MS
    rows = [Row(TOPIC, "detector alone: queue wait p95", alone["p95"], "ms", None, "", None,
                note=f"{alone['drops']} executor drops of {alone['frames']} frames at {FPS:.0f} fps")]
    for policy in ("round_robin", "streams_first"):
        r = _scenario(policy, True, seconds)
        rows.append(Row(TOPIC, f"detector + continuous decode, {policy}: queue wait p95", r["p95"], "ms", bound,
                        "one decoder step + one frame", ratio(r["p95"], bound),
                        note=f"p50 {r['p50']:.1f} ms; {r['drops']} drops of {r['frames']} frames (alone: "
                             f"{alone['drops']}); decoder {r['steps']:.0f} steps/s"))
    return rows


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        base = f"(baseline {r.baseline_name} {r.baseline:.1f}, ratio {r.ratio:.2f}) " if r.baseline else ""
        print(f"{r.metric}: {r.value:.1f} {r.unit} {base}{r.note}")
