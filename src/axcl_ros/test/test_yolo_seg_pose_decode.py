"""Hand-checked decode cases for segmentation masks and pose keypoints (no model involved)."""

import numpy as np
import pytest

from axcl_ros.models.letterbox import LetterboxInfo
from axcl_ros.models.yolo_pose import COCO_KEYPOINTS, COCO_SKELETON, decode_grid_keypoints, keypoints_to_image
from axcl_ros.models.yolo_seg import instance_label_image


def _meta(scale=1.0, pad_left=0, pad_top=0, image=(64, 64), size=(64, 64)):
    return LetterboxInfo(scale=scale, pad_left=pad_left, pad_top=pad_top, image_size=image, size=size)


@pytest.mark.parametrize("channels_last", [False, True])
def test_known_prototype_and_coefficients_give_the_known_mask(channels_last):
    # 64x64 input, protos 16x16 (stride 4). Channel 0: +1 on proto columns 0..7 (image x < 32), -1 elsewhere;
    # channel 1: +1 on proto rows 0..7 (image y < 32). Detection 0 uses channel 0, detection 1 channel 1.
    protos = np.zeros((2, 16, 16), np.float32)
    protos[0] = -1.0
    protos[0, :, :8] = 1.0
    protos[1] = -1.0
    protos[1, :8, :] = 1.0
    coeff = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    boxes = np.array([[8, 8, 56, 56], [40, 0, 64, 48]], np.float32)
    p = protos.transpose(1, 2, 0).copy() if channels_last else protos
    labels, ids = instance_label_image(coeff, p, boxes, _meta(), channels_last=channels_last)
    expected = np.zeros((64, 64), np.uint8)
    expected[0:32, 40:64] = 2            # detection 1: its box, rows y < 32
    expected[8:56, 8:32] = 1             # detection 0 (better, drawn last): its box, columns x < 32
    np.testing.assert_array_equal(labels, expected)
    assert labels.dtype == np.uint8 and list(ids) == [1, 2]


def test_mask_follows_the_letterbox_back_to_the_image():
    # image 32 high x 64 wide letterboxed into 64x64 at scale 1 with 16 rows of padding on top
    protos = np.full((1, 16, 16), -1.0, np.float32)
    protos[0, 4:8, :] = 1.0              # letterbox rows 16..31 = image rows 0..15
    labels, ids = instance_label_image(np.ones((1, 1), np.float32), protos, np.array([[0, 0, 64, 32]], np.float32),
                                       _meta(pad_top=16, image=(32, 64)), channels_last=False)
    assert labels.shape == (32, 64)
    np.testing.assert_array_equal(labels[:16], 1)
    np.testing.assert_array_equal(labels[16:], 0)


def test_masks_only_inside_boxes_and_covered_instances_get_id_zero():
    protos = np.ones((1, 16, 16), np.float32)  # everything foreground
    boxes = np.array([[0, 0, 40, 40], [10, 10, 20, 20]], np.float32)  # the second lies inside the first
    labels, ids = instance_label_image(np.ones((2, 1), np.float32), protos, boxes, _meta(), channels_last=False)
    assert (labels[:40, :40] == 1).all() and (labels[40:] == 0).all() and (labels[:, 40:] == 0).all()
    assert list(ids) == [1, 0]


@pytest.mark.parametrize("exact", [False, True])
def test_many_instances_use_mono16(exact):
    # 300 one-pixel boxes: detection i at (x, y) = (i % 64, i // 64); all foreground, so each keeps its pixel
    protos = np.ones((1, 16, 16), np.float32)
    boxes = np.array([[i % 64, i // 64, i % 64 + 1, i // 64 + 1] for i in range(300)], np.float32)
    labels, ids = instance_label_image(np.ones((300, 1), np.float32), protos, boxes, _meta(), channels_last=False,
                                       exact=exact)
    assert labels.dtype == np.uint16
    expected = np.zeros((64, 64), np.uint16)
    expected[:5].reshape(-1)[:300] = np.arange(1, 301)
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(ids, np.arange(1, 301))


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_better_detection_with_an_empty_mask_loses_nothing_of_a_worse_one(exact, channels_last):
    # detection 0 (better) has an all-background mask; detection 1 (worse) overlaps it and is all foreground
    protos = np.stack([np.full((16, 16), -1.0, np.float32), np.ones((16, 16), np.float32)])
    p = protos.transpose(1, 2, 0).copy() if channels_last else protos
    boxes = np.array([[8, 8, 40, 40], [24, 24, 56, 56]], np.float32)
    labels, ids = instance_label_image(np.eye(2, dtype=np.float32), p, boxes, _meta(), channels_last=channels_last,
                                       exact=exact)
    expected = np.zeros((64, 64), np.uint8)
    expected[24:56, 24:56] = 2
    np.testing.assert_array_equal(labels, expected)
    assert list(ids) == [0, 2]


@pytest.mark.parametrize("channels_last", [False, True])
def test_boxes_on_the_edges_of_the_prototypes_replicate_the_edge(channels_last):
    """Hand-checked: 64x64 image, no letterbox, prototypes 16x16 (4 pixels per cell). Channel 0 is +1 on the
    border cells (row/column 0 and 15) and -10 inside. Pixel u samples cell coordinate (u + 0.5)/4 - 0.5, edges
    replicated: u = 0, 1 -> -0.375, -0.125 -> the edge cell, +1 (inside); u = 2 -> 0.125 -> 0.875*1 + 0.125*(-10)
    < 0; u = 3 -> 0.625 - 3.75 < 0; mirrored at u = 62, 63. So a box on an edge gets a 2-pixel strip. Boxes on the
    edges sit between interior boxes (all -10, empty masks) in the canvas of crops: reading a neighbour's cell
    instead of the replicated edge (0.375*(-10) + 0.625*1 < 0) would lose the strip."""
    protos = np.full((1, 16, 16), -10.0, np.float32)
    protos[0, [0, 15], :] = 1.0
    protos[0, :, [0, 15]] = 1.0
    p = protos.transpose(1, 2, 0).copy() if channels_last else protos
    interior = [20, 20, 44, 44]
    boxes = np.array([interior, [0, 20, 10, 30], interior, [54, 34, 64, 44], interior, [20, 0, 30, 10],
                      [34, 54, 44, 64]], np.float32)
    expected = np.zeros((64, 64), np.uint8)
    expected[20:30, 0:2] = 2     # left edge
    expected[34:44, 62:64] = 4   # right edge
    expected[0:2, 20:30] = 6     # top edge
    expected[62:64, 34:44] = 7   # bottom edge
    for exact in (False, True):
        labels, ids = instance_label_image(np.ones((7, 1), np.float32), p, boxes, _meta(),
                                           channels_last=channels_last, exact=exact)
        np.testing.assert_array_equal(labels, expected)
        assert list(ids) == [0, 2, 0, 4, 0, 6, 7]


def test_without_cv2_has_non_zero_the_ids_are_the_same(monkeypatch):
    """OpenCV before 4.8 (apt's python3-opencv) has no cv2.hasNonZero: the ndarray.any() fallback decides the same."""
    from axcl_ros.models import yolo_seg

    protos = np.stack([np.full((16, 16), -1.0, np.float32), np.ones((16, 16), np.float32)])
    boxes = np.array([[8, 8, 40, 40], [24, 24, 56, 56], [0, 48, 8, 56]], np.float32)
    coeff = np.array([[1, 0], [0, 1], [1, 0]], np.float32)  # 0 and 2 empty, 1 foreground
    before = instance_label_image(coeff, protos, boxes, _meta(), channels_last=False)
    monkeypatch.setattr(yolo_seg, "_any_uint8", lambda a: bool(a.any()))
    after = instance_label_image(coeff, protos, boxes, _meta(), channels_last=False)
    np.testing.assert_array_equal(before[0], after[0])
    assert list(before[1]) == list(after[1]) == [0, 2, 0]


def test_known_keypoint_head_gives_known_points():
    # one cell (row 2, column 3) of a stride-8 head 10 cells wide; 2 keypoints
    raw = np.array([[0.25, -0.5, 0.0, 1.0, 1.5, 100.0]], np.float32)
    cells = np.array([2 * 10 + 3])
    k = decode_grid_keypoints(raw, cells, grid_w=10, stride=8)
    np.testing.assert_allclose(k[0], [[(0.5 + 3) * 8, (-1 + 2) * 8, 0.5], [(2 + 3) * 8, (3 + 2) * 8, 1.0]])
    img = keypoints_to_image(k, _meta(scale=0.5, pad_left=4, pad_top=2))
    np.testing.assert_allclose(img[0, 0], [(28 - 4) / 0.5, (8 - 2) / 0.5, 0.5])


def test_coco_skeleton_indices_valid():
    assert len(COCO_KEYPOINTS) == 17
    assert all(0 <= a < 17 and 0 <= b < 17 for a, b in COCO_SKELETON)


def _smooth_protos(rng, nm, size, channels_last):
    import cv2

    coarse = rng.standard_normal((size // 8, size // 8, nm)).astype(np.float32)  # features ~8 cells wide
    p = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).reshape(size, size, nm)
    return np.ascontiguousarray(p if channels_last else p.transpose(2, 0, 1))


def _reference_logits(coeff, protos_chw, meta, stride=4.0):
    """Float bilinear logits of one instance over the whole input image, straight from the documented geometry
    (pixel centre u -> prototype coordinate ((u + 0.5)*scale + pad)/stride - 0.5, edges replicated)."""
    logits = np.einsum("c,chw->hw", coeff.astype(np.float64), protos_chw.astype(np.float64))
    ph, pw = logits.shape
    h, w = meta.image_size

    def axis(n, pad, cells):
        p = np.clip(((np.arange(n) + 0.5) * meta.scale + pad) / stride - 0.5, 0, cells - 1)
        lo = np.floor(p).astype(int)
        return lo, np.minimum(lo + 1, cells - 1), p - lo

    x0, x1, fx = axis(w, meta.pad_left, pw)
    y0, y1, fy = axis(h, meta.pad_top, ph)
    top = logits[y0][:, x0] * (1 - fx) + logits[y0][:, x1] * fx
    bottom = logits[y1][:, x0] * (1 - fx) + logits[y1][:, x1] * fx
    return top * (1 - fy)[:, None] + bottom * fy[:, None]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("image, scale, pad_top", [((480, 640), 1.0, 80), ((720, 1280), 0.5, 140),
                                                   ((640, 640), 1.0, 0)])
def test_fast_masks_match_float_bilinear_within_the_documented_tolerance(channels_last, image, scale, pad_top):
    """The quantised integer-factor path against an independent float bilinear reference on random smooth
    prototypes: a pixel may differ only where the reference logit is within 2/127 of the crop's largest |logit|
    from 0 (the documented tolerance, i.e. on the mask boundary); the composition matches the float warp path."""
    from unittest import mock

    from axcl_ros.models import yolo_seg

    rng = np.random.default_rng(7)
    protos = _smooth_protos(rng, 32, 160, channels_last)
    chw = protos.transpose(2, 0, 1) if channels_last else protos
    coeff = rng.standard_normal((12, 32)).astype(np.float32)
    h, w = image
    x0, y0 = rng.uniform(0, w - 60, 12), rng.uniform(0, h - 60, 12)
    boxes = np.column_stack([x0, y0, x0 + rng.uniform(20, w / 3, 12), y0 + rng.uniform(20, h / 3, 12)])
    boxes = np.minimum(boxes, [w, h, w, h]).astype(np.float32)
    boxes[0] = [0, 0, w, h]  # the whole frame, edges included
    meta = _meta(scale=scale, pad_top=pad_top, image=image, size=(640, 640))
    no_warp = mock.patch.object(yolo_seg.cv2, "warpAffine", side_effect=AssertionError("fast path expected"))
    checked = 0
    for k in range(12):
        with no_warp:
            fast, _ = instance_label_image(coeff[k:k + 1], protos, boxes[k:k + 1], meta, channels_last=channels_last)
        ref = _reference_logits(coeff[k], chw, meta)
        bx0, by0 = int(np.floor(boxes[k, 0])), int(np.floor(boxes[k, 1]))
        bx1, by1 = int(np.ceil(boxes[k, 2])), int(np.ceil(boxes[k, 3]))
        want = np.zeros(image, bool)
        want[by0:by1, bx0:bx1] = ref[by0:by1, bx0:bx1] > 0
        diff = (fast > 0) != want
        box = ref[by0:by1, bx0:bx1]
        assert np.abs(ref[diff]).max(initial=0) <= 2 / 127 * np.abs(box).max(), k
        assert diff.sum() <= 0.02 * box.size, (k, diff.sum())
        checked += want.sum()
    assert checked > 0.2 * h * w  # the masks are not trivially empty
    exact, exact_ids = instance_label_image(coeff, protos, boxes, meta, channels_last=channels_last, exact=True)
    with no_warp:
        fast, fast_ids = instance_label_image(coeff, protos, boxes, meta, channels_last=channels_last)
    assert (fast != exact).sum() <= 0.01 * exact.size
    np.testing.assert_array_equal(fast_ids, exact_ids)


def test_odd_letterbox_scale_takes_the_exact_path():
    # 1024x768 into 640x640: scale 0.625, 6.4 image pixels per prototype cell -> float warp; the mask still follows
    # the letterbox (prototype rows 0..39 = letterbox rows 0..159 = padding + image rows 0..159/0.625)
    protos = np.full((1, 160, 160), -1.0, np.float32)
    protos[0, 40:80, :] = 1.0                     # letterbox rows 160..319
    meta = _meta(scale=0.625, pad_left=0, pad_top=80, image=(768, 1024), size=(640, 640))
    labels, ids = instance_label_image(np.ones((1, 1), np.float32), protos,
                                       np.array([[0, 0, 1024, 768]], np.float32), meta, channels_last=False)
    rows = np.flatnonzero(labels[:, 500])
    # letterbox y = image y * 0.625 + 80, foreground for letterbox rows 160..320 -> image rows 128..384
    assert list(ids) == [1] and abs(rows.min() - 128) <= 1 and abs(rows.max() + 1 - 384) <= 1


def test_non_finite_logits_take_the_float_path():
    """A broken model's inf/NaN prototypes: the same masks as the float path, no exception."""
    protos = np.full((1, 16, 16), -1.0, np.float32)
    protos[0, :, :8] = np.inf
    protos[0, 12:, :] = np.nan
    boxes = np.array([[0, 0, 64, 64]], np.float32)
    fast, fast_ids = instance_label_image(np.ones((1, 1), np.float32), protos, boxes, _meta(), channels_last=False)
    exact, exact_ids = instance_label_image(np.ones((1, 1), np.float32), protos, boxes, _meta(),
                                            channels_last=False, exact=True)
    assert (exact[:, :28] == 1).any() and not (exact[:, 36:] == 1).any()  # +inf cells are foreground
    np.testing.assert_array_equal(fast, exact)
    np.testing.assert_array_equal(fast_ids, exact_ids)


@pytest.mark.parametrize("exact", [False, True])
def test_a_non_finite_box_gets_no_pixels(exact):
    protos = np.ones((1, 16, 16), np.float32)
    boxes = np.array([[np.nan, 0, 10, 10], [0, 0, np.inf, 8], [0, 32, 32, 64]], np.float32)
    labels, ids = instance_label_image(np.ones((3, 1), np.float32), protos, boxes, _meta(), channels_last=False,
                                       exact=exact)
    expected = np.zeros((64, 64), np.uint8)
    expected[32:64, 0:32] = 3
    np.testing.assert_array_equal(labels, expected)
    assert list(ids) == [0, 0, 3]
