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


def test_many_instances_use_mono16():
    protos = np.ones((1, 16, 16), np.float32)
    boxes = np.array([[i % 64, 0, i % 64 + 1, 1] for i in range(300)], np.float32)
    labels, _ = instance_label_image(np.ones((300, 1), np.float32), protos, boxes, _meta(), channels_last=False)
    assert labels.dtype == np.uint16


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
