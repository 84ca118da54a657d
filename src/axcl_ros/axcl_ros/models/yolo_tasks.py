"""Segmentation and pose on top of the YOLO detector adapter: the task is read from the model's tensors.

``from_specs`` splits the outputs into the detection part (handed to :class:`~.yolo.YoloAdapter`, which decodes boxes,
runs NMS and maps boxes back) and the task part:

segment, Ultralytics (``yolo export ... -seg``)
    ``[1,4+nc+nm,N]`` + prototypes ``[1,nm,H/4,W/4]`` (nm = 32).
segment, AXERA (compiled ``yolo11*-seg`` axmodels, graph cut before the decode)
    per stride a DFL head ``[1,h,w,64+nc]`` and a mask-coefficient head ``[1,h,w,nm]``, plus prototypes
    ``[1,nm,H/4,W/4]`` (channels first: the IO info of AXERA's ``yolo11s-seg.axmodel``, ``output1 1 x 32 x 160 x
    160``, and its sample post-processing, which reads the buffer channel-major); prototypes ``[1,H/4,W/4,nm]``
    (channels last) are taken too. The orientation is told apart by the grid: the prototypes are at stride 4,
    twice the finest DFL head's grid.
pose, Ultralytics: ``[1,4+nc+3K,N]`` (K = 17, nc = 1: the output has 56 rows; or ``task: pose``).
pose, AXERA: per stride a DFL head ``[1,h,w,64+nc]`` and a keypoint head ``[1,h,w,3K]`` (raw, see :mod:`.yolo_pose`).

A segmentation model whose prototype tensor is missing is refused with a :class:`~.yolo.ModelLayoutError` that says
so. The detector decodes and runs NMS on the detection part only; each kept detection carries the index of its
candidate (``Detections.source``), and only those rows of the mask-coefficient or keypoint outputs are read. Masks
come from :func:`.yolo_seg.instance_label_image`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..runtime.base import TensorSpec
from .letterbox import LetterboxInfo
from .yolo import LAYOUT_AXERA, Detections, DetectorConfig, ModelLayoutError, ModelOutputError, YoloAdapter
from .yolo_pose import COCO_KEYPOINTS, COCO_SKELETON, decode_grid_keypoints, keypoints_to_image
from .yolo_seg import instance_label_image

__all__ = ["TASKS", "TaskResult", "YoloTaskAdapter"]

TASKS = ("auto", "detect", "segment", "pose")
_REG = 64
_POSE_ROWS = 3 * len(COCO_KEYPOINTS)


@dataclass(frozen=True)
class TaskResult:
    """Detections plus, per task, ``masks`` = (label image H×W uint8/uint16, per-detection value) or ``keypoints``
    = K×kpt×3 (x, y in input-image pixels, score)."""

    detections: Detections
    masks: Optional[Tuple[np.ndarray, np.ndarray]] = None
    keypoints: Optional[np.ndarray] = None


def _names(outputs: Sequence[TensorSpec]) -> str:
    return "[" + ", ".join(o.describe() for o in outputs) + "]"


class YoloTaskAdapter:
    """A YOLO model of any task: ``detector`` (the :class:`YoloAdapter` for the boxes), ``task``, ``keypoint_names``
    and ``skeleton`` (pose). ``preprocess``/``config``/``labels`` are the detector's."""

    def __init__(self, detector: YoloAdapter, task: str, *, extra: Sequence[TensorSpec] = (),
                 protos: Optional[TensorSpec] = None, protos_channels_last: bool = False, det_rows: int = 0) -> None:
        self.detector = detector
        self.task = task
        self.extra_specs = tuple(extra)     # AXERA: per-stride coefficient/keypoint heads, by ascending stride
        self.protos_spec = protos
        self.protos_channels_last = protos_channels_last  # [1,H/4,W/4,nm] rather than [1,nm,H/4,W/4]
        self._det_rows = det_rows           # Ultralytics: 4 + nc
        self.keypoint_names = COCO_KEYPOINTS if task == "pose" else ()
        self.skeleton = COCO_SKELETON if task == "pose" else ()

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_specs(cls, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], labels: Any = None, *,
                   task: str = "auto", **kwargs: Any) -> YoloTaskAdapter:
        """Pick detect/segment/pose from the tensors (``task`` forces one). Raises ModelLayoutError."""
        if task not in TASKS:
            raise ModelLayoutError(f"task {task!r} is not one of {list(TASKS)}")
        inputs, outputs = list(inputs), list(outputs)
        axera = len(inputs) == 1 and np.dtype(inputs[0].dtype) == np.uint8
        if axera:
            return cls._axera(inputs, outputs, labels, task, kwargs)
        return cls._ultralytics(inputs, outputs, labels, task, kwargs)

    @classmethod
    def _ultralytics(cls, inputs, outputs, labels, task, kwargs) -> YoloTaskAdapter:
        rows = [o for o in outputs if len(o.shape) == 3]
        protos = [o for o in outputs if len(o.shape) == 4]
        if task == "detect" or (task == "auto" and not protos and not (rows and rows[0].shape[1] == 4 + 1 + 51)):
            return cls(YoloAdapter.from_specs(inputs, outputs, labels, **kwargs), "detect")
        if len(rows) != 1 or rows[0].shape[1] is None:
            raise ModelLayoutError(f"expected one float[1,4+nc+extra,N] output: outputs {_names(outputs)}")
        out = rows[0]
        if protos or task == "segment":
            if len(protos) != 1 or protos[0].shape[1] is None:
                raise ModelLayoutError(f"segmentation model without its prototype tensor float[1,32,H/4,W/4] "
                                       f"(outputs {_names(outputs)}): export it with both outputs")
            nm = protos[0].shape[1]
            det_rows = out.shape[1] - nm
            kind, proto = "segment", protos[0]
        else:
            det_rows = out.shape[1] - _POSE_ROWS
            kind, proto = "pose", None
        if det_rows <= 4:
            raise ModelLayoutError(f"{kind} output {out.describe()} leaves no class rows: outputs {_names(outputs)}")
        det_spec = TensorSpec(out.name, (out.shape[0], det_rows, out.shape[2]), out.dtype, out.layout)
        detector = YoloAdapter.from_specs(inputs, [det_spec], labels, **kwargs)
        return cls(detector, kind, protos=proto, det_rows=det_rows)

    @classmethod
    def _axera(cls, inputs, outputs, labels, task, kwargs) -> YoloTaskAdapter:
        four = [o for o in outputs if len(o.shape) == 4 and None not in o.shape[1:]]
        wide = [o for o in four if o.shape[3] > _REG]
        # channels-first prototypes [1,nm,H/4,W/4] have W/4 "channels" (more than a DFL head's 64 at W >= 260):
        # they are the tensor whose last two dims are twice the finest grid of the other wide tensors
        first = [p for p in wide if p.shape[1] <= _REG and len(wide) > 1
                 and (p.shape[2], p.shape[3]) == tuple(2 * d for d in max(o.shape[1:3] for o in wide if o is not p))]
        dfl = [o for o in wide if o not in first]
        small = [o for o in four if o.shape[3] <= _REG]
        grids = {o.shape[1] for o in dfl}
        heads = [o for o in small if o.shape[1] in grids]
        protos = first + [o for o in small if o.shape[1] not in grids]
        if task == "detect" or (task == "auto" and not heads and not protos):
            return cls(YoloAdapter.from_specs(inputs, outputs, labels, **kwargs), "detect")
        detector = YoloAdapter.from_specs(inputs, dfl, labels, **kwargs)
        by_grid = {o.shape[1]: o for o in heads}
        if len(by_grid) != len(heads) or set(by_grid) != grids:
            raise ModelLayoutError(f"expected one extra head per DFL head grid {sorted(grids)}: outputs "
                                   f"{_names(outputs)}")
        order = [by_grid[s.shape[1]] for s in detector.output_specs]  # ascending stride, like the DFL heads
        ch = order[0].shape[3]
        if task == "pose" or (task == "auto" and not protos and ch % 3 == 0 and ch != 32):
            if protos:
                raise ModelLayoutError(f"pose model with an unexpected extra tensor: outputs {_names(outputs)}")
            if ch != _POSE_ROWS:
                raise ModelLayoutError(f"keypoint heads have {ch} channels, expected {_POSE_ROWS} (COCO-17): "
                                       f"outputs {_names(outputs)}")
            return cls(detector, "pose", extra=order)
        if len(protos) != 1:
            raise ModelLayoutError(f"segmentation model without its prototype tensor [1,{ch},H/4,W/4] (it has "
                                   f"mask-coefficient heads [1,h,w,{ch}]): outputs {_names(outputs)}")
        proto = protos[0]
        channels_last = proto not in first
        if proto.shape[3 if channels_last else 1] != ch:
            raise ModelLayoutError(f"prototype tensor {proto.describe()} does not match the {ch} mask "
                                   f"coefficients: outputs {_names(outputs)}")
        return cls(detector, "segment", extra=order, protos=proto, protos_channels_last=channels_last)

    # ----------------------------------------------------------------------------------------- passthrough
    @property
    def layout(self) -> str:
        return self.detector.layout

    @property
    def labels(self) -> Tuple[str, ...]:
        return self.detector.labels

    @property
    def num_classes(self) -> int:
        return self.detector.num_classes

    @property
    def config(self) -> DetectorConfig:
        return self.detector.config

    @config.setter
    def config(self, value: DetectorConfig) -> None:
        self.detector.config = value

    def update_config(self, **changes: Any) -> DetectorConfig:
        return self.detector.update_config(**changes)

    def class_ids(self, names):
        return self.detector.class_ids(names)

    def preprocess(self, bgr_image: np.ndarray):
        return self.detector.preprocess(bgr_image)

    # ----------------------------------------------------------------------------------------- postprocess
    def postprocess(self, outputs: Union[Mapping[str, np.ndarray], Sequence[np.ndarray]], meta: LetterboxInfo,
                    config: Optional[DetectorConfig] = None, *, with_masks: bool = True) -> TaskResult:
        """Detections (and masks or keypoints) of one frame; outputs as ``session.run`` returns them.

        ``with_masks=False`` skips the masks of a segmentation model (``masks`` is None): nobody needs them.
        Keypoints are always decoded (a few hundred numbers per frame)."""
        if self.task == "detect":
            return TaskResult(self.detector.postprocess(outputs, meta, config))
        named = self._by_name(outputs)
        config = config or self.detector.config
        if self.layout == LAYOUT_AXERA:
            dets = self.detector.postprocess({s.name: named[s.name] for s in self.detector.output_specs}, meta, config)
            heads, cells = self._axera_cells(named, dets.source)
            rows = self._axera_rows(named, heads, cells)
        else:
            out = named[self.detector.output_names[0]]
            dets = self.detector.postprocess({out_name: out[:, :self._det_rows] for out_name in
                                              self.detector.output_names}, meta, config)
            # only the kept detections' extra rows are read (the decode and NMS never see them)
            rows = out[0, self._det_rows:, dets.source].astype(np.float32)
        if self.task == "segment":
            if not with_masks:
                return TaskResult(dets)
            protos = named[self.protos_spec.name][0]
            masks = instance_label_image(rows, protos, dets.boxes, meta, channels_last=self.protos_channels_last)
            return TaskResult(dets, masks=masks)
        if self.layout == LAYOUT_AXERA:
            kpts = np.empty((len(dets), len(COCO_KEYPOINTS), 3), np.float32)
            for h, (spec, stride) in enumerate(zip(self.extra_specs, self.detector.strides)):
                sel = heads == h
                if sel.any():
                    kpts[sel] = decode_grid_keypoints(rows[sel], cells[sel], named[spec.name].shape[2], stride)
        else:
            kpts = rows.reshape(len(dets), -1, 3)
        return TaskResult(dets, keypoints=keypoints_to_image(kpts, meta))

    def _by_name(self, outputs) -> Mapping[str, np.ndarray]:
        if isinstance(outputs, Mapping):
            return outputs
        names = list(self.detector.model_output_names) + [s.name for s in self.extra_specs]
        if self.protos_spec is not None:
            names.append(self.protos_spec.name)
        if self.layout != LAYOUT_AXERA:
            names = [self.detector.output_names[0]] + ([self.protos_spec.name] if self.protos_spec else [])
        if len(outputs) != len(names):
            raise ModelOutputError(f"expected {len(names)} outputs {names}, got {len(outputs)}")
        return dict(zip(names, outputs))

    def _axera_cells(self, named, source: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The head (by ascending stride) and the cell in it of each kept detection's candidate."""
        sizes = [named[s.name].shape[1] * named[s.name].shape[2] for s in self.detector.output_specs]
        ends = np.cumsum(sizes)
        heads = np.searchsorted(ends, source, side="right")
        return heads, source - (ends - np.asarray(sizes))[heads]

    def _axera_rows(self, named, heads: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """Per kept detection, its row of the extra head (coefficients or raw keypoints) at its cell."""
        ch = self.extra_specs[0].shape[3]
        rows = np.empty((heads.shape[0], ch), np.float32)
        for h, spec in enumerate(self.extra_specs):
            sel = heads == h
            if sel.any():
                rows[sel] = named[spec.name][0].reshape(-1, ch)[cells[sel]]
        return rows
