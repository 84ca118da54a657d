"""The process under test of ``bench_ros_detector.py``: our detector node, or the plain baseline node.

``--impl ours``: :class:`axcl_ros.nodes.detector.DetectorNode` (configured and activated here, spun as
``ros2 run axcl_ros detector`` spins it; ``--executor single|multi|N`` spins it on a ``SingleThreadedExecutor``, a
``MultiThreadedExecutor()`` (one thread per core) or one with N threads instead, to measure that choice).
``--impl baseline``: what a straightforward rclpy detector looks like — one node, inference inside the image
callback on a single-threaded executor, onnxruntime's default ``InferenceSession`` (no session options), numpy
pre-processing (``cv2.resize`` + ``cv2.copyMakeBorder``, ``[..., ::-1].transpose(2, 0, 1).astype(float32) / 255``),
numpy decode, ``cv2.dnn.NMSBoxesBatched`` and a per-box message loop. Same model, same thresholds, same output
message (``axcl_msgs/DetectionArray`` on ``<ns>/detections``) and input QoS.

Writes ``ready`` to stdout once it subscribes; runs until SIGTERM/SIGINT.

    python bench/bench_ros_node.py --impl baseline --model m.onnx --topic /cam/image_raw --conf 0.25
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Sequence

import bench_common  # noqa: F401 - puts the source tree on sys.path
import numpy as np
import yaml


def plain_detect(run, img: np.ndarray, header, conf: float, iou: float, max_det: int, size: int):
    """The baseline's whole per-frame path: letterbox, tensor, ``run(tensor)`` → ``[1, 4+nc, N]``, decode, NMS,
    message (``axcl_msgs/DetectionArray``). ``bench_hostpath.py`` times it with ``run`` replaced by stored outputs."""
    import cv2
    from axcl_msgs.msg import Detection, DetectionArray

    h, w = img.shape[:2]
    r = min(size / h, size / w)
    nh, nw = int(round(h * r)), int(round(w * r))
    top, left = (size - nh) // 2, (size - nw) // 2
    boxed = cv2.copyMakeBorder(cv2.resize(img, (nw, nh)), top, size - nh - top, left, size - nw - left,
                               cv2.BORDER_CONSTANT, value=(114, 114, 114))
    x = (boxed[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0)[None]
    pred = run(x)[0].T  # N × (4 + nc)
    scores = pred[:, 4:]
    cls = scores.argmax(axis=1)
    best = scores[np.arange(len(cls)), cls]
    keep = best > conf
    pred, cls, best = pred[keep], cls[keep], best[keep]
    xywh = np.column_stack([pred[:, 0] - pred[:, 2] / 2, pred[:, 1] - pred[:, 3] / 2, pred[:, 2], pred[:, 3]])
    idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), best.tolist(), cls.tolist(), conf, iou) if len(best) else []
    out = DetectionArray()
    out.header = header
    out.image_width, out.image_height = w, h
    for i in list(np.asarray(idx).reshape(-1))[:max_det]:
        bx, by, bw, bh = xywh[i]
        x0, y0 = (bx - left) / r, (by - top) / r
        x1, y1 = x0 + bw / r, y0 + bh / r
        x0, x1 = min(max(x0, 0), w), min(max(x1, 0), w)
        y0, y1 = min(max(y0, 0), h), min(max(y1, 0), h)
        out.detections.append(Detection(class_id=int(cls[i]), class_name=str(cls[i]), score=float(best[i]),
                                        center_x=float(x0 + x1) / 2, center_y=float(y0 + y1) / 2,
                                        size_x=float(x1 - x0), size_y=float(y1 - y0), track_id=Detection.TRACK_NONE))
    return out


def _baseline(model: str, topic: str, conf: float, iou: float, max_det: int, size: int, qos):
    import onnxruntime as ort
    import rclpy
    from axcl_msgs.msg import DetectionArray
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    class BaselineDetector(Node):
        def __init__(self) -> None:
            super().__init__("baseline_detector")
            self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
            self.input_name = self.session.get_inputs()[0].name
            self.pub = self.create_publisher(DetectionArray, topic.rsplit("/", 1)[0] + "/detections", 10)
            self.create_subscription(Image, topic, self.on_image, qos)

        def run(self, x: np.ndarray) -> np.ndarray:
            return self.session.run(None, {self.input_name: x})[0]

        def on_image(self, msg: Image) -> None:
            img = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
            self.pub.publish(plain_detect(self.run, img, msg.header, conf, iou, max_det, size))

    node = BaselineDetector()
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    executor.add_node(node)
    return node, executor, rclpy


def make_executor(spec: str):
    """The rclpy executor named by ``spec``: ``run_main`` (what the node executables use), ``single``, ``multi``
    (``MultiThreadedExecutor()``: one thread per core) or a thread count."""
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    if spec == "run_main":
        from axcl_ros.nodes.process import node_executor

        return node_executor()
    if spec == "single":
        return SingleThreadedExecutor()
    if spec == "multi":
        return MultiThreadedExecutor()
    return MultiThreadedExecutor(num_threads=int(spec))


def _ours(model: str, topic: str, conf: float, iou: float, max_det: int, size: int, qos_name: str,
          executor_spec: str = "run_main", extra: Sequence[str] = ()):
    import rclpy
    from rclpy.parameter import Parameter

    from axcl_ros.nodes.detector import DetectorNode
    from axcl_ros.nodes.process import tune_interpreter_for_device_work

    tune_interpreter_for_device_work()
    overrides = [Parameter("model_path", value=model), Parameter("image_topics", value=[topic]),
                 Parameter("publish_annotated", value=False), Parameter("confidence_threshold", value=conf),
                 Parameter("iou_threshold", value=iou), Parameter("max_detections", value=max_det),
                 Parameter("input_size", value=size), Parameter("input_qos", value=qos_name),
                 Parameter("labels", value="")]
    overrides += [Parameter(name, value=yaml.safe_load(value)) for name, _, value in (p.partition("=") for p in extra)]
    node = DetectorNode("detector", parameter_overrides=overrides)
    executor = make_executor(executor_spec)
    executor.add_node(node)
    node.trigger_configure()
    node.trigger_activate()
    return node, executor, rclpy


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--impl", choices=("ours", "baseline"), required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--iou", type=float, default=0.45)
    p.add_argument("--max-det", type=int, default=300)
    p.add_argument("--size", type=int, default=640)
    p.add_argument("--executor", default="run_main", help="ours: run_main (default), single, multi or a thread count")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="ours: another detector parameter (YAML value), e.g. rect_input=false")
    args = p.parse_args(argv)

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    rclpy.init()
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    if args.impl == "baseline":
        node, executor, _ = _baseline(args.model, args.topic, args.conf, args.iou, args.max_det, args.size, qos)
    else:
        node, executor, _ = _ours(args.model, args.topic, args.conf, args.iou, args.max_det, args.size, "reliable",
                                  args.executor, args.param)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print("ready", flush=True)
    t_end = time.monotonic() + 3600
    while not stop and time.monotonic() < t_end:
        executor.spin_once(timeout_sec=0.1)
    if args.impl == "ours":
        node.trigger_deactivate()
        node.trigger_cleanup()
        from axcl_ros.runtime.executors import shutdown_all

        shutdown_all()
    executor.shutdown(timeout_sec=1.0)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
