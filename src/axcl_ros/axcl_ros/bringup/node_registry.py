"""Node types the one-process host can create, by short name or ``"module:Class"``, the launch inputs the host and
the node executables take, and the parameter names a parameter file may set for each (derived from the registry).

No rclpy import at module level: listing types and parsing names works without a ROS install.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Dict, NamedTuple, Sequence, Tuple

#: Short type name → ``"module:Class"`` of the axcl_ros lifecycle nodes.
NODE_TYPES: Dict[str, str] = {
    "detector": "axcl_ros.nodes.detector:DetectorNode",
    "depth": "axcl_ros.nodes.depth:DepthNode",
    "speech": "axcl_ros.nodes.speech:SpeechNode",
    "device_monitor": "axcl_ros.nodes.device_monitor:DeviceMonitorNode",
    "wav_publisher": "axcl_ros.nodes.wav_publisher:WavPublisherNode",
    "audio_capture": "axcl_ros.nodes.audio_capture:AudioCaptureNode",
}

#: The node types the launch file offers (booleans ``detector:=true`` ...) and the host runs by default, in bring-up
#: order: the device monitor first, since it is the node that explains a missing card.
DEFAULT_NODES: Tuple[str, ...] = ("device_monitor", "detector", "depth", "speech")

#: Launch/host input options → the parameter each node type takes them as. ``list`` wraps the value in a list.
INPUT_PARAMETERS: Dict[str, Dict[str, Tuple[str, bool]]] = {
    "detector": {"camera_topic": ("image_topics", True), "backend": ("backend", False),
                 "detector_model": ("model_path", False)},
    "depth": {"camera_topic": ("image_topic", False), "camera_info_topic": ("camera_info_topic", False),
              "backend": ("backend", False), "depth_model": ("model_path", False)},
    "speech": {"audio_topic": ("audio_topic", False), "backend": ("backend", False),
               "whisper_model": ("model_dir", False)},
}
#: launch inputs (``--camera-topic=...`` on the command line of perception_host and of every node executable)
INPUT_OPTIONS: Dict[str, str] = {
    "camera_topic": "camera image topic (detector image_topics, depth image_topic)",
    "camera_info_topic": "camera_info topic (depth)",
    "audio_topic": "audio topic (speech)",
    "backend": "inference backend: auto, axcl or onnxruntime",
    "detector_model": "detector model file (model_path)",
    "depth_model": "depth model file (model_path)",
    "whisper_model": "Whisper model folder (speech model_dir)",
}

_NODE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class NodeTypeError(ValueError):
    """A node type name that is unknown, or whose module/class cannot be loaded."""


class NodeInstance(NamedTuple):
    """One node the host creates: its ROS node name and its type (short name or ``module:Class``)."""

    name: str
    type_name: str


def resolve_type(type_name: str) -> str:
    """``"detector"`` → ``"axcl_ros.nodes.detector:DetectorNode"``; a ``"module:Class"`` string is returned as is."""
    if not isinstance(type_name, str) or not type_name.strip():
        raise NodeTypeError(f"node type must be a non-empty string, got {type_name!r}")
    type_name = type_name.strip()
    if type_name in NODE_TYPES:
        return NODE_TYPES[type_name]
    if ":" in type_name:
        module, _, cls = type_name.partition(":")
        if module and cls and ":" not in cls:
            return type_name
    raise NodeTypeError(f"unknown node type {type_name!r}; known types: {', '.join(sorted(NODE_TYPES))}, "
                        "or 'package.module:ClassName' for your own node class")


#: executables that are not node types of the host but take a parameter-file section
_EXECUTABLES: Dict[str, str] = {"perception_host": "axcl_ros.bringup.host:PerceptionHost",
                                "lifecycle_manager": "axcl_ros.bringup.lifecycle_manager:LifecycleManager"}


def declared_parameters(type_name: str) -> Tuple[str, ...]:
    """Names of the parameters a node of ``type_name`` (or the ``perception_host`` / ``lifecycle_manager``
    executable) declares: what its section of a parameter file may set. Derived from the parameter registry
    (imports the node class, so rclpy is needed)."""
    from ..nodes.parameters import AUTOSTART, declared

    cls = load_node_class(_EXECUTABLES.get(type_name, type_name))
    names = tuple(spec.name for spec in declared(cls))
    if hasattr(cls, "trigger_configure"):  # lifecycle node executables add autostart (nodes/process.run_main)
        names += (AUTOSTART.name,)
    return names


def load_node_class(type_name: str) -> Any:
    """Import and return the node class for ``type_name`` (a key of :data:`NODE_TYPES` or ``"module:Class"``).

    Raises :class:`NodeTypeError` naming the type, module and cause when it is unknown or cannot be imported.
    """
    target = resolve_type(type_name)
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise NodeTypeError(f"node type {type_name!r}: cannot import module {module_name!r} ({exc})") from exc
    try:
        cls = getattr(module, class_name)
    except AttributeError:
        raise NodeTypeError(f"node type {type_name!r}: module {module_name!r} has no class {class_name!r}") from None
    if not isinstance(cls, type):
        raise NodeTypeError(f"node type {type_name!r}: {target} is a {type(cls).__name__}, not a class")
    return cls


def check_node_name(name: str) -> str:
    """Return ``name`` when it is a valid ROS node name (letters, digits, underscores; no leading digit)."""
    if not isinstance(name, str) or not _NODE_NAME.match(name):
        raise NodeTypeError(f"invalid node name {name!r}: use letters, digits and underscores, not starting with "
                            "a digit")
    return name


def split_list(value: Any) -> list:
    """A list parameter given as a list, a comma/space-separated string or a YAML-ish ``"[a, b]"`` string → list."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        return [p.strip().strip("'\"") for p in re.split(r"[,\s]+", text) if p.strip().strip("'\"")]
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    raise NodeTypeError(f"expected a list of names, got {type(value).__name__} {value!r}")


def parse_instances(nodes: Any, node_types: Any = ()) -> list:
    """Node instances from the host's ``nodes`` / ``node_types`` parameters.

    ``nodes`` entries are instance names, or ``"name:type"`` strings (type may itself be ``module:Class``);
    ``node_types``, when given, has one type per entry of ``nodes``. Without a type, the name is the type.
    """
    names = split_list(nodes)
    types = split_list(node_types)
    if types and len(types) != len(names):
        raise NodeTypeError(f"node_types has {len(types)} entries but nodes has {len(names)}: {types} vs {names}")
    out = []
    for i, entry in enumerate(names):
        if types:
            name, type_name = entry, types[i]
        elif ":" in entry:
            name, _, type_name = entry.partition(":")
        else:
            name, type_name = entry, entry
        check_node_name(name)
        resolve_type(type_name)
        out.append(NodeInstance(name, type_name))
    seen = set()
    for inst in out:
        if inst.name in seen:
            raise NodeTypeError(f"node name {inst.name!r} appears twice in nodes {names}")
        seen.add(inst.name)
    return out


def parse_bool(value: Any, what: str = "value") -> bool:
    """``true/false/1/0/yes/no/on/off`` (any case) or a bool → bool; anything else raises ``ValueError``."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{what}: expected true or false, got {value!r}")


def parse_select(items: Any) -> Dict[str, bool]:
    """``["detector=true", "depth=false"]`` (or one comma-separated string) → ``{"detector": True, ...}``."""
    out: Dict[str, bool] = {}
    for item in split_list(items):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--select expects NAME=true|false, got {item!r}")
        out[key.strip()] = parse_bool(value, f"--select {key}")
    return out


def select_instances(instances: Sequence[NodeInstance], select: Dict[str, bool]) -> list:
    """Drop instances whose name or type is switched off in ``select`` (entries not mentioned are kept)."""
    return [i for i in instances if select.get(i.name, True) and select.get(i.type_name, True)]


def input_parser(prog: str):
    """The ``argparse`` parser of a node executable's launch inputs (before ``--ros-args``)."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog, add_help=False, description="launch inputs (empty = keep the "
                                     "parameter file's value):")
    add_input_options(parser)
    return parser


def add_input_options(parser) -> None:
    """Add ``--camera-topic``, ``--backend``, ``--detector-model`` ... (:data:`INPUT_OPTIONS`; empty = keep the
    parameter file's value) to an ``argparse`` parser."""
    for option, text in INPUT_OPTIONS.items():
        parser.add_argument("--" + option.replace("_", "-"), default="", help=f"{text}; empty = parameter file")


def input_overrides(type_name: str, **inputs: str) -> Dict[str, Any]:
    """Parameter overrides for a node of ``type_name`` from launch inputs (:data:`INPUT_OPTIONS`); empty values mean
    "keep the parameter file's value"."""
    unknown = set(inputs) - set(INPUT_OPTIONS)
    if unknown:
        raise ValueError(f"unknown input option(s) {sorted(unknown)}")
    from ..runtime.registry import BACKEND_CHOICES

    backend = inputs.get("backend") or ""
    if backend and backend not in BACKEND_CHOICES:
        raise ValueError(f"backend={backend!r} is not one of {list(BACKEND_CHOICES)}")
    out: Dict[str, Any] = {}
    for option, (param, as_list) in INPUT_PARAMETERS.get(type_name, {}).items():
        value = inputs.get(option) or ""
        if value:
            out[param] = [value] if as_list else value
    return out
