"""Lifecycle manager: brings an ordered list of lifecycle nodes up (configure, activate) and down (reverse order)
through the standard ``<node>/change_state`` and ``<node>/get_state`` services, so it manages nodes in its own
process and in other processes alike (no bond needed).

Parameters (``ros2 param describe`` shows them):

====================== ======= ===========================================================================
``node_names``         []      Nodes to manage, in bring-up order (list, or ``"a,b"``); relative names resolve
                               in the manager's namespace.
``autostart``          true    Run STARTUP as soon as the manager starts (every distro, Humble included).
``configure_retries``  3       Extra configure attempts after a FAILURE (the node is back in unconfigured).
``retry_backoff_s``    1.0     Wait before the first retry; doubles for each further retry.
``service_timeout_s``  5.0     How long to wait for a node's lifecycle services to appear.
``transition_timeout_s`` 120.0 How long one transition may take (configure loads models).
``diagnostics_period_s`` 1.0   Period of the ``/diagnostics`` status (0 = only on changes).
``continue_on_failure`` false  On STARTUP, bring up the remaining nodes when one fails for good.
====================== ======= ===========================================================================

Interfaces: service ``~/manage_nodes`` (``axcl_msgs/srv/ManageNodes``: STARTUP, SHUTDOWN, RESET, PAUSE, RESUME; a
SHUTDOWN/RESET/PAUSE interrupts a STARTUP waiting for a retry), latched topic ``~/is_active`` (``std_msgs/Bool``),
``/diagnostics`` (one status for the manager: OK when every node is active, WARN while starting or stopped on
request, ERROR when a node failed for good; and one status per managed node with its lifecycle state).

Spin it on a ``MultiThreadedExecutor``: transitions run in a worker thread, service clients and the
``manage_nodes`` server are in separate callback groups, so a manager in the same process as its nodes does not
deadlock.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

from axcl_msgs.srv import ManageNodes
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from lifecycle_msgs.msg import Transition, TransitionEvent
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool

from .node_registry import split_list

PRIMARY_STATES = ("unconfigured", "inactive", "active", "finalized")
COMMANDS = {ManageNodes.Request.STARTUP: "startup", ManageNodes.Request.SHUTDOWN: "shutdown",
            ManageNodes.Request.RESET: "reset", ManageNodes.Request.PAUSE: "pause",
            ManageNodes.Request.RESUME: "resume"}
_INTERRUPTING = (ManageNodes.Request.SHUTDOWN, ManageNodes.Request.RESET, ManageNodes.Request.PAUSE)
_LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


class _Managed:
    """What the manager knows about one node."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = "unknown"
        self.failed = ""
        self.reason = ""
        self.configure_attempts = 0
        self.change_client = None
        self.get_client = None


class _Command:
    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.done = threading.Event()
        self.success = False
        self.message = ""

    def finish(self, success: bool, message: str) -> None:
        self.success, self.message = success, message
        self.done.set()


class LifecycleManager(Node):
    """Brings ``node_names`` up in order and down in reverse through their lifecycle services (see module doc).

    ``select`` ({name: bool}) drops nodes switched off by the launch file's booleans from ``node_names``.
    """

    def __init__(self, node_name: str = "lifecycle_manager", *, select: Optional[Dict[str, bool]] = None,
                 **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.declare_parameter("node_names", None, ParameterDescriptor(
            dynamic_typing=True, description="Nodes to manage, in bring-up order (list or comma-separated)."))
        self.declare_parameter("autostart", True, ParameterDescriptor(description="STARTUP when the manager starts."))
        self.declare_parameter("configure_retries", 3, ParameterDescriptor(
            description="Extra configure attempts after a configure FAILURE."))
        self.declare_parameter("retry_backoff_s", 1.0, ParameterDescriptor(
            description="Seconds before the first configure retry; doubles for each further retry."))
        self.declare_parameter("service_timeout_s", 5.0, ParameterDescriptor(
            description="Seconds to wait for a node's lifecycle services."))
        self.declare_parameter("transition_timeout_s", 120.0, ParameterDescriptor(
            description="Seconds one lifecycle transition may take."))
        self.declare_parameter("diagnostics_period_s", 1.0, ParameterDescriptor(
            description="Seconds between /diagnostics messages; 0 = only on changes."))
        self.declare_parameter("continue_on_failure", False, ParameterDescriptor(
            description="On STARTUP, bring up the other nodes when one fails for good."))
        select = select or {}
        names = [n for n in split_list(self.get_parameter("node_names").value) if select.get(n, True)]
        self.retries = max(0, int(self.get_parameter("configure_retries").value))
        self.backoff_s = max(0.0, float(self.get_parameter("retry_backoff_s").value))
        self.service_timeout_s = float(self.get_parameter("service_timeout_s").value)
        self.transition_timeout_s = float(self.get_parameter("transition_timeout_s").value)
        self.continue_on_failure = bool(self.get_parameter("continue_on_failure").value)

        self._lock = threading.Lock()
        self._clients_group = ReentrantCallbackGroup()
        self._nodes: List[_Managed] = []
        for name in names:
            fq = name if name.startswith("/") else _fully_qualified(name, self.get_namespace())
            m = _Managed(fq)
            m.change_client = self.create_client(ChangeState, f"{fq}/change_state",
                                                 callback_group=self._clients_group)
            m.get_client = self.create_client(GetState, f"{fq}/get_state", callback_group=self._clients_group)
            self.create_subscription(TransitionEvent, f"{fq}/transition_event",
                                     lambda msg, m=m: self._on_transition(m, msg), 10,
                                     callback_group=self._clients_group)
            self._nodes.append(m)
        self.phase = "idle"
        self._active = None
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._active_pub = self.create_publisher(Bool, "~/is_active", _LATCHED)
        self._set_active(False)
        self.create_service(ManageNodes, "~/manage_nodes", self._on_manage,
                            callback_group=MutuallyExclusiveCallbackGroup())
        period = float(self.get_parameter("diagnostics_period_s").value)
        if period > 0:
            self.create_timer(period, self._on_diagnostics_timer, callback_group=MutuallyExclusiveCallbackGroup())

        self._queue: queue.Queue[Optional[_Command]] = queue.Queue()
        self._interrupt = threading.Event()
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._work, name=f"{node_name}-worker", daemon=True)
        self._worker.start()
        if not self._nodes:
            self.get_logger().warning("node_names is empty: nothing to manage")
        if bool(self.get_parameter("autostart").value):
            self.submit(ManageNodes.Request.STARTUP)

    # -- public API --------------------------------------------------------------------------------------------------
    @property
    def node_names(self) -> List[str]:
        """Fully qualified names of the managed nodes, in bring-up order."""
        return [m.name for m in self._nodes]

    def states(self) -> Dict[str, str]:
        """Last known lifecycle state label of each managed node."""
        with self._lock:
            return {m.name: m.state for m in self._nodes}

    def submit(self, command: int) -> _Command:
        """Queue a ManageNodes command for the worker thread; wait on ``.done`` of the result for the outcome."""
        cmd = _Command(command)
        if command not in COMMANDS:
            cmd.finish(False, f"unknown command {command}; use one of {sorted(COMMANDS)} ({COMMANDS})")
            return cmd
        if self._stopping.is_set():
            cmd.finish(False, "the lifecycle manager is shutting down")
            return cmd
        if command in _INTERRUPTING:
            self._interrupt.set()
        self._queue.put(cmd)
        return cmd

    def manage(self, command: int, timeout: Optional[float] = None) -> Tuple[bool, str]:
        """Run a command and wait for it (never from a callback of a single-threaded executor)."""
        cmd = self.submit(command)
        if not cmd.done.wait(timeout):
            return False, f"{COMMANDS.get(command, command)} did not finish within {timeout} s"
        return cmd.success, cmd.message

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker thread (a transition in flight is waited for up to ``timeout``); idempotent."""
        self._stopping.set()
        self._interrupt.set()
        self._queue.put(None)
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout)
        while True:
            try:
                cmd = self._queue.get_nowait()
            except queue.Empty:
                break
            if cmd is not None:
                cmd.finish(False, "the lifecycle manager is shutting down")

    def destroy_node(self) -> None:
        """Stop the worker, then destroy the node."""
        self.stop()
        super().destroy_node()

    # -- ROS callbacks -----------------------------------------------------------------------------------------------
    def _on_manage(self, request, response):
        cmd = self.submit(request.command)
        while not cmd.done.wait(0.1):
            if self._stopping.is_set() and not self._worker.is_alive():
                cmd.finish(False, "the lifecycle manager is shutting down")
        response.success, response.message = cmd.success, cmd.message
        return response

    def _on_diagnostics_timer(self) -> None:
        with self._lock:
            for m in self._nodes:  # a node whose process died loses its services
                if m.state != "unknown" and not m.get_client.service_is_ready():
                    m.state = "unavailable"
        self._update_active()
        self.publish_diagnostics()

    def _on_transition(self, m: _Managed, msg: TransitionEvent) -> None:
        with self._lock:
            m.state = msg.goal_state.label
        self._update_active()

    # -- worker ------------------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stopping.is_set():
            cmd = self._queue.get()
            if cmd is None or self._stopping.is_set():
                if cmd is not None:
                    cmd.finish(False, "the lifecycle manager is shutting down")
                break
            self._interrupt.clear()
            name = COMMANDS[cmd.kind]
            ok, message = False, "internal error"
            try:
                self.get_logger().info(f"{name}: {', '.join(self.node_names) or '(no nodes)'}")
                ok, message = getattr(self, f"_cmd_{name}")()
                if ok:
                    self.get_logger().info(f"{name}: {message}")
                else:
                    self.get_logger().error(f"{name}: {message}")
                self._update_active()
                self.publish_diagnostics()
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the worker or leave a caller waiting
                ok, message = False, f"{name} raised {type(exc).__name__}: {exc}"
            finally:
                cmd.finish(ok, message)

    def _cmd_startup(self) -> Tuple[bool, str]:
        self.phase = "starting"
        with self._lock:
            for m in self._nodes:
                m.failed = ""
        self.publish_diagnostics()
        failed = []
        for m in self._nodes:
            if self._interrupt.is_set():
                self.phase = "interrupted"
                return False, "startup interrupted by another command"
            ok, why = self._bring_up(m)
            if not ok:
                self._fail(m, why)
                failed.append(f"{m.name}: {why}")
                if not self.continue_on_failure:
                    break
        if failed:
            self.phase = "failed"
            return False, "; ".join(failed)
        self.phase = "active"
        return True, f"{len(self._nodes)} node(s) active"

    def _cmd_resume(self) -> Tuple[bool, str]:
        self.phase = "resuming"
        problems = []
        for m in self._nodes:
            state = self._settle(m)
            if state == "inactive":
                ok, why = self._change(m, Transition.TRANSITION_ACTIVATE)
                if not ok:
                    self._fail(m, why)
                    problems.append(f"{m.name}: {why}")
            elif state != "active":
                problems.append(f"{m.name} is {state}, not inactive (use STARTUP)")
        self.phase = "active" if not problems else "failed"
        return (not problems), ("; ".join(problems) or f"{len(self._nodes)} node(s) active")

    def _cmd_pause(self) -> Tuple[bool, str]:
        return self._bring_all_down("inactive", "paused")

    def _cmd_reset(self) -> Tuple[bool, str]:
        return self._bring_all_down("unconfigured", "reset")

    def _cmd_shutdown(self) -> Tuple[bool, str]:
        return self._bring_all_down("finalized", "shut down")

    def _bring_all_down(self, goal: str, phase: str) -> Tuple[bool, str]:
        self.phase = f"going {goal}"
        problems = []
        for m in reversed(self._nodes):
            ok, why = self._bring_down(m, goal)
            if not ok:
                problems.append(f"{m.name}: {why}")
        self.phase = phase
        return (not problems), ("; ".join(problems) or f"{len(self._nodes)} node(s) {goal}")

    def _bring_up(self, m: _Managed) -> Tuple[bool, str]:
        failures = 0
        while True:
            state = self._settle(m)
            if state == "active":
                return True, ""
            if state == "inactive":
                ok, why = self._change(m, Transition.TRANSITION_ACTIVATE)
                return (True, "") if ok else (False, f"activate failed{why}")
            if state != "unconfigured":
                return False, f"cannot start a node in state {state}" + (f" ({m.reason})" if m.reason else "")
            with self._lock:
                m.configure_attempts += 1
            ok, why = self._change(m, Transition.TRANSITION_CONFIGURE)
            if ok:
                continue
            failures += 1
            if failures > self.retries:
                return False, f"configure failed {failures} time(s){why}"
            delay = self.backoff_s * 2 ** (failures - 1)
            self.get_logger().warning(f"{m.name}: configure failed{why}; retry {failures}/{self.retries} in "
                                      f"{delay:.2f} s")
            if self._interrupt.wait(delay):
                return False, "interrupted while waiting to retry configure"

    def _bring_down(self, m: _Managed, goal: str) -> Tuple[bool, str]:
        steps = {"active": Transition.TRANSITION_DEACTIVATE, "inactive": Transition.TRANSITION_CLEANUP,
                 "unconfigured": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN}
        order = ("active", "inactive", "unconfigured", "finalized")
        while True:
            state = self._settle(m)
            if state == goal:
                return True, ""
            if state not in order:
                return False, f"state {state}" + (f" ({m.reason})" if m.reason else "")
            if order.index(state) > order.index(goal):
                if goal == "inactive":  # PAUSE leaves nodes that are not running alone
                    return True, ""
                return False, f"cannot go from {state} to {goal}"
            ok, why = self._change(m, steps[state])
            if not ok:
                return False, f"{state} -> {goal} failed{why}"

    def _fail(self, m: _Managed, why: str) -> None:
        with self._lock:
            m.failed = why
        self.get_logger().error(f"{m.name}: {why}")

    # -- service calls (worker thread) -------------------------------------------------------------------------------
    def _call(self, client, request, timeout: float) -> Tuple[Optional[object], str]:
        deadline = time.monotonic() + self.service_timeout_s
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                return None, f"service {client.srv_name} not available after {self.service_timeout_s:g} s"
            if self._stopping.wait(0.05):
                return None, "manager stopping"
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline or self._stopping.wait(0.01):
                client.remove_pending_request(future)
                return None, f"no response from {client.srv_name} within {timeout:g} s"
        exc = future.exception()
        if exc is not None:
            return None, f"{client.srv_name} failed: {exc}"
        return future.result(), ""

    def _get_state(self, m: _Managed) -> str:
        response, why = self._call(m.get_client, GetState.Request(), self.service_timeout_s)
        state = response.current_state.label if response is not None else "unavailable"
        with self._lock:
            m.state, m.reason = state, why
        return state

    def _settle(self, m: _Managed) -> str:
        """The node's state once it is in a primary state (transitions in progress are waited for)."""
        deadline = time.monotonic() + self.transition_timeout_s
        state = self._get_state(m)
        while state not in PRIMARY_STATES and state != "unavailable" and time.monotonic() < deadline:
            if self._stopping.wait(0.1):
                break
            state = self._get_state(m)
        return state

    def _change(self, m: _Managed, transition: int) -> Tuple[bool, str]:
        request = ChangeState.Request()
        request.transition.id = transition
        response, why = self._call(m.change_client, request, self.transition_timeout_s)
        if response is not None and response.success:
            self._get_state(m)
            return True, ""
        self._get_state(m)
        return False, f" ({why})" if why else ""

    # -- status ------------------------------------------------------------------------------------------------------
    def _update_active(self) -> None:
        states = self.states()
        self._set_active(bool(states) and all(s == "active" for s in states.values()))

    def _set_active(self, active: bool) -> None:
        if active != self._active:
            self._active = active
            self._active_pub.publish(Bool(data=active))

    def diagnostic_status(self) -> List[DiagnosticStatus]:
        """The manager's summary status followed by one status per managed node."""
        me = self.get_fully_qualified_name()
        with self._lock:
            nodes = [(m.name, m.state, m.failed, m.configure_attempts) for m in self._nodes]
        per_node = []
        for name, state, failed, attempts in nodes:
            if failed:
                level, message = DiagnosticStatus.ERROR, f"{state}: {failed}"
            elif state == "active":
                level, message = DiagnosticStatus.OK, state
            else:
                level, message = DiagnosticStatus.WARN, state
            per_node.append(DiagnosticStatus(level=level, name=f"{me}: {name}", message=message, values=[
                KeyValue(key="state", value=state), KeyValue(key="configure_attempts", value=str(attempts))]))
        failed_nodes = [n for n, _, f, _ in nodes if f]
        if failed_nodes:
            level, message = DiagnosticStatus.ERROR, f"failed: {', '.join(failed_nodes)}"
        elif nodes and all(s == "active" for _, s, _, _ in nodes):
            level, message = DiagnosticStatus.OK, "all nodes active"
        else:
            level, message = DiagnosticStatus.WARN, self.phase
        summary = DiagnosticStatus(level=level, name=me, message=message,
                                   values=[KeyValue(key="phase", value=self.phase)]
                                   + [KeyValue(key=n, value=s) for n, s, _, _ in nodes])
        return [summary] + per_node

    def publish_diagnostics(self) -> None:
        """Publish :meth:`diagnostic_status` on /diagnostics."""
        msg = DiagnosticArray(status=self.diagnostic_status())
        msg.header.stamp = self.get_clock().now().to_msg()
        try:
            self._diag_pub.publish(msg)
        except Exception:  # noqa: BLE001 - the context may be shutting down
            pass


def _fully_qualified(name: str, namespace: str) -> str:
    """``("detector", "/ns")`` → ``"/ns/detector"`` (a relative node name resolved in the manager's namespace)."""
    ns = "/" + (namespace or "").strip("/")
    return f"/{name}" if ns == "/" else f"{ns}/{name}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``lifecycle_manager`` executable: ``[--select NAME=BOOL ...] --ros-args -p node_names:=[a,b] ...``."""
    import argparse

    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from rclpy.utilities import remove_ros_args

    from .host import run_until_signal, stop_on_signals
    from .node_registry import parse_select

    argv = list(sys.argv if argv is None else argv)
    parser = argparse.ArgumentParser(prog="lifecycle_manager", description=__doc__.split("\n\n")[0])
    parser.add_argument("--select", nargs="*", default=[], metavar="NAME=BOOL",
                        help="leave out managed nodes switched off here (e.g. depth=false)")
    opts = parser.parse_args(remove_ros_args(argv)[1:])
    stop = stop_on_signals()
    try:
        select = parse_select(opts.select)
    except ValueError as exc:
        print(f"lifecycle_manager: {exc}", file=sys.stderr)
        return 2
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)  # rcl applies parameter files and remaps
    manager = LifecycleManager(select=select)
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(manager)
    error = None
    try:
        error = run_until_signal(executor, stop)
        if error is not None:
            manager.get_logger().error(f"executor stopped: a callback raised {type(error).__name__}: {error}")
    finally:
        manager.stop()
        executor.shutdown(timeout_sec=2.0)
        manager.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 1 if error is not None else 0


if __name__ == "__main__":
    sys.exit(main())
