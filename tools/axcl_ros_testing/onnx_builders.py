"""Build tiny ONNX models with ``onnx.helper`` for tests (opset 17, IR version 8: what onnxruntime 1.32 runs).

Shapes may hold ``None`` (or a string) for dynamic dimensions. Every builder writes the model to ``path``, checks it
with ``onnx.checker`` and returns ``path`` as a :class:`pathlib.Path`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import onnx
from onnx import helper, numpy_helper

OPSET = 17
IR_VERSION = 8

Dim = Union[int, str, None]


def elem_type(dtype) -> int:
    """ONNX ``TensorProto`` element type of a numpy dtype."""
    return int(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


def value_info(name: str, shape: Sequence[Dim], dtype) -> onnx.ValueInfoProto:
    """Tensor value info; ``None`` dims become symbolic dims ``<name>_d<i>``."""
    dims = [f"{name}_d{i}" if d is None else d for i, d in enumerate(shape)]
    return helper.make_tensor_value_info(name, elem_type(dtype), dims)


def make_model(nodes: Iterable[onnx.NodeProto], inputs: Sequence[onnx.ValueInfoProto],
               outputs: Sequence[onnx.ValueInfoProto], initializers: Iterable[np.ndarray] = (),
               initializer_names: Iterable[str] = (), name: str = "test") -> onnx.ModelProto:
    """Wrap nodes into a checked model (initializers given as arrays with matching names)."""
    inits = [numpy_helper.from_array(np.asarray(a), n) for a, n in zip(initializers, initializer_names)]
    graph = helper.make_graph(list(nodes), name, list(inputs), list(outputs), initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="axcl_ros_testing")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def save(model: onnx.ModelProto, path) -> Path:
    """Write ``model`` to ``path`` (parent folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def add_model(path, shape: Sequence[Dim] = (1, 4), dtype=np.float32, input_names: Sequence[str] = ("a", "b"),
              output_name: str = "y") -> Path:
    """``y = a + b`` with both inputs of ``shape``/``dtype``."""
    a, b = input_names
    node = helper.make_node("Add", [a, b], [output_name])
    return save(make_model([node], [value_info(a, shape, dtype), value_info(b, shape, dtype)],
                           [value_info(output_name, shape, dtype)], name="add"), path)


def identity_model(path, shape: Sequence[Dim] = (1, 4), dtype=np.float32, input_name: str = "x",
                   output_name: str = "y") -> Path:
    """``y = x``."""
    node = helper.make_node("Identity", [input_name], [output_name])
    return save(make_model([node], [value_info(input_name, shape, dtype)],
                           [value_info(output_name, shape, dtype)], name="identity"), path)


def affine_model(path, shape: Sequence[Dim] = (1, 4), scale: float = 2.0, bias: float = 1.0, dtype=np.float32,
                 input_name: str = "x", output_name: str = "y") -> Path:
    """``y = x * scale + bias`` (float dtypes)."""
    nodes = [helper.make_node("Mul", [input_name, "scale"], ["scaled"]),
             helper.make_node("Add", ["scaled", "bias"], [output_name])]
    inits = [np.array(scale, dtype=dtype), np.array(bias, dtype=dtype)]
    return save(make_model(nodes, [value_info(input_name, shape, dtype)], [value_info(output_name, shape, dtype)],
                           inits, ["scale", "bias"], name="affine"), path)


def cast_model(path, shape: Sequence[Dim] = (1, 4), in_dtype=np.float32, out_dtype=np.int64,
               input_name: str = "x", output_name: str = "y") -> Path:
    """``y = Cast(x)`` from ``in_dtype`` to ``out_dtype`` (covers float16, int64, bool, uint8 …)."""
    node = helper.make_node("Cast", [input_name], [output_name], to=elem_type(out_dtype))
    return save(make_model([node], [value_info(input_name, shape, in_dtype)],
                           [value_info(output_name, shape, out_dtype)], name="cast"), path)


def two_output_model(path, shape: Sequence[Dim] = (1, 4), dtype=np.float32, input_name: str = "x",
                     output_names: Sequence[str] = ("plus_one", "times_two")) -> Path:
    """Two outputs: ``x + 1`` and ``x * 2``."""
    plus, times = output_names
    nodes = [helper.make_node("Add", [input_name, "one"], [plus]),
             helper.make_node("Mul", [input_name, "two"], [times])]
    inits = [np.array(1, dtype=dtype), np.array(2, dtype=dtype)]
    return save(make_model(nodes, [value_info(input_name, shape, dtype)],
                           [value_info(plus, shape, dtype), value_info(times, shape, dtype)],
                           inits, ["one", "two"], name="two_outputs"), path)


def slow_identity_model(path, size: int = 128, repeats: int = 32, input_name: str = "x", output_name: str = "y",
                        batch: Optional[int] = None) -> Path:
    """``y = x`` computed through ``repeats`` float32 MatMuls with the identity: run time grows with both arguments.

    Input/output shape is ``[batch or size, size]``; about ``2 * rows * size**2 * repeats`` FLOPs per run. Outputs are
    exact copies of finite inputs.
    """
    rows = batch or size
    nodes = []
    current = input_name
    for i in range(repeats):
        out = output_name if i == repeats - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [current, "eye"], [out]))
        current = out
    if repeats == 0:
        nodes.append(helper.make_node("Identity", [input_name], [output_name]))
    return save(make_model(nodes, [value_info(input_name, (rows, size), np.float32)],
                           [value_info(output_name, (rows, size), np.float32)],
                           [np.eye(size, dtype=np.float32)], ["eye"], name="slow_identity"), path)
