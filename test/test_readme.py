"""The README documents what the code has: every node parameter, launch argument and interface (anti-drift)."""

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _readme_tool():
    spec = importlib.util.spec_from_file_location("readme_parameters", ROOT / "scripts/readme_parameters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parameter_tables_are_the_registrys():
    """Every executable with parameters has a README table, and the table is what the registry gives (regenerate:
    `python scripts/readme_parameters.py`)."""
    pytest.importorskip("rclpy", reason="node modules import rclpy: run through `make test`")
    tool = _readme_tool()
    classes = tool.documented_classes()
    missing = sorted(name for name, cls in classes.items()
                     if getattr(cls, "PARAMS", ()) and f"#### `{name}` parameters" not in README)
    assert not missing, f"README.md has no parameter table for {missing}"
    assert tool.rewrite(README, classes) == README, "README parameter tables differ from the registry: run " \
                                                    "python scripts/readme_parameters.py"


def test_every_launch_argument_is_documented():
    tree = ast.parse((ROOT / "src/axcl_ros/launch/perception.launch.py").read_text())
    names = {node.args[0].value for node in ast.walk(tree)
             if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument"}
    assert len(names) >= 10
    missing = sorted(n for n in names if f"`{n}`" not in README)
    assert not missing, f"launch arguments missing from README.md: {missing}"


def test_every_interface_is_documented():
    files = [p for d in ("msg", "srv", "action") for p in (ROOT / "src/axcl_msgs" / d).iterdir()]
    missing = sorted(p.stem for p in files if p.stem not in README)
    assert not missing, f"axcl_msgs interfaces missing from README.md: {missing}"
