"""``make demo`` (``python -m axcl_ros_demo``): the composed perception pipeline on packaged sample inputs.

Demo code, not part of the installed ROS package: ``scripts/demo.sh`` runs it from ``tools/`` (on ``PYTHONPATH``
through ``scripts/env.sh``). ``__main__`` starts the pipeline, ``report`` watches and prints its outputs,
``describe`` is the optional image-description step.
"""
