"""``builtin_interfaces/Time`` ↔ seconds (the one place the conversion is written)."""

from __future__ import annotations

from typing import Any


def stamp_to_seconds(stamp: Any) -> float:
    """``builtin_interfaces/Time`` (anything with ``sec`` and ``nanosec``) → seconds as a float."""
    return stamp.sec + stamp.nanosec * 1e-9
