"""The two YOLO output layouts decoded to candidate boxes (NMS: :mod:`.nms`).

* :func:`decode_axera`: AXERA's per-stride heads ``[1,h,w,4·16+nc]`` (DFL logits, then class logits); thresholds the
  class logits first (``sigmoid(x) > t  ⇔  x > logit(t)``), so the DFL softmax only runs on the cells that pass.
* :func:`decode_ultralytics`: ``[1,4+nc,N]`` (cx, cy, w, h in letterbox pixels, then sigmoided class scores).

Both return ``(boxes x1 y1 x2 y2 in letterbox pixels, scores, class ids, source)``; ``source`` is each candidate's
index in the model output (Ultralytics: the anchor column; AXERA: the cell counted over the heads by ascending
stride, row-major), so outputs that carry more per candidate (masks, keypoints) are read by index.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

#: DFL bins per box side in the AXERA layout
REG_MAX = 16

Candidates = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def decode_ultralytics(out: np.ndarray, thr: float, cls_ids: Optional[np.ndarray]) -> Candidates:
    """Candidates of the Ultralytics layout above ``thr`` (scores over the classes ``cls_ids``, or all)."""
    pred = out[0]
    scores = pred[4:] if cls_ids is None else pred[4:][cls_ids]
    conf = scores.max(axis=0)
    keep = np.flatnonzero(conf > thr)
    cls = scores.T[keep].argmax(axis=1)  # rows of the transposed view: faster than argmax over axis 0
    if cls_ids is not None:
        cls = cls_ids[cls]
    cx, cy, w, h = (pred[i, keep].astype(np.float32) for i in range(4))
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return boxes, conf[keep].astype(np.float32), cls.astype(np.int32), keep


def decode_axera(heads: List[np.ndarray], strides: Sequence[int], thr: float,
                 cls_ids: Optional[np.ndarray]) -> Candidates:
    """Candidates of the AXERA layout (one head per stride) above ``thr`` (scores over ``cls_ids``, or all)."""
    if thr <= 0.0:
        logit_thr = -math.inf
    elif thr >= 1.0:
        logit_thr = math.inf
    else:
        logit_thr = math.log(thr / (1.0 - thr))
    reg = 4 * REG_MAX
    bins = np.arange(REG_MAX, dtype=np.float32)
    all_boxes, all_scores, all_cls, all_cells, offset = [], [], [], [], 0
    for head, stride in zip(heads, strides):
        gh, gw, ch = head.shape[1:]
        flat = head.reshape(gh * gw, ch)
        first, offset = offset, offset + gh * gw  # this head's cells in the candidate numbering
        logits = flat[:, reg:] if cls_ids is None else flat[:, reg + cls_ids]
        keep = np.flatnonzero((logits > logit_thr).any(axis=1))  # 2x faster than max() on 80+ classes
        if keep.size == 0:
            continue
        sel = logits[keep]
        cls = sel.argmax(axis=1)
        best = sel[np.arange(keep.size), cls].astype(np.float32)
        if cls_ids is not None:
            cls = cls_ids[cls]
        score = 1.0 / (1.0 + np.exp(-best))
        dfl = flat[keep, :reg].astype(np.float32).reshape(-1, 4, REG_MAX)
        dfl = np.exp(dfl - dfl.max(axis=2, keepdims=True))
        dist = (dfl @ bins) / dfl.sum(axis=2) * np.float32(stride)  # (k, 4): l, t, r, b
        cx = ((keep % gw).astype(np.float32) + 0.5) * stride
        cy = ((keep // gw).astype(np.float32) + 0.5) * stride
        all_boxes.append(np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], axis=1))
        all_scores.append(score)
        all_cls.append(cls)
        all_cells.append(keep + first)
    if not all_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(0, np.intp)
    return (np.concatenate(all_boxes), np.concatenate(all_scores).astype(np.float32),
            np.concatenate(all_cls).astype(np.int32), np.concatenate(all_cells))

