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


def fill_detection_array(out, detection_cls, header, boxes: np.ndarray, scores: Sequence[float],
                         class_ids: Sequence[int], names: Sequence[str], width: int, height: int):
    """Fill an ``axcl_msgs/DetectionArray`` (``out``) from xyxy pixel boxes; the header is copied as is."""
    out.header = header
    out.image_width, out.image_height = int(width), int(height)
    dets = []
    for (x0, y0, x1, y1), score, cid, name in zip(np.asarray(boxes, dtype=float), scores, class_ids, names):
        dets.append(detection_cls(class_id=int(cid), class_name=str(name), score=float(score),
                                  center_x=(x0 + x1) / 2.0, center_y=(y0 + y1) / 2.0,
                                  size_x=float(x1 - x0), size_y=float(y1 - y0),
                                  track_id=detection_cls.TRACK_NONE))
    out.detections = dets
    return out


def to_vision_detections(types: SimpleNamespace, header, boxes: np.ndarray, scores: Sequence[float],
                         class_ids: Sequence[int]):
    """A ``vision_msgs/Detection2DArray`` (4.x field layout: ``bbox.center.position.x``); class_id is the numeric id
    as a string, names are published once in ``LabelInfo``."""
    array = types.Detection2DArray()
    array.header = header
    for (x0, y0, x1, y1), score, cid in zip(np.asarray(boxes, dtype=float), scores, class_ids):
        det = types.Detection2D()
        det.header = header
        det.bbox.center.position.x = (x0 + x1) / 2.0
        det.bbox.center.position.y = (y0 + y1) / 2.0
        det.bbox.center.theta = 0.0
        det.bbox.size_x = float(x1 - x0)
        det.bbox.size_y = float(y1 - y0)
        hyp = types.ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(int(cid))
        hyp.hypothesis.score = float(score)
        det.results.append(hyp)
        array.detections.append(det)
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
