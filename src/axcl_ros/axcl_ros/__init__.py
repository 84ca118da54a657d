"""axcl_ros: ROS 2 perception (detection, depth, speech) offloaded to the AXERA AX650N card.

Inference code (``runtime``, ``models``, ``io``) never imports rclpy; only ``nodes`` and ``bringup`` do.
"""

__version__ = "0.1.0"
