"""Lifecycle manager: brings an ordered list of lifecycle nodes up (configure, activate) and down (reverse order)
through the standard ``<node>/change_state`` and ``<node>/get_state`` services, so it manages nodes in its own
process and in other processes alike (no bond needed).

Over 400 lines on purpose: one state machine whose command worker, heartbeat and transition events share the managed
nodes' state under one lock; split, each part would have to know the others' invariants.

Parameters: ``PARAMS`` below (``ros2 param describe`` and the README show them).

Why polling ``get_state`` and not bond: bond is not part of the lifecycle services, not every node (Humble's rclpy
included) has it, and a DDS participant of a killed process disappears from the graph only after its lease
(seconds to tens of seconds); a request that gets no answer is seen within ``heartbeat_period_s`` times
``heartbeat_misses``, on every distro, for any lifecycle node.

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
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool

from ..nodes.callback_guard import CallbackGuard
from ..nodes.parameters import ParamSpec
from ..nodes.service_call import call_service
from .node_registry import split_list

PRIMARY_STATES = ("unconfigured", "inactive", "active", "finalized")
#: the primary state each transition ends in when it succeeds
GOAL_STATES = {Transition.TRANSITION_CONFIGURE: "inactive", Transition.TRANSITION_CLEANUP: "unconfigured",
               Transition.TRANSITION_ACTIVATE: "active", Transition.TRANSITION_DEACTIVATE: "inactive",
               Transition.TRANSITION_UNCONFIGURED_SHUTDOWN: "finalized",
               Transition.TRANSITION_INACTIVE_SHUTDOWN: "finalized",
               Transition.TRANSITION_ACTIVE_SHUTDOWN: "finalized"}
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
        self.result: Tuple[str, bool, float] = ("", False, 0.0)  # last ~/configure_result: message, permanent, stamp
        self.busy = False  # the worker is changing its state
        self.misses = 0
        self.gone = False
        self.was_up = False  # it was active under this manager (a restart of it is brought back)


_BRING_BACK = 100  # internal command: bring one restarted node back up


class _Command:
    def __init__(self, kind: int, node: Optional[_Managed] = None) -> None:
        self.kind = kind
        self.node = node
        self.done = threading.Event()
        self.success = False
        self.message = ""

    def finish(self, success: bool, message: str) -> None:
        self.success, self.message = success, message
        self.done.set()


class LifecycleManager(CallbackGuard, Node):
    """Brings ``node_names`` up in order and down in reverse through their lifecycle services (see module doc).

    ``select`` ({name: bool}) drops nodes switched off by the launch file's booleans from ``node_names``.
    """

    # no ranges: rclpy raises in the constructor for a file value outside a declared range (a plain node has no
    # refusal boundary); values are clamped where they are read
    PARAMS = (
        ParamSpec("node_names", None, "Nodes to manage, in bring-up order (list, or 'a,b'); relative names resolve "
                                      "in the manager's namespace.", dynamic_typing=True),
        ParamSpec("autostart", True, "Run STARTUP as soon as the manager starts (every distro, Humble included)."),
        ParamSpec("configure_retries", 3, "Extra configure attempts after a FAILURE that may pass later (a card "
                                          "still booting); a permanent one (what the node publishes on "
                                          "~/configure_result) is not retried."),
        ParamSpec("retry_backoff_s", 1.0, "Wait before the first retry; doubles for each further retry. Retries of "
                                          "one node never hold up the others."),
        ParamSpec("service_timeout_s", 5.0, "How long to wait for a node's lifecycle services to appear."),
        ParamSpec("transition_timeout_s", 120.0, "How long one transition may take (configure loads models)."),
        ParamSpec("diagnostics_period_s", 1.0, "Period of the /diagnostics status (0 = only on changes)."),
        ParamSpec("continue_on_failure", False, "On STARTUP, bring up the remaining nodes when one fails for good; "
                                                "is_active is then true once every node that did not fail for good "
                                                "is active."),
        ParamSpec("heartbeat_period_s", 1.0, "Seconds between get_state calls to every managed node (0 = off): a "
                                             "node that misses heartbeat_misses answers in a row is reported as "
                                             "gone (process died?)."),
        ParamSpec("heartbeat_misses", 3, "Missed answers (each waited for heartbeat_period_s) before a node is "
                                         "gone."),
        ParamSpec("bring_back", True, "Configure and activate a node that comes back unconfigured after it was up "
                                      "(a process restarted by respawn)."),
    )

    def __init__(self, node_name: str = "lifecycle_manager", *, select: Optional[Dict[str, bool]] = None,
                 **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.start_callback_guard()  # a callback that raises is counted and logged; the manager keeps serving
        for spec in self.PARAMS:
            self.declare_parameter(spec.name, spec.default, spec.descriptor("start"))
        select = select or {}
        names = [n for n in split_list(self.get_parameter("node_names").value) if select.get(n, True)]
        self.retries = max(0, int(self.get_parameter("configure_retries").value))
        self.backoff_s = max(0.0, float(self.get_parameter("retry_backoff_s").value))
        self.service_timeout_s = float(self.get_parameter("service_timeout_s").value)
        self.transition_timeout_s = float(self.get_parameter("transition_timeout_s").value)
        self.continue_on_failure = bool(self.get_parameter("continue_on_failure").value)
        self.heartbeat_s = max(0.0, float(self.get_parameter("heartbeat_period_s").value))
        self.heartbeat_misses = max(1, int(self.get_parameter("heartbeat_misses").value))
        self.bring_back = bool(self.get_parameter("bring_back").value)

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
            self.create_subscription(DiagnosticStatus, f"{fq}/configure_result",
                                     lambda msg, m=m: self._on_configure_result(m, msg), _LATCHED,
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
        self._heartbeat = threading.Thread(target=self._heartbeat_loop, name=f"{node_name}-heartbeat", daemon=True)
        if self.heartbeat_s > 0:
            self._heartbeat.start()
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
        for thread in (self._worker, self._heartbeat):
            if thread.is_alive() and threading.current_thread() is not thread:
                thread.join(timeout)
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
        self._update_active()
        self.publish_diagnostics()

    def _on_configure_result(self, m: _Managed, msg: DiagnosticStatus) -> None:
        values = {kv.key: kv.value for kv in msg.values}
        try:
            stamp = float(values.get("stamp", "0"))
        except ValueError:
            stamp = 0.0
        with self._lock:
            m.result = (msg.message if msg.level != DiagnosticStatus.OK else "",
                        values.get("permanent", "false") == "true", stamp)

    # -- heartbeat ---------------------------------------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(self.heartbeat_s):
            for m in self._nodes:
                if self._stopping.is_set():
                    return
                with self._lock:
                    skip = m.busy or m.state == "unknown"
                if not skip:
                    self._beat(m)

    def _beat(self, m: _Managed) -> None:
        response, why = call_service(m.get_client, GetState.Request(), self.heartbeat_s, wait_service=0.0,
                                     stop=self._stopping)
        restarted = False
        with self._lock:
            if m.busy:  # the worker took over meanwhile: its view wins
                return
            if response is None:
                m.misses += 1
                if m.misses >= self.heartbeat_misses and not m.gone:
                    m.gone = True
                    m.state, m.reason = "unavailable", (f"no answer to get_state for "
                                                        f"{m.misses * self.heartbeat_s:g} s (process died?)")
                    self.get_logger().error(f"{m.name}: {m.reason}")
                return
            state = response.current_state.label
            came_back = m.gone
            m.misses, m.gone, m.state, m.reason = 0, False, state, ""
            restarted = came_back or (m.was_up and state == "unconfigured" and not m.failed)
        if came_back:
            self.get_logger().warning(f"{m.name} answers again (state {state})")
        if restarted and state == "unconfigured" and self.bring_back and self.phase in ("active", "failed"):
            self.get_logger().warning(f"{m.name} is back unconfigured after it was up: bringing it back")
            self._queue.put(_Command(_BRING_BACK, m))
        self._update_active()

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
            if cmd.kind == _BRING_BACK:
                self._bring_back(cmd)
                continue
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
        """Every node in order. A configure failure that may pass is retried with back-off (a permanent one never):
        with ``continue_on_failure`` the nodes are independent, so a node's retries wait in the background while the
        next nodes come up; without it the order is a dependency chain and the next node waits."""
        self.phase = "starting"
        with self._lock:
            for m in self._nodes:
                m.failed = ""
        self.publish_diagnostics()
        failed: List[str] = []
        retry: Dict[str, Tuple[_Managed, int, float]] = {}  # name -> (node, failures so far, next attempt time)

        def settle(m: _Managed, failures: int, outcome: str, why: str) -> bool:
            """Book one attempt's outcome; False when STARTUP must stop (a failure without continue_on_failure)."""
            retry.pop(m.name, None)
            if outcome == "retry" and failures <= self.retries:
                delay = self.backoff_s * 2 ** (failures - 1)
                self.get_logger().warning(f"{m.name}: configure failed{why}; retry {failures}/{self.retries} in "
                                          f"{delay:.2f} s")
                retry[m.name] = (m, failures, time.monotonic() + delay)
                return True
            if outcome != "ok":
                text = f"configure failed {failures} time(s){why}" if outcome == "retry" else why
                self._fail(m, text)
                failed.append(f"{m.name}: {text}")
                return self.continue_on_failure
            return True

        def drain(only: Optional[_Managed] = None) -> Optional[str]:
            """Run due retries (of ``only``, or of every node) until none is left; an interruption's text or None."""
            while retry and (only is None or only.name in retry) and (self.continue_on_failure or not failed):
                m, failures, at = retry[only.name] if only else min(retry.values(), key=lambda item: item[2])
                if self._interrupt.wait(max(0.0, at - time.monotonic())):
                    return "interrupted while waiting to retry configure"
                if not settle(m, failures + 1, *self._try_up(m)):
                    break
            return None

        for m in self._nodes:
            if self._interrupt.is_set():
                self.phase = "interrupted"
                return False, "startup interrupted by another command"
            if not settle(m, 1, *self._try_up(m)):
                break
            if not self.continue_on_failure:
                stopped = drain(m)
                if stopped:
                    self.phase = "interrupted"
                    return False, stopped
                if failed:
                    break
        stopped = drain()
        if stopped:
            self.phase = "interrupted"
            return False, stopped
        if failed:
            self.phase = "failed"
            return False, "; ".join(failed)
        self.phase = "active"
        return True, f"{len(self._nodes)} node(s) active"

    def _try_up(self, m: _Managed) -> Tuple[str, str]:
        """One attempt to bring ``m`` to active: ``("ok", "")``, ``("retry", why)`` after a configure failure that
        may pass, or ``("fail", why)``."""
        state = self._settle(m)
        if state == "unconfigured":
            with self._lock:
                m.configure_attempts += 1
            sent = time.time()
            ok, why = self._change(m, Transition.TRANSITION_CONFIGURE)
            if not ok:
                message, permanent = self._configure_result(m, sent)
                if message:
                    why = f": {message}"
                if permanent:
                    return "fail", f"configure failed{why} (permanent: not retried)"
                return "retry", why
            state = self._settle(m)
        if state == "inactive":
            ok, why = self._change(m, Transition.TRANSITION_ACTIVATE)
            if not ok:
                return "fail", f"activate failed{why}"
            state = self._settle(m)
        if state == "active":
            with self._lock:
                m.was_up = True
            return "ok", ""
        return "fail", f"cannot start a node in state {state}" + (f" ({m.reason})" if m.reason else "")

    def _configure_result(self, m: _Managed, sent: float, wait_s: float = 0.5) -> Tuple[str, bool]:
        """The node's ``~/configure_result`` for the attempt sent at ``sent`` (waits briefly for it to arrive; nodes
        that do not publish it give ``("", False)``)."""
        deadline = time.monotonic() + wait_s
        while True:
            with self._lock:
                message, permanent, stamp = m.result
            if stamp >= sent - 0.5 or time.monotonic() > deadline or self._stopping.wait(0.02):
                return (message, permanent) if stamp >= sent - 0.5 else ("", False)

    def _bring_back(self, cmd: _Command) -> None:
        m = cmd.node
        outcome, why = self._try_up(m)
        if outcome == "ok":
            with self._lock:
                m.failed = ""
            self.get_logger().info(f"{m.name}: brought back to active")
        else:
            self._fail(m, f"bringing it back failed: {why}")
        self._update_active()
        self.publish_diagnostics()
        cmd.finish(outcome == "ok", why or "active")

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
    def _get_state(self, m: _Managed) -> str:
        response, why = call_service(m.get_client, GetState.Request(), self.service_timeout_s, resend=True,
                                     stop=self._stopping)
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
        goal = GOAL_STATES[transition]

        def reached_goal() -> Optional[ChangeState.Response]:
            # the node's answer may be lost (see service_call); its state says whether the transition happened
            return ChangeState.Response(success=True) if self._get_state(m) == goal else None

        with self._lock:
            m.busy = True
        try:
            response, why = call_service(m.change_client, request, self.transition_timeout_s,
                                         wait_service=self.service_timeout_s, every=2.0, on_silence=reached_goal,
                                         stop=self._stopping)
            self._get_state(m)
        finally:
            with self._lock:
                m.busy = False
        if response is not None and response.success:
            return True, ""
        return False, f" ({why})" if why else ""

    # -- status ------------------------------------------------------------------------------------------------------
    def _update_active(self) -> None:
        with self._lock:
            nodes = [(m.state, bool(m.failed)) for m in self._nodes]
        up = [s == "active" for s, failed in nodes if not (failed and self.continue_on_failure)]
        self._set_active(bool(up) and all(up))

    def _set_active(self, active: bool) -> None:
        if active != self._active:
            self._active = active
            self._active_pub.publish(Bool(data=active))

    def diagnostic_status(self) -> List[DiagnosticStatus]:
        """The manager's summary status followed by one status per managed node."""
        me = self.get_fully_qualified_name()
        with self._lock:
            nodes = [(m.name, m.state, m.failed, m.configure_attempts) for m in self._nodes]
            reasons = {m.name: m.reason for m in self._nodes}
        per_node = []
        for name, state, failed, attempts in nodes:
            reason = reasons[name]
            if failed:
                level, message = DiagnosticStatus.ERROR, f"{state}: {failed}"
            elif state == "unavailable":
                level, message = DiagnosticStatus.ERROR, f"unavailable: {reason or 'no answer'}"
            elif state == "active":
                level, message = DiagnosticStatus.OK, state
            else:
                level, message = DiagnosticStatus.WARN, state
            per_node.append(DiagnosticStatus(level=level, name=f"{me}: {name}", message=message, values=[
                KeyValue(key="state", value=state), KeyValue(key="configure_attempts", value=str(attempts))]))
        failed_nodes = [f"{n} ({f})" for n, _, f, _ in nodes if f]
        gone = [n for n, s, f, _ in nodes if s == "unavailable" and not f]
        active = [n for n, s, _, _ in nodes if s == "active"]
        if failed_nodes or gone:
            level = DiagnosticStatus.ERROR
            message = "; ".join(filter(None, [f"active: {', '.join(active)}" if active else "",
                                              f"failed: {', '.join(failed_nodes)}" if failed_nodes else "",
                                              f"gone: {', '.join(gone)}" if gone else ""]))
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

    from rclpy.executors import MultiThreadedExecutor
    from rclpy.utilities import remove_ros_args

    from ..nodes.process import finish_process, run_until_signal, start_process
    from .node_registry import parse_select

    argv = list(sys.argv if argv is None else argv)
    parser = argparse.ArgumentParser(prog="lifecycle_manager", description=__doc__.split("\n\n")[0])
    parser.add_argument("--select", nargs="*", default=[], metavar="NAME=BOOL",
                        help="leave out managed nodes switched off here (e.g. depth=false)")
    opts = parser.parse_args(remove_ros_args(argv)[1:])
    try:
        select = parse_select(opts.select)
    except ValueError as exc:
        print(f"lifecycle_manager: {exc}", file=sys.stderr)
        return 2
    # rcl applies parameter files and remaps; an unusable log directory turns file logging off instead of failing
    stop, _ = start_process(argv, device_work=False)
    manager = LifecycleManager(select=select)
    ros_executor = MultiThreadedExecutor(num_threads=4)
    ros_executor.add_node(manager)
    error = None
    try:
        error = run_until_signal(ros_executor, stop, manager.get_logger())
    finally:
        manager.stop()
        finish_process(ros_executor, [manager])
    return 1 if error is not None else 0


if __name__ == "__main__":
    sys.exit(main())
