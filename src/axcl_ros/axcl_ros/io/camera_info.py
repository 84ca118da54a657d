"""sensor_msgs/CameraInfo: validation into the pinhole of the image it describes, and the CameraInfo of a resized
output (what ``depth_image_proc`` and RViz need beside a depth image)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo

from ..models.depth_geometry import GeometryInputError, apply_roi_binning, scale_camera_info


class CameraInfoError(ValueError):
    """A CameraInfo message cannot describe the depth image (uncalibrated K, bad sizes, ROI outside the image)."""


@dataclass(frozen=True)
class CameraModel:
    """Pinhole of the image a CameraInfo describes (ROI and binning applied): what the depth image is scaled from."""

    msg: Any
    K: np.ndarray
    P: np.ndarray
    width: int
    height: int


def camera_model(msg) -> CameraModel:
    """Validate a ``sensor_msgs/CameraInfo`` and derive the pinhole of the image it describes.

    Raises :class:`CameraInfoError` naming the field: ``width``/``height`` must be positive, ``k`` a calibrated
    pinhole (finite, fx > 0, fy > 0, last row 0 0 1), ``p`` and ``r`` finite (an all-zero ``p`` is allowed), the
    ROI inside the image, and the binned size non-empty.
    """
    width, height = int(msg.width), int(msg.height)
    if width <= 0 or height <= 0:
        raise CameraInfoError(f"width/height must be positive, got {width}x{height}")
    k = np.asarray(msg.k, dtype=np.float64)
    p = np.asarray(msg.p, dtype=np.float64)
    r = np.asarray(msg.r, dtype=np.float64)
    if k.size != 9 or not np.all(np.isfinite(k)):
        raise CameraInfoError(f"k must be 9 finite numbers, got {k.tolist()}")
    k = k.reshape(3, 3)
    if not (k[0, 0] > 0 and k[1, 1] > 0) or not np.array_equal(k[2], (0.0, 0.0, 1.0)):
        raise CameraInfoError(f"k is not a calibrated pinhole (fx > 0, fy > 0, last row 0 0 1): {k.ravel().tolist()}")
    if p.size != 12 or not np.all(np.isfinite(p)):
        raise CameraInfoError(f"p must be 12 finite numbers, got {p.tolist()}")
    if r.size != 9 or not np.all(np.isfinite(r)):
        raise CameraInfoError(f"r must be 9 finite numbers, got {r.tolist()}")
    roi = msg.roi
    x0, y0, rw, rh = int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)
    if rw > 0 and rh > 0:
        if x0 + rw > width or y0 + rh > height:
            raise CameraInfoError(f"roi {rw}x{rh}+{x0}+{y0} lies outside the {width}x{height} image")
        width, height = rw, rh
    else:
        x0 = y0 = 0
    bx, by = max(1, int(msg.binning_x)), max(1, int(msg.binning_y))
    width, height = width // bx, height // by
    if width <= 0 or height <= 0:
        raise CameraInfoError(f"binning {bx}x{by} leaves an empty image")
    try:
        k, p = apply_roi_binning(k, p.reshape(3, 4), x_offset=x0, y_offset=y0, binning_x=bx, binning_y=by)
    except GeometryInputError as exc:
        raise CameraInfoError(str(exc)) from exc
    return CameraModel(msg, k, p, width, height)


def scaled_camera_info(model: CameraModel, header, width: int, height: int) -> CameraInfo:
    """A new CameraInfo for the ``width`` x ``height`` output, with ``header`` and zero ROI/binning."""
    scaled = scale_camera_info(model.K, model.P, model.width, model.height, width, height)
    src = model.msg
    out = CameraInfo()
    out.header = header
    out.width, out.height = int(width), int(height)
    out.distortion_model = src.distortion_model
    out.d = src.d
    out.r = src.r
    out.k = scaled.K.ravel().tolist()
    out.p = scaled.P.ravel().tolist()
    return out
