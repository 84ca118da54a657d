"""Model adapters (pre/post-processing around a runtime Session; no rclpy).

Submodules: ``yolo`` (detector adapter; ``yolo_decode``, ``detector_config``), ``letterbox``, ``labels``, ``speech``
(segmenter, pipeline), ``whisper``. The YOLO names below are imported lazily so
that importing another adapter package (e.g. ``models.whisper``) does not pull in OpenCV.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "YoloAdapter": "yolo", "DetectorConfig": "detector_config", "Detections": "yolo",
    "ModelLayoutError": "yolo", "ModelOutputError": "yolo", "DetectorConfigError": "detector_config",
    "LetterboxInfo": "letterbox", "letterbox": "letterbox", "unletterbox_boxes": "letterbox",
    "COCO80": "labels", "LabelsError": "labels", "load_labels": "labels", "resolve_labels": "labels",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
