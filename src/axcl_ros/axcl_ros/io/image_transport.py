"""What image_transport's ``raw`` and ``compressed`` transports carry, as BGR8: the one decoding step of every
camera frame (detector, depth, the one-shot services)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .compressed_image import compressed_to_bgr8
from .image import DEFAULT_MAX_PIXELS, to_bgr8

#: the transports a camera input accepts (image_transport's names)
TRANSPORTS = ("raw", "compressed")


def transport_topic(topic: str, transport: str) -> str:
    """The topic a ``transport`` subscriber of camera ``topic`` listens on (``T`` or ``T/compressed``)."""
    return f"{topic.rstrip('/')}/compressed" if transport == "compressed" else topic


def decode_bgr8(msg: Any, transport: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image of a raw (``sensor_msgs/Image``) or compressed message as H×W×3 BGR8.

    Raises :class:`~axcl_ros.io.image.ImageConversionError` on bad input, and for images of more than
    ``max_pixels`` pixels (checked from the header before decoding)."""
    if transport == "compressed":
        return compressed_to_bgr8(msg, max_pixels=max_pixels)
    return to_bgr8(msg, max_pixels=max_pixels)
