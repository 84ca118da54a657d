"""Greedy NMS (models/nms.py): onnxruntime's operator gives exactly the reference loop's boxes on random and adversarial
inputs; the adapter's capped path gives the uncapped boxes."""

import numpy as np
import pytest

from axcl_ros.models.letterbox import LetterboxInfo
from axcl_ros.models.nms import greedy_nms, greedy_nms_reference, nms_graph_bytes
from axcl_ros.models.yolo import DetectorConfig, YoloAdapter
from axcl_ros.runtime.base import TensorSpec


def _random_case(rng, trial):
    n = int(rng.integers(1, 150))
    xy = rng.uniform(0, 100, (n, 2))
    wh = rng.uniform(0, 40, (n, 2))
    if trial % 3 == 0:  # integer boxes: many IoUs exactly equal to a threshold, zero-size boxes
        xy, wh = np.round(xy), np.round(wh)
    boxes = np.column_stack([xy, xy + wh]).astype(np.float32)
    scores = rng.uniform(0.01, 1, n).astype(np.float32)
    if trial % 2 == 0:  # few distinct scores: the order among equal scores decides
        scores = (np.round(scores * 4) + 1).astype(np.float32) / 8
    classes = rng.integers(0, 4, n) if trial % 4 else None
    iou = float(rng.choice([0.0, 0.25, 0.5, 0.7, 1.0]))
    limit = None if trial % 5 else int(rng.integers(1, 12))
    return boxes, scores, classes, iou, limit


def test_random_inputs_match_the_reference():
    rng = np.random.default_rng(16)
    for trial in range(300):
        boxes, scores, classes, iou, limit = _random_case(rng, trial)
        got = greedy_nms(boxes, scores, classes, iou, limit)
        want = greedy_nms_reference(boxes, scores, classes, iou, limit)
        assert np.array_equal(got, want), (trial, got, want)


def _adversarial():
    chain = np.array([[i * 5, 0, i * 5 + 10, 10] for i in range(40)], np.float32)  # each overlaps the next by half
    yield "chain of equal scores", chain, np.ones(40, np.float32), None, 0.3
    yield "chain, decreasing scores", chain, np.linspace(1, 0.1, 40).astype(np.float32), None, 0.3
    yield "chain, increasing scores", chain, np.linspace(0.1, 1, 40).astype(np.float32), None, 0.3
    same = np.tile(np.array([[1, 2, 30, 40]], np.float32), (50, 1))
    yield "identical boxes and scores", same, np.full(50, 0.5, np.float32), None, 0.5
    yield "identical boxes, two classes", same, np.full(50, 0.5, np.float32), np.arange(50) % 2, 0.5
    exact = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [0, 5, 10, 10], [5, 0, 10, 10]], np.float32)  # IoU 0.5
    yield "IoU exactly at the threshold", exact, np.array([0.9, 0.8, 0.8, 0.7], np.float32), None, 0.5
    yield "IoU exactly at the threshold, just below", exact, np.array([0.9, 0.8, 0.8, 0.7], np.float32), None, 0.4999
    empty = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 10], [3, 3, 3, 9]], np.float32)
    yield "zero-area boxes", empty, np.array([0.9, 0.8, 0.7, 0.6], np.float32), None, 0.0
    far = np.array([[1e4, 1e4, 1e4 + 64, 1e4 + 48], [1e4 + 1, 1e4, 1e4 + 65, 1e4 + 48]], np.float32)
    yield "large coordinates", far, np.array([0.5, 0.5], np.float32), np.array([79, 79]), 0.9
    yield "threshold 1 keeps all", chain, np.ones(40, np.float32), None, 1.0
    yield "threshold 0 keeps non-touching", chain, np.ones(40, np.float32), None, 0.0


@pytest.mark.parametrize("case", list(_adversarial()), ids=lambda c: c[0])
def test_adversarial_inputs_match_the_reference(case):
    _, boxes, scores, classes, iou = case
    for limit in (None, 1, 3):
        got = greedy_nms(boxes, scores, classes, iou, limit)
        want = greedy_nms_reference(boxes, scores, classes, iou, limit)
        assert np.array_equal(got, want), (got, want)


def test_chain_keeps_every_other_box():
    """The greedy (sequential) result, which one-shot matrix NMS variants get wrong: 0 suppresses 1, so 2 survives."""
    chain = np.array([[i * 5, 0, i * 5 + 10, 10] for i in range(10)], np.float32)
    assert greedy_nms(chain, np.linspace(1, 0.1, 10).astype(np.float32), None, 0.3).tolist() == [0, 2, 4, 6, 8]


def test_empty_input():
    assert greedy_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), None, 0.5).shape == (0,)


def test_operator_graph_is_a_valid_onnx_model():
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(nms_graph_bytes())
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["NonMaxSuppression"]
    assert [i.name for i in model.graph.input] == ["boxes", "scores", "max_output", "iou_threshold",
                                                   "score_threshold"]


def _adapter():
    return YoloAdapter.from_specs([TensorSpec("images", (1, 3, 640, 640), np.float32)],
                                  [TensorSpec("output0", (1, 84, 8400), np.float32)])


@pytest.mark.parametrize("classes", [1, 3, 80])
@pytest.mark.parametrize("max_det", [5, 300])
def test_capped_path_equals_uncapped_on_many_candidates(classes, max_det):
    """Thousands of candidates with few distinct scores (as an untrained network gives): the cap (several classes)
    and the per-class early stop give the boxes of NMS over everything without a limit."""
    rng = np.random.default_rng(classes)
    pred = np.zeros((1, 84, 8400), np.float32)
    pred[0, :2] = rng.uniform(0, 640, (2, 8400))
    pred[0, 2:4] = rng.uniform(20, 240, (2, 8400))
    pred[0, 4:4 + classes] = np.round(rng.uniform(0, 1, (classes, 8400)) * 8) / 8
    adapter = _adapter()
    meta = LetterboxInfo(1.0, 0, 80, (480, 640), (640, 640))
    base = DetectorConfig(conf_threshold=0.1, iou_threshold=0.6, max_detections=max_det)
    full = adapter.postprocess([pred], meta, base.replace(max_candidates=10 ** 6))
    for cap in (1, 50, 1000):
        capped = adapter.postprocess([pred], meta, base.replace(max_candidates=cap))
        assert np.array_equal(capped.source, full.source)
        assert np.array_equal(capped.boxes, full.boxes)
    # the reference: NMS over all candidates, boxes mapped and clipped, empty ones dropped, then max_det
    conf = pred[0, 4:].max(axis=0)
    keep = np.flatnonzero(conf > 0.1)
    cls = pred[0, 4:, keep].argmax(axis=1)
    cx, cy, w, h = pred[0, :4, keep].T
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
    idx = greedy_nms_reference(boxes, conf[keep], cls, 0.6)
    mapped = boxes[idx] - np.array([0, 80, 0, 80], np.float32)
    mapped[:, 0::2] = mapped[:, 0::2].clip(0, 640)
    mapped[:, 1::2] = mapped[:, 1::2].clip(0, 480)
    idx = idx[(mapped[:, 2] > mapped[:, 0]) & (mapped[:, 3] > mapped[:, 1])][:max_det]
    assert np.array_equal(full.source, keep[idx])
