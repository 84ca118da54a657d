"""Spinning that survives lifecycle transitions made from other threads.

When a node destroys a subscription (``deactivate``) on one thread while an executor on another thread builds its wait
set, rclpy can raise ``InvalidHandle`` ("destruction was requested") from an entity's event handler: seen in this
project's fault-injection tests, where it silently stopped the spinning thread and every service of the process went
quiet. The wait is simply retried: the destroyed entity is gone from the next wait set.
"""

from __future__ import annotations

from typing import Callable, Optional

try:
    from rclpy._rclpy_pybind11 import InvalidHandle
except ImportError:  # pragma: no cover - other rclpy builds
    InvalidHandle = RuntimeError


def spin_until(executor, should_stop: Optional[Callable[[], bool]] = None, timeout_sec: float = 0.1) -> None:
    """Spin ``executor`` until its context shuts down, the executor is shut down, or ``should_stop()`` is true."""
    context = executor.context
    while context.ok() and not getattr(executor, "_is_shutdown", False) and not (should_stop and should_stop()):
        try:
            executor.spin_once(timeout_sec=timeout_sec)
        except InvalidHandle:
            continue
