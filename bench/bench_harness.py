"""A detector node in this process, fed by a camera-driver process (``bench_camera.py``) through real DDS.

Latency is ``receive time of the output − header stamp of the input`` (the node copies the input header; the camera
process stamps each frame with the wall clock just before publishing and receives the outputs), so it covers DDS
both ways, the queue, the model and the host work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import bench_common  # noqa: F401 - puts the source tree on sys.path

HERE = Path(__file__).resolve().parent


class DetectorRig:
    """A :class:`DetectorNode` on ``topics`` in a private ROS graph; use as a context manager.

    ``params`` are extra node parameters. :meth:`stream` runs the camera process and returns its report.
    """

    def __init__(self, model: str, topics: Sequence[str], backend: str = "auto", name: str = "bench_detector",
                 **params) -> None:
        from rclpy.parameter import Parameter

        from axcl_ros.nodes.detector import DetectorNode
        from axcl_ros_testing.lifecycle_client import LifecycleClient
        from axcl_ros_testing.ros_graph import RosGraph

        self.topics = list(topics)
        self.graph = RosGraph(threads=4)
        overrides = [Parameter("model_path", value=str(model)), Parameter("backend", value=backend),
                     Parameter("image_topics", value=self.topics), Parameter("publish_annotated", value=False),
                     Parameter("diagnostics_period", value=0.0)]
        overrides += [Parameter(k, value=v) for k, v in params.items()]
        self.node = self.graph.add(DetectorNode(name, context=self.graph.context, parameter_overrides=overrides))
        self.lc = LifecycleClient(self.graph, self.graph.node(f"{name}_lc"))
        self.name = f"/{name}"

    def start(self) -> None:
        """Configure and activate."""
        if not self.lc.change(self.name, "configure"):
            raise RuntimeError(f"configure failed: {self.node.last_error}")
        if not self.lc.change(self.name, "activate"):
            raise RuntimeError(f"activate failed: {self.node.last_error}")

    def stream(self, fps: float, seconds: float, sampler=None, width: int = 640, height: int = 480,
               qos: str = "sensor_data") -> dict:
        """Run the camera process (``fps`` per topic for ``seconds``); return its report.

        ``sampler()``, when given, is called every 10 ms while the cameras run (e.g. to record the backlog).
        ``qos`` is the cameras' publisher QoS (``sensor_data`` or ``reliable``).
        Report: ``sent`` {topic: n}, ``start`` (wall clock of the first frame), ``outputs`` {topic: [[stamp,
        latency_s, total_ms, queue_ms, inference_ms, detections], ...]}.
        """
        return run_cameras(self.topics, fps, seconds, sampler, width, height, qos)

    def stop(self) -> None:
        """Deactivate, clean up and close the graph."""
        try:
            self.lc.change(self.name, "deactivate", timeout=10)
            self.lc.change(self.name, "cleanup", timeout=10)
        finally:
            self.graph.close()
            close_ros()

    def __enter__(self) -> DetectorRig:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run_cameras(topics: Sequence[str], fps: float, seconds: float, sampler=None, width: int = 640,
                height: int = 480, qos: str = "sensor_data", image: str = "", output_type: str = "",
                warmup: float = 0.0, wait: float = 30.0) -> dict:
    """Run ``bench_camera.py`` on ``topics`` and return its report (see :meth:`DetectorRig.stream`).

    ``output_type``: message type of the outputs (default ``axcl_msgs/msg/DetectionArray``); ``warmup``: seconds of
    uncounted frames first; ``wait``: seconds the camera waits for the node's subscriptions.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "camera.json"
        cmd = [sys.executable, str(HERE / "bench_camera.py"), "--topics", *topics, "--fps", str(fps),
               "--seconds", str(seconds), "--width", str(width), "--height", str(height), "--qos", qos,
               "--warmup", str(warmup), "--wait", str(wait), "--out", str(out)]
        cmd += (["--image", image] if image else []) + (["--output-type", output_type] if output_type else [])
        proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + wait + warmup + seconds + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if sampler is not None:
                sampler()
            time.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            raise TimeoutError("camera process did not finish")
        err = proc.stderr.read() if proc.stderr else ""
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"camera process failed ({proc.returncode}): {err.strip()[-500:]}")
        return json.loads(out.read_text())


def transport_delivery(fps: float, seconds: float, qos: str) -> Dict[str, int]:
    """Frames a bare rclpy subscriber (no model, no work) receives from the camera process: the DDS baseline."""
    from sensor_msgs.msg import Image

    from axcl_ros.nodes.qos import make_qos
    from axcl_ros_testing.ros_graph import RosGraph

    topic = f"/bare_{qos}/image_raw"
    got = [0]
    with RosGraph(threads=4) as g:
        node = g.node(f"bare_subscriber_{qos}")
        node.create_subscription(Image, topic, lambda _m: got.__setitem__(0, got[0] + 1), make_qos(qos, depth=1))
        report = run_cameras([topic], fps, seconds, qos=qos)
        time.sleep(0.3)
    return {"sent": report["sent"][topic], "received": got[0]}


def camera_counts(node) -> List[Dict[str, int]]:
    """Per camera: received, published, dropped, errors (the node's own counters)."""
    return [{"topic": c.topic, "received": c.received, "published": c.published, "dropped": c.dropped,
             "errors": c.errors} for c in node.cameras.streams]


def yolo_stub_model(folder, delay_ms: float, size: int = 640) -> str:
    """A YOLO11-signature AXCL stub model whose execute takes ``delay_ms`` (a sleep, like waiting for the card)."""
    from axcl_ros_testing import stub_models as sm

    return str(sm.yolo11_stub(f"{folder}/yolo11_stub_{int(delay_ms)}ms.axmodel", size=size,
                              delay_us=int(delay_ms * 1000)))


def close_ros() -> None:
    """Shut down every inference executor and the AXCL runtime between benchmarks."""
    from axcl_ros.runtime.executors import shutdown_all

    shutdown_all()
    try:
        from axcl_ros.runtime.axcl import shutdown_runtime

        shutdown_runtime()
    except ImportError:
        pass


def executor_backlog(node) -> Optional[int]:
    """Submissions queued on the node's executor right now."""
    host = getattr(node, "host", None)
    return None if host is None else host.executor.pending()
