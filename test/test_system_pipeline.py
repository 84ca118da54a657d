"""System test: ONE perception_host process (detector with real YOLOv8n weights, depth with a DA-V2-signature probe
model, device monitor) brought up by its in-process lifecycle manager and driven through ``manage_nodes`` over real
DDS from this test process; images in, detections + depth + camera_info out with the input header; SIGINT exits 0."""

import sys
import time

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy", reason="ROS tests need the workspace: run through `make test`")
pytest.importorskip("axcl_msgs.msg", reason="axcl_msgs not built: run through `make test`")

from axcl_msgs.msg import DetectionArray  # noqa: E402
from axcl_msgs.srv import ManageNodes  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402

from axcl_ros import assets  # noqa: E402
from axcl_ros.io.image import array_to_image_fields  # noqa: E402
from axcl_ros_testing.depth_models import build_onnx_probe  # noqa: E402
from axcl_ros_testing.lifecycle_client import LifecycleClient  # noqa: E402
from axcl_ros_testing.ros_graph import RosGraph, RosProcess  # noqa: E402
from axcl_ros_testing.sample_inputs import skimage_image  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.realweights]
QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
NODES = ["detector", "depth", "device_monitor"]


def _params(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(assets.NUDENET_LABELS) + "\n")
    probe = build_onnx_probe(tmp_path / "depth_probe.onnx", 112, 112)
    params = {
        "perception_host": {"ros__parameters": {"nodes": list(NODES), "node_types": list(NODES), "autostart": True}},
        "lifecycle_manager": {"ros__parameters": {"configure_retries": 1, "retry_backoff_s": 0.2}},
        "detector": {"ros__parameters": {
            "model_path": str(assets.nudenet_yolov8n_onnx()), "labels": str(labels), "input_size": 320,
            "image_topics": ["/sys_cam/image_raw"], "input_qos": "reliable"}},
        "depth": {"ros__parameters": {
            "model_path": str(probe), "image_topic": "/sys_cam/image_raw", "input_qos": "reliable",
            "output_mode": "inverse_relative"}},
        "device_monitor": {"ros__parameters": {"backend": "onnxruntime", "period_s": 0.5}},
    }
    path = tmp_path / "system.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _image(bgr, sec):
    msg = Image(**array_to_image_fields(bgr, "bgr8", data_as="array"))
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = sec, 250, "sys_cam_optical"
    return msg


def _camera_info(width, height):
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.k = [400.0, 0.0, width / 2, 0.0, 400.0, height / 2, 0.0, 0.0, 1.0]
    info.p = [400.0, 0.0, width / 2, 0.0, 0.0, 400.0, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.header.frame_id = "sys_cam_optical"
    return info


def test_composed_pipeline_through_the_lifecycle_manager(tmp_path):
    bgr = np.ascontiguousarray(skimage_image("astronaut")[:, :, ::-1])
    params = _params(tmp_path)
    host = RosProcess([sys.executable, "-m", "axcl_ros.bringup.host", "--ros-args", "--params-file", str(params)],
                      timeout=180, log_path=str(tmp_path / "host.log"))
    try:
        with RosGraph() as g:
            node = g.node("system_test")
            lc = LifecycleClient(g, node)
            active = []
            node.create_subscription(Bool, "/lifecycle_manager/is_active", lambda m: active.append(m.data), LATCHED)
            try:
                g.wait_for(lambda: active and active[-1], 90, "the manager's is_active")
            except TimeoutError as exc:
                raise AssertionError(f"{exc}\n{host.output()[-3000:]}") from exc
            assert [lc.state(f"/{n}") for n in NODES] == ["active"] * 3

            dets, depth, depth_info, diags = [], [], [], []
            node.create_subscription(DetectionArray, "/sys_cam/detections", dets.append, QOS)
            node.create_subscription(Image, "/sys_cam/inverse_depth_relative", depth.append, QOS)
            node.create_subscription(CameraInfo, "/sys_cam/inverse_depth_relative/camera_info", depth_info.append,
                                     QOS)
            node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, QOS)
            img_pub = node.create_publisher(Image, "/sys_cam/image_raw", QOS)
            info_pub = node.create_publisher(CameraInfo, "/sys_cam/camera_info", QOS)
            g.wait_for(lambda: img_pub.get_subscription_count() >= 2 and info_pub.get_subscription_count() >= 1,
                       20, "detector and depth subscriptions")
            info_pub.publish(_camera_info(512, 512))
            time.sleep(0.3)
            img_pub.publish(_image(bgr, 77))
            g.wait_for(lambda: dets and depth and depth_info, 60, "detections, depth and camera_info")
            for msg in (dets[0], depth[0], depth_info[0]):
                assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (77, 250)
                assert msg.header.frame_id == "sys_cam_optical"
            assert any(d.class_name == "FACE_FEMALE" and d.score > 0.6 for d in dets[0].detections)
            assert (depth[0].width, depth[0].height, depth[0].encoding) == (512, 512, "32FC1")
            g.wait_for(lambda: any(s.name.startswith("axcl_ros: /detector") for m in diags for s in m.status),
                       10, "detector diagnostics")

            manage = node.create_client(ManageNodes, "/lifecycle_manager/manage_nodes")
            resp = g.call(manage, ManageNodes.Request(command=ManageNodes.Request.RESET), timeout=60)
            assert resp.success, resp.message
            assert [lc.state(f"/{n}") for n in NODES] == ["unconfigured"] * 3
            resp = g.call(manage, ManageNodes.Request(command=ManageNodes.Request.STARTUP), timeout=60)
            assert resp.success, resp.message
            assert [lc.state(f"/{n}") for n in NODES] == ["active"] * 3
            dets.clear()
            img_pub.publish(_image(bgr, 78))
            g.wait_for(lambda: dets, 60, "detections after RESET + STARTUP")
            assert dets[0].header.stamp.sec == 78
    finally:
        code = host.stop(grace=20)
    out = host.output()
    assert code == 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
