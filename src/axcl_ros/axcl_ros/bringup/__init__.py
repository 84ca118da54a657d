"""Bring-up: the one-process host (``perception_host``), the lifecycle manager (``lifecycle_manager``), the node
type registry and the parameter-file helpers they share.

Submodules import rclpy only where they need it: ``node_registry`` and ``params`` work without ROS.
"""

__all__ = ["host", "lifecycle_manager", "node_registry", "params"]
