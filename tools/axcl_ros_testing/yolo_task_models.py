"""Test models for YOLO segmentation and pose, in both layouts, with known instances planted in their outputs.

Each builder returns an ONNX model (constant outputs that still depend on the input, as in :mod:`.yolo_models`) with
the exact output signature of the real exports: Ultralytics ``[1,4+nc+32,N]`` + ``[1,32,H/4,W/4]`` (seg) and
``[1,4+nc+51,N]`` (pose); AXERA per-stride DFL heads plus ``[1,h,w,32]`` coefficient heads and a ``[1,32,H/4,W/4]``
prototype tensor (seg; as AXERA's ``yolo11s-seg.axmodel`` reports it, or ``[1,H/4,W/4,32]`` with
``channels_last_protos``), or ``[1,h,w,51]`` raw keypoint heads (pose).

Planted instances: instance ``i`` has one-hot mask coefficients ``e_i`` and prototype channel ``i`` is +1 on the
proto cells whose centres lie in the **left half** of its box (letterbox pixels), −1 elsewhere — so its mask is the
left half of its box. Pose instances get 17 keypoints at given letterbox positions with given visibilities.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from onnx import TensorProto, helper

from .yolo_models import _const_outputs, _finish, anchor_count, encode_dfl_heads, encode_ultralytics_output

NM = 32
STRIDES = (8, 16, 32)


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def planted_protos(boxes: Sequence[Sequence[float]], size: Tuple[int, int], nm: int = NM) -> np.ndarray:
    """``nm×H/4×W/4``: channel i = +1 on the left half of box i (letterbox pixels), −1 elsewhere."""
    h, w = size[0] // 4, size[1] // 4
    protos = -np.ones((nm, h, w), np.float32)
    xs = (np.arange(w) + 0.5) * 4
    ys = (np.arange(h) + 0.5) * 4
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        inside = ((xs >= x1) & (xs < (x1 + x2) / 2))[None, :] & ((ys >= y1) & (ys < y2))[:, None]
        protos[i][inside] = 1.0
    return protos


def _cell(box, stride_levels: Sequence[int], heads: List[np.ndarray]) -> Tuple[int, int, int]:
    """Where encode_dfl_heads put a box: (level, row, col) = the cell holding its centre with a class logit set."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for level, s in enumerate(stride_levels):
        row, col = int(cy // s), int(cx // s)
        if (heads[level][0, row, col, 64:] > -10).any():
            return level, row, col
    raise ValueError(f"box {box} not found in the heads")


def seg_outputs(boxes, class_ids, scores, size=(640, 640), num_classes: int = 80, *, layout: str,
                channels_last_protos: bool = False) -> Dict[str, np.ndarray]:
    """Raw outputs ``{name: array}`` of a segmentation model with the planted instances (letterbox boxes);
    ``channels_last_protos``: AXERA layout with ``[1,H/4,W/4,32]`` prototypes instead of AXERA's ``[1,32,H/4,W/4]``."""
    protos = planted_protos(boxes, size)
    coeff = np.eye(NM, dtype=np.float32)
    if layout == "ultralytics":
        det = encode_ultralytics_output(boxes, class_ids, scores, size, num_classes)
        extra = np.zeros((1, NM, det.shape[2]), np.float32)
        for i in range(len(boxes)):
            extra[0, :, i] = coeff[i]
        return {"output0": np.concatenate([det, extra], axis=1), "output1": protos[None]}
    heads = encode_dfl_heads(boxes, class_ids, scores, size, num_classes, STRIDES)
    coef_heads = [np.zeros((1, size[0] // s, size[1] // s, NM), np.float32) for s in STRIDES]
    for i, box in enumerate(boxes):
        level, row, col = _cell(box, STRIDES, heads)
        coef_heads[level][0, row, col] = coeff[i]
    out = {f"det{i}": h for i, h in enumerate(heads)}
    out.update({f"mask{i}": h for i, h in enumerate(coef_heads)})
    out["proto"] = np.ascontiguousarray(protos.transpose(1, 2, 0))[None] if channels_last_protos else protos[None]
    return out


def pose_outputs(boxes, scores, keypoints, size=(640, 640), *, layout: str) -> Dict[str, np.ndarray]:
    """Raw outputs of a person pose model (1 class); ``keypoints`` K×17×3 (x, y letterbox pixels, visibility)."""
    keypoints = np.asarray(keypoints, np.float32)
    if layout == "ultralytics":
        det = encode_ultralytics_output(boxes, [0] * len(boxes), scores, size, 1)
        extra = np.zeros((1, 51, det.shape[2]), np.float32)
        for i, k in enumerate(keypoints):
            extra[0, :, i] = k.reshape(-1)
        return {"output0": np.concatenate([det, extra], axis=1)}
    heads = encode_dfl_heads(boxes, [0] * len(boxes), scores, size, 1, STRIDES)
    kpt_heads = [np.zeros((1, size[0] // s, size[1] // s, 51), np.float32) for s in STRIDES]
    for i, box in enumerate(boxes):
        level, row, col = _cell(box, STRIDES, heads)
        s = STRIDES[level]
        raw = np.empty((17, 3), np.float32)
        raw[:, 0] = (keypoints[i, :, 0] / s - col) / 2
        raw[:, 1] = (keypoints[i, :, 1] / s - row) / 2
        raw[:, 2] = [_logit(v) for v in keypoints[i, :, 2]]
        kpt_heads[level][0, row, col] = raw.reshape(-1)
    out = {f"det{i}": h for i, h in enumerate(heads)}
    out.update({f"kpt{i}": h for i, h in enumerate(kpt_heads)})
    return out


def task_model(path, outputs: Dict[str, np.ndarray], *, layout: str, size=(640, 640),
               drop: Optional[str] = None) -> Path:
    """An ONNX model whose outputs are ``outputs`` (name → constant), input of the layout; ``drop`` leaves one out
    (a malformed model)."""
    h, w = size
    items = [(n, a, list(a.shape)) for n, a in outputs.items() if n != drop]
    nodes: List = []
    inits: List = []
    value_infos = _const_outputs("images", items, nodes, inits)
    if layout == "ultralytics":
        inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])
    else:
        inp = helper.make_tensor_value_info("images", TensorProto.UINT8, [1, h, w, 3])
    _finish(helper.make_graph(nodes, f"{layout}_task_stub", [inp], value_infos, inits), path)
    return Path(path)


__all__ = ["NM", "anchor_count", "planted_protos", "pose_outputs", "seg_outputs", "task_model", "yolo11_task_stub"]


def yolo11_task_stub(path, task: str, size: int = 640, classes: int = 80) -> Path:
    """AXCL stub model (op ``yolo``) of an AXERA seg or pose model.

    The 3 DFL heads of :func:`~.stub_models.yolo11_stub` plus, per stride, a coefficient head ``[1,g,g,32]`` and
    prototypes ``[1,32,size/4,size/4]`` NCHW, as AXERA's ``yolo11s-seg.axmodel`` (segment), or a keypoint head
    ``[1,g,g,51]`` (pose). The stub plants one
    detection (:func:`~.stub_models.expected_yolo_box`); at its cell the extra head is 0 except channel 0 = 1, and
    prototype channel 0 is 1 everywhere: the mask is the whole box; keypoints sit at the cell corner (keypoint 0 two
    strides to the right), score 0.5.
    """
    from .stub_models import YOLO_HEAD_NAMES, StubTensor, write_stub_model

    grids = [size // s for s in STRIDES]
    outs = [StubTensor(YOLO_HEAD_NAMES[i], (1, g, g, 64 + classes), np.float32, "NHWC") for i, g in enumerate(grids)]
    ch = NM if task == "segment" else 51
    outs += [StubTensor(f"extra{i}", (1, g, g, ch), np.float32, "NHWC") for i, g in enumerate(grids)]
    if task == "segment":
        outs.append(StubTensor("output1", (1, NM, size // 4, size // 4), np.float32, "NCHW"))
    return write_stub_model(path, "yolo", [StubTensor("images", (1, size, size, 3), np.uint8, "NHWC")], outs,
                            {"head": 1, "score": 0.9, "left": 2, "top": 3, "right": 4, "bottom": 5}, cores=3)
