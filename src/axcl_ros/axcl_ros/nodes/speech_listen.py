"""The speech node's ``~/listen_once`` action (axcl_msgs/action/ListenOnce): the transcript of the next utterance,
one goal at a time, with speech-activity feedback.

A mixin of :class:`~.speech.SpeechNode` methods, kept apart because it is a job of its own; it uses the node's
pipeline, parameters and activity state.
"""

from __future__ import annotations

import math
import time

from axcl_msgs.action import ListenOnce
from rclpy.action import GoalResponse

from ..io.transcript_messages import transcript_message


class ListenOnceServer:
    """``~/listen_once`` goal handling of :class:`~.speech.SpeechNode` (mixin)."""

    def _on_goal(self, goal) -> GoalResponse:
        if not self._active or self.pipeline is None:
            self.get_logger().warning("listen_once rejected: the node is not active")
            return GoalResponse.REJECT
        if not math.isfinite(goal.timeout) or goal.timeout < 0:
            self.get_logger().warning(f"listen_once rejected: timeout={goal.timeout} must be >= 0")
            return GoalResponse.REJECT
        problem = self._language_problem(goal.language or self.param("language"), self.param("task"))
        if problem:
            self.get_logger().warning(f"listen_once rejected: {problem}")
            return GoalResponse.REJECT
        with self._listen_lock:
            if self._listening:
                self.get_logger().warning("listen_once rejected: another goal is listening")
                return GoalResponse.REJECT
            self._listening += 1
        return GoalResponse.ACCEPT

    def _execute_listen(self, goal_handle):
        try:
            return self._listen(goal_handle)
        finally:
            with self._listen_lock:
                self._listening -= 1

    @staticmethod
    def _aborted_listen(goal_handle):
        """Result of a listen_once goal whose execution raised (counted by the callback boundary)."""
        try:
            goal_handle.abort()
        except Exception:  # noqa: BLE001 - the goal may already be finished
            pass
        return ListenOnce.Result()

    def _listen(self, goal_handle):
        goal = goal_handle.request
        timeout = float(goal.timeout) if goal.timeout > 0 else float(self.param("listen_timeout_s"))
        result = ListenOnce.Result()
        pipeline = self.pipeline
        if pipeline is None:
            goal_handle.abort()
            result.message = "the speech node is not configured"
            return result
        listener = pipeline.listen((goal.language or "").strip().lower())
        t0 = time.monotonic()
        feedback = ListenOnce.Feedback()
        last_active, last_feedback = None, 0.0
        while True:
            outcome = listener.wait(0.05)
            elapsed = time.monotonic() - t0
            if outcome is not None:
                break
            if goal_handle.is_cancel_requested:
                pipeline.cancel(listener)
                goal_handle.canceled()
                result.message = "canceled"
                return result
            if elapsed >= timeout or not self._active:
                pipeline.cancel(listener)
                goal_handle.abort()
                result.message = (f"no speech within {timeout:g} s" if self._active else
                                  "the speech node was deactivated")
                return result
            active = pipeline.speech_active
            if active != last_active or elapsed - last_feedback >= 0.25:  # on change, else 4 per second
                feedback.speech_active, feedback.elapsed = active, float(elapsed)
                goal_handle.publish_feedback(feedback)
                last_active, last_feedback = active, elapsed
        result.transcript = transcript_message(outcome, self._frame_id, self.whisper)
        result.success = outcome.success
        result.message = outcome.error or "ok"
        if outcome.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result
