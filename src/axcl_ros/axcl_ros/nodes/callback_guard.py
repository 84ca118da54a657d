"""The callback boundary of the axcl_ros nodes: no exception escapes a subscription, timer, service, parameter or
QoS-event callback; each one is counted by kind, logged (throttled) and the node keeps serving."""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from typing import Any, Callable, Dict, Optional

from rcl_interfaces.msg import SetParametersResult

_EVENT_CALLBACKS = ("deadline", "incompatible_qos", "liveliness", "message_lost", "incompatible_type", "matched")


class BadInputLog:
    """Counts rejected inputs per kind and logs them, throttled, so a flood of bad messages stays readable."""

    def __init__(self, logger, period_s: float = 5.0, verb: str = "rejected") -> None:
        self._logger = logger
        self._verb = verb
        self._period = period_s
        self._last: Dict[str, float] = {}
        self._suppressed: Counter = Counter()
        self.counts: Counter = Counter()
        self._lock = threading.Lock()

    def report(self, kind: str, error: BaseException | str) -> None:
        """Count one bad input of ``kind`` and log it unless the same kind was logged less than a period ago."""
        now = time.monotonic()
        with self._lock:
            self.counts[kind] += 1
            if now - self._last.get(kind, -1e9) < self._period:
                self._suppressed[kind] += 1
                return
            self._last[kind] = now
            suppressed = self._suppressed.pop(kind, 0)
        more = f" ({suppressed} similar suppressed)" if suppressed else ""
        self._logger.error(f"{self._verb} {kind}: {error}{more}")

    @property
    def total(self) -> int:
        """All rejected inputs so far."""
        with self._lock:
            return sum(self.counts.values())


class CallbackGuard:
    """Mixin for rclpy nodes (list it before ``Node``/``LifecycleNode``): the ``create_*`` overrides put every
    callback behind :meth:`guard`. Call :meth:`start_callback_guard` right after ``Node.__init__``; errors raised
    while the node is being constructed still propagate."""

    callback_errors: Optional[BadInputLog] = None
    last_callback_error: str = ""

    def start_callback_guard(self) -> None:
        """Start counting: from now on a callback's exception is counted and logged instead of raised."""
        self.callback_errors = BadInputLog(self.get_logger(), verb="callback failed:")
        self.last_callback_error = ""

    def guard(self, kind: str, callback: Callable, fallback: Optional[Callable[..., Any]] = None) -> Callable:
        """``callback`` wrapped so that no exception escapes it: each one is counted under ``kind`` (shown on
        /diagnostics as ``callback_errors``), logged (throttled per kind), and ``fallback(*args)`` (or None) returned.

        Every subscription, timer, service and parameter callback of these nodes goes through it (the ``create_*``
        overrides below); nodes wrap their executor completions and action callbacks with it explicitly.
        """
        @functools.wraps(callback)
        def guarded(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the boundary: a callback never takes the process down
                self.note_callback_error(kind, exc)
                return fallback(*args) if fallback is not None else None
        return guarded

    def note_callback_error(self, kind: str, exc: BaseException) -> None:
        """Count and log (throttled) an exception caught at the callback boundary."""
        text = f"{type(exc).__name__}: {exc}"
        self.last_callback_error = f"{kind}: {text}"[:300]
        if self.callback_errors is None:  # during construction
            raise exc
        self.callback_errors.report(kind, text)

    def create_subscription(self, msg_type, topic, callback, qos_profile, **kwargs):
        events = kwargs.get("event_callbacks")
        for name in _EVENT_CALLBACKS:  # QoS event callbacks (incompatible QoS, message lost ...) are callbacks too
            handler = getattr(events, name, None)
            if handler is not None:
                setattr(events, name, self.guard(f"{name} event on {topic}", handler))
        return super().create_subscription(msg_type, topic, self.guard(f"subscription {topic}", callback),
                                           qos_profile, **kwargs)

    def create_timer(self, timer_period_sec, callback, *args, **kwargs):
        return super().create_timer(timer_period_sec, self.guard("timer", callback), *args, **kwargs)

    def create_service(self, srv_type, srv_name, callback, **kwargs):
        def refuse(request, response):
            return _failed_response(srv_type, response, self.last_callback_error)
        return super().create_service(srv_type, srv_name, self.guard(f"service {srv_name}", callback, refuse),
                                      **kwargs)

    def add_on_set_parameters_callback(self, callback):
        def refuse(params):
            return SetParametersResult(successful=False, reason=f"internal error: {self.last_callback_error}")
        return super().add_on_set_parameters_callback(self.guard("parameters", callback, refuse))


def _failed_response(srv_type, response, reason: str):
    """A service response saying the call failed (``success``/``message`` when the type has them)."""
    if response is None:
        response = srv_type.Response()
    if hasattr(response, "success"):
        response.success = False
    if hasattr(response, "message"):
        response.message = f"internal error: {reason}"
    return response
