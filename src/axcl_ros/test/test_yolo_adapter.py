"""models.yolo with tiny onnx.helper models that have the exact signatures of both YOLO layouts (run on onnxruntime).

Known boxes are planted into the raw outputs; preprocess → onnxruntime → postprocess must give them back in
input-image pixels, with thresholds, class filter, NMS flavour and max_detections applied.
"""

import math

import cv2
import numpy as np
import pytest

from axcl_ros.io.image import ImageConversionError
from axcl_ros.models.labels import COCO80
from axcl_ros.models.yolo import (
    LAYOUT_AXERA,
    LAYOUT_ULTRALYTICS,
    DetectorConfig,
    ModelOutputError,
    YoloAdapter,
)
from axcl_ros_testing import yolo_models as ym

SIZE = (640, 640)
# planted boxes in letterbox pixels (a 640x480 image letterboxed to 640x640 has 80 rows of padding on top)
PLANTED = [
    # box                     class score
    ([100, 180, 160, 260], 0, 0.90),  # A: person, stride 8
    ([110, 186, 170, 262], 1, 0.80),  # D: overlaps A (IoU 0.65), another class
    ([300, 200, 500, 400], 2, 0.70),  # B: stride 16
    ([20, 100, 620, 540], 5, 0.60),   # C: stride 32
    ([400, 300, 440, 340], 3, 0.20),  # E: below the default threshold
    ([200, 20, 260, 70], 4, 0.95),    # F: entirely inside the top padding -> empty after clipping, dropped
]
BOXES = [p[0] for p in PLANTED]
CLASSES = [p[1] for p in PLANTED]
SCORES = [p[2] for p in PLANTED]
PAD_TOP = 80


def _expected(indices):
    boxes = np.array([BOXES[i] for i in indices], np.float32) - [0, PAD_TOP, 0, PAD_TOP]
    return np.clip(boxes, 0, [640, 480, 640, 480]), [SCORES[i] for i in indices], [CLASSES[i] for i in indices]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("yolo_stubs")
    heads = ym.encode_dfl_heads(BOXES, CLASSES, SCORES, SIZE, 80)
    paths = {
        "axera": root / "axera.onnx",
        "axera_shuffled": root / "axera_shuffled.onnx",
        "ultra": root / "ultra.onnx",
        "ultra_dynamic": root / "ultra_dynamic.onnx",
        "classifier": root / "classifier.onnx",
    }
    ym.axera_yolo_model(paths["axera"], heads=heads)
    ym.axera_yolo_model(paths["axera_shuffled"], heads=heads, head_order=[2, 0, 1])
    out = ym.encode_ultralytics_output(BOXES, CLASSES, SCORES, SIZE, 80, columns=[7, 8400 - 1, 3, 500, 9, 42])
    ym.ultralytics_yolo_model(paths["ultra"], output=out)
    ym.ultralytics_yolo_model(paths["ultra_dynamic"], size=None, output=out)
    ym.classifier_model(paths["classifier"])
    return {k: ym.ort_session(p) for k, p in paths.items()}


def _adapter(session, **kw):
    inputs, outputs = ym.ort_specs(session)
    return YoloAdapter.from_specs(inputs, outputs, **kw)


def _run(adapter, session, image, config=None):
    feeds, meta = adapter.preprocess(image)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, feeds)))
    return adapter.postprocess(outputs, meta, config), feeds, meta


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)


def test_exact_signatures(models):
    ai, ao = ym.ort_specs(models["axera"])
    assert [s.describe() for s in ai] == ["images uint8[1,640,640,3]"]
    assert [s.describe() for s in ao] == ["/model.23/Concat_output_0 float32[1,80,80,144]",
                                          "/model.23/Concat_1_output_0 float32[1,40,40,144]",
                                          "/model.23/Concat_2_output_0 float32[1,20,20,144]"]
    ui, uo = ym.ort_specs(models["ultra"])
    assert [s.describe() for s in ui + uo] == ["images float32[1,3,640,640]", "output0 float32[1,84,8400]"]
    di, do = ym.ort_specs(models["ultra_dynamic"])
    assert [s.describe() for s in di + do] == ["images float32[?,3,?,?]", "output0 float32[?,84,?]"]


@pytest.mark.parametrize("key", ["axera", "axera_shuffled"])
def test_axera_layout_end_to_end(models, image, key):
    adapter = _adapter(models[key])
    assert adapter.layout == LAYOUT_AXERA
    assert adapter.input_size == SIZE and adapter.strides == (8, 16, 32) and adapter.num_classes == 80
    assert adapter.labels == COCO80 and adapter.pad_value == 0
    det, feeds, meta = _run(adapter, models[key], image)
    # input: uint8 NHWC BGR, image copied untouched (scale 1), black padding
    tensor = feeds["images"]
    assert tensor.shape == (1, 640, 640, 3) and tensor.dtype == np.uint8
    np.testing.assert_array_equal(tensor[0, PAD_TOP:PAD_TOP + 480], image)
    assert (tensor[0, :PAD_TOP] == 0).all() and (tensor[0, PAD_TOP + 480:] == 0).all()
    assert (meta.pad_top, meta.pad_left, meta.scale) == (PAD_TOP, 0, 1.0)
    boxes, scores, classes = _expected([0, 1, 2, 3])  # E below threshold, F dropped
    np.testing.assert_allclose(det.boxes, boxes, atol=1e-3)
    np.testing.assert_allclose(det.scores, scores, atol=1e-5)
    assert det.class_ids.tolist() == classes
    assert det.names == ["person", "bicycle", "car", "bus"]
    assert det.image_size == (480, 640) and len(det) == 4
    # a plain list in the model's own output order (what session.run returns) works too
    as_list = adapter.postprocess(models[key].run(None, feeds), meta)
    np.testing.assert_array_equal(as_list.boxes, det.boxes)
    assert adapter.output_names == tuple(f"/model.23/Concat{s}_output_0" for s in ("", "_1", "_2"))


def test_ultralytics_layout_end_to_end(models, image):
    adapter = _adapter(models["ultra"])
    assert adapter.layout == LAYOUT_ULTRALYTICS and adapter.input_size == SIZE and adapter.num_classes == 80
    det, feeds, _ = _run(adapter, models["ultra"], image)
    tensor = feeds["images"]
    assert tensor.shape == (1, 3, 640, 640) and tensor.dtype == np.float32
    # RGB /255 in NCHW, padding 114
    np.testing.assert_allclose(tensor[0, 0, PAD_TOP:PAD_TOP + 480], image[..., 2] / 255.0, atol=1e-6)
    np.testing.assert_allclose(tensor[0, 2, PAD_TOP:PAD_TOP + 480], image[..., 0] / 255.0, atol=1e-6)
    np.testing.assert_allclose(tensor[0, :, :PAD_TOP], 114 / 255.0, atol=1e-6)
    boxes, scores, classes = _expected([0, 1, 2, 3])
    np.testing.assert_allclose(det.boxes, boxes, atol=1e-3)
    np.testing.assert_allclose(det.scores, scores, atol=1e-6)
    assert det.class_ids.tolist() == classes


def test_dynamic_input_uses_configured_size(models):
    adapter = _adapter(models["ultra_dynamic"])
    assert adapter.input_size == (640, 640)
    small = _adapter(models["ultra_dynamic"], input_size=320)
    feeds, meta = small.preprocess(np.zeros((240, 320, 3), np.uint8))
    assert feeds["images"].shape == (1, 3, 320, 320) and meta.pad_top == 40
    models["ultra_dynamic"].run(None, feeds)  # the model accepts it
    assert _adapter(models["ultra_dynamic"], input_size=(384, 640)).input_size == (384, 640)


def test_runtime_config(models, image):
    adapter = _adapter(models["axera"])
    sess = models["axera"]
    det, _, _ = _run(adapter, sess, image, DetectorConfig(conf_threshold=0.1))
    assert sorted(det.class_ids.tolist()) == [0, 1, 2, 3, 5]  # E appears
    adapter.update_config(agnostic_nms=True)
    det, _, _ = _run(adapter, sess, image)
    assert det.class_ids.tolist() == [0, 2, 5]  # D suppressed by A across classes
    adapter.update_config(agnostic_nms=False, max_detections=2)
    det, _, _ = _run(adapter, sess, image)
    assert det.scores.tolist() == pytest.approx([0.9, 0.8], abs=1e-5)
    adapter.update_config(max_detections=300, classes={1, 5})
    det, _, _ = _run(adapter, sess, image)
    assert det.class_ids.tolist() == [1, 5]
    adapter.config = DetectorConfig(classes=adapter.class_ids(["car"]))
    det, _, _ = _run(adapter, sess, image)
    assert det.names == ["car"]
    adapter.config = DetectorConfig(conf_threshold=0.85)
    det, _, _ = _run(adapter, sess, image)
    assert det.class_ids.tolist() == [0]  # F (0.95) lies in the padding only
    det, _, _ = _run(adapter, sess, image, DetectorConfig(conf_threshold=1.0))
    assert len(det) == 0 and det.boxes.shape == (0, 4)
    det, _, _ = _run(adapter, sess, image, DetectorConfig(iou_threshold=0.7, agnostic_nms=True))
    assert det.class_ids.tolist() == [0, 1, 2, 5]  # A and D overlap with IoU 0.65 < 0.7: both kept


def test_class_filter_keeps_best_allowed_class(tmp_path):
    """A cell whose best class is filtered out is still reported under its best allowed class."""
    heads = ym.encode_dfl_heads([[100, 100, 160, 160]], [0], [0.9], SIZE, 80)
    cell = heads[0][0, 130 // 8, 130 // 8]
    cell[64 + 7] = math.log(0.6 / 0.4)  # class 7 (truck) at 0.6 in the same cell
    inputs, outputs = ym.ort_specs(_session(tmp_path, heads=heads))
    adapter = YoloAdapter.from_specs(inputs, outputs)
    names = [o.name for o in outputs]
    _, meta = adapter.preprocess(np.zeros((640, 640, 3), np.uint8))
    det = adapter.postprocess(dict(zip(names, heads)), meta)
    assert det.names == ["person"]
    det = adapter.postprocess(dict(zip(names, heads)), meta, DetectorConfig(classes={7}))
    assert det.names == ["truck"] and det.scores[0] == pytest.approx(0.6, abs=1e-5)
    # outputs may also be given as a list in output order
    assert len(adapter.postprocess(heads, meta)) == 1


def _session(tmp_path, **kw):
    path = tmp_path / "model.onnx"
    ym.axera_yolo_model(path, **kw)
    return ym.ort_session(path)


def _reference_axera_decode(heads, strides, thr, size):
    """Straight per-cell transcription of the AXERA sample decode (axcl_api.md §3.1)."""
    out = []
    for head, s in zip(heads, strides):
        gh, gw, _ = head.shape[1:]
        for r in range(gh):
            for c in range(gw):
                ch = head[0, r, c].astype(np.float64)
                cls = int(np.argmax(ch[64:]))
                score = 1 / (1 + math.exp(-ch[64 + cls]))
                if score <= thr:
                    continue
                d = []
                for k in range(4):
                    p = np.exp(ch[16 * k:16 * k + 16] - ch[16 * k:16 * k + 16].max())
                    p /= p.sum()
                    d.append(float((p * np.arange(16)).sum()) * s)
                cx, cy = (c + 0.5) * s, (r + 0.5) * s
                box = np.clip([cx - d[0], cy - d[1], cx + d[2], cy + d[3]], 0, [size[1], size[0]] * 2)
                if box[2] > box[0] and box[3] > box[1]:
                    out.append((score, cls, box))
    out.sort(key=lambda t: -t[0])
    return out


def test_vectorised_decode_matches_per_cell_reference(tmp_path):
    rng = np.random.default_rng(3)
    size, nc = (128, 192), 3
    heads = [rng.normal(0, 2, (1, size[0] // s, size[1] // s, 64 + nc)).astype(np.float32) for s in (8, 16, 32)]
    for h in heads:
        h[..., 64:] -= 3.0
    specs = ym.ort_specs(_session(tmp_path, size=size, num_classes=nc, heads=heads))
    adapter = YoloAdapter.from_specs(*specs)
    assert adapter.labels == ("class_0", "class_1", "class_2")
    _, meta = adapter.preprocess(np.zeros(size + (3,), np.uint8))  # no letterbox padding, scale 1
    cfg = DetectorConfig(conf_threshold=0.3, iou_threshold=1.0, max_detections=100000)  # NMS keeps everything
    det = adapter.postprocess(heads, meta, cfg)
    ref = _reference_axera_decode(heads, (8, 16, 32), 0.3, size)
    assert 50 < len(ref) == len(det)
    np.testing.assert_allclose(det.scores, [r[0] for r in ref], atol=1e-6)
    order = np.lexsort((det.boxes[:, 0], -det.scores))  # stable against score ties
    ref_sorted = sorted(ref, key=lambda t: (-round(t[0], 6), t[2][0]))
    np.testing.assert_allclose(det.boxes[order], np.array([r[2] for r in ref_sorted]), atol=1e-3)
    assert det.class_ids[order].tolist() == [r[1] for r in ref_sorted]


def test_dfl_softmax_only_runs_on_cells_above_threshold(tmp_path):
    """Box logits of cells below the threshold are never touched: they hold +inf, and a softmax over them would
    compute inf - inf, which raises under np.errstate(invalid="raise")."""
    heads = ym.encode_dfl_heads(BOXES[:4], CLASSES[:4], SCORES[:4], SIZE, 80)
    for h in heads:
        background = h[..., 64:].max(axis=-1) < 0
        h[..., :64][background] = np.inf
    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):  # the trap works
        x = heads[0][0, 0, 0, :16]
        np.exp(x - x.max())
    inputs, outputs = ym.ort_specs(_session(tmp_path, heads=heads))
    adapter = YoloAdapter.from_specs(inputs, outputs)
    _, meta = adapter.preprocess(np.zeros((480, 640, 3), np.uint8))
    with np.errstate(invalid="raise"):
        det = adapter.postprocess(heads, meta)
    assert np.isfinite(det.boxes).all() and len(det) == 4
    np.testing.assert_allclose(det.boxes, _expected([0, 1, 2, 3])[0], atol=1e-3)


def test_preprocess_accepts_gray_and_bgra_and_rejects_others(models):
    adapter = _adapter(models["axera"])
    gray = np.full((48, 64), 9, np.uint8)
    feeds, _ = adapter.preprocess(gray)
    assert (feeds["images"][0, 320, 320] == 9).all()
    bgra = np.dstack([np.full((48, 64, 3), 5, np.uint8), np.zeros((48, 64), np.uint8)])
    assert (adapter.preprocess(bgra)[0]["images"][0, 320, 320] == 5).all()
    for bad in (np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4, 2), np.uint8),
                "image", np.zeros((2, 4, 4, 3), np.uint8)):
        with pytest.raises(ImageConversionError) as info:
            adapter.preprocess(bad)
        assert info.value.field == "image"


def test_postprocess_rejects_mismatched_outputs(models, image):
    adapter = _adapter(models["axera"])
    feeds, meta = adapter.preprocess(image)
    outs = dict(zip([o.name for o in models["axera"].get_outputs()], models["axera"].run(None, feeds)))
    missing = dict(outs)
    del missing["/model.23/Concat_1_output_0"]
    with pytest.raises(ModelOutputError, match="Concat_1_output_0"):
        adapter.postprocess(missing, meta)
    wrong = dict(outs)
    wrong["/model.23/Concat_output_0"] = np.zeros((1, 80, 80, 100), np.float32)
    with pytest.raises(ModelOutputError, match=r"float32\[1,80,80,144\].*\[1, 80, 80, 100\]"):
        adapter.postprocess(wrong, meta)
    with pytest.raises(ModelOutputError, match="expected 3 outputs"):
        adapter.postprocess([outs["/model.23/Concat_output_0"]], meta)
    ultra = _adapter(models["ultra"])
    with pytest.raises(ModelOutputError, match="batch 1"):
        ultra.postprocess({"output0": np.zeros((2, 84, 8400), np.float32)}, meta)


def test_empty_result_has_the_right_shapes(models, image):
    adapter = _adapter(models["ultra"])
    _, meta = adapter.preprocess(image)
    det = adapter.postprocess({"output0": np.zeros((1, 84, 8400), np.float32)}, meta)
    assert len(det) == 0 and det.boxes.shape == (0, 4) and det.boxes.dtype == np.float32
    assert det.class_ids.dtype == np.int32 and det.names == [] and det.centers_sizes().shape == (0, 4)


def test_centers_sizes_for_messages(models, image):
    det, _, _ = _run(_adapter(models["ultra"]), models["ultra"], image)
    cs = det.centers_sizes()
    np.testing.assert_allclose(cs[:, 0], (det.boxes[:, 0] + det.boxes[:, 2]) / 2, atol=1e-4)
    np.testing.assert_allclose(cs[:, 3], det.boxes[:, 3] - det.boxes[:, 1], atol=1e-4)


def test_large_frame_maps_boxes_to_full_resolution(models):
    """1920x1080 → scale 1/3, pad 140 rows: box coordinates come back in full-resolution pixels."""
    adapter = _adapter(models["ultra"])
    frame = cv2.resize(np.random.default_rng(1).integers(0, 256, (108, 192, 3), dtype=np.uint8), (1920, 1080))
    feeds, meta = adapter.preprocess(frame)
    assert (meta.pad_top, meta.scale) == (140, pytest.approx(1 / 3))
    det = adapter.postprocess(dict(output0=models["ultra"].run(None, feeds)[0]), meta)
    b = np.array(BOXES[2], np.float32)  # B: [300, 200, 500, 400] in letterbox pixels
    want = (b - [0, 140, 0, 140]) * 3
    got = det.boxes[det.class_ids == 2][0]
    np.testing.assert_allclose(got, want, atol=1e-2)
