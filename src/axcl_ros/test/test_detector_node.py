"""Detector node through real DDS: real YOLOv8n weights, lifecycle services, runtime parameters, two cameras,
malformed inputs."""

import array
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS tests need the workspace: run through `make test`")
pytest.importorskip("axcl_msgs.msg", reason="axcl_msgs not built: run through `make test`")

from axcl_msgs.msg import DetectionArray  # noqa: E402
from axcl_msgs.srv import Detect  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from axcl_ros import assets  # noqa: E402
from axcl_ros.io.compressed_image import array_to_compressed  # noqa: E402
from axcl_ros.io.image import array_to_image_fields  # noqa: E402
from axcl_ros.nodes.detector import DetectorNode  # noqa: E402
from axcl_ros_testing import yolo_models as ym  # noqa: E402
from axcl_ros_testing.lifecycle_client import LifecycleClient  # noqa: E402
from axcl_ros_testing.ros_graph import RosGraph  # noqa: E402
from axcl_ros_testing.sample_inputs import skimage_image  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.realweights]

FACE_BOX = (173, 82, 274, 180)  # models.md §4.3: FACE_FEMALE on astronaut @320, independent run
QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def _iou(a, b):
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _image_msg(bgr, sec, frame="camera_optical"):
    msg = Image(**array_to_image_fields(bgr, "bgr8", data_as="array"))
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = sec, 500, frame
    return msg


def _box(det):
    return (det.center_x - det.size_x / 2, det.center_y - det.size_y / 2,
            det.center_x + det.size_x / 2, det.center_y + det.size_y / 2)


@pytest.fixture(scope="module")
def astronaut_bgr():
    return np.ascontiguousarray(skimage_image("astronaut")[:, :, ::-1])


@pytest.fixture()
def graph():
    with RosGraph() as g:
        yield g


def _make_detector(graph, name, **params):
    overrides = [Parameter("model_path", value=str(assets.nudenet_yolov8n_onnx())),
                 Parameter("labels", value=str(params.pop("labels_file"))),
                 Parameter("input_size", value=320), Parameter("input_qos", value="reliable")]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    return graph.add(DetectorNode(name, context=graph.context, parameter_overrides=overrides))


@pytest.fixture()
def labels_file(tmp_path):
    path = tmp_path / "nudenet.txt"
    path.write_text("\n".join(assets.NUDENET_LABELS) + "\n")
    return path


def test_face_detected_with_header_copied_and_lifecycle_services(graph, astronaut_bgr, labels_file):
    node = _make_detector(graph, "det_a", labels_file=labels_file, image_topics=["/cam_a/image_raw"])
    test = graph.node("det_a_test")
    lc = LifecycleClient(graph, test)
    assert lc.state("/det_a") == "unconfigured"
    assert lc.change("/det_a", "configure") and lc.state("/det_a") == "inactive"
    got = []
    test.create_subscription(DetectionArray, "/cam_a/detections", got.append, QOS)
    pub = test.create_publisher(Image, "/cam_a/image_raw", QOS)

    # inactive: no output
    graph.wait_for(lambda: pub.get_subscription_count() == 0 or True, 1)
    pub.publish(_image_msg(astronaut_bgr, 1))
    time.sleep(0.5)
    assert got == []

    assert lc.change("/det_a", "activate") and lc.state("/det_a") == "active"
    graph.wait_for(lambda: pub.get_subscription_count() > 0, 10, "detector subscription")
    pub.publish(_image_msg(astronaut_bgr, 42))
    graph.wait_for(lambda: len(got) >= 1, 20, "detections")
    out = got[0]
    assert out.header.stamp.sec == 42 and out.header.stamp.nanosec == 500
    assert out.header.frame_id == "camera_optical"
    assert (out.image_width, out.image_height) == (512, 512)
    faces = [d for d in out.detections if d.class_name == "FACE_FEMALE"]
    assert faces, [(d.class_name, d.score) for d in out.detections]
    best = max(faces, key=lambda d: d.score)
    assert best.score > 0.6
    assert _iou(_box(best), FACE_BOX) > 0.8, _box(best)
    assert out.timing.backend == "onnxruntime" and out.timing.inference_ms > 0
    assert out.timing.total_ms >= out.timing.inference_ms

    # runtime parameter change: filter the face class away → no FACE_FEMALE any more
    node_params = test.create_client(SetParameters, "/det_a/set_parameters")
    req = SetParameters.Request(parameters=[ParameterMsg(
        name="class_filter", value=ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY,
                                                  string_array_value=["FACE_MALE"]))])
    assert graph.call(node_params, req).results[0].successful
    bad = SetParameters.Request(parameters=[ParameterMsg(
        name="confidence_threshold", value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=1.5))])
    assert not graph.call(node_params, bad).results[0].successful
    got.clear()
    pub.publish(_image_msg(astronaut_bgr, 43))
    graph.wait_for(lambda: len(got) >= 1, 20, "filtered detections")
    assert all(d.class_name == "FACE_MALE" for d in got[0].detections)

    # one-shot service
    cli = test.create_client(Detect, "/det_a/detect")
    resp = graph.call(cli, Detect.Request(image=_image_msg(astronaut_bgr, 44)), timeout=30)
    assert resp.success and resp.detections.header.stamp.sec == 44

    assert lc.change("/det_a", "deactivate") and lc.state("/det_a") == "inactive"
    got.clear()
    pub.publish(_image_msg(astronaut_bgr, 45))
    time.sleep(0.5)
    assert got == []
    assert lc.change("/det_a", "cleanup") and lc.state("/det_a") == "unconfigured"
    assert node.model is None
    assert lc.change("/det_a", "shutdown") and lc.state("/det_a") == "finalized"


def test_configure_failure_says_what_to_fix(graph, tmp_path):
    node = graph.add(DetectorNode("det_bad", context=graph.context, parameter_overrides=[
        Parameter("model_path", value=str(tmp_path / "missing.onnx"))]))
    lc = LifecycleClient(graph, graph.node("det_bad_test"))
    assert not lc.change("/det_bad", "configure")
    assert lc.state("/det_bad") == "unconfigured"
    assert "missing.onnx" in node.last_error and "does not exist" in node.last_error
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not an onnx model" * 10)
    node.set_parameters([Parameter("model_path", value=str(corrupt))])
    assert not lc.change("/det_bad", "configure")
    assert "corrupt.onnx" in node.last_error


def test_two_cameras_share_one_model_and_compressed_input(graph, astronaut_bgr, labels_file):
    node = _make_detector(graph, "det_two", labels_file=labels_file,
                          image_topics=["/cam0/image_raw", "/cam1/image_raw"], input_transport="compressed")
    test = graph.node("det_two_test")
    lc = LifecycleClient(graph, test)
    assert lc.change("/det_two", "configure") and lc.change("/det_two", "activate")
    got = {0: [], 1: []}
    pubs = []
    for i in (0, 1):
        test.create_subscription(DetectionArray, f"/cam{i}/detections", got[i].append, QOS)
        pubs.append(test.create_publisher(CompressedImage, f"/cam{i}/image_raw/compressed", QOS))
    for p in pubs:
        graph.wait_for(lambda p=p: p.get_subscription_count() > 0, 10, "compressed subscriptions")
    for k in range(3):
        for i, p in enumerate(pubs):
            msg = CompressedImage(**array_to_compressed(astronaut_bgr, "jpeg", 92))
            msg.header.stamp.sec, msg.header.frame_id = 100 * i + k, f"cam{i}"
            p.publish(msg)
            time.sleep(0.05)
    graph.wait_for(lambda: got[0] and got[1], 30, "detections from both cameras")
    assert all(m.header.frame_id == "cam0" for m in got[0]) and all(m.header.frame_id == "cam1" for m in got[1])
    assert any(d.class_name == "FACE_FEMALE" for d in got[1][-1].detections)
    stats = node.model.executor.stats()
    assert len([m for m in stats["models"] if m.startswith("320n")]) == 1  # one model instance for both cameras
    # every frame is accounted for once the last results are out: published, dropped (latest-only slot) or failed
    graph.wait_for(lambda: all(s.published + s.dropped + s.errors == s.received == 3 for s in node.cameras.streams),
                   20, f"frame accounting {node.cameras.stats()}")
    lc.change("/det_two", "deactivate")
    lc.change("/det_two", "cleanup")


MALFORMED = [
    ("unknown encoding", dict(encoding="weird9")),
    ("empty encoding", dict(encoding="")),
    ("zero width", dict(width=0)),
    ("zero height", dict(height=0)),
    ("step too small", dict(step=10)),
    ("data truncated", dict(data=array.array("B", bytes(100)))),
    ("data empty", dict(data=array.array("B"))),
    ("yuv422 odd width", dict(encoding="yuv422", width=3, height=2, step=6, data=array.array("B", bytes(12)))),
    ("16UC1 truncated", dict(encoding="16UC1", width=4, height=4, step=8, data=array.array("B", bytes(20)))),
    ("nv12 odd height", dict(encoding="nv12", width=4, height=3, step=4, data=array.array("B", bytes(18)))),
    ("32FC1 step mismatch", dict(encoding="32FC1", width=4, height=2, step=12, data=array.array("B", bytes(24)))),
    ("bayer step small", dict(encoding="bayer_rggb8", width=8, height=2, step=4, data=array.array("B", bytes(8)))),
]


def test_malformed_inputs_rejected_and_node_keeps_serving(graph, astronaut_bgr, labels_file):
    node = _make_detector(graph, "det_bad_in", labels_file=labels_file, image_topics=["/cam_m/image_raw"])
    test = graph.node("det_bad_in_test")
    lc = LifecycleClient(graph, test)
    assert lc.change("/det_bad_in", "configure") and lc.change("/det_bad_in", "activate")
    got = []
    test.create_subscription(DetectionArray, "/cam_m/detections", got.append, QOS)
    pub = test.create_publisher(Image, "/cam_m/image_raw", QOS)
    graph.wait_for(lambda: pub.get_subscription_count() > 0, 10, "subscription")
    good = _image_msg(astronaut_bgr, 7)
    for i, (case, changes) in enumerate(MALFORMED):
        msg = _image_msg(astronaut_bgr, 1000 + i)
        for k, v in changes.items():
            setattr(msg, k, v)
        pub.publish(msg)  # the input keeps only the latest message: wait for each to be handled
        graph.wait_for(lambda i=i: node.bad_inputs.total == i + 1, 10, f"rejection of {case}")
    assert node.bad_inputs.total == len(MALFORMED) and got == []
    pub.publish(good)
    graph.wait_for(lambda: len(got) >= 1, 20, "a good frame after the bad ones")
    assert got[-1].header.stamp.sec == 7 and lc.state("/det_bad_in") == "active"
    lc.change("/det_bad_in", "deactivate")
    lc.change("/det_bad_in", "cleanup")


@pytest.mark.parametrize("image_topics, remap, expected", [
    (["image"], "detections:=/robot/objects", "/robot/objects"),                 # relative default, node namespace
    (["/cam0/image_raw"], "/cam0/detections:=/robot/objects", "/robot/objects"),  # camera namespace
    (["image"], None, "/ns1/detections"),                                         # relative names follow __ns
])
def test_output_topics_are_remappable_like_any_ros_name(graph, labels_file, image_topics, remap, expected):
    overrides = [Parameter("model_path", value=str(assets.nudenet_yolov8n_onnx())),
                 Parameter("labels", value=str(labels_file)), Parameter("image_topics", value=image_topics)]
    cli = ["--ros-args"] + (["-r", remap] if remap else [])
    node = graph.add(DetectorNode("det_remap", namespace="/ns1", context=graph.context, parameter_overrides=overrides,
                                  cli_args=cli))
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS, node.last_error
    assert node.cameras.streams[0].publishers["detections"].topic_name == expected
    node.trigger_cleanup()


@pytest.mark.parametrize("rect", [True, False])
def test_rect_input_parameter_reaches_the_adapter_and_finds_the_same_face(graph, astronaut_bgr, labels_file, rect):
    """``rect_input`` (default true): a landscape frame goes to a dynamic model as the smallest multiple-of-32
    rectangle (384×512 at input_size 320 → 256×320) instead of 320×320; the detections stay where they were."""
    name = f"det_rect_{int(rect)}"
    node = _make_detector(graph, name, labels_file=labels_file, image_topics=[f"/{name}/image_raw"],
                          rect_input=rect)
    test = graph.node(f"{name}_test")
    lc = LifecycleClient(graph, test)
    assert lc.change(f"/{name}", "configure")
    landscape = np.ascontiguousarray(astronaut_bgr[:384])
    assert node.adapter.detector.rect is rect
    assert node.adapter.detector.frame_input_size(landscape.shape[:2]) == ((256, 320) if rect else (320, 320))
    cli = test.create_client(Detect, f"/{name}/detect")
    resp = graph.call(cli, Detect.Request(image=_image_msg(landscape, 7)), timeout=30)
    assert resp.success
    faces = [d for d in resp.detections.detections if d.class_name == "FACE_FEMALE"]
    assert faces and _iou(_box(max(faces, key=lambda d: d.score)), FACE_BOX) > 0.8
    assert lc.change(f"/{name}", "cleanup")


def test_an_export_with_symbolic_output_dims_configures_and_detects(graph, astronaut_bgr, labels_file, tmp_path):
    """torch 2.x exports of Ultralytics models with ``dynamic=True`` name every output dimension
    (``output0 [batch, ?, anchors]``): configure learns the class count from two probe runs."""
    model = ym.symbolic_output_dims(assets.nudenet_yolov8n_onnx(), tmp_path / "symbolic.onnx")
    node = _make_detector(graph, "det_sym", labels_file=labels_file, image_topics=["/det_sym/image_raw"],
                          model_path=str(model))
    test = graph.node("det_sym_test")
    assert LifecycleClient(graph, test).change("/det_sym", "configure")
    assert node.model.handle.outputs[0].shape[1] is None  # what the file says
    assert node.adapter.detector.num_classes == len(assets.NUDENET_LABELS)
    resp = graph.call(test.create_client(Detect, "/det_sym/detect"), Detect.Request(image=_image_msg(astronaut_bgr, 9)),
                      timeout=30)
    faces = [d for d in resp.detections.detections if d.class_name == "FACE_FEMALE"]
    assert resp.success and faces and _iou(_box(max(faces, key=lambda d: d.score)), FACE_BOX) > 0.8
    assert LifecycleClient(graph, test).change("/det_sym", "cleanup")
