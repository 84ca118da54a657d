"""The QoS profiles of the axcl_ros nodes: inputs by name (``input_qos`` choices), outputs, latched topics."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

QOS_CHOICES = ("sensor_data", "reliable", "system_default")


def make_qos(kind: str, depth: int = 1) -> QoSProfile:
    """QoS for an input: ``sensor_data`` (best effort, keep last ``depth``; subscribes to reliable and best-effort
    publishers alike), ``reliable`` or ``system_default``."""
    if kind == "sensor_data":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.VOLATILE)
    if kind == "reliable":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    if kind == "system_default":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(depth, 10))
    raise ValueError(f"unknown QoS {kind!r}; choose one of {QOS_CHOICES}")


LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


#: every output: reliable, keep last 5 (subscribers with sensor_data QoS still match)
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
