"""Message <-> array conversions (no rclpy). ``image`` replaces cv_bridge for sensor_msgs images.

The image names below are imported lazily, so importing a sibling module (e.g. ``io.audio``) does not pull in
OpenCV.
"""

from __future__ import annotations

import importlib
from typing import Any

_IMAGE_NAMES = (
    "SUPPORTED_ENCODINGS", "DecodedImage", "ImageConversionError", "array_to_compressed", "array_to_image_fields",
    "compressed_to_array", "compressed_to_bgr8", "decoded_to_bgr8", "image_msg_to_array", "to_bgr8", "to_rgb8",
)

__all__ = list(_IMAGE_NAMES)


def __getattr__(name: str) -> Any:
    if name in _IMAGE_NAMES:
        return getattr(importlib.import_module(".image", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
