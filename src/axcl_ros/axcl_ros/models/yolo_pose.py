"""Keypoints from YOLO pose outputs (COCO-17 person keypoints by default).

Ultralytics pose exports carry, per anchor, ``3·K`` extra rows after the class scores: x, y in letterbox pixels and
a sigmoided visibility. AXERA's compiled pose models (graph cut before the decode) give one keypoint head per
stride, ``[1,h,w,3·K]`` NHWC, raw: ``x = (2·raw_x + column)·stride``, ``y = (2·raw_y + row)·stride``,
``score = sigmoid(raw_v)`` — the decode of Ultralytics' ``Pose.kpts_decode``.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from .letterbox import LetterboxInfo

__all__ = ["COCO_KEYPOINTS", "COCO_SKELETON", "decode_grid_keypoints", "keypoints_to_image"]

COCO_KEYPOINTS: Tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle")

#: limbs as index pairs into COCO_KEYPOINTS (the COCO person skeleton)
COCO_SKELETON: Tuple[Tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10),
    (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))


def decode_grid_keypoints(raw: np.ndarray, cells: np.ndarray, grid_w: int, stride: float) -> np.ndarray:
    """AXERA keypoint head rows → K×kpt×3 (x, y in letterbox pixels, score in [0, 1]).

    ``raw`` K×(3·kpt) rows of the head at flat cell indices ``cells`` (row-major over a grid ``grid_w`` wide).
    """
    raw = np.asarray(raw, dtype=np.float32).reshape(raw.shape[0], -1, 3)
    col = (cells % grid_w).astype(np.float32)[:, None]
    row = (cells // grid_w).astype(np.float32)[:, None]
    out = np.empty_like(raw)
    out[..., 0] = (raw[..., 0] * 2.0 + col) * stride
    out[..., 1] = (raw[..., 1] * 2.0 + row) * stride
    out[..., 2] = 1.0 / (1.0 + np.exp(-raw[..., 2]))
    return out


def keypoints_to_image(kpts: np.ndarray, meta: LetterboxInfo) -> np.ndarray:
    """K×kpt×3 keypoints in letterbox pixels → pixels of the input image (scores unchanged)."""
    out = np.array(kpts, dtype=np.float32, copy=True)
    out[..., 0] = (out[..., 0] - meta.pad_left) / meta.scale
    out[..., 1] = (out[..., 1] - meta.pad_top) / meta.scale
    return out
