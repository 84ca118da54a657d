"""perception_host and lifecycle_manager as real processes on real DDS, driven from this test process: autostart
with configure retries, /diagnostics and is_active, ManageNodes commands checked through the standard get_state
services, a manager in another process than its nodes, namespaces and parameter files exactly as rcl and
launch_ros 0.26 write and match them (``/**``, ``/**/name``, tuples), clean SIGINT (exit code 0, nodes down in
reverse order, no traceback); plus the host in-process and its error exit."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip("rclpy", reason="ROS tests need the workspace: run through `make test`")
pytest.importorskip("axcl_msgs.srv", reason="axcl_msgs not built: run through `make test`")

from axcl_msgs.srv import ManageNodes  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rcl_interfaces.srv import GetParameters  # noqa: E402
from std_msgs.msg import Bool, Float64MultiArray  # noqa: E402

from axcl_ros.bringup.host import PerceptionHost, build_parser  # noqa: E402
from axcl_ros.bringup.node_registry import declared_parameters  # noqa: E402
from axcl_ros_testing.dummy_nodes import LATCHED, DummyLifecycleNode  # noqa: E402
from axcl_ros_testing.lifecycle_client import LifecycleClient  # noqa: E402
from axcl_ros_testing.ros_graph import RosGraph, RosProcess  # noqa: E402

pytestmark = pytest.mark.ros
R = ManageNodes.Request
DUMMY = "axcl_ros_testing.dummy_nodes:DummyLifecycleNode"
SRC = str(Path(__file__).resolve().parents[1])
ENV = {"PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join([SRC] + sys.path)}


def _params(tmp_path, autostart, **extra):
    doc = {
        "/**/perception_host": {"ros__parameters": {"nodes": ["a", "b", "c"], "node_types": [DUMMY] * 3,
                                                    "autostart": autostart}},
        "/**/lifecycle_manager": {"ros__parameters": {"node_names": ["a", "b", "c"], "retry_backoff_s": 0.2,
                                                      "diagnostics_period_s": 0.2, "service_timeout_s": 10.0}},
        "/**": {"ros__parameters": {"label": "all"}},
        "/**/b": {"ros__parameters": {"label": "bee", "fail_configure_times": 2}},
    }
    doc.update(extra)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def launch_ros_params_file(tmp_path, params, node_name=None):
    """A parameter file written the way launch_ros 0.26 writes ``parameters=[{...}]`` of a ``Node`` action: lists as
    Python tuples (``!!python/tuple``), keyed by the node's fully qualified name when launch knows it, else ``/**``,
    dumped with ``yaml.dump(..., default_flow_style=False)``."""
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    path = tmp_path / f"launch_params_{len(list(tmp_path.glob('launch_params_*')))}"
    path.write_text(yaml.dump({node_name or "/**": {"ros__parameters": values}}, default_flow_style=False))
    return str(path)


def _host(tmp_path, params, *ros_extra, name="host"):
    return RosProcess([sys.executable, "-m", "axcl_ros.bringup.host", "--ros-args", "--params-file", params,
                       *ros_extra], timeout=90, env=ENV, log_path=str(tmp_path / f"{name}.log"))


class Observer:
    def __init__(self, graph, manager):
        self.graph = graph
        self.node = graph.node("observer")
        self.active = None
        self.status = {}
        self.times = {}
        self.node.create_subscription(Bool, f"{manager}/is_active", lambda m: setattr(self, "active", m.data),
                                      LATCHED)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.manage_client = self.node.create_client(ManageNodes, f"{manager}/manage_nodes")
        self.lifecycle = LifecycleClient(graph, self.node)

    def _on_diag(self, msg):
        for s in msg.status:
            self.status[s.name] = s

    def watch_times(self, node):
        self.node.create_subscription(Float64MultiArray, f"{node}/configure_times",
                                      lambda m: self.times.__setitem__(node, list(m.data)), LATCHED)

    def manage(self, command):
        response = self.graph.call(self.manage_client, R(command=command), 30)
        return response.success, response.message

    def states(self, names):
        return [self.lifecycle.state(n) for n in names]

    def param(self, node, name):
        client = self.node.create_client(GetParameters, f"{node}/get_parameters")
        return self.graph.call(client, GetParameters.Request(names=[name]), 10).values[0].string_value


def _clean_exit(proc):
    rc = proc.stop(grace=15)
    out = proc.output()
    assert rc == 0, f"exit code {rc}:\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    return out


def test_composed_host_autostart_diagnostics_manage_nodes_and_sigint(tmp_path):
    nodes = ["/a", "/b", "/c"]
    with RosGraph(threads=4) as graph:
        obs = Observer(graph, "/lifecycle_manager")
        obs.watch_times("/b")
        host = _host(tmp_path, _params(tmp_path, True))
        try:
            graph.wait_for(lambda: obs.active is True, 30, f"is_active from the host\n{host.output()[-2000:]}")
            assert obs.states(nodes) == ["active"] * 3
            graph.wait_for(lambda: len(obs.times.get("/b", [])) == 3, 5, "b's configure attempts")
            t = obs.times["/b"]
            assert 0.18 <= t[1] - t[0] and 0.38 <= t[2] - t[1], t
            graph.wait_for(lambda: "/lifecycle_manager" in obs.status, 5, "manager diagnostics")
            summary = obs.status["/lifecycle_manager"]
            assert summary.level == DiagnosticStatus.OK and summary.message == "all nodes active"
            assert obs.param("/b", "label") == "bee" and obs.param("/a", "label") == "all"

            assert obs.manage(R.RESET) == (True, "3 node(s) unconfigured")
            assert obs.states(nodes) == ["unconfigured"] * 3
            graph.wait_for(lambda: obs.active is False, 5, "is_active false after RESET")
            assert obs.manage(R.STARTUP) == (True, "3 node(s) active")
            assert obs.states(nodes) == ["active"] * 3
            assert obs.manage(R.PAUSE)[0] and obs.states(nodes) == ["inactive"] * 3
            assert obs.manage(R.RESUME)[0] and obs.states(nodes) == ["active"] * 3
            graph.wait_for(lambda: obs.active is True, 5, "is_active true after RESUME")
            assert obs.manage(R.SHUTDOWN) == (True, "3 node(s) finalized")
            assert obs.states(nodes) == ["finalized"] * 3
        finally:
            out = _clean_exit(host)
    assert "shutting down" in out


def test_manager_in_another_process_namespace_and_sigint_order(tmp_path):
    params = _params(tmp_path, False)
    ns = ["-r", "__ns:=/robot"]
    with RosGraph(threads=4) as graph:
        obs = Observer(graph, "/robot/lifecycle_manager")
        host = _host(tmp_path, params, *ns)
        launch_params = launch_ros_params_file(tmp_path, {"node_names": ["a", "b", "c"], "autostart": True},
                                               node_name="/robot/lifecycle_manager")
        assert "!!python/tuple" in Path(launch_params).read_text()
        manager = RosProcess([sys.executable, "-m", "axcl_ros.bringup.lifecycle_manager", "--select", "c=false",
                              "--ros-args", "--params-file", params, "--params-file", launch_params, *ns],
                             timeout=90, env=ENV, log_path=str(tmp_path / "manager.log"))
        try:
            graph.wait_for(lambda: obs.active is True, 30,
                           f"is_active\n{manager.output()[-1500:]}\n{host.output()[-1500:]}")
            assert obs.states(["/robot/a", "/robot/b", "/robot/c"]) == ["active", "active", "unconfigured"]
            assert obs.param("/robot/b", "label") == "bee"  # "/**/b:" section reached /robot/b
            assert obs.param("/robot/a", "label") == "all"
        finally:
            _clean_exit(manager)
        try:
            assert obs.states(["/robot/a", "/robot/b"]) == ["active"] * 2  # the manager leaves nodes as they are
        finally:
            out = _clean_exit(host)
    lines = [ln.split("]: ", 1)[1].split(" label=")[0] for ln in out.splitlines()
             if "]: " in ln and " /robot/" in ln and " label=" in ln]
    down = lines[lines.index("shutdown /robot/c"):]  # hosted a, b, c: down in reverse order
    assert down == ["shutdown /robot/c", "deactivate /robot/b", "cleanup /robot/b", "shutdown /robot/b",
                    "deactivate /robot/a", "cleanup /robot/a", "shutdown /robot/a"]


def test_host_configuration_error_exits_2_without_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"perception_host": {"ros__parameters": {"nodes": ["x"],
                                                                            "node_types": ["lidar"]}}}))
    run = subprocess.run([sys.executable, "-m", "axcl_ros.bringup.host", "--ros-args", "--params-file", str(path)],
                         env={**os.environ, **ENV}, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "perception_host: error: unknown node type 'lidar'" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout


def test_in_process_host_options_remaps_and_parameters(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({
        "/**/perception_host": {"ros__parameters": {"nodes": ["ignored"], "executor_threads": 3}},
        "/**/cam": {"ros__parameters": {"label": "bare"}},
        "/zz/other": {"ros__parameters": {"label": "exact"}},
    }))
    argv = ["perception_host", "--nodes", f"cam:{DUMMY},other:{DUMMY},skip:{DUMMY}", "--select", "skip=false",
            "--autostart", "false", "--ros-args", "--params-file", str(params), "-r", "__ns:=/zz",
            "-r", "/zz/cam/configure_times:=/remapped_times"]
    context = rclpy.context.Context()
    rclpy.init(args=argv, context=context)
    host = None
    try:
        opts = build_parser().parse_args(argv[1:argv.index("--ros-args")])
        host = PerceptionHost(argv, opts, context=context)
        assert [n.get_fully_qualified_name() for n in host.nodes] == ["/zz/cam", "/zz/other"]
        assert [n.get_parameter("label").value for n in host.nodes] == ["bare", "exact"]
        assert [n._times_pub.topic_name for n in host.nodes] == ["/remapped_times", "/zz/other/configure_times"]
        assert host.manager is None and host.autostart is False
        assert host.executor._executor._max_workers == 3
        declared = set(host.node._parameters) - {"use_sim_time", "start_type_description_service"}
        assert declared == set(declared_parameters("perception_host"))
        for node in host.nodes:
            node.trigger_configure()
        host.nodes[1].trigger_activate()
        DummyLifecycleNode.journal.clear()
        host.shutdown()
        assert DummyLifecycleNode.journal == [("/zz/other", "deactivate"), ("/zz/other", "cleanup"),
                                              ("/zz/other", "shutdown"), ("/zz/cam", "cleanup"),
                                              ("/zz/cam", "shutdown")]
    finally:
        if host is not None:
            host.shutdown()
        rclpy.shutdown(context=context)


def test_real_node_types_under_the_host(tmp_path):
    """The registry's real classes run in the host: device_monitor (CPU) comes up, a detector without a model fails
    configure for good and is not retried (configure_retries 3), the manager goes on (continue_on_failure), reports
    the detector as ERROR with the node's own reason, and is_active is true for the nodes that can run."""
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump({
        "perception_host": {"ros__parameters": {"nodes": ["detector", "device_monitor"], "autostart": True}},
        "lifecycle_manager": {"ros__parameters": {"configure_retries": 3, "retry_backoff_s": 0.2,
                                                  "continue_on_failure": True, "diagnostics_period_s": 0.2}},
        "detector": {"ros__parameters": {"model_path": str(tmp_path / "missing.onnx")}},
        "device_monitor": {"ros__parameters": {"backend": "onnxruntime", "period_s": 0.5}},
    }))
    with RosGraph(threads=4) as graph:
        obs = Observer(graph, "/lifecycle_manager")
        host = _host(tmp_path, str(path), name="real")
        try:
            graph.wait_for(lambda: "/lifecycle_manager: /detector" in obs.status
                           and obs.status["/lifecycle_manager: /detector"].level == DiagnosticStatus.ERROR, 60,
                           f"detector ERROR\n{host.output()[-2000:]}")
            graph.wait_for(lambda: obs.lifecycle.state("/device_monitor") == "active", 10, "device_monitor active")
            assert obs.lifecycle.state("/detector") == "unconfigured"
            assert obs.status["/lifecycle_manager"].level == DiagnosticStatus.ERROR
            per_node = obs.status["/lifecycle_manager: /detector"]
            # the node's own reason, and no retry: a missing file cannot fix itself by waiting
            assert "missing.onnx' does not exist" in per_node.message and "permanent: not retried" in per_node.message
            assert {kv.key: kv.value for kv in per_node.values}["configure_attempts"] == "1"
            graph.wait_for(lambda: obs.active is True, 10, "is_active: every node that can run is active")
        finally:
            out = _clean_exit(host)
    assert "missing.onnx" in out  # the detector said what to fix


def test_manager_notices_a_killed_node_process_and_brings_its_restart_back(tmp_path):
    """Separate processes: a node process killed with SIGKILL is reported gone within seconds (heartbeat on
    get_state, no bond), and the restarted process (what launch's respawn does) is configured and activated."""
    params = tmp_path / "one.yaml"
    params.write_text(yaml.safe_dump({"/**/perception_host": {"ros__parameters": {
        "nodes": ["victim"], "node_types": [DUMMY], "autostart": False}}}))
    with RosGraph(threads=6) as graph:
        from rclpy.parameter import Parameter

        from axcl_ros.bringup.lifecycle_manager import LifecycleManager

        obs = Observer(graph, "/mgr")
        node_proc = _host(tmp_path, str(params), name="a1")
        manager = graph.add(LifecycleManager("mgr", context=graph.context, parameter_overrides=[
            Parameter("node_names", value=["victim"]), Parameter("heartbeat_period_s", value=0.3),
            Parameter("heartbeat_misses", value=3), Parameter("diagnostics_period_s", value=0.2),
            Parameter("service_timeout_s", value=20.0)]))
        try:
            graph.wait_for(lambda: obs.active is True and manager.phase == "active", 30,
                           f"victim active\n{node_proc.output()[-1500:]}")
            node_proc._kill()  # SIGKILL: no goodbye on DDS
            t_kill = time.monotonic()
            graph.wait_for(lambda: manager.states()["/victim"] == "unavailable", 10, "the manager noticed the death")
            noticed_s = time.monotonic() - t_kill
            graph.wait_for(lambda: "/mgr: /victim" in obs.status
                           and obs.status["/mgr: /victim"].level == DiagnosticStatus.ERROR, 5,
                           "victim ERROR on /diagnostics")
            message = obs.status["/mgr: /victim"].message
            assert "no answer to get_state" in message and "process died?" in message
            graph.wait_for(lambda: obs.active is False, 5, "is_active false while victim is gone")
            assert noticed_s < 5.0, noticed_s
            node_proc = _host(tmp_path, str(params), name="a2")  # what launch's respawn=True does
            graph.wait_for(lambda: manager.states()["/victim"] == "active", 30,
                           f"victim brought back\n{node_proc.output()[-1500:]}")
            graph.wait_for(lambda: obs.active is True, 10, "is_active again")
        finally:
            manager.stop()
            node_proc.stop(grace=10)


def test_separate_processes_from_launch_ros_parameter_files(tmp_path):
    """What ``use_composition:=false`` starts, with the command lines and parameter files launch_ros 0.26 gives
    them: each node's own executable (``-r __node:=`` / ``-r __ns:=``, the user's file), and the manager with the
    user's file plus launch_ros's temporary file for ``{node_names: [...], autostart: true}`` (tuples)."""
    user = tmp_path / "user.yaml"
    user.write_text(yaml.safe_dump({
        "/**/lifecycle_manager": {"ros__parameters": {"diagnostics_period_s": 0.2, "service_timeout_s": 20.0}},
        "/**/device_monitor": {"ros__parameters": {"backend": "onnxruntime", "period_s": 0.5}},
    }))
    launch_params = launch_ros_params_file(tmp_path, {"node_names": ["device_monitor"], "autostart": True},
                                           node_name="/robot/lifecycle_manager")
    ns = ["-r", "__ns:=/robot"]
    exe = os.path.join(os.path.dirname(sys.executable), "python")
    with RosGraph(threads=4) as graph:
        obs = Observer(graph, "/robot/lifecycle_manager")
        monitor = RosProcess([exe, "-m", "axcl_ros.nodes.device_monitor", "--ros-args", "--params-file", str(user),
                              "-r", "__node:=device_monitor", *ns], timeout=90, env=ENV,
                             log_path=str(tmp_path / "monitor.log"))
        manager = RosProcess([exe, "-m", "axcl_ros.bringup.lifecycle_manager", "--ros-args", "--params-file",
                              str(user), "--params-file", launch_params, "-r", "__node:=lifecycle_manager", *ns],
                             timeout=90, env=ENV, log_path=str(tmp_path / "manager.log"))
        try:
            graph.wait_for(lambda: obs.active is True, 60,
                           f"is_active\n{manager.output()[-1500:]}\n{monitor.output()[-1500:]}")
            assert obs.states(["/robot/device_monitor"]) == ["active"]
            assert "waiting for `ros2 lifecycle set /robot/device_monitor configure`" in monitor.output()
        finally:
            _clean_exit(manager)
            _clean_exit(monitor)
