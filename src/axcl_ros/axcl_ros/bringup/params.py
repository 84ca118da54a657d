"""One ROS parameter file for many nodes: read ``--params-file`` YAML sections and compute each node's overrides.

rcl already applies a ``--params-file`` to every node of the process, but it only matches sections by fully
qualified name or wildcard: a section ``detector:`` does not reach ``/robot1/detector``. The host therefore also
reads the files itself and gives each node it creates ``parameter_overrides`` merged, lowest to highest precedence,
from wildcard sections (``/**``, ``/**/detector``), the bare node name (``detector`` or ``/detector``) and the fully
qualified name (``/robot1/detector``); later files win over earlier ones. The same file thus works with and without
a namespace (what Nav2's ``RewrittenYaml`` root key does in launch).

Pure Python (PyYAML); :func:`to_parameters` imports rclpy lazily.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

ROS_PARAMS_KEY = "ros__parameters"


class ParamsFileError(ValueError):
    """A parameter file that cannot be read, or a value that is not a valid ROS parameter."""


# -- command line ----------------------------------------------------------------------------------------------------
def ros_args(argv: Sequence[str]) -> List[str]:
    """The tokens inside ``--ros-args ... [--]`` sections of ``argv`` (there may be several sections)."""
    out: List[str] = []
    inside = False
    for token in argv:
        if token == "--ros-args":
            inside = True
        elif token == "--" and inside:
            inside = False
        elif inside:
            out.append(token)
    return out


def params_files(argv: Sequence[str]) -> List[str]:
    """Paths given with ``--params-file PATH`` inside ``--ros-args`` sections, in order."""
    tokens = ros_args(argv)
    return [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t == "--params-file"]


def remap_rules(argv: Sequence[str]) -> List[Tuple[str, str, str]]:
    """``-r``/``--remap`` rules as ``(node or '', from, to)`` in command-line order."""
    tokens = ros_args(argv)
    rules = []
    for i, t in enumerate(tokens[:-1]):
        if t in ("-r", "--remap") and ":=" in tokens[i + 1]:
            lhs, _, rhs = tokens[i + 1].partition(":=")
            node, sep, name = lhs.partition(":")
            rules.append((node, name, rhs) if sep else ("", lhs, rhs))
    return rules


def normalize_namespace(namespace: str) -> str:
    """``""`` → ``"/"``, ``"ns/"`` → ``"/ns"``."""
    ns = "/" + (namespace or "").strip("/")
    return ns


def effective_name(name: str, namespace: str, argv: Sequence[str]) -> Tuple[str, str]:
    """The ``(name, namespace)`` a node created as ``Node(name, namespace=namespace)`` ends up with once the
    command line's ``__node``/``__ns`` remaps (global or ``name:``-targeted; first match wins, as in rcl) apply."""
    new_name, new_ns = name, namespace
    rules = remap_rules(argv)
    for node, lhs, rhs in rules:
        if lhs in ("__node", "__name") and node in ("", name):
            new_name = rhs
            break
    for node, lhs, rhs in rules:
        if lhs == "__ns" and node in ("", name):
            new_ns = rhs
            break
    return new_name, normalize_namespace(new_ns)


def fully_qualified(name: str, namespace: str) -> str:
    """``("detector", "/ns")`` → ``"/ns/detector"``."""
    ns = normalize_namespace(namespace)
    return f"/{name}" if ns == "/" else f"{ns}/{name}"


# -- files -----------------------------------------------------------------------------------------------------------
def load_sections(paths: Sequence[str]) -> List[Tuple[str, Dict[str, Any]]]:
    """``[(node key, flat parameters)]`` from ROS parameter files, in file order.

    A file must be a mapping of node keys to ``{ros__parameters: {...}}``; nested parameter mappings are flattened
    to dotted names (``a: {b: 1}`` → ``a.b``).
    """
    import yaml

    sections: List[Tuple[str, Dict[str, Any]]] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as exc:
            raise ParamsFileError(f"cannot read parameter file {path}: {exc}") from exc
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ParamsFileError(f"parameter file {path}: top level must be a mapping of node names, "
                                  f"found {type(doc).__name__}")
        for key, body in doc.items():
            if not isinstance(body, dict) or ROS_PARAMS_KEY not in body:
                raise ParamsFileError(f"parameter file {path}: section {key!r} has no {ROS_PARAMS_KEY!r} mapping")
            params = body[ROS_PARAMS_KEY] or {}
            if not isinstance(params, dict):
                raise ParamsFileError(f"parameter file {path}: {key}.{ROS_PARAMS_KEY} must be a mapping")
            sections.append((str(key), flatten(params)))
    return sections


def flatten(params: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"a": {"b": 1}, "c": 2}`` → ``{"a.b": 1, "c": 2}``."""
    out: Dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _key_regex(key: str) -> re.Pattern[str]:
    parts = [p for p in key.strip("/").split("/") if p]
    rx = ""
    for part in parts:
        if part == "**":
            rx += "(/[^/]+)*"
        else:
            rx += "/" + re.escape(part).replace(r"\*", "[^/]*")
    return re.compile(rx or "/")


def node_parameters(sections: Sequence[Tuple[str, Dict[str, Any]]], name: str, namespace: str) -> Dict[str, Any]:
    """Parameters for node ``name`` in ``namespace``: wildcard sections, then the bare name, then the fully qualified
    name (each later one overriding)."""
    fq = fully_qualified(name, namespace)
    wildcard: Dict[str, Any] = {}
    bare: Dict[str, Any] = {}
    exact: Dict[str, Any] = {}
    for key, params in sections:
        k = key.strip()
        if "*" in k:
            if _key_regex(k).fullmatch(fq):
                wildcard.update(params)
        elif "/" + k.strip("/") == fq:
            exact.update(params)
        elif k.strip("/") == name:
            bare.update(params)
    return {**wildcard, **bare, **exact}


# -- rclpy -----------------------------------------------------------------------------------------------------------
def parameter_value(name: str, value: Any) -> Optional[Any]:
    """Check and normalize a YAML value for a ROS parameter; None for values that set nothing (null, ``[]``).

    Integer/float mixes become float lists; other mixed lists raise :class:`ParamsFileError`.
    """
    if value is None:
        return None
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = list(value)
        if not items:
            return None
        if all(isinstance(v, bool) for v in items):
            return items
        if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            return items
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            return [float(v) for v in items]
        if all(isinstance(v, str) for v in items):
            return items
        raise ParamsFileError(f"parameter {name}: list mixes types {sorted({type(v).__name__ for v in items})}: "
                              f"{items!r}")
    raise ParamsFileError(f"parameter {name}: unsupported value {value!r} ({type(value).__name__})")


def to_parameters(params: Dict[str, Any]) -> list:
    """``{name: value}`` → ``[rclpy.parameter.Parameter]`` (values that set nothing are left out)."""
    from rclpy.parameter import Parameter

    out = []
    for name, value in params.items():
        v = parameter_value(name, value)
        if v is not None:
            out.append(Parameter(name, value=v))
    return out
