"""Test helpers for the YOLO adapter: tiny ONNX models with the exact signatures of both YOLO layouts, encoders
that plant known boxes into raw outputs, and a converter that turns an Ultralytics YOLOv8/YOLO11 ONNX into an
AXERA-layout model (uint8 NHWC BGR in, NHWC DFL heads out) that runs on onnxruntime.

Only numpy/onnx here (onnxruntime is imported lazily by :func:`ort_session`); never imported by production code.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from axcl_ros.runtime.base import TensorSpec

__all__ = [
    "OPSET",
    "IR_VERSION",
    "anchor_count",
    "axera_yolo_model",
    "ultralytics_yolo_model",
    "classifier_model",
    "encode_dfl_heads",
    "encode_ultralytics_output",
    "axera_from_ultralytics_onnx",
    "find_dfl_head_outputs",
    "ort_session",
    "ort_specs",
]

OPSET = 17
IR_VERSION = 8
PathLike = Union[str, "os.PathLike[str]"]
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
              "tensor(int8)": np.int8, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
              "tensor(double)": np.float64}


def anchor_count(size: Tuple[int, int], strides: Sequence[int] = (8, 16, 32)) -> int:
    """Number of anchors (the Ultralytics ``N``) for an input of ``size`` = (H, W)."""
    return sum((size[0] // s) * (size[1] // s) for s in strides)


def _finish(graph: onnx.GraphProto, path: Optional[PathLike]) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="axcl_ros_testing")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model


def _const_outputs(input_name: str, outputs: Sequence[Tuple[str, np.ndarray, List]], nodes: List,
                   inits: List) -> List:
    """Nodes making each output = constant + 0 · mean(input), so every output depends on the input."""
    nodes += [helper.make_node("Cast", [input_name], ["_in_f"], to=TensorProto.FLOAT),
              helper.make_node("ReduceMean", ["_in_f"], ["_in_mean"], keepdims=0),
              helper.make_node("Mul", ["_in_mean", "_zero"], ["_in_zero"])]
    inits.append(numpy_helper.from_array(np.zeros((), np.float32), "_zero"))
    value_infos = []
    for i, (name, value, shape) in enumerate(outputs):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, np.float32), f"_const{i}"))
        nodes.append(helper.make_node("Add", [f"_const{i}", "_in_zero"], [name]))
        value_infos.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    return value_infos


def axera_yolo_model(path: Optional[PathLike] = None, *, size: Tuple[int, int] = (640, 640), num_classes: int = 80,
                     strides: Sequence[int] = (8, 16, 32), heads: Optional[Sequence[np.ndarray]] = None,
                     input_name: str = "images", output_names: Optional[Sequence[str]] = None,
                     head_order: Optional[Sequence[int]] = None) -> onnx.ModelProto:
    """AXERA compiled YOLO11 signature: ``uint8 [1,H,W,3]`` → ``float32 [1,H/s,W/s,64+nc]`` per stride.

    Output names default to AXERA's ``/model.23/Concat_output_0``, ``Concat_1``, ``Concat_2``. ``heads`` (from
    :func:`encode_dfl_heads`) are the constant head values (default: every class logit −10). ``head_order``
    permutes the graph's output order (the adapter must sort heads by stride itself).
    """
    h, w = size
    ch = 64 + num_classes
    if heads is None:
        heads = encode_dfl_heads([], [], [], size, num_classes, strides)
    if output_names is None:
        output_names = ["/model.23/Concat_output_0"] + [f"/model.23/Concat_{i}_output_0" for i in
                                                          range(1, len(strides))]
    outs = [(output_names[i], heads[i], [1, h // s, w // s, ch]) for i, s in enumerate(strides)]
    if head_order is not None:
        outs = [outs[i] for i in head_order]
    nodes: List = []
    inits: List = []
    value_infos = _const_outputs(input_name, outs, nodes, inits)
    graph = helper.make_graph(nodes, "axera_yolo_stub",
                              [helper.make_tensor_value_info(input_name, TensorProto.UINT8, [1, h, w, 3])],
                              value_infos, inits)
    return _finish(graph, path)


def ultralytics_yolo_model(path: Optional[PathLike] = None, *, size: Optional[Tuple[int, int]] = (640, 640),
                           num_classes: int = 80, output: Optional[np.ndarray] = None, input_name: str = "images",
                           output_name: str = "output0", dynamic_anchors: bool = False) -> onnx.ModelProto:
    """Ultralytics ONNX signature: ``float32 [1,3,H,W]`` → ``float32 [1,4+nc,N]``.

    ``size=None`` gives a dynamic input ``[batch,3,height,width]`` and output ``[batch,4+nc,anchors]`` like the
    NudeNet export; the constant output then holds ``anchor_count((640, 640))`` columns unless ``output`` is given.
    ``output`` (from :func:`encode_ultralytics_output`) is the constant prediction (default zeros).
    """
    ref = size or (640, 640)
    if output is None:
        output = np.zeros((1, 4 + num_classes, anchor_count(ref)), np.float32)
    if size is None:
        in_shape: List = ["batch", 3, "height", "width"]
        out_shape: List = ["batch", 4 + num_classes, "anchors"]
    else:
        in_shape = [1, 3, size[0], size[1]]
        out_shape = [1, 4 + num_classes, "anchors" if dynamic_anchors else int(output.shape[2])]
    nodes: List = []
    inits: List = []
    if size is None or dynamic_anchors:
        # reshape through the runtime input shape so that shape inference cannot pin N (or the batch)
        const_name = "_out_static"
        value_infos = _const_outputs(input_name, [(const_name, output, list(output.shape))], nodes, inits)
        inits += [numpy_helper.from_array(np.array([0], np.int64), "_s0"),
                  numpy_helper.from_array(np.array([1], np.int64), "_s1"),
                  numpy_helper.from_array(np.array([4 + num_classes, -1], np.int64), "_tail")]
        nodes += [helper.make_node("Shape", [input_name], ["_in_shape"]),
                  helper.make_node("Slice", ["_in_shape", "_s0", "_s1"], ["_batch"]),
                  helper.make_node("Concat", ["_batch", "_tail"], ["_out_shape"], axis=0),
                  helper.make_node("Reshape", [const_name, "_out_shape"], [output_name])]
        value_infos = [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, out_shape)]
    else:
        value_infos = _const_outputs(input_name, [(output_name, output, out_shape)], nodes, inits)
    graph = helper.make_graph(nodes, "ultralytics_yolo_stub",
                              [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, in_shape)],
                              value_infos, inits)
    return _finish(graph, path)


def classifier_model(path: Optional[PathLike] = None, *, size: int = 224, classes: int = 1000) -> onnx.ModelProto:
    """An image classifier (``float32 [1,3,S,S]`` → ``float32 [1,classes]``): matches neither YOLO layout."""
    nodes = [helper.make_node("ReduceMean", ["input"], ["_m"], axes=[2, 3], keepdims=0),
             helper.make_node("MatMul", ["_m", "_w"], ["logits"])]
    inits = [numpy_helper.from_array(np.ones((3, classes), np.float32), "_w")]
    graph = helper.make_graph(nodes, "classifier_stub",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])], inits)
    return _finish(graph, path)


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def encode_dfl_heads(boxes: Sequence[Sequence[float]], class_ids: Sequence[int], scores: Sequence[float],
                     size: Tuple[int, int], num_classes: int, strides: Sequence[int] = (8, 16, 32), *,
                     background_logit: float = -10.0, reg_max: int = 16) -> List[np.ndarray]:
    """AXERA DFL heads (``float32 [1,H/s,W/s,4·reg_max+nc]``) that decode to the given boxes.

    ``boxes`` are ``x1, y1, x2, y2`` in letterbox pixels. Each box goes to the cell holding its centre on the
    smallest stride whose distances fit in ``reg_max - 1`` bins; the distance ``d`` (in strides) is encoded as the
    two-bin distribution ``{floor(d): 1-f, floor(d)+1: f}`` whose expectation is exactly ``d``. Unused cells get
    class logits ``background_logit``; the box regression of unused cells is left at 0.
    """
    h, w = size
    heads = [np.zeros((1, h // s, w // s, 4 * reg_max + num_classes), np.float32) for s in strides]
    for head in heads:
        head[..., 4 * reg_max:] = background_logit
    for box, cls, score in zip(boxes, class_ids, scores):
        x1, y1, x2, y2 = (float(v) for v in box)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        placed = None
        for level, s in enumerate(strides):
            col, row = int(cx // s), int(cy // s)
            ax, ay = (col + 0.5) * s, (row + 0.5) * s
            dists = np.array([ax - x1, ay - y1, x2 - ax, y2 - ay]) / s
            if dists.min() >= 0 and dists.max() <= reg_max - 1:
                placed = (level, row, col, dists)
                break
        if placed is None:
            raise ValueError(f"box {box} does not fit any stride {tuple(strides)} with reg_max {reg_max}")
        level, row, col, dists = placed
        cell = heads[level][0, row, col]
        if (cell[4 * reg_max:] != background_logit).any():
            raise ValueError(f"box {box} falls in a cell already used by another box (stride {strides[level]})")
        for k, d in enumerate(dists):
            lo = min(int(math.floor(d)), reg_max - 1)
            frac = d - lo
            p = np.full(reg_max, 1e-20)
            p[lo] += 1.0 - frac
            if frac > 0:
                p[lo + 1] += frac
            cell[k * reg_max:(k + 1) * reg_max] = np.log(p)
        cell[4 * reg_max + int(cls)] = _logit(score)
    return heads


def encode_ultralytics_output(boxes: Sequence[Sequence[float]], class_ids: Sequence[int], scores: Sequence[float],
                              size: Tuple[int, int], num_classes: int,
                              columns: Optional[Sequence[int]] = None) -> np.ndarray:
    """Ultralytics ``float32 [1,4+nc,N]`` holding the given ``x1, y1, x2, y2`` letterbox boxes (as cx, cy, w, h)
    and sigmoided ``scores`` at ``columns`` (default 0, 1, ...); every other column is all zeros."""
    out = np.zeros((1, 4 + num_classes, anchor_count(size)), np.float32)
    cols = list(range(len(boxes))) if columns is None else list(columns)
    for col, box, cls, score in zip(cols, boxes, class_ids, scores):
        x1, y1, x2, y2 = (float(v) for v in box)
        out[0, :4, col] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        out[0, 4 + int(cls), col] = score
    return out


def find_dfl_head_outputs(model: onnx.ModelProto) -> List[str]:
    """Names of the per-stride ``Concat(box 64ch, cls nc ch)`` outputs of an Ultralytics YOLOv8/YOLO11 Detect head
    (``/model.22/Concat_output_0`` ... for YOLOv8), ordered P3, P4, P5."""
    found = []
    for node in model.graph.node:
        if node.op_type == "Concat" and len(node.input) == 2 and "/cv2." in node.input[0] \
                and "/cv3." in node.input[1]:
            level = int(node.input[0].split("/cv2.")[1].split("/")[0])
            found.append((level, node.output[0]))
    if not found:
        raise ValueError("no Detect-head Concat(cv2.i, cv3.i) nodes found; is this an Ultralytics YOLOv8/11 ONNX?")
    return [name for _, name in sorted(found)]


def axera_from_ultralytics_onnx(src: PathLike, dst: PathLike, *, size: Tuple[int, int] = (640, 640),
                                head_outputs: Optional[Sequence[str]] = None,
                                input_name: str = "images") -> List[str]:
    """Turn an Ultralytics YOLOv8/YOLO11 ONNX into a model with the AXERA compiled-YOLO signature.

    The graph is cut before the DFL decode at the Detect head Concats (``onnx.utils.extract_model``), wrapped with
    ``uint8 [1,H,W,3]`` BGR input → Cast → ÷255 → NHWC→NCHW → BGR→RGB in front, and a Transpose to NHWC behind
    each head, which keeps its original name. Returns the head output names (strides ascending).
    """
    src = os.fspath(src)
    base = onnx.load(src, load_external_data=False)
    heads = list(head_outputs) if head_outputs else find_dfl_head_outputs(base)
    orig_input = base.graph.input[0].name
    del base
    with tempfile.TemporaryDirectory() as tmp:
        cut_path = os.path.join(tmp, "cut.onnx")
        onnx.utils.extract_model(src, cut_path, [orig_input], heads, check_model=False)
        cut = onnx.load(cut_path)
    graph = cut.graph
    h, w = size
    nchw = "_axcl_input_rgb_nchw"
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == orig_input:
                node.input[i] = nchw
            elif name in heads:
                node.input[i] = name + "_nchw"
        for i, name in enumerate(node.output):
            if name in heads:
                node.output[i] = name + "_nchw"
    pre = [helper.make_node("Cast", [input_name], ["_axcl_f"], to=TensorProto.FLOAT),
           helper.make_node("Div", ["_axcl_f", "_axcl_255"], ["_axcl_norm"]),
           helper.make_node("Transpose", ["_axcl_norm"], ["_axcl_bgr_nchw"], perm=[0, 3, 1, 2]),
           helper.make_node("Gather", ["_axcl_bgr_nchw", "_axcl_rgb_index"], [nchw], axis=1)]
    post = [helper.make_node("Transpose", [name + "_nchw"], [name], perm=[0, 2, 3, 1]) for name in heads]
    nodes = pre + list(graph.node) + post
    graph.initializer.extend([numpy_helper.from_array(np.array(255.0, np.float32), "_axcl_255"),
                              numpy_helper.from_array(np.array([2, 1, 0], np.int64), "_axcl_rgb_index")])
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(input_name, TensorProto.UINT8, [1, h, w, 3]))
    del graph.output[:]
    del graph.value_info[:]
    for name in heads:
        graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    cut = onnx.shape_inference.infer_shapes(cut)
    # give the outputs their static NHWC shapes (inferred from the fixed input size)
    inferred = {vi.name: vi for vi in cut.graph.value_info}
    for out in cut.graph.output:
        if out.name in inferred:
            out.type.CopyFrom(inferred[out.name].type)
    onnx.checker.check_model(cut)
    onnx.save(cut, os.fspath(dst))
    return heads


def symbolic_output_dims(src: PathLike, dst: PathLike) -> Path:
    """Copy ``src`` so that no output dimension after the batch is known before a run, as in torch 2.x exports of
    Ultralytics models with ``dynamic=True`` (seen with Ultralytics 8.4.6 + torch 2.14.1: onnxruntime reports
    ``output0 [batch, Concatoutput0_dim_1, anchors]``). Each output passes through ``Reshape(x, Shape(x))`` (an
    identity whose shape onnxruntime cannot infer) and is declared with symbolic dimensions; the values are unchanged.
    """
    model = onnx.load(os.fspath(src))
    for out in model.graph.output:
        raw = out.name + "_before_reshape"
        for node in model.graph.node:
            node.output[:] = [raw if o == out.name else o for o in node.output]
        model.graph.node.extend([helper.make_node("Shape", [raw], [raw + "_shape"]),
                                 helper.make_node("Reshape", [raw, raw + "_shape"], [out.name])])
        for i, dim in enumerate(out.type.tensor_type.shape.dim):
            if i > 0:
                dim.dim_param = f"{out.name}_dim_{i}"
    onnx.save(model, os.fspath(dst))
    return Path(dst)


def ort_session(path: PathLike, threads: int = 1):
    """An onnxruntime CPU InferenceSession with ``threads`` intra-op threads (test helper)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])


def _spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in arg.shape)
    if arg.type not in _ORT_TYPES:
        raise ValueError(f"unsupported onnxruntime type {arg.type} for {arg.name}")
    return TensorSpec(arg.name, shape, np.dtype(_ORT_TYPES[arg.type]))


def ort_specs(session) -> Tuple[List[TensorSpec], List[TensorSpec]]:
    """``(inputs, outputs)`` TensorSpecs of an onnxruntime session (dynamic dims → ``None``).

    A minimal local stand-in for the project's onnxruntime backend, so these tests do not depend on it.
    """
    return [_spec(a) for a in session.get_inputs()], [_spec(a) for a in session.get_outputs()]

