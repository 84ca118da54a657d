"""Depth-image geometry: camera-matrix scaling, colourised previews and point clouds (pure numpy/OpenCV, no rclpy).

Conventions (REP 118 / OpenCV): a depth image holds Z along the optical axis (not the range along the ray); pixel
centres sit at integer coordinates; ``K`` is the 3x3 intrinsic matrix and ``P`` the 3x4 projection matrix of
``sensor_msgs/CameraInfo`` (row-major, as reshaped from its 9/12 numbers).
"""

from __future__ import annotations

import functools
from typing import List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np

#: ``sensor_msgs/PointField.FLOAT32``
POINTFIELD_FLOAT32 = 7


class GeometryInputError(ValueError):
    """A camera matrix, image size or depth/colour array given to this module is malformed."""


class ScaledCamera(NamedTuple):
    """Camera matrices of a rescaled image; the distortion coefficients ``D`` stay unchanged."""

    K: np.ndarray
    P: np.ndarray
    width: int
    height: int


class PointFieldSpec(NamedTuple):
    """One ``sensor_msgs/PointField`` as plain data."""

    name: str
    offset: int
    datatype: int
    count: int


class PackedCloud(NamedTuple):
    """A ``sensor_msgs/PointCloud2`` body: set ``height=1``, ``width=n_points``, ``row_step=len(data)``,
    ``is_bigendian=False``, ``is_dense=True`` (invalid points are never packed)."""

    fields: List[PointFieldSpec]
    point_step: int
    data: bytes


def _matrix(values, shape: Tuple[int, int], name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise GeometryInputError(f"{name} must be numeric, got {values!r}") from exc
    if arr.size != shape[0] * shape[1]:
        raise GeometryInputError(f"{name} needs {shape[0] * shape[1]} numbers ({shape[0]}x{shape[1]}), "
                                 f"got shape {arr.shape}")
    arr = arr.reshape(shape)
    if not np.all(np.isfinite(arr)):
        raise GeometryInputError(f"{name} has non-finite entries: {arr.tolist()}")
    return arr


def _positive_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise GeometryInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _intrinsics(K) -> np.ndarray:
    k = _matrix(K, (3, 3), "K")
    if k[0, 0] == 0 or k[1, 1] == 0 or not np.allclose(k[2], (0.0, 0.0, 1.0)):
        raise GeometryInputError(f"K is not a calibrated pinhole matrix (fx, fy non-zero, last row 0 0 1): "
                                 f"{k.tolist()}")
    return k


def scale_camera_info(K, P, width: int, height: int, new_width: int, new_height: int, *,
                      half_pixel: bool = True) -> ScaledCamera:
    """Camera matrices for the image resized from ``width x height`` to ``new_width x new_height``.

    With ``half_pixel`` (default) a pixel coordinate maps as ``u' = (u + 0.5) * sx - 0.5``, which is exact for
    ``cv2.resize`` (and for pixel binning); ``half_pixel=False`` uses ``u' = u * sx`` like ROS ``image_proc``'s
    resize node. Rows 0 and 1 of ``K`` and ``P`` are transformed, so a stereo ``Tx = -fx * B`` scales with ``fx``.
    An all-zero ``P`` (uncalibrated) stays all zero. ``D`` does not depend on the image size.
    """
    w, h = _positive_int(width, "width"), _positive_int(height, "height")
    nw, nh = _positive_int(new_width, "new_width"), _positive_int(new_height, "new_height")
    k, p = _matrix(K, (3, 3), "K"), _matrix(P, (3, 4), "P")
    sx, sy = nw / w, nh / h
    ox, oy = (0.5 * sx - 0.5, 0.5 * sy - 0.5) if half_pixel else (0.0, 0.0)
    a = np.array([[sx, 0.0, ox], [0.0, sy, oy], [0.0, 0.0, 1.0]])
    return ScaledCamera(a @ k, a @ p, nw, nh)


def apply_roi_binning(K, P, *, x_offset: int = 0, y_offset: int = 0, binning_x: int = 0,
                      binning_y: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """``(K, P)`` of the image a ``CameraInfo`` with ``roi``/``binning`` describes (``K``/``P`` are full-resolution).

    Same convention as ROS ``image_geometry``: ``fx /= bx``, ``cx = (cx - x_offset) / bx`` (binning 0 means 1);
    row 0/1 of ``P`` (including ``Tx``) are divided too. Use the result with ``scale_camera_info`` before
    back-projecting a resized depth image, and publish the derived ``CameraInfo`` with zero ROI and binning.
    """
    k, p = _matrix(K, (3, 3), "K"), _matrix(P, (3, 4), "P")
    for name, v in (("x_offset", x_offset), ("y_offset", y_offset), ("binning_x", binning_x),
                    ("binning_y", binning_y)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise GeometryInputError(f"{name} must be a non-negative integer, got {v!r}")
    bx, by = max(1, int(binning_x)), max(1, int(binning_y))
    a = np.array([[1.0 / bx, 0.0, -x_offset / bx], [0.0, 1.0 / by, -y_offset / by], [0.0, 0.0, 1.0]])
    return a @ k, a @ p


def colorize(depth: np.ndarray, colormap: int = cv2.COLORMAP_TURBO, percentiles: Sequence[float] = (2.0, 98.0),
             invert: bool = False, *, value_range: Optional[Tuple[float, float]] = None,
             sample_stride: int = 4) -> np.ndarray:
    """``bgr8`` preview of a depth (or inverse-depth) map; NaN/Inf pixels are black.

    Values are stretched between the given percentiles of the finite pixels (or ``value_range`` when given) and
    clipped. ``invert=True`` swaps the ends of the colormap (use it for metric depth so that near is "hot" as it is
    for inverse depth). A constant image maps to the middle colour; an image without finite pixels is all black.
    Percentiles are taken on every ``sample_stride``-th row and column, which is plenty for a preview.
    """
    d = np.asarray(depth)
    if d.ndim != 2 or d.size == 0 or not np.issubdtype(d.dtype, np.number):
        raise GeometryInputError(f"depth must be a non-empty numeric HxW array, got {d.dtype}{list(d.shape)}")
    if len(percentiles) != 2 or not 0 <= percentiles[0] <= percentiles[1] <= 100:
        raise GeometryInputError(f"percentiles must be (low, high) within 0..100, got {tuple(percentiles)}")
    d = d.astype(np.float32, copy=False)
    finite = np.isfinite(d)
    if value_range is not None:
        lo, hi = float(value_range[0]), float(value_range[1])
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise GeometryInputError(f"value_range must be finite, got {value_range}")
    else:
        step = max(1, int(sample_stride))
        sample = d[::step, ::step]
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            sample = d[finite]
        if sample.size == 0:
            return np.zeros(d.shape + (3,), np.uint8)
        lo, hi = (float(x) for x in np.percentile(sample, percentiles))
    if hi > lo:
        # max(d - lo, 0) first: convertScaleAbs would fold values below lo back up; it saturates above 255.
        with np.errstate(invalid="ignore"):
            shifted = np.maximum(d - np.float32(lo), np.float32(0.0))
        u8 = cv2.convertScaleAbs(shifted, alpha=255.0 / (hi - lo))
    else:
        u8 = np.full(d.shape, 128, np.uint8)
    if invert:
        cv2.bitwise_not(u8, dst=u8)
    # cv2.LUT on a 3-channel copy is ~20x faster than cv2.applyColorMap and gives identical colours.
    bgr = cv2.LUT(cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR), _colormap_lut(int(colormap)))
    bgr[~finite] = 0
    return bgr


@functools.lru_cache(maxsize=32)
def _colormap_lut(colormap: int) -> np.ndarray:
    try:
        lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), colormap)
    except cv2.error as exc:
        raise GeometryInputError(f"unknown OpenCV colormap {colormap!r}") from exc
    lut = np.ascontiguousarray(lut.reshape(1, 256, 3))
    lut.flags.writeable = False
    return lut


@functools.lru_cache(maxsize=8)
def _normalised_rays(k_key: Tuple[float, ...], height: int, width: int, stride: int) -> Tuple[np.ndarray, np.ndarray]:
    fx, skew, cx, _, fy, cy = k_key[:6]
    v = np.arange(0, height, stride, dtype=np.float64)
    u = np.arange(0, width, stride, dtype=np.float64)
    yn = (v - cy) / fy
    xn = (u[None, :] - cx - skew * yn[:, None]) / fx
    yn_grid = np.broadcast_to(yn[:, None], xn.shape)
    xs, ys = xn.astype(np.float32), np.ascontiguousarray(yn_grid, dtype=np.float32)
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


def depth_to_points(depth: np.ndarray, K, stride: int = 1,
                    rgb: Optional[np.ndarray] = None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Back-project a metric depth image (Z in metres) through the pinhole ``K`` (skew honoured, no distortion).

    Samples every ``stride``-th row and column starting at pixel (0, 0). Pixels that are NaN, Inf or <= 0 are
    dropped. ``rgb`` (uint8 HxWx3, same size as ``depth``; pass ``bgr[..., ::-1]`` for a bgr8 image) gives a colour
    per kept point in the same channel order. Returns ``(xyz float32 [N,3], colours uint8 [N,3] or None)`` in the
    camera optical frame (x right, y down, z forward), row-major pixel order.
    """
    d = np.asarray(depth)
    if d.ndim != 2 or d.size == 0 or not np.issubdtype(d.dtype, np.floating):
        raise GeometryInputError(f"depth must be a non-empty floating HxW array, got {d.dtype}{list(d.shape)}")
    step = _positive_int(stride, "stride")
    k = _intrinsics(K)
    xn, yn = _normalised_rays(tuple(float(x) for x in k.ravel()), d.shape[0], d.shape[1], step)
    z = d[::step, ::step].astype(np.float32, copy=False)
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(z) & (z > 0)
    zk = z[keep]
    xyz = np.empty((zk.size, 3), np.float32)
    np.multiply(xn[keep], zk, out=xyz[:, 0])
    np.multiply(yn[keep], zk, out=xyz[:, 1])
    xyz[:, 2] = zk
    colours = None
    if rgb is not None:
        c = np.asarray(rgb)
        if c.dtype != np.uint8 or c.shape != d.shape + (3,):
            raise GeometryInputError(f"rgb must be uint8 {list(d.shape) + [3]} like depth, "
                                     f"got {c.dtype}{list(c.shape)}")
        colours = c[::step, ::step][keep]
    return xyz, colours


def pack_pointcloud2_fields(xyz: np.ndarray, rgb: Optional[np.ndarray] = None) -> PackedCloud:
    """Little-endian ``PointCloud2`` payload: ``x, y, z`` float32 (+ ``rgb`` packed PCL-style) per point.

    ``rgb`` (uint8 [N,3], channel order R, G, B) is stored as the uint32 ``0x00RRGGBB`` reinterpreted as a float32
    field named ``rgb`` (what PCL and RViz read). Layout: x@0, y@4, z@8 (+ rgb@12); point_step 12 or 16.
    """
    p = np.asarray(xyz)
    if p.ndim != 2 or p.shape[1] != 3 or not np.issubdtype(p.dtype, np.number):
        raise GeometryInputError(f"xyz must be a numeric [N,3] array, got {p.dtype}{list(p.shape)}")
    names = ["x", "y", "z"]
    formats = ["<f4", "<f4", "<f4"]
    if rgb is not None:
        c = np.asarray(rgb)
        if c.dtype != np.uint8 or c.shape != p.shape:
            raise GeometryInputError(f"rgb must be uint8 {list(p.shape)} like xyz, got {c.dtype}{list(c.shape)}")
        names.append("rgb")
        formats.append("<u4")
    dtype = np.dtype({"names": names, "formats": formats, "offsets": [0, 4, 8, 12][:len(names)],
                      "itemsize": 4 * len(names)})
    out = np.empty(p.shape[0], dtype)
    out["x"], out["y"], out["z"] = p[:, 0], p[:, 1], p[:, 2]
    if rgb is not None:
        c32 = c.astype(np.uint32)
        out["rgb"] = (c32[:, 0] << 16) | (c32[:, 1] << 8) | c32[:, 2]
    fields = [PointFieldSpec(n, 4 * i, POINTFIELD_FLOAT32, 1) for i, n in enumerate(names)]
    return PackedCloud(fields, dtype.itemsize, out.tobytes())


def pointcloud2_dtype(fields: Sequence[PointFieldSpec], point_step: int) -> np.dtype:
    """numpy dtype that decodes a little-endian payload made of FLOAT32 ``fields`` (``np.frombuffer(data, dtype)``)."""
    for f in fields:
        if f.datatype != POINTFIELD_FLOAT32 or f.count != 1:
            raise GeometryInputError(f"only FLOAT32 fields with count 1 are supported, got {f}")
    return np.dtype({"names": [f.name for f in fields], "formats": ["<f4"] * len(fields),
                     "offsets": [f.offset for f in fields], "itemsize": point_step})
