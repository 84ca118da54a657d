"""The detector's tracking stage: one ByteTrack tracker per camera, reset when a camera's stream jumps.

Runs on the executor's completion thread (where the detector post-processes), never on the device thread. The
parameters are declared here once and added to the detector's parameter list.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Hashable, Optional, Sequence

import numpy as np

from ..models.tracking import ByteTracker, TrackerConfig, TrackerConfigError
from .parameters import ParamSpec

#: parameter name → TrackerConfig field
_FIELDS = {
    "tracking_high_threshold": "high_threshold",
    "tracking_low_threshold": "low_threshold",
    "tracking_new_track_threshold": "new_track_threshold",
    "tracking_match_threshold": "match_threshold",
    "tracking_buffer": "track_buffer",
}

TRACKING_PARAMS = (
    ParamSpec("tracking", True, "ByteTrack track ids per camera (DetectionArray track_id, vision_msgs id).",
              dynamic=True),
    ParamSpec("tracking_high_threshold", 0.5, "Detections at or above this score take part in the first association "
                                              "(ByteTrack track_thresh).", min=0.0, max=1.0, dynamic=True),
    ParamSpec("tracking_low_threshold", 0.1, "Detections from this score up to the high threshold only extend "
                                             "existing tracks (second association; the detector's "
                                             "confidence_threshold must be lower for them to exist).",
              min=0.0, max=1.0, dynamic=True),
    ParamSpec("tracking_new_track_threshold", 0.6, "Minimum score of a detection that starts a new track.",
              min=0.0, max=1.0, dynamic=True),
    ParamSpec("tracking_match_threshold", 0.8, "Largest association cost 1 - IoU*score accepted in the first "
                                               "association.", min=0.0, max=1.0, dynamic=True),
    ParamSpec("tracking_buffer", 30, "Frames a lost track is kept for re-identification.", min=0, max=10000,
              dynamic=True),
    ParamSpec("tracking_max_gap", 1.0, "Seconds between frames above which a camera's tracks are reset (a stamp "
                                       "going back resets too).", min=0.0, max=3600.0, dynamic=True),
)
NAMES = frozenset(p.name for p in TRACKING_PARAMS)


def tracker_config(param: Callable[[str], Any], **override: Any) -> TrackerConfig:
    """A :class:`TrackerConfig` from the node's parameters (``override``: parameter name → new value)."""
    values = {field: override.get(name, param(name)) for name, field in _FIELDS.items()}
    values = {k: (int(v) if k == "track_buffer" else float(v)) for k, v in values.items()}
    return TrackerConfig(**values)


def check_parameter(param: Callable[[str], Any], name: str, value: Any) -> Optional[str]:
    """None when the tracking parameter ``name`` may take ``value``, else the reason."""
    if name not in _FIELDS:
        return None
    try:
        tracker_config(param, **{name: value})
    except TrackerConfigError as exc:
        return str(exc)
    return None


class CameraTrackers:
    """One :class:`ByteTracker` per camera key; thread-safe against reconfiguration from the parameter thread."""

    def __init__(self, config: TrackerConfig, max_gap_s: float) -> None:
        self._config = config
        self.max_gap_s = float(max_gap_s)
        self._trackers: Dict[Hashable, ByteTracker] = {}
        self._last_stamp: Dict[Hashable, float] = {}
        self._lock = threading.Lock()
        self.resets = 0

    @property
    def config(self) -> TrackerConfig:
        return self._config

    @config.setter
    def config(self, value: TrackerConfig) -> None:
        with self._lock:
            self._config = value
            for tracker in self._trackers.values():
                tracker.config = value

    def reset(self) -> None:
        """Forget every camera's tracks."""
        with self._lock:
            for tracker in self._trackers.values():
                tracker.reset()
            self._last_stamp.clear()

    def assign(self, key: Hashable, stamp_s: float, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Track ids (-1 = none) for one camera frame stamped ``stamp_s`` seconds."""
        with self._lock:
            tracker = self._trackers.get(key)
            if tracker is None:
                tracker = self._trackers[key] = ByteTracker(self._config)
            last = self._last_stamp.get(key)
            if last is not None and (stamp_s < last or stamp_s - last > self.max_gap_s):
                tracker.reset()
                self.resets += 1
            self._last_stamp[key] = stamp_s
            return tracker.update(boxes, scores)

    def stats(self) -> dict:
        with self._lock:
            return {"tracks alive": sum(t.num_tracks for t in self._trackers.values()),
                    "tracker resets (stream jumps)": self.resets}


def apply_track_ids(detections: Sequence[Any], vision_detections: Optional[Sequence[Any]], ids: np.ndarray) -> None:
    """Write ``ids`` into ``axcl_msgs/Detection.track_id`` and, when given, ``vision_msgs/Detection2D.id``
    (the id as a string, '' when untracked)."""
    for det, tid in zip(detections, ids):
        det.track_id = int(tid)
    for det, tid in zip(vision_detections or (), ids):
        det.id = str(int(tid)) if tid >= 0 else ""


def label_with_ids(names: Sequence[str], ids: Optional[np.ndarray]) -> list:
    """Annotation labels: ``name #id`` for tracked detections."""
    if ids is None:
        return list(names)
    return [f"{n} #{int(t)}" if t >= 0 else n for n, t in zip(names, ids)]
