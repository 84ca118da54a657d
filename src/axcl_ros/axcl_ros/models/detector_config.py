"""Run-time settings of a detector (:class:`DetectorConfig`: thresholds, caps, class filter), validated on creation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, FrozenSet, Iterable, Optional

import numpy as np


class DetectorConfigError(ValueError):
    """A :class:`DetectorConfig` value is out of range."""


def _check_unit(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DetectorConfigError(f"{name} must be a number in [0, 1], got {type(value).__name__} {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise DetectorConfigError(f"{name} must be in [0, 1], got {value}")
    return value


@dataclass(frozen=True)
class DetectorConfig:
    """Run-time detection settings (immutable: swap the whole object, e.g. from a parameter callback).

    ``classes``: class ids to keep (``None`` or empty = all). Scores are taken over the kept classes only, so a
    box whose best class is filtered out can still be reported under its best *kept* class.
    ``max_candidates``: boxes passed to NMS first (highest scores first), bounding the NMS cost; the result is the
    same as without the cap (see ``YoloAdapter._finish``).
    """

    conf_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 300
    agnostic_nms: bool = False
    classes: Optional[FrozenSet[int]] = None
    max_candidates: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "conf_threshold", _check_unit("conf_threshold", self.conf_threshold))
        object.__setattr__(self, "iou_threshold", _check_unit("iou_threshold", self.iou_threshold))
        for name in ("max_detections", "max_candidates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise DetectorConfigError(f"{name} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        if not isinstance(self.agnostic_nms, (bool, np.bool_)):
            raise DetectorConfigError(f"agnostic_nms must be a bool, got {self.agnostic_nms!r}")
        object.__setattr__(self, "agnostic_nms", bool(self.agnostic_nms))
        classes = self.classes
        if classes is not None:
            if isinstance(classes, (str, bytes)) or not isinstance(classes, Iterable):
                raise DetectorConfigError(f"classes must be a set of class ids, got {classes!r}")
            ids = list(classes)
            bad = [c for c in ids if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0]
            if bad:
                raise DetectorConfigError(f"classes must hold non-negative integer ids, got {bad}")
            classes = frozenset(int(c) for c in ids) or None
        object.__setattr__(self, "classes", classes)

    def replace(self, **changes: Any) -> DetectorConfig:
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)
