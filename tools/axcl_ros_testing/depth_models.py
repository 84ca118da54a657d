"""Tiny ONNX stand-ins for Depth Anything V2 with the real signatures and a known per-pixel output (tests only).

Each probe outputs ``out = w_r*R + w_g*G + w_b*B + bias`` where R, G, B are the 0..255 pixel values the model *would*
see after undoing its input normalisation. So a test can check colour order, the ImageNet normalisation done on the
host (ONNX layout) and the resize back to the image size numerically.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: ImageNet RGB statistics of DA-V2's training transform and AXERA's build config (calibration_mean
#: 123.675,116.28,103.53 / std 58.395,57.12,57.375), kept independent of the adapter's copy so tests can catch drift.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPSET = 17
IR_VERSION = 8
Dim = Optional[int]


def _const(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _dims(values: Sequence[Union[int, str, None]]) -> List[Union[int, str]]:
    return [f"d{i}" if v is None else v for i, v in enumerate(values)]


def _head(nodes: list, inits: list, src: str, weights: Sequence[float], bias: float, downsample: int,
          output_rank: int, output_name: str) -> None:
    """Append ``1x1 conv(weights, bias) -> [avgpool] -> [squeeze]`` from NCHW float ``src`` (0..255 RGB)."""
    inits.append(_const("probe_w", np.asarray(weights, np.float32).reshape(1, 3, 1, 1)))
    inits.append(_const("probe_b", np.asarray([bias], np.float32)))
    last = "probe_conv"
    nodes.append(helper.make_node("Conv", [src, "probe_w", "probe_b"], [last]))
    if downsample > 1:
        nodes.append(helper.make_node("AveragePool", [last], ["probe_pool"], kernel_shape=[downsample] * 2,
                                      strides=[downsample] * 2))
        last = "probe_pool"
    if output_rank == 3:
        inits.append(_const("probe_axes", np.asarray([1], np.int64)))
        nodes.append(helper.make_node("Squeeze", [last, "probe_axes"], [output_name]))
    else:
        nodes.append(helper.make_node("Identity", [last], [output_name]))


def _save(nodes: list, inits: list, inp: onnx.ValueInfoProto, out: onnx.ValueInfoProto, path: Path) -> Path:
    graph = helper.make_graph(nodes, "depth_probe", [inp], [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def _out_shape(height: Dim, width: Dim, downsample: int, rank: int) -> list:
    h = None if height is None else height // downsample
    w = None if width is None else width // downsample
    shape = [1, h, w] if rank == 3 else [1, 1, h, w]
    return [f"o{i}" if v is None else v for i, v in enumerate(shape)]


def build_axera_probe(path: Union[str, Path], height: int = 518, width: int = 518, *,
                      weights: Sequence[float] = (1.0, 0.0, 0.0), bias: float = 0.0, downsample: int = 1,
                      output_rank: int = 4, input_name: str = "input", output_name: str = "output") -> Path:
    """AXERA DA-V2 signature: uint8 ``[1,H,W,3]`` (RGB) -> float32 ``[1,1,H/k,W/k]`` (or ``[1,H/k,W/k]``)."""
    nodes = [helper.make_node("Cast", [input_name], ["as_float"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["as_float"], ["nchw"], perm=[0, 3, 1, 2])]
    inits: list = []
    _head(nodes, inits, "nchw", weights, bias, downsample, output_rank, output_name)
    inp = helper.make_tensor_value_info(input_name, TensorProto.UINT8, [1, height, width, 3])
    out = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, _out_shape(height, width, downsample,
                                                                                   output_rank))
    return _save(nodes, inits, inp, out, Path(path))


def build_onnx_probe(path: Union[str, Path], height: Dim = 518, width: Dim = 518, *,
                     weights: Sequence[float] = (1.0, 0.0, 0.0), bias: float = 0.0, downsample: int = 1,
                     output_rank: int = 3, input_name: str = "image", output_name: str = "depth") -> Path:
    """ONNX DA-V2 signature: float32 ``[1,3,H,W]`` (ImageNet-normalised RGB; None = dynamic) -> ``[1,H,W]``.

    The graph undoes the normalisation (``x * std + mean``, times 255) before the probe head, so the output is the
    exact 0..255 value when the host normalised with :data:`IMAGENET_MEAN`/:data:`IMAGENET_STD`.
    """
    std255 = np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1) * np.float32(255.0)
    mean255 = np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1) * np.float32(255.0)
    inits = [_const("std255", std255), _const("mean255", mean255)]
    nodes = [helper.make_node("Mul", [input_name, "std255"], ["scaled"]),
             helper.make_node("Add", ["scaled", "mean255"], ["denorm"])]
    _head(nodes, inits, "denorm", weights, bias, downsample, output_rank, output_name)
    inp = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3] + _dims([height, width]))
    out = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, _out_shape(height, width, downsample,
                                                                                   output_rank))
    return _save(nodes, inits, inp, out, Path(path))
