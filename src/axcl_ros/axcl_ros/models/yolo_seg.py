"""Instance masks from YOLO segmentation outputs: mask coefficients × prototypes, computed only inside each box.

YOLOv8/YOLO11 segmentation models output, per detection, ``nm`` (32) mask coefficients, and once per image ``nm``
prototype maps at stride 4 of the network input (``[1,nm,H/4,W/4]`` NCHW in Ultralytics exports and in AXERA's
compiled models; ``[1,H/4,W/4,nm]`` NHWC is handled too). An instance's mask is ``sigmoid(coefficients · prototypes)``
inside its box, bilinearly upsampled and thresholded at 0.5, i.e. the interpolated logit > 0 (no sigmoid is
computed).

Work per instance is bounded by its box: only the prototype cells under the box are multiplied (the coefficients
of the kept detections only), and only that small logit map is upsampled, straight to the box's pixels in the
*input image* (the letterbox undone in the same step). Nothing is done at full-frame size per instance.

Two resampling paths give the same geometry (pixel centre ``u`` of the input image ↔ prototype coordinate
``((u + 0.5)·scale + pad) / stride − 0.5``, bilinear, edges replicated):

fast (integer upsampling factor ``stride / scale`` and letterbox padding a whole number of input pixels, e.g.
640×480, 1280×720, 1920×1080, 800×600 into 640×640)
    every crop's logit map goes into its own slot of one canvas (a crop on the edge of the prototypes gets one
    replicated cell on that side), each slot is quantised to uint8 (its largest |logit| → 128 ± 127, 0 → 128, so
    nothing is clamped), the whole canvas is upsampled with one OpenCV fixed-point bilinear ``resize`` by the exact
    integer factor (a pixel of a box window depends on its own slot only: the cells bilinear sampling reads with a
    non-zero weight are in it), and each box window is thresholded straight into the label image. Tolerance
    against exact float bilinear interpolation: a pixel can differ only where the interpolated logit is within
    about 2/127 of the crop's largest |logit| from 0 (quantisation plus the 11-bit interpolation weights), i.e. on
    the mask boundary; ``test_yolo_seg_pose_decode.py`` checks this against an independent float reference on
    random prototypes.
exact (any other letterbox scale, or non-finite logits from a broken model)
    one float ``warpAffine`` of each crop's logit map to its box's pixels.

Overlaps: the better detection wins. While drawing, detection ``i`` of ``K`` is written as ``top − i`` (``top`` =
255, or 65535 above 255 detections) and overlapping windows keep the larger value; one uint negation of the boxes'
union at the end turns ``top − i`` into ``i + 1`` (and 0 stays 0).
"""

from __future__ import annotations

import math
from itertools import accumulate
from typing import List, Tuple

import cv2
import numpy as np

from .letterbox import LetterboxInfo

__all__ = ["instance_label_image"]

#: uint8 quantisation of a crop's logits on the fast path: ±peak → 128 ± 127
_MID = 128
_HALF = np.float32(127.0)
_TINY = np.float32(1e-6)
#: whether a uint8 array has a non-zero element: ``cv2.hasNonZero`` (OpenCV >= 4.8) stops at the first one and costs
#: a fraction of ``ndarray.any()`` per call; older OpenCV (apt's 4.5/4.6) falls back to ``any()``
_any_uint8 = getattr(cv2, "hasNonZero", None) or (lambda a: bool(a.any()))


def _integer(value: float) -> int:
    """``value`` as an int when it is one (to 1e-6), else -1."""
    r = round(value)
    return int(r) if abs(value - r) < 1e-6 else -1


def _extents(boxes: np.ndarray, meta: LetterboxInfo, cells: Tuple[int, int], stride: float):
    """Per axis (index 0 = x, 1 = y) and box, as plain lists (a frame has few boxes: Python arithmetic costs less
    than numpy's per-call overhead here): the integer pixel range [i0, i1) clipped to the image (empty for a
    non-finite box), the prototype coordinate p0 of pixel i0's centre and the prototype cells [c0, c1) that
    bilinear sampling of [i0, i1) reads. ``cells`` = (prototype width, height)."""
    height, width = meta.image_size
    rows = np.asarray(boxes, dtype=np.float64).tolist()
    a = meta.scale / stride
    out: List[List[list]] = [[[], []] for _ in range(5)]
    for axis, (size, n, pad) in enumerate(((width, cells[0], meta.pad_left), (height, cells[1], meta.pad_top))):
        i0s, i1s, p0s, c0s, c1s = (part[axis] for part in out)
        for row in rows:
            lo, hi = row[axis], row[axis + 2]
            if math.isfinite(lo) and math.isfinite(hi):
                lo, hi = min(max(math.floor(lo), 0), size), min(max(math.ceil(hi), 0), size)
            else:
                lo = hi = 0
            p0 = ((lo + 0.5) * meta.scale + pad) / stride - 0.5
            c0 = min(max(math.floor(p0), 0), n - 1)
            i0s.append(lo)
            i1s.append(hi)
            p0s.append(p0)
            c0s.append(c0)
            c1s.append(min(max(math.ceil(p0 + a * (hi - lo - 1)) + 1, c0 + 1), n))
    return out


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
    i0, i1, p0, c0, c1 = _extents(boxes, meta, (pw, ph), stride)
    coefficients = np.asarray(coefficients, dtype=np.float32)
    # boxes that share pixels: a detection can lose pixels only to a better one, and can be written without
    # composing when no worse one was drawn under it
    lo, hi = np.array(i0), np.array(i1)
    overlap = ((lo[:, :, None] < hi[:, None, :]) & (lo[:, None, :] < hi[:, :, None])).all(axis=0)
    order = np.arange(k)
    better = order[:, None] > order  # [i, j]: j < i, i.e. detection j is better than i
    under_better = (overlap & better).any(axis=1).tolist()
    over_worse = (overlap & better.T).any(axis=1).tolist()
    factor = _integer(1.0 / a)
    shift = [_integer(meta.pad_left / meta.scale), _integer(meta.pad_top / meta.scale)]
    drawn = None
    if not exact and factor > 0 and min(shift) >= 0:
        # each box's first pixel in its crop upsampled by `factor`; the box must lie inside the upsampled crop
        d = [[p + s - factor * c for p, c in zip(i0[axis], c0[axis])] for axis, s in enumerate(shift)]
        if all(0 <= off and off + e - b <= factor * (n1 - n0)
               for axis in (0, 1)
               for off, b, e, n0, n1 in zip(d[axis], i0[axis], i1[axis], c0[axis], c1[axis])):
            drawn = _draw_fast(labels, coefficients, protos, channels_last, i0, i1, c0, c1, d, factor, (pw, ph),
                               under_better, over_worse)
    if drawn is None:  # any other scale, or non-finite logits (a broken model; nothing was drawn yet)
        drawn = _draw_exact(labels, coefficients, protos, channels_last, i0, i1, p0, c0, c1, a, under_better,
                            over_worse)
    top = 255 if dtype == np.uint8 else 65535
    (x0, y0), (x1, y1) = i0, i1
    for i in range(k):  # a detection under better ones keeps its id only when one of its pixels is still there
        if drawn[i] and (not under_better[i] or (labels[y0[i]:y1[i], x0[i]:x1[i]] == top - i).any()):
            ids[i] = i + 1
    union = labels[min(y0):max(y1), min(x0):max(x1)]
    np.negative(union, out=union)  # top - i -> i + 1 (two's complement), 0 -> 0
    return labels, ids


def _put(labels: np.ndarray, i: int, box: Tuple[int, int, int, int], inside: np.ndarray, over_worse: bool,
         check: bool) -> bool:
    """Write detection ``i``'s mask ``inside`` (bool, its box window) into ``labels`` as ``top − i``, keeping larger
    (better) values already there; True when ``check`` and it has a pixel (not checked: False)."""
    x0, y0, x1, y1 = box
    target = labels[y0:y1, x0:x1]
    value = np.where(inside, np.iinfo(labels.dtype).max - i, 0).astype(labels.dtype)
    if over_worse:
        np.maximum(target, value, out=target)
    else:
        target[...] = value
    return check and bool(inside.any())


def _draw_fast(labels, coefficients, protos, channels_last, i0, i1, c0, c1, d, factor, cells, under_better,
               over_worse) -> List[bool] | None:
    """The integer-factor path (module docstring); per detection whether it was drawn (a detection under better
    ones: whether its window was processed at all), or None, drawing nothing, when a logit is not finite."""
    k = coefficients.shape[0]
    pw, ph = cells
    (cx0, cy0), (cx1, cy1) = c0, c1
    # slot of crop i: canvas columns [starts[i], starts[i + 1]) from row 0 (a crop on the edge of the prototypes
    # gets one replicated cell on that side, as bilinear sampling does at the edge; the canvas's own top edge is
    # replicated by resize)
    left = [int(c == 0) for c in cx0]
    wc = [b - a for a, b in zip(cx0, cx1)]
    hc = [b - a for a, b in zip(cy0, cy1)]
    widths = [w + lft + int(c == pw) for w, lft, c in zip(wc, left, cx1)]
    starts = [0, *accumulate(widths)]
    canvas = np.zeros((max(h + int(c == ph) for h, c in zip(hc, cy1)), starts[-1]), np.float32)
    for i in range(k):
        x = starts[i] + left[i]
        slot = canvas[:hc[i], x:x + wc[i]]
        if channels_last:
            np.matmul(protos[cy0[i]:cy1[i], cx0[i]:cx1[i], :], coefficients[i], out=slot)
        else:
            np.matmul(coefficients[i], protos[:, cy0[i]:cy1[i], cx0[i]:cx1[i]].transpose(1, 0, 2), out=slot)
        if left[i]:
            canvas[:hc[i], x - 1] = slot[:, 0]
        if cx1[i] == pw:
            canvas[:hc[i], x + wc[i]] = slot[:, -1]
        if cy1[i] == ph:
            canvas[hc[i], starts[i]:starts[i + 1]] = canvas[hc[i] - 1, starts[i]:starts[i + 1]]
    peak = np.maximum.reduceat(np.abs(canvas).max(axis=0), starts[:-1])
    if not np.isfinite(peak).all():
        return None
    # each slot's logit range onto 1..255, 0 -> 128; one resize of all slots
    canvas *= np.repeat(_HALF / np.maximum(peak, _TINY), widths)
    up = cv2.resize(cv2.convertScaleAbs(canvas, alpha=1.0, beta=_MID), None, fx=factor, fy=factor,
                    interpolation=cv2.INTER_LINEAR)
    (x0, y0), (x1, y1) = i0, i1
    dx, dy = d
    small = labels.dtype == np.uint8
    drawn = [False] * k
    for i in range(k - 1, -1, -1):  # worst first
        w, h = x1[i] - x0[i], y1[i] - y0[i]
        if w <= 0 or h <= 0:
            continue
        c = factor * (starts[i] + left[i]) + dx[i]
        window = up[dy[i]:dy[i] + h, c:c + w]
        target = labels[y0[i]:y1[i], x0[i]:x1[i]]
        if not small:
            drawn[i] = _put(labels, i, (x0[i], y0[i], x1[i], y1[i]), window > _MID, over_worse[i],
                            not under_better[i]) or under_better[i]
        elif over_worse[i]:  # inside -> 255 - i, else 0; the larger value wins
            value = cv2.threshold(window, _MID, 255 - i, cv2.THRESH_BINARY)[1]
            drawn[i] = under_better[i] or _any_uint8(value)
            np.maximum(target, value, out=target)
        else:  # nothing drawn under it yet: straight into the label image
            cv2.threshold(window, _MID, 255 - i, cv2.THRESH_BINARY, dst=target)
            drawn[i] = under_better[i] or _any_uint8(target)
    return drawn


def _draw_exact(labels, coefficients, protos, channels_last, i0, i1, p0, c0, c1, a, under_better,
                over_worse) -> List[bool]:
    """The float path: per box, one float ``warpAffine`` of its crop's logits to the box's pixels."""
    k = coefficients.shape[0]
    (x0, y0), (x1, y1), (cx0, cy0), (cx1, cy1) = i0, i1, c0, c1
    px0, py0 = p0
    drawn = [False] * k
    for i in range(k - 1, -1, -1):  # worst first
        w, h = x1[i] - x0[i], y1[i] - y0[i]
        if w <= 0 or h <= 0:
            continue
        if channels_last:
            logits = protos[cy0[i]:cy1[i], cx0[i]:cx1[i], :] @ coefficients[i]
        else:
            logits = np.einsum("c,chw->hw", coefficients[i], protos[:, cy0[i]:cy1[i], cx0[i]:cx1[i]])
        warp = np.float32([[a, 0.0, px0[i] - cx0[i]], [0.0, a, py0[i] - cy0[i]]])
        box_logits = cv2.warpAffine(np.ascontiguousarray(logits, dtype=np.float32), warp, (w, h),
                                    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        drawn[i] = _put(labels, i, (x0[i], y0[i], x1[i], y1[i]), box_logits > 0.0, over_worse[i],
                        not under_better[i]) or under_better[i]
    return drawn
