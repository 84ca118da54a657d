"""The parameter registry: every parameter of an axcl_ros node is one :class:`ParamSpec` in its node class's
``PARAMS`` (plus the shared ones below). Everything else is derived from it:

* the ROS declarations with their descriptors (ranges and choices that ``ros2 param describe`` shows) and the
  refusal reasons of a bad value (:class:`~axcl_ros.nodes.common.AxclLifecycleNode`);
* ``--help`` of each node executable (``nodes/executable_help.py``);
* the README's parameter tables (:func:`markdown_table`; ``scripts/readme_parameters.py`` rewrites them and
  ``test/test_readme.py`` fails when they differ);
* the keys a parameter file may set for a node type (``bringup.node_registry.declared_parameters``).

No rclpy import: the registry is read without a ROS install (the descriptor types are imported when needed).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

from ..io.image import DEFAULT_MAX_PIXELS


class ParamSpec:
    """One declared parameter: default, description, optional range/choices, and whether it changes at runtime.

    ``dynamic_typing``: the value may be of several types (e.g. a list or a comma-separated string); ``default``
    is then usually None (unset).
    """

    def __init__(self, name: str, default: Any, description: str, *, min: float | None = None,
                 max: float | None = None, choices: Sequence[str] | None = None, dynamic: bool = False,
                 dynamic_typing: bool = False) -> None:
        self.name, self.default, self.description = name, default, description
        self.min, self.max, self.choices, self.dynamic = min, max, choices, dynamic
        self.dynamic_typing = dynamic_typing

    def meaning(self) -> str:
        """The description with its range and choices: what ``--help`` and the README say."""
        text = self.description
        if self.min is not None and self.max is not None:
            text += f" Range {self.min}..{self.max}."
        if self.choices:
            text += f" One of: {', '.join(self.choices)}."
        return text

    def descriptor(self, read_on: str = "configure"):
        """The ROS parameter descriptor (ranges shown by ``ros2 param describe``); a parameter that is not
        ``dynamic`` says when it is read (``read_on``: ``configure`` for lifecycle nodes, ``start`` for others)."""
        from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

        text = self.description
        if self.choices:
            text += f" One of: {', '.join(self.choices)}."
        if not self.dynamic:
            text += f" Read on {read_on}."
        d = ParameterDescriptor(description=text, read_only=False, dynamic_typing=self.dynamic_typing)
        if self.min is not None and self.max is not None:
            if isinstance(self.default, bool):
                pass
            elif isinstance(self.default, int):
                d.integer_range = [IntegerRange(from_value=int(self.min), to_value=int(self.max), step=1)]
            elif isinstance(self.default, float):
                d.floating_point_range = [FloatingPointRange(from_value=float(self.min), to_value=float(self.max),
                                                             step=0.0)]
        return d

    def default_text(self) -> str:
        """The default as the README and ``--help`` show it (``[]`` for an array declared by type, unset)."""
        if hasattr(self.default, "name"):  # rclpy Parameter.Type: declared by type, no value
            return "[]" if "ARRAY" in self.default.name else f"<{self.default.name.lower()}>"
        return repr(self.default)

    def check(self, value: Any) -> Optional[str]:
        """None when ``value`` is acceptable, else the reason (NaN and ±inf are never acceptable numbers)."""
        if self.choices and value not in self.choices:
            return f"{self.name}={value!r} is not one of {list(self.choices)}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{self.name}={value} is not a finite number"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.min is not None and value < self.min:
                return f"{self.name}={value} is below {self.min}"
            if self.max is not None and value > self.max:
                return f"{self.name}={value} is above {self.max}"
        return None


#: parameters every axcl_ros lifecycle node declares
COMMON_PARAMS = (
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages (steady clock); 0 = off.",
              min=0.0, max=3600.0, dynamic=True),
)
#: parameters of the nodes that decode camera images (``TAKES_IMAGES``)
IMAGE_PARAMS = (
    ParamSpec("max_image_pixels", DEFAULT_MAX_PIXELS, "Largest width x height accepted from an Image or a "
              "CompressedImage header, checked before decoding (default: 8K UHD fits).", min=1, max=1 << 31),
)
#: what the node executables add: bring-up without a manager (``nodes/process.run_main``)
AUTOSTART = ParamSpec("autostart", False, "Configure and activate at start (off: wait for `ros2 lifecycle set` or a "
                                          "lifecycle manager).")


def declared(node_class) -> Tuple[ParamSpec, ...]:
    """Every parameter an instance of ``node_class`` declares: its ``PARAMS``, then the shared ones that apply."""
    specs = tuple(getattr(node_class, "PARAMS", ())) + tuple(getattr(node_class, "SHARED_PARAMS", ()))
    if getattr(node_class, "TAKES_IMAGES", False):
        specs += IMAGE_PARAMS
    return specs


def markdown_table(specs: Sequence[ParamSpec]) -> str:
    """The README table of ``specs`` (name, default, meaning; *(runtime)* marks parameters settable while
    active)."""
    rows = ["| name | default | meaning |", "|---|---|---|"]
    for spec in specs:
        runtime = " *(runtime)*" if spec.dynamic else ""
        meaning = spec.meaning().replace("|", "\\|")
        rows.append(f"| `{spec.name}` | `{spec.default_text()}` | {meaning}{runtime} |")
    return "\n".join(rows)
