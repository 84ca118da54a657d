"""Start-up and shut-down shared by every axcl_ros executable (node executables through :func:`run_main`,
``perception_host``, ``lifecycle_manager``): one place for the GIL setting, the transport profile, ``rclpy.init``,
signals, spinning and the way down. ``ros_executor`` is always the rclpy executor here; the inference executors are
``runtime.executors``.

SIGINT/SIGTERM only set an event (rclpy's own handlers are off), so the ROS context is still alive when the
process brings its lifecycle nodes down (deactivate, cleanup, shutdown) and releases the card before exiting.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Iterable, List, Optional, Sequence, Tuple

from .executable_help import help_requested, node_help, node_help_name
from .parameters import AUTOSTART
from .spinning import init_args, spin_until

#: GIL switch interval for processes that host nodes (Python's default is 5 ms)
NODE_PROCESS_SWITCH_INTERVAL_S = 0.0005


def tune_interpreter_for_device_work() -> None:
    """Shorten the GIL switch interval of a node process.

    The executor's worker releases the GIL in every device call and must get it back between calls while other
    threads convert incoming frames; with Python's default 5 ms interval a 50 ms model run on 4 busy cameras took
    227 ms, with 0.5 ms it took 61 ms (``make bench``, ``bench/bench_multicam.py``, 2026-11-24). Called by
    :func:`start_process`; an application embedding the nodes may call it too.
    """
    sys.setswitchinterval(NODE_PROCESS_SWITCH_INTERVAL_S)


def stop_on_signals(stop: Optional[threading.Event] = None) -> threading.Event:
    """Install SIGINT/SIGTERM handlers that set (and return) ``stop``; main thread only, else a no-op.

    The handlers stay installed: a second signal while shutting down is harmless (no KeyboardInterrupt traceback).
    """
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    return stop


def start_process(argv: Sequence[str], *, device_work: bool = True) -> Tuple[threading.Event, str]:
    """Prepare this process for ROS: GIL setting (``device_work``: it runs models), signal handlers, the shipped
    transport profile, then ``rclpy.init`` (rcl parses ``--ros-args``: parameter files, remapping, log levels; an
    unusable log directory turns file logging off instead of failing).

    Returns the event that SIGINT/SIGTERM set and the line saying which transport profile is in force (log it once
    a node exists).
    """
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from ..transport_profile import apply_transport_profile

    if device_work:
        tune_interpreter_for_device_work()
    stop = stop_on_signals()
    profile = apply_transport_profile()
    rclpy.init(args=init_args(list(argv)), signal_handler_options=SignalHandlerOptions.NO)
    return stop, profile


def node_executor():
    """The rclpy executor a node executable spins its node on (:func:`run_main`): multi-threaded with one thread per
    core. Measured against one thread and four (``bench/bench_ros_detector.py``, README "Detector on the CPU"): no
    variant won on every figure, one thread was 1.4-1.5x slower at p50 with a core busy."""
    from rclpy.executors import MultiThreadedExecutor

    return MultiThreadedExecutor()


def run_until_signal(ros_executor, stop: threading.Event, logger=None) -> Optional[BaseException]:
    """Spin ``ros_executor`` (rclpy) in a background thread until SIGINT/SIGTERM arrives or ``stop`` is set; return
    the exception that ended spinning early (a callback raised; logged on ``logger`` when given), else None. Call
    from the main thread after :func:`start_process`."""
    from rclpy.executors import ExternalShutdownException

    errors: List[BaseException] = []

    def spin() -> None:
        try:
            spin_until(ros_executor, stop.is_set)
        except ExternalShutdownException:
            pass
        except Exception as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)
        finally:
            stop.set()

    thread = threading.Thread(target=spin, name="axcl-ros-spin", daemon=True)
    thread.start()
    while not stop.wait(0.2):
        pass
    thread.join(timeout=2.0)
    if errors and logger is not None:
        logger.error(f"executor stopped: a callback raised {type(errors[0]).__name__}: {errors[0]}")
    return errors[0] if errors else None


def _state(node) -> str:
    machine = getattr(node, "_state_machine", None)
    return machine.current_state[1] if machine is not None else ""


def bring_down_local(node, timeout: float = 10.0) -> str:
    """Take an in-process lifecycle node to ``finalized`` (deactivate, cleanup, shutdown); return the final state.

    Nodes without a lifecycle are left alone; a transition in progress is waited for up to ``timeout`` seconds.
    """
    if not hasattr(node, "trigger_configure"):
        return ""
    deadline = time.monotonic() + timeout
    steps = {"active": "trigger_deactivate", "inactive": "trigger_cleanup", "unconfigured": "trigger_shutdown"}
    state = _state(node)
    while state != "finalized" and time.monotonic() < deadline:
        step = steps.get(state)
        if step is None:  # configuring, activating, ...: another thread is in a transition
            time.sleep(0.05)
        else:
            try:
                getattr(node, step)()
            except Exception as exc:  # noqa: BLE001 - keep going down with the other nodes
                node.get_logger().error(f"{step[8:]} on exit failed: {exc}")
                return state
        state = _state(node)
    return state


def finish_process(ros_executor=None, nodes: Iterable = (), timeout: float = 2.0) -> None:
    """The way out: stop ``ros_executor``, destroy ``nodes``, shut the inference executors down (device contexts
    released) and rclpy. Best effort: every step runs even when an earlier one fails."""
    import rclpy

    from ..runtime.executors import shutdown_all

    if ros_executor is not None:
        try:
            ros_executor.shutdown(timeout_sec=timeout)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
    for node in nodes:
        try:
            node.destroy_node()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
    shutdown_all(timeout)
    if rclpy.ok():
        rclpy.shutdown()


def run_main(node_class, args=None, **node_kwargs) -> int:
    """Run one node until SIGINT/SIGTERM, then bring it down through its lifecycle (models and device memory
    released); returns the exit code (0 after a signal, 1 when spinning stopped on an error).

    ``--help`` prints what the node does, its parameters and how to bring it up. Parameter ``autostart`` (off by
    default, as in Nav2) configures and activates the node at start; without it the node says it waits for
    ``ros2 lifecycle set`` (or a lifecycle manager).
    """
    from rclpy.parameter import Parameter
    from rclpy.utilities import remove_ros_args

    from ..bringup.node_registry import input_overrides, input_parser

    argv = list(sys.argv if args is None else args)
    if help_requested(argv):
        print(node_help(node_class))
        print(input_parser(node_help_name(node_class)).format_help())
        return 0
    options = input_parser(node_help_name(node_class)).parse_args(remove_ros_args(argv)[1:])
    inputs = input_overrides(node_help_name(node_class), **vars(options))  # launch inputs (--camera-topic=...)
    stop, profile = start_process(argv)
    node = node_class(parameter_overrides=[Parameter(k, value=v) for k, v in inputs.items()], **node_kwargs)
    node.get_logger().info(profile)
    autostart = node.declare_parameter(AUTOSTART.name, AUTOSTART.default, AUTOSTART.descriptor()).value
    ros_executor = node_executor()
    ros_executor.add_node(node)
    fqn = node.get_fully_qualified_name()
    if autostart:
        node.trigger_configure()
        if node._state_machine.current_state[1] == "inactive":
            node.trigger_activate()
        node.get_logger().info(f"autostart: {node._state_machine.current_state[1]}")
    else:
        node.get_logger().info(f"unconfigured: waiting for `ros2 lifecycle set {fqn} configure` then `activate` "
                               f"(or run with -p autostart:=true, or under a lifecycle manager)")
    error = None
    try:
        error = run_until_signal(ros_executor, stop, node.get_logger())
    finally:
        ros_executor.remove_node(node)  # no callback races the transitions below
        bring_down_local(node)
        finish_process(ros_executor, [node])
    return 1 if error is not None else 0
