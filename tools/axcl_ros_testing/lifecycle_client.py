"""Drive a lifecycle node through the standard ``change_state`` / ``get_state`` services (what ``ros2 lifecycle``
does), from a node in a :class:`~axcl_ros_testing.ros_graph.RosGraph`."""

from __future__ import annotations

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState

from axcl_ros.bringup.lifecycle_manager import GOAL_STATES

TRANSITIONS = {
    "configure": Transition.TRANSITION_CONFIGURE,
    "activate": Transition.TRANSITION_ACTIVATE,
    "deactivate": Transition.TRANSITION_DEACTIVATE,
    "cleanup": Transition.TRANSITION_CLEANUP,
    "shutdown": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
    "shutdown_inactive": Transition.TRANSITION_INACTIVE_SHUTDOWN,
    "shutdown_active": Transition.TRANSITION_ACTIVE_SHUTDOWN,
}


class LifecycleClient:
    """``change(node, 'configure')`` → bool success; ``state(node)`` → label such as ``'active'``."""

    def __init__(self, graph, client_node) -> None:
        self.graph = graph
        self.node = client_node
        self._clients = {}

    def _client(self, srv_type, name):
        if name not in self._clients:
            self._clients[name] = self.node.create_client(srv_type, name)
        return self._clients[name]

    def change(self, target: str, transition: str, timeout: float = 30.0) -> bool:
        """Request ``transition`` of the node named ``target`` (fully qualified); True when it succeeded.

        A lost answer is recovered by asking the node's state: reaching the transition's goal state counts as success.
        """
        req = ChangeState.Request()
        req.transition.id = TRANSITIONS[transition]
        goal = GOAL_STATES[req.transition.id]

        def reached_goal():
            try:
                return ChangeState.Response(success=True) if self.state(target, 2.0) == goal else None
            except TimeoutError:
                return None

        return bool(self.graph.call(self._client(ChangeState, f"{target}/change_state"), req, timeout,
                                    on_silence=reached_goal).success)

    def state(self, target: str, timeout: float = 10.0) -> str:
        """Current lifecycle state label of ``target`` (the request is re-sent while no answer comes)."""
        return self.graph.call(self._client(GetState, f"{target}/get_state"), GetState.Request(), timeout,
                               resend=True).current_state.label
