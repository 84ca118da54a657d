"""The one conversion between ``builtin_interfaces/Time`` stamps and seconds (or nanoseconds).

Pure: it takes the message (or its class) as an argument, so it needs no rclpy and works on any object with integer
``sec`` and ``nanosec`` fields. Stamps before the epoch are clamped to zero (a zero stamp means "unstamped" to the
audio and camera inputs).
"""

from __future__ import annotations

from typing import Any

NS_PER_S = 1_000_000_000


def stamp_to_seconds(stamp: Any) -> float:
    """Seconds of a ``builtin_interfaces/Time``-like ``stamp``."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def stamp_to_nanoseconds(stamp: Any) -> int:
    """Integer nanoseconds of a ``builtin_interfaces/Time``-like ``stamp`` (exact: a key for matching messages)."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def nanoseconds_to_stamp(nanoseconds: int, msg_or_type: Any) -> Any:
    """Write ``nanoseconds`` (clamped to >= 0) into a ``builtin_interfaces/Time`` and return it.

    ``msg_or_type``: the message to fill (e.g. ``msg.header.stamp``) or its class (a new one is made).
    """
    msg = msg_or_type() if isinstance(msg_or_type, type) else msg_or_type
    msg.sec, msg.nanosec = divmod(max(0, int(nanoseconds)), NS_PER_S)
    return msg


def seconds_to_stamp(seconds: float, msg_or_type: Any) -> Any:
    """Write ``seconds`` (rounded to the nanosecond, clamped to >= 0) into a ``builtin_interfaces/Time``; see
    :func:`nanoseconds_to_stamp`."""
    return nanoseconds_to_stamp(int(round(float(seconds) * 1e9)), msg_or_type)
