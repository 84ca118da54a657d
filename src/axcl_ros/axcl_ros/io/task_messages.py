"""Segmentation and pose results → axcl_msgs messages (classes passed in, so the mapping is testable alone)."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from .image import array_to_image_fields


def fill_instance_masks(out, image_cls, header, labels: np.ndarray, ids: np.ndarray):
    """``axcl_msgs/InstanceMasks``: the label image (mono8/mono16, input header) and each detection's value."""
    encoding = "mono8" if labels.dtype == np.uint8 else "mono16"
    out.header = header
    out.mask = image_cls(**array_to_image_fields(labels, encoding, data_as="array"))
    out.mask.header = header
    out.instance_ids = [int(v) for v in ids]
    return out


def fill_keypoint_array(out, set_cls, point_cls, header, names: Sequence[str], skeleton: Sequence[Tuple[int, int]],
                        keypoints: np.ndarray, track_ids: Optional[np.ndarray]):
    """``axcl_msgs/KeypointArray``: names, flattened skeleton pairs, one KeypointSet per detection."""
    out.header = header
    out.names = list(names)
    out.skeleton = [int(i) for pair in skeleton for i in pair]
    sets = []
    for k, inst in enumerate(np.asarray(keypoints, dtype=np.float32)):
        tid = -1 if track_ids is None else int(track_ids[k])
        sets.append(set_cls(track_id=tid, keypoints=[point_cls(x=float(x), y=float(y), score=float(s))
                                                     for x, y, s in inst]))
    out.instances = sets
    return out
