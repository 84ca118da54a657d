"""Spinning that survives lifecycle transitions made from other threads and callbacks that raise; process start-up
that survives an unusable log directory.

When a node destroys a subscription (``deactivate``) on one thread while an executor on another thread builds its wait
set, rclpy can raise ``InvalidHandle`` ("destruction was requested") from an entity's event handler: seen in this
project's fault-injection tests, where it silently stopped the spinning thread and every service of the process went
quiet. The wait is simply retried: the destroyed entity is gone from the next wait set.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, List, Optional, Sequence

try:
    from rclpy._rclpy_pybind11 import InvalidHandle
except ImportError:  # pragma: no cover - other rclpy builds
    InvalidHandle = RuntimeError


_spin_errors = [0]


def spin_until(executor, should_stop: Optional[Callable[[], bool]] = None, timeout_sec: float = 0.1) -> None:
    """Spin ``executor`` until its context shuts down, the executor is shut down, or ``should_stop()`` is true."""
    context = executor.context
    while context.ok() and not getattr(executor, "_is_shutdown", False) and not (should_stop and should_stop()):
        try:
            executor.spin_once(timeout_sec=timeout_sec)
        except InvalidHandle:
            continue
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - last resort: a callback outside the nodes' guard (rclpy's own)
            if type(exc).__name__ == "ExternalShutdownException":
                raise
            _spin_errors[0] += 1
            import rclpy.logging

            rclpy.logging.get_logger("axcl_ros.spin").error(
                f"a callback raised {type(exc).__name__}: {exc}; still spinning ({_spin_errors[0]} so far)",
                throttle_duration_sec=5.0)


def ros_log_dir() -> str:
    """The directory rcl's file logging will create: ``ROS_LOG_DIR``, else ``$ROS_HOME/log``, else ``~/.ros/log``."""
    explicit = os.environ.get("ROS_LOG_DIR", "")
    if explicit:
        return os.path.expanduser(explicit)
    home = os.environ.get("ROS_HOME", "") or os.path.join(os.path.expanduser("~"), ".ros")
    return os.path.join(os.path.expanduser(home), "log")


def init_args(args: Optional[Sequence[str]]) -> Optional[List[str]]:
    """``args`` for ``rclpy.init``: when the log directory cannot be created (read-only home, a bad ROS_LOG_DIR),
    rcl would fail in ``rclpy.init`` and the node would die; file logging is turned off instead (console logging and
    /rosout stay) and the reason is printed."""
    directory = ros_log_dir()
    try:
        os.makedirs(directory, exist_ok=True)
        if os.access(directory, os.W_OK):
            return None if args is None else list(args)
        reason = "not writable"
    except OSError as exc:
        reason = exc.strerror or str(exc)
    print(f"[axcl_ros] log directory {directory!r} cannot be used ({reason}): file logging off, console and "
          f"/rosout logging on; set ROS_LOG_DIR to a writable directory to get log files", file=sys.stderr)
    out = list(sys.argv if args is None else args)
    if "--ros-args" not in out:
        out.append("--ros-args")
    return out + ["--disable-external-lib-logs"]
