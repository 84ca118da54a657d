"""Detector tracking through real DDS: the real YOLOv8n (NudeNet) on skimage's astronaut panned and zoomed over frames
keeps one track id on the face; a stamp going back resets the camera's tracks; ``tracking: false`` publishes
TRACK_NONE; bad tracking parameters are refused; the same on the AXCL stub. Plus the node-side helpers alone."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS tests need the workspace: run through `make test`")
pytest.importorskip("axcl_msgs.msg", reason="axcl_msgs not built: run through `make test`")

from axcl_msgs.msg import DetectionArray  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from axcl_ros import assets  # noqa: E402
from axcl_ros.io.image import array_to_image_fields  # noqa: E402
from axcl_ros.models.tracking import TrackerConfig  # noqa: E402
from axcl_ros.nodes.detector import DetectorNode  # noqa: E402
from axcl_ros.nodes.tracking_stage import CameraTrackers, apply_track_ids, label_with_ids  # noqa: E402
from axcl_ros_testing import stub_models as sm  # noqa: E402
from axcl_ros_testing.lifecycle_client import LifecycleClient  # noqa: E402
from axcl_ros_testing.ros_graph import RosGraph  # noqa: E402
from axcl_ros_testing.sample_inputs import skimage_image  # noqa: E402

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def _image_msg(bgr, stamp: float, frame="camera_optical"):
    msg = Image(**array_to_image_fields(bgr, "bgr8", data_as="array"))
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp), int(round((stamp % 1) * 1e9))
    msg.header.frame_id = frame
    return msg


def _panned_frames(n: int = 10):
    """The astronaut (512x512) on a 640x480 canvas, panned 8 px and zoomed ~1.5% per frame."""
    rgb = skimage_image("astronaut")
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    frames = []
    for k in range(n):
        side = int(400 * (1 + 0.015 * k))
        img = cv2.resize(bgr, (side, side), interpolation=cv2.INTER_AREA)
        canvas = np.full((480, 640, 3), 90, np.uint8)
        x0 = 40 + 8 * k
        y0 = 20
        h, w = min(side, 480 - y0), min(side, 640 - x0)
        canvas[y0:y0 + h, x0:x0 + w] = img[:h, :w]
        frames.append(canvas)
    return frames


def _set(graph, client, name, value):
    if isinstance(value, bool):
        pv = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    else:
        pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value))
    req = SetParameters.Request(parameters=[ParameterMsg(name=name, value=pv)])
    return graph.call(client, req).results[0].successful


def _send(graph, pub, got, msg, what):
    n = len(got)
    pub.publish(msg)
    graph.wait_for(lambda: len(got) > n, 30, what)
    return got[-1]


# -- node-side helpers ----------------------------------------------------------------------------------------------
def test_camera_trackers_reset_on_stream_jump_and_keep_cameras_apart():
    trackers = CameraTrackers(TrackerConfig(), max_gap_s=1.0)
    box = np.array([[10, 10, 60, 120]], np.float32)
    a = trackers.assign("cam0", 10.0, box, [0.9])[0]
    b = trackers.assign("cam1", 10.0, box, [0.9])[0]
    assert a == b == 1  # one tracker per camera, each with its own id space
    assert trackers.assign("cam0", 10.1, box + 1, [0.9])[0] == a
    assert trackers.assign("cam0", 10.05, box + 2, [0.9])[0] != a  # stamp went back: reset
    c = trackers.assign("cam0", 10.2, box + 2, [0.9])[0]
    assert trackers.assign("cam0", 12.0, box + 2, [0.9])[0] != c  # gap above tracking_max_gap: reset
    assert trackers.stats()["tracker resets (stream jumps)"] == 2
    assert trackers.assign("cam1", 10.1, box, [0.9])[0] == b  # the other camera was not disturbed


def test_track_ids_written_to_both_message_kinds():
    dets = [SimpleNamespace(track_id=-1), SimpleNamespace(track_id=-1)]
    vision = [SimpleNamespace(id=""), SimpleNamespace(id="")]
    apply_track_ids(dets, vision, np.array([7, -1]))
    assert [d.track_id for d in dets] == [7, -1] and [v.id for v in vision] == ["7", ""]
    assert label_with_ids(["face", "cup"], np.array([7, -1])) == ["face #7", "cup"]


# -- through DDS ------------------------------------------------------------------------------------------------------
@pytest.mark.ros
@pytest.mark.realweights
def test_face_keeps_its_track_id_while_the_camera_pans(tmp_path):
    labels = tmp_path / "nudenet.txt"
    labels.write_text("\n".join(assets.NUDENET_LABELS) + "\n")
    with RosGraph() as graph:
        graph.add(DetectorNode("det_trk", context=graph.context, parameter_overrides=[
            Parameter("model_path", value=str(assets.nudenet_yolov8n_onnx())), Parameter("labels", value=str(labels)),
            Parameter("input_size", value=320), Parameter("input_qos", value="reliable"),
            Parameter("image_topics", value=["/trk/image_raw"]), Parameter("confidence_threshold", value=0.1)]))
        test = graph.node("det_trk_test")
        lc = LifecycleClient(graph, test)
        assert lc.change("/det_trk", "configure") and lc.change("/det_trk", "activate")
        got = []
        test.create_subscription(DetectionArray, "/trk/detections", got.append, QOS)
        pub = test.create_publisher(Image, "/trk/image_raw", QOS)
        graph.wait_for(lambda: pub.get_subscription_count() > 0, 10, "detector subscription")
        params = test.create_client(SetParameters, "/det_trk/set_parameters")

        face_ids = []
        for k, frame in enumerate(_panned_frames()):
            out = _send(graph, pub, got, _image_msg(frame, 100 + 0.1 * k), f"frame {k}")
            faces = [d for d in out.detections if d.class_name == "FACE_FEMALE" and d.score > 0.5]
            assert len(faces) == 1, [(d.class_name, d.score) for d in out.detections]
            face_ids.append(faces[0].track_id)
        assert face_ids[0] >= 1 and set(face_ids) == {face_ids[0]}, face_ids

        # the stamp goes back (a bag looped): the camera's tracks are reset, the face gets a new id
        out = _send(graph, pub, got, _image_msg(_panned_frames(1)[0], 50.0), "looped frame")
        face = [d for d in out.detections if d.class_name == "FACE_FEMALE" and d.score > 0.5][0]
        assert face.track_id > face_ids[0]

        assert not _set(graph, params, "tracking_low_threshold", 0.9)  # above the high threshold
        assert not _set(graph, params, "tracking_high_threshold", 1.5)  # out of range
        assert _set(graph, params, "tracking", False)
        out = _send(graph, pub, got, _image_msg(_panned_frames(1)[0], 51.0), "untracked frame")
        assert out.detections and all(d.track_id == -1 for d in out.detections)
        assert lc.change("/det_trk", "deactivate") and lc.change("/det_trk", "cleanup")


@pytest.mark.ros
def test_tracking_on_the_axcl_stub(stub, tmp_path):
    model = sm.yolo11_stub(tmp_path / "yolo11s.axmodel")
    with RosGraph() as graph:
        graph.add(DetectorNode("det_trk_axcl", context=graph.context, parameter_overrides=[
            Parameter("model_path", value=str(model)), Parameter("backend", value="axcl"),
            Parameter("input_qos", value="reliable"), Parameter("image_topics", value=["/trk_axcl/image_raw"])]))
        test = graph.node("det_trk_axcl_test")
        lc = LifecycleClient(graph, test)
        assert lc.change("/det_trk_axcl", "configure") and lc.change("/det_trk_axcl", "activate")
        got = []
        test.create_subscription(DetectionArray, "/trk_axcl/detections", got.append, QOS)
        pub = test.create_publisher(Image, "/trk_axcl/image_raw", QOS)
        graph.wait_for(lambda: pub.get_subscription_count() > 0, 10, "detector subscription")
        frame = np.full((480, 640, 3), 70, np.uint8)
        ids = []
        for k in range(5):
            out = _send(graph, pub, got, _image_msg(frame, 10 + 0.1 * k), f"frame {k}")
            assert len(out.detections) == 1
            ids.append(out.detections[0].track_id)
        assert ids[0] >= 1 and set(ids) == {ids[0]}, ids
        assert lc.change("/det_trk_axcl", "deactivate") and lc.change("/det_trk_axcl", "cleanup")


_SOLVER_CHECK = """
import sys
import rclpy
from rclpy.parameter import Parameter
from axcl_ros import assets
from axcl_ros.nodes.detector import DetectorNode
rclpy.init()
node = DetectorNode("solver_check", parameter_overrides=[
    Parameter("model_path", value=str(assets.nudenet_yolov8n_onnx())), Parameter("input_size", value=320),
    Parameter("image_topics", value=["/solver_check/image_raw"]), Parameter("tracking", value=sys.argv[1] == "on")])
node.trigger_configure()
print("configured", "scipy.optimize" in sys.modules)
node.trigger_cleanup()
rclpy.shutdown()
"""


@pytest.mark.parametrize("tracking", ["on", "off"])
def test_the_assignment_solver_is_imported_at_configure_only_when_tracking(tracking):
    """Importing scipy.optimize holds the GIL for 0.3-2 s: a tracking detector does it at configure, not on the first
    contested match mid-stream; one that does not track never pays its ~48 MiB."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-c", _SOLVER_CHECK, tracking], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"configured {tracking == 'on'}" in proc.stdout
