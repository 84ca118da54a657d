"""Camera subscriptions shared by the image nodes: raw or compressed transport, per-camera counters."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, List

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

from ..io.image import DEFAULT_MAX_PIXELS, compressed_to_bgr8, to_bgr8
from .common import make_qos, sibling_topic

TRANSPORTS = ("raw", "compressed")


@dataclass
class CameraStream:
    """One subscribed camera: its topic, output namespace and counters."""

    index: int
    topic: str
    key: str
    received: int = 0
    published: int = 0
    dropped: int = 0
    errors: int = 0
    qos_mismatches: int = 0
    last_latency_ms: float = 0.0
    publishers: dict = field(default_factory=dict)

    def output(self, name: str) -> str:
        """Topic for output ``name`` in this camera's namespace."""
        return sibling_topic(self.topic, name)


def decode_bgr(msg, transport: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image of a raw or compressed message as BGR8 (raises ImageConversionError on bad input, and for images
    of more than ``max_pixels`` pixels, checked from the header before decoding)."""
    if transport == "compressed":
        return compressed_to_bgr8(msg, max_pixels=max_pixels)
    return to_bgr8(msg, max_pixels=max_pixels)


class CameraInputs:
    """Creates (on activate) and destroys (on deactivate) one subscription per camera topic.

    ``on_frame(stream, msg, t_received)`` is called for every message; with the ``compressed`` transport the node
    subscribes to ``<topic>/compressed`` (image_transport's naming).
    """

    def __init__(self, node, topics: List[str], transport: str, qos_name: str,
                 on_frame: Callable[[CameraStream, object, float], None]) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"input_transport={transport!r}: choose one of {TRANSPORTS}")
        if not topics or any(not t for t in topics):
            raise ValueError(f"image topics must be a non-empty list of topic names, got {topics!r}")
        if len(set(topics)) != len(topics):
            raise ValueError(f"image topics must be unique, got {topics!r}")
        self.node = node
        self.transport = transport
        self.qos = make_qos(qos_name, depth=1)
        self.on_frame = on_frame
        name = node.get_fully_qualified_name()
        self.streams = [CameraStream(i, t, f"{name}:{t}") for i, t in enumerate(topics)]
        self._subs: list = []

    def start(self) -> None:
        """Subscribe to every camera."""
        msg_type = CompressedImage if self.transport == "compressed" else Image
        for stream in self.streams:
            topic = f"{stream.topic.rstrip('/')}/compressed" if self.transport == "compressed" else stream.topic
            events = SubscriptionEventCallbacks(incompatible_qos=lambda event, s=stream: self._qos_mismatch(s, event))
            self._subs.append(self.node.create_subscription(
                msg_type, topic, lambda msg, s=stream: self._receive(s, msg), self.qos, event_callbacks=events))

    def _qos_mismatch(self, stream: CameraStream, event) -> None:
        stream.qos_mismatches += 1
        self.node.get_logger().error(
            f"a publisher on {stream.topic} offers QoS incompatible with input_qos (policy id "
            f"{event.last_policy_kind}): no images will arrive from it; use input_qos: sensor_data (best effort "
            f"accepts reliable and best-effort publishers)", throttle_duration_sec=10.0)

    def _receive(self, stream: CameraStream, msg) -> None:
        stream.received += 1
        self.on_frame(stream, msg, time.perf_counter())

    def stop(self) -> None:
        """Unsubscribe from every camera."""
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._subs = []

    def stats(self) -> dict:
        """Per-camera counters for diagnostics."""
        out = {}
        for s in self.streams:
            p = f"camera{s.index}"
            out.update({f"{p}.topic": s.topic, f"{p}.received": s.received, f"{p}.published": s.published,
                        f"{p}.dropped": s.dropped, f"{p}.errors": s.errors, f"{p}.qos_mismatches": s.qos_mismatches,
                        f"{p}.latency_ms": round(s.last_latency_ms, 2)})
        return out
