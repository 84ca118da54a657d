"""What `colcon build` installs is the runtime package and nothing else: no test helper, AXCL stub source or demo
module (they live in ``tools/`` at the repository root), every data-file glob of ``setup.py`` matches files, and
``package.xml`` declares exactly the dependencies the installed code imports.

Two install trees are inspected: a plain ``colcon build`` of ``src/axcl_ros`` into a temporary folder (what a robot
user gets; ~2 s) and the workspace's own ``install/axcl_ros`` from ``scripts/bootstrap.sh`` (``--symlink-install``:
the package is reached through an egg-link to the source tree)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[3]
PKG = ROOT / "src" / "axcl_ros"
TOOLS = ROOT / "tools"
#: packages that hold test-only or demo-only code; none of them may be installed or imported by installed code
TOOL_PACKAGES = ("axcl_ros_testing", "axcl_ros_demo")
#: Python imports with a rosdep key, and the key package.xml must declare
ROSDEP_KEYS = {"numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml", "scipy": "python3-scipy",
               "onnxruntime": "python3-onnxruntime-pip"}
#: Python imports without a rosdep key (installed from requirements/robot.txt; package.xml says so in a comment)
NO_ROSDEP_KEY = ("onnx", "tokenizers", "gguf", "sounddevice")
#: ROS packages that are neither message packages nor named *_msgs / *_interfaces
ROS_PYTHON_PACKAGES = {"rclpy", "launch", "launch_ros", "ament_index_python"}


def _forbidden(files: List[Path], base: Path) -> List[str]:
    """Installed files that are test-only or demo-only: by location, by name, by content or by what they import."""
    tool_bytes = {p.read_bytes() for p in TOOLS.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    bad = []
    for path in files:
        rel = path.relative_to(base)
        parts = set(rel.parts)
        if parts & {"testing", "axcl_stub", *TOOL_PACKAGES} or re.match(r"demo.*\.py$", path.name) \
                or path.suffix in (".c", ".h") or path.name.startswith("libaxcl_rt"):
            bad.append(f"{rel} (test helper, stub or demo by location or name)")
        elif path.read_bytes() in tool_bytes:
            bad.append(f"{rel} (a copy of a file in tools/)")
        elif path.suffix == ".py" and re.search(r"^\s*(from|import)\s+(axcl_ros\.testing|axcl_ros\.demo|"
                                                  + "|".join(TOOL_PACKAGES) + r")\b", path.read_text(), re.M):
            bad.append(f"{rel} (imports test-only or demo code)")
    return bad


def _files(folder: Path) -> List[Path]:
    """Every file under ``folder``, following symlinks, without byte-code caches."""
    out = []
    for dirpath, _dirs, names in os.walk(folder, followlinks=True):
        if "__pycache__" in Path(dirpath).parts:
            continue
        out += [Path(dirpath) / n for n in names if not n.endswith(".pyc")]
    return out


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory) -> Path:
    """``colcon build`` (no symlinks) of src/axcl_ros alone; returns its ``install/axcl_ros``."""
    colcon = shutil.which("colcon") or str(Path(sys.executable).with_name("colcon"))
    assert Path(colcon).is_file(), "colcon not found (requirements/ros-jazzy.txt installs it: scripts/bootstrap.sh)"
    out = tmp_path_factory.mktemp("colcon")
    proc = subprocess.run([colcon, "--log-base", str(out / "log"), "build", "--base-paths", str(PKG),
                           "--build-base", str(out / "build"), "--install-base", str(out / "install"),
                           "--event-handlers", "console_cohesion-", "summary-"],
                          cwd=out, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "install" / "axcl_ros"


def _site_package(install: Path) -> Path:
    found = list(install.glob("lib/python3*/site-packages/axcl_ros"))
    assert len(found) == 1, f"no single installed axcl_ros package under {install}: {found}"
    return found[0]


def test_plain_colcon_install_holds_no_test_stub_or_demo_code(plain_install):
    files = _files(plain_install)
    assert _forbidden(files, plain_install) == []
    # the installed modules are exactly the package's source modules (nothing added through package_data)
    installed = {p.relative_to(_site_package(plain_install)).as_posix() for p in _files(_site_package(plain_install))}
    source = {p.relative_to(PKG / "axcl_ros").as_posix() for p in _files(PKG / "axcl_ros")}
    assert installed == source
    assert all(name.endswith(".py") for name in installed)
    assert not any(p.name in TOOL_PACKAGES for p in plain_install.glob("lib/python3*/site-packages/*"))


def test_plain_colcon_install_has_every_data_file_the_setup_globs_name(plain_install):
    share = plain_install / "share" / "axcl_ros"
    for folder, patterns in {"launch": ["*.py"], "config": ["*.yaml", "*.xml"], "rviz": ["*.rviz"]}.items():
        want = sorted(p.name for pat in patterns for p in (PKG / folder).glob(pat))
        assert want, f"setup.py installs {folder}/{patterns} but no such file exists"
        assert sorted(p.name for p in (share / folder).iterdir()) == want
    assert (share / "package.xml").is_file() and (plain_install / "bin" / "axcl_ros").is_file()


def test_workspace_install_holds_no_test_stub_or_demo_code():
    install = ROOT / "install" / "axcl_ros"
    if not install.is_dir():
        pytest.skip("the workspace is not built: run scripts/bootstrap.sh (make test does)")
    files = _files(install)
    links = list(install.glob("lib/python3*/site-packages/*.egg-link"))
    for link in links:  # --symlink-install: the package is the folder the egg-link names
        target = Path(link.read_text().splitlines()[0].strip())
        files += _files(target / "axcl_ros")
    assert links or list(install.glob("lib/python3*/site-packages/axcl_ros")), "no installed axcl_ros package"
    assert _forbidden(files, Path("/")) == []


def _imports(paths: List[Path]) -> Set[str]:
    """Top-level modules imported by ``paths`` (absolute imports only; relative ones stay inside axcl_ros)."""
    names: Set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_package_xml_declares_exactly_what_the_installed_code_imports():
    code = [p for p in (PKG / "axcl_ros").rglob("*.py")] + list((PKG / "launch").glob("*.py"))
    imported = _imports(code) - set(sys.stdlib_module_names) - {"axcl_ros"}
    assert not imported & set(TOOL_PACKAGES), "installed code imports test-only or demo code"
    xml = (PKG / "package.xml").read_text()
    declared = set(re.findall(r"<exec_depend>([^<]+)</exec_depend>", xml))
    ros = {m for m in imported if m in ROS_PYTHON_PACKAGES or m.endswith(("_msgs", "_interfaces"))}
    python: Dict[str, str] = {m: ROSDEP_KEYS[m] for m in imported if m in ROSDEP_KEYS}
    unknown = imported - ros - set(python) - set(NO_ROSDEP_KEY)
    assert not unknown, f"imports to classify here and declare in package.xml: {sorted(unknown)}"
    needed = ros | set(python.values())
    assert declared == needed, f"undeclared: {sorted(needed - declared)}; never imported: {sorted(declared - needed)}"
    comment = " ".join(re.findall(r"<!--(.*?)-->", xml, flags=re.S))
    assert all(name in comment for name in NO_ROSDEP_KEY if name in imported), "package.xml must name them"
