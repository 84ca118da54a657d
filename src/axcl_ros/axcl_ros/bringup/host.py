"""``perception_host``: one process hosting any set of axcl_ros nodes on a ``MultiThreadedExecutor``.

Python nodes cannot be loaded into C++ component containers, so this is how ``axcl_ros`` composes: every hosted
node calls :func:`axcl_ros.runtime.executors.get_executor`, so nodes in one process share one inference executor
(one device context) per card. One ROS parameter file configures everything::

    perception_host:
      ros__parameters:
        nodes: ["detector", "depth", "speech", "device_monitor"]        # instance names ("name:type" allowed)
        node_types: ["detector", "depth", "speech", "device_monitor"]   # optional, same length as nodes
        namespace: ""                                                   # optional
        autostart: true        # run a lifecycle manager in this process that brings the nodes up
    /**/detector:              # per-node sections, as rcl matches them ("/**/name" = in any namespace)
      ros__parameters: {model_path: /opt/axcl_models/yolo11n.axmodel}
    lifecycle_manager:         # the in-process manager's own settings (retries, backoff, ...)
      ros__parameters: {configure_retries: 3}

Run it with ``ros2 run axcl_ros perception_host --ros-args --params-file config/cpu.yaml`` (or
``python -m axcl_ros.bringup.host ...``). Node types are the keys of
:data:`~axcl_ros.bringup.node_registry.NODE_TYPES` or ``"package.module:ClassName"`` for your own node class (its
constructor takes ``(node_name, **node_kwargs)``). Parameters, parameter files and remapping are rcl's own: every
node of the process gets the ``--params-file`` sections rcl matches to its fully qualified name (``/**``,
``/**/detector``, ``/robot/detector``; a bare ``detector:`` is ``/detector``), and ``-r``, ``-r __ns:=/robot`` and
``-p`` work as for any ROS process. Options before ``--ros-args`` (what the launch file passes):

``--nodes NAME[:TYPE] ...`` replaces the ``nodes`` parameter; ``--select TYPE=BOOL ...`` leaves out nodes by type
or name; ``--autostart BOOL``; ``--camera-topic``, ``--camera-info-topic``, ``--audio-topic``, ``--backend``,
``--detector-model``, ``--depth-model``, ``--whisper-model`` override the matching node parameters (empty = keep the
file's value; node executables take the same options); ``--host-name`` names the host node.

On SIGINT/SIGTERM the hosted lifecycle nodes go down in reverse order (deactivate, cleanup, shutdown), the
executor stops, the inference executors are shut down, and the process exits with code 0.

The node classes stay importable, so you can also put them on your own executor::

    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from axcl_ros.nodes.detector import DetectorNode
    from axcl_ros.bringup.lifecycle_manager import LifecycleManager

    rclpy.init()
    executor = MultiThreadedExecutor()
    detector = DetectorNode("detector", parameter_overrides=[Parameter("model_path", value="yolo11n.onnx")])
    manager = LifecycleManager(parameter_overrides=[Parameter("node_names", value=["detector"])])
    for node in (detector, manager):
        executor.add_node(node)
    executor.spin()
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, List, Optional, Sequence

from ..nodes.parameters import ParamSpec
from .node_registry import (
    DEFAULT_NODES,
    INPUT_OPTIONS,
    NODE_TYPES,
    add_input_options,
    input_overrides,
    load_node_class,
    parse_bool,
    parse_instances,
    parse_select,
    select_instances,
)

HOST_NAME = "perception_host"
MANAGER_NAME = "lifecycle_manager"


class HostError(ValueError):
    """The host cannot be set up as configured (the message says which node and why)."""


def build_parser() -> argparse.ArgumentParser:
    """Options of ``perception_host`` (given before ``--ros-args``)."""
    p = argparse.ArgumentParser(prog="perception_host", description="Host axcl_ros nodes in one process.")
    p.add_argument("--host-name", default=HOST_NAME, help="name of the host node (its parameter file section)")
    p.add_argument("--nodes", nargs="+", default=None, metavar="NAME[:TYPE]",
                   help="nodes to host (replaces the 'nodes' parameter; commas allowed)")
    p.add_argument("--select", nargs="*", default=[], metavar="NAME=BOOL",
                   help="leave out nodes by type or name, e.g. depth=false")
    p.add_argument("--autostart", default=None, help="true/false: run an in-process lifecycle manager")
    add_input_options(p)
    return p


class PerceptionHost:
    """The host node, the hosted nodes and (with autostart) a :class:`LifecycleManager`, on one executor.

    ``argv`` is the full command line; ``options`` come from :func:`build_parser`. rclpy must be initialised with
    ``argv`` (``context``: the context to use; None = the default): rcl applies its parameter files and remaps.
    """

    # no ranges: rclpy raises in the constructor for a file value outside a declared range (a plain node has no
    # refusal boundary); values are clamped where they are read
    PARAMS = (
        ParamSpec("nodes", None, "Node instances to host: names or 'name:type' strings (unset = device_monitor, "
                                 "detector, depth, speech).", dynamic_typing=True),
        ParamSpec("node_types", None, "Optional types, one per entry of nodes (a key of the node registry or "
                                      "'package.module:Class').", dynamic_typing=True),
        ParamSpec("namespace", "", "Namespace of every hosted node."),
        ParamSpec("autostart", True, "Run a lifecycle manager in this process that brings the nodes up (overridden "
                                     "by --autostart)."),
        ParamSpec("executor_threads", 0, "Threads of the process's executor; 0 = max(4, nodes + 3)."),
        ParamSpec("manager_name", MANAGER_NAME, "Name of the in-process lifecycle manager (its parameter file "
                                                "section)."),
    )

    def __init__(self, argv: Sequence[str], options: Optional[argparse.Namespace] = None, *,
                 context=None) -> None:
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.node import Node

        self.argv = list(argv)
        self.options = options or build_parser().parse_args([])
        self.context = context
        self.nodes: List[Any] = []
        self.manager = None
        self._shut_down = False
        self.node = Node(self.options.host_name, context=context)
        self.log = self.node.get_logger()
        n = self.node
        for spec in self.PARAMS:
            n.declare_parameter(spec.name, spec.default, spec.descriptor("start"))
        try:
            self.instances = self._instances()
            self.autostart = (parse_bool(self.options.autostart, "--autostart") if self.options.autostart is not None
                              else bool(n.get_parameter("autostart").value))
            self.namespace = str(n.get_parameter("namespace").value or "")
            threads = int(n.get_parameter("executor_threads").value)
            if threads <= 0:  # each lifecycle transition may hold a thread while a model loads
                threads = max(4, len(self.instances) + 3)
            self.executor = MultiThreadedExecutor(num_threads=threads, context=context)
            self.executor.add_node(self.node)
            for inst in self.instances:
                self._create(inst)
            if self.autostart:
                self._create_manager()
        except Exception:
            self.destroy()
            raise

    # -- set-up --------------------------------------------------------------------------------------------------------
    def _instances(self) -> list:
        if self.options.nodes:
            instances = parse_instances(",".join(self.options.nodes))
        else:
            nodes = self.node.get_parameter("nodes").value
            types = self.node.get_parameter("node_types").value
            instances = parse_instances(nodes if nodes else list(DEFAULT_NODES), types if nodes and types else ())
        return select_instances(instances, parse_select(self.options.select))

    def _create(self, inst) -> None:
        from rclpy.parameter import Parameter

        cls = load_node_class(inst.type_name)
        inputs = input_overrides(inst.type_name if inst.type_name in NODE_TYPES else "",
                                 **{k: getattr(self.options, k) for k in INPUT_OPTIONS})
        try:  # parameter files reach the node through rcl; launch inputs override them
            node = cls(inst.name, namespace=self.namespace, context=self.context,
                       parameter_overrides=[Parameter(k, value=v) for k, v in inputs.items()])
        except Exception as exc:
            raise HostError(f"could not create node {inst.name!r} of type {inst.type_name!r}: "
                            f"{type(exc).__name__}: {exc}") from exc
        self.nodes.append(node)
        self.executor.add_node(node)
        self.log.info(f"hosting {node.get_fully_qualified_name()} ({inst.type_name})")

    def _create_manager(self) -> None:
        from rclpy.parameter import Parameter

        from .lifecycle_manager import LifecycleManager

        manager_name = str(self.node.get_parameter("manager_name").value or MANAGER_NAME)
        managed = [n.get_fully_qualified_name() for n in self.nodes if hasattr(n, "trigger_configure")]
        self.manager = LifecycleManager(manager_name, namespace=self.namespace, context=self.context,
                                        parameter_overrides=[Parameter("node_names", value=managed),
                                                             Parameter("autostart", value=True)])
        self.executor.add_node(self.manager)

    # -- shutdown ----------------------------------------------------------------------------------------------------
    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the manager, bring the hosted lifecycle nodes down in reverse order, stop the executor, destroy the
        nodes and shut down the inference executors. Idempotent."""
        if self._shut_down:
            return
        self._shut_down = True
        if self.manager is not None:
            self.manager.stop(timeout)
        executor = getattr(self, "executor", None)
        if executor is not None:  # no new callbacks race the transitions below
            for node in self.nodes:
                try:
                    executor.remove_node(node)
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
        from axcl_ros.nodes.process import bring_down_local

        for node in reversed(self.nodes):
            bring_down_local(node, timeout)
        if executor is not None:
            executor.shutdown(timeout_sec=timeout)
        self.destroy()
        try:
            from axcl_ros.runtime.executors import shutdown_all
        except ImportError:
            return
        shutdown_all(timeout)

    def destroy(self) -> None:
        """Destroy every node this host created (no transitions)."""
        for node in ([self.manager] if self.manager is not None else []) + list(reversed(self.nodes)) + [self.node]:
            try:
                node.destroy_node()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        self.manager = None
        self.nodes = []


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``perception_host`` executable; returns the exit code (0 after a clean SIGINT)."""
    import rclpy
    from rclpy.utilities import remove_ros_args

    from axcl_ros.nodes.process import run_until_signal, start_process

    argv = list(sys.argv if argv is None else argv)
    options = build_parser().parse_args(remove_ros_args(argv)[1:])
    stop, profile = start_process(argv)
    try:
        host = PerceptionHost(argv, options)
    except Exception as exc:  # noqa: BLE001 - a configuration error is reported in one line, not a traceback
        kind = "" if isinstance(exc, ValueError) else f"{type(exc).__name__}: "  # ours are all ValueErrors
        print(f"perception_host: error: {kind}{exc}", file=sys.stderr)
        rclpy.shutdown()
        return 2
    names = ", ".join(n.get_fully_qualified_name() for n in host.nodes) or "no nodes"
    host.log.info(f"hosting {names}; autostart={host.autostart}")
    host.log.info(profile)
    error = None
    try:
        error = run_until_signal(host.executor, stop, host.log)
        host.log.info("shutting down")
    finally:
        host.shutdown()
        if rclpy.ok():
            rclpy.shutdown()
    return 1 if error is not None else 0


if __name__ == "__main__":
    sys.exit(main())
