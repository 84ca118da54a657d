"""Draw instance masks and pose skeletons on the annotated image (pure OpenCV/numpy)."""

from __future__ import annotations

from typing import Sequence, Tuple

import cv2
import numpy as np

from .annotate import _colour


def draw_masks(bgr: np.ndarray, labels: np.ndarray, ids: Sequence[int], class_ids: Sequence[int],
               alpha: float = 0.45) -> np.ndarray:
    """``bgr`` with each instance's mask pixels tinted in its class colour (in place on a copy)."""
    out = np.ascontiguousarray(bgr).copy()
    lut = np.zeros((int(labels.max()) + 1 if labels.size else 1, 3), np.float32)
    used = np.zeros(lut.shape[0], bool)
    for value, cid in zip(ids, class_ids):
        if value:
            lut[int(value)] = _colour(int(cid))
            used[int(value)] = True
    if not used.any():
        return out
    fg = used[labels]
    out[fg] = (out[fg] * (1 - alpha) + lut[labels[fg]] * alpha).astype(np.uint8)
    return out


def draw_skeletons(bgr: np.ndarray, keypoints: np.ndarray, skeleton: Sequence[Tuple[int, int]],
                   min_score: float = 0.5) -> np.ndarray:
    """``bgr`` (drawn on in place) with the limbs and joints of every instance whose keypoints pass ``min_score``."""
    thickness = max(1, round(max(bgr.shape[:2]) / 320))
    for inst in np.asarray(keypoints, dtype=np.float32):
        ok = inst[:, 2] >= min_score
        pts = np.round(inst[:, :2]).astype(int)
        for a, b in skeleton:
            if ok[a] and ok[b]:
                cv2.line(bgr, tuple(pts[a]), tuple(pts[b]), (255, 200, 0), thickness, cv2.LINE_AA)
        for p in pts[ok]:
            cv2.circle(bgr, tuple(p), thickness + 2, (0, 0, 255), -1, cv2.LINE_AA)
    return bgr
