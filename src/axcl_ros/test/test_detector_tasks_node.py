"""Detector node with segmentation and pose models through real DDS (onnxruntime backend, both layouts): masks as a
label image with the input header, keypoints with COCO-17 names, annotated image with masks/skeletons; a
segmentation model missing its prototype tensor fails configure with a message that says so."""

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS tests need the workspace: run through `make test`")
pytest.importorskip("axcl_msgs.msg", reason="axcl_msgs not built: run through `make test`")

from axcl_msgs.msg import DetectionArray, InstanceMasks, KeypointArray  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from axcl_ros.io.image import array_to_image_fields, image_msg_to_array  # noqa: E402
from axcl_ros.nodes.detector import DetectorNode  # noqa: E402
from axcl_ros.testing.lifecycle_client import LifecycleClient  # noqa: E402
from axcl_ros.testing.ros_graph import RosGraph  # noqa: E402
from axcl_ros.testing.yolo_task_models import pose_outputs, seg_outputs, task_model  # noqa: E402

pytestmark = pytest.mark.ros
QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
BOXES = [[100, 180, 260, 460], [300, 200, 420, 300]]  # letterbox pixels; the 640x480 frame sits 80 rows down


def _frame_msg(stamp_sec=7):
    msg = Image(**array_to_image_fields(np.full((480, 640, 3), 100, np.uint8), "bgr8", data_as="array"))
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = stamp_sec, 250, "cam_optical"
    return msg


def _node(graph, name, path, topic, **params):
    overrides = [Parameter("model_path", value=str(path)), Parameter("backend", value="onnxruntime"),
                 Parameter("input_qos", value="reliable"), Parameter("image_topics", value=[topic])]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    return graph.add(DetectorNode(name, context=graph.context, parameter_overrides=overrides))


@pytest.mark.parametrize("layout", ["ultralytics", "axera"])
def test_segmentation_and_pose_over_dds(tmp_path, layout):
    kpts = np.zeros((2, 17, 3), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(BOXES):
        kpts[i, :, 0] = np.linspace(x1 + 5, x2 - 5, 17)
        kpts[i, :, 1] = np.linspace(y1 + 5, y2 - 5, 17)
        kpts[i, :, 2] = 0.9
    seg = task_model(tmp_path / "seg.onnx", seg_outputs(BOXES, [0, 2], [0.9, 0.8], layout=layout), layout=layout)
    pose = task_model(tmp_path / "pose.onnx", pose_outputs(BOXES, [0.9, 0.8], kpts, layout=layout), layout=layout)
    with RosGraph() as graph:
        _node(graph, "det_seg", seg, "/seg/image_raw")
        _node(graph, "det_pose", pose, "/pose/image_raw")
        test = graph.node("tasks_test")
        lc = LifecycleClient(graph, test)
        for n in ("/det_seg", "/det_pose"):
            assert lc.change(n, "configure") and lc.change(n, "activate")
        got = {k: [] for k in ("seg_det", "masks", "seg_img", "pose_det", "kpts")}
        test.create_subscription(DetectionArray, "/seg/detections", got["seg_det"].append, QOS)
        test.create_subscription(InstanceMasks, "/seg/masks", got["masks"].append, QOS)
        test.create_subscription(Image, "/seg/detections_image", got["seg_img"].append, QOS)
        test.create_subscription(DetectionArray, "/pose/detections", got["pose_det"].append, QOS)
        test.create_subscription(KeypointArray, "/pose/keypoints", got["kpts"].append, QOS)
        pub_s = test.create_publisher(Image, "/seg/image_raw", QOS)
        pub_p = test.create_publisher(Image, "/pose/image_raw", QOS)
        graph.wait_for(lambda: pub_s.get_subscription_count() > 0 and pub_p.get_subscription_count() > 0, 10,
                       "detector subscriptions")
        pub_s.publish(_frame_msg())
        pub_p.publish(_frame_msg())
        graph.wait_for(lambda: got["masks"] and got["seg_img"] and got["kpts"] and got["pose_det"], 30, "outputs")

        dets, masks = got["seg_det"][0], got["masks"][0]
        for msg in (masks, masks.mask, got["kpts"][0], got["seg_img"][0]):
            assert msg.header.stamp.sec == 7 and msg.header.stamp.nanosec == 250
            assert msg.header.frame_id == "cam_optical"
        assert (masks.mask.width, masks.mask.height, masks.mask.encoding) == (640, 480, "mono8")
        assert len(masks.instance_ids) == len(dets.detections) == 2
        labels = image_msg_to_array(masks.mask).array
        for value, (x1, y1, x2, y2) in zip(masks.instance_ids, BOXES):
            region = labels == value
            ys, xs = np.nonzero(region)
            assert value > 0 and abs(xs.min() - x1) <= 2 and abs(xs.max() + 1 - (x1 + x2) / 2) <= 4
            assert abs(ys.min() - (y1 - 80)) <= 2 and abs(ys.max() + 1 - (y2 - 80)) <= 2
        assert dets.detections[0].track_id >= 1  # tracking is on by default
        annotated = image_msg_to_array(got["seg_img"][0]).array
        assert (annotated[labels > 0] != 100).any(axis=-1).all()  # masks tinted

        kp = got["kpts"][0]
        assert len(kp.names) == 17 and kp.names[0] == "nose" and len(kp.skeleton) == 38
        assert len(kp.instances) == len(got["pose_det"][0].detections) == 2
        pts = np.array([[(p.x, p.y, p.score) for p in inst.keypoints] for inst in kp.instances])
        want = kpts.copy()
        want[..., 1] -= 80
        np.testing.assert_allclose(pts, want, atol=1e-2)
        assert [inst.track_id for inst in kp.instances] == [d.track_id for d in got["pose_det"][0].detections]


def test_segmentation_model_without_prototypes_fails_configure(tmp_path):
    bad = task_model(tmp_path / "seg_noproto.onnx", seg_outputs(BOXES, [0, 2], [0.9, 0.8], layout="axera"),
                     layout="axera", drop="proto")
    with RosGraph() as graph:
        node = _node(graph, "det_noproto", bad, "/np/image_raw")
        lc = LifecycleClient(graph, graph.node("noproto_test"))
        assert not lc.change("/det_noproto", "configure")
        assert lc.state("/det_noproto") == "unconfigured"
        assert "without its prototype tensor" in node.last_error, node.last_error
