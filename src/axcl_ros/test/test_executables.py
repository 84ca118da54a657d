"""Every installed executable answers ``--help`` (what it does, topics, key parameters, how to bring it up), and a
node executable's ``autostart`` parameter: off → it says it waits for ``ros2 lifecycle set``; on → active."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS tests need the workspace: run through `make test`")
pytest.importorskip("axcl_msgs.msg", reason="axcl_msgs not built: run through `make test`")

from axcl_ros_testing.lifecycle_client import LifecycleClient  # noqa: E402
from axcl_ros_testing.ros_graph import RosGraph, RosProcess  # noqa: E402

pytestmark = pytest.mark.ros
NODES = {"detector": "model_path", "depth": "model_path", "speech": "model_dir", "device_monitor": "period_s",
         "audio_capture": "sample_rate", "wav_publisher": "wav_path", "describe": "model_dir"}


def _installed(name):
    prefix = os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
    for p in prefix:
        path = Path(p) / "lib" / "axcl_ros" / name
        if path.exists():
            return str(path)
    pytest.skip(f"{name} not installed: run through `make test` (colcon build)")


@pytest.mark.parametrize("name", sorted(NODES))
def test_node_executables_answer_help(name):
    run = subprocess.run([_installed(name), "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert out.startswith(f"usage: ros2 run axcl_ros {name}")
    assert f"``{name}``" in out and "Parameters" in out
    assert f"  {NODES[name]} (default" in out or f"``{NODES[name]}``" in out  # wav_publisher lists them in its doc
    if name != "wav_publisher":
        assert "autostart (default False)" in out and f"ros2 lifecycle set /{name} configure" in out
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("name", ["perception_host", "lifecycle_manager"])
def test_bringup_executables_answer_help(name):
    run = subprocess.run([_installed(name), "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.startswith(f"usage: {name}"), run.stderr


def test_axcl_ros_cli_is_on_path():
    exe = shutil.which("axcl_ros")
    if exe is None:
        pytest.skip("install/axcl_ros/bin not on PATH: run through `make test` (scripts/env.sh)")
    run = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "usage: axcl_ros" in run.stdout


@pytest.mark.parametrize("autostart", [False, True])
def test_node_executable_autostart(tmp_path, autostart):
    exe = _installed("device_monitor")
    with RosGraph(threads=2) as graph:
        lifecycle = LifecycleClient(graph, graph.node("observer"))
        proc = RosProcess([sys.executable, exe, "--ros-args", "-r", "__node:=mon_exe", "-p", "backend:=onnxruntime",
                           "-p", f"autostart:={str(autostart).lower()}"], timeout=60,
                          log_path=str(tmp_path / "mon.log"))
        try:
            want = "active" if autostart else "unconfigured"
            graph.wait_for(lambda: lifecycle.state("/mon_exe") == want, 30, f"{want}\n{proc.output()[-1500:]}")
            if not autostart:
                graph.wait_for(lambda: "waiting for `ros2 lifecycle set /mon_exe configure`" in proc.output(), 5,
                               "the waiting line")
        finally:
            assert proc.stop(grace=10) == 0, proc.output()[-2000:]
