"""Helpers for tests that use real rclpy + DDS: a private context, a spinning executor, waiting, child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Callable, List, Optional, Sequence

from axcl_ros.nodes.service_call import call_service
from axcl_ros.nodes.spinning import spin_until


class RosGraph:
    """A private rclpy context with a multi-threaded executor spinning in a background thread.

    Use as a context manager; nodes created with :meth:`node` (or added with :meth:`add`) are spun and destroyed.
    """

    def __init__(self, threads: int = 4) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor

        self._rclpy = rclpy
        self.context = rclpy.context.Context()
        rclpy.init(context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=threads, context=self.context)
        self._nodes: List = []
        self._thread = threading.Thread(target=self._spin, name="ros-graph-spin", daemon=True)
        self._stop = threading.Event()
        self._thread.start()

    def _spin(self) -> None:
        try:
            spin_until(self.executor, self._stop.is_set, timeout_sec=0.05)
        except Exception:  # noqa: BLE001 - shutdown races end the loop
            if not self._stop.is_set():
                raise

    def node(self, name: str, **kwargs):
        """Create a plain rclpy node in this context and spin it."""
        from rclpy.node import Node

        return self.add(Node(name, context=self.context, **kwargs))

    def add(self, node):
        """Spin an existing node (created with ``context=graph.context``)."""
        self._nodes.append(node)
        self.executor.add_node(node)
        return node

    def remove(self, node) -> None:
        """Stop spinning ``node`` and destroy it."""
        if node in self._nodes:
            self._nodes.remove(node)
            self.executor.remove_node(node)
            node.destroy_node()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        """Poll ``predicate`` until true (a ``TimeoutError`` raised by it counts as "not yet"); raise
        ``TimeoutError`` naming ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except TimeoutError:  # a service call inside the predicate got no answer yet: not true yet
                pass
            time.sleep(0.02)
        raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")

    def call(self, client, request, timeout: float = 10.0, *, resend: bool = False, on_silence=None):
        """Call a service from a client of one of this graph's nodes and wait for the response.

        ``resend`` (idempotent requests only) and ``on_silence`` survive a response that DDS drops, as in
        :func:`~axcl_ros.nodes.service_call.call_service`; raises ``TimeoutError`` when no answer comes.
        """
        response, why = call_service(client, request, timeout, resend=resend, on_silence=on_silence)
        if response is None:
            raise TimeoutError(why)
        return response

    def close(self) -> None:
        """Destroy every node, stop spinning, shut the context down and destroy it (its DDS participant goes now).

        Without the destroy the participant lives on until the context object is garbage collected, still known to
        the next graph's participant: a server of the same name then counts twice in that graph, one of its
        endpoints half gone, and rmw_fastrtps reports the live server as unavailable until the stale entries
        expire.
        """
        self._stop.set()
        self._thread.join(timeout=5)
        for node in list(self._nodes):
            self.remove(node)
        self.executor.shutdown(timeout_sec=5)
        if self.context.ok():
            self._rclpy.shutdown(context=self.context)
        destroy = getattr(self.context, "destroy", None)  # rclpy >= Iron
        if destroy is not None:
            destroy()

    def __enter__(self) -> RosGraph:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RosProcess:
    """A ROS child process with a hard timeout, stopped with SIGINT, then SIGKILL if it does not exit."""

    def __init__(self, argv: Sequence[str], *, timeout: float = 120.0, env: Optional[dict] = None,
                 log_path: Optional[str] = None) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        self._log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.log_path = log_path
        self.proc = subprocess.Popen(self.argv, env={**os.environ, **(env or {})}, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._timer = threading.Timer(timeout, self._kill)
        self._timer.daemon = True
        self._timer.start()

    def _kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)

    def stop(self, grace: float = 10.0) -> int:
        """SIGINT, wait up to ``grace`` seconds, then SIGKILL; return the exit code."""
        self._timer.cancel()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._kill()
                self.proc.wait(timeout=5)
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        return self.proc.returncode

    def output(self) -> str:
        """What the process printed so far (when started with ``log_path``)."""
        if not self.log_path:
            return ""
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def __enter__(self) -> RosProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
