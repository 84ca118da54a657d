"""Greedy non-maximum suppression, run by onnxruntime's ``NonMaxSuppression`` operator (C++).

Semantics (what :func:`greedy_nms_reference` spells out in plain Python, and the tests check on random and adversarial
inputs): candidates are visited best score first, ties by lower index; a candidate is kept unless a kept box of the
same class (any class with ``agnostic``) overlaps it with ``IoU > iou_threshold``; the IoU is computed in float32 as
``inter / (area_a + area_b - inter)`` and is 0 when a box or the intersection has no area. ``max_output`` stops once
that many boxes per class are kept (the greedy prefix, so the kept boxes are the same as without the stop). Boxes
have ``x1 <= x2`` and ``y1 <= y2``, as the decoders produce them (the operator would also take swapped corners).

Why an onnxruntime operator: greedy NMS is sequential, so numpy cannot vectorise it without computing far more IoUs
than the greedy loop needs; onnxruntime (already a dependency) ships it in C++ with an early stop at ``max_output``.
bench/bench_hostpath.py measures it against OpenCV's ``cv2.dnn.NMSBoxesBatched`` (2-3× slower on thousands
of candidates, and its IoU of two empty boxes is 1). The operator's one-node ONNX graph is encoded here
(a few protobuf fields) so the detector process does not have to import the ``onnx`` package for it.
"""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np

__all__ = ["greedy_nms", "greedy_nms_reference", "nms_graph_bytes"]

_FLOAT, _INT64 = 1, 7  # onnx TensorProto.DataType


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _value_info(name: str, elem_type: int, rank: int) -> bytes:
    dims = b"".join(_field(1, _field(2, f"{name}_{i}".encode())) for i in range(rank))  # symbolic dims
    tensor = _int_field(1, elem_type) + _field(2, dims)  # TypeProto.Tensor{elem_type, shape}
    return _field(1, name.encode()) + _field(2, _field(1, tensor))  # ValueInfoProto{name, type{tensor_type}}


NMS_INPUTS = (("boxes", _FLOAT, 3), ("scores", _FLOAT, 3), ("max_output", _INT64, 1), ("iou_threshold", _FLOAT, 1),
              ("score_threshold", _FLOAT, 1))


def nms_graph_bytes() -> bytes:
    """A serialised ONNX model (IR 7, opset 11) holding one ``NonMaxSuppression`` node; inputs as ``NMS_INPUTS``,
    output ``selected`` int64 [K, 3] (batch, class, box)."""
    node = b"".join(_field(1, n.encode()) for n, _, _ in NMS_INPUTS) + _field(2, b"selected") + \
        _field(4, b"NonMaxSuppression")
    graph = (_field(1, node) + _field(2, b"nms") + b"".join(_field(11, _value_info(*spec)) for spec in NMS_INPUTS)
             + _field(12, _value_info("selected", _INT64, 2)))
    opset = _field(1, b"") + _int_field(2, 11)
    return _int_field(1, 7) + _field(7, graph) + _field(8, opset)


_lock = threading.Lock()
_session = None


def _ort_session():
    """The process's one-node NMS session (one intra-op thread: the operator is sequential)."""
    global _session
    if _session is None:
        with _lock:
            if _session is None:
                try:
                    import onnxruntime as ort
                except ImportError as exc:  # a dependency of the package (package.xml, requirements/runtime.txt)
                    raise ImportError(f"the detector's NMS runs on onnxruntime, which does not import ({exc}): "
                                      "pip install onnxruntime") from exc
                from ..runtime.onnxruntime_backend import session_options

                _session = ort.InferenceSession(nms_graph_bytes(),
                                                sess_options=session_options(intra_op_num_threads=1),
                                                providers=["CPUExecutionProvider"])
    return _session


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, classes: Optional[np.ndarray], iou_threshold: float,
               max_output: Optional[int] = None) -> np.ndarray:
    """Kept indices of K×4 ``x1, y1, x2, y2`` boxes, best score first (ties: lower index first).

    ``classes`` (K ints) makes the NMS class-aware (boxes of different classes never suppress each other);
    ``None`` = agnostic. Only the order of ``scores`` matters (the operator gets ranks). ``max_output``:
    stop after that many kept boxes per class (``None`` = no limit).
    """
    n = int(scores.shape[0])
    if n == 0:
        return np.zeros(0, np.intp)
    limit = n if max_output is None else max(0, min(int(max_output), n))
    session = _ort_session()
    # The operator's heap does not break score ties by index, so it gets each candidate's rank in the visiting order
    # (best score first, ties by lower index) as its score: no two are equal. Classes go to separate batches (each
    # batch has its own boxes), padded to the largest class with score 0, which the operator skips; a [classes ×
    # candidates] score matrix would grow with both.
    order = np.argsort(-np.asarray(scores, np.float32), kind="stable")
    if classes is None:
        grouped, starts, batches, slot, width = order, np.zeros(1, np.intp), np.zeros(n, np.intp), np.arange(n), n
    else:
        grouped = order[np.argsort(np.asarray(classes)[order], kind="stable")]  # by class, visiting order within
        _, starts, counts = np.unique(np.asarray(classes)[grouped], return_index=True, return_counts=True)
        batches = np.repeat(np.arange(starts.size), counts)
        slot = np.arange(n) - starts[batches]
        width = int(counts.max())
    rank = np.empty(n, np.float32)
    rank[order] = np.arange(n, 0, -1, dtype=np.float32)  # exact in float32 below 2**24 candidates
    nb = int(batches[-1]) + 1
    box_in = np.zeros((nb, width, 4), np.float32)
    box_in[batches, slot] = boxes[grouped]
    score_in = np.zeros((nb, 1, width), np.float32)
    score_in[batches, 0, slot] = rank[grouped]
    feeds = {"boxes": box_in, "scores": score_in, "max_output": np.array([limit], np.int64),
             "iou_threshold": np.array([iou_threshold], np.float32),
             "score_threshold": np.array([0.0], np.float32)}
    sel = session.run(None, feeds)[0]
    idx = grouped[starts[sel[:, 0]] + sel[:, 2]]
    return idx[np.argsort(-rank[idx])]


def greedy_nms_reference(boxes: np.ndarray, scores: np.ndarray, classes: Optional[np.ndarray],
                         iou_threshold: float, max_output: Optional[int] = None) -> np.ndarray:
    """The semantics of :func:`greedy_nms` as a plain loop over the candidates (slow; for tests): each candidate is
    compared with the boxes of its class kept so far, with the same float32 arithmetic."""
    b = np.asarray(boxes, np.float32)
    s = np.asarray(scores, np.float32)
    t = np.float32(iou_threshold)
    order = sorted(range(len(s)), key=lambda i: (-float(s[i]), i))
    kept: list = []
    kept_by_class: dict = {}
    for i in order:
        c = None if classes is None else int(classes[i])
        mine = kept_by_class.setdefault(c, [])
        if max_output is not None and len(mine) >= max_output:
            continue
        k = b[mine]  # the kept boxes of this class (float32 throughout, as the operator computes)
        x1, y1 = np.maximum(k[:, 0], b[i, 0]), np.maximum(k[:, 1], b[i, 1])
        x2, y2 = np.minimum(k[:, 2], b[i, 2]), np.minimum(k[:, 3], b[i, 3])
        inter = (x2 - x1) * (y2 - y1)
        area_k = (k[:, 2] - k[:, 0]) * (k[:, 3] - k[:, 1])
        area_i = (b[i, 2] - b[i, 0]) * (b[i, 3] - b[i, 1])
        union = area_k + area_i - inter
        overlaps = (x2 > x1) & (y2 > y1) & (inter > 0) & (area_k > 0) & (area_i > 0) & (union > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            suppressed = overlaps & (inter / union > t)
        if not suppressed.any():
            mine.append(i)
            kept.append(i)
    return np.array(kept, np.intp)
