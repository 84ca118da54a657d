"""Camera subscriptions shared by the image nodes: raw or compressed transport, QoS, per-camera loss accounting.

Every frame a camera publishes ends up in one of the per-camera counters on /diagnostics: ``published`` (a result
went out), ``lost_in_transport`` (the middleware's message-lost event; a stamp-gap estimate where the rclpy/RMW pair
has no such event), ``dropped`` (replaced in the executor's latest-only slot) or ``errors`` (rejected as malformed or
failed). The first transport loss on a camera logs (throttled) the sample size, the publishers' QoS and the command
that puts the shipped transport profile in force in the camera driver's process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, List

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from ..io.image_transport import TRANSPORTS, transport_topic
from ..io.stamps import stamp_to_seconds
from .common import sibling_topic
from .parameters import ParamSpec
from .transport_input import (
    DEFAULT_INPUT_DEPTH,
    INPUT_QOS_CHOICES,
    PROFILE_HINT,
    TransportInput,
    describe_publishers,
    skipped_in_queue,
)

#: the QoS parameters of every camera input (detector, depth): one declaration, one meaning.
INPUT_QOS_PARAMS = (
    ParamSpec("input_qos", "auto", "Input QoS: auto = reliable when every publisher on the topic is reliable, best "
                                   "effort otherwise (re-checked as publishers come and go); sensor_data = best "
                                   "effort; reliable; system_default.", choices=INPUT_QOS_CHOICES),
    ParamSpec("input_depth", DEFAULT_INPUT_DEPTH, "Keep-last depth of the input subscriptions (the executor still "
                                                  "runs only the newest frame).", min=1, max=100),
)


class StampGaps:
    """Estimates frames missing from a stream by its stamps (the fallback when there is no message-lost event).

    A step longer than 1.5x the median of the recent steps counts ``round(step / median) - 1`` missing frames.
    """

    def __init__(self, window: int = 15) -> None:
        self.window = window
        self._steps: list = []
        self._last: float | None = None
        self.missing = 0

    def add(self, stamp_s: float) -> int:
        """Account one stamp; return the frames estimated missing before it."""
        last, self._last = self._last, stamp_s
        if last is None or stamp_s <= last:
            return 0
        step = stamp_s - last
        missing = 0
        if len(self._steps) >= 3:
            median = float(np.median(self._steps))
            if median > 0 and step > 1.5 * median:
                missing = int(round(step / median)) - 1
        if not missing:
            self._steps = (self._steps + [step])[-self.window:]
        self.missing += missing
        return missing


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
    lost_in_transport: int = 0
    sequence_gaps: int = 0
    sample_bytes: int = 0
    last_latency_ms: float = 0.0
    publishers: dict = field(default_factory=dict)
    input: TransportInput | None = None
    gaps: StampGaps = field(default_factory=StampGaps)

    @property
    def skipped_in_queue(self) -> int:
        """Frames the camera sent that were replaced in the subscription's keep-last history before the node took
        them: publisher sequence gaps not reported lost in transport (0 where the gaps cannot be counted)."""
        return skipped_in_queue(self.sequence_gaps, self.lost_in_transport)

    def output(self, name: str) -> str:
        """Topic for output ``name`` in this camera's namespace."""
        return sibling_topic(self.topic, name)


class CameraInputs:
    """Creates (on activate) and destroys (on deactivate) one subscription per camera topic.

    ``on_frame(stream, msg, t_received)`` is called for every message; with the ``compressed`` transport the node
    subscribes to ``<topic>/compressed`` (image_transport's naming).
    """

    def __init__(self, node, topics: List[str], transport: str, qos_name: str,
                 on_frame: Callable[[CameraStream, object, float], None], depth: int = DEFAULT_INPUT_DEPTH) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"input_transport={transport!r}: choose one of {TRANSPORTS}")
        if not topics or any(not t for t in topics):
            raise ValueError(f"image topics must be a non-empty list of topic names, got {topics!r}")
        if len(set(topics)) != len(topics):
            raise ValueError(f"image topics must be unique, got {topics!r}")
        self.node = node
        self.transport = transport
        if qos_name not in INPUT_QOS_CHOICES:
            raise ValueError(f"input_qos={qos_name!r}: choose one of {INPUT_QOS_CHOICES}")
        self.qos_name = qos_name
        self.depth = int(depth)
        self.on_frame = on_frame
        name = node.get_fully_qualified_name()
        self.streams = [CameraStream(i, t, f"{name}:{t}") for i, t in enumerate(topics)]

    def start(self) -> None:
        """Subscribe to every camera."""
        msg_type = CompressedImage if self.transport == "compressed" else Image
        for stream in self.streams:
            if stream.input is not None:
                continue
            topic = transport_topic(stream.topic, self.transport)
            stream.input = TransportInput(
                self.node, msg_type, topic, lambda msg, s=stream: self._receive(s, msg), self.qos_name, self.depth,
                on_lost=lambda n, s=stream: self._lost(s, n),
                on_incompatible=lambda event, s=stream: self._qos_mismatch(s, event),
                on_gap=lambda n, s=stream: setattr(s, "sequence_gaps", s.sequence_gaps + n))
            stream.input.start()

    def _lost(self, stream: CameraStream, count: int) -> None:
        stream.lost_in_transport += count
        pubs = describe_publishers(stream.input.publishers()) if stream.input is not None else "publishers unknown"
        size = (f"{stream.sample_bytes:,} B samples" if stream.sample_bytes
                else "no sample has arrived yet: typical of images over 512 KB")
        self.node.get_logger().warning(
            f"{stream.lost_in_transport} frames lost in transport on {stream.topic} ({size}; {pubs}; subscribed "
            f"{stream.input.qos_text if stream.input else '?'}). Start the camera driver with the shipped transport "
            f"profile: {PROFILE_HINT} (README: QoS, large images and the transport profile)",
            throttle_duration_sec=10.0)

    def _qos_mismatch(self, stream: CameraStream, event) -> None:
        stream.qos_mismatches += 1
        self.node.get_logger().error(
            f"a publisher on {stream.topic} offers QoS incompatible with input_qos (policy id "
            f"{event.last_policy_kind}): no images will arrive from it; use input_qos: auto or sensor_data (best "
            f"effort accepts reliable and best-effort publishers)", throttle_duration_sec=10.0)

    def _receive(self, stream: CameraStream, msg) -> None:
        t_received = time.perf_counter()
        stream.received += 1
        stream.sample_bytes = len(msg.data)
        if stream.input is not None and stream.input.lost_source != "event":
            try:
                missing = stream.gaps.add(stamp_to_seconds(msg.header.stamp))
            except AttributeError:
                missing = 0
            if missing:
                self._lost(stream, missing)
        self.on_frame(stream, msg, t_received)

    def stop(self) -> None:
        """Unsubscribe from every camera."""
        for stream in self.streams:
            if stream.input is not None:
                stream.input.stop()
                stream.input = None

    def stats(self) -> dict:
        """Per-camera counters for diagnostics."""
        out = {}
        for s in self.streams:
            p = f"camera{s.index}"
            out.update({f"{p}.topic": s.topic, f"{p}.received": s.received, f"{p}.published": s.published,
                        f"{p}.lost_in_transport": s.lost_in_transport, f"{p}.skipped_in_queue": s.skipped_in_queue,
                        f"{p}.dropped": s.dropped,
                        f"{p}.errors": s.errors, f"{p}.qos_mismatches": s.qos_mismatches,
                        f"{p}.qos": s.input.qos_text if s.input is not None else self.qos_name,
                        f"{p}.lost_source": (s.input.lost_source if s.input is not None else "event"),
                        f"{p}.sample_bytes": s.sample_bytes, f"{p}.latency_ms": round(s.last_latency_ms, 2)})
        return out
