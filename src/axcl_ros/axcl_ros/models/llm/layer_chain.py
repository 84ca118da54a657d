"""Consecutive decoder-layer files of the per-layer contract chained into one ONNX graph.

onnxruntime gives every session its own intra-op thread pool. With one session per layer, a decode step runs 30
small sessions one after another and each one's worker threads must be woken for it; busy-waiting (spinning)
workers of 30 pools would fight over the cores. One session for a run of consecutive layers has one pool whose
workers can spin between the operators of the whole step and stop when the step ends (measured in the README,
section "describe"). The files on disk keep the per-layer contract; the chain is written to a temporary file at load
time (:func:`write_chain`).

The chained graph of layers ``0 … n-1`` (``j`` = position in the chain)::

    input f32[1,T,H], indices u32[1,T], mask f32[1,T,P+T]     shared by every layer
    K_cache.j, V_cache.j f32[1,P,kv_dim]                       layer j's cached keys / values
    -> K_cache_out.j, V_cache_out.j f32[1,T,kv_dim]            layer j's new keys / values
    -> output f32[1,T,H]                                       the last layer's hidden states

Layer ``j``'s ``output`` is layer ``j+1``'s ``input`` inside the graph; every other name of layer ``j`` (nodes,
initializers, intermediate tensors) gets the prefix ``l{j}/``.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Dict, Iterable, List, Sequence

import onnx
from onnx import helper

from .config import ModelFilesError

__all__ = ["LAYER_INPUTS", "LAYER_OUTPUTS", "MAX_CHAIN_BYTES", "chain_name", "check_contract", "group_layer_files",
           "write_chain"]

LAYER_INPUTS = ("input", "indices", "K_cache", "V_cache", "mask")
LAYER_OUTPUTS = ("K_cache_out", "V_cache_out", "output")
_SHARED = ("indices", "mask")
#: files per chain total at most this many bytes: one serialized ONNX model must stay under protobuf's 2 GiB
MAX_CHAIN_BYTES = 1 << 30


def chain_name(name: str, j: int) -> str:
    """The chained graph's name for layer ``j``'s per-layer input/output ``name`` (``K_cache`` → ``K_cache.3``)."""
    return f"{name}.{j}"


def group_layer_files(paths: Sequence[str], max_bytes: int = MAX_CHAIN_BYTES) -> List[List[str]]:
    """``paths`` (in layer order) cut into runs of consecutive files of at most ``max_bytes`` together (a single
    larger file makes a run of its own)."""
    groups: List[List[str]] = []
    size = 0
    for path in paths:
        n = os.path.getsize(path)
        if not groups or size + n > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(path)
        size += n
    return groups


def check_contract(path: str, have_in: Iterable[str], have_out: Iterable[str], inputs: Sequence[str],
                   outputs: Sequence[str]) -> None:
    """Raise :class:`~.config.ModelFilesError` unless a model with inputs ``have_in`` and outputs ``have_out`` has
    the ``inputs`` and ``outputs`` of the contract."""
    have_in, have_out = set(have_in), set(have_out)
    if not set(inputs) <= have_in or not set(outputs) <= have_out:
        raise ModelFilesError(f"{path}: not a layer of the per-layer contract: it has inputs {sorted(have_in)} and "
                              f"outputs {sorted(have_out)}, expected {list(inputs)} -> {list(outputs)}")


def _load_layer(path: str) -> onnx.ModelProto:
    try:
        model = onnx.load(path)
    except Exception as exc:  # protobuf's DecodeError and friends: the file is not a whole ONNX model
        raise ModelFilesError(f"cannot load {path!r}: not a readable ONNX model (truncated or corrupt?): {exc}") \
            from exc
    graph = model.graph
    check_contract(path, [v.name for v in graph.input], [v.name for v in graph.output], LAYER_INPUTS, LAYER_OUTPUTS)
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node
           for a in n.attribute):
        raise ModelFilesError(f"{path}: layers with control-flow subgraphs (If/Loop/Scan) cannot be chained; "
                              f"export the layer without them")
    return model


def write_chain(paths: Sequence[str], out: BinaryIO) -> None:
    """Write the ONNX model running the layer files ``paths`` one after another (see the module docstring) to
    ``out``.

    One layer is in memory as a message at a time: each renamed layer graph is serialized on its own and the chain's
    graph is their concatenation (protobuf appends repeated fields: nodes, initializers, inputs, outputs), so
    building a chain needs about one copy of the weights, not the three that merging messages would. Load the
    written file by its path: onnxruntime then frees each weight once it has packed it (from a bytes object it kept
    the originals too, ~1.7x the resident memory, measured).

    Raises :class:`~.config.ModelFilesError` for a file that is not a readable layer of the contract."""
    last = len(paths) - 1
    parts: List[bytes] = []
    opsets: Dict[str, int] = {}
    ir_version = 0
    for j, path in enumerate(paths):
        model = _load_layer(path)
        ir_version = max(ir_version, model.ir_version)
        for op in model.opset_import:
            opsets[op.domain] = max(opsets.get(op.domain, 0), op.version)

        def rename(name: str, j: int = j) -> str:
            if not name or name in _SHARED:
                return name
            if name == "input":
                return "input" if j == 0 else f"l{j - 1}/output"
            if name == "output":
                return "output" if j == last else f"l{j}/output"
            if name in LAYER_INPUTS or name in LAYER_OUTPUTS:
                return chain_name(name, j)
            return f"l{j}/{name}"

        graph = model.graph
        for node in graph.node:
            node.name = f"l{j}/{node.name}"
            node.input[:] = [rename(n) for n in node.input]
            node.output[:] = [rename(n) for n in node.output]
        for init in graph.initializer:
            init.name = rename(init.name)
        keep_in = [v for v in graph.input if v.name not in ("input", *_SHARED) or j == 0]
        keep_out = [v for v in graph.output if v.name != "output" or j == last]
        for value in keep_in + keep_out:
            value.name = rename(value.name)
        del graph.input[:], graph.output[:], graph.value_info[:]
        graph.input.extend(keep_in)
        graph.output.extend(keep_out)
        graph.name = f"layers {os.path.basename(paths[0])} … {os.path.basename(paths[-1])}"
        graph.ClearField("doc_string")
        parts.append(graph.SerializeToString())
        del model, graph
    head = onnx.ModelProto(ir_version=ir_version, producer_name="axcl_ros layer chain",
                           opset_import=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    out.write(head.SerializeToString())
    out.write(_GRAPH_TAG + _varint(sum(map(len, parts))))
    for part in parts:
        out.write(part)


#: the key of ``ModelProto.graph`` (field 7, length-delimited) in protobuf's wire format
_GRAPH_TAG = bytes([7 << 3 | 2])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)
