"""Segmentation and pose through the task adapter, both layouts, on ONNX models with planted instances; malformed
task models are refused with a message that says what is missing."""

import numpy as np
import pytest

from axcl_ros.models.yolo import ModelLayoutError
from axcl_ros.models.yolo_tasks import YoloTaskAdapter
from axcl_ros_testing.yolo_models import ort_session, ort_specs
from axcl_ros_testing.yolo_task_models import pose_outputs, seg_outputs, task_model

LAYOUTS = ("ultralytics", "axera")
# letterbox of a 640x480 frame into 640x640: scale 1, 80 rows of padding on top
BOXES = [[100, 180, 260, 460], [300, 200, 420, 300], [450, 300, 610, 540]]
CLASSES = [0, 2, 5]
SCORES = [0.92, 0.85, 0.7]


def _run(path, layout, **kw):
    sess = ort_session(path)
    inputs, outputs = ort_specs(sess)
    adapter = YoloTaskAdapter.from_specs(inputs, outputs, **kw)
    frame = np.full((480, 640, 3), 100, np.uint8)
    feeds, meta = adapter.preprocess(frame)
    raw = sess.run(None, feeds)
    return adapter, adapter.postprocess(raw, meta)


def _left_half_mask(box, shape=(480, 640)):
    x1, y1, x2, y2 = box[0], box[1] - 80, box[2], box[3] - 80
    m = np.zeros(shape, bool)
    m[max(int(y1), 0):int(y2), int(x1):int((x1 + x2) / 2)] = True
    return m


@pytest.mark.parametrize("layout", LAYOUTS)
def test_segmentation_masks(tmp_path, layout):
    path = task_model(tmp_path / "seg.onnx", seg_outputs(BOXES, CLASSES, SCORES, layout=layout), layout=layout)
    adapter, res = _run(path, layout)
    assert adapter.task == "segment" and adapter.num_classes == 80
    labels, ids = res.masks
    assert labels.shape == (480, 640) and labels.dtype == np.uint8
    assert list(res.detections.class_ids) == CLASSES and len(ids) == 3
    for k, box in enumerate(BOXES):
        got = labels == ids[k]
        want = _left_half_mask(box)
        iou = (got & want).sum() / (got | want).sum()
        assert iou > 0.95, (k, iou)
    assert (labels[:, 620:] == 0).all()  # nothing outside the boxes


def test_axera_segmentation_with_channels_last_prototypes(tmp_path):
    """AXERA's compiled yolo11-seg reports its prototypes channels first ([1,32,160,160], the default of the test
    models); a model compiled with them channels last ([1,160,160,32]) gives the same masks."""
    masks = {}
    for last in (False, True):
        outs = seg_outputs(BOXES, CLASSES, SCORES, layout="axera", channels_last_protos=last)
        assert outs["proto"].shape == ((1, 160, 160, 32) if last else (1, 32, 160, 160))
        adapter, res = _run(task_model(tmp_path / f"seg{last}.onnx", outs, layout="axera"), "axera")
        assert adapter.task == "segment" and adapter.protos_channels_last is last
        masks[last] = res.masks
    np.testing.assert_array_equal(masks[False][0], masks[True][0])
    np.testing.assert_array_equal(masks[False][1], masks[True][1])


# The IO info of AXERA's published axmodels as axcl prints it on a host (Radxa AX-M1 docs, yolo11s-seg / -pose,
# 2025): names, shapes and order.
AXERA_SEG_IO = [("/model.23/Concat_1_output_0", (1, 80, 80, 144)), ("/model.23/Concat_2_output_0", (1, 40, 40, 144)),
                ("/model.23/Concat_3_output_0", (1, 20, 20, 144)),
                ("/model.23/cv4.0/cv4.0.2/Conv_output_0", (1, 80, 80, 32)),
                ("/model.23/cv4.1/cv4.1.2/Conv_output_0", (1, 40, 40, 32)),
                ("/model.23/cv4.2/cv4.2.2/Conv_output_0", (1, 20, 20, 32)), ("output1", (1, 32, 160, 160))]
AXERA_POSE_IO = [(n, (1, g, g, 65)) for n, g in zip([x for x, _ in AXERA_SEG_IO[:3]], (80, 40, 20))] + \
    [(n, (1, g, g, 51)) for n, g in zip([x for x, _ in AXERA_SEG_IO[3:6]], (80, 40, 20))]


@pytest.mark.parametrize("task,io", [("segment", AXERA_SEG_IO), ("pose", AXERA_POSE_IO)])
def test_the_io_signature_of_axera_published_models(task, io):
    """The adapter reads AXERA's own yolo11s-seg / yolo11s-pose tensors as they are reported (order, names, shapes),
    and decodes outputs laid out that way: the planted instances come back (masks / keypoints)."""
    from axcl_ros.runtime.base import TensorSpec

    inputs = [TensorSpec("images", (1, 640, 640, 3), np.dtype(np.uint8), "NHWC")]
    specs = [TensorSpec(n, shape, np.dtype(np.float32), "NCHW" if n == "output1" else "NHWC") for n, shape in io]
    adapter = YoloTaskAdapter.from_specs(inputs, specs)
    assert adapter.task == task and adapter.num_classes == (80 if task == "segment" else 1)
    assert [s.name for s in adapter.detector.output_specs] == [n for n, _ in io[:3]]
    assert [s.name for s in adapter.extra_specs] == [n for n, _ in io[3:6]]
    if task == "segment":
        assert adapter.protos_spec.name == "output1" and adapter.protos_channels_last is False
        planted = seg_outputs(BOXES, CLASSES, SCORES, layout="axera")
        keys = [f"det{i}" for i in range(3)] + [f"mask{i}" for i in range(3)] + ["proto"]
    else:
        kpts = np.zeros((2, 17, 3), np.float32)
        kpts[..., 0], kpts[..., 1], kpts[..., 2] = 200.0, 300.0, 0.9
        planted = pose_outputs(BOXES[:2], SCORES[:2], kpts, layout="axera")
        keys = [f"det{i}" for i in range(3)] + [f"kpt{i}" for i in range(3)]
    raw = [planted[k] for k in keys]  # in the model's output order, as a session returns them
    assert [a.shape for a in raw] == [shape for _, shape in io]
    _, meta = adapter.preprocess(np.full((480, 640, 3), 100, np.uint8))
    res = adapter.postprocess(raw, meta)
    if task == "segment":
        labels, ids = res.masks
        for k, box in enumerate(BOXES):
            got, want = labels == ids[k], _left_half_mask(box)
            assert (got & want).sum() / (got | want).sum() > 0.95
    else:
        np.testing.assert_allclose(res.keypoints[..., :2], np.broadcast_to([200.0, 220.0], (2, 17, 2)), atol=1e-3)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pose_keypoints(tmp_path, layout):
    rng = np.random.default_rng(0)
    boxes = BOXES[:2]
    kpts = np.zeros((2, 17, 3), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        kpts[i, :, 0] = rng.uniform(x1, x2, 17)
        kpts[i, :, 1] = rng.uniform(y1, y2, 17)
        kpts[i, :, 2] = rng.uniform(0.05, 0.95, 17)
    path = task_model(tmp_path / "pose.onnx", pose_outputs(boxes, SCORES[:2], kpts, layout=layout), layout=layout)
    adapter, res = _run(path, layout)
    assert adapter.task == "pose" and len(adapter.keypoint_names) == 17 and adapter.num_classes == 1
    assert res.keypoints.shape == (2, 17, 3)
    want = kpts.copy()
    want[..., 1] -= 80
    np.testing.assert_allclose(res.keypoints, want, atol=1e-3)


@pytest.mark.parametrize("layout,drop", [("ultralytics", "output1"), ("axera", "proto")])
def test_segmentation_model_without_prototypes_is_refused(tmp_path, layout, drop):
    path = task_model(tmp_path / "bad.onnx", seg_outputs(BOXES, CLASSES, SCORES, layout=layout), layout=layout,
                      drop=drop)
    sess = ort_session(path)
    inputs, outputs = ort_specs(sess)
    kw = {"task": "segment"} if layout == "ultralytics" else {}  # Ultralytics: nothing marks it as seg but the task
    with pytest.raises(ModelLayoutError, match="without its prototype tensor"):
        YoloTaskAdapter.from_specs(inputs, outputs, **kw)


def test_plain_detector_is_detect_task(tmp_path):
    from axcl_ros_testing.yolo_models import ultralytics_yolo_model

    ultralytics_yolo_model(tmp_path / "det.onnx")
    inputs, outputs = ort_specs(ort_session(tmp_path / "det.onnx"))
    adapter = YoloTaskAdapter.from_specs(inputs, outputs)
    assert adapter.task == "detect" and adapter.num_classes == 80


def test_unknown_task_refused(tmp_path):
    with pytest.raises(ModelLayoutError, match="task 'classify'"):
        YoloTaskAdapter.from_specs([], [], task="classify")


def test_each_detection_reads_its_own_candidate_row():
    """Two persons with the same score and the same box centre (a child in front of an adult): matching a kept
    detection back to a candidate by class, score and centre cannot tell them apart; the kept index can. Each gets
    its own keypoints, and ``Detections.source`` names the planted anchor columns."""
    boxes = [[220, 200, 420, 600], [290, 330, 350, 470]]  # same centre (320, 400), IoU 0.1: NMS keeps both
    kpts = np.zeros((2, 17, 3), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        kpts[i, :, 0] = np.linspace(x1, x2, 17)
        kpts[i, :, 1] = np.linspace(y1, y2, 17)
        kpts[i, :, 2] = 0.9
    outs = pose_outputs(boxes, [0.8, 0.8], kpts, layout="ultralytics")
    from axcl_ros.runtime.base import TensorSpec

    specs = [TensorSpec(n, a.shape, np.dtype(np.float32)) for n, a in outs.items()]
    adapter = YoloTaskAdapter.from_specs([TensorSpec("images", (1, 3, 640, 640), np.dtype(np.float32))], specs)
    _, meta = adapter.preprocess(np.full((480, 640, 3), 100, np.uint8))
    res = adapter.postprocess(outs, meta)
    assert sorted(res.detections.source.tolist()) == [0, 1]
    for k, src in enumerate(res.detections.source):
        want = kpts[src].copy()
        want[:, 1] -= 80
        np.testing.assert_allclose(res.keypoints[k], want, atol=1e-3)
    assert not np.allclose(res.keypoints[0], res.keypoints[1])
