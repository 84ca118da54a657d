"""``--help`` of the node executables: what the node does (its module docstring: topics and services), its
parameters (the registry, ``nodes/parameters.py``: default, range, description) and how to bring it up."""

from __future__ import annotations

import inspect
import sys
from typing import Optional, Sequence

from .parameters import AUTOSTART, declared

__all__ = ["help_requested", "node_help", "node_help_name"]


def help_requested(argv: Sequence[str]) -> bool:
    """True when ``-h``/``--help`` is among the arguments before ``--ros-args``."""
    args = list(argv[1:])
    if "--ros-args" in args:
        args = args[:args.index("--ros-args")]
    return any(a in ("-h", "--help") for a in args)


def node_help_name(node_class) -> str:
    """The node's default name (= its executable and node type name)."""
    return _default_name(node_class)


def _default_name(node_class) -> str:
    param = inspect.signature(node_class.__init__).parameters.get("node_name")
    return str(param.default) if param is not None and param.default is not inspect.Parameter.empty else "node"


def node_help(node_class, executable: Optional[str] = None, lifecycle: bool = True) -> str:
    """The help text of ``node_class``'s executable."""
    name = _default_name(node_class)
    exe = executable or name
    doc = (sys.modules[node_class.__module__].__doc__ or "").strip()
    lines = [f"usage: ros2 run axcl_ros {exe} [--help] [--ros-args -p NAME:=VALUE ... --params-file FILE -r ...]",
             "", doc]
    specs = declared(node_class) + ((AUTOSTART,) if lifecycle else ())
    if specs:
        lines += ["", "Parameters (ros2 param describe shows ranges; *runtime* = settable while active):"]
    for spec in specs:
        runtime = " *runtime*" if spec.dynamic else ""
        lines.append(f"  {spec.name} (default {spec.default_text()}){runtime}: {spec.meaning()}")
    if lifecycle:
        lines += ["", "Bring it up:",
                  f"  ros2 run axcl_ros {exe} --ros-args -p model_path:=/path/model -p autostart:=true",
                  f"  or: ros2 run axcl_ros {exe} ...; ros2 lifecycle set /{name} configure; "
                  f"ros2 lifecycle set /{name} activate",
                  "  or: ros2 launch axcl_ros perception.launch.py (perception_host + lifecycle manager; README "
                  "\"Bring-up\")"]
    return "\n".join(lines)
