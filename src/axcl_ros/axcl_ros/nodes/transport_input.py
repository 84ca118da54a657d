"""One input subscription whose QoS matches its publishers and whose transport losses are counted.

``input_qos: auto`` does what ``ros2 topic echo`` and rosbag2 do: look at the publishers on the topic and subscribe
reliable when every publisher is reliable, best effort otherwise (also while there is none yet: best effort matches
any publisher). The choice is re-checked every ``recheck_s`` and the subscription re-created when publishers come or
go and the answer changes; each choice is logged. ``sensor_data``, ``reliable`` and ``system_default`` stay fixed.

Samples lost in transport are counted from the subscription's message-lost event (rclpy >= Humble with
rmw_fastrtps; RMW_EVENT_MESSAGE_LOST). Where an rclpy/RMW pair does not offer it, ``lost_source`` says
``"unavailable"`` and the caller counts gaps in its own sequence (stamps) instead.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import Subscription

try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

from .qos import QOS_CHOICES, make_qos

INPUT_QOS_CHOICES = ("auto",) + QOS_CHOICES
#: keep-last depth of the camera inputs. 1 keeps latency bounded: with 5, a host whose frame intake cannot keep up
#: (4 cameras x 10 fps on 2 cores, test_soak) drains a backlog oldest-first and its latency drifted 11 -> 122 ms in
#: 45 s (passes with 1). A deeper queue (5) recovers frames lost to short stalls (35-300 ms at 30 fps, issue #11)
#: when the node keeps up on average: a per-node choice, not the default.
DEFAULT_INPUT_DEPTH = 1
#: rclpy hands ``(msg, message_info)`` to two-argument callbacks (Iron and later; Humble passes the message only)
MESSAGE_INFO = hasattr(Subscription, "CallbackType")
PROFILE_HINT = 'eval "$(python3 -m axcl_ros.transport_profile)"'


def reliability_for(publishers) -> ReliabilityPolicy:
    """``auto``'s choice for a list of ``TopicEndpointInfo``: reliable iff there are publishers, all reliable."""
    if publishers and all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers):
        return ReliabilityPolicy.RELIABLE
    return ReliabilityPolicy.BEST_EFFORT


def skipped_in_queue(sequence_gaps: int, lost_in_transport: int) -> int:
    """Samples replaced in a subscription's keep-last history before the node took them: the publisher's sequence
    gaps (``TransportInput``'s ``on_gap``) that the middleware did not report lost in transport."""
    return max(0, sequence_gaps - lost_in_transport)


def describe_publishers(publishers) -> str:
    """``2 publishers: best_effort, reliable`` for logs."""
    if not publishers:
        return "no publishers yet"
    kinds = ", ".join(p.qos_profile.reliability.name.lower() for p in publishers)
    return f"{len(publishers)} publisher{'s' if len(publishers) > 1 else ''}: {kinds}"


class TransportInput:
    """A subscription on ``topic`` with ``input_qos`` (``auto`` or fixed), keep-last ``depth``, loss accounting.

    ``lost`` counts samples the middleware reported lost; ``on_lost(count)`` is called for each report (from the
    executor). ``on_gap(count)`` is called for each gap in the publisher's sequence numbers between consecutive
    delivered samples: transport losses plus samples replaced in the keep-last history before the node took them,
    which no middleware event reports (see :func:`skipped_in_queue`). Gaps are counted only while the topic has one
    publisher (several publishers' numbers interleave) and where rclpy passes message info (``MESSAGE_INFO``).
    ``reliability`` is the policy in force (``None`` while stopped); ``switches`` counts re-subscriptions.
    """

    def __init__(self, node, msg_type, topic: str, callback: Callable, qos_name: str, depth: int, *,
                 callback_group=None, on_lost: Optional[Callable[[int], None]] = None,
                 on_incompatible: Optional[Callable[[object], None]] = None,
                 on_gap: Optional[Callable[[int], None]] = None, recheck_s: float = 1.0) -> None:
        if qos_name not in INPUT_QOS_CHOICES:
            raise ValueError(f"input_qos={qos_name!r}: choose one of {INPUT_QOS_CHOICES}")
        self.node, self.msg_type, self.topic, self.callback = node, msg_type, topic, callback
        self.qos_name, self.depth = qos_name, max(1, int(depth))
        self.callback_group, self.on_lost, self.on_incompatible = callback_group, on_lost, on_incompatible
        self.recheck_s = recheck_s
        self.on_gap = on_gap
        self.lost = 0
        self.lost_source = "event"
        self._last_sequence: Optional[int] = None
        self.switches = 0
        self.reliability: Optional[ReliabilityPolicy] = None
        self.publishers_text = ""
        self._sub = None
        self._timer = None
        self._lock = threading.Lock()

    # -- life --------------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Subscribe (and, with ``auto``, start watching the publishers)."""
        with self._lock:
            self._subscribe(self._wanted())
        if self.qos_name == "auto" and self._timer is None:
            self._timer = self.node.create_timer(self.recheck_s, self._recheck, callback_group=self.callback_group)

    def stop(self) -> None:
        """Unsubscribe and stop watching."""
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
            self._timer = None
        with self._lock:
            if self._sub is not None:
                self.node.destroy_subscription(self._sub)
                self._sub = None
            self.reliability = None

    @property
    def qos_text(self) -> str:
        """``auto: best_effort`` / ``reliable`` for diagnostics."""
        rel = self.reliability.name.lower() if self.reliability is not None else "stopped"
        return f"auto: {rel}" if self.qos_name == "auto" else f"{self.qos_name}: {rel}"

    # -- internals ---------------------------------------------------------------------------------------------------
    def publishers(self):
        """The topic's publishers (``TopicEndpointInfo``), empty on a failed graph query."""
        try:
            return self.node.get_publishers_info_by_topic(self.topic)
        except Exception:  # noqa: BLE001 - a graph query never stops the input
            return []

    def _wanted(self) -> QoSProfile:
        if self.qos_name != "auto":
            return make_qos(self.qos_name, depth=self.depth)
        pubs = self.publishers()
        self.publishers_text = describe_publishers(pubs)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.depth, reliability=reliability_for(pubs),
                          durability=DurabilityPolicy.VOLATILE)

    def _subscribe(self, qos: QoSProfile) -> None:
        if self._sub is not None:
            self.node.destroy_subscription(self._sub)
            self._sub = None
        self._last_sequence = None  # samples sent while re-subscribing are not this subscription's to count
        self._sub = self._create(qos)
        self.reliability = qos.reliability
        if self.qos_name == "auto":
            self.node.get_logger().info(f"input_qos auto on {self.topic}: {qos.reliability.name.lower()}, keep last "
                                        f"{self.depth} ({self.publishers_text})")

    def _create(self, qos: QoSProfile):
        kwargs = {"callback_group": self.callback_group} if self.callback_group is not None else {}
        callback = self._deliver if MESSAGE_INFO else self.callback
        incompatible = self.on_incompatible or (lambda event: None)
        if self.lost_source == "event":
            try:
                events = SubscriptionEventCallbacks(incompatible_qos=incompatible, message_lost=self._lost)
                return self.node.create_subscription(self.msg_type, self.topic, callback, qos,
                                                     event_callbacks=events, **kwargs)
            except Exception as exc:  # noqa: BLE001 - TypeError (old rclpy) or UnsupportedEventTypeError (RMW)
                self.lost_source = "unavailable"
                self.node.get_logger().warning(f"no message-lost event on {self.topic} ({type(exc).__name__}: "
                                               f"{exc}); transport losses are estimated from stamp gaps")
        events = SubscriptionEventCallbacks(incompatible_qos=incompatible)
        return self.node.create_subscription(self.msg_type, self.topic, callback, qos,
                                             event_callbacks=events, **kwargs)

    def _deliver(self, msg, info) -> None:
        """Subscription callback with message info: count sequence gaps, then hand the message on."""
        sequence = int(info.get("publication_sequence_number") or 0) if isinstance(info, dict) else 0
        if sequence:  # 0: the RMW does not number samples
            last, self._last_sequence = self._last_sequence, sequence
            if (last is not None and sequence > last + 1 and self.on_gap is not None
                    and self._one_publisher()):
                self.on_gap(sequence - last - 1)
        self.callback(msg)

    def _one_publisher(self) -> bool:
        try:
            return self.node.count_publishers(self.topic) == 1
        except Exception:  # noqa: BLE001 - a graph query never stops the input
            return False

    def _lost(self, info) -> None:
        change = int(getattr(info, "total_count_change", 0))
        if change <= 0:
            return
        self.lost += change
        if self.on_lost is not None:
            self.on_lost(change)

    def _recheck(self) -> None:
        with self._lock:
            if self._sub is None:
                return
            qos = self._wanted()
            if qos.reliability != self.reliability:
                self.switches += 1
                self._subscribe(qos)
