"""Test helpers of axcl_ros: tiny model builders, the AXCL stub runtime (C) and its builder, ROS graph helpers, fuzz
cases, a camera stand-in process and dummy lifecycle nodes.

Not part of the installed ROS package (``colcon build`` installs ``src/axcl_ros`` only): the tests, ``bench/``,
``scripts/`` and the demo import it from ``tools/``, which ``scripts/env.sh`` puts on ``PYTHONPATH`` (and the
repository's ``conftest.py`` for pytest).
"""
