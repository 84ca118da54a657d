"""sensor_msgs/Image <-> numpy, without cv_bridge and without rclpy (CompressedImage: ``io.compressed_image``).

Messages are duck-typed: any object with ``height, width, encoding, is_bigendian, step, data`` works, so rclpy
messages, test doubles and plain namespaces are all accepted.
``data`` may be ``bytes``, ``bytearray``, ``memoryview``, ``array.array('B')`` (what rclpy gives) or a numpy array.

Decoding is zero-copy where the encoding allows it: the returned array is a (possibly read-only) view of
``msg.data`` that honours ``step`` padding. Copies happen only for big-endian multi-byte data on a little-endian
host (and vice versa), for list/tuple ``data``, and in the colour conversions.

Every malformed input raises :class:`ImageConversionError` (a ``ValueError``) whose ``field`` names the message field
(``encoding``, ``step``, ``data`` ...) and whose message shows the offending values.

Array layouts (what :func:`image_msg_to_array` returns, and what :func:`array_to_image_fields` accepts):

* ``rgb8``, ``bgr8`` / ``rgba8``, ``bgra8``: H×W×3 / H×W×4 uint8
* ``mono8``, ``bayer_{rggb,bggr,gbrg,grbg}8``: H×W uint8
* ``mono16``, ``16UC1`` / ``32FC1``: H×W uint16 / float32, native byte order (big-endian data is swapped)
* ``yuv422`` (= ``uyvy``), ``yuv422_yuy2`` (= ``yuyv``): H×W×2 uint8 (OpenCV's CV_8UC2 packing)
* ``nv12``, ``nv21``: (H·3/2)×W uint8 (Y plane, then the interleaved chroma plane), as ``cv2.cvtColor`` wants
* generic ``<8U|8S|16U|16S|32S|32F|64F>C<n>``: H×W (n = 1) or H×W×n of the matching dtype
"""

from __future__ import annotations

import array as _array
import re
import sys
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np

__all__ = [
    "ImageConversionError",
    "DecodedImage",
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_ENCODINGS",
    "image_msg_to_array",
    "to_bgr8",
    "to_rgb8",
    "decoded_to_bgr8",
    "array_to_image_fields",
]


class ImageConversionError(ValueError):
    """A message (or array) cannot be converted; ``field`` names the culprit, the message shows the values."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image: ``array`` laid out as in the module table, ``encoding`` its (lower-case) ROS encoding."""

    array: np.ndarray
    encoding: str

    @property
    def height(self) -> int:
        """Image height in pixels (for NV12/NV21 the luma height, not the array's row count)."""
        if self.encoding in _NV:
            return self.array.shape[0] * 2 // 3
        return int(self.array.shape[0])

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return int(self.array.shape[1])


@dataclass(frozen=True)
class _Fmt:
    dtype: np.dtype  # element type
    channels: int  # elements per pixel (yuv422: 2 bytes per pixel)
    kind: str  # "packed", "yuv422", "nv"


_U8 = np.dtype(np.uint8)
_NAMED = {
    "rgb8": _Fmt(_U8, 3, "packed"),
    "bgr8": _Fmt(_U8, 3, "packed"),
    "rgba8": _Fmt(_U8, 4, "packed"),
    "bgra8": _Fmt(_U8, 4, "packed"),
    "mono8": _Fmt(_U8, 1, "packed"),
    "mono16": _Fmt(np.dtype(np.uint16), 1, "packed"),
    "rgb16": _Fmt(np.dtype(np.uint16), 3, "packed"),
    "bgr16": _Fmt(np.dtype(np.uint16), 3, "packed"),
    "bayer_rggb8": _Fmt(_U8, 1, "packed"),
    "bayer_bggr8": _Fmt(_U8, 1, "packed"),
    "bayer_gbrg8": _Fmt(_U8, 1, "packed"),
    "bayer_grbg8": _Fmt(_U8, 1, "packed"),
    "yuv422": _Fmt(_U8, 2, "yuv422"),
    "uyvy": _Fmt(_U8, 2, "yuv422"),
    "yuv422_yuy2": _Fmt(_U8, 2, "yuv422"),
    "yuyv": _Fmt(_U8, 2, "yuv422"),
    "nv12": _Fmt(_U8, 1, "nv"),
    "nv21": _Fmt(_U8, 1, "nv"),
}
_NV = ("nv12", "nv21")
_CV_DEPTHS = {"8U": np.uint8, "8S": np.int8, "16U": np.uint16, "16S": np.int16, "32S": np.int32,
              "32F": np.float32, "64F": np.float64}
_CV_TYPE = re.compile(r"^(8U|8S|16U|16S|32S|32F|64F)C([1-4])$")

#: encodings :func:`image_msg_to_array` understands (plus any generic ``<depth>C<n>`` such as ``16UC1``)
SUPPORTED_ENCODINGS = tuple(_NAMED) + tuple(f"{d}C{n}" for d in _CV_DEPTHS for n in range(1, 5))

# colour conversions to 3-channel 8-bit: encoding -> (code to BGR, code to RGB); None = no conversion needed
_COLOR_CODES = {
    "bgr8": (None, cv2.COLOR_BGR2RGB),
    "rgb8": (cv2.COLOR_RGB2BGR, None),
    "bgra8": (cv2.COLOR_BGRA2BGR, cv2.COLOR_BGRA2RGB),
    "rgba8": (cv2.COLOR_RGBA2BGR, cv2.COLOR_RGBA2RGB),
    "mono8": (cv2.COLOR_GRAY2BGR, cv2.COLOR_GRAY2RGB),
    "8UC1": (cv2.COLOR_GRAY2BGR, cv2.COLOR_GRAY2RGB),
    "8UC3": (None, cv2.COLOR_BGR2RGB),
    "8UC4": (cv2.COLOR_BGRA2BGR, cv2.COLOR_BGRA2RGB),
    "yuv422": (cv2.COLOR_YUV2BGR_UYVY, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": (cv2.COLOR_YUV2BGR_UYVY, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (cv2.COLOR_YUV2BGR_YUY2, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": (cv2.COLOR_YUV2BGR_YUY2, cv2.COLOR_YUV2RGB_YUY2),
    "nv12": (cv2.COLOR_YUV2BGR_NV12, cv2.COLOR_YUV2RGB_NV12),
    "nv21": (cv2.COLOR_YUV2BGR_NV21, cv2.COLOR_YUV2RGB_NV21),
    # ROS names the 2x2 pattern from the top-left pixel, as do OpenCV's *RGGB* aliases
    "bayer_rggb8": (cv2.COLOR_BayerRGGB2BGR, cv2.COLOR_BayerRGGB2RGB),
    "bayer_bggr8": (cv2.COLOR_BayerBGGR2BGR, cv2.COLOR_BayerBGGR2RGB),
    "bayer_gbrg8": (cv2.COLOR_BayerGBRG2BGR, cv2.COLOR_BayerGBRG2RGB),
    "bayer_grbg8": (cv2.COLOR_BayerGRBG2BGR, cv2.COLOR_BayerGRBG2RGB),
}
# single-channel non-8-bit encodings scaled to 8 bits by to_bgr8/to_rgb8
_SCALED = ("mono16", "16UC1", "16SC1", "32SC1", "32FC1", "64FC1")
_HOST_BIG = sys.byteorder == "big"

#: default cap on width × height of an image accepted for decoding: 8K UHD (7680×4320 = 33.2 Mpx) fits, the largest
#: sensors robots carry (~25 Mpx) fit, a forged 16384×16384 PNG header does not
DEFAULT_MAX_PIXELS = 8192 * 4096


def _check_pixels(width: int, height: int, max_pixels: Optional[int], what: str) -> None:
    """Refuse an image whose header claims more than ``max_pixels`` pixels, before anything is allocated."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageConversionError(
            "width", f"{what} is {width}x{height} = {width * height} pixels, above the cap of {max_pixels} "
                     f"(parameter max_image_pixels)")


def _canonical(encoding: Any) -> str:
    if not isinstance(encoding, str):
        raise ImageConversionError("encoding", f"must be a string, got {type(encoding).__name__} {encoding!r}")
    enc = encoding.strip()
    upper = enc.upper()
    if _CV_TYPE.match(upper):
        return upper
    low = enc.lower()
    if low in _NAMED:
        return low
    raise ImageConversionError(
        "encoding",
        f"unknown encoding {encoding!r}; supported: {', '.join(_NAMED)} and <8U|8S|16U|16S|32S|32F|64F>C<1-4>")


def _fmt(encoding: str) -> _Fmt:
    if encoding in _NAMED:
        return _NAMED[encoding]
    m = _CV_TYPE.match(encoding)
    return _Fmt(np.dtype(_CV_DEPTHS[m.group(1)]), int(m.group(2)), "packed")


def _get(msg: Any, field: str) -> Any:
    try:
        return getattr(msg, field)
    except AttributeError:
        raise ImageConversionError(field, f"message {type(msg).__name__} has no field {field!r}") from None


def _dim(msg: Any, field: str) -> int:
    value = _get(msg, field)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ImageConversionError(field, f"must be an integer, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ImageConversionError(field, f"must be > 0, got {value}")
    return int(value)


def _bytes_view(data: Any, field: str = "data") -> np.ndarray:
    """1-D uint8 view of a message's data (no copy for buffer-protocol objects)."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            data = np.ascontiguousarray(data)
            return data.reshape(-1).view(np.uint8)
        return data.reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview, _array.array)):
        if isinstance(data, _array.array) and data.itemsize != 1:
            raise ImageConversionError(field, f"array.array must have typecode 'B', got {data.typecode!r}")
        return np.frombuffer(data, dtype=np.uint8)
    if isinstance(data, (list, tuple)):
        try:
            return np.asarray(data, dtype=np.uint8)
        except (ValueError, OverflowError, TypeError) as exc:
            raise ImageConversionError(field, f"list data must hold bytes 0..255 ({exc})") from None
    raise ImageConversionError(field, f"unsupported data type {type(data).__name__}; expected bytes or array.array")


def image_msg_to_array(msg: Any, *, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode a ``sensor_msgs/Image``-like object into a numpy array (a view of ``msg.data`` when possible).

    Raises :class:`ImageConversionError` for an unknown encoding, non-positive width/height, more than
    ``max_pixels`` pixels (``None``: no cap), ``step`` smaller than a row, ``data`` shorter than ``step × height``
    (``step × height × 3/2`` for NV12/NV21), and odd sizes where the encoding needs even ones (yuv422 width;
    NV12/NV21 width and height).

    Rows padded to a ``step`` that is not a multiple of the element size (legal in ROS: ``mono16`` 8 px wide with
    ``step`` 17), and data whose start is not aligned for the element type, are copied row by row into an aligned
    array: OpenCV refuses such strides.
    """
    encoding = _canonical(_get(msg, "encoding"))
    fmt = _fmt(encoding)
    height = _dim(msg, "height")
    width = _dim(msg, "width")
    step = _get(msg, "step")
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise ImageConversionError("step", f"must be an integer, got {type(step).__name__} {step!r}")
    step = int(step)
    _check_pixels(width, height, max_pixels, "the image")
    if fmt.kind == "yuv422" and width % 2:
        raise ImageConversionError("width", f"{encoding} packs 2 pixels per 4 bytes, width must be even, got {width}")
    if fmt.kind == "nv" and (width % 2 or height % 2):
        raise ImageConversionError("width" if width % 2 else "height",
                                   f"{encoding} needs an even width and height, got {width}x{height}")
    row_bytes = width * fmt.channels * fmt.dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            "step", f"{step} is smaller than width × bytes per pixel = {width} × "
                    f"{fmt.channels * fmt.dtype.itemsize} = {row_bytes} for {encoding}")
    rows = height * 3 // 2 if fmt.kind == "nv" else height
    buf = _bytes_view(_get(msg, "data"))
    if buf.size < step * rows:
        raise ImageConversionError(
            "data", f"has {buf.size} bytes, fewer than step × rows = {step} × {rows} = {step * rows} "
                    f"({encoding} {width}x{height})")
    plane = buf[: step * rows].reshape(rows, step)[:, :row_bytes]
    if fmt.dtype.itemsize > 1 and (step % fmt.dtype.itemsize or buf.ctypes.data % fmt.dtype.itemsize):
        plane = np.ascontiguousarray(plane)  # rows at element-misaligned offsets: copy them
    if fmt.dtype.itemsize > 1:
        big = bool(_get(msg, "is_bigendian"))
        plane = plane.view(fmt.dtype.newbyteorder(">" if big else "<"))
        if big != _HOST_BIG:
            plane = plane.astype(fmt.dtype.newbyteorder("="))
    if (fmt.kind == "packed" and fmt.channels > 1) or fmt.kind == "yuv422":
        plane = plane.reshape(rows, width, fmt.channels)
    return DecodedImage(plane, encoding)


def _scale_to_u8(img: np.ndarray, encoding: str, value_range: Optional[Tuple[float, float]]) -> np.ndarray:
    """Map a single-channel non-8-bit image to uint8 (rules in :func:`to_bgr8`)."""
    if value_range is not None:
        try:
            lo, hi = float(value_range[0]), float(value_range[1])
        except (TypeError, ValueError, IndexError):
            raise ImageConversionError("value_range", f"must be (low, high), got {value_range!r}") from None
        if not hi > lo:
            raise ImageConversionError("value_range", f"needs high > low, got {value_range!r}")
        with np.errstate(over="ignore", invalid="ignore"):  # inf/NaN pixels and huge values clip below
            scaled = (img.astype(np.float32) - lo) * np.float32(255.0 / (hi - lo))
        return np.rint(np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255)).astype(np.uint8)
    if encoding == "mono16":
        return cv2.convertScaleAbs(img, alpha=1.0 / 257.0)
    src = img
    valid = (np.isfinite(src) & (src != 0)) if src.dtype.kind == "f" else src != 0
    out = np.zeros(img.shape, np.uint8)
    if valid.any():
        cv2.normalize(src, out, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U, mask=valid.view(np.uint8))
    return out


def decoded_to_bgr8(decoded: DecodedImage, *, rgb: bool = False,
                    value_range: Optional[Tuple[float, float]] = None) -> np.ndarray:
    """Convert a :class:`DecodedImage` to H×W×3 uint8 BGR (or RGB with ``rgb=True``); see :func:`to_bgr8`."""
    enc, img = decoded.encoding, decoded.array
    if enc in ("bgr16", "rgb16", "16UC3"):
        img8 = cv2.convertScaleAbs(img, alpha=1.0 / 257.0)
        want_swap = (enc == "rgb16") != rgb
        return cv2.cvtColor(img8, cv2.COLOR_BGR2RGB) if want_swap else img8
    if enc in _SCALED:
        gray = _scale_to_u8(img, enc, value_range)
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB if rgb else cv2.COLOR_GRAY2BGR)
    codes = _COLOR_CODES.get(enc)
    if codes is None:
        raise ImageConversionError("encoding", f"no colour conversion from {enc!r} to {'rgb8' if rgb else 'bgr8'}")
    code = codes[1] if rgb else codes[0]
    return img if code is None else cv2.cvtColor(img, code)


def to_bgr8(msg: Any, *, value_range: Optional[Tuple[float, float]] = None,
            max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an Image message to H×W×3 uint8 BGR (the order OpenCV and AXERA YOLO models use).

    Colour encodings go through ``cv2.cvtColor`` (YUV422 UYVY/YUY2, NV12/NV21, Bayer demosaicing). ``bgr8`` input is
    returned as a read-only view of ``msg.data`` (no copy); copy it before writing into it.

    Scaling of non-8-bit single-channel images:
    * ``mono16`` (camera intensity): full range, ``v / 257`` (0..65535 → 0..255).
    * ``16UC1`` / ``32FC1`` (typically depth): min-max over the valid pixels (non-zero, finite) of *this* frame
      to 0..255; invalid pixels become 0. Pass ``value_range=(low, high)`` for a fixed scale instead (no
      frame-to-frame flicker), e.g. ``(0, 5000)`` for millimetre depth up to 5 m.
    * ``bgr16`` / ``rgb16``: ``v / 257``.

    ``max_pixels`` caps width × height (see :func:`image_msg_to_array`).
    """
    return decoded_to_bgr8(image_msg_to_array(msg, max_pixels=max_pixels), value_range=value_range)


def to_rgb8(msg: Any, *, value_range: Optional[Tuple[float, float]] = None,
            max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Like :func:`to_bgr8` but RGB channel order (``rgb8`` input comes back as a view)."""
    return decoded_to_bgr8(image_msg_to_array(msg, max_pixels=max_pixels), rgb=True, value_range=value_range)


# ------------------------------------------------------------------------------------------------- publishing
def _expect(array: np.ndarray, encoding: str, shape: Tuple[Optional[int], ...], dtype: np.dtype) -> None:
    ok = array.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, array.shape))
    if not ok or array.dtype.newbyteorder("=") != dtype.newbyteorder("="):
        want = "×".join("N" if s is None else str(s) for s in shape)
        raise ImageConversionError("array", f"{encoding} needs a {want} {dtype.name} array, "
                                            f"got {array.dtype.name}{list(array.shape)}")


def array_to_image_fields(array: np.ndarray, encoding: str, *, data_as: str = "bytes") -> Dict[str, Any]:
    """Fields of a ``sensor_msgs/Image`` for ``array`` in ``encoding`` (layouts as in the module table).

    Returns ``dict(height, width, encoding, is_bigendian, step, data)`` with a tight ``step`` and host byte order.
    ``data`` is ``bytes``; pass ``data_as="array"`` for ``array.array('B')``, which rclpy stores without the slow
    per-element check it applies to ``bytes``.
    """
    if not isinstance(array, np.ndarray):
        raise ImageConversionError("array", f"must be a numpy array, got {type(array).__name__}")
    if data_as not in ("bytes", "array"):
        raise ImageConversionError("data_as", f"must be 'bytes' or 'array', got {data_as!r}")
    enc = _canonical(encoding)
    fmt = _fmt(enc)
    if array.ndim < 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageConversionError("array", f"needs a non-empty 2-D or 3-D array, got shape {list(array.shape)}")
    if fmt.kind == "nv":
        _expect(array, enc, (None, None), fmt.dtype)
        rows, width = array.shape
        if rows % 3 or (rows // 3 * 2) % 2 or width % 2:
            raise ImageConversionError(
                "array", f"{enc} needs a (H·3/2)×W array with even H and W, got {list(array.shape)}")
        height = rows // 3 * 2
    else:
        shape = (None, None) if fmt.channels == 1 else (None, None, fmt.channels)
        _expect(array, enc, shape, fmt.dtype)
        height, width = array.shape[:2]
        if fmt.kind == "yuv422" and width % 2:
            raise ImageConversionError("array", f"{enc} needs an even width, got {width}")
    native = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
    data = native.tobytes()
    return {
        "height": int(height),
        "width": int(width),
        "encoding": encoding.strip(),
        "is_bigendian": int(_HOST_BIG and fmt.dtype.itemsize > 1),
        "step": int(width * fmt.channels * fmt.dtype.itemsize),
        "data": _array.array("B", data) if data_as == "array" else data,
    }
