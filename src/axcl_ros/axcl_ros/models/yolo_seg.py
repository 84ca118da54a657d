"""Instance masks from YOLO segmentation outputs: mask coefficients × prototypes, computed only inside each box.

YOLOv8/YOLO11 segmentation models output, per detection, ``nm`` (32) mask coefficients, and once per image ``nm``
prototype maps at stride 4 of the network input (``[1,nm,H/4,W/4]`` NCHW in Ultralytics exports,
``[1,H/4,W/4,nm]`` NHWC in AXERA's compiled models). An instance's mask is ``sigmoid(coefficients · prototypes)``
inside its box, bilinearly upsampled and thresholded at 0.5 (logit 0).

Work per instance is bounded by its box: only the prototype cells under the box are multiplied (the coefficients
of the kept detections only), and only that small logit map is upsampled, straight to the box's pixels in the
*input image* (the letterbox undone in the same step). Nothing is done at full-frame size per instance.

Two resampling paths give the same geometry (pixel centre ``u`` of the input image ↔ prototype coordinate
``((u + 0.5)·scale + pad) / stride − 0.5``, bilinear, edges replicated):

fast (integer upsampling factor ``stride / scale`` and letterbox padding a whole number of input pixels, e.g.
640×480, 1280×720, 1920×1080, 800×600 into 640×640)
    the crop's logit map is quantised to uint8 (its largest |logit| → 128 ± 127, 0 → 128, so nothing is clamped)
    and upsampled with OpenCV's fixed-point bilinear ``resize`` by the exact integer factor, then the box window is
    cut out. Tolerance against exact float bilinear interpolation: a pixel can differ only where the interpolated
    logit is within about 2/127 of the crop's largest |logit| from 0 (quantisation plus the 11-bit interpolation
    weights), i.e. on the mask boundary; ``test_yolo_seg_pose_decode.py`` checks this against an independent float
    reference on random prototypes.
exact (any other letterbox scale)
    one float ``warpAffine`` of the logit map to the box's pixels.
"""

from __future__ import annotations

import math
from typing import Tuple

import cv2
import numpy as np

from .letterbox import LetterboxInfo

__all__ = ["instance_label_image"]

#: uint8 quantisation of a crop's logits on the fast path: ±peak → 128 ± 127
_MID = 128
_HALF = 127.0


def _integer(value: float) -> int:
    """``value`` as an int when it is one (to 1e-6), else -1."""
    r = round(value)
    return int(r) if abs(value - r) < 1e-6 else -1


def _extents(boxes: np.ndarray, size: np.ndarray, cells: np.ndarray, pad: np.ndarray, stride: float, scale: float):
    """Per axis (row 0 = x, row 1 = y; ``size``, ``cells``, ``pad`` are 2×1) and box: the integer pixel range
    [i0, i1), the prototype coordinate p0 of pixel i0's centre and the prototype cells [c0, c1) that bilinear
    sampling of [i0, i1) reads (each 2×K)."""
    b = np.asarray(boxes, dtype=np.float64).T
    i0 = np.clip(np.floor(b[:2]), 0, size).astype(np.int64)
    i1 = np.clip(np.ceil(b[2:]), 0, size).astype(np.int64)
    p0 = ((i0 + 0.5) * scale + pad) / stride - 0.5
    c0 = np.clip(np.floor(p0), 0, cells - 1).astype(np.int64)
    c1 = np.minimum(np.maximum(np.ceil(p0 + (scale / stride) * (i1 - i0 - 1)) + 1, c0 + 1), cells).astype(np.int64)
    return i0, i1, p0, c0, c1


def instance_label_image(coefficients: np.ndarray, protos: np.ndarray, boxes: np.ndarray, meta: LetterboxInfo, *,
                         channels_last: bool, exact: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Label image of the instances (0 = background) and each detection's label value.

    ``coefficients`` K×nm (the kept detections only); ``protos`` ``nm×h×w`` (``channels_last=False``) or
    ``h×w×nm``; ``boxes`` K×4 xyxy in pixels of the input image, best detection first (it wins where masks
    overlap); ``meta`` the letterbox of the frame; ``exact`` forces the float path (see the module docstring).
    Returns ``(labels, ids)``: ``labels`` H×W of the input image, uint8 for at most 255 instances else uint16,
    where detection ``k`` has value ``ids[k]`` (= k + 1, or 0 when its mask is empty or fully covered by better
    detections).
    """
    height, width = meta.image_size
    k = int(boxes.shape[0])
    dtype = np.uint8 if k <= 255 else np.uint16
    labels = np.zeros((height, width), dtype)
    ids = np.zeros(k, np.uint16)
    if k == 0:
        return labels, ids
    ph, pw = (protos.shape[0], protos.shape[1]) if channels_last else (protos.shape[1], protos.shape[2])
    stride = meta.size[0] / ph
    a = meta.scale / stride  # proto cells per image pixel
    pad = np.array([[meta.pad_left], [meta.pad_top]])
    i0, i1, p0, c0, c1 = _extents(boxes, np.array([[width], [height]]), np.array([[pw], [ph]]), pad, stride,
                                  meta.scale)
    factor = _integer(1.0 / a)
    shift = [_integer(meta.pad_left / meta.scale), _integer(meta.pad_top / meta.scale)]
    fast = not exact and factor > 0 and min(shift) >= 0
    if fast:  # offset of each box's first pixel in its crop upsampled by `factor` (inside it by construction)
        d = i0 + np.array(shift)[:, None] - factor * c0
        fast = bool(((d >= 0) & (d + (i1 - i0) <= factor * (c1 - c0))).all())
        dx, dy = d.tolist()
    coefficients = np.asarray(coefficients, dtype=np.float32)
    # a detection can lose all its pixels only to a better one whose box intersects its own
    # (j < i: box j is better than box i; both boxes' ranges intersect on both axes)
    later = np.arange(k)
    overlap = (i0[:, :, None] < i1[:, None, :]) & (i0[:, None, :] < i1[:, :, None]) & (later[:, None] > later)
    overlapped_by_better = (overlap[0] & overlap[1]).any(axis=1).tolist()
    # plain ints for the per-instance slicing (numpy scalars make every slice slower)
    (x0, y0), (x1, y1), (cx0, cy0), (cx1, cy1) = i0.tolist(), i1.tolist(), c0.tolist(), c1.tolist()
    px0, py0 = p0.tolist()
    drawn = []
    for i in range(k - 1, -1, -1):  # worst first: better detections overwrite overlaps
        w, h = x1[i] - x0[i], y1[i] - y0[i]
        if w <= 0 or h <= 0:
            continue
        if channels_last:
            logits = protos[cy0[i]:cy1[i], cx0[i]:cx1[i], :] @ coefficients[i]
        else:
            logits = np.einsum("c,chw->hw", coefficients[i], protos[:, cy0[i]:cy1[i], cx0[i]:cx1[i]])
        peak = float(np.abs(logits).max()) if fast else math.nan
        if math.isfinite(peak):  # quantise the crop's logit range onto 1..255, 0 -> 128
            quantised = cv2.convertScaleAbs(logits, alpha=_HALF / max(peak, 1e-6), beta=_MID)
            up = cv2.resize(quantised, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
            inside = up[dy[i]:dy[i] + h, dx[i]:dx[i] + w] > _MID
        else:  # any other scale, or non-finite logits (a broken model): the float path
            warp = np.float32([[a, 0.0, px0[i] - cx0[i]], [0.0, a, py0[i] - cy0[i]]])
            box_logits = cv2.warpAffine(np.ascontiguousarray(logits, dtype=np.float32), warp, (w, h),
                                        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                        borderMode=cv2.BORDER_REPLICATE)
            inside = box_logits > 0.0
        if inside.any():
            np.copyto(labels[y0[i]:y1[i], x0[i]:x1[i]], i + 1, where=inside)
            ids[i] = i + 1
            if overlapped_by_better[i]:
                drawn.append(i)
    for i in drawn:  # a mask fully covered by better detections has no pixel left
        if not (labels[y0[i]:y1[i], x0[i]:x1[i]] == i + 1).any():
            ids[i] = 0
    return labels, ids
