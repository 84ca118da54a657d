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
from axcl_ros_testing.lifecycle_client import LifecycleClient  # noqa: E402
from axcl_ros_testing.ros_graph import RosGraph  # noqa: E402
from axcl_ros_testing.yolo_task_models import pose_outputs, seg_outputs, task_model  # noqa: E402

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


@pytest.mark.parametrize("task", ["segment", "pose"])
def test_segmentation_and_pose_on_the_axcl_stub(stub, tmp_path, task):
    from axcl_ros.models.letterbox import letterbox
    from axcl_ros_testing import stub_models as sm
    from axcl_ros_testing.yolo_task_models import yolo11_task_stub

    model = yolo11_task_stub(tmp_path / f"yolo11n-{task}.axmodel", task)
    frame = np.full((480, 640, 3), 100, np.uint8)
    boxed, _ = letterbox(frame, (640, 640), 0)
    want = sm.expected_yolo_box(boxed[None])
    x1, y1, x2, y2 = want.box  # letterbox pixels; the frame sits 80 rows down
    with RosGraph() as graph:
        graph.add(DetectorNode("det_stub_task", context=graph.context, parameter_overrides=[
            Parameter("model_path", value=str(model)), Parameter("backend", value="axcl"),
            Parameter("input_qos", value="reliable"), Parameter("image_topics", value=["/st/image_raw"])]))
        test = graph.node("stub_task_test")
        lc = LifecycleClient(graph, test)
        assert lc.change("/det_stub_task", "configure") and lc.change("/det_stub_task", "activate")
        dets, extra = [], []
        test.create_subscription(DetectionArray, "/st/detections", dets.append, QOS)
        if task == "segment":
            test.create_subscription(InstanceMasks, "/st/masks", extra.append, QOS)
        else:
            test.create_subscription(KeypointArray, "/st/keypoints", extra.append, QOS)
        pub = test.create_publisher(Image, "/st/image_raw", QOS)
        graph.wait_for(lambda: pub.get_subscription_count() > 0, 10, "detector subscription")
        pub.publish(_frame_msg(9))
        graph.wait_for(lambda: dets and extra, 30, "outputs")
        assert len(dets[0].detections) == 1 and dets[0].detections[0].class_id == want.class_id
        assert extra[0].header.stamp.sec == 9
        if task == "segment":
            labels = image_msg_to_array(extra[0].mask).array
            ys, xs = np.nonzero(labels == extra[0].instance_ids[0])
            d = dets[0].detections[0]
            assert abs(d.center_x - d.size_x / 2 - x1) < 0.1 and abs(d.center_y - d.size_y / 2 - (y1 - 80)) < 0.1
            # the mask is the whole box: every pixel the box touches, and none outside
            left, right = d.center_x - d.size_x / 2, d.center_x + d.size_x / 2
            top, bottom = d.center_y - d.size_y / 2, d.center_y + d.size_y / 2
            assert (xs.min(), xs.max() + 1) == (np.floor(left), np.ceil(right))
            assert (ys.min(), ys.max() + 1) == (np.floor(top), np.ceil(bottom))
            assert len(xs) == (xs.max() + 1 - xs.min()) * (ys.max() + 1 - ys.min())
        else:
            pts = np.array([(p.x, p.y, p.score) for p in extra[0].instances[0].keypoints])
            cell = 640 // 16 // 2 * 16  # the planted cell's corner, stride 16
            want_pts = np.tile([cell, cell - 80, 0.5], (17, 1))
            want_pts[0, 0] += 2 * 16  # the stub sets raw x of keypoint 0 to 1: x = (2·1 + column)·stride
            np.testing.assert_allclose(pts, want_pts, atol=1e-3)
        assert lc.change("/det_stub_task", "deactivate") and lc.change("/det_stub_task", "cleanup")


def test_mask_message_mono16_above_255_instances_and_keypoint_message_fields():
    from axcl_msgs.msg import Keypoint, KeypointSet

    from axcl_ros.io.task_messages import fill_instance_masks, fill_keypoint_array

    labels = np.arange(300 * 2, dtype=np.uint16).reshape(20, 30) % 301
    msg = fill_instance_masks(InstanceMasks(), Image, _frame_msg(3).header, labels, np.arange(1, 301))
    assert msg.mask.encoding == "mono16" and (msg.mask.width, msg.mask.height) == (30, 20)
    np.testing.assert_array_equal(image_msg_to_array(msg.mask).array, labels)
    assert msg.mask.header.stamp.sec == 3 and len(msg.instance_ids) == 300
    kp = fill_keypoint_array(KeypointArray(), KeypointSet, Keypoint, _frame_msg(4).header, ["a", "b"], [(0, 1)],
                             np.array([[[1.0, 2.0, 0.5], [3.0, 4.0, 0.25]]]), np.array([7]))
    assert list(kp.skeleton) == [0, 1] and kp.instances[0].track_id == 7
    assert (kp.instances[0].keypoints[1].x, kp.instances[0].keypoints[1].score) == (3.0, 0.25)


def test_masks_computed_only_while_someone_takes_them(tmp_path, monkeypatch):
    """No subscriber on masks nor on the annotated image: the detector publishes detections but computes no mask;
    a masks subscriber (from its own node, through DDS) or an annotated-image subscriber turns them on."""
    from axcl_ros.models import yolo_tasks

    calls = []
    real = yolo_tasks.instance_label_image
    monkeypatch.setattr(yolo_tasks, "instance_label_image", lambda *a, **k: calls.append(1) or real(*a, **k))
    seg = task_model(tmp_path / "seg.onnx", seg_outputs(BOXES, [0, 2], [0.9, 0.8], layout="ultralytics"),
                     layout="ultralytics")
    with RosGraph() as graph:
        node = _node(graph, "det_lazy", seg, "/lazy/image_raw")
        test = graph.node("lazy_test")
        lc = LifecycleClient(graph, test)
        assert lc.change("/det_lazy", "configure") and lc.change("/det_lazy", "activate")
        pubs = node.cameras.streams[0].publishers
        dets, masks, images = [], [], []
        test.create_subscription(DetectionArray, "/lazy/detections", dets.append, QOS)
        pub = test.create_publisher(Image, "/lazy/image_raw", QOS)
        graph.wait_for(lambda: pub.get_subscription_count() > 0 and pubs["detections"].get_subscription_count() > 0,
                       10, "detector matched")

        pub.publish(_frame_msg(1))
        graph.wait_for(lambda: dets, 30, "detections without mask subscribers")
        assert len(dets[0].detections) == 2 and calls == []

        sub = test.create_subscription(InstanceMasks, "/lazy/masks", masks.append, QOS)
        graph.wait_for(lambda: pubs["masks"].get_subscription_count() > 0, 10, "masks subscriber matched")
        pub.publish(_frame_msg(2))
        graph.wait_for(lambda: masks, 30, "masks")
        assert len(calls) == 1 and list(masks[0].instance_ids) == [1, 2]

        test.destroy_subscription(sub)
        graph.wait_for(lambda: pubs["masks"].get_subscription_count() == 0, 10, "masks subscriber gone")
        test.create_subscription(Image, "/lazy/detections_image", images.append, QOS)
        graph.wait_for(lambda: pubs["image"].get_subscription_count() > 0, 10, "annotated subscriber matched")
        pub.publish(_frame_msg(3))
        graph.wait_for(lambda: images, 30, "annotated image")
        assert len(calls) == 2  # the annotated image draws the masks
