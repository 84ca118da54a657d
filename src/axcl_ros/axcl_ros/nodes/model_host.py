"""A node's model on the process-wide executor, and the ``main()`` every node executable shares."""

from __future__ import annotations

import os
import sys
from concurrent.futures import Future
from typing import Mapping, Optional, Sequence

import numpy as np

from ..runtime.base import ModelLoadError
from ..runtime.executor import InferenceExecutor, ModelHandle, get_executor
from ..runtime.registry import resolve_backend
from .executable_help import help_requested, node_help, node_help_name
from .parameters import AUTOSTART
from .process import bring_down_local, finish_process, node_executor, run_until_signal, start_process


def executor_key(backend: str, device: str) -> str:
    """Key of the executor for ``device`` of ``backend``: every node of a process on that device shares it.

    Spellings of the same device map to one key: ``""``/``"cpu"`` for onnxruntime, ``""``/``"0"``/``"axcl:0"``
    for the first card.
    """
    dev = (device or "").strip().lower()
    if backend == "axcl":
        dev = dev.split(":", 1)[1] if dev.startswith("axcl:") else dev
        dev = dev or "0"
    elif backend == "onnxruntime":
        dev = dev or "cpu"
        dev = "cuda:0" if dev == "cuda" else dev
    return f"{backend}:{dev or 'default'}"


class ModelHost:
    """One loaded model of a node: its handle on the shared executor and what timing messages report."""

    def __init__(self, executor: InferenceExecutor, handle: ModelHandle, backend: str, device: str) -> None:
        self.executor = executor
        self.handle = handle
        self.backend = backend
        self.device = device or "default"
        self.model_name = os.path.basename(handle.path)

    @classmethod
    def load(cls, node, path: str, backend: str, device: str, *, what: str = "model_path",
             cpu_options: Optional[Mapping[str, object]] = None) -> ModelHost:
        """Load ``path`` for ``node``; raise with a message that says which parameter to fix.

        ``cpu_options``: onnxruntime thread budget (``OnnxRuntimeBackend`` keyword arguments, e.g.
        ``intra_op_num_threads``, ``allow_spinning``); ignored by the axcl backend."""
        if not path:
            raise ModelLoadError(f"parameter {what} is empty: set it to an .axmodel (AX650N card) or .onnx file "
                                 f"(see the README, section 'Models')")
        path = os.path.expanduser(path)
        if not os.path.isfile(path):
            raise ModelLoadError(f"{what}={path!r} does not exist or is not a file")
        chosen = resolve_backend(backend, path)
        executor = get_executor(executor_key(chosen.name, device))
        options = dict(cpu_options or {}) if chosen.name == "onnxruntime" else {}
        handle = executor.load(path, backend=chosen.name, device=device, **options)
        node.get_logger().info(f"loaded {path} on {chosen.name}:{device or 'default'} (executor {executor.key})")
        return cls(executor, handle, chosen.name, device)

    def submit(self, feeds: Mapping[str, np.ndarray], stream=None,
               output_names: Optional[Sequence[str]] = None) -> Future:
        """Queue a run on the shared executor (latest-only per ``stream``)."""
        return self.executor.submit(self.handle, feeds, output_names=output_names, stream=stream)

    def stats(self) -> dict:
        """This model's executor statistics, flattened for diagnostics."""
        stats = self.executor.stats()
        mine = stats["models"].get(self.handle.name, {})
        out = {"backend": self.backend, "device": self.device, "model": self.model_name,
               "executor": stats["executor"], "executor_pending": stats["pending"]}
        out.update({f"model.{k}": v for k, v in mine.items() if k not in ("backend", "device", "path")})
        return out

    def describe(self) -> str:
        """``name (backend:device) inputs → outputs`` for logs."""
        s = self.handle.session
        return (f"{self.model_name} ({self.backend}:{self.device}) "
                f"{[t.describe() for t in s.inputs]} -> {[t.describe() for t in s.outputs]}")

    def release(self) -> None:
        """Unload the model (frees device memory); idempotent."""
        self.handle.release()


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
    executor = node_executor()
    executor.add_node(node)
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
        error = run_until_signal(executor, stop)
        if error is not None:
            node.get_logger().error(f"executor stopped: a callback raised {type(error).__name__}: {error}")
    finally:
        executor.remove_node(node)  # no callback races the transitions below
        bring_down_local(node)
        finish_process(executor, [node])
    return 1 if error is not None else 0
