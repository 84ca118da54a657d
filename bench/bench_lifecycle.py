"""Lifecycle: configure / activate (and deactivate / cleanup) time per node, through the ``change_state`` services.

Each node runs in a private ROS graph and is driven through its standard lifecycle services, as ``ros2 lifecycle``
or the lifecycle manager does, for several configure → activate → deactivate → cleanup cycles; the median of each
transition is reported. The baseline measured in the same run is a lifecycle node that does nothing in its
transitions (the service round trip through DDS). Configure includes loading the model (the executor's worker
thread creates the session).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from bench_common import Row, ratio, ros_available, stub_library

TOPIC = "lifecycle"
TRANSITIONS = ("configure", "activate", "deactivate", "cleanup")


def _change(client, transition: str, timeout: float = 120.0) -> bool:
    """One ``change_state`` call, waited for with an event (no polling granularity in the measurement)."""
    from lifecycle_msgs.srv import ChangeState

    from axcl_ros_testing.lifecycle_client import TRANSITIONS as IDS

    req = ChangeState.Request()
    req.transition.id = IDS[transition]
    done = threading.Event()
    future = client.call_async(req)
    future.add_done_callback(lambda _f: done.set())
    if not done.wait(timeout):
        raise TimeoutError(f"{transition}: no answer after {timeout} s")
    return bool(future.result().success)


def _cycle(make: Callable, name: str, cycles: int) -> Dict[str, float]:
    from bench_harness import close_ros
    from lifecycle_msgs.srv import ChangeState

    from axcl_ros_testing.ros_graph import RosGraph

    times: Dict[str, List[float]] = {t: [] for t in TRANSITIONS}
    with RosGraph() as graph:
        node = graph.add(make(graph, name))
        client = graph.node(f"{name}_lc").create_client(ChangeState, f"/{name}/change_state")
        if not client.wait_for_service(timeout_sec=10):
            raise TimeoutError(f"/{name}/change_state not available")
        for _ in range(cycles):
            for tr in TRANSITIONS:
                t0 = time.perf_counter()
                ok = _change(client, tr)
                times[tr].append((time.perf_counter() - t0) * 1e3)
                if not ok:
                    raise RuntimeError(f"{name}: {tr} failed: {getattr(node, 'last_error', '')}")
    close_ros()
    return {t: statistics.median(v) for t, v in times.items()}


def _params(**kw):
    from rclpy.parameter import Parameter

    return [Parameter(k, value=v) for k, v in kw.items()] + [Parameter("diagnostics_period", value=0.0)]


def _nodes(tmp: Path) -> List[Tuple[str, str, Optional[Callable], str]]:
    """(label, node name, factory(graph, name), note) per node; factory None = skipped with note."""
    from axcl_ros import assets
    from axcl_ros_testing.dummy_nodes import DummyLifecycleNode

    out: List[Tuple[str, str, Optional[Callable], str]] = [
        ("no-op lifecycle node (baseline)", "lc_dummy",
         lambda g, n: DummyLifecycleNode(n, context=g.context), "service round trip only")]

    from axcl_ros.nodes.detector import DetectorNode

    try:
        model = str(assets.nudenet_yolov8n_onnx())
        labels = tmp / "nudenet.txt"
        labels.write_text("\n".join(assets.NUDENET_LABELS) + "\n")
        out.append(("detector, YOLOv8n 320 onnxruntime", "lc_detector",
                    lambda g, n: DetectorNode(n, context=g.context, parameter_overrides=_params(
                        model_path=model, labels=str(labels), input_size=320)), "NudeNet 320n.onnx (12 MB)"))
    except assets.AssetNotFoundError as exc:
        out.append(("detector, onnxruntime", "lc_detector", None, f"skipped: {exc}"))

    from axcl_ros.nodes.depth import DepthNode
    from axcl_ros_testing.depth_models import build_onnx_probe

    probe = str(build_onnx_probe(tmp / "da2_probe.onnx", 518, 518))
    out.append(("depth, DA-V2-signature probe onnxruntime", "lc_depth",
                lambda g, n: DepthNode(n, context=g.context, parameter_overrides=_params(model_path=probe)),
                "tiny probe model: measures the node, not a 100 MB model load"))

    if stub_library() is not None:
        from axcl_ros_testing import stub_models as sm

        yolo = str(sm.yolo11_stub(tmp / "yolo11.axmodel"))
        out.append(("detector, YOLO11 signature on the AXCL stub", "lc_detector_axcl",
                    lambda g, n: DetectorNode(n, context=g.context, parameter_overrides=_params(
                        model_path=yolo, backend="axcl")), "device buffers allocated at configure"))
    try:
        from axcl_ros.models.whisper.export_onnx import cached_conversion
        from axcl_ros.nodes.speech import SpeechNode

        folder = str(cached_conversion(assets.whisper_tiny_en_ct2(), "tiny.en"))
        out.append(("speech, Whisper tiny.en ONNX + Silero VAD", "lc_speech",
                    lambda g, n: SpeechNode(n, context=g.context, parameter_overrides=_params(model_dir=folder)),
                    "encoder 38 MB + decoder 114 MB float32 ONNX"))
    except ImportError as exc:
        out.append(("speech", "lc_speech", None, f"skipped: {exc}"))
    except assets.AssetNotFoundError as exc:
        out.append(("speech", "lc_speech", None, f"skipped: {exc}"))
    try:
        from axcl_ros.nodes.device_monitor import DeviceMonitorNode

        out.append(("device_monitor (onnxruntime = host)", "lc_monitor",
                    lambda g, n: DeviceMonitorNode(n, context=g.context, parameter_overrides=_params(
                        backend="onnxruntime")), ""))
    except ImportError as exc:
        out.append(("device_monitor", "lc_monitor", None, f"skipped: {exc}"))
    return out


def run(quick: bool = False) -> List[Row]:
    """Measure and return the rows of this topic."""
    reason = ros_available()
    if reason:
        return [Row(TOPIC, "all", None, note=f"skipped: {reason}")]
    cycles = 3 if quick else 5
    rows: List[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        base: Optional[Dict[str, float]] = None
        for label, name, make, note in _nodes(Path(tmp)):
            if make is None:
                rows.append(Row(TOPIC, label, None, note=note))
                continue
            try:
                t = _cycle(make, name, cycles)
            except Exception as exc:  # noqa: BLE001 - one node failing must not hide the others
                rows.append(Row(TOPIC, label, None, note=f"failed: {exc}"))
                continue
            if base is None:
                base = t
            others = ", ".join(f"{k} {t[k]:.1f}" for k in ("deactivate", "cleanup"))
            rows.append(Row(TOPIC, f"{label}: configure", t["configure"], "ms", base["configure"], "no-op node",
                            ratio(t["configure"], base["configure"]), note=note))
            rows.append(Row(TOPIC, f"{label}: activate", t["activate"], "ms", base["activate"], "no-op node",
                            ratio(t["activate"], base["activate"]), note=f"{others} ms; median of {cycles} cycles"))
    return rows


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
