"""Drive a lifecycle node through the standard ``change_state`` / ``get_state`` services (what ``ros2 lifecycle``
does), from a node in a :class:`~axcl_ros.testing.ros_graph.RosGraph`."""

from __future__ import annotations

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState

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
        """Request ``transition`` of the node named ``target`` (fully qualified); True when it succeeded."""
        req = ChangeState.Request()
        req.transition.id = TRANSITIONS[transition]
        return bool(self.graph.call(self._client(ChangeState, f"{target}/change_state"), req, timeout).success)

    def state(self, target: str, timeout: float = 10.0) -> str:
        """Current lifecycle state label of ``target``."""
        return self.graph.call(self._client(GetState, f"{target}/get_state"), GetState.Request(),
                               timeout).current_state.label
