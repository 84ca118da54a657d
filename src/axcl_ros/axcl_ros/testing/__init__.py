"""Test helpers (tiny ONNX model builders, ROS graph helpers); imported by tests only."""
