"""Message <-> array conversions and message builders (no rclpy): ``image`` and ``compressed_image`` replace
cv_bridge for sensor_msgs images."""
