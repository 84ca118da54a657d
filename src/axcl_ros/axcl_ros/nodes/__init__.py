"""Thin rclpy lifecycle nodes; all inference logic lives in ``runtime``, ``models`` and ``io``."""
