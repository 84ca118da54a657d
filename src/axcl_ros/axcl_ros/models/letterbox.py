"""Aspect-preserving resize with centred padding (letterbox), and the inverse mapping of boxes.

Geometry follows AXERA's samples: ``scale = min(H/h, W/w)``, resized size ``round(w·scale) × round(h·scale)``
(bilinear ``cv2.resize``), padding split as ``top = (H - rh) // 2``, ``bottom = H - rh - top`` (same for left/right).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np

__all__ = ["LetterboxInfo", "letterbox", "letterbox_nchw", "rect_size", "unletterbox_boxes"]


@dataclass(frozen=True)
class LetterboxInfo:
    """How an image of ``image_size`` (h, w) was placed into the letterboxed ``size`` (H, W)."""

    scale: float
    pad_left: int
    pad_top: int
    image_size: Tuple[int, int] = (0, 0)
    size: Tuple[int, int] = (0, 0)

    @property
    def resized_size(self) -> Tuple[int, int]:
        """(h, w) of the resized image inside the padding."""
        return _resized(self.image_size, self.scale)


def _resized(image_size: Tuple[int, int], scale: float) -> Tuple[int, int]:
    h, w = image_size
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


def _check(image: np.ndarray, size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    th, tw = int(size[0]), int(size[1])
    if th <= 0 or tw <= 0:
        raise ValueError(f"letterbox size must be positive, got {tuple(size)}")
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        got = list(image.shape) if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"letterbox needs a non-empty H×W or H×W×C image, got {got}")
    return th, tw


def _geometry(h: int, w: int, th: int, tw: int) -> Tuple[float, int, int, int, int]:
    """``scale, rh, rw, top, left`` of an h×w image letterboxed into th×tw."""
    scale = min(th / h, tw / w)
    rh, rw = _resized((h, w), scale)
    rh, rw = min(rh, th), min(rw, tw)
    return scale, rh, rw, (th - rh) // 2, (tw - rw) // 2


def rect_size(image_size: Tuple[int, int], size: Tuple[int, int], multiple: int) -> Tuple[int, int]:
    """The smallest ``multiple``-aligned (H, W) that holds an image of ``image_size`` (h, w) resized to fit
    ``size`` (H, W): the letterbox target of rectangular inference (Ultralytics' ``auto`` letterbox), e.g. 480×640
    instead of 640×640 for a 640×480 camera. Never larger than ``size``."""
    th, tw = size
    h, w = image_size
    rh, rw = _resized((h, w), min(th / h, tw / w))
    return min(th, -(-rh // multiple) * multiple), min(tw, -(-rw // multiple) * multiple)


def letterbox(image: np.ndarray, size: Union[int, Sequence[int]],
              pad_value: Union[int, float, Sequence[float]] = 0, *,
              interpolation: int = cv2.INTER_LINEAR, out: Optional[np.ndarray] = None,
              ) -> Tuple[np.ndarray, LetterboxInfo]:
    """Resize ``image`` (H×W or H×W×C) to fit ``size`` = (H, W) (or an int for a square) keeping its aspect ratio,
    and pad the rest with ``pad_value`` (0 for AXERA models, 114 for Ultralytics exports).

    ``out`` (optional) is a preallocated destination of the final shape and dtype, reused across frames; the
    resized image is written straight into its centre. Returns ``(letterboxed, LetterboxInfo)``.
    Raises ``ValueError`` for an empty image or a non-positive size.
    """
    th, tw = _check(image, size)
    h, w = image.shape[:2]
    scale, rh, rw, top, left = _geometry(h, w, th, tw)
    shape = (th, tw) + image.shape[2:]
    if out is None or out.shape != shape or out.dtype != image.dtype:
        out = np.empty(shape, image.dtype)
    if top or left or rh != th or rw != tw:
        # pad only the borders; the centre is overwritten by the resize below
        out[:top] = pad_value
        out[top + rh:] = pad_value
        out[top:top + rh, :left] = pad_value
        out[top:top + rh, left + rw:] = pad_value
    roi = out[top:top + rh, left:left + rw]
    if (rh, rw) == (h, w):
        roi[...] = image
    else:
        resized = cv2.resize(image, (rw, rh), dst=roi, interpolation=interpolation)
        if resized is not roi and not np.shares_memory(resized, roi):
            roi[...] = resized.reshape(roi.shape)
    return out, LetterboxInfo(scale=scale, pad_left=left, pad_top=top, image_size=(h, w), size=(th, tw))


_work = threading.local()  # per-thread resize buffer of letterbox_nchw (callbacks of several cameras run in parallel)


def letterbox_nchw(image: np.ndarray, size: Union[int, Sequence[int]], pad_value: float = 114.0, *,
                   scale: float = 1.0 / 255.0, dtype=np.float32, swap_rb: bool = True,
                   interpolation: int = cv2.INTER_LINEAR) -> Tuple[np.ndarray, LetterboxInfo]:
    """Letterbox an H×W×3 uint8 image straight into a new ``1×3×H×W`` tensor (Ultralytics-style input).

    Fuses the letterbox, the colour swap (BGR → RGB with ``swap_rb``), the scaling (``value · scale``) and the
    HWC → CHW layout change: the image is resized into a per-thread buffer reused across frames, split into its
    three channel planes (uint8), each plane is scaled once into its plane of the tensor, and only the padding is
    filled with ``pad_value · scale``. The only full-size float allocation is the returned tensor (it goes to the
    inference queue, so it cannot be reused).
    Same geometry as :func:`letterbox`.
    """
    th, tw = _check(image, size)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"letterbox_nchw needs an H×W×3 uint8 image, got {image.dtype.name}{list(image.shape)}")
    h, w = image.shape[:2]
    ratio, rh, rw, top, left = _geometry(h, w, th, tw)
    out = np.empty((1, 3, th, tw), dtype)
    planes = out[0]
    if top or left or rh != th or rw != tw:
        pad = float(pad_value) * scale
        planes[:, :top] = pad
        planes[:, top + rh:] = pad
        planes[:, top:top + rh, :left] = pad
        planes[:, top:top + rh, left + rw:] = pad
    if (rh, rw) == (h, w):
        src = image
    else:
        buf = getattr(_work, "buf", None)
        if buf is None or buf.shape != (rh, rw, 3):
            buf = _work.buf = np.empty((rh, rw, 3), np.uint8)
        src = cv2.resize(image, (rw, rh), dst=buf, interpolation=interpolation)
    factor = np.dtype(dtype).type(scale)
    # cv2.split makes each channel contiguous: numpy converts a contiguous uint8 plane about twice as fast as the
    # strided channel view of the H×W×3 image
    for c, channel in enumerate(cv2.split(src)[::-1] if swap_rb else cv2.split(src)):
        np.multiply(channel, factor, out=planes[c, top:top + rh, left:left + rw], casting="unsafe")
    return out, LetterboxInfo(scale=ratio, pad_left=left, pad_top=top, image_size=(h, w), size=(th, tw))


def unletterbox_boxes(boxes: np.ndarray, info: LetterboxInfo, *, clip: bool = True) -> np.ndarray:
    """Map N×4 ``x1, y1, x2, y2`` boxes from letterbox pixels back to the original image (new float32 array).

    With ``clip`` the boxes are clipped to ``[0, w] × [0, h]`` of the original image (continuous pixel edges).
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be N×4 (x1, y1, x2, y2), got shape {list(boxes.shape)}")
    out = boxes - np.array([info.pad_left, info.pad_top, info.pad_left, info.pad_top], np.float32)
    out /= np.float32(info.scale)
    if clip:
        h, w = info.image_size
        np.clip(out[:, 0::2], 0, w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, h, out=out[:, 1::2])
    return out
