"""The base of every axcl_ros lifecycle node: parameters from the registry, lifecycle transitions that never raise,
/diagnostics, bad-input accounting (the callback boundary: ``callback_guard.py``; QoS: ``qos.py``)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from ..io.image import DEFAULT_MAX_PIXELS
from ..runtime.base import BackendError, BackendUnavailableError, ModelLoadError
from ..runtime.model_handle import ExecutorShutdownError, ModelReleasedError
from .callback_guard import BadInputLog, CallbackGuard
from .parameters import COMMON_PARAMS, ParamSpec, declared
from .qos import LATCHED_QOS
from .spinning import InvalidHandle

#: latched ``diagnostic_msgs/DiagnosticStatus`` of the last configure: message = what to fix, value ``permanent``
CONFIGURE_RESULT_TOPIC = "~/configure_result"


def is_permanent_failure(exc: BaseException) -> bool:
    """True for configure failures that waiting cannot fix: invalid parameters, a missing or unusable model file, an
    unavailable backend library. Device errors (a card still booting) are worth retrying."""
    return isinstance(exc, (ValueError, ModelLoadError, BackendUnavailableError, FileNotFoundError))


def sibling_topic(input_topic: str, name: str) -> str:
    """Output topic in the namespace of an input topic: ``/cam0/image_raw`` + ``detections`` → ``/cam0/detections``.

    A bare relative input (``image``) gives a bare relative output, resolved in the node's namespace.
    """
    head, sep, _ = input_topic.rstrip("/").rpartition("/")
    if not sep:
        return name
    return f"{head}/{name}" if head else f"/{name}"


def release_state_machine(node: LifecycleNode) -> None:
    """Destroy ``node``'s lifecycle state machine; call it after ``node.destroy_node()``.

    rclpy's ``LifecycleNode.destroy_node()`` (rclpy 7.1, Jazzy) leaves the state machine to the garbage collector,
    and the state machine holds the node handle: until it is collected the node stays in the ROS graph with its
    lifecycle services, answering ``get_state`` for a node that is gone. A node of the same name created later in
    the same domain then has a twin, and rmw_fastrtps reports its services unavailable while the twin's endpoints
    are half torn down (a lifecycle manager's heartbeat sees the new node as dead).
    """
    destroy = getattr(getattr(node, "_state_machine", None), "destroy_when_not_in_use", None)
    if destroy is not None:
        destroy()


class AxclLifecycleNode(CallbackGuard, LifecycleNode):
    """Base of the axcl_ros nodes.

    Subclasses list their parameters in ``PARAMS`` and implement ``configure()`` (load models, allocate; raise with
    a message that says what to fix), ``activate()`` / ``deactivate()`` (create / destroy subscriptions, timers),
    ``cleanup()`` (release models and device memory) and ``diagnostic_values()``. Publishers are created in
    ``configure()`` with :meth:`create_lifecycle_publisher` so they only publish while active.
    """

    PARAMS: Sequence[ParamSpec] = ()
    #: declared by every node of this base (``diagnostics_period``)
    SHARED_PARAMS: Sequence[ParamSpec] = COMMON_PARAMS
    #: nodes that decode camera images set this: they also declare ``max_image_pixels`` (IMAGE_PARAMS)
    TAKES_IMAGES = False

    def __init__(self, node_name: str, **kwargs) -> None:
        self._configured = False
        self._diag_timer = None
        self._diag_pub = None
        self._transition_lock = threading.RLock()
        super().__init__(node_name, **kwargs)
        self._configure_result_pub = self.create_publisher(DiagnosticStatus, CONFIGURE_RESULT_TOPIC, LATCHED_QOS)
        self.bad_inputs = BadInputLog(self.get_logger())
        self.start_callback_guard()
        self.counters: Counter = Counter()
        specs = declared(type(self))
        self._specs = {p.name: p for p in specs}
        for spec in specs:
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        self.max_image_pixels = DEFAULT_MAX_PIXELS
        self.add_on_set_parameters_callback(self._on_set_parameters)
        service = getattr(self, "_service_change_state", None)
        self._rclpy_change_state = None
        if service is not None:  # rclpy raises for a transition id not valid in the current state (rclpy#1209)
            self._rclpy_change_state, service.callback = service.callback, self._on_change_state

    def destroy_node(self) -> None:
        """Destroy the node now, its lifecycle state machine included (:func:`release_state_machine`)."""
        super().destroy_node()
        release_state_machine(self)

    # -- lifecycle requests ----------------------------------------------------------------------------------------
    def _on_change_state(self, request, response):
        """The ``~/change_state`` service: any transition by id or label, valid or not, from any state, gets an
        answer; an invalid one is refused (``success=False``) instead of raising RCLError out of the executor
        (rclpy 7.1.x, ros2/rclpy#1209, fixed upstream in #1319), and concurrent requests are serialised."""
        with self._transition_lock:
            try:
                transitions = {t[0]: t[1] for t in self._state_machine.available_transitions}
                label = request.transition.label
                if label:
                    ids = [tid for tid, name in transitions.items() if name == label]
                else:
                    ids = [request.transition.id] if request.transition.id in transitions else []
                if not ids:
                    state = self._state_machine.current_state[1]
                    self.counters["refused_transitions"] += 1
                    self.get_logger().warning(
                        f"refused transition {label or request.transition.id!r} from state {state!r}; valid: "
                        f"{sorted(set(transitions.items()))}", throttle_duration_sec=5.0)
                    response.success = False
                    return response
                return self._rclpy_change_state(request, response)  # valid now: rclpy's own handler
            except Exception as exc:  # noqa: BLE001 - the request is answered whatever happens
                self.note_callback_error("service change_state", exc)
                response.success = False
            return response

    def _serialised(self, trigger: Callable[[], Any]) -> Any:
        with self._transition_lock:
            return trigger()

    def trigger_configure(self):
        return self._serialised(super().trigger_configure)

    def trigger_cleanup(self):
        return self._serialised(super().trigger_cleanup)

    def trigger_activate(self):
        return self._serialised(super().trigger_activate)

    def trigger_deactivate(self):
        return self._serialised(super().trigger_deactivate)

    def trigger_shutdown(self):
        return self._serialised(super().trigger_shutdown)

    # -- parameters ------------------------------------------------------------------------------------------------
    def param(self, name: str) -> Any:
        """Current value of a declared parameter (``[]`` for an array declared by type and never set)."""
        try:
            return self.get_parameter(name).value
        except ParameterUninitializedException:
            return []

    def _on_set_parameters(self, params) -> SetParametersResult:
        for p in params:
            spec = self._specs.get(p.name)
            if spec is None:
                continue
            if not spec.dynamic and self._configured:
                return SetParametersResult(successful=False,
                                           reason=f"{p.name} is read on configure: cleanup, set it, configure again")
            reason = spec.check(p.value)
            if reason is None:
                reason = self.validate_parameter(p.name, p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        for p in params:
            spec = self._specs.get(p.name)
            if p.name == "diagnostics_period" and self._configured:
                self._start_diagnostics(float(p.value))
            elif spec is not None and spec.dynamic and self._configured:
                self.apply_dynamic_parameter(p.name, p.value)
        return SetParametersResult(successful=True)

    def validate_parameter(self, name: str, value: Any) -> Optional[str]:
        """Subclass hook: extra validation; return a reason to refuse the value."""
        return None

    def apply_dynamic_parameter(self, name: str, value: Any) -> None:
        """Subclass hook: a runtime-changeable parameter was set while configured."""

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def _check_parameters(self) -> None:
        """Values from parameter files and overrides skip the set-callback: check them all before configuring."""
        problems = []
        for spec in self.PARAMS:
            value = self.param(spec.name)
            reason = spec.check(value) or self.validate_parameter(spec.name, value)
            if reason:
                problems.append(reason)
        if problems:
            raise ValueError("invalid parameters: " + "; ".join(problems))

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._check_parameters()
            self.configure()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a readable FAILURE
            self.get_logger().error(f"configure failed: {exc}")
            self.last_error = str(exc)
            try:
                self.cleanup()
            except Exception as cleanup_exc:  # noqa: BLE001
                self.get_logger().error(f"cleanup after failed configure also failed: {cleanup_exc}")
            self._publish_configure_result(str(exc), is_permanent_failure(exc))
            return TransitionCallbackReturn.FAILURE
        self.last_error = ""
        self._publish_configure_result("", False)
        self._configured = True
        if self.TAKES_IMAGES:
            self.max_image_pixels = int(self.param("max_image_pixels"))
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._start_diagnostics(float(self.param("diagnostics_period")))
        return TransitionCallbackReturn.SUCCESS

    def _publish_configure_result(self, error: str, permanent: bool) -> None:
        """Tell managers why configure failed (they read it instead of a bare FAILURE) and whether to retry."""
        status = DiagnosticStatus(level=DiagnosticStatus.ERROR if error else DiagnosticStatus.OK,
                                  name=self.get_fully_qualified_name(), message=error or "configured",
                                  values=[KeyValue(key="permanent", value=str(permanent).lower()),
                                          KeyValue(key="stamp", value=f"{time.time():.6f}")])
        try:
            self._configure_result_pub.publish(status)
        except Exception as exc:  # noqa: BLE001 - the context may be shutting down
            self.get_logger().debug(f"configure result not published: {exc}")

    def _start_diagnostics(self, period: float) -> None:
        """(Re)start the /diagnostics timer; steady clock, so that use_sim_time without /clock does not stop it."""
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if period > 0:
            self._diag_timer = self.create_timer(period, self.publish_diagnostics,
                                                 clock=Clock(clock_type=ClockType.STEADY_TIME))

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        super().on_activate(state)  # enables the lifecycle publishers first, so activate() may publish
        try:
            self.activate()
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"activate failed: {exc}")
            self.last_error = str(exc)
            self.deactivate()
            super().on_deactivate(state)
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if state.label == "active":
            self.deactivate()
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error while {state.label}; releasing resources")
        try:
            self.deactivate()
        finally:
            self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self) -> None:
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        self._configured = False
        self.cleanup()

    # -- subclass API --------------------------------------------------------------------------------------------------
    def configure(self) -> None:
        """Load models and allocate; raise an exception whose message says what to fix."""

    def activate(self) -> None:
        """Start I/O (subscriptions, timers)."""

    def deactivate(self) -> None:
        """Stop I/O."""

    def cleanup(self) -> None:
        """Release models and device memory (idempotent)."""

    def diagnostic_values(self) -> Dict[str, Any]:
        """Key/values for /diagnostics besides the common ones."""
        return {}

    def diagnostic_level(self) -> tuple:
        """``(level, message)`` of this node's status."""
        if getattr(self, "last_error", ""):
            return DiagnosticStatus.ERROR, self.last_error
        if self.callback_errors is not None and self.callback_errors.total:
            return DiagnosticStatus.WARN, (f"{self.callback_errors.total} callback errors, still serving; last: "
                                           f"{self.last_callback_error}")
        return DiagnosticStatus.OK, "ok"

    # -- helpers -------------------------------------------------------------------------------------------------------
    def destroy_all(self, entities: Iterable, destroy: Callable) -> List:
        """Destroy each entity with ``destroy`` and return an empty list (for subscription/timer lists)."""
        for e in entities:
            destroy(e)
        return []

    def release_entities(self, *attributes: str) -> None:
        """Destroy what these attributes hold (action server, service, lifecycle publisher) and set them to None;
        attributes already None are skipped (cleanup is idempotent)."""
        from rclpy.lifecycle import LifecyclePublisher
        from rclpy.service import Service

        for name in attributes:
            entity = getattr(self, name)
            if entity is None:
                continue
            if isinstance(entity, Service):
                self.destroy_service(entity)
            elif isinstance(entity, LifecyclePublisher):
                self.destroy_lifecycle_publisher(entity)
            else:  # an action server
                entity.destroy()
            setattr(self, name, None)

    def report_frame_error(self, cam, exc: BaseException) -> None:
        """Account a frame whose run or post-processing failed (``cam``: a camera stream with an ``errors`` count).

        A model released by cleanup/shutdown before the frame ran, or an output destroyed by a transition while the
        frame was being published (counted as ``outputs_dropped_by_transition``), is not an error; a backend error
        counts as an inference error and becomes ``last_error`` (ERROR on /diagnostics); anything else is a rejected
        input.
        """
        if isinstance(exc, (ModelReleasedError, ExecutorShutdownError)):
            return
        if isinstance(exc, InvalidHandle):  # an output destroyed by deactivate/cleanup while this frame ran
            self.counters["outputs_dropped_by_transition"] += 1
            return
        cam.errors += 1
        if isinstance(exc, BackendError):
            self.counters["inference_errors"] += 1
            self.last_error = str(exc)
            self.get_logger().error(f"inference failed on {cam.topic}: {exc}", throttle_duration_sec=5.0)
        else:
            self.bad_inputs.report(f"result on {cam.topic}", exc)

    def publish_diagnostics(self) -> None:
        """Publish this node's status on /diagnostics."""
        if self._diag_pub is None:
            return
        level, message = self.diagnostic_level()
        values = {"rejected_inputs": self.bad_inputs.total}
        values.update({f"rejected.{k}": v for k, v in self.bad_inputs.counts.items()})
        values["callback_errors"] = self.callback_errors.total
        values.update({f"callback_errors.{k}": v for k, v in self.callback_errors.counts.items()})
        values.update(self.counters)
        values.update(self.diagnostic_values())
        status = DiagnosticStatus(level=level, name=f"axcl_ros: {self.get_fully_qualified_name()}",
                                  hardware_id=str(values.get("device", "")), message=message,
                                  values=[KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)
