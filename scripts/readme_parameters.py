"""Rewrite the README's parameter tables from the parameter registry (``nodes/parameters.py``).

    . scripts/env.sh && python scripts/readme_parameters.py           # rewrite README.md
    . scripts/env.sh && python scripts/readme_parameters.py --check   # exit 1 when a table differs

A table is the block after a ``#### `<name>` parameters`` heading; ``<name>`` is a node type of
``bringup.node_registry`` (or ``describe``, ``perception_host``, ``lifecycle_manager``). ``test/test_readme.py`` runs
the same comparison.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Dict

ROOT = Path(__file__).resolve().parents[1]
HEADING = re.compile(r"^#### `(?P<name>[a-z_]+)` parameters\n\n(?P<table>(?:\|.*\n)+)", re.M)


def documented_classes() -> Dict[str, type]:
    """Node type name → class, for every executable that has a README parameter table."""
    from axcl_ros.bringup.node_registry import NODE_TYPES, load_node_class

    targets = dict(NODE_TYPES)
    targets.update({"describe": "axcl_ros.nodes.describe:DescribeNode",
                    "perception_host": "axcl_ros.bringup.host:PerceptionHost",
                    "lifecycle_manager": "axcl_ros.bringup.lifecycle_manager:LifecycleManager"})
    out = {}
    for name, target in targets.items():
        module, _, cls = target.partition(":")
        out[name] = getattr(importlib.import_module(module), cls) if name not in NODE_TYPES else load_node_class(name)
    return out


def rewrite(text: str, classes: Dict[str, type]) -> str:
    """``text`` with every known parameter table replaced by the one the registry gives."""
    from axcl_ros.nodes.parameters import markdown_table

    def table(match: re.Match) -> str:
        cls = classes.get(match.group("name"))
        if cls is None or not getattr(cls, "PARAMS", ()):
            return match.group(0)
        return f"#### `{match.group('name')}` parameters\n\n{markdown_table(cls.PARAMS)}\n"

    return HEADING.sub(table, text)


def main(argv=None) -> int:
    """Rewrite README.md's tables, or with ``--check`` only report (exit 1) when they differ."""
    args = sys.argv[1:] if argv is None else argv
    readme = ROOT / "README.md"
    text = readme.read_text()
    new = rewrite(text, documented_classes())
    if "--check" in args:
        if new != text:
            print("README parameter tables differ from the registry: run python scripts/readme_parameters.py")
            return 1
        return 0
    readme.write_text(new)
    print("README.md: parameter tables rewritten" if new != text else "README.md: tables already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
