"""models.yolo on real YOLOv8n weights (NudeNet 320n.onnx, 18 classes) and a real photo (skimage astronaut).

* Ultralytics layout: the unmodified ONNX finds the astronaut's face (reference from an independent run:
  FACE_FEMALE 0.81 at [173, 82, 274, 180] @320, models.md §4.3).
* AXERA layout: the same network cut before its decode at the Detect-head Concats and wrapped to AXERA's compiled
  signature (uint8 NHWC BGR in, NHWC DFL heads out). Decoding those heads with the adapter reproduces the
  Ultralytics path's boxes and scores.
"""

import cv2
import numpy as np
import pytest

from axcl_ros import assets
from axcl_ros.models.letterbox import letterbox
from axcl_ros.models.yolo import LAYOUT_AXERA, LAYOUT_ULTRALYTICS, DetectorConfig, YoloAdapter
from axcl_ros_testing import yolo_models as ym
from axcl_ros_testing.sample_inputs import skimage_image

pytestmark = pytest.mark.realweights

REFERENCE_FACE = np.array([173, 82, 274, 180], np.float32)
SIZE = 320


def iou(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area - inter)


@pytest.fixture(scope="session")
def nudenet(tmp_path_factory):
    """(ultralytics session, adapter, axera session, adapter, head names); the AXERA model is derived once."""
    try:
        src = assets.nudenet_yolov8n_onnx()
    except assets.AssetNotFoundError as exc:
        pytest.skip(str(exc))
    axera_path = tmp_path_factory.mktemp("nudenet") / "nudenet_axera_320.onnx"
    heads = ym.axera_from_ultralytics_onnx(src, axera_path, size=(SIZE, SIZE))
    ultra = ym.ort_session(src, threads=2)
    axera = ym.ort_session(axera_path, threads=2)
    ua = YoloAdapter.from_specs(*ym.ort_specs(ultra), labels=assets.NUDENET_LABELS, input_size=SIZE)
    aa = YoloAdapter.from_specs(*ym.ort_specs(axera), labels=assets.NUDENET_LABELS)
    return ultra, ua, axera, aa, heads


@pytest.fixture(scope="module")
def astronaut_bgr():
    return np.ascontiguousarray(skimage_image("astronaut")[..., ::-1])


def _detect(session, adapter, image, config=None):
    feeds, meta = adapter.preprocess(image)
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    return adapter.postprocess(outputs, meta, config)


def test_layouts_are_read_from_the_models(nudenet):
    _, ua, axera, aa, heads = nudenet
    assert heads == ["/model.22/Concat_output_0", "/model.22/Concat_1_output_0", "/model.22/Concat_2_output_0"]
    assert ua.layout == LAYOUT_ULTRALYTICS and ua.num_classes == 18 and ua.input_size == (SIZE, SIZE)
    assert ua.input_spec.describe() == "images float32[?,3,?,?]"  # dynamic H/W: the configured size is used
    assert aa.layout == LAYOUT_AXERA and aa.num_classes == 18 and aa.strides == (8, 16, 32)
    inputs, outputs = ym.ort_specs(axera)
    assert [s.describe() for s in inputs] == ["images uint8[1,320,320,3]"]
    assert [s.describe() for s in outputs] == [f"{h} float32[1,{g},{g},82]" for h, g in zip(heads, (40, 20, 10))]


def test_ultralytics_layout_finds_the_astronaut_face(nudenet, astronaut_bgr):
    ultra, ua, *_ = nudenet
    det = _detect(ultra, ua, astronaut_bgr)
    assert len(det) >= 1 and det.names[0] == "FACE_FEMALE"
    assert 0.7 < det.scores[0] < 0.9
    assert iou(det.boxes[0], REFERENCE_FACE) > 0.8
    assert det.image_size == (512, 512)


def test_axera_layout_reproduces_the_ultralytics_boxes(nudenet, astronaut_bgr):
    ultra, ua, axera, aa, _ = nudenet
    cfg = DetectorConfig(conf_threshold=0.01)
    want = _detect(ultra, ua, astronaut_bgr, cfg)
    got = _detect(axera, aa, astronaut_bgr, cfg)  # square image: no padding, the inputs are identical
    assert len(want) >= 2 and got.names[0] == "FACE_FEMALE"
    assert got.class_ids.tolist() == want.class_ids.tolist()
    np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
    assert iou(got.boxes[0], REFERENCE_FACE) > 0.8


@pytest.mark.parametrize("name", ["astronaut_wide", "coffee", "chelsea"])
def test_axera_decode_equals_ultralytics_decode_on_the_same_tensor(nudenet, astronaut_bgr, name):
    """Non-square images (real letterbox padding): both models see the same letterboxed pixels."""
    ultra, ua, axera, aa, _ = nudenet
    if name == "astronaut_wide":
        image = np.zeros((512, 800, 3), np.uint8)
        image[:, 150:662] = astronaut_bgr
    else:
        image = np.ascontiguousarray(skimage_image(name)[..., ::-1])
    boxed, meta = letterbox(image, (SIZE, SIZE), 114)
    assert meta.pad_top > 0
    raw_u = ultra.run(None, {"images": cv2.dnn.blobFromImage(boxed, 1 / 255.0, swapRB=True)})[0]
    raw_a = dict(zip([o.name for o in axera.get_outputs()], axera.run(None, {"images": boxed[None]})))
    cfg = DetectorConfig(conf_threshold=0.01)
    want = ua.postprocess({"output0": raw_u}, meta, cfg)
    got = aa.postprocess(raw_a, meta, cfg)
    assert len(want) >= 3
    assert got.class_ids.tolist() == want.class_ids.tolist()
    np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
    if name == "astronaut_wide":
        # and the AXERA adapter's own preprocessing (black padding, BGR uint8) still finds the shifted face
        own = _detect(axera, aa, image)
        assert own.names[0] == "FACE_FEMALE" and iou(own.boxes[0], REFERENCE_FACE + [150, 0, 150, 0]) > 0.8


def _opencv_batched(boxes, scores, classes, iou_threshold):
    """Reference: OpenCV's own class-aware NMS (NMSBoxesBatched), best score first."""
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float64)
    idx = np.asarray(cv2.dnn.NMSBoxesBatched(xywh, scores, classes, 0.0, iou_threshold), np.intp).reshape(-1)
    return idx[np.argsort(-scores[idx], kind="stable")]


@pytest.mark.parametrize("layout", ["ultralytics", "axera"])
@pytest.mark.parametrize("threshold,max_det", [(1e-5, 300), (1e-4, 100), (0.01, 300), (0.25, 100)])
def test_capped_candidates_give_the_uncapped_boxes(nudenet, astronaut_bgr, layout, threshold, max_det):
    """The top-k cap before NMS changes nothing: real-weight outputs at thresholds from hundreds of candidates
    down to the default, capped at 50 and 200 candidates vs uncapped (cap above the number of anchors); with more
    detections than the cap leaves, the adapter continues NMS over the rest, which this covers too."""
    ultra, ua, axera, aa, _ = nudenet
    session, adapter = (ultra, ua) if layout == "ultralytics" else (axera, aa)
    big = cv2.resize(astronaut_bgr, (640, 480))  # non-square: letterbox padding on two sides
    feeds, meta = adapter.preprocess(big)
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    base = DetectorConfig(conf_threshold=threshold, max_detections=max_det)
    full = adapter.postprocess(outputs, meta, base.replace(max_candidates=10**6))
    if threshold <= 1e-4 and layout == "ultralytics":  # the cap is really exercised: hundreds of candidates
        assert int((outputs[ultra.get_outputs()[0].name][0, 4:].max(axis=0) > threshold).sum()) > 200
    for cap in (50, 200):
        capped = adapter.postprocess(outputs, meta, base.replace(max_candidates=cap))
        assert len(capped) == len(full)
        np.testing.assert_array_equal(capped.class_ids, full.class_ids)
        np.testing.assert_array_equal(capped.scores, full.scores)
        np.testing.assert_array_equal(capped.boxes, full.boxes)


@pytest.mark.parametrize("threshold", [1e-5, 0.05])
def test_nms_matches_opencv_batched_nms(nudenet, astronaut_bgr, threshold):
    """Our NMS (onnxruntime's NonMaxSuppression operator) keeps exactly the boxes OpenCV's NMSBoxesBatched keeps
    (real candidates)."""
    from axcl_ros.models.nms import greedy_nms

    ultra, ua, *_ = nudenet
    feeds, _ = ua.preprocess(astronaut_bgr)
    pred = ultra.run(None, feeds)[0][0]
    scores_all = pred[4:]
    conf = scores_all.max(axis=0)
    keep = np.flatnonzero(conf > threshold)
    assert keep.size > 10
    cls = scores_all[:, keep].argmax(axis=0).astype(np.int32)
    cx, cy, w, h = (pred[i, keep] for i in range(4))
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
    scores = conf[keep].astype(np.float32)
    ours = greedy_nms(boxes, scores, cls, 0.45)
    np.testing.assert_array_equal(np.sort(ours), np.sort(_opencv_batched(boxes, scores, cls, 0.45)))
    np.testing.assert_array_equal(ours, ours[np.argsort(-scores[ours], kind="stable")])
