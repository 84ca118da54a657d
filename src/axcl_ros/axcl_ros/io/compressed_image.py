"""sensor_msgs/CompressedImage (JPEG, PNG, compressedDepth) <-> numpy, without cv_bridge and without rclpy.

Messages are duck-typed (any object with ``format`` and ``data``). The size in the PNG/JPEG header is checked
against a pixel cap before anything is decoded, and only JPEG and PNG bytes ever reach the decoder. Malformed input
raises :class:`~axcl_ros.io.image.ImageConversionError` naming the field.
"""

from __future__ import annotations

import array as _array
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np

from .image import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    ImageConversionError,
    _bytes_view,
    _check_pixels,
    _get,
    decoded_to_bgr8,
)

__all__ = ["compressed_dimensions", "compressed_to_array", "compressed_to_bgr8", "array_to_compressed"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8"


def _compressed_kind(fmt: str) -> str:
    """``jpeg``, ``png``, ``depth`` (compressedDepth) or ``""`` (sniff) from a CompressedImage.format string."""
    text = fmt.strip().lower()
    if not text:
        return ""
    if "compresseddepth" in text:
        return "depth"
    # "jpeg", "png", "rgb8; jpeg compressed bgr8", "bgr8; png compressed "
    tail = text.split(";")[-1].strip()
    word = tail.split()[0] if tail.split() else ""
    if word in ("jpeg", "jpg"):
        return "jpeg"
    if word == "png":
        return "png"
    raise ImageConversionError("format", f"unsupported compressed format {fmt!r}; supported: jpeg, png, "
                                         "'<enc>; jpeg compressed <enc>', '<enc>; png compressed <enc>', "
                                         "'16UC1; compressedDepth png'")


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): their segment holds the image size
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))


def compressed_dimensions(data: Any, kind: str) -> Tuple[int, int]:
    """``(width, height)`` read from a PNG (IHDR) or JPEG (SOF segment) header, without decoding the image.

    Raises :class:`ImageConversionError` when the bytes are not a well-formed header of ``kind`` (``png``/``jpeg``).
    """
    buf = _bytes_view(data)
    if kind == "png":
        head = buf[:24].tobytes()
        if not head.startswith(_PNG_MAGIC) or len(head) < 24 or head[12:16] != b"IHDR":
            raise ImageConversionError("data", f"not a PNG: no signature and IHDR chunk (first bytes {head[:16]!r})")
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if kind != "jpeg":
        raise ImageConversionError("format", f"no header parser for {kind!r}")
    raw = buf[: 1 << 20].tobytes()  # the frame header follows at most a few 64 KiB APPn segments
    if not raw.startswith(_JPEG_MAGIC):
        raise ImageConversionError("data", f"not a JPEG: no SOI marker (first bytes {raw[:8]!r})")
    i = 2
    while i + 4 <= len(raw):
        if raw[i] != 0xFF:
            raise ImageConversionError("data", f"JPEG marker expected at byte {i}, got 0x{raw[i]:02x}")
        marker = raw[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:  # stand-alone markers
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        length = int.from_bytes(raw[i + 2:i + 4], "big")
        if length < 2:
            raise ImageConversionError("data", f"JPEG segment 0x{marker:02x} at byte {i} has length {length}")
        if marker in _JPEG_SOF:
            if i + 9 > len(raw):
                break
            return int.from_bytes(raw[i + 7:i + 9], "big"), int.from_bytes(raw[i + 5:i + 7], "big")
        i += 2 + length
    raise ImageConversionError("data", f"JPEG has no frame header (SOF) in its first {len(raw)} bytes")


def compressed_to_array(msg: Any, *, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode a ``sensor_msgs/CompressedImage``-like object (JPEG or PNG) with ``cv2.imdecode``.

    Returns the image as stored: ``bgr8``/``mono8`` for JPEG; ``bgr8``, ``bgra8``, ``mono8``, ``mono16``, ``bgr16``
    or ``bgra16`` for PNG. ``compressedDepth`` (the depth_image_transport PNG with a 12-byte header) is decoded as
    ``16UC1``; its quantised 32FC1 variant is not supported. An empty format string means "sniff the bytes".

    Before decoding, the bytes must start with the signature of the format (so nothing else OpenCV knows, such as
    OpenEXR or TIFF, is ever decoded) and the size in the PNG/JPEG header must be positive and at most
    ``max_pixels`` (``None``: no cap): a 69-byte PNG claiming 65535×65535 is refused without allocating.
    """
    fmt = _get(msg, "format")
    if not isinstance(fmt, str):
        raise ImageConversionError("format", f"must be a string, got {type(fmt).__name__} {fmt!r}")
    kind = _compressed_kind(fmt)
    buf = _bytes_view(_get(msg, "data"))
    if buf.size == 0:
        raise ImageConversionError("data", f"is empty (format {fmt!r})")
    head = buf[:24].tobytes()
    if kind == "depth":
        if "32fc1" in fmt.lower():
            raise ImageConversionError("format", f"quantised 32FC1 compressedDepth is not supported ({fmt!r})")
        offset = head.find(_PNG_MAGIC)
        if offset < 0:
            raise ImageConversionError("data", f"compressedDepth payload has no PNG signature (first bytes {head!r})")
        buf, kind = buf[offset:], "png"
    elif kind == "":
        if head.startswith(_PNG_MAGIC):
            kind = "png"
        elif head.startswith(_JPEG_MAGIC):
            kind = "jpeg"
        else:
            raise ImageConversionError("data", f"empty format and the bytes are neither JPEG nor PNG ({head[:8]!r})")
    try:
        width, height = compressed_dimensions(buf, kind)
    except ImageConversionError as exc:
        raise ImageConversionError(exc.field, f"{buf.size} bytes are not a {kind} image (format {fmt!r}): "
                                              f"{str(exc).split(': ', 1)[-1]}") from None
    if width <= 0 or height <= 0:
        raise ImageConversionError("data", f"{kind} header claims a {width}x{height} image")
    _check_pixels(width, height, max_pixels, f"the {kind} image")
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # whatever the decoder still refuses is a bad input, never a crash
        raise ImageConversionError("data", f"{buf.size} bytes could not be decoded as {kind} (format {fmt!r}): "
                                           f"{str(exc).strip().splitlines()[-1][:200]}") from None
    if img is None or img.size == 0:
        raise ImageConversionError("data", f"{buf.size} bytes could not be decoded as {kind} (format {fmt!r}); "
                                           f"first bytes {head[:8]!r}")
    if "compresseddepth" in fmt.lower():
        if img.dtype != np.uint16 or img.ndim != 2:
            raise ImageConversionError("data", f"compressedDepth PNG must be 16-bit mono, got {img.dtype}{img.shape}")
        return DecodedImage(img, "16UC1")
    channels = 1 if img.ndim == 2 else img.shape[2]
    if img.dtype == np.uint8:
        enc = {1: "mono8", 3: "bgr8", 4: "bgra8"}.get(channels)
    elif img.dtype == np.uint16:
        enc = {1: "mono16", 3: "bgr16", 4: "bgra16"}.get(channels)
    else:
        enc = None
    if enc is None:
        raise ImageConversionError("data", f"decoded {kind} has unsupported layout {img.dtype}{img.shape}")
    if enc == "bgra16":
        return DecodedImage(img, "16UC4")
    return DecodedImage(img, enc)


def compressed_to_bgr8(msg: Any, *, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a CompressedImage straight to H×W×3 uint8 BGR (mono is expanded, 16-bit scaled as in to_bgr8)."""
    decoded = compressed_to_array(msg, max_pixels=max_pixels)
    if decoded.encoding == "16UC4":
        return cv2.convertScaleAbs(cv2.cvtColor(decoded.array, cv2.COLOR_BGRA2BGR), alpha=1.0 / 257.0)
    return decoded_to_bgr8(decoded)


def array_to_compressed(array: np.ndarray, fmt: str = "jpeg", quality: int = 90, *,
                        encoding: Optional[str] = None, png_level: int = 3, data_as: str = "bytes") -> Dict[str, Any]:
    """Fields of a ``sensor_msgs/CompressedImage`` (``format``, ``data`` bytes) for a BGR/BGRA/mono array.

    ``fmt`` is ``"jpeg"`` (``quality`` 1..100; uint8 H×W or H×W×3) or ``"png"`` (``png_level`` 0..9; uint8 or
    uint16, 1/3/4 channels); the array must already be in BGR(A) order. ``format`` follows image_transport,
    ``"<original>; <jpeg|png> compressed <stored>"``, e.g. ``"rgb8; jpeg compressed bgr8"``: ``stored`` is inferred
    from the array (mono8/bgr8/bgra8/mono16/bgr16), ``original`` is ``encoding`` (default: the stored one).
    ``data_as="array"`` returns ``data`` as ``array.array('B')`` (see :func:`array_to_image_fields`).
    """
    if not isinstance(array, np.ndarray) or array.ndim not in (2, 3) or array.size == 0:
        got = f"{array.dtype.name}{list(array.shape)}" if isinstance(array, np.ndarray) else type(array).__name__
        raise ImageConversionError("array", f"needs a non-empty H×W or H×W×C array, got {got}")
    if data_as not in ("bytes", "array"):
        raise ImageConversionError("data_as", f"must be 'bytes' or 'array', got {data_as!r}")
    kind = str(fmt).strip().lower()
    kind = "jpeg" if kind == "jpg" else kind
    if kind not in ("jpeg", "png"):
        raise ImageConversionError("format", f"unsupported compressed format {fmt!r}; use 'jpeg' or 'png'")
    channels = 1 if array.ndim == 2 else array.shape[2]
    if kind == "jpeg" and (array.dtype != np.uint8 or channels not in (1, 3)):
        raise ImageConversionError("array", f"jpeg needs uint8 H×W or H×W×3, got {array.dtype.name}{list(array.shape)}")
    if kind == "png" and (array.dtype not in (np.uint8, np.uint16) or channels not in (1, 3, 4)):
        raise ImageConversionError("array", f"png needs uint8/uint16 with 1, 3 or 4 channels, "
                                            f"got {array.dtype.name}{list(array.shape)}")
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ImageConversionError("quality", f"must be an integer in 1..100, got {quality!r}")
    if isinstance(png_level, bool) or not isinstance(png_level, (int, np.integer)) or not 0 <= png_level <= 9:
        raise ImageConversionError("png_level", f"must be an integer in 0..9, got {png_level!r}")
    bits = 8 if array.dtype == np.uint8 else 16
    stored = {1: f"mono{bits}", 3: f"bgr{bits}", 4: "bgra8" if bits == 8 else "16UC4"}[channels]
    original = stored if encoding is None else str(encoding).strip()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if kind == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION,
                                                                             int(png_level)]
    ok, buf = cv2.imencode(".jpg" if kind == "jpeg" else ".png", array, params)
    if not ok:
        raise ImageConversionError("array", f"cv2.imencode failed for {kind} {array.dtype.name}{list(array.shape)}")
    data = buf.tobytes()
    return {"format": f"{original}; {kind} compressed {stored}",
            "data": _array.array("B", data) if data_as == "array" else data}
