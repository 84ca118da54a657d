"""Camera driver + consumer process for the ROS benchmarks (not a benchmark topic itself).

Publishes one bgr8 frame per topic at ``--fps`` (topics staggered evenly, each frame stamped with the wall clock just
before publishing, sensor-data QoS) and subscribes to each topic's ``detections`` sibling; writes a JSON report:
frames sent per topic, and per output its input stamp, latency (receive time − stamp) and the node's own timing
and the number of detections
(timing NaN for output types without ``timing``, e.g. another package's detection message given with ``--output-type``).
``--warmup`` seconds of frames go first and are not counted: neither they nor outputs stamped before the measured
period are in the report.
Running the cameras in their own process keeps their serialisation work out of the measured node's process, as with
a real camera driver.

    python bench/bench_camera.py --topics /c0/image_raw /c1/image_raw --fps 30 --seconds 10 --out report.json
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import bench_common  # noqa: F401 - puts the source tree on sys.path
import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--topics", nargs="+", required=True)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--drain", type=float, default=1.5, help="seconds to keep listening after the last frame")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the node's subscriptions")
    p.add_argument("--qos", choices=("sensor_data", "reliable"), default="sensor_data", help="publisher QoS")
    p.add_argument("--image", default="", help=".npy file with the H×W×3 bgr8 frame to send (default: noise)")
    p.add_argument("--output-type", default="axcl_msgs/msg/DetectionArray",
                   help="message type of <topic namespace>/detections (package/msg/Type; it needs a std_msgs header)")
    p.add_argument("--warmup", type=float, default=0.0, help="seconds of uncounted frames before the measured period")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    import importlib

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from axcl_ros.io.image import array_to_image_fields

    package, _, type_name = args.output_type.replace("/msg/", "/").partition("/")
    output_type = getattr(importlib.import_module(f"{package}.msg"), type_name)
    rclpy.init()
    node = rclpy.create_node("bench_camera")
    lock = threading.Lock()
    outputs = {t: [] for t in args.topics}
    measured_from = [float("inf")]  # wall clock of the first counted frame
    nan = float("nan")

    def on_output(topic, msg):
        now = time.time()
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if stamp < measured_from[0] - 1e-6:
            return
        timing = getattr(msg, "timing", None)
        with lock:
            outputs[topic].append([stamp, now - stamp] + ([timing.total_ms, timing.queue_ms, timing.inference_ms]
                                                          if timing is not None else [nan, nan, nan])
                                  + [len(msg.detections)])

    out_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {}
    for t in args.topics:
        node.create_subscription(output_type, t.rsplit("/", 1)[0] + "/detections",
                                 lambda m, t=t: on_output(t, m), out_qos)
        pubs[t] = node.create_publisher(Image, t, qos_profile_sensor_data if args.qos == "sensor_data" else
                                        QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()

    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline and not all(p.get_subscription_count() > 0 for p in pubs.values()):
        time.sleep(0.05)
    time.sleep(0.5)  # let the output subscriptions match too

    if args.image:
        bgr = np.ascontiguousarray(np.load(args.image))
    else:
        bgr = np.random.default_rng(0).integers(0, 255, (args.height, args.width, 3), dtype=np.uint8)
    msg = Image(**array_to_image_fields(bgr, "bgr8", data_as="array"))
    msg.header.frame_id = "camera"
    sent = {t: 0 for t in args.topics}
    n = len(args.topics)
    t0 = time.perf_counter()
    wall0 = None
    k = 0
    while True:
        due = t0 + k / (args.fps * n)
        if due - t0 >= args.warmup + args.seconds:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        topic = args.topics[k % n]
        now = time.time()
        counted = due - t0 >= args.warmup
        if counted and wall0 is None:
            wall0 = measured_from[0] = now
        msg.header.stamp.sec = int(now)
        msg.header.stamp.nanosec = int((now - int(now)) * 1e9)
        pubs[topic].publish(msg)
        sent[topic] += counted
        k += 1
    time.sleep(args.drain)
    with lock:
        report = {"sent": sent, "start": wall0, "seconds": args.seconds, "outputs": outputs}
    with open(args.out, "w") as f:
        json.dump(report, f)
    stop.set()
    spinner.join(timeout=5)
    executor.shutdown(timeout_sec=1.0)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
