"""Instance masks from YOLO segmentation outputs: mask coefficients × prototypes, computed only inside each box.

YOLOv8/YOLO11 segmentation models output, per detection, ``nm`` (32) mask coefficients, and once per image ``nm``
prototype maps at stride 4 of the network input (``[1,nm,H/4,W/4]`` NCHW in Ultralytics exports,
``[1,H/4,W/4,nm]`` NHWC in AXERA's compiled models). An instance's mask is ``sigmoid(coefficients · prototypes)``
inside its box. Here only the prototype cells under the box are multiplied (crop first), and that small logit map is
resampled straight to the box's pixels in the *input image* (undoing the letterbox with one affine warp), then
thresholded at logit 0 (= sigmoid 0.5). The host cost is thus proportional to the boxes' area, not to the image.
"""

from __future__ import annotations

import math
from typing import Tuple

import cv2
import numpy as np

from .letterbox import LetterboxInfo

__all__ = ["instance_label_image"]


def instance_label_image(coefficients: np.ndarray, protos: np.ndarray, boxes: np.ndarray, meta: LetterboxInfo, *,
                         channels_last: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Label image of the instances (0 = background) and each detection's label value.

    ``coefficients`` K×nm; ``protos`` ``nm×h×w`` (``channels_last=False``) or ``h×w×nm``; ``boxes`` K×4 xyxy in
    pixels of the input image, best detection first (it wins where masks overlap); ``meta`` the letterbox of the
    frame. Returns ``(labels, ids)``: ``labels`` H×W of the input image, uint8 for at most 255 instances else uint16,
    where detection ``k`` has value ``ids[k]`` (= k + 1, or 0 when its mask is empty).
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
    coefficients = np.asarray(coefficients, dtype=np.float32)
    regions = []
    for i in range(k - 1, -1, -1):  # worst first: better detections overwrite overlaps
        x0, y0, x1, y1 = (float(v) for v in boxes[i])
        ix0, iy0 = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
        ix1, iy1 = min(int(math.ceil(x1)), width), min(int(math.ceil(y1)), height)
        if ix1 <= ix0 or iy1 <= iy0:
            continue
        # proto coordinate of image pixel centre u: ((u + 0.5)·scale + pad) / stride − 0.5
        px0 = ((ix0 + 0.5) * meta.scale + meta.pad_left) / stride - 0.5
        py0 = ((iy0 + 0.5) * meta.scale + meta.pad_top) / stride - 0.5
        cx0 = min(max(int(math.floor(px0)), 0), pw - 1)
        cy0 = min(max(int(math.floor(py0)), 0), ph - 1)
        cx1 = min(max(int(math.ceil(px0 + a * (ix1 - ix0 - 1))) + 1, cx0 + 1), pw)
        cy1 = min(max(int(math.ceil(py0 + a * (iy1 - iy0 - 1))) + 1, cy0 + 1), ph)
        if channels_last:
            logits = protos[cy0:cy1, cx0:cx1, :] @ coefficients[i]
        else:
            logits = np.einsum("c,chw->hw", coefficients[i], protos[:, cy0:cy1, cx0:cx1])
        warp = np.float32([[a, 0.0, px0 - cx0], [0.0, a, py0 - cy0]])
        box_logits = cv2.warpAffine(np.ascontiguousarray(logits, dtype=np.float32), warp, (ix1 - ix0, iy1 - iy0),
                                    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        inside = box_logits > 0.0
        if inside.any():
            np.copyto(labels[iy0:iy1, ix0:ix1], i + 1, where=inside)
            ids[i] = i + 1
            regions.append((i, iy0, iy1, ix0, ix1))
    for i, iy0, iy1, ix0, ix1 in regions:  # a mask fully covered by better detections has no pixel left
        if not (labels[iy0:iy1, ix0:ix1] == i + 1).any():
            ids[i] = 0
    return labels, ids
