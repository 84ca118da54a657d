"""Detections → ROS messages. Message classes are passed in, so the mapping is tested without vision_msgs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Optional, Sequence

import numpy as np


def vision_msgs_types() -> Optional[SimpleNamespace]:
    """The vision_msgs classes when the package is importable (robots), else None (PyPI machines)."""
    try:
        from vision_msgs.msg import (
            Detection2D,
            Detection2DArray,
            LabelInfo,
            ObjectHypothesisWithPose,
            VisionClass,
        )
    except ImportError:
        return None
    return SimpleNamespace(Detection2DArray=Detection2DArray, Detection2D=Detection2D,
                           ObjectHypothesisWithPose=ObjectHypothesisWithPose, LabelInfo=LabelInfo,
                           VisionClass=VisionClass)


def _centers_sizes(boxes: np.ndarray) -> list:
    """K×4 xyxy → list of K ``[center_x, center_y, size_x, size_y]`` Python floats (one vectorised pass)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.empty_like(b)
    np.add(b[:, 0], b[:, 2], out=out[:, 0])
    np.add(b[:, 1], b[:, 3], out=out[:, 1])
    out[:, :2] *= 0.5
    np.subtract(b[:, 2:], b[:, :2], out=out[:, 2:])
    return out.tolist()


def fill_detection_array(out, detection_cls, header, boxes: np.ndarray, scores: Sequence[float],
                         class_ids: Sequence[int], names: Sequence[str], width: int, height: int):
    """Fill an ``axcl_msgs/DetectionArray`` (``out``) from xyxy pixel boxes; the header is copied as is.

    The geometry is computed for all boxes at once and converted to Python numbers in bulk (``tolist``); only the
    message construction itself is per detection."""
    out.header = header
    out.image_width, out.image_height = int(width), int(height)
    geo = _centers_sizes(boxes)
    score_list = np.asarray(scores, dtype=np.float64).tolist()
    id_list = np.asarray(class_ids, dtype=np.int64).tolist()
    none = detection_cls.TRACK_NONE
    out.detections = [detection_cls(class_id=cid, class_name=str(name), score=score, center_x=cx, center_y=cy,
                                    size_x=sx, size_y=sy, track_id=none)
                      for (cx, cy, sx, sy), score, cid, name in zip(geo, score_list, id_list, names)]
    return out


def to_vision_detections(types: SimpleNamespace, header, boxes: np.ndarray, scores: Sequence[float],
                         class_ids: Sequence[int]):
    """A ``vision_msgs/Detection2DArray`` (4.x field layout: ``bbox.center.position.x``); class_id is the numeric id
    as a string, names are published once in ``LabelInfo``."""
    array = types.Detection2DArray()
    array.header = header
    geo = _centers_sizes(boxes)
    score_list = np.asarray(scores, dtype=np.float64).tolist()
    id_list = np.asarray(class_ids, dtype=np.int64).tolist()
    dets = []
    for (cx, cy, sx, sy), score, cid in zip(geo, score_list, id_list):
        det = types.Detection2D()
        det.header = header
        det.bbox.center.position.x = cx
        det.bbox.center.position.y = cy
        det.bbox.center.theta = 0.0
        det.bbox.size_x = sx
        det.bbox.size_y = sy
        hyp = types.ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(cid)
        hyp.hypothesis.score = score
        det.results.append(hyp)
        dets.append(det)
    array.detections = dets
    return array


def to_label_info(types: SimpleNamespace, header, names: Sequence[str], threshold: float):
    """A ``vision_msgs/LabelInfo`` mapping class ids to names (published transient-local)."""
    info = types.LabelInfo()
    info.header = header
    info.threshold = float(threshold)
    for i, name in enumerate(names):
        vc = types.VisionClass()
        vc.class_id = i
        vc.class_name = str(name)
        info.class_map.append(vc)
    return info
