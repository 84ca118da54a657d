"""Tiny lifecycle nodes for bring-up tests (host, lifecycle manager): no models, controllable failures.

Use them as host node types ``"axcl_ros_testing.dummy_nodes:DummyLifecycleNode"``.
"""

from __future__ import annotations

import time

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float64MultiArray

from axcl_ros.nodes.common import release_state_machine

LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


class DummyLifecycleNode(LifecycleNode):
    """Lifecycle node whose configure fails ``fail_configure_times`` times, then succeeds.

    Parameters: ``fail_configure_times`` (int), ``fail_activate`` (bool), ``configure_delay_s`` (float),
    ``label`` (string, echoed in logs; lets tests check that parameter files reach the node).
    Publishes the wall-clock time of every configure attempt on the latched topic ``~/configure_times``
    and logs ``"<transition> <fully qualified name>"`` for each transition; :attr:`journal` (shared by every dummy
    node of the process) records ``(fully qualified name, transition)`` in the order they ran.
    """

    journal: list = []

    def __init__(self, node_name: str = "dummy", **kwargs) -> None:
        self.attempt_times: list = []
        super().__init__(node_name, **kwargs)
        self.declare_parameter("fail_configure_times", 0)
        self.declare_parameter("fail_activate", False)
        self.declare_parameter("configure_delay_s", 0.0)
        self.declare_parameter("label", "")
        self._times_pub = self.create_publisher(Float64MultiArray, "~/configure_times", LATCHED)

    def destroy_node(self) -> None:
        """Destroy the node now, its lifecycle state machine included (see ``release_state_machine``)."""
        super().destroy_node()
        release_state_machine(self)

    def _log(self, what: str) -> None:
        DummyLifecycleNode.journal.append((self.get_fully_qualified_name(), what))
        self.get_logger().info(f"{what} {self.get_fully_qualified_name()} label={self.get_parameter('label').value}")

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.attempt_times.append(time.time())
        self._times_pub.publish(Float64MultiArray(data=list(self.attempt_times)))
        delay = float(self.get_parameter("configure_delay_s").value)
        if delay > 0:
            time.sleep(delay)
        if len(self.attempt_times) <= int(self.get_parameter("fail_configure_times").value):
            self._log(f"configure-failure#{len(self.attempt_times)}")
            return TransitionCallbackReturn.FAILURE
        self._log("configure")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.get_parameter("fail_activate").value:
            self._log("activate-failure")
            return TransitionCallbackReturn.FAILURE
        self._log("activate")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._log("deactivate")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._log("cleanup")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._log("shutdown")
        return TransitionCallbackReturn.SUCCESS
