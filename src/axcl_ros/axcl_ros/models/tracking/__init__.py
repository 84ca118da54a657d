"""Multi-object tracking on detector outputs (ByteTrack with a Kalman motion model), pure numpy + scipy."""

from .bytetrack import ByteTracker, TrackerConfig, TrackerConfigError, iou_matrix, load_solver

__all__ = ["ByteTracker", "TrackerConfig", "TrackerConfigError", "iou_matrix", "load_solver"]
