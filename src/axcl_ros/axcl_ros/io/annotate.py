"""Draw detections on an image for the annotated-image topic (pure OpenCV)."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np


def _colour(class_id: int) -> tuple:
    """A stable, distinct BGR colour per class id."""
    hue = (int(class_id) * 47) % 180
    hsv = np.uint8([[[hue, 220, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_detections(bgr: np.ndarray, boxes: np.ndarray, scores: Sequence[float], class_ids: Sequence[int],
                    names: Sequence[str]) -> np.ndarray:
    """A copy of ``bgr`` with one labelled rectangle per box (``boxes`` N×4 xyxy in image pixels)."""
    out = np.ascontiguousarray(bgr).copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    for box, score, cid, name in zip(np.asarray(boxes, dtype=float), scores, class_ids, names):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        colour = _colour(cid)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thickness)
        label = f"{name} {float(score):.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        ty = max(y0, th + base)
        cv2.rectangle(out, (x0, ty - th - base), (x0 + tw, ty), colour, -1)
        cv2.putText(out, label, (x0, ty - base), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return out
